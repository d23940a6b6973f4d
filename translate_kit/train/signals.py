"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, stop; a second signal aborts."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["StopSignal"]


class StopSignal:
    """Whether this process was asked to stop (`received`), while `watching()`.

    Inside `watching()`, the first SIGINT or SIGTERM sets `received` and says so on `console`; the
    trainer acts on it after the step, on every rank at once. A second signal raises
    KeyboardInterrupt at once. Outside the main thread, where Python delivers no signals, watching
    does nothing.
    """

    def __init__(self, console: Any | None = None) -> None:
        self.received = False
        self.console = console

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: Any) -> None:
            if self.received:
                raise KeyboardInterrupt
            self.received = True
            if self.console is not None:
                self.console.print(
                    "[yellow]Stopping after this step and saving a checkpoint (press Ctrl-C again to abort)."
                )

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
