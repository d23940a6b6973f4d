"""`tkit train`: train a recipe, or resume a run; under torchrun, in several processes.

`torchrun --nproc-per-node N -m translate_kit train RECIPE` (or `torchrun ... $(which tkit) train
RECIPE`) starts N copies of this command. Each joins the process group for the whole command
(`process_group`), and rank 0 alone prints; see docs/distributed.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command, find_recipe, session
from translate_kit.errors import CheckpointError

if TYPE_CHECKING:
    from translate_kit.train.distributed import Distributed

__all__ = ["train"]


@cli_command
def train(
    ctx: typer.Context,
    recipe: Annotated[
        Optional[str],
        typer.Argument(help="Recipe file or name (`tkit recipes list`). Not needed with --resume."),
    ] = None,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option("--set", "-s", help="Override a recipe value: --set train.epochs=5 (repeatable).", show_default=False),
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(help="Continue the run in this folder from its newest checkpoint, at the exact step."),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto, cpu, cuda, cuda:N or mps. Under torchrun, cuda (or auto) is cuda:LOCAL_RANK.")
    ] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run folder of the same name first.")] = False,
) -> None:
    """Train the method a recipe describes; writes checkpoints, samples and index.html to the run folder.

    Under torchrun every process runs this; --device cuda (or auto) gives each its own GPU.
    """
    from translate_kit.allocator import keep_freed_memory
    from translate_kit.build import select_device
    from translate_kit.train.distributed import launch_env, process_group

    # Rank 0 speaks for the job; the other processes' consoles stay silent (errors still print).
    console = Console(quiet=launch_env().rank != 0)
    if select_device(device).type == "cpu":
        keep_freed_memory()  # glibc would page-fault every step's activations back in (see allocator.py)
    with process_group(select_device(device)) as group:
        _train(ctx, recipe, overrides or [], resume, device, overwrite, console, group)


def _train(
    ctx: typer.Context,
    recipe: str | None,
    overrides: list[str],
    resume: Path | None,
    device: str,
    overwrite: bool,
    console: Console,
    group: Distributed,
) -> None:
    from translate_kit.recipe import load_recipe
    from translate_kit.train.checkpoint import newest_checkpoint
    from translate_kit.train.trainer import Trainer

    state = session(ctx)
    if resume is not None:
        if recipe is not None:
            raise CheckpointError(
                f"Pass either a recipe or --resume, not both: a resumed run uses the recipe saved in {resume}."
            )
        found = newest_checkpoint(resume / "checkpoints")
        if found is None:
            raise CheckpointError(f"Nothing to resume in {resume}: no checkpoint in {resume / 'checkpoints'}.")
        loaded = load_recipe(found[1]["recipe"], overrides, registry=state.registry)
        loaded = dataclasses.replace(loaded, source=str(resume / "recipe.toml"))
        trainer = Trainer(loaded, registry=state.registry, pm=state.pm, device=device, console=console,
                          run_dir=resume, resume=True, checkpoint=found, distributed=group)
        console.print(f"Resuming [bold]{resume}[/] at step {trainer.state.step} (epoch {trainer.state.epoch + 1}).")
    else:
        if recipe is None:
            raise typer.BadParameter("give a recipe to train (`tkit recipes list`), or --resume RUN_FOLDER.")
        path = find_recipe(recipe, state.pm)
        loaded = load_recipe(path, overrides, registry=state.registry)
        trainer = Trainer(loaded, registry=state.registry, pm=state.pm, device=device, console=console,
                          overwrite=overwrite, distributed=group)
        where = str(trainer.device)
        if group.enabled:
            where = (f"{group.world_size} processes on {trainer.device.type} (global batch {loaded.train.batch_size}, "
                     f"{trainer.rank_batch_size} per process)")
        console.print(
            f"Training [bold]{loaded.run.name}[/] ({path}) on {where}: {len(trainer.dataset)} images, "
            f"{trainer.total_steps} steps, run folder {trainer.run_dir}"
        )
    trainer.fit()
    stopped = trainer.stop_requested
    verb = "Stopped" if stopped else "Done"
    console.print(f"{verb} at step {trainer.state.step}. Results: {trainer.run_dir / 'index.html'}")
    if stopped:
        launcher = "torchrun <the same torchrun options> -m translate_kit" if group.enabled else "tkit"
        console.print(f"Continue with: {launcher} train --resume {trainer.run_dir}")
        raise typer.Exit(code=130)
