"""The pix2pix random jitter on whole batches, on the training device.

Input and target must move together: the same crop window and the same flip for A and B of each
sample. Concatenating them along channels before one kornia augmentation makes that true by
construction (each sample still gets its own window and flip).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from translate_kit.errors import DataError

if TYPE_CHECKING:
    from translate_kit.method import BatchSpec

__all__ = ["PairedJitter", "centre_crop", "from_unit_range", "to_unit_range"]


def to_unit_range(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 `[0, 255]` -> float `[-1, 1]`."""
    return images.to(dtype).div_(127.5).sub_(1.0)


def from_unit_range(images: torch.Tensor) -> torch.Tensor:
    """float `[-1, 1]` -> uint8 `[0, 255]` (rounded, clamped), on the same device."""
    return images.detach().float().add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centred `size` x `size` window of `(..., H, W)` (the odd pixel left on the right/bottom)."""
    top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


class PairedJitter:
    """Random crop to `crop_size` and random horizontal flip, identical across `keys` per sample.

    Args:
        crop_size: side of the square crop; no crop when it equals the image size.
        flip: flip each sample left-right with probability 0.5.
        keys: the image entries of a batch that move together.

    Example:
        >>> jitter = PairedJitter(crop_size=4, flip=True)
        >>> batch = {"A": torch.rand(2, 3, 6, 6), "B": torch.rand(2, 1, 6, 6)}
        >>> {k: tuple(v.shape) for k, v in jitter(batch).items()}
        {'A': (2, 3, 4, 4), 'B': (2, 1, 4, 4)}
    """

    def __init__(self, crop_size: int, flip: bool, keys: Sequence[str] = ("A", "B")) -> None:
        self.keys = tuple(keys)
        self.crop_size = crop_size
        self.flip_enabled = flip
        self.crop: Any = None  # kornia's augmentations, made at the first batch (see _build)
        self.flip: Any = None

    def _build(self) -> None:
        # kornia (20 MB of RSS, about 0.3 s) is imported when the first batch needs it, not when a
        # trainer or a benchmark that never jitters is built.
        import kornia.augmentation as K

        self.crop = K.RandomCrop((self.crop_size, self.crop_size))
        self.flip = K.RandomHorizontalFlip(p=0.5) if self.flip_enabled else None

    def prepare(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """`Method.prepare_batch`'s default: the `keys` images (uint8) to `spec.device` in
        [-1, 1], jittered (`spec.train`) or centre-cropped, in the networks' memory format."""
        missing = [key for key in self.keys if key not in batch]
        if missing:
            raise DataError(
                f"The dataset's items have no {', '.join(missing)} image(s) (they have "
                f"{', '.join(map(str, batch))}); this method prepares paired images ({', '.join(self.keys)}). Use a "
                "dataset that gives them (aligned, paired), or a method that prepares what this dataset gives."
            )
        out = dict(batch)
        for key in self.keys:
            if isinstance(batch[key], list):  # images of different sizes (load_size = 0)
                raise DataError(
                    f"The {key} images of a batch differ in size; paired jitter needs one size: set data.load_size, "
                    "or use a method whose prepare_batch crops images of any size."
                )
            out[key] = to_unit_range(batch[key].to(spec.device, non_blocking=True))
        if spec.train:
            out = self(out)
        elif spec.crop_size is not None:
            out.update((key, centre_crop(out[key], self.crop_size)) for key in self.keys)
        memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
        for key in self.keys:
            out[key] = out[key].contiguous(memory_format=memory_format)
        return out

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.crop is None:
            self._build()
        out = dict(batch)
        images = [batch[k] for k in self.keys]
        height, width = images[0].shape[-2:]
        if height < self.crop_size or width < self.crop_size:
            raise ValueError(f"Expected images of at least {self.crop_size}x{self.crop_size}, got {height}x{width}")
        stacked = torch.cat(images, dim=1)
        if (height, width) != (self.crop_size, self.crop_size):
            stacked = self.crop(stacked)
        if self.flip is not None:
            stacked = self.flip(stacked)
        splits = torch.split(stacked, [x.shape[1] for x in images], dim=1)
        out.update(zip(self.keys, splits))
        return out
