"""`tkit data`: get datasets: download the public ones, build Cityscapes, or synthesise facades offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from translate_kit.cli.common import cli_command, old_spelling
from translate_kit.data.download import DATASETS, DatasetSpec
from translate_kit.progress import make_progress

__all__ = ["app", "data_group"]

app = typer.Typer(help="Download, build or synthesise datasets.", no_args_is_help=True)


def _size(spec: DatasetSpec) -> str:
    if spec.url is None:
        return "manual"
    if spec.approx_mib is None:
        return "?"
    return f"{spec.approx_mib / 1024:.1f} GiB" if spec.approx_mib >= 1024 else f"{spec.approx_mib:.0f} MiB"


def _catalogue() -> str:
    width = max(len(name) for name in DATASETS)
    lines = [f"{spec.name:<{width}}  {spec.family:<8}  {_size(spec):>7}  {spec.source}" for spec in DATASETS.values()]
    return (
        "NAME is family/set, and pix2pix/ may be left out: `facades` is the paired pix2pix set, `cyclegan/facades` "
        "the unpaired one. The name is also the folder under --out. Every set, with its family, archive size "
        "and source (`tkit data list` adds the splits; docs/datasets.md the layouts):\n\n" + "\n".join(lines)
    )


@app.command("download", epilog=_catalogue())
@cli_command
def download(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. facades, maps, cyclegan/horse2zebra (see below).")],
    root: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder the dataset folder is created in "
                                                 "[default: data].", show_default=False)] = None,
    root_old: Annotated[Optional[Path], typer.Option("--root", hidden=True)] = None,  # until 0.2
    url: Annotated[
        Optional[str], typer.Option(help="Download from this address instead (a mirror, a file:// URL or a path).")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, help="Resume a transfer that breaks off up to this many times.")] = 3,
) -> None:
    """Download, unpack and verify a public pix2pix or CycleGAN dataset (resumes a partial download)."""
    from translate_kit.data.download import download_dataset

    root = old_spelling(root, root_old, new="--out", old="--root") or Path("data")
    console = Console()
    with make_progress(console, bytes_mode=True) as progress:
        tasks = []  # the bar appears with the first byte: a set already there or refused shows none

        def on_bytes(done: int, total: int | None) -> None:
            if not tasks:
                tasks.append(progress.add_task(f"download {name}", total=total, stats=""))
            progress.update(tasks[0], completed=done, total=total)

        folder = download_dataset(name, root, url=url, progress=on_bytes, retries=retries)
    console.print(f"{name} is ready in {folder}")


@app.command("list")
@cli_command
def list_datasets() -> None:
    """Show every dataset `tkit data download` knows: family, archive size, splits, image size, source."""
    table = Table(title="tkit data download NAME", show_lines=True)
    for column in ("name", "family", "size", "splits (images)", "image", "A | B", "source and terms"):
        table.add_column(column, overflow="fold")
    for spec in DATASETS.values():
        splits = ", ".join(f"{split} {'?' if n is None else n}" for split, n in spec.splits.items())
        image = "x".join(map(str, spec.image_size)) if spec.image_size else "varies"
        table.add_row(spec.name, spec.family, _size(spec), splits, image, spec.domains, spec.source)
    console = Console()
    console.print(table)
    console.print("? = count not verified (the split must hold images). manual = no public archive: "
                  "`tkit data download NAME` prints the steps.")


@app.command("prepare-cityscapes")
@cli_command
def prepare_cityscapes(
    source: Annotated[Path, typer.Argument(help="Folder holding leftImg8bit/ and gtFine/ from the official zips.")],
    root: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write cityscapes/{train,val} into "
                                                 "[default: data].", show_default=False)] = None,
    root_old: Annotated[Optional[Path], typer.Option("--root", hidden=True)] = None,  # until 0.2
) -> None:
    """Build the pix2pix Cityscapes pairs (512x256, photo | colour labels) from the official files."""
    from translate_kit.data.download import prepare_cityscapes as prepare

    root = old_spelling(root, root_old, new="--out", old="--root") or Path("data")
    console = Console()
    with make_progress(console) as progress:
        task = progress.add_task("prepare cityscapes", total=None, stats="")
        folder = prepare(source, root, on_image=lambda done, total: progress.update(task, completed=done, total=total))
    console.print(f"cityscapes is ready in {folder}. Direction BtoA is labels -> photo.")


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


def data_group() -> typer.Typer:
    """A `data` group of its own for one `tkit` app: the built-in commands, to which plugins add
    theirs (`translate_kit_add_data_commands`) without changing the module-level group."""
    group = typer.Typer(help=app.info.help, no_args_is_help=True)
    group.registered_commands = list(app.registered_commands)
    return group
