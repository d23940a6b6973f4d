"""Per-pixel image metrics (L1, MSE, PSNR, SSIM) and the FCN-score confusion matrix.

Everything here streams: `PixelMetrics` and `ConfusionMatrix` take one batch at a time and keep only
scalars per image (pixel metrics) or one `(K, K)` count matrix (FCN-score), never the images.

Conventions:
    - Images are float `(B, C, H, W)` in `[0, data_range]` (`[0, 1]` by default). A generator's tanh
      output in `[-1, 1]` becomes `(x + 1) / 2`. Values are checked (one device sync per call).
    - Metrics are computed in float64 (float32 on MPS, which has no float64), whatever the input
      precision, so the numbers do not depend on AMP or the device. The cost is negligible next to the
      generator's forward pass.
    - Every per-image metric averages over channels and pixels; split-level numbers are means over
      images (not PSNR of the pooled MSE).
    - PSNR of two identical images is `inf` (MSE 0), not a capped value: a ground-truth-vs-itself
      sanity run shows `inf`. `json.dumps` writes it as `Infinity`; convert if strict JSON is needed.
    - PSNR is the closed form `10 · log10(L² / MSE)` of each image's own MSE. `kornia.metrics.psnr` uses
      the same formula but pools one MSE over the whole tensor, batch included (the PSNR of the pooled
      MSE), so it is not called; see `psnr`.
    - SSIM follows Wang et al. (2004) and their MATLAB `ssim_index`: an 11×11 Gaussian window with
      σ = 1.5 (sampled, normalised), K1 = 0.01, K2 = 0.03, C1 = (K1·L)², C2 = (K2·L)², local moments
      as Gaussian-weighted population statistics, and **'valid' borders**: the SSIM map is computed
      only where the whole window fits inside the image, so it is `(H - w + 1) × (W - w + 1)` and no
      padding value ever enters the score. The per-image value is the mean of that map over channels
      and positions. The map is kornia's: `kornia.metrics.ssim(pred, target, window_size, max_val=L,
      eps=0.0, padding="valid")` computes it, and this module only checks the inputs, casts them to the
      compute dtype and averages. kornia's window has σ fixed at 1.5, so for another `sigma` the map
      is assembled from kornia's pieces instead: `kornia.filters.get_gaussian_kernel1d(window_size,
      sigma)` and `kornia.filters.filter2d_separable(..., padding="valid")` give the local moments,
      combined with kornia's SSIM formula (the same operations, so σ = 1.5 gives the same numbers both
      ways). `eps=0.0` keeps kornia's denominator term out: identical images score exactly 1. This
      also equals scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=L)` (which crops the same border). Images must be at
      least `window_size` pixels on each side. kornia is imported on first use, not with this module.

FCN-score (pix2pix, `scripts/eval_cityscapes/util.py`): one confusion matrix `hist[true, pred]` over
the whole split, then

    pixel accuracy        = diag.sum() / hist.sum()
    mean class accuracy   = nanmean(diag / hist.sum(1))
    mean class IoU        = nanmean(diag / (hist.sum(1) + hist.sum(0) - diag))

A class absent from both ground truth and prediction gives 0/0 = NaN in both per-class terms and is
left out of both means. A class that appears only in the prediction has no ground-truth pixels: its
accuracy is 0/0 = NaN (left out of the mean class accuracy), while its IoU is 0 / pred_pixels = 0,
which *is* counted and lowers the mean IoU. A class only in the ground truth has accuracy 0 and IoU 0,
both counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = [
    "PSNR",
    "SSIM",
    "ClassScore",
    "ConfusionMatrix",
    "FCNScore",
    "PixelMetrics",
    "l1",
    "mse",
    "psnr",
    "rgb_to_y",
    "ssim",
]

PIXEL_METRICS = ("l1", "mse", "psnr", "ssim")


# --------------------------------------------------------------------------------------------------
# input checks


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.device.type == "mps" else torch.float64


def _check_pair(pred: torch.Tensor, target: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (pred, target) pair of image batches and return both in the compute dtype."""
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Expected {name} to be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"Expected {name} of shape (B, C, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"Expected {name} to be a floating-point tensor in [0, {data_range:g}], got {x.dtype}"
                " (divide uint8 images by 255)"
            )
    if pred.shape != target.shape:
        raise ValueError(
            f"Expected pred and target of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.device != target.device:
        raise ValueError(f"Expected pred and target on the same device, got {pred.device} and {target.device}")
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"Expected data_range to be a positive finite number, got {data_range!r}")
    dtype = _compute_dtype(pred)
    pred, target = pred.to(dtype), target.to(dtype)
    for name, x in (("pred", pred), ("target", target)):
        if x.numel() == 0:
            raise ValueError(f"Expected non-empty {name}, got shape {tuple(x.shape)}")
        lo, hi = torch.aminmax(x)
        lo, hi = lo.item(), hi.item()
        if not (0.0 <= lo and hi <= data_range):  # also catches NaN
            raise ValueError(
                f"Expected {name} values in [0, {data_range:g}], got min {lo:.6g}, max {hi:.6g}"
                + (" (map tanh output in [-1, 1] with (x + 1) / 2)" if lo < 0 and lo >= -1 else "")
            )
    return pred, target


