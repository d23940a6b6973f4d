"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), on batches of tensors.

Real-ESRGAN trains a super-resolution network on pairs it synthesises on the fly: a high-resolution
image (HR) and a low-resolution image (LR) made of it by two rounds of blur, resize, noise and JPEG
compression, then a final resize to HR/scale with a sinc filter. This plugin registers that pipeline
as the component `realesrgan` of a kind of its own, `"degradation"`; a method builds it from a recipe
table and calls it on each training batch::

    degrade = registry.create("degradation", "realesrgan", scale=4)
    lr = degrade(hr)                # (B, C, H, W) in [0, 1] -> (B, C, H // 4, W // 4) in [0, 1]

The options and their defaults are the published settings (`options/train_realesrgan_x4plus.yml`
of Real-ESRGAN, with the values its dataset and model hard-code). In order:

1. (`usm_input`) the reference degrades the *USM-sharpened* target (`usm_sharp`), not the raw one;
2. first stage: blur with a random kernel (per image), resize by a random factor (per batch: up
   U(1, 1.5), down U(0.15, 1) or keep, p 0.2/0.7/0.1, mode area/bilinear/bicubic uniformly),
   Gaussian noise (p 0.5, sigma U(1, 30) on 0..255) or Poisson noise (scale U(0.05, 3)), either
   grey (one noise field for all channels, p 0.4) or colour, clipped to [0, 1], then JPEG with
   quality U(30, 95);
3. second stage: blur (p 0.8, sigma 0.2..1.5), resize to (H / scale * s) with s from U(1, 1.2),
   U(0.3, 1) or 1 (p 0.3/0.4/0.3), noise (Gaussian sigma 1..25 / Poisson 0.05..2.5, grey p 0.4);
