"""Log a training run for TensorBoard: the scalars, the validation scores, the sample images and the
recipe, in `RUN/tensorboard/` (`tensorboard --logdir runs`).

A logger is an ordinary plugin listening to the run events. This one writes through
`torch.utils.tensorboard`, which needs the `tensorboard` package (`pip install
'translate-kit[tensorboard]'`); without it the plugin does nothing. Disable it with
TRANSLATE_KIT_DISABLE_PLUGINS=tensorboard_log.

- `loss/<name>`: the method's losses, every `train.log_every` steps (`loss_` dropped);
- `train/<name>`: the learning rate, images per second and the other bookkeeping scalars;
- `val/<name>`: the validation scores (`train.eval_every`);
- `samples/<name>`: input | output | target of each sample image, on the epochs that write samples;
- `recipe`: the resolved recipe, as text, when the run starts.

On resume the writer purges the events past the checkpoint's step (written by the interrupted run
after its last checkpoint), so each step appears once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translate_kit.api import hookimpl

if TYPE_CHECKING:
    from translate_kit.api import Trainer

__all__ = ["FOLDER"]

FOLDER = "tensorboard"
_BOOKKEEPING = ("step", "epoch")
_writers: dict[Path, Any] = {}  # run folder -> its SummaryWriter, while the run is going


def _summary_writer() -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the tensorboard extra is not installed: nothing to write with
        return None
    return SummaryWriter


@hookimpl
def translate_kit_run_start(trainer: Trainer) -> None:
    writer_class = _summary_writer()
    if writer_class is None:
        return
    step = trainer.state.step
    # purge_step drops the events an interrupted run wrote after the checkpoint this run resumes from.
    writer = writer_class(log_dir=str(trainer.run_dir / FOLDER), purge_step=step + 1 if step else None)
    # TensorBoard renders text as Markdown: indent the TOML so it shows as a code block.
    recipe = "".join(f"    {line}\n" for line in trainer.recipe.to_toml().splitlines())
    writer.add_text("recipe", recipe, global_step=step)
    _writers[trainer.run_dir] = writer


@hookimpl
def translate_kit_train_log(trainer: Trainer, step: int, scalars: Mapping[str, float]) -> None:
    writer = _writers.get(trainer.run_dir)
    if writer is None:
        return
    for key, value in scalars.items():
        if key in _BOOKKEEPING:
            continue
        tag = f"loss/{key.removeprefix('loss_')}" if key.startswith("loss") else f"train/{key}"
        writer.add_scalar(tag, value, global_step=step)


@hookimpl
def translate_kit_validation(trainer: Trainer, step: int, scores: Mapping[str, float]) -> None:
    writer = _writers.get(trainer.run_dir)
    if writer is None:
        return
    for key, value in scores.items():
        if key not in _BOOKKEEPING:
            writer.add_scalar(f"val/{key}", value, global_step=step)
    writer.flush()


@hookimpl
def translate_kit_epoch_end(trainer: Trainer, epoch: int) -> None:
    writer = _writers.get(trainer.run_dir)
    folder = trainer.folder.samples / f"epoch_{epoch + 1:04d}"
    if writer is None or not folder.is_dir():  # not a sample epoch (train.sample_every)
        return
    import torch
    from torchvision.io import ImageReadMode, read_image

    for name in trainer.sample_names():
        paths = [trainer.folder.samples / "input" / f"{name}.png", folder / f"{name}.png",
                 trainer.folder.samples / "target" / f"{name}.png"]
        if not all(p.exists() for p in paths):
            continue
        images = [read_image(str(p), ImageReadMode.RGB) for p in paths]
        height = max(image.shape[1] for image in images)
        # Side by side at one height (a super-resolution input is smaller): pad below, never resize.
        row = torch.cat([torch.nn.functional.pad(image, (0, 0, 0, height - image.shape[1])) for image in images], 2)
        writer.add_image(f"samples/{name}", row, global_step=trainer.state.step)


@hookimpl
def translate_kit_checkpoint_saved(trainer: Trainer) -> None:
    writer = _writers.get(trainer.run_dir)
    if writer is not None:  # what a checkpoint covers is on disk too
        writer.flush()


@hookimpl
def translate_kit_run_end(trainer: Trainer) -> None:
    writer = _writers.pop(trainer.run_dir, None)
    if writer is not None:
        writer.close()
