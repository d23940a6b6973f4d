"""How much memory a forward pass needs, and how much the device has: what automatic tiling in
`Translator` decides from.

`peak_bytes(fn)` runs `fn` once and returns the most bytes its tensors held at any moment: on
CUDA from the caching allocator's own peak statistics, elsewhere by watching every tensor an
operator creates (a `TorchDispatchMode`) and when its storage is freed. Tensors that existed before
the call (weights, the input) are not counted. `available_bytes(device)` is the free memory of a
CUDA device, or the memory the operating system says is available (Linux's `MemAvailable`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["available_bytes", "peak_bytes"]


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of the storages created inside the block that are still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}  # storage address -> (weak ref, bytes)
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.live = {key: entry for key, entry in self.live.items() if not entry[0].expired()}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                # Keyed by storage: a view shares its base's bytes and must not count twice.
                self.live.setdefault(storage.data_ptr(), (StorageWeakRef(storage), storage.nbytes()))
        self.peak = max(self.peak, sum(size for _, size in self.live.values()))
        return out


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """The peak bytes of the tensors `fn()` creates on `device` (see the module docstring).

    Example:
        >>> peak_bytes(lambda: torch.zeros(256, 256) + 1, torch.device("cpu"))  # two live 256 KiB tensors
        524288
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return max(torch.cuda.max_memory_allocated(device) - before, 0)
    with _LiveTensorBytes() as tracker:
        fn()
    return tracker.peak


def available_bytes(device: torch.device) -> int | None:
    """Free memory of `device` in bytes, or None where it cannot be told (then nothing is tiled
    automatically). On CUDA: free device memory plus what torch's allocator holds unused."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
