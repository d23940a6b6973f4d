"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, stop; a second signal aborts."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["stop_on_signal"]


@contextlib.contextmanager
def stop_on_signal(on_first: Callable[[], None]) -> Iterator[None]:
    """Inside the block, the first SIGINT or SIGTERM calls `on_first` (which notes that the run
    should stop after its current step) and a second raises KeyboardInterrupt at once. Outside
    the main thread, where Python delivers no signals, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = False

    def handle(signum: int, frame: Any) -> None:
        nonlocal received
        if received:
            raise KeyboardInterrupt
        received = True
        on_first()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