# --------------------------------------------------------------------------------------------------
# per-image metrics


def l1(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean absolute error per image.

    Args:
        pred: generated images `(B, C, H, W)`, float in `[0, data_range]`.
        target: reference images, same shape.
        data_range: the largest possible value (only used by the range check).

    Returns:
        `(B,)` float64 tensor: mean of `|pred - target|` over channels and pixels.

    Example:
        >>> l1(torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.25)).tolist()
        [0.25, 0.25]
    """
    pred, target = _check_pair(pred, target, data_range)
    return (pred - target).abs().mean(dim=(1, 2, 3))


def mse(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean squared error per image.

    Args:
        pred: generated images `(B, C, H, W)`, float in `[0, data_range]`.
        target: reference images, same shape.
        data_range: the largest possible value (only used by the range check).

    Returns:
        `(B,)` float64 tensor: mean of `(pred - target)**2` over channels and pixels.

    Example:
        >>> mse(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)).tolist()
        [0.25]
    """
    pred, target = _check_pair(pred, target, data_range)
    return (pred - target).square().mean(dim=(1, 2, 3))


def _psnr_from_mse(mse_values: torch.Tensor, data_range: float) -> torch.Tensor:
    # The closed form on purpose, not kornia.metrics.psnr: kornia's takes images and pools one MSE over
    # the whole tensor (batch included), so per-image values would need one call per image (or a vmap)
    # that recomputes the MSE PixelMetrics already has. The formula is the same as kornia's, and
    # mse 0 -> data_range**2 / 0 = inf -> log10 inf = inf, as kornia gives for an identical pair.
    return 10.0 * torch.log10(data_range**2 / mse_values)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: `10 · log10(data_range² / MSE)`.

    Args:
        pred: generated images `(B, C, H, W)`, float in `[0, data_range]`.
        target: reference images, same shape.
        data_range: the largest possible value `L` (1.0 for `[0, 1]` images, 255.0 for `[0, 255]`).

    Returns:
        `(B,)` float64 tensor. Identical images give `inf`.

    Example:
        >>> psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1)).round(decimals=6).tolist()
        [20.0]
        >>> psnr(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).tolist()
        [inf]
    """
    return _psnr_from_mse(mse(pred, target, data_range), float(data_range))


_KORNIA_SSIM_SIGMA = 1.5  # the Gaussian σ kornia.metrics.ssim always uses


def _ssim_map(
    pred: torch.Tensor, target: torch.Tensor, data_range: float, window_size: int, sigma: float
) -> torch.Tensor:
    """SSIM map `(B, C, H - w + 1, W - w + 1)` of checked images (already in the compute dtype), by kornia."""
    if sigma == _KORNIA_SSIM_SIGMA:
        from kornia.metrics import ssim as kornia_ssim

        return kornia_ssim(pred, target, window_size, max_val=data_range, eps=0.0, padding="valid")
    return _ssim_map_any_sigma(pred, target, data_range, window_size, sigma)


def _ssim_map_any_sigma(
    pred: torch.Tensor, target: torch.Tensor, data_range: float, window_size: int, sigma: float
) -> torch.Tensor:
    """`kornia.metrics.ssim(..., eps=0.0, padding="valid")` with a Gaussian window of any `sigma`.

    kornia's window has σ fixed at 1.5; here kornia builds the window and filters the local moments
    ('valid': no padding), and they are combined with kornia's SSIM formula, operation for operation.
    """
    from kornia.filters import filter2d_separable, get_gaussian_kernel1d

    kernel = get_gaussian_kernel1d(window_size, sigma, device=pred.device, dtype=pred.dtype)
    # the five local moments of every channel, filtered in one call
    stack = torch.cat([pred, target, pred**2, target**2, pred * target], dim=1)
    moments = filter2d_separable(stack, kernel, kernel, padding="valid")
    mu1, mu2, mu_img1_sq, mu_img2_sq, mu_img1_img2 = moments.split(pred.shape[1], dim=1)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = mu_img1_sq - mu1_sq
    sigma2_sq = mu_img2_sq - mu2_sq
    sigma12 = mu_img1_img2 - mu1_mu2
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    num = (2.0 * mu1_mu2 + c1) * (2.0 * sigma12 + c2)
    den = (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    return num / den


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), 'valid' borders.

    The SSIM map uses a `window_size`² sampled Gaussian window of standard deviation `sigma`,
    K1 = 0.01 and K2 = 0.03, and is computed only where the window lies wholly inside the image (no
    padding); the result is its mean over channels and positions. The map is
    `kornia.metrics.ssim(pred, target, window_size, max_val=data_range, eps=0.0, padding="valid")`;
    kornia's σ is fixed at 1.5, so another `sigma` filters with kornia's Gaussian kernel and
    `filter2d_separable` instead (same formula). See the module docstring.

    Args:
        pred: generated images `(B, C, H, W)`, float in `[0, data_range]`, with H, W ≥ window_size.
        target: reference images, same shape.
        data_range: the largest possible value `L`; C1 = (0.01 L)², C2 = (0.03 L)².
        window_size: odd side of the Gaussian window (11 in the paper).
        sigma: standard deviation of the window in pixels (1.5 in the paper).

    Returns:
        `(B,)` float64 tensor in [-1, 1]; identical images give 1.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> ssim(x, x).tolist()
        [1.0, 1.0]
    """
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"Expected window_size to be a positive odd int, got {window_size!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"Expected sigma to be a positive finite number, got {sigma!r}")
    pred, target = _check_pair(pred, target, data_range)
    if min(pred.shape[-2:]) < window_size:
        raise ValueError(
            f"Expected images of at least {window_size}x{window_size} pixels for SSIM with window_size "
            f"{window_size}, got {tuple(pred.shape)}"
        )
    return _ssim_map(pred, target, float(data_range), window_size, float(sigma)).mean(dim=(1, 2, 3))


