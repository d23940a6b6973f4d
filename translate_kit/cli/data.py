"""`tkit data`: get datasets: download the public ones, or synthesise facades offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command
from translate_kit.progress import make_progress

__all__ = ["app"]

app = typer.Typer(help="Download or synthesise datasets.", no_args_is_help=True)


@app.command("download")
@cli_command
def download(
    name: Annotated[str, typer.Argument(help="Dataset name: facades.")],
    root: Annotated[Path, typer.Option(help="Folder the dataset folder is created in.")] = Path("data"),
    url: Annotated[
        Optional[str], typer.Option(help="Download from this address instead (a mirror, or a file:// URL).")
    ] = None,
) -> None:
    """Download and verify a public dataset (resumes a partial download)."""
    from translate_kit.data.download import download_dataset

    console = Console()
    with make_progress(console, bytes_mode=True) as progress:
        task = progress.add_task(f"download {name}", total=None, stats="")

        def on_bytes(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        folder = download_dataset(name, root, url=url, progress=on_bytes)
    console.print(f"{name} is ready in {folder}")


@app.command("synth-facades")
@cli_command
def synth_facades(
    root: Annotated[Path, typer.Argument(help="Folder to write train/, val/ and test/ into.")],
    count: Annotated[int, typer.Option(min=3, help="Number of image pairs in all splits.")] = 200,
    size: Annotated[int, typer.Option(min=32, help="Side of each half, in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the first image; the same seed gives the same images.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace images already in the folder.")] = False,
) -> None:
    """Generate CMP-like facade pairs (photo | label map, the facades layout) without any download."""
    from translate_kit.data.synth import write_synth_facades

    console = Console()
    with make_progress(console) as progress:
        task = progress.add_task("synthesise facades", total=count, stats="")
        counts = write_synth_facades(
            root, count=count, size=size, seed=seed, overwrite=overwrite, on_image=lambda: progress.advance(task)
        )
    summary = ", ".join(f"{split} {n}" for split, n in counts.items())
    console.print(f"Wrote {sum(counts.values())} pairs to {root} ({summary}). Direction BtoA is labels -> photo.")
