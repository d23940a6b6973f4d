"""One look for every progress bar: training, decoding, translating, evaluating, downloading."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["LineProgress", "format_stats", "make_progress"]


def make_progress(
    console: Console | None, *, bytes_mode: bool = False, transient: bool = False, every: float = 30.0
) -> Progress | LineProgress:
    """A rich progress bar: description, bar, done/total (or bytes and speed), times, and a `stats`
    field for live text (losses, the current file). Tasks must be added with `stats=""`.

    Where the console is not a terminal (a CI log, `nohup`, a pipe) rich draws no bar, and a long
    run would print nothing until it ends: there a `LineProgress` prints a plain line instead, when
    a task starts, whenever its `stats` are updated (training: every `train.log_every` steps), else
    at most every `every` seconds while it runs, and when it ends.

    Args:
        console: where to draw; None draws nothing (quiet runs, tests).
        bytes_mode: show sizes and transfer speed instead of item counts (downloads).
        transient: remove the bar when done.
        every: seconds between the lines of a `LineProgress`.
    """
    if console is not None and not console.is_terminal:
        return LineProgress(console, every=every)
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


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    stats: str
    started: float  # time.monotonic() at add_task
    first: float  # completed at add_task (a resumed run starts part way)
    printed: float  # time of the last line
    shown: float  # completed at the last line


class LineProgress:
    """Progress as plain lines, for output that is not a terminal (see `make_progress`).

    The same calls as rich's `Progress` that translate-kit makes (`add_task`, `update`, `advance`,
    `with`). A line reads `epoch 3/200: 1500/80000 (2%), 0:03:10 elapsed, about 2:45:00 left;
    G_pixel 0.054  105.3 img/s`.

    Example:
        >>> import io
        >>> from rich.console import Console
        >>> out = io.StringIO()
        >>> with LineProgress(Console(file=out, width=200), every=3600) as progress:
        ...     task = progress.add_task("eval", total=4, stats="")
        ...     progress.advance(task, 4)
        >>> [line.split(",")[0] for line in out.getvalue().splitlines()]
        ['eval: 0/4 (0%)', 'eval: 4/4 (100%)']
    """

    def __init__(self, console: Console, *, every: float = 30.0) -> None:
        self.console, self.every = console, every
        self.tasks: list[_Task] = []

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for index, task in enumerate(self.tasks):
            if task.shown != task.completed:
                self._print(index)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        now = time.monotonic()
        self.tasks.append(_Task(description, total, completed, str(fields.get("stats", "")), now, completed, now,
                                completed))
        self._print(len(self.tasks) - 1)
        return len(self.tasks) - 1

    def update(self, task_id: int, *, description: str | None = None, completed: float | None = None,
               advance: float | None = None, total: float | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        task.description = description if description is not None else task.description
        task.total = total if total is not None else task.total
        task.completed = completed if completed is not None else task.completed + (advance or 0)
        task.stats = str(fields["stats"]) if "stats" in fields else task.stats
        if "stats" in fields or time.monotonic() - task.printed >= self.every:
            self._print(task_id)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task_id: int) -> None:
        task = self.tasks[task_id]
        elapsed = time.monotonic() - task.started
        words = f"{task.description}: {task.completed:g}"
        if task.total:
            words += f"/{task.total:g} ({100 * task.completed / task.total:.0f}%)"
        words += f", {_clock(elapsed)} elapsed"
        done = task.completed - task.first
        if task.total and done > 0 and task.completed < task.total:
            words += f", about {_clock(elapsed * (task.total - task.completed) / done)} left"
        if task.stats:
            words += f"; {task.stats}"
        self.console.print(words, markup=False, highlight=False, soft_wrap=True)
        task.printed, task.shown = time.monotonic(), task.completed


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
