"""The pix2pix random jitter on whole batches, on the training device.

Input and target must move together: the same crop window and the same flip for A and B of each
sample. Concatenating them along channels before one kornia augmentation makes that true by
construction (each sample still gets its own window and flip).

Label maps and instance maps (`label_keys`) move with the images but are never interpolated or
rescaled: a crop and a flip only copy pixels, and their integer ids travel through the float stack
as 16-bit pieces, which float32 holds exactly, so any integer dtype comes back bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from translate_kit.errors import DataError
from translate_kit.recipe import size_hw

if TYPE_CHECKING:
    from translate_kit.method import BatchSpec

__all__ = ["PairedJitter", "centre_crop", "from_unit_range", "to_unit_range"]


def to_unit_range(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 `[0, 255]` -> float `[-1, 1]`."""
    return images.to(dtype).div_(127.5).sub_(1.0)


def from_unit_range(images: torch.Tensor) -> torch.Tensor:
    """float `[-1, 1]` -> uint8 `[0, 255]` (rounded, clamped), on the same device."""
    return images.detach().float().add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def centre_crop(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The centred window of `(..., H, W)` of `size`, a square's side or (height, width) (the odd
    pixel left on the right/bottom).

    Example:
        >>> centre_crop(torch.arange(24).view(4, 6), (2, 4)).tolist()
        [[7, 8, 9, 10], [13, 14, 15, 16]]
    """
    height, width = size_hw(size)
    top, left = (images.shape[-2] - height) // 2, (images.shape[-1] - width) // 2
    return images[..., top : top + height, left : left + width]


class PairedJitter:
    """Random crop to `crop_size` and random horizontal flip, identical across `keys` per sample.

    Args:
        crop_size: the crop: a square's side or (height, width) (`data.crop_size`); no crop
            when it equals the image size. None: no crop at all (`prepare` of whole images for
            evaluation at stored sizes; calling the jitter then is an error).
        flip: flip each sample left-right with probability 0.5.
        keys: the image entries of a batch that move together.
        label_keys: integer maps (class ids, instance ids) that move with them: cropped and
            flipped the same way, never interpolated, and in `prepare` neither scaled to [-1, 1]
            nor given another dtype (e.g. `("A", "instances")` of the `label_maps` dataset).

    Example:
        >>> jitter = PairedJitter(crop_size=4, flip=True, label_keys=("L",))
        >>> ids = torch.zeros(2, 1, 6, 6, dtype=torch.int32)
        >>> batch = {"A": torch.rand(2, 3, 6, 6), "B": torch.rand(2, 1, 6, 6), "L": ids}
        >>> {k: tuple(v.shape) for k, v in jitter(batch).items()}
        {'A': (2, 3, 4, 4), 'B': (2, 1, 4, 4), 'L': (2, 1, 4, 4)}
        >>> jitter(batch)["L"].dtype
        torch.int32
        >>> wide = PairedJitter(crop_size=(2, 4), flip=False)
        >>> {k: tuple(v.shape) for k, v in wide({"A": torch.rand(1, 3, 6, 6), "B": torch.rand(1, 1, 6, 6)}).items()}
        {'A': (1, 3, 2, 4), 'B': (1, 1, 2, 4)}
    """

    def __init__(
        self,
        crop_size: int | tuple[int, int] | None,
        flip: bool,
        keys: Sequence[str] = ("A", "B"),
        label_keys: Sequence[str] = (),
    ) -> None:
        if set(keys) & set(label_keys):
            raise ValueError(f"Expected keys and label_keys to differ, got both {sorted(set(keys) & set(label_keys))}")
        self.keys = tuple(keys)
        self.label_keys = tuple(label_keys)
        self.crop_size = crop_size  # as given, so methods can compare it with `BatchSpec.crop_size`
        self.crop_hw = None if crop_size is None else size_hw(crop_size)
        if self.crop_hw is not None and min(self.crop_hw) < 1:
            raise ValueError(f"Expected a positive crop_size, got {crop_size!r}")
        self.flip_enabled = flip
        self.crop: Any = None  # kornia's augmentations, made at the first batch (see _build)
        self.flip: Any = None

    def _build(self) -> None:
        # kornia (20 MB of RSS, about 0.3 s) is imported when the first batch needs it, not when a
        # trainer or a benchmark that never jitters is built.
        import kornia.augmentation as K

        if self.crop_hw is None:
            raise ValueError("Expected a crop_size to jitter with, got None (whole images are prepared, not jittered)")
        self.crop = K.RandomCrop(self.crop_hw)
        self.flip = K.RandomHorizontalFlip(p=0.5) if self.flip_enabled else None

    def prepare(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """`Method.prepare_batch`'s default: the `keys` images (uint8) to `spec.device` in
        [-1, 1], jittered (`spec.train`) or centre-cropped, in the networks' memory format; the
        `label_keys` maps to `spec.device` as they are (integers), cropped and flipped with them."""
        missing = [key for key in (*self.keys, *self.label_keys) if key not in batch]
        if missing:
            raise DataError(
                f"The dataset's items have no {', '.join(missing)} image(s) (they have "
                f"{', '.join(map(str, batch))}); this method prepares paired images ({', '.join(self.keys)}). Use a "
                "dataset that gives them (aligned, paired), or a method that prepares what this dataset gives."
            )
        out = dict(batch)
        for key in (*self.keys, *self.label_keys):
            if isinstance(batch[key], list):  # images of different sizes (load_size = 0)
                raise DataError(
                    f"The {key} images of a batch differ in size; paired jitter needs one size: set data.load_size, "
                    "or use a method whose prepare_batch crops images of any size."
                )
            if key in self.label_keys and (batch[key].is_floating_point() or batch[key].is_complex()):
                raise DataError(
                    f"The {key} entries of the batch are {batch[key].dtype}, but this method reads them as label maps "
                    "of integer ids; use a dataset that lists them in its label_keys (label_maps)."
                )
            moved = batch[key].to(spec.device, non_blocking=True)
            out[key] = moved if key in self.label_keys else to_unit_range(moved)
        if spec.train:
            out = self(out)
        elif spec.crop_size is not None:
            out.update((key, centre_crop(out[key], self.crop_size)) for key in (*self.keys, *self.label_keys))
        memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
        for key in self.keys:
            out[key] = out[key].contiguous(memory_format=memory_format)
        for key in self.label_keys:
            out[key] = out[key].contiguous()
        return out

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.crop is None:
            self._build()
        out = dict(batch)
        images = [batch[k] for k in self.keys]
        labels = [batch[k] for k in self.label_keys]
        height, width = (images or labels)[0].shape[-2:]
        crop_h, crop_w = self.crop_hw  # set by _build
        if height < crop_h or width < crop_w:
            raise ValueError(f"Expected images of at least {crop_h}x{crop_w}, got {height}x{width} (height x width)")
        planes = [_label_planes(x) for x in labels]
        parts = [*images, *(p for pieces in planes for p in pieces)]
        stacked = torch.cat(parts, dim=1)  # dtypes promote (uint8 images and float32 planes -> float32)
        if (height, width) != (crop_h, crop_w):
            stacked = self.crop(stacked)
        if self.flip is not None:
            stacked = self.flip(stacked)
        splits = list(torch.split(stacked, [x.shape[1] for x in parts], dim=1))
        out.update((key, split.to(x.dtype)) for key, x, split in zip(self.keys, images, splits))
        splits = splits[len(images) :]
        for key, x, pieces in zip(self.label_keys, labels, planes):
            out[key] = _from_label_planes(splits[: len(pieces)], x.dtype)
            splits = splits[len(pieces) :]
        return out


def _label_planes(labels: torch.Tensor) -> list[torch.Tensor]:
    """Integer maps as float32 planes that a crop and a flip carry exactly: one plane for 8- and
    16-bit ids, else one per 16 bits of the two's complement, lowest first."""
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"Expected integer label maps, got {labels.dtype}")
    if labels.element_size() <= 2 and labels.dtype != torch.uint16:  # |values| < 2**16
        return [labels.float()]
    wide = labels.to(torch.int64)
    return [((wide >> (16 * i)) & 0xFFFF).float() for i in range(labels.element_size() // 2)]


def _from_label_planes(planes: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    if len(planes) == 1 and dtype != torch.uint16:
        return planes[0].to(dtype)
    wide = sum(plane.to(torch.int64) << (16 * i) for i, plane in enumerate(planes))
    return wide.to(dtype)  # two's complement: the top piece restores the sign
