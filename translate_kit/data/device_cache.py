"""`data.cache = "device"`: the whole training set as one tensor per key on the training device.

A cached dataset (`data.cache = true`) still costs, at every step, a Python loop over the batch's
items, a `torch.stack` on the host and a host-to-device copy. When the step itself is short (pix2pix
at batch 1 on a GPU takes a few milliseconds), that is a large part of it. Here the prepared uint8
items are copied once into one tensor per key on the device (`(N, C, H, W)` for images), and a batch
is one `index_select` per key with an index tensor already on the device: no DataLoader, no worker,
no host synchronisation. The random jitter (crop, flip) runs on the device as before, in the
method's `prepare_batch`, on batches equal bit for bit to those `collate_items` makes.

When the set does not fit in the device's free memory (see `fits_on_device`), it is said once and
the stacked tensors stay in pinned host memory instead: batches are still gathered without a
DataLoader, then copied to the device by `prepare_batch` as a cached DataLoader's are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from translate_kit.errors import DataError

if TYPE_CHECKING:
    from translate_kit.data.loading import EpochSampler

__all__ = [
    "DEVICE_SHARE",
    "DeviceCache",
    "DeviceLoader",
    "device_memory_free",
    "fits_on_device",
    "format_bytes",
    "stack_items",
]

# The share of the device's free memory the cached set may take. When the set is stacked, the
# trainer has already placed the networks and their Adam states on the device, but not the
# activations of a step, its gradients' temporaries or a captured CUDA graph's pool, which for a
# large model or batch are as big as the weights and states together; and the allocator needs slack
# against fragmentation. Falling back to host memory only costs a copy per batch, while running out
# of memory stops the run, so the rule is cautious: at most half of what is free.
DEVICE_SHARE = 0.5


def device_memory_free(device: torch.device) -> int | None:
    """Free bytes on `device` as the driver counts them (CUDA), or None where nobody can tell
    (the CPU, whose "device" memory is the host's, and other backends)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def fits_on_device(need: int, device: torch.device) -> tuple[bool, int | None]:
    """Whether `need` bytes may be cached on `device` (at most `DEVICE_SHARE` of its free memory),
    and the free bytes the decision used (None: not measurable, assumed to fit).

    Example:
        >>> fits_on_device(10**12, torch.device("cpu"))
        (True, None)
    """
    free = device_memory_free(device)
    return (free is None or need <= DEVICE_SHARE * free), free


def format_bytes(count: int) -> str:
    """`count` bytes in MiB below a GiB, else in GiB.

    Example:
        >>> format_bytes(196_310_400), format_bytes(3 * 2**30)
        ('187.2 MiB', '3.00 GiB')
    """
    if count < 2**30:
        return f"{count / 2**20:.1f} MiB"
    return f"{count / 2**30:.2f} GiB"


@dataclass
class DeviceCache:
    """Every item of a dataset, key by key: tensors stacked along a new first dimension on one
    device, everything else (names, numbers, nested values) in host lists.

    Attributes:
        keys: the items' keys in their order (a batch keeps it, as `collate_items` does).
        tensors: key -> `(N, ...)` tensor, item p at row p, each with the items' dtype.
        values: key -> the N items' non-tensor values.
        on_device: whether `tensors` are on the device asked for (False: the host fallback).
    """

    keys: tuple[str, ...]
    tensors: dict[str, torch.Tensor]
    values: dict[str, list[Any]]
    on_device: bool

    @property
    def device(self) -> torch.device:
        """Where the stacked tensors (and so the batches' index tensors) live."""
        return next(iter(self.tensors.values())).device if self.tensors else torch.device("cpu")

    def __len__(self) -> int:
        tensors = next(iter(self.tensors.values()), None)
        return len(tensors) if tensors is not None else len(next(iter(self.values.values())))

    def item(self, position: int) -> dict[str, Any]:
        """Item `position` as the dataset made it: its tensors copied to the host (a copy, so an
        in-place change of the item cannot reach the cache)."""
        return {key: self.tensors[key][position].to("cpu", copy=True) if key in self.tensors
                else self.values[key][position] for key in self.keys}

    def batch(self, positions: torch.Tensor, rows: Sequence[int]) -> dict[str, Any]:
        """The items at `positions` batched as `collate_items` batches them: tensors `(B, ...)`
        gathered where they live, other values collated on the host.

        Args:
            positions: int64 tensor of item positions, on `device`.
            rows: the same positions as host integers, for the host values (reading them back
                from a GPU tensor would wait for the device at every step).
        """
        from torch.utils.data import default_collate

        out: dict[str, Any] = {}
        for key in self.keys:
            if key in self.tensors:
                stacked = self.tensors[key]
                if stacked.is_pinned():  # the host fallback: gathered into pinned memory, like a DataLoader's
                    # batch with pin_memory, so that prepare_batch's copy to the GPU stays asynchronous
                    pinned = torch.empty((len(rows), *stacked.shape[1:]), dtype=stacked.dtype, pin_memory=True)
                    out[key] = torch.index_select(stacked, 0, positions, out=pinned)
                else:
                    out[key] = stacked.index_select(0, positions)
            else:
                out[key] = default_collate([self.values[key][row] for row in rows])
        return out


def stack_items(items: Sequence[Mapping[str, Any]], *, names: Sequence[str], device: torch.device,
                console: Any | None = None, release: Any | None = None) -> DeviceCache:
    """Stack prepared items into a `DeviceCache` on `device` (the host, pinned, when it does not fit).

    Args:
        items: the prepared items, in the dataset's order; every tensor-valued key must have one
            shape and dtype across items.
        names: a readable name per item, for the error about differing shapes.
        device: where to put the tensors; on the CPU they simply stay in host memory.
        console: told, once, when the set does not fit on `device`.
        release: called with an item's position once that item is copied, so its host copy can be
            freed at once (the peak memory stays one copy of the set plus one item).

    Raises:
        DataError: a key's tensors differ in shape or dtype (images kept at their stored sizes,
            `data.load_size = 0`), or their types differ between items.
    """
    first = items[0]
    keys = tuple(first)
    tensor_keys = [key for key in keys if isinstance(first[key], torch.Tensor)]
    _check_stackable(items, names, keys, tensor_keys)
    need = sum(len(items) * first[key].numel() * first[key].element_size() for key in tensor_keys)
    fits, free = fits_on_device(need, device)
    target = device
    if not fits:
        assert free is not None
        _say_host(console, device, f"they need {format_bytes(need)}, more than {DEVICE_SHARE:.0%} of the "
                  f"{format_bytes(free)} free there (the rest is left for the training step)")
        target = torch.device("cpu")
    try:
        tensors = _allocate(items, tensor_keys, target)
    except torch.OutOfMemoryError:
        _say_host(console, device, f"allocating {format_bytes(need)} there ran out of memory")
        target = torch.device("cpu")
        tensors = _allocate(items, tensor_keys, target)
    values: dict[str, list[Any]] = {key: [] for key in keys if key not in tensors}
    for position, item in enumerate(items):
        for key in keys:
            if key in tensors:
                tensors[key][position].copy_(item[key], non_blocking=False)
            else:
                values[key].append(item[key])
        if release is not None:
            release(position)
    return DeviceCache(keys, tensors, values, on_device=target == device)


def _allocate(items: Sequence[Mapping[str, Any]], keys: Sequence[str], target: torch.device) -> dict[str, torch.Tensor]:
    pin = target.type == "cpu" and torch.cuda.is_available()
    return {key: torch.empty((len(items), *items[0][key].shape), dtype=items[0][key].dtype, device=target,
                             pin_memory=pin) for key in keys}


def _say_host(console: Any | None, device: torch.device, why: str) -> None:
    if console is None:
        return
    where = "pinned host memory" if torch.cuda.is_available() else "host memory"
    console.print(f"[yellow]data.cache = \"device\": the training set does not fit on {device}: {why}. It is kept "
                  f"in {where} instead, and each batch is copied to the device (slower; data.cache = true uses "
                  "host memory too, with a DataLoader).", highlight=False)


def _check_stackable(items: Sequence[Mapping[str, Any]], names: Sequence[str], keys: tuple[str, ...],
                     tensor_keys: Sequence[str]) -> None:
    first = items[0]
    for position, item in enumerate(items):
        if tuple(item) != keys:
            raise DataError(
                f"data.cache = \"device\" needs every item to have the same keys: {names[0]!r} has {list(keys)}, "
                f"{names[position]!r} has {list(item)}. Use data.cache = true."
            )
        for key in keys:
            if (key in tensor_keys) != isinstance(item[key], torch.Tensor):
                raise DataError(
                    f"data.cache = \"device\" needs the item key {key!r} to be a tensor in every item or in none; "
                    f"it is {type(first[key]).__name__} in {names[0]!r} and {type(item[key]).__name__} in "
                    f"{names[position]!r}. Use data.cache = true."
                )
        for key in tensor_keys:
            if item[key].shape != first[key].shape:
                raise DataError(
                    f"data.cache = \"device\" stacks every item's {key!r} into one tensor, so they must all have "
                    f"one shape, but {names[0]!r} has {tuple(first[key].shape)} and {names[position]!r} has "
                    f"{tuple(item[key].shape)} (images kept at their stored sizes, data.load_size = 0?). Set a "
                    "fixed data.load_size (a side or [height, width]), or use data.cache = true, which caches "
                    "images of any size."
                )
            if item[key].dtype != first[key].dtype:
                raise DataError(
                    f"data.cache = \"device\" stacks every item's {key!r} into one tensor, so they must all have "
                    f"one dtype, but {names[0]!r} has {first[key].dtype} and {names[position]!r} has "
                    f"{item[key].dtype}. Use data.cache = true."
                )


class DeviceLoader:
    """Batches of a `DeviceCache` in a sampler's order: a drop-in for the training DataLoader.

    Each `iter()` walks the sampler's current epoch from its current start (`set_epoch(epoch,
    start)`), `batch_size` positions at a time, dropping an incomplete last batch as the DataLoader
    does (`drop_last=True`). The epoch's positions go to the device in one copy at `iter()`; each
    batch is then a slice of them and one `index_select` per key. It draws no random number (the
    sampler's order comes from its own generator), so resumed runs stay exact.

    Args:
        cache: the stacked items.
        sampler: this rank's `EpochSampler` (its shard and offset).
        batch_size: items per batch (per rank).
    """

    def __init__(self, cache: DeviceCache, sampler: EpochSampler, *, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1, got {batch_size}")
        self.cache, self.sampler, self.batch_size = cache, sampler, batch_size

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = list(self.sampler)
        count = len(order) // self.batch_size
        positions = torch.tensor(order[: count * self.batch_size], dtype=torch.int64).to(self.cache.device)
        for start in range(0, count * self.batch_size, self.batch_size):
            end = start + self.batch_size
            yield self.cache.batch(positions[start:end], order[start:end])
