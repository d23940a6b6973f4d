"""Super-resolution data: MATLAB-compatible bicubic resizing, SR image folders, the bicubic baseline.

- `imresize`: MATLAB's `imresize(..., 'bicubic')` in torch (antialiased downscaling, cubic kernel
  a = -0.5, symmetric boundary), on any device, batched. Published SR numbers are measured on LR
  images made this way; PIL's and OpenCV's bicubic differ by up to 20 grey levels, torch's own
  `interpolate(mode="bicubic")` uses a = -0.75 and no antialiasing, so neither can stand in.
- `sr_images`: a dataset of high-resolution images (`"B"`), optionally with stored low-resolution
  partners (`"A"`), in the layout of the SR benchmarks (`Set5/HR`, `Set5/LRx4`) and of flat
  training folders (`train_T91/*.png`).
- `bicubic`: a parameter-free generator that upsamples with `imresize`, the baseline every SR
  paper reports.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from translate_kit.api import (
    DataError,
    check_image_batch,
    list_images,
    read_image,
    register_dataset,
    register_generator,
)

__all__ = ["BicubicUpsampler", "SRImageDataset", "bicubic", "imresize", "sr_images"]


# ------------------------------------------------------------------------------------------------
# imresize


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic'), support [-2, 2]."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = 1.5 * ax3 - 2.5 * ax2 + 1
    far = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return torch.where(ax <= 1, near, torch.where(ax <= 2, far, torch.zeros_like(ax)))


def _contributions(in_size: int, out_size: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights `(out, taps)` (float64, each row sums to 1) and 0-based input indices `(out, taps)`.

    Output pixel i (1-based, as MATLAB counts) sits at input coordinate u = i / s + (1 - 1/s) / 2.
    Downscaling (s < 1) stretches the kernel by 1/s and scales it by s (antialiasing). Indices
    outside the image are mirrored with the edge pixel repeated (MATLAB's 'symmetric').
    """
    width = 4.0 / scale if scale < 1 else 4.0
    taps = math.ceil(width) + 2
    u = torch.arange(1, out_size + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)  # 1-based
    distance = u[:, None] - index
    weights = scale * _cubic(scale * distance) if scale < 1 else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    period = 2 * in_size
    zero_based = torch.remainder(index.long() - 1, period)
    zero_based = torch.where(zero_based < in_size, zero_based, period - 1 - zero_based)
    return weights, zero_based


