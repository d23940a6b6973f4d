"""From a dataset component to batches: resize once, cache, and sample in a resumable order.

The deterministic part of the paper's preprocessing (resize to `load_size`, channel conversion)
happens here, once per image, on uint8 tensors that are cached in memory; the random part (crop,
flip) happens on the training device, on whole batches (see `jitter.py`). So a facades epoch costs
no decoding after the first, and the data pipeline never stalls a step. With `data.cache =
"device"` the prepared items are stacked on the training device and batched there, without a
DataLoader (`device_cache.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from translate_kit.data.device_cache import DeviceCache, DeviceLoader, stack_items
from translate_kit.data.io import to_channels
from translate_kit.errors import DataError
from translate_kit.recipe import size_hw

if TYPE_CHECKING:
    from translate_kit.recipe import Recipe
    from translate_kit.registry import Registry
    from translate_kit.train.distributed import Distributed

__all__ = [
    "EpochSampler",
    "PreparedDataset",
    "TrainingData",
    "build_dataset",
    "collate_items",
    "make_loader",
    "nearest_resize",
    "training_data",
]


def _resize(image: torch.Tensor, size: int | tuple[int, int], *, labels: bool = False) -> torch.Tensor:
    hw = size_hw(size)
    if hw == (0, 0) or tuple(image.shape[-2:]) == hw:  # 0: keep the stored size
        return image
    if labels:  # class and instance ids must never blend: nearest neighbour, by indexing
        return nearest_resize(image, hw)
    from torchvision.transforms.v2 import functional as F

    # Bicubic with antialiasing, as the reference does with PIL; on uint8 it rounds and clamps.
    # A (height, width) that changes the aspect ratio stretches, as the reference's "fixed" mode.
    return F.resize(image, list(hw), interpolation=F.InterpolationMode.BICUBIC, antialias=True)


def nearest_resize(labels: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize a label map `(..., H, W)` to `size` (a square's side, or (height, width)) with
    nearest neighbour, by indexing.

    Output row i takes input row floor((i + 1/2) H / height) (the "nearest-exact" rule, which
    keeps a map centred), columns likewise, computed in integers, so every value of any integer
    dtype is copied exactly (torchvision's resize goes through float32, which rounds ids above 2**24).

    Example:
        >>> nearest_resize(torch.tensor([[1, 2, 3], [4, 5, 6]]), 2).tolist()
        [[1, 3], [4, 6]]
        >>> nearest_resize(torch.tensor([[1, 2, 3], [4, 5, 6]]), (1, 3)).tolist()
        [[4, 5, 6]]
    """
    out_h, out_w = size_hw(size)
    height, width = labels.shape[-2:]
    rows = (torch.arange(out_h) * 2 + 1) * height // (2 * out_h)
    cols = (torch.arange(out_w) * 2 + 1) * width // (2 * out_w)
    return labels[..., rows[:, None], cols]


