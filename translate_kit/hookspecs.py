"""The plugin contract: every hook a translate-kit plugin may implement.

Components (generators, discriminators, losses, datasets, methods) need no hook: mark factories with
`@register_generator()` and friends in the plugin module. The hooks below cover what a marker cannot:
components made at run time, recipe folders, CLI commands and the events of a training run.

Implement a hook with the same name and any subset of its arguments:

    from translate_kit.hookspecs import hookimpl

    @hookimpl
    def translate_kit_train_log(step, scalars):
        print(step, scalars)

Every hook here is called for every plugin (none is `firstresult`, none is `historic`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import typer

    from translate_kit.train.trainer import Trainer

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "translate_kit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def translate_kit_register_components() -> Iterable[Callable[..., Any]]:
    """Return component factories that are not module-level functions of the plugin module.

    Module-level factories marked with `@register_*()` are collected without this hook. Use it for
    factories made at run time (say, one per timm backbone). Each returned object must carry a marker.

    Returns:
        Marked factories; duplicates of names already registered are an error naming both plugins.
    """


@hookspec
def translate_kit_recipe_dirs() -> Iterable[Path]:
    """Return folders of `*.toml` recipes this plugin ships.

    `tkit recipes list` shows them beside the project's `recipes/`, and `tkit train NAME` finds them
    by file stem.
    """


@hookspec
def translate_kit_add_commands(app: typer.Typer) -> None:
    """Add sub-commands to the `tkit` command line.

    Args:
        app: the root Typer application; call `app.command()` or `app.add_typer()` on it.

    Plugin commands are loaded when the command line names a command that is not built in, so
    `tkit --help` stays fast; `tkit plugins list` shows which plugin adds which command.
    """


@hookspec
def translate_kit_add_data_commands(data: typer.Typer) -> None:
    """Add sub-commands to `tkit data` (a dataset builder beside `download` and `synth-facades`).

    Args:
        data: this command line's `data` group; call `data.command("NAME")` on it.

    They are loaded when the command line is `tkit data` with no sub-command (its help lists them)
    or with one that is not built in, so the built-in data commands stay fast; `tkit plugins list`
    shows them as `data NAME`.
    """


@hookspec
def translate_kit_run_start(trainer: Trainer) -> None:
    """A training run starts (fresh or resumed); `trainer.run_dir` exists, `trainer.state.step` is set."""


@hookspec
def translate_kit_train_log(trainer: Trainer, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
    """Every `train.log_every` steps: the mean of each logged scalar since the last call.

    Args:
        trainer: the running trainer.
        step: optimisation steps done so far (1-based after the first step).
        epoch: the current epoch (0-based).
        scalars: the method's losses (pix2pix: `loss_G_GAN`, `loss_G_L1`, `loss_D_real`, `loss_D_fake`)
            and the trainer's `step`, `epoch`, `lr`, `images_per_s` and `nonfinite_total`.
    """


@hookspec
def translate_kit_validation(trainer: Trainer, step: int, epoch: int, scores: Mapping[str, float]) -> None:
    """Every `train.eval_every` steps, after the validation split was scored (and `best.pt` written
    when the score is the best so far; `trainer.validation.best` says which step that is).

    Args:
        trainer: the running trainer.
        step: optimisation steps done so far.
        epoch: the current epoch (0-based).
        scores: `step`, `epoch` and the scores: `l1`, `mse`, `psnr`, `ssim`, with a segmenter
            `fcn_pixel_accuracy`, `fcn_class_accuracy`, `fcn_class_iou`, with the FID weights `fid`,
            `kid_mean`, `kid_std` (docs/metrics.md).
    """


@hookspec
def translate_kit_epoch_end(trainer: Trainer, epoch: int, scalars: Mapping[str, float]) -> None:
    """An epoch ended (0-based `epoch`); `scalars` are the epoch's means. On sample epochs
    (`train.sample_every`) the samples and index.html are already written."""


@hookspec
def translate_kit_checkpoint_saved(trainer: Trainer, path: Path, step: int) -> None:
    """A checkpoint was written, atomically, at `path` after `step` steps."""


@hookspec
def translate_kit_run_end(trainer: Trainer, status: str) -> None:
    """A run ends; `status` is "completed", "interrupted" or "failed"."""
