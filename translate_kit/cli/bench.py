"""`tkit bench`: training and inference speed, FLOPs and peak memory of a recipe's networks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from translate_kit.cli.common import cli_command, find_recipe, session

if TYPE_CHECKING:
    from translate_kit.bench import BenchResult

__all__ = ["bench", "parse_sizes", "render"]

DEFAULT_BATCH_SIZES = "1,4"  # the baseline: train batch 1 (the paper's) and 4
DEFAULT_INFER_BATCH_SIZES = "1,8"


def parse_sizes(text: str, option: str) -> tuple[int, ...]:
    """"1,4" -> (1, 4); anything else than positive integers is a usage error naming the option."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"expected comma-separated positive integers such as 1,4, got {text!r}",
                                 param_hint=option)
    return sizes


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def render(result: BenchResult, console: Console) -> None:
    """Print `result` as a compact table, then memory, what was skipped and the notes."""
    from rich.table import Table

    from translate_kit.bench import LABELS

    matmul = result.matmul
    rate = f"{matmul.flops_per_s / 1e9:.1f} GFLOP/s ({matmul.size}² {matmul.dtype} torch.mm)" if matmul else "—"
    table = Table(
        title=f"{result.recipe} on {result.device} ({result.threads} thread{'s' * (result.threads != 1)}), "
        f"{result.precision}, {result.crop_size} px",
        caption=f"images/s: median (min–max) over windows. train step: a synthetic batch on the device; "
        f"train+data: the training loop reading the data. % matmul: of {rate}",
    )
    for column in ("measure", "batch", "images/s", "ms/image", "GFLOP/image", "% matmul"):
        table.add_column(column, justify="left" if column == "measure" else "right", no_wrap=True)
    for t in result.throughput:
        gflop = "—" if t.flops_per_image is None else f"{t.flops_per_image / 1e9:.3g}"
        share = "—" if t.matmul_fraction is None else f"{100 * t.matmul_fraction:.1f}"
        table.add_row(LABELS.get(t.what, t.what), str(t.batch_size),
                      f"{t.images_per_s:.3g} ({t.min_images_per_s:.3g}–{t.max_images_per_s:.3g})",
                      f"{1e3 / t.images_per_s:.3g}", gflop, share)
    console.print(table)
    if result.memory:
        memory = Table(title="peak memory of training, a fresh process per batch size",
                       caption="RSS in GiB: peak (before the first step)")
        for column in ("batch", "RSS", "CUDA max allocated"):
            memory.add_column(column, justify="right", no_wrap=True)
        for m in result.memory:
            memory.add_row(str(m.batch_size), f"{_gib(m.peak_rss_bytes)} ({_gib(m.baseline_rss_bytes)})",
                           "—" if m.cuda_max_allocated_bytes is None else _gib(m.cuda_max_allocated_bytes))
        console.print(memory)
    params = ", ".join(f"{name} {count / 1e6:.2f} M" for name, count in result.parameters.items())
    own = _gib(result.bench_process_peak_rss_bytes)
    console.print(f"parameters: {params}; this process's own peak RSS {own} GiB; {result.seconds:.0f} s in all")
    # Escape: reasons quote recipe tables like [data], which rich would read as markup.
    for what, why in result.skipped.items():
        console.print(f"[yellow]{escape(what)}: {escape(why)}[/]")
    for note in result.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


@cli_command
def bench(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Argument(help="Recipe file or name (`tkit recipes list`).")],
    overrides: Annotated[
        Optional[list[str]],
        typer.Option("--set", "-s", help="Override a recipe value: --set generator.ngf=32 (repeatable).",
                     show_default=False),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_sizes: Annotated[
        Optional[str],
        typer.Option(help=f"Training batch sizes, comma-separated (default {DEFAULT_BATCH_SIZES}; with --quick 1).",
                     show_default=False),
    ] = None,
    infer_batch_sizes: Annotated[
        Optional[str],
        typer.Option(help=f"Inference batch sizes (default {DEFAULT_INFER_BATCH_SIZES}; with --quick 1).",
                     show_default=False),
    ] = None,
    windows: Annotated[
        Optional[int],
        typer.Option(min=1, help="Timed windows per figure (default 5; with --quick 2).", show_default=False),
    ] = None,
    window_seconds: Annotated[
        Optional[float],
        typer.Option(min=0.0, help="Target length of a window; calls per window are calibrated on the warm-up "
                     "(default 1.0 s; with --quick 0: one call).", show_default=False),
    ] = None,
    warmup: Annotated[
        Optional[int], typer.Option(min=1, help="Untimed calls before each figure (default 2; with --quick 1).",
                                    show_default=False)
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="torch intra-op threads (default: torch's choice).", show_default=False)
    ] = None,
    synthetic_data: Annotated[
        bool, typer.Option("--synthetic-data", help="Time the data loop on a few synthetic facades written to a "
                           "temporary folder instead of data.root.")
    ] = False,
    loop: Annotated[bool, typer.Option(help="Time the training loop with data loading.")] = True,
    memory: Annotated[bool, typer.Option(help="Measure peak memory in a fresh process per batch size.")] = True,
    compile_inference: Annotated[
        bool, typer.Option("--compile-inference", help="Also time inference compiled as `tkit translate --compile` "
                           "runs it (torch.compile with freezing; compiling takes seconds to a minute).")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke run of a few seconds: batch 1, 2 windows of one call, 1 warm-up.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON only.")] = False,
) -> None:
    """Measure a recipe's training and inference images/s, FLOPs per image and peak memory.

    After a warm-up, each figure is the median over timed windows: one training step on a
    synthetic batch (no data loading), the training loop reading the recipe's data, and inference
    in eval and paper mode. FLOPs come from torch.utils.flop_counter, and each rate is also given
    as a fraction of a matrix-multiply rate measured in the same run. Compare runs by these
    fractions or side by side: absolute speeds drift on shared machines.
    """
    import torch

    from translate_kit.bench import run_bench
    from translate_kit.recipe import load_recipe

    if threads is not None:
        torch.set_num_threads(threads)
    state = session(ctx)
    path = find_recipe(recipe, state.pm)
    loaded = load_recipe(path, overrides or [], registry=state.registry)
    quiet = json_output
    status = Console(stderr=True, highlight=False)
    result = run_bench(
        loaded,
        state.registry,
        state.pm,
        device=device,
        batch_sizes=parse_sizes(batch_sizes or ("1" if quick else DEFAULT_BATCH_SIZES), "--batch-sizes"),
        infer_batch_sizes=parse_sizes(
            infer_batch_sizes or ("1" if quick else DEFAULT_INFER_BATCH_SIZES), "--infer-batch-sizes"
        ),
        windows=windows if windows is not None else (2 if quick else 5),
        window_s=window_seconds if window_seconds is not None else (0.0 if quick else 1.0),
        warmup=warmup if warmup is not None else (1 if quick else 2),
        loop=loop,
        synthetic_data=synthetic_data,
        memory=memory,
        compile_inference=compile_inference,
        plugins_dir=state.plugins_dir,
        log=None if quiet else (lambda line: status.print(f"[dim]… {line}[/]")),
    )
    if json_output:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render(result, Console())
