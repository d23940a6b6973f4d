"""One look for every progress bar: training, decoding, translating, evaluating, downloading."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["format_stats", "make_progress"]


def make_progress(console: Console | None, *, bytes_mode: bool = False, transient: bool = False) -> Progress:
    """A rich progress bar: description, bar, done/total (or bytes and speed), times, and a `stats`
    field for live text (losses, the current file). Tasks must be added with `stats=""`.

    Args:
        console: where to draw; None draws nothing (quiet runs, tests).
        bytes_mode: show sizes and transfer speed instead of item counts (downloads).
        transient: remove the bar when done.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = [DownloadColumn(), TransferSpeedColumn()] if bytes_mode else [MofNCompleteColumn()]
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        disable=console is None,
        transient=transient,
    )


def format_stats(record: Mapping[str, float]) -> str:
    """A logged record as the progress bar shows it: the losses, then images per second."""
    losses = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in record.items() if k.startswith("loss"))
    speed = record.get("images_per_s")
    return f"{losses}  {speed:.1f} img/s" if speed is not None and math.isfinite(speed) else losses
