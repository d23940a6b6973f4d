"""Keep freed memory in the process on the CPU, so a training step does not page-fault its
activations back in every time.

glibc's malloc serves large blocks with `mmap` and returns them to the kernel with `munmap` when
they are freed (and trims the heap's top beyond a threshold). A training step allocates and frees
hundreds of megabytes of activations and gradients, so with those defaults every step gets fresh
pages from the kernel, which zero-fills each one on first touch. Raising the two thresholds keeps
freed blocks in the heap for the next step to reuse: training steps run faster on the CPU, at a
small cost in peak memory (both measured in docs/benchmarks.md).

It is a process-wide setting of the C library, so it is the business of the command that owns
the process, not of a library object: `tkit train` sets it when it trains on the CPU (and
`tkit bench` for what it times); inference, with smaller and fewer blocks, keeps malloc's
defaults. The trainer takes back most of the memory cost by making Adam's moments before the
first step (`optim.allocate_adam_state`), so they do not land in the holes of the first step's
activations. Set `TRANSLATE_KIT_KEEP_FREED_MEMORY=0` to leave malloc as it is. Elsewhere than
Linux with glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["ENV_VAR", "keep_freed_memory"]

ENV_VAR = "TRANSLATE_KIT_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_KEEP = 1 << 30  # blocks up to 1 GiB come from the heap, and up to 1 GiB of free top is kept


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; return whether it was done.

    Nothing happens when `TRANSLATE_KIT_KEEP_FREED_MEMORY=0` or off glibc.
    """
    if os.environ.get(ENV_VAR, "1").strip() in ("0", "false", "no"):
        return False
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP))