@functools.lru_cache(maxsize=64)
def _resize_matrix(in_size: int, out_size: int, scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The `(out, in)` matrix that resizes one dimension (mirrored taps summed into their pixel).

    A dense matrix wastes multiplications on zeros, but BLAS (and a GPU) make up for it: on 2 CPU
    cores it beats a gather of the taps 3-10x at every size tried, from 96 px patches to DIV2K's
    2040 px images (whose matrix is 510 x 2040).
    """
    weights, index = _contributions(in_size, out_size, scale)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64).scatter_add_(1, index, weights)
    return matrix.to(device=device, dtype=dtype)


def _resize_dim(x: torch.Tensor, dim: int, out_size: int, scale: float) -> torch.Tensor:
    """Resize dimension `dim` (-2: height, -1: width) of `x`."""
    matrix = _resize_matrix(x.shape[dim], out_size, scale, x.dtype, x.device)
    return matrix @ x if dim == -2 else x @ matrix.T


def _pair(value: float | int | tuple, what: str) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"Expected one {what} or a (height, width) pair, got {value!r}")
        return tuple(value)
    return (value, value)


def imresize(
    images: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    round_each_pass: bool = False,
) -> torch.Tensor:
    """Resize images as MATLAB's `imresize(images, scale, 'bicubic')` does.

    Bicubic convolution with Keys' kernel (a = -0.5); when downscaling, the kernel is stretched by
    1/scale (antialiasing); borders are mirrored with the edge pixel repeated ('symmetric'); the
    weights of each output pixel sum to 1. The two dimensions are resized one after the other, the
    one with the smaller scale first (height first when they are equal), as MATLAB does. The
    weights are built once per (input size, output size, scale, dtype, device) and applied as two
    matrix products, so a batch of training patches costs two small products.

    Args:
        images: `(..., C, H, W)` (any leading dimensions; `(H, W)` works too), float in any range
            ([0, 1], [-1, 1], 0..255: the resize is linear and its weights sum to 1, so no range
            is assumed and nothing is clamped), or uint8.
        scale: factor for both dimensions, or `(height factor, width factor)`. The output side is
            `ceil(side * scale)`, as in MATLAB (products within 1e-9 above an integer count as that
            integer, so floating-point noise such as `50 * 1.1 = 55.00000000000001` adds no pixel).
        size: the output `(height, width)` (or one int for both) instead of `scale`; each
            dimension's factor is then output / input, as in MATLAB.
        round_each_pass: uint8 only: round to uint8 after each of the two passes, as MATLAB's
            `imresize` does on a uint8 image (the EDSR "benchmark" LR images, such as Set5's
            LR_bicubic, were made so). By default uint8 is rounded once, at the end.

    Returns:
        The resized images, `(..., C, H', W')`, of the input's dtype. Floats are computed in their
        own precision (float16 and bfloat16 in float32), also under autocast. uint8 is computed in
        float64 (float32 on devices without float64) and rounded (half away from zero) and clamped
        to 0..255 at the end: MATLAB's `im2uint8(imresize(im2double(x), ...))`, the recipe of
        BasicSR's LR images.
        The two uint8 recipes differ by one grey level on about 10 % of the values of a x4
        downscaling (0.001 dB of bicubic-baseline PSNR).

    Example:
        >>> hr = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> imresize(hr, 1 / 2)
        tensor([[[[ 2.3047,  4.3828],
                  [10.6172, 12.6953]]]])
        >>> tuple(imresize(torch.zeros(16, 3, 96, 96), 1 / 4).shape), tuple(imresize(hr, 4).shape)
        ((16, 3, 24, 24), (1, 1, 16, 16))
        >>> imresize(torch.full((3, 5, 7), 200, dtype=torch.uint8), size=(10, 3)).unique()
        tensor([200], dtype=torch.uint8)
    """
    if (scale is None) == (size is None):
        raise ValueError("Pass exactly one of scale and size")
    if images.ndim < 2:
        raise ValueError(f"Expected images (..., H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"Expected float or uint8 images, got {images.dtype}")
    in_h, in_w = images.shape[-2:]
    if in_h == 0 or in_w == 0:
        raise ValueError(f"Cannot resize an empty image of shape {tuple(images.shape)}")
    if scale is not None:
        scales = tuple(float(s) for s in _pair(scale, "scale"))
        if not all(s > 0 and math.isfinite(s) for s in scales):
            raise ValueError(f"Expected positive scale factors, got {scale!r}")
        out = tuple(max(1, math.ceil(side * s - 1e-9)) for side, s in zip((in_h, in_w), scales))
    else:
        out = tuple(int(s) for s in _pair(size, "size"))  # type: ignore[arg-type]
        if not all(s > 0 for s in out):
            raise ValueError(f"Expected a positive output size, got {size!r}")
        scales = (out[0] / in_h, out[1] / in_w)

    is_uint8 = images.dtype == torch.uint8
    x = images
    if is_uint8:
        x = x.to(torch.float32 if images.device.type == "mps" else torch.float64)
    elif images.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    # The smaller factor first; sorted() is stable, so height first on a tie.
    passes = sorted([(-2, out[0], scales[0]), (-1, out[1], scales[1])], key=lambda p: p[2])
    # Under autocast a matmul would run in float16/bfloat16 (about half a grey level of error):
    # the resize keeps its own precision.
    autocast = torch.is_autocast_enabled(x.device.type)
    with torch.autocast(x.device.type, enabled=False) if autocast else contextlib.nullcontext():
        for dim, out_size, factor in passes:
            if x.shape[dim] == out_size and factor == 1:
                continue  # the identity (MATLAB's weights for scale 1 are exactly that)
            x = _resize_dim(x, dim, out_size, factor)
            if is_uint8 and round_each_pass:
                x = _round_uint8(x)
    if is_uint8:
        return _round_uint8(x).to(torch.uint8)
    return x.to(images.dtype)


def _round_uint8(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero (MATLAB's uint8 conversion) and clamp to 0..255, still as float."""
    return torch.floor(x + 0.5).clamp_(0, 255)


# ------------------------------------------------------------------------------------------------
# Datasets

_AUTO = "auto"


class SRImageDataset(Dataset):
    """High-resolution images, each optionally with its stored low-resolution partner.

    Item: `{"B": HR uint8 (C, H, W), "name": stem, "grey": bool}`, plus `"A": LR uint8 (C, H/scale,
    W/scale)` when an LR folder is given. `grey` marks an HR whose original is one-channel: a
    one-channel file, or a stem in `grey` (a grey original that a copy stores as RGB); Y-channel
    metrics score it on its raw channel (`translate_kit.eval.metrics.rgb_to_y`). The HR is cropped top-left to multiples of `scale` ("mod-crop",
    the SR convention), so an LR made from it has exactly HR/scale pixels per side. Images keep
    their stored size and channel count (1 for grey files); the core converts channels.

    An LR file is the partner of the HR file of the same stem, or of the stem without a trailing
    `x{scale}` (`LRx4/babyx4.png` is the partner of `HR/baby.png`: the DIV2K/EDSR naming).
    A file without a partner is an error, or with `on_error="skip"` is left out and listed in
    `skipped`. An LR whose size is not HR/scale raises a `DataError` naming both files and sizes
    when the item is read (the core drops it with `data.on_error = "skip"`).
    """

    def __init__(
        self, hr_folder: Path, lr_folder: Path | None = None, *, scale: int = 4, on_error: str = "fail",
        grey: Iterable[str] = (), min_size: int = 0,
    ) -> None:
        if scale < 1 or min_size < 0:
            raise ValueError(f"Expected scale >= 1 and min_size >= 0, got {scale} and {min_size}")
        self.hr_folder, self.lr_folder, self.scale = Path(hr_folder), lr_folder, scale
        self.grey, self.min_size = frozenset(grey), min_size
        hr_files = list_images(self.hr_folder, what="high-resolution images")
        self.skipped: list[tuple[str, str]] = []
        if lr_folder is None:
            self.pairs: list[tuple[Path, Path | None]] = [(path, None) for path in hr_files]
            return
        lr_files = list_images(lr_folder, what="low-resolution images")
        by_stem = {path.stem: path for path in hr_files}
        partner: dict[str, Path] = {}
        orphans: list[Path] = []
        suffix = f"x{scale}"
        for path in lr_files:
            stem = path.stem
            if stem not in by_stem and stem.lower().endswith(suffix) and stem[: -len(suffix)] in by_stem:
                stem = stem[: -len(suffix)]
            if stem in by_stem and stem not in partner:
                partner[stem] = path
            else:
                orphans.append(path)
        lonely = [path for path in hr_files if path.stem not in partner]
        unmatched = sorted([*lonely, *orphans], key=str)
        if unmatched and on_error != "skip":
            shown = ", ".join(str(path) for path in unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
            raise DataError(
                f"{len(unmatched)} file(s) in {self.hr_folder} and {lr_folder} have no partner with the same name: "
                f"{shown}. Every high-resolution image needs a low-resolution one of the same stem (or the stem "
                f"followed by '{suffix}'); remove or add the missing ones, set data.on_error = \"skip\" to leave "
                "them out, or set data.lr_dir = \"\" to make the low-resolution images from the high-resolution ones."
            )
        self.skipped = [(str(path), "no partner with the same name in the other folder") for path in unmatched]
        self.pairs = [(path, partner[path.stem]) for path in hr_files if path.stem in partner]
        if not self.pairs:
            raise DataError(f"No file in {self.hr_folder} has a low-resolution partner in {lr_folder}.")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | bool]:
        hr_path, lr_path = self.pairs[index]
        hr = read_image(hr_path)
        height, width = hr.shape[-2:]
        height, width = height - height % self.scale, width - width % self.scale
        if height == 0 or width == 0:
            raise DataError(
                f"Image {hr_path} is {hr.shape[-1]}x{hr.shape[-2]} (WxH), smaller than the scale {self.scale}."
            )
        if min(height, width) < self.min_size:
            raise DataError(
                f"Image {hr_path} is {width}x{height} (WxH) after the crop to multiples of {self.scale}, smaller than "
                f"data.min_size {self.min_size}; set data.on_error = \"skip\" to leave such images out."
            )
        item: dict[str, torch.Tensor | str | bool] = {
            "B": hr[..., :height, :width], "name": hr_path.stem, "grey": hr.shape[0] == 1 or hr_path.stem in self.grey,
        }
        if lr_path is not None:
            lr = read_image(lr_path)
            expected = (height // self.scale, width // self.scale)
            if tuple(lr.shape[-2:]) != expected:
                raise DataError(
                    f"Low-resolution image {lr_path} is {lr.shape[-1]}x{lr.shape[-2]} (WxH), but its high-resolution "
                    f"partner {hr_path} is {hr.shape[-1]}x{hr.shape[-2]}, mod-cropped to {width}x{height}, so "
                    f"x{self.scale} needs {expected[1]}x{expected[0]}. Check data.scale, or the files."
                )
            item["A"] = lr
        return item


# Benchmark images whose original file is one-channel, which common copies store as RGB. Set14's
# `bridge` is the one that moves a published figure (bicubic x4: 26.09 dB scored in Y, 25.99 on its
# raw channel, the published 26.00; see docs/super-resolution.md).
_GREY_ORIGINALS: dict[str, tuple[str, ...]] = {"Set14": ("bridge",)}


def _sr_folders(root: str, split: str, hr: str, lr: str, scale: int) -> tuple[Path, Path | None]:
    base = Path(root) / split if split else Path(root)
    if hr == _AUTO:
        hr_folder = base / "HR" if (base / "HR").is_dir() else base
    else:
        hr_folder = base / hr if hr else base
    if lr == _AUTO:
        candidate = base / f"LRx{scale}"
        lr_folder = candidate if candidate.is_dir() else None
    elif lr:
        lr_folder = base / lr
        if not lr_folder.is_dir():
            raise DataError(f"Low-resolution folder {lr_folder} does not exist (data.lr_dir = {lr!r}); set data.lr_dir = \"\" "
                            "to make the low-resolution images from the high-resolution ones.")
    else:
        lr_folder = None
    if lr_folder is not None and lr_folder.resolve() == hr_folder.resolve():
        raise DataError(f"The high- and low-resolution folders are the same, {hr_folder}; check data.hr_dir and data.lr_dir.")
    return hr_folder, lr_folder


@register_dataset()
def sr_images(
    *,
    root: str,
    split: str = "train",
    hr_dir: str = _AUTO,
    lr_dir: str = _AUTO,
    scale: int = 4,
    grey: list[str] | None = None,
    min_size: int = 0,
    on_error: Literal["fail", "skip"] = "fail",
) -> SRImageDataset:
    """Super-resolution images: HR from <split>/HR/ or <split>/, with LR from <split>/LRx<scale>/ if present.

    Items are `{"B": HR, "name": stem, "grey": bool}`, plus `"A": LR` where a low-resolution folder is used; the
    HR is cropped top-left to multiples of `scale` (the SR "mod-crop" convention) and every LR must
    be exactly HR/scale per side. Images keep their stored size; the method crops patches, and
    makes the LR of an HR without one (MATLAB bicubic, `imresize`).

    Folders (`split` "" means root itself):

    - `hr_dir = "auto"` (default): root/<split>/HR/ if that folder exists, else root/<split>/ itself
      (a flat folder of HR images, such as `train_T91`). "" forces root/<split>/; any other name
      is the subfolder root/<split>/<hr>/.
    - `lr_dir = "auto"` (default): root/<split>/LRx<scale>/ if that folder exists, else no LR (HR only).
      "" forces HR only; any other name (or relative path, `LR_bicubic/X4`) is that subfolder,
      which must exist. An LR file partners the HR of the same stem, or of the stem without a
      trailing `x<scale>` (`babyx4.png`).

    So one recipe serves training and evaluation with no folder options: `root =
    "../shared/data/sr"`, `split = "train_T91"` trains on the flat T91 folder (HR only), and
    `tkit eval RUN --split Set5` reads Set5/HR/ with its stored Set5/LRx4/ (the published LR
    images, which the metrics must be measured on). `on_error` (set from data.on_error) decides
    whether a file without a partner fails or is skipped.

    `grey` lists the stems of images whose original file is one-channel but which are stored as
    RGB (they are scored on their raw channel in Y, as the published figures were). None: the
    known ones of the standard benchmark set the split is named after (`Set14`: `bridge`, which
    the original Set14 distributes as a grey file and BasicSR-style copies store as RGB).

    `min_size`: an image whose shorter side (after the mod-crop) is below it is a `DataError`;
    with `data.on_error = "skip"` it is left out and listed, so a set with a few images smaller
    than the training patches (T91's 78x78 `t20` under 96-pixel patches) trains on the rest.
    """
    if scale < 1:
        raise ValueError(f"Expected scale >= 1, got {scale}")
    hr_folder, lr_folder = _sr_folders(root, split, hr_dir, lr_dir, scale)
    if grey is None:
        grey = list(_GREY_ORIGINALS.get(Path(split).name, ()))
    return SRImageDataset(hr_folder, lr_folder, scale=scale, on_error=on_error, grey=grey, min_size=min_size)


# ------------------------------------------------------------------------------------------------
# The bicubic baseline


class BicubicUpsampler(nn.Module):
    """MATLAB-bicubic upsampling by `scale` (`imresize`): the baseline of every SR table.

    No parameters. Computes in float (float32 for half-precision inputs, returned in the input's
    dtype), does not clamp (the method clamps what it returns).

    Attributes:
        scale: the upscaling factor (`Upscaling`).
        size_multiple, min_size: 1 (`SizeConstrained`): any input size.

    Shape:
        (B, C, H, W) in [-1, 1] -> (B, C, scale H, scale W), about [-1, 1] (bicubic overshoots a little).
    """

    size_multiple = 1
    min_size = 1

    def __init__(self, channels: int = 3, scale: int = 4) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.channels, 1)
        return imresize(x, self.scale)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, scale={self.scale}"


@register_generator(tiny={})
def bicubic(*, in_channels: int = 3, out_channels: int = 3, scale: int = 4) -> BicubicUpsampler:
    """Bicubic upsampling (MATLAB `imresize`), the parameter-free super-resolution baseline."""
    if in_channels != out_channels:
        raise ValueError(
            f"Expected in_channels == out_channels for bicubic upsampling, got {in_channels} and {out_channels}"
        )
    if scale < 1:
        raise ValueError(f"Expected scale >= 1, got {scale}")
    return BicubicUpsampler(in_channels, scale)