4. final: [resize to (H // scale, W // scale) + sinc filter (p 0.8 per image)] and [JPEG with
   quality U(30, 95)], in one of the two orders (p 0.5 each); then
   `clamp(round(x * 255), 0, 255) / 255`.

Blur kernels (size k odd, uniform in 7..21; grid x, y in -(k//2)..k//2; normalised to sum 1):

- with the quadratic form q = u^2 / sx^2 + v^2 / sy^2, u = x cos t + y sin t,
  v = -x sin t + y cos t (the covariance R(t) diag(sx^2, sy^2) R(t)^T; isotropic: sy = sx, t = 0;
  sx, sy ~ U(sigma range), t ~ U(-pi, pi)):
  Gaussian exp(-q / 2), generalised Gaussian exp(-q^beta / 2), plateau 1 / (1 + q^beta);
  beta is drawn from U(lo, 1) or U(1, hi) with p 1/2 each (generalised 0.5..4, plateau 1..2, so a
  plateau kernel has beta exactly 1 half of the time, as in the reference);
- with probability `sinc_prob`, a circular low-pass (2-D sinc) kernel instead:
  h(r) = w J1(w r) / (2 pi r), h(0) = w^2 / (4 pi), r = sqrt(x^2 + y^2), cutoff w ~ U(pi/3, pi)
  for k < 13 and U(pi/5, pi) otherwise; the final sinc filter has w ~ U(pi/3, pi).

Every kernel is built on a 21 x 21 grid (zero outside its own k x k support), so a batch holds one
kernel per image, `(B, 21, 21)`, applied by `filter2d`: a grouped convolution (one group per image
and channel) after reflect padding. JPEG is `kornia.enhance.jpeg_codec_differentiable` with one
quality per image.

Randomness: `sample_parameters` draws every random choice and value from torch's CPU generator
(or the generator passed in), in a fixed order with shapes that depend only on the batch size;
`apply` draws the noise fields (and nothing else) from the images' device generator (or the one
passed in). So restoring torch's RNG state (CPU and CUDA, as a checkpoint does) repeats the
degradations exactly, and numpy's and Python's generators are never used.

Where this differs from the reference: the noise type (Gaussian or Poisson) and whether the second
blur is applied are drawn per image, not once per batch (the same probability for each image, more
variety within a batch); resize factors and modes and the order of the final steps stay per batch,
as the reference has them. Kornia's JPEG codec rounds its DCT coefficients with a smooth
approximation of rounding (x_r + (x - x_r)^3), so its output is close to, not equal to, a hard-rounding
JPEG; it pads images to multiples of 16 itself (replicating the border, the reference pads with
zeros) and takes three channels (one-channel images are coded as grey RGB).

Example:
    >>> import torch
    >>> degrade = realesrgan(scale=4)
    >>> _ = torch.manual_seed(0)
    >>> degrade(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from torch import nn

from translate_kit.api import register

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "UPDOWN",
    "RealESRGANDegradation",
    "RealESRGANSettings",
    "StageSettings",
    "circular_lowpass_kernels",
    "filter2d",
    "mixed_kernels",
    "realesrgan",
    "usm_sharp",
]

KERNEL_TYPES: tuple[str, ...] = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic")
UPDOWN: tuple[str, ...] = ("up", "down", "keep")
GRID = 21  # every kernel lives on a 21 x 21 grid, as the reference pads them
SINC_SMALL, SINC_LARGE = (math.pi / 3, math.pi), (math.pi / 5, math.pi)  # cutoffs for k < 13 and k >= 13
FINAL_SINC = (math.pi / 3, math.pi)
GREY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale

# ------------------------------------------------------------------------------------------------
# Kernels


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (column) and y (row) coordinates of a size x size grid centred on 0, float64."""
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    return x, y


def _support(sizes: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, K, K) mask of each kernel's own k x k support on the grid."""
    r = (sizes.to(torch.float64) // 2).view(-1, 1, 1)
    return (x.abs() <= r) & (y.abs() <= r)


def _normalise(kernels: torch.Tensor) -> torch.Tensor:
    return (kernels / kernels.sum(dim=(-2, -1), keepdim=True)).to(torch.float32)


def mixed_kernels(types: torch.Tensor, sizes: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor,
                  theta: torch.Tensor, beta: torch.Tensor, *, grid: int = GRID) -> torch.Tensor:
    """Gaussian, generalised Gaussian and plateau kernels, one per row of the (B,) arguments.

    Args:
        types: indices into `KERNEL_TYPES`; isotropic types ignore `sigma_y` and `theta`.
        sizes: odd kernel sizes (at most `grid`); the kernel is zero outside its k x k support.
        sigma_x, sigma_y, theta: standard deviations along the rotated axes, rotation in radians.
        beta: shape of generalised and plateau kernels (ignored by Gaussian ones).
        grid: the (odd) size of the returned kernels.

    Returns:
        (B, grid, grid) float32 kernels, each summing to 1.
    """
    x, y = _grid(grid)
    t = types.view(-1, 1, 1)
    iso = t % 2 == 0  # iso, generalized_iso, plateau_iso
    sx = sigma_x.to(torch.float64).view(-1, 1, 1)
    sy = torch.where(iso, sx, sigma_y.to(torch.float64).view(-1, 1, 1))
    th = torch.where(iso, torch.zeros_like(sx), theta.to(torch.float64).view(-1, 1, 1))
    c, s = torch.cos(th), torch.sin(th)
    u, v = c * x + s * y, -s * x + c * y
    q = (u / sx) ** 2 + (v / sy) ** 2
    b = torch.where(t < 2, torch.ones_like(sx), beta.to(torch.float64).view(-1, 1, 1))  # Gaussian: beta 1
    qb = q**b
    kernels = torch.where(t >= 4, 1.0 / (1.0 + qb), torch.exp(-0.5 * qb))
    return _normalise(kernels * _support(sizes, x, y))


def circular_lowpass_kernels(cutoff: torch.Tensor, sizes: torch.Tensor, *, grid: int = GRID) -> torch.Tensor:
    """2-D sinc (circularly symmetric ideal low-pass) kernels, h(r) = w J1(w r) / (2 pi r), one per
    cutoff w (radians, pi is Nyquist), on a (B, grid, grid) grid, zero outside each k x k support,
    normalised to sum 1."""
    x, y = _grid(grid)
    r = torch.sqrt(x**2 + y**2)
    w = cutoff.to(torch.float64).view(-1, 1, 1)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    kernels = w * torch.special.bessel_j1(w * safe) / (2 * math.pi * safe)
    kernels = torch.where(r == 0, w**2 / (4 * math.pi), kernels)
    return _normalise(kernels * _support(sizes, x, y))


def _pulse(batch: int, grid: int = GRID) -> torch.Tensor:
    kernels = torch.zeros(batch, grid, grid)
    kernels[:, grid // 2, grid // 2] = 1.0
    return kernels


def _reflect_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect padding by `pad` on every side, also where `pad` is not smaller than the image (by
    reflecting repeatedly, which continues the mirrored image; 1-pixel sides are replicated)."""
    while pad > 0:
        h, w = images.shape[-2:]
        if min(h, w) < 2:
            return F.pad(images, (pad, pad, pad, pad), mode="replicate")
        step = min(pad, h - 1, w - 1)
        images = F.pad(images, (step, step, step, step), mode="reflect")
        pad -= step
    return images


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each image of a batch with its own kernel (correlation, reflect padding, same size).

    Args:
        images: (B, C, H, W).
        kernels: (B, k, k), one odd-sized kernel per image, or (k, k) / (1, k, k) for all.
    """
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    if k % 2 == 0 or kernels.shape[-2] != k:
        raise ValueError(f"Expected square kernels of odd size, got {tuple(kernels.shape)}")
    kernels = kernels.to(device=images.device, dtype=images.dtype).reshape(-1, k, k)
    padded = _reflect_pad(images, k // 2)
    ph, pw = padded.shape[-2:]
    if kernels.shape[0] not in (1, b):
        raise ValueError(f"Expected one kernel per image ({b}), got {kernels.shape[0]}")
    # One group per image and channel (a depthwise convolution, also the fast CPU path).
    weight = kernels[:, None].expand(b, c, k, k).reshape(b * c, 1, k, k)
    return F.conv2d(padded.reshape(1, b * c, ph, pw), weight, groups=b * c).view(b, c, h, w)


def _crop(kernels: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Kernels cropped to the largest support in the batch (the rest of the grid is zero)."""
    size = int(sizes.max())
    start = (kernels.shape[-1] - size) // 2
    return kernels[..., start : start + size, start : start + size]


# ------------------------------------------------------------------------------------------------
# Unsharp masking


def _gaussian_1d(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given size (sigma <= 0)
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _separable_blur(images: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # One group per plane: on CPUs the depthwise path is ~10x faster than a batch of 1-channel planes.
    shape = images.shape
    k = g.numel()
    x = _reflect_pad(images.reshape(1, -1, *shape[-2:]), k // 2)
    n = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(n, 1, 1, k), groups=n)
    x = F.conv2d(x, g.view(1, 1, k, 1).expand(n, 1, k, 1), groups=n)
    return x.reshape(shape)


def usm_sharp(images: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Unsharp masking, as Real-ESRGAN sharpens its targets: images (..., H, W) in [0, 1].

    blur = Gaussian blur of the image (a `radius` x `radius` kernel, made odd: 51 for 50, with
    OpenCV's sigma for that size, 0.3 ((k - 1) / 2 - 1) + 0.8 = 8); residual = image - blur;
    mask = 1 where |residual| * 255 > threshold, then blurred the same way (a soft mask);
    sharp = clip(image + weight * residual, 0, 1); out = mask * sharp + (1 - mask) * image.
    Reflect padding at the borders. (Real-ESRGAN names the kernel size `radius`.)
    """
    if radius < 1:
        raise ValueError(f"Expected radius >= 1, got {radius}")
    size = radius if radius % 2 == 1 else radius + 1
    g = _gaussian_1d(size, images.dtype, images.device)
    blur = _separable_blur(images, g)
    residual = images - blur
    mask = (residual.abs() * 255 > threshold).to(images.dtype)
    soft = _separable_blur(mask, g)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * images


# ------------------------------------------------------------------------------------------------
# Settings


def _check_range(name: str, pair: tuple[float, float], low: float | None = None, high: float | None = None) -> None:
    lo, hi = pair
    if not lo <= hi:
        raise ValueError(f"Expected {name} = (low, high) with low <= high, got {tuple(pair)}")
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise ValueError(f"Expected {name} within [{low}, {high}], got {tuple(pair)}")


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"Expected {name} in [0, 1], got {p}")


def _check_probs(name: str, probs: tuple[float, ...]) -> None:
    if any(p < 0 for p in probs) or sum(probs) <= 0:
        raise ValueError(f"Expected {name} to be non-negative weights with a positive sum, got {tuple(probs)}")


@dataclass(frozen=True)
class StageSettings:
    """The random ranges of one degradation stage (`suffix` "" or "2" names its options)."""

    kernel_prob: tuple[float, float, float, float, float, float]
    sinc_prob: float
    blur_sigma: tuple[float, float]
    betag_range: tuple[float, float]
    betap_range: tuple[float, float]
    resize_prob: tuple[float, float, float]
    resize_range: tuple[float, float]
    gaussian_noise_prob: float
    noise_range: tuple[float, float]
    poisson_scale_range: tuple[float, float]
    gray_noise_prob: float
    jpeg_range: tuple[float, float]
    suffix: str = ""

    def __post_init__(self) -> None:
        n = self.suffix
        _check_probs(f"kernel_prob{n}", self.kernel_prob)
        _check_prob(f"sinc_prob{n}", self.sinc_prob)
        _check_range(f"blur_sigma{n}", self.blur_sigma)
        if self.blur_sigma[0] <= 0:
            raise ValueError(f"Expected blur_sigma{n} > 0, got {self.blur_sigma}")
        _check_range(f"betag_range{n}", self.betag_range)
        _check_range(f"betap_range{n}", self.betap_range)
        if self.betag_range[0] <= 0 or self.betap_range[0] <= 0:
            raise ValueError(f"Expected betag_range{n} and betap_range{n} > 0, "
                             f"got {self.betag_range}, {self.betap_range}")
        _check_probs(f"resize_prob{n}", self.resize_prob)
        _check_range(f"resize_range{n}", self.resize_range)
        if not 0 < self.resize_range[0] <= 1 <= self.resize_range[1]:
            raise ValueError(f"Expected resize_range{n} = (down, up) with 0 < down <= 1 <= up, got {self.resize_range}")
        _check_prob(f"gaussian_noise_prob{n}", self.gaussian_noise_prob)
        _check_range(f"noise_range{n}", self.noise_range, 0)
        _check_range(f"poisson_scale_range{n}", self.poisson_scale_range, 0)
        _check_prob(f"gray_noise_prob{n}", self.gray_noise_prob)
        _check_range(f"jpeg_range{n}", self.jpeg_range, 0, 100)


@dataclass(frozen=True)
class RealESRGANSettings:
    """Everything `realesrgan` configures (see its options)."""

    scale: int
    kernel_size_range: tuple[int, int]
    first: StageSettings
    second: StageSettings
    second_blur_prob: float
    final_sinc_prob: float
    usm_input: bool

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"Expected scale >= 1, got {self.scale}")
        lo, hi = self.kernel_size_range
        if not (lo % 2 == 1 and hi % 2 == 1 and 1 <= lo <= hi <= GRID):
            raise ValueError(f"Expected kernel_size_range = two odd sizes 1 <= low <= high <= {GRID}, got {(lo, hi)}")
        _check_prob("second_blur_prob", self.second_blur_prob)
        _check_prob("final_sinc_prob", self.final_sinc_prob)


# ------------------------------------------------------------------------------------------------
# Sampling helpers (CPU generator or the one given; shapes depend on the batch size only)


def _rand(n: int, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.rand(n)
    return torch.rand(n, generator=generator, device=generator.device).cpu()


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * _rand(n, generator)


def _choice(n: int, weights: tuple[float, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Indices drawn with probabilities proportional to `weights` (inverse CDF)."""
    p = torch.tensor(weights, dtype=torch.float64)
    cdf = (p.cumsum(0) / p.sum()).to(torch.float32)
    return torch.searchsorted(cdf, _rand(n, generator), right=True).clamp(max=len(weights) - 1)


def _odd_sizes(n: int, lo: int, hi: int, generator: torch.Generator | None) -> torch.Tensor:
    count = (hi - lo) // 2 + 1
    return lo + 2 * (_rand(n, generator) * count).long().clamp(max=count - 1)


def _shape_beta(n: int, lo: float, hi: float, generator: torch.Generator | None) -> torch.Tensor:
    """U(lo, 1) or U(1, hi) with p 1/2 each (the reference's rule; 1 is clamped into [lo, hi])."""
    pivot = min(max(1.0, lo), hi)
    lower = _rand(n, generator) < 0.5
    return torch.where(lower, _uniform(n, lo, pivot, generator), _uniform(n, pivot, hi, generator))


# ------------------------------------------------------------------------------------------------
# Device-side noise helpers (the images' generator, or the one given)


def _randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn(shape, device=like.device, dtype=like.dtype)
    if generator.device.type == like.device.type:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def _poisson(rates: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None or generator.device.type == rates.device.type:
        return torch.poisson(rates, generator=generator)
    return torch.poisson(rates.to(generator.device), generator=generator).to(rates.device)


def _grey(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 3:
        r, g, b = images.unbind(1)
        return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(1)
    return images.mean(dim=1, keepdim=True)


def _poisson_noise(images: torch.Tensor, grey: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Poisson noise as the reference makes it: on the image quantised to 8 bits, with as many
    photon levels per unit as the next power of two above the image's number of distinct 8-bit
    values; grey noise is computed on the luma and shared by all channels. Not yet scaled."""
    source = _grey(images) if grey else images
    n = source.shape[0]
    levels = torch.clamp((source * 255.0).round(), 0, 255)
    quantised = levels / 255.0
    index = levels.long().view(n, -1) + 256 * torch.arange(n, device=source.device).view(n, 1)
    distinct = (torch.bincount(index.flatten(), minlength=256 * n).view(n, 256) > 0).sum(1)
    vals = torch.exp2(torch.ceil(torch.log2(distinct.to(source.dtype)))).view(n, 1, 1, 1)
    return _poisson(quantised * vals, generator) / vals - quantised


# ------------------------------------------------------------------------------------------------
# The pipeline


class RealESRGANDegradation(nn.Module):
    """Real-ESRGAN's second-order degradation: `forward(hr)` -> degraded LR, (B, C, H//s, W//s).

    `sample_parameters(batch)` draws the random choices for a batch (a dict of CPU tensors, see
    its docstring) and `apply(images, params)` applies them; `forward` does both.
    """

    def __init__(self, settings: RealESRGANSettings) -> None:
        super().__init__()
        self.settings = settings
        self.scale = settings.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}, usm_input={self.settings.usm_input}"

    # -------------------------------------------------------------------------------- sampling

    def _sample_blur(self, n: int, stage: StageSettings, prefix: str, g: torch.Generator | None) -> dict[str, Any]:
        lo, hi = self.settings.kernel_size_range
        sizes = _odd_sizes(n, lo, hi, g)
        types = _choice(n, stage.kernel_prob, g)
        sigma_x = _uniform(n, *stage.blur_sigma, g)
        sigma_y = _uniform(n, *stage.blur_sigma, g)
        theta = _uniform(n, -math.pi, math.pi, g)
        beta_g = _shape_beta(n, *stage.betag_range, g)
        beta_p = _shape_beta(n, *stage.betap_range, g)
        sinc = _rand(n, g) < stage.sinc_prob
        u = _rand(n, g)
        omega = torch.where(sizes < 13, SINC_SMALL[0] + (SINC_SMALL[1] - SINC_SMALL[0]) * u,
                            SINC_LARGE[0] + (SINC_LARGE[1] - SINC_LARGE[0]) * u)
        iso = types % 2 == 0
        sigma_y = torch.where(iso, sigma_x, sigma_y)
        theta = torch.where(iso, torch.zeros_like(theta), theta)
        beta = torch.where(types >= 4, beta_p, torch.where(types >= 2, beta_g, torch.ones_like(beta_g)))
        kernel = torch.where(sinc.view(-1, 1, 1), circular_lowpass_kernels(omega, sizes),
                             mixed_kernels(types, sizes, sigma_x, sigma_y, theta, beta))
        return {f"{prefix}_size": sizes, f"{prefix}_type": types, f"{prefix}_sigma_x": sigma_x,
                f"{prefix}_sigma_y": sigma_y, f"{prefix}_theta": theta, f"{prefix}_beta": beta,
                f"{prefix}_sinc": sinc, f"{prefix}_omega": omega, f"{prefix}_kernel": kernel}

    @staticmethod
    def _sample_resize(stage: StageSettings, prefix: str, g: torch.Generator | None) -> dict[str, Any]:
        updown = _choice(1, stage.resize_prob, g)[0]
        u = _rand(1, g)[0]
        lo, hi = stage.resize_range
        down_or_keep = torch.where(updown == 1, lo + (1 - lo) * u, torch.ones_like(u))
        scale = torch.where(updown == 0, 1 + (hi - 1) * u, down_or_keep)
        mode = _choice(1, (1.0, 1.0, 1.0), g)[0]
        return {f"{prefix}_updown": updown, f"{prefix}_scale": scale, f"{prefix}_mode": mode}

    @staticmethod
    def _sample_noise(n: int, stage: StageSettings, prefix: str, g: torch.Generator | None) -> dict[str, Any]:
        return {f"{prefix}_gaussian": _rand(n, g) < stage.gaussian_noise_prob,
                f"{prefix}_sigma": _uniform(n, *stage.noise_range, g),
                f"{prefix}_poisson_scale": _uniform(n, *stage.poisson_scale_range, g),
                f"{prefix}_gray": _rand(n, g) < stage.gray_noise_prob}

    def sample_parameters(self, batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw the degradation of a batch; every value is a CPU tensor.

        Keys (per image: shape (B,); per batch: shape ()):

        - `blur1_*`, `blur2_*`: `size` (odd), `type` (index into `KERNEL_TYPES`), `sigma_x`,
          `sigma_y`, `theta` (sigma_y = sigma_x and theta = 0 for isotropic types), `beta` (1 for
          Gaussian types), `sinc` (bool: a sinc kernel instead), `omega` (its cutoff), `kernel`
          ((B, 21, 21), the kernel applied); `blur2_apply` (bool: second blur applied);
        - `resize1_*`, `resize2_*` (per batch): `updown` (index into `UPDOWN`), `scale`, `mode`
          (index into `RESIZE_MODES`);
        - `noise1_*`, `noise2_*`: `gaussian` (bool: Gaussian, else Poisson), `sigma` (on 0..255),
          `poisson_scale`, `gray` (bool);
        - `jpeg1_quality`, `jpeg2_quality` (the final JPEG);
        - `final_sinc` (bool), `final_size`, `final_omega`, `final_kernel` ((B, 21, 21), a unit
          pulse where `final_sinc` is false), `final_order` (per batch: 0 = resize + sinc then
          JPEG, 1 = JPEG then resize + sinc), `final_mode` (per batch, index into `RESIZE_MODES`).
        """
        if batch < 1:
            raise ValueError(f"Expected batch >= 1, got {batch}")
        s, g, n = self.settings, generator, batch
        params: dict[str, Any] = {}
        params.update(self._sample_blur(n, s.first, "blur1", g))
        params.update(self._sample_resize(s.first, "resize1", g))
        params.update(self._sample_noise(n, s.first, "noise1", g))
        params["jpeg1_quality"] = _uniform(n, *s.first.jpeg_range, g)
        params["blur2_apply"] = _rand(n, g) < s.second_blur_prob
        params.update(self._sample_blur(n, s.second, "blur2", g))
        params.update(self._sample_resize(s.second, "resize2", g))
        params.update(self._sample_noise(n, s.second, "noise2", g))
        params["jpeg2_quality"] = _uniform(n, *s.second.jpeg_range, g)
        final_sinc = _rand(n, g) < s.final_sinc_prob
        final_size = _odd_sizes(n, *s.kernel_size_range, g)
        final_omega = _uniform(n, *FINAL_SINC, g)
        params["final_sinc"] = final_sinc
        params["final_size"] = final_size
        params["final_omega"] = final_omega
        sinc = circular_lowpass_kernels(final_omega, final_size)
        params["final_kernel"] = torch.where(final_sinc.view(-1, 1, 1), sinc, _pulse(n))
        params["final_order"] = (_rand(1, g)[0] >= 0.5).long()  # 0 (p 0.5): resize + sinc, then JPEG
        params["final_mode"] = _choice(1, (1.0, 1.0, 1.0), g)[0]
        return params

    # -------------------------------------------------------------------------------- applying

    @staticmethod
    def _subset(images: torch.Tensor, mask: torch.Tensor, fn: Any) -> torch.Tensor:
        """`fn(images[mask], indices)` written back where `mask` (a CPU bool tensor) is true."""
        if bool(mask.all()):
            return fn(images, torch.arange(images.shape[0]))
        if not bool(mask.any()):
            return images
        index = mask.nonzero().squeeze(1)
        device_index = index.to(images.device)
        return images.index_copy(0, device_index, fn(images.index_select(0, device_index), index))

    def _blur(self, images: torch.Tensor, params: dict[str, torch.Tensor], prefix: str,
              mask: torch.Tensor) -> torch.Tensor:
        kernels, sizes = params[f"{prefix}_kernel"], params[f"{prefix}_size"]
        return self._subset(images, mask, lambda x, i: filter2d(x, _crop(kernels[i], sizes[i])))

    def _final_sinc(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        kernels, sizes = params["final_kernel"], params["final_size"]
        return self._subset(images, params["final_sinc"], lambda x, i: filter2d(x, _crop(kernels[i], sizes[i])))

    @staticmethod
    def _interpolate(images: torch.Tensor, mode: str, *, size: tuple[int, int] | None = None,
                     scale_factor: float | None = None) -> torch.Tensor:
        if scale_factor is not None:  # as the reference: the factor itself, size floor(H * factor)
            h, w = images.shape[-2:]
            if math.floor(h * scale_factor) >= 1 and math.floor(w * scale_factor) >= 1:
                align = {} if mode == "area" else {"align_corners": False}
                return F.interpolate(images, scale_factor=scale_factor, mode=mode, antialias=False, **align)
            size = (max(1, math.floor(h * scale_factor)), max(1, math.floor(w * scale_factor)))
        assert size is not None
        size = (max(1, size[0]), max(1, size[1]))
        if tuple(images.shape[-2:]) == size:  # the identity in every mode (align_corners=False)
            return images
        align = {} if mode == "area" else {"align_corners": False}
        return F.interpolate(images, size=size, mode=mode, antialias=False, **align)

    def _noise(self, images: torch.Tensor, params: dict[str, torch.Tensor], prefix: str,
               generator: torch.Generator | None) -> torch.Tensor:
        gaussian, gray = params[f"{prefix}_gaussian"], params[f"{prefix}_gray"]
        sigma, scale = params[f"{prefix}_sigma"], params[f"{prefix}_poisson_scale"]
        out = images
        for is_gaussian in (True, False):
            for is_gray in (False, True):
                mask = (gaussian == is_gaussian) & (gray == is_gray)

                def add(x: torch.Tensor, i: torch.Tensor, is_gaussian: bool = is_gaussian,
                        is_gray: bool = is_gray) -> torch.Tensor:
                    if is_gaussian:
                        n, c, h, w = x.shape
                        noise = _randn((n, 1 if is_gray else c, h, w), x, generator)
                        noise = noise * (sigma[i].to(x.device, x.dtype) / 255.0).view(-1, 1, 1, 1)
                    else:
                        noise = _poisson_noise(x, is_gray, generator) * scale[i].to(x.device, x.dtype).view(-1, 1, 1, 1)
                    return (x + noise).clamp(0, 1)

                out = self._subset(out, mask, add)
        return out

    @staticmethod
    def _jpeg(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """JPEG-code each image with its own quality ((B,) CPU tensor) after clamping to [0, 1]."""
        images = images.clamp(0, 1)
        if images.shape[1] == 3:
            return jpeg_codec_differentiable(images, quality).clamp(0, 1)
        grey = jpeg_codec_differentiable(images.expand(-1, 3, -1, -1), quality)
        return grey.mean(dim=1, keepdim=True).clamp(0, 1)

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor],
              generator: torch.Generator | None = None) -> torch.Tensor:
        """Degrade `images` ((B, C, H, W), C 1 or 3, float in [0, 1], any device) as `params`
        (from `sample_parameters(B)`) say, USM-sharpening them first if `usm_input`; the noise
        fields come from `generator` (default: the images' device's default generator). Returns
        (B, C, H // scale, W // scale) in [0, 1], on 8-bit levels, in the images' dtype."""
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f"Expected a float batch (B, C, H, W), got {images.dtype} of shape {tuple(images.shape)}")
        b, c, h, w = images.shape
        if c not in (1, 3):
            raise ValueError(f"Expected 1 or 3 channels (the JPEG codec codes RGB), got {c}")
        if h < self.scale or w < self.scale:
            raise ValueError(f"Expected images of at least {self.scale}x{self.scale} pixels at scale {self.scale}, "
                             f"got {h}x{w}")
        if params["blur1_kernel"].shape[0] != b:
            raise ValueError(f"The parameters are for a batch of {params['blur1_kernel'].shape[0]}, the images are {b}")
        dtype = images.dtype
        out = images.float() if dtype in (torch.float16, torch.bfloat16) else images
        everyone = torch.ones(b, dtype=torch.bool)
        if self.settings.usm_input:
            out = usm_sharp(out)

        # First stage: blur, resize by a factor, noise, JPEG.
        out = self._blur(out, params, "blur1", everyone)
        if int(params["resize1_updown"]) != 2:
            out = self._interpolate(out, RESIZE_MODES[int(params["resize1_mode"])],
                                    scale_factor=float(params["resize1_scale"]))
        out = self._noise(out, params, "noise1", generator)
        out = self._jpeg(out, params["jpeg1_quality"])

        # Second stage: blur (some images), resize to a size relative to the target, noise.
        out = self._blur(out, params, "blur2", params["blur2_apply"])
        s2 = float(params["resize2_scale"])
        size = (int(h / self.scale * s2), int(w / self.scale * s2))
        out = self._interpolate(out, RESIZE_MODES[int(params["resize2_mode"])], size=size)
        out = self._noise(out, params, "noise2", generator)

        # Final: [resize to the target + sinc filter] and JPEG, in either order.
        target = (h // self.scale, w // self.scale)
        mode = RESIZE_MODES[int(params["final_mode"])]
        if int(params["final_order"]) == 0:
            out = self._final_sinc(self._interpolate(out, mode, size=target), params)
            out = self._jpeg(out, params["jpeg2_quality"])
        else:
            out = self._jpeg(out, params["jpeg2_quality"])
            out = self._final_sinc(self._interpolate(out, mode, size=target), params)
        out = torch.clamp((out * 255.0).round(), 0, 255) / 255.0
        return out.to(dtype)

    def forward(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Degrade a batch of high-resolution images (B, C, H, W) in [0, 1] to (B, C, H//s, W//s)."""
        return self.apply(hr, self.sample_parameters(hr.shape[0], generator), generator)


@register("degradation")
def realesrgan(
    *,
    scale: int = 4,
    usm_input: bool = True,
    kernel_size_range: tuple[int, int] = (7, 21),
    # the first degradation
    kernel_prob: tuple[float, float, float, float, float, float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob: float = 0.1,
    blur_sigma: tuple[float, float] = (0.2, 3.0),
    betag_range: tuple[float, float] = (0.5, 4.0),
    betap_range: tuple[float, float] = (1.0, 2.0),
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1),
    resize_range: tuple[float, float] = (0.15, 1.5),
    gaussian_noise_prob: float = 0.5,
    noise_range: tuple[float, float] = (1.0, 30.0),
    poisson_scale_range: tuple[float, float] = (0.05, 3.0),
    gray_noise_prob: float = 0.4,
    jpeg_range: tuple[float, float] = (30.0, 95.0),
    # the second degradation
    second_blur_prob: float = 0.8,
    kernel_prob2: tuple[float, float, float, float, float, float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob2: float = 0.1,
    blur_sigma2: tuple[float, float] = (0.2, 1.5),
    betag_range2: tuple[float, float] = (0.5, 4.0),
    betap_range2: tuple[float, float] = (1.0, 2.0),
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3),
    resize_range2: tuple[float, float] = (0.3, 1.2),
    gaussian_noise_prob2: float = 0.5,
    noise_range2: tuple[float, float] = (1.0, 25.0),
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5),
    gray_noise_prob2: float = 0.4,
    jpeg_range2: tuple[float, float] = (30.0, 95.0),
    # the final step
    final_sinc_prob: float = 0.8,
) -> RealESRGANDegradation:
    """Real-ESRGAN's second-order degradation (blur, resize, noise, JPEG, twice; sinc) for x`scale` SR.

    The defaults are Real-ESRGAN's published settings (train_realesrgan_x4plus.yml). Probabilities
    `kernel_prob*` weigh `KERNEL_TYPES` (iso, aniso, generalized_iso, generalized_aniso,
    plateau_iso, plateau_aniso) and `resize_prob*` (up, down, keep); `noise_range*` is a Gaussian
    sigma on 0..255; `kernel_size_range` is the range of odd blur and sinc kernel sizes.
    `usm_input`: degrade the USM-sharpened image (`usm_sharp`), as the reference does; set it to
    false when the images given are sharpened already.
    """
    def stage(suffix: str, *values: Any) -> StageSettings:
        return StageSettings(*values, suffix=suffix)

    settings = RealESRGANSettings(
        scale=scale,
        kernel_size_range=tuple(kernel_size_range),  # type: ignore[arg-type]
        first=stage("", tuple(kernel_prob), sinc_prob, tuple(blur_sigma), tuple(betag_range), tuple(betap_range),
                    tuple(resize_prob), tuple(resize_range), gaussian_noise_prob, tuple(noise_range),
                    tuple(poisson_scale_range), gray_noise_prob, tuple(jpeg_range)),
        second=stage("2", tuple(kernel_prob2), sinc_prob2, tuple(blur_sigma2), tuple(betag_range2), tuple(betap_range2),
                     tuple(resize_prob2), tuple(resize_range2), gaussian_noise_prob2, tuple(noise_range2),
                     tuple(poisson_scale_range2), gray_noise_prob2, tuple(jpeg_range2)),
        second_blur_prob=second_blur_prob,
        final_sinc_prob=final_sinc_prob,
        usm_input=usm_input,
    )
    return RealESRGANDegradation(settings)
