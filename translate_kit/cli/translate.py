"""`tkit translate`: translate image files with a trained checkpoint."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command, session
from translate_kit.progress import make_progress

__all__ = ["translate"]


class Mode(str, Enum):
    eval = "eval"
    paper = "paper"


@cli_command
def translate(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="A checkpoint file (RUN/checkpoints/step_*.pt) or a run folder (its newest checkpoint).",
                       show_default=False),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders (the images directly inside) or quoted glob patterns like "
                       "'photos/*.jpg'.", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for the outputs, one PNG per input named <input stem>.png.",
                     show_default=False),
    ],
    mode: Annotated[
        Mode,
        typer.Option(help="eval: deterministic. paper: pix2pix's test time (dropout on, batch norm with each "
                     "image's own statistics)."),
    ] = Mode.eval,
    seed: Annotated[
        Optional[int],
        typer.Option(help="Paper mode: seed the dropout so a run can be repeated (image i uses SEED + i)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images (of the same size) or tiles per forward pass.")] = 1,
    tile: Annotated[
        Optional[int],
        typer.Option(min=1, help="Translate large images in tiles of this many pixels (a multiple of the "
                     "model's size multiple, e.g. 256 or 512 for a U-Net 256), blended where they overlap."),
    ] = None,
    overlap: Annotated[int, typer.Option(min=0, help="Minimum overlap of neighbouring tiles, in pixels.")] = 64,
    auto_tile: Annotated[
        bool,
        typer.Option("--auto-tile/--no-auto-tile", help="Without --tile, translate an image that would not fit "
                     "the device's memory at once in tiles of the largest size that fits (said once)."),
    ] = True,
    compile: Annotated[
        bool,
        typer.Option("--compile", help="Compile the generator (torch.compile with freezing): a wait for each new "
                     "image size, then faster translation. Worth it for many images."),
    ] = False,
    ema: Annotated[
        bool,
        typer.Option("--ema/--no-ema", help="Use the moving averages of the weights when the run kept them "
                     "(train.ema_decay); --no-ema: the trained weights themselves."),
    ] = True,
) -> None:
    """Translate images of any size with a trained model; outputs keep each input's size (times the model's
    scale, for super-resolution)."""
    from translate_kit.inference import Translator, expand_inputs, translate_files

    console = Console()
    state = session(ctx)
    files = expand_inputs(inputs)  # before loading the model: a typo fails at once
    translator = Translator.from_checkpoint(
        checkpoint, device=device, mode=mode.value, registry=state.registry,
        seed=seed, batch_size=batch_size, tile=tile, overlap=overlap, compile=compile, use_ema=ema,
        auto_tile=auto_tile, notify=lambda line: console.print(f"[yellow]{line}", highlight=False),
    )
    console.print(
        f"Translating {len(files)} image(s) with {translator.checkpoint} (step {translator.step}"
        f"{', averaged weights' if translator.averaged else ''}) on {translator.device}, {mode.value} mode."
    )
    started = time.perf_counter()
    with make_progress(console) as progress:
        task = progress.add_task("translate", total=len(files), stats="")
        written = translate_files(
            translator, files, out, on_image=lambda source, _: progress.update(task, advance=1, stats=source.name)
        )
    elapsed = time.perf_counter() - started
    rate = len(written) / max(elapsed, 1e-9)
    console.print(f"Wrote {len(written)} image(s) to {out} in {elapsed:.1f} s ({rate:.2f} images/s).")