class PreparedDataset(Dataset):
    """Wrap a dataset component: resize images to `load_size`, convert channels, cache the result.

    Args:
        dataset: map-style dataset of items such as `{"A": uint8 (C,H,W), "B": ..., "name": str}`.
            The keys in `channels` that an item has are images (resized bicubically, converted
            to their channel count); the keys the dataset lists in its attribute `label_keys`
            are label maps or instance maps of integer ids (resized with nearest neighbour,
            never blended, their channels and dtype kept, even when `channels` names them);
            every other entry (a clip's frame count, a domain label) passes through as the
            dataset made it.
        load_size: the size images are resized to: a square's side or (height, width) (the
            aspect ratio is not kept); 0 keeps each image's stored size.
        channels: channel count per image key, e.g. `{"A": 3, "B": 3}`.
        cache: keep prepared items in memory; "device" does too (`DataConfig.cache`), until
            `make_resident` moves them into one tensor per key on the training device.
        on_error: what an item that cannot be read does (`data.on_error`): "fail" raises its
            `DataError` when it is first read; "skip" drops it when `warm` finds it, recording
            why in `skipped`. Skipping needs every item read once before training (`warm`), so
            the set of items, and so the data order, is fixed before the first step.

    Attributes:
        skipped: `(name, reason)` of every item `warm` dropped, including those the dataset
            component dropped itself (its own `skipped` attribute, e.g. files without a partner).
        resident: the items stacked by `make_resident` (`data.cache = "device"`), which then
            serves `dataset[i]`; None before.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        load_size: int | tuple[int, int],
        channels: Mapping[str, int],
        cache: bool | Literal["device"],
        on_error: str = "fail",
    ) -> None:
        if cache not in (True, False, "device"):
            raise ValueError(f"Expected cache True, False or 'device', got {cache!r}")
        if on_error not in ("fail", "skip"):
            raise ValueError(f"Expected on_error 'fail' or 'skip', got {on_error!r}")
        if min(size_hw(load_size)) < (0 if isinstance(load_size, int) else 1):
            raise ValueError(f"Expected load_size 0, a positive int or (height, width) of them, got {load_size}")
        self.dataset = dataset
        self.load_size = load_size
        self.channels = dict(channels)
        self.on_error = on_error
        self.label_keys = tuple(getattr(dataset, "label_keys", ()))
        self.indices = list(range(len(dataset)))  # type: ignore[arg-type]
        self.skipped: list[tuple[str, str]] = list(getattr(dataset, "skipped", []))
        self.cache: dict[int, dict[str, Any]] | None = {} if cache else None
        self.resident: DeviceCache | None = None
        self._scanned = False
        if not self.indices:
            raise DataError("The dataset is empty: its folder holds no usable image.")

    def __len__(self) -> int:
        return len(self.indices)

    def prepare(self, index: int) -> dict[str, Any]:
        """Item `index` of the wrapped dataset, resized and channel-converted (uncached)."""
        item = dict(self.dataset[index])
        for key, channels in self.channels.items():
            if key in item and key not in self.label_keys:
                item[key] = to_channels(_resize(item[key], self.load_size), channels).contiguous()
        for key in self.label_keys:
            if key in item:
                item[key] = _resize(item[key], self.load_size, labels=True).contiguous()
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.resident is not None:  # positions in the stack are this dataset's indices
            return self.resident.item(index)
        source = self.indices[index]
        if self.cache is None:
            return self.prepare(source)
        item = self.cache.get(source)
        if item is None:
            item = self.cache[source] = self.prepare(source)
        return item

    def warm(self, threads: int = 2, on_item: Callable[[], None] | None = None) -> None:
        """Fill the cache, or with `on_error="skip"` read every item once to find the bad ones.

        Decoding runs on `threads` threads (torchvision's decoders release the GIL). Without a
        cache and with `on_error="fail"` there is nothing to do ahead of training.
        """
        if self._scanned or (self.cache is None and self.on_error == "fail"):
            return
        todo = [i for i in self.indices if self.cache is None or i not in self.cache]
        bad: set[int] = set()

        def attempt(index: int) -> dict[str, Any] | DataError:
            try:
                return self.prepare(index)
            except DataError as exc:
                if self.on_error == "fail":
                    raise
                return exc

        with ThreadPoolExecutor(max(1, threads)) as pool:
            for index, result in zip(todo, pool.map(attempt, todo)):
                if isinstance(result, DataError):
                    bad.add(index)
                    self.skipped.append((_item_name(self.dataset, index), str(result)))
                elif self.cache is not None:
                    self.cache[index] = result
                if on_item is not None:
                    on_item()
        self.indices = [i for i in self.indices if i not in bad]
        self._scanned = True
        if not self.indices:
            reasons = "; ".join(reason for _, reason in self.skipped[:3])
            raise DataError(
                f"Every one of the {len(bad)} item(s) of the dataset failed to load and was skipped "
                f"(data.on_error = \"skip\"); the first: {reasons}"
            )

    def make_resident(self, device: torch.device, console: Any | None = None) -> DeviceCache:
        """Stack every prepared item into one tensor per key on `device` (`data.cache = "device"`),
        in pinned host memory when it does not fit there (said once on `console`), and free the
        per-item cache: from then on `dataset[i]` is served from the stack.

        The items are read (and the bad ones skipped) first, by `warm`. Each item's host copy is
        dropped as soon as it is copied, so host memory never holds the set twice.

        Raises:
            DataError: a key's tensors differ in shape between items (`data.load_size = 0` on
                images of several sizes): its message names the key, two shapes and the fix.
        """
        if self.cache is None:
            raise ValueError("make_resident needs a cached dataset (cache=True or 'device')")
        if self.resident is None:
            self.warm()
            cache, order = self.cache, list(self.indices)
            names = [_cached_name(cache[source], self.dataset, source) for source in order]
            self.resident = stack_items(_CachedItems(cache, order), names=names, device=device, console=console,
                                        release=lambda position: cache.pop(order[position]))
            cache.clear()
        return self.resident


class _CachedItems(Sequence):
    """The cached items in dataset order, read from the cache on demand: a list of them would keep
    each alive after `make_resident` has copied it and dropped it from the cache."""

    def __init__(self, cache: dict[int, dict[str, Any]], order: list[int]) -> None:
        self.cache, self.order = cache, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> dict[str, Any]:  # type: ignore[override]
        return self.cache[self.order[position]]


def _cached_name(item: Mapping[str, Any], dataset: Any, index: int) -> str:
    name = item.get("name")
    return name if isinstance(name, str) else _item_name(dataset, index)


def _item_name(dataset: Any, index: int) -> str:
    """A readable name of item `index` for the skip report: its file when the dataset lists files."""
    for attribute in ("files", "pairs"):
        listed = getattr(dataset, attribute, None)
        if isinstance(listed, list) and index < len(listed):
            entry = listed[index]
            return str(entry[0] if isinstance(entry, tuple) else entry)
    return f"item {index}"


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch), optionally one shard of it, from an offset.

    Because the order depends only on (seed, epoch), a resumed run replays exactly the batches the
    interrupted one would have seen: `set_epoch(e, start=k)` skips the first k indices of this
    rank's shard (with several processes: per-rank batches done x per-rank batch size).

    With several processes, rank r's shard is every world_size-th index of the permutation from
    r on. So when every rank batches its shard by `batch_size / world_size`, global batch i (the
    union of the ranks' batches i) holds images `i * batch_size` to `(i + 1) * batch_size - 1` of
    the permutation: the same images as one process's batch i, for any number of processes. This,
    and the exact resume, are why the trainer uses this sampler rather than torch's
    DistributedSampler, which can only start an epoch at its beginning.

    Args:
        length: dataset size.
        seed: the run's seed.
        shuffle: permute (training) or keep order.
        rank, world_size: this process's shard when training on several processes; each shard gets
            `ceil(length / world_size)` indices (the permutation wraps around to fill the last one;
            the trainer stops each epoch after `length // batch_size` global steps, before any
            wrapped index).

    Example:
        >>> one = EpochSampler(8, seed=0)
        >>> ranks = [EpochSampler(8, seed=0, rank=r, world_size=2) for r in (0, 1)]
        >>> sorted(one.indices()[:4]) == sorted(ranks[0].indices()[:2] + ranks[1].indices()[:2])
        True
    """

    def __init__(self, length: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def shard_size(self) -> int:
        return math.ceil(self.length / self.world_size)

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        total = self.shard_size() * self.world_size
        order = (order * math.ceil(total / self.length))[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.shard_size() - self.start


def collate_items(items: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch items: tensors of one shape are stacked, as torch's default collate does; tensors
    whose shapes differ (images kept at their stored sizes, `load_size = 0`) stay a list, for the
    method's `prepare_batch` to crop; anything else becomes a list.

    Example:
        >>> batch = collate_items([{"B": torch.zeros(3, 4, 4), "name": "a"}, {"B": torch.zeros(3, 6, 4), "name": "b"}])
        >>> [tuple(t.shape) for t in batch["B"]], batch["name"]
        ([(3, 4, 4), (3, 6, 4)], ['a', 'b'])
    """
    from torch.utils.data import default_collate

    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor) and len({tuple(v.shape) for v in values}) > 1:
            out[key] = values
        else:
            out[key] = default_collate(values)
    return out


def make_loader(
    dataset: PreparedDataset, sampler: EpochSampler, *, batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """A DataLoader over `dataset` in `sampler`'s order, dropping a last incomplete batch.

    Dropping keeps every step's batch the same size (batch statistics and CUDA graphs want that);
    with batch size 1, nothing is dropped. Images of different sizes arrive as lists
    (`collate_items`).
    """
    workers = 0 if dataset.cache is not None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        collate_fn=collate_items,
        persistent_workers=workers > 0,
        # A private generator: creating an iterator must not consume the global RNG, or a resumed
        # run's dropout and jitter would drift from the uninterrupted run's.
        generator=torch.Generator().manual_seed(sampler.seed),
    )


def build_dataset(recipe: Recipe, registry: Registry, *, split: str | None = None,
                  load_size: int | tuple[int, int] | None = None,
                  cache: bool | Literal["device"] | None = None) -> PreparedDataset:
    """The recipe's dataset component, prepared: resized to `load_size` (default the recipe's; a
    square's side or (height, width), e.g. `data.crop_size` for test time), channels converted,
    cached as the recipe says. `split` replaces the dataset's split option.

    `data.cache = "device"` caches in host memory here, as `true` does: only `training_data`
    moves the training set to the device (`PreparedDataset.make_resident`); evaluation and
    validation sets, read once per evaluation, stay on the host.

    A factory that takes a keyword argument named like the [data] field `on_error` or `palette`
    gets `data.on_error`, or the registered `Palette` that `data.palette` names (None for "")."""
    data = recipe.data
    table = {"name": data.dataset, **data.options}
    options = {o.name for o in registry.get("dataset", data.dataset, where=recipe.where("data")).options}
    if split is not None:
        table["split"] = split
    # [data] fields a dataset factory takes as keyword arguments of the same name reach it:
    # on_error as it is (`paired` drops files without a partner), palette as the registered
    # Palette that data.palette names, or None (`label_maps` decodes colour label maps with it).
    if "on_error" in options:
        table.setdefault("on_error", data.on_error)
    if "palette" in options:
        at = f"{recipe.where('data')}, key 'palette'"
        table.setdefault("palette", registry.get("palette", data.palette, where=at).factory() if data.palette else None)
    dataset = registry.build("dataset", table, where=recipe.where("data"))
    return PreparedDataset(
        dataset,
        load_size=data.load_size if load_size is None else load_size,
        channels={"A": data.in_channels, "B": data.out_channels},
        cache=data.cache if cache is None else cache,
        on_error=data.on_error if split is None else "fail",
    )


@dataclass
class TrainingData:
    """A training run's data: the prepared dataset, this process's sampler and loader."""

    dataset: PreparedDataset
    sampler: EpochSampler
    loader: DataLoader | DeviceLoader  # DeviceLoader with data.cache = "device"
    steps_per_epoch: int  # global steps per epoch, the same on every rank


def training_data(
    recipe: Recipe, registry: Registry, *, dist: Distributed, pin_memory: bool, console: Any | None = None,
    device: torch.device | None = None,
) -> TrainingData:
    """Build the dataset, vet it, and make this rank's loader over its shard of every epoch.

    The cache is filled first (with `data.on_error = "skip"` every item is read to find the bad
    ones, which `console` is told about): the set of items fixes the data order, so it must be
    known before the sampler is made. With `data.cache = "device"` the items are then stacked on
    `device` (the training device; None: the CPU) and a `DeviceLoader` replaces the DataLoader.
    """
    train = recipe.train
    dataset = build_dataset(recipe, registry)
    if dataset.cache is not None or dataset.on_error != "fail":
        from translate_kit.progress import make_progress

        with make_progress(console, transient=True) as progress:
            task = progress.add_task("decode", total=len(dataset), stats="")
            dataset.warm(threads=max(1, torch.get_num_threads()), on_item=lambda: progress.advance(task))
    if dataset.skipped and console is not None:
        from rich.markup import escape

        shown = "".join(f"\n  {escape(name)}: {escape(reason)}" for name, reason in dataset.skipped[:5])
        more = f"\n  ... and {len(dataset.skipped) - 5} more" if len(dataset.skipped) > 5 else ""
        console.print(
            f"[yellow]Skipped {len(dataset.skipped)} unusable item(s) (data.on_error = \"skip\"); {len(dataset)} "
            f"remain. The list is in skipped_inputs.txt of the run folder.{shown}{more}"
        )
    if not dist.same_everywhere(len(dataset)):
        raise DataError(
            f"The {dist.world_size} processes found different numbers of usable images (rank {dist.rank}: "
            f"{len(dataset)}): an image that failed to read on one machine only, or data folders that differ "
            "between machines. Every process must see the same files."
        )
    if len(dataset) < train.batch_size:
        raise DataError(
            f"The dataset has {len(dataset)} image(s), fewer than train.batch_size = {train.batch_size}; add "
            "images or lower the batch size."
        )
    # Each rank reads its own shard of the epoch's permutation, batch_size / world_size images at
    # a time. Not torch's DistributedSampler: EpochSampler restarts an epoch at any offset (exact
    # resume), and its shards make global batch i hold the same images for any number of
    # processes (see its docstring), so a run may resume on a different number of GPUs.
    sampler = EpochSampler(len(dataset), seed=recipe.run.seed, rank=dist.rank, world_size=dist.world_size)
    rank_batch_size = train.batch_size // dist.world_size
    loader: DataLoader | DeviceLoader
    if recipe.data.cache == "device":
        resident = dataset.make_resident(torch.device("cpu") if device is None else torch.device(device), console)
        loader = DeviceLoader(resident, sampler, batch_size=rank_batch_size)
    else:
        loader = make_loader(dataset, sampler, batch_size=rank_batch_size, num_workers=recipe.data.num_workers,
                             pin_memory=pin_memory)
    return TrainingData(dataset, sampler, loader, len(dataset) // train.batch_size)
