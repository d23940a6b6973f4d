"""`tkit export`: a trained model's inference networks as safetensors weights or an ONNX graph."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command, old_spelling, session

__all__ = ["export"]


class ExportFormat(str, Enum):
    safetensors = "safetensors"
    onnx = "onnx"


@cli_command
def export(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="A checkpoint file (RUN/checkpoints/step_*.pt) or a run folder (its newest checkpoint).",
                       show_default=False),
    ],
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", help="safetensors: weights + JSON that `tkit translate` accepts. onnx: an "
                     "eval-mode graph for onnxruntime and other runtimes (needs translate-kit[onnx])."),
    ] = ExportFormat.safetensors,
    output: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="The file to write (.safetensors or .onnx); a description FILE.json goes "
                     "beside it. Default: RUN/export/model.<format>.", show_default=False),
    ] = None,
    output_old: Annotated[Optional[Path], typer.Option("--output", hidden=True)] = None,  # until 0.2
    static: Annotated[
        bool, typer.Option("--static", help="ONNX: fix batch and image size to the example's instead of dynamic.")
    ] = False,
    size: Annotated[
        Optional[int],
        typer.Option(min=1, help="ONNX: side of the square example image (default: the recipe's crop size).",
                     show_default=False),
    ] = None,
    opset: Annotated[Optional[int], typer.Option(min=7, help="ONNX opset version (default: the exporter's).",
                                                 show_default=False)] = None,
    ema: Annotated[
        bool,
        typer.Option("--ema/--no-ema", help="Use the moving averages of the weights when the run kept them "
                     "(train.ema_decay); --no-ema: the trained weights themselves."),
    ] = True,
) -> None:
    """Export the networks a model translates with, for deployment or sharing without training state."""
    from translate_kit.export import export_model

    output = old_spelling(output, output_old, new="--out", old="--output")
    if output is None:
        # A run folder, or RUN/checkpoints/step_*.pt: RUN/export/. A loose file: export/ beside it.
        folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
        run = folder.parent if folder.name == "checkpoints" else folder
        output = run / "export" / f"model.{fmt.value}"
    written = export_model(
        checkpoint, output, fmt=fmt.value, registry=session(ctx).registry, opset=opset, dynamic=not static,
        example_size=size, use_ema=ema,
    )
    console = Console()
    for path in written:
        console.print(f"Wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if fmt is ExportFormat.safetensors:
        console.print(f"Translate with it: tkit translate {written[0]} IMAGES --out OUT")