class PSNR(nn.Module):
    """Module form of `psnr`: `(B, C, H, W)` pair -> `(B,)` PSNR in dB.

    Example:
        >>> PSNR()(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)).round(decimals=6).tolist()
        [20.0]
    """

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return psnr(pred, target, self.data_range)


class SSIM(nn.Module):
    """Module form of `ssim`: `(B, C, H, W)` pair -> `(B,)` SSIM.

    Example:
        >>> x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
        >>> SSIM()(x, x).tolist()
        [1.0]
    """

    def __init__(self, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.data_range = data_range
        self.window_size = window_size
        self.sigma = sigma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim(pred, target, self.data_range, self.window_size, self.sigma)


# --------------------------------------------------------------------------------------------------
# streaming accumulator of per-pixel metrics


# ITU-R BT.601 luma for studio-range video, as MATLAB's rgb2ycbcr: Y in [16, 235] of 255.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def rgb_to_y(images: torch.Tensor, data_range: float = 1.0, *, grey: torch.Tensor | None = None) -> torch.Tensor:
    """The luma of `(B, C, H, W)` images in `[0, data_range]`, `(B, 1, H, W)` in the same range.

    `Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255` (R, G, B in [0, 1]), MATLAB's `rgb2ycbcr`,
    which the super-resolution literature's PSNR and SSIM use. A one-channel image is its own Y,
    and so are the images `grey` marks: evaluation scripts read a one-channel file as it is and
    score it without the studio-range scaling, so an image whose original file is grey (Set14's
    `bridge`) matches the published figures only on its raw channel, even when a copy stores it
    as three equal channels. Equal channels alone do not decide it: Set14's `man` is grey content
    in an RGB original, and scored in Y.

    Args:
        images: `(B, 1 or 3, H, W)`.
        data_range: the largest pixel value.
        grey: optional `(B,)` bools: images scored on their first channel as it is.

    Example:
        >>> red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        >>> round(rgb_to_y(red).item() * 255, 3)  # 16 + 65.481
        81.481
        >>> mid = torch.full((1, 3, 1, 1), 0.5)
        >>> round(rgb_to_y(mid).item() * 255, 3), rgb_to_y(mid, grey=torch.tensor([True])).item()
        (125.5, 0.5)
    """
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise ValueError(f"Expected 1 or 3 channels for Y, got {images.shape[1]}")
    unit = images / data_range
    weights = torch.tensor(_Y_WEIGHTS, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
    y = (_Y_OFFSET + (unit * weights).sum(1, keepdim=True)) / 255.0 * data_range
    if grey is None:
        return y
    grey = torch.as_tensor(grey, dtype=torch.bool, device=images.device).view(-1, 1, 1, 1)
    return torch.where(grey, images[:, :1], y)


class PixelMetrics:
    """Accumulate L1, MSE, PSNR and SSIM over a split, one batch at a time.

    Only four floats (and an optional name) per image are kept, so a split of any size streams.
    `compute()` gives the mean of each metric over images; `per_image` gives the rows for a result page.

    Args:
        data_range: the largest possible pixel value (1.0 for `[0, 1]` images).
        window_size: SSIM window side (odd).
        sigma: SSIM Gaussian standard deviation.
        color: "rgb" scores every channel; "y" scores the luma (`rgb_to_y`), the super-resolution
            convention.
        shave: pixels cut from every border before scoring (super-resolution: the scale).

    Example:
        >>> m = PixelMetrics()
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(2, 3, 16, 16, generator=g)
        >>> _ = m.update(x, x, names=["a.png", "b.png"])
        >>> m.count, m.compute()["ssim"], m.per_image[1]["name"]
        (2, 1.0, 'b.png')
    """

    def __init__(
        self, *, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5, color: str = "rgb", shave: int = 0
    ) -> None:
        if color not in ("rgb", "y"):
            raise ValueError(f"Expected color 'rgb' or 'y', got {color!r}")
        if shave < 0:
            raise ValueError(f"Expected shave >= 0, got {shave}")
        self.data_range = float(data_range)
        self.window_size = window_size
        self.sigma = float(sigma)
        self.color, self.shave = color, shave
        self._rows: list[dict[str, float | str]] = []

    @property
    def count(self) -> int:
        """Number of images seen."""
        return len(self._rows)

    @property
    def per_image(self) -> list[dict[str, float | str]]:
        """One dict per image, in update order: `l1`, `mse`, `psnr`, `ssim` (floats) and `name` if given."""
        return [dict(row) for row in self._rows]

    @torch.no_grad()
    def update(
        self, pred: torch.Tensor, target: torch.Tensor, names: Sequence[str] | None = None, *,
        grey: torch.Tensor | Sequence[bool] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Add a batch.

        Args:
            pred: generated images `(B, C, H, W)`, float in `[0, data_range]`.
            target: reference images, same shape.
            names: optional `B` names (e.g. file names) stored with each image's row.
            grey: optional `B` bools, for `color="y"`: images whose original is one-channel,
                scored on their first channel (`rgb_to_y`).

        Returns:
            This batch's values: `{"l1", "mse", "psnr", "ssim"}` -> `(B,)` float64 CPU tensors.
        """
        pred, target = _check_pair(pred, target, self.data_range)
        if names is not None and (isinstance(names, str) or len(names) != pred.shape[0]):
            raise ValueError(f"Expected {pred.shape[0]} names, one per image, got {names!r}")
        if self.shave:
            k = self.shave
            if min(pred.shape[-2:]) <= 2 * k:
                raise ValueError(f"Expected images larger than twice the shave ({k}), got {tuple(pred.shape)}")
            pred, target = pred[..., k:-k, k:-k], target[..., k:-k, k:-k]
        if self.color == "y":
            pred, target = rgb_to_y(pred, self.data_range, grey=grey), rgb_to_y(target, self.data_range, grey=grey)
        if min(pred.shape[-2:]) < self.window_size:
            raise ValueError(
                f"Expected images of at least {self.window_size}x{self.window_size} pixels for SSIM, "
                f"got {tuple(pred.shape)}"
            )
        diff = pred - target
        mse_values = diff.square().mean(dim=(1, 2, 3))
        values = {
            "l1": diff.abs().mean(dim=(1, 2, 3)),
            "mse": mse_values,
            "psnr": _psnr_from_mse(mse_values, self.data_range),
            "ssim": _ssim_map(pred, target, self.data_range, self.window_size, self.sigma).mean(dim=(1, 2, 3)),
        }
        values = {k: v.double().cpu() for k, v in values.items()}
        columns = {k: v.tolist() for k, v in values.items()}
        for i in range(pred.shape[0]):
            row: dict[str, float | str] = {k: columns[k][i] for k in PIXEL_METRICS}
            if names is not None:
                row["name"] = str(names[i])
            self._rows.append(row)
        return values

    def compute(self) -> dict[str, float]:
        """Means over all images seen: `{"l1", "mse", "psnr", "ssim"}`.

        Raises:
            ValueError: no image was added.
        """
        if not self._rows:
            raise ValueError("Expected at least one image, got none: call update() before compute()")
        return {k: math.fsum(float(row[k]) for row in self._rows) / len(self._rows) for k in PIXEL_METRICS}

    def merge(self, other: PixelMetrics) -> PixelMetrics:
        """Append `other`'s images (e.g. from another process) to this one; returns self."""
        if not isinstance(other, PixelMetrics):
            raise TypeError(f"Expected a PixelMetrics, got {type(other).__name__}")
        mine = (self.data_range, self.window_size, self.sigma, self.color, self.shave)
        theirs = (other.data_range, other.window_size, other.sigma, other.color, other.shave)
        if mine != theirs:
            raise ValueError(
                f"Expected PixelMetrics with the same data_range, window_size, sigma, color and shave, got {mine} "
                f"and {theirs}"
            )
        self._rows.extend(dict(row) for row in other._rows)
        return self

    def reset(self) -> None:
        """Forget every image."""
        self._rows.clear()


# --------------------------------------------------------------------------------------------------
# FCN-score


@dataclass(frozen=True, slots=True)
class ClassScore:
    """One row of the per-class table.

    Attributes:
        index: class index `0..K-1`.
        name: class name (the index as a string when no names were given).
        accuracy: `TP / gt_pixels`; NaN when the class has no ground-truth pixel.
        iou: `TP / (gt_pixels + pred_pixels - TP)`; NaN when the class is in neither.
        gt_pixels: ground-truth pixels of this class (ignored pixels excluded).
        pred_pixels: pixels predicted as this class (where the ground truth is not ignored).
    """

    index: int
    name: str
    accuracy: float
    iou: float
    gt_pixels: int
    pred_pixels: int


@dataclass(frozen=True, slots=True)
class FCNScore:
    """FCN-score of a split (pix2pix definitions; see the module docstring).

    Attributes:
        pixel_accuracy: correctly labelled pixels / counted pixels.
        mean_class_accuracy: NaN-mean of the per-class accuracies.
        mean_iou: NaN-mean of the per-class IoUs.
        per_class: one `ClassScore` per class, in index order.
        pixels: counted pixels (ground truth not ignored).
    """

    pixel_accuracy: float
    mean_class_accuracy: float
    mean_iou: float
    per_class: tuple[ClassScore, ...]
    pixels: int

    def to_dict(self) -> dict[str, object]:
        """Plain dict (per_class as a list of dicts); NaN stays float('nan')."""
        return asdict(self) | {"per_class": [asdict(c) for c in self.per_class]}


class ConfusionMatrix:
    """Streaming confusion matrix `hist[true, pred]` for the FCN-score.

    Counts are exact int64 on the CPU; each `update` counts on the labels' own device with one
    `bincount` and adds the `(K, K)` result. Pixels whose true label is `ignore_index` are skipped.

    Args:
        num_classes: K; labels are class indices `0..K-1`.
        ignore_index: true-label value that marks a pixel to skip (must not be a class index).
        class_names: optional K names for the per-class table.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(torch.tensor([[0, 1, 1, 2]]), torch.tensor([[0, 1, 2, 255]]))
        >>> score = cm.compute()
        >>> score.pixel_accuracy, score.mean_class_accuracy, score.mean_iou
        (0.6666666666666666, 0.6666666666666666, 0.5)
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Expected num_classes to be a positive int, got {num_classes!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"Expected ignore_index to be an int, got {ignore_index!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f"Expected ignore_index outside the class indices 0..{num_classes - 1}, got {ignore_index}"
            )
        if class_names is not None:
            class_names = tuple(str(n) for n in class_names)
            if len(class_names) != num_classes:
                raise ValueError(f"Expected {num_classes} class names, got {len(class_names)}: {class_names}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = class_names or tuple(str(i) for i in range(num_classes))
        self.hist = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    @property
    def pixels(self) -> int:
        """Pixels counted so far."""
        return int(self.hist.sum())

    @torch.no_grad()
    def update(self, pred_labels: torch.Tensor, true_labels: torch.Tensor) -> None:
        """Count a batch of label maps.

        Args:
            pred_labels: predicted class indices, integer `(B, H, W)` (any shape equal to true_labels'),
                every value in `0..K-1`.
            true_labels: ground-truth class indices, same shape, values in `0..K-1` or `ignore_index`.

        Raises:
            ValueError: shapes differ, labels are not integers, or a value is out of range (the
                message names it).
        """
        k = self.num_classes
        for name, x in (("pred_labels", pred_labels), ("true_labels", true_labels)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"Expected {name} to be a torch.Tensor, got {type(x).__name__}")
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(f"Expected {name} to be an integer tensor of class indices, got {x.dtype}")
        if pred_labels.shape != true_labels.shape:
            raise ValueError(
                f"Expected pred_labels and true_labels of the same shape, got {tuple(pred_labels.shape)} "
                f"and {tuple(true_labels.shape)}"
            )
        true = true_labels.to(device=pred_labels.device, dtype=torch.int64).reshape(-1)
        pred = pred_labels.to(torch.int64).reshape(-1)
        keep = true != self.ignore_index
        true, pred = true[keep], pred[keep]
        bad_true = (true < 0) | (true >= k)
        if bool(bad_true.any()):
            values = torch.unique(true[bad_true])[:5].tolist()
            raise ValueError(
                f"Expected true_labels in 0..{k - 1} or ignore_index {self.ignore_index}, got values {values}"
            )
        bad_pred = (pred < 0) | (pred >= k)
        if bool(bad_pred.any()):
            values = torch.unique(pred[bad_pred])[:5].tolist()
            raise ValueError(
                f"Expected pred_labels in 0..{k - 1} (where the truth is not ignored), got values {values}"
            )
        counts = torch.bincount(true * k + pred, minlength=k * k)
        self.hist += counts.view(k, k).cpu()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add `other`'s counts (e.g. from another process) to this matrix; returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"Expected a ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                "Expected a ConfusionMatrix with the same num_classes and ignore_index, got "
                f"{(self.num_classes, self.ignore_index)} and {(other.num_classes, other.ignore_index)}"
            )
        self.hist += other.hist.cpu()
        return self

    def reset(self) -> None:
        """Set every count to zero."""
        self.hist.zero_()

    def compute(self) -> FCNScore:
        """Pixel accuracy, mean class accuracy, mean IoU and the per-class table.

        Raises:
            ValueError: no pixel was counted.
        """
        hist = self.hist.to(torch.float64)
        total = hist.sum()
        if total == 0:
            raise ValueError("Expected counted pixels, got none: call update() first (or every pixel was ignored)")
        diag = hist.diagonal()
        gt = hist.sum(1)
        predicted = hist.sum(0)
        # 0/0 -> NaN marks a term the reference's nanmean leaves out
        accuracy = diag / gt
        iou = diag / (gt + predicted - diag)
        per_class = tuple(
            ClassScore(i, self.class_names[i], float(accuracy[i]), float(iou[i]), int(gt[i]), int(predicted[i]))
            for i in range(self.num_classes)
        )
        return FCNScore(
            pixel_accuracy=float(diag.sum() / total),
            mean_class_accuracy=float(torch.nanmean(accuracy)),
            mean_iou=float(torch.nanmean(iou)),
            per_class=per_class,
            pixels=int(total),
        )
