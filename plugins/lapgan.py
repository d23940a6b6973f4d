"""LAPGAN, conditional image-to-image form: a Laplacian pyramid of generators, coarse to fine.

Denton, Chintala, Szlam and Fergus, "Deep Generative Image Models using a Laplacian Pyramid of
Adversarial Networks", NeurIPS 2015, https://arxiv.org/abs/1506.05751, with pix2pix's losses at
every level (Isola et al., CVPR 2017, https://arxiv.org/abs/1611.07004).

With L levels, level 0 the coarsest (the input shrunk L - 1 times by 2) and level L - 1 the full
size, and `a_l`, `b_l` the input and the target at level l (the Gaussian pyramid, `gaussian_pyramid`):

- level 0: `image_0 = G_0(a_0)`, an ordinary image-to-image generator at the coarsest scale;
- level l > 0: `coarse = up(image_{l-1})`, `band_l = G_l(a_l, coarse)` (the two concatenated along
  channels), `image_l = coarse + band_l`: G_l makes the Laplacian band, the detail that the
  upsampled coarser image lacks;
- one discriminator per level, D_l, judges (a_l, image_l) against (a_l, b_l): pix2pix's
  conditional GAN loss, and lambda x L1(image_l, b_l), at every level.

The G_l and D_l are ordinary registered components, built from the recipe's [generator] and
[discriminator] tables once per level (G_l for l > 0 with `in_channels` = C_in + C_out), e.g. a
`unet` with as many `num_downs` as the coarsest level takes. `translate` chains the levels from
the input alone and returns the finest image, clamped to [-1, 1].

Training: all levels in every step, each conditioned on the *real* coarser image (the target's
pyramid, `up(b_{l-1})`) as in the paper, where each level is trained on its own. The levels then
share no parameter and no input that depends on another level, so one joint step is L independent
pix2pix steps run side by side (Adam's update of a parameter depends on its own gradient only):
the paper's training, without a schedule. A resume is exact because nothing but the networks and
their optimisers carries state. The cost is the paper's, too: at test time level l sees the
generated coarser image, never seen in training.

Pyramid operators (`downsample`, `upsample`): 2x2 average pooling and bilinear upsampling
(half-pixel centres). A Laplacian pyramid reconstructs its image for any pair of operators
(`laplacian_pyramid`, `reconstruct`); in floating point the round trip is exact where the values
are coarse enough binary fractions (8-bit images scaled by a power of two) and otherwise within a
rounding error.

Where this deviates from the paper:

- the paper's pyramid blurs with a 5-tap Gaussian before subsampling; the box filter here is its
  shortest form, keeping the pyramid cheap and exactly invertible on dyadic values;
- the paper's generators take noise (and a class); here the noise is pix2pix's dropout, the
  condition is the input image at each level, and the losses are pix2pix's per level;
- the paper's coarsest level is an unconditional small GAN; here it is a conditional generator.

Example:
    >>> import torch
    >>> x = torch.randn(1, 3, 32, 32)
    >>> [tuple(t.shape[-2:]) for t in gaussian_pyramid(x, 3)]
    [(8, 8), (16, 16), (32, 32)]
    >>> coarse, bands = laplacian_pyramid(x, 3)
    >>> torch.allclose(reconstruct(coarse, bands), x, atol=1e-6)
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.pix2pix import Discriminator, Pix2Pix

from translate_kit.api import GANLossName, LossOptions, Parts, StepContext, register_method

__all__ = [
    "LAPGAN",
    "LaplacianGenerator",
    "LevelDiscriminators",
    "PyramidOutput",
    "downsample",
    "gaussian_pyramid",
    "lapgan",
    "laplacian_pyramid",
    "reconstruct",
    "upsample",
]


# ------------------------------------------------------------------------------------------------
# The pyramid


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Half the height and width by 2x2 averaging: `(B, C, H, W)` -> `(B, C, H/2, W/2)` (H, W even)."""
    if x.ndim != 4 or x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"Expected input of shape (B, C, H, W) with H, W even, got {tuple(x.shape)}")
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Double the height and width, bilinear with half-pixel centres: `(B, C, H, W)` -> `(B, C, 2H, 2W)`."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """`x` at `levels` scales, coarsest first: `[x / 2^(levels-1), ..., x / 2, x]` in size.

    Raises:
        ValueError: `levels` < 1, or a height or width not divisible by 2^(levels - 1).
    """
    if levels < 1:
        raise ValueError(f"Expected levels >= 1, got {levels}")
    images = [x]
    for _ in range(levels - 1):
        images.append(downsample(images[-1]))
    return images[::-1]


def laplacian_pyramid(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The Laplacian pyramid of `x`: the coarsest image and the band of every finer level.

    Returns:
        `(coarse, bands)`: `coarse` is `gaussian_pyramid(x, levels)[0]`; `bands[l - 1]` is level l's
        `image_l - upsample(image_{l-1})`, for l = 1 .. levels - 1 (finest last).
    """
    images = gaussian_pyramid(x, levels)
    return images[0], [fine - upsample(coarse) for coarse, fine in zip(images, images[1:])]


def reconstruct(coarse: torch.Tensor, bands: Sequence[torch.Tensor]) -> torch.Tensor:
    """Invert `laplacian_pyramid`: upsample and add each band, coarse to fine."""
    image = coarse
    for band in bands:
        image = upsample(image) + band
    return image


# ------------------------------------------------------------------------------------------------
# Networks


class PyramidOutput(NamedTuple):
    """What `LaplacianGenerator` gives: every level's image, coarsest first, and the bands that
    the finer levels' generators made (`images[l] = upsample(coarser) + bands[l - 1]`)."""

    images: list[torch.Tensor]
    bands: list[torch.Tensor]


def _scaled_limits(nets: Sequence[nn.Module]) -> tuple[int, int]:
    """Size multiple and minimum, in full-size pixels, of networks that run at levels 0..L-1
    (level l sees sizes divided by 2^(L-1-l)); the pyramid itself needs multiples of 2^(L-1)."""
    last = len(nets) - 1
    multiples = [int(getattr(net, "size_multiple", 1)) * 2 ** (last - level) for level, net in enumerate(nets)]
    minima = [int(getattr(net, "min_size", 0)) * 2 ** (last - level) for level, net in enumerate(nets)]
    return math.lcm(2**last, *multiples), max(2**last, *minima)


class LaplacianGenerator(nn.Module):
    """L generators chained coarse to fine over a Laplacian pyramid.

    Args:
        levels: the generators, coarsest first: level 0 maps `(B, C_in, h, w)` to `(B, C_out, h, w)`;
            level l > 0 maps `(B, C_in + C_out, ...)` (the input at its scale and the upsampled
            coarser image) to the band `(B, C_out, ...)`.

    Attributes:
        size_multiple, min_size: in full-size pixels (`SizeConstrained`), from the levels' own.
    """

    def __init__(self, levels: Sequence[nn.Module]) -> None:
        super().__init__()
        if not levels:
            raise ValueError("Expected at least one level, got none")
        self.levels = nn.ModuleList(levels)
        self.size_multiple, self.min_size = _scaled_limits(levels)

    def forward(self, x: torch.Tensor, teacher: Sequence[torch.Tensor] | None = None) -> PyramidOutput:
        """Every level's image for inputs `x` `(B, C_in, H, W)`.

        Args:
            x: the full-size inputs.
            teacher: for training, the real image at each level but the finest, coarsest first
                (`gaussian_pyramid(target, L)[:-1]`): level l then refines `teacher[l - 1]`
                instead of level l - 1's output. None: the levels are chained (inference).
        """
        count = len(self.levels)
        if teacher is not None and len(teacher) != count - 1:
            raise ValueError(f"Expected {count - 1} teacher images (every level but the finest), got {len(teacher)}")
        inputs = gaussian_pyramid(x, count)
        images, bands = [self.levels[0](inputs[0])], []
        for level in range(1, count):
            coarse = upsample(images[-1] if teacher is None else teacher[level - 1])
            band = self.levels[level](torch.cat([inputs[level], coarse], dim=1))
            bands.append(band)
            images.append(coarse + band)
        return PyramidOutput(images, bands)


class LevelDiscriminators(nn.Module):
    """One discriminator per level; `forward(pairs, level=l)` runs level l's.

    Attributes:
        size_multiple, min_size: in full-size pixels (`SizeConstrained`), from the levels' own.
    """

    def __init__(self, levels: Sequence[nn.Module]) -> None:
        super().__init__()
        if not levels:
            raise ValueError("Expected at least one level, got none")
        self.levels = nn.ModuleList(levels)
        self.size_multiple, self.min_size = _scaled_limits(levels)

    def forward(self, x: torch.Tensor, level: int) -> Any:
        """Level `level`'s discriminator on `x` (pairs at that level's size)."""
        return self.levels[level](x)


# ------------------------------------------------------------------------------------------------
# Method


class LAPGAN(Pix2Pix):
    """pix2pix at every level of a Laplacian pyramid (networks: G, the chained generators; D, one per level).

    `generate` runs the levels on the real coarser images (see the module); the three losses are
    pix2pix's at each level, summed over levels: each level's networks get exactly their own
    level's pix2pix gradients. The logged scalars are those sums.

    Args:
        generator: a `LaplacianGenerator` of L levels.
        discriminator: a `LevelDiscriminators` of as many levels.
        gan_loss: an adversarial loss (`vanilla`, `lsgan`, `hinge`, `wgangp`).
        lambda_l1: weight of the L1 term at every level (pix2pix: 100).
        conditional: D_l sees (input, image) pairs at its level; False: the image alone.
    """

    def __init__(self, generator: LaplacianGenerator, discriminator: LevelDiscriminators, gan_loss: nn.Module, *,
                 lambda_l1: float, conditional: bool) -> None:
        if len(generator.levels) != len(discriminator.levels):
            raise ValueError(f"Expected as many discriminators as generator levels, got {len(discriminator.levels)} "
                             f"and {len(generator.levels)}")
        super().__init__(generator, discriminator, gan_loss, lambda_l1=lambda_l1, conditional=conditional)
        self.num_levels = len(generator.levels)

    def generate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> PyramidOutput:
        """Every level's image, each finer level refining the real coarser image."""
        return self.nets["G"](real_a, teacher=gaussian_pyramid(real_b, self.num_levels)[:-1])

    def discriminator_loss(
        self, D: Discriminator, real_a: torch.Tensor, real_b: torch.Tensor, fake: PyramidOutput, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """pix2pix's D loss (with its penalty) at every level, summed."""
        inputs, targets = gaussian_pyramid(real_a, self.num_levels), gaussian_pyramid(real_b, self.num_levels)
        total, logged = None, {}
        for level in range(self.num_levels):
            loss, scalars = super().discriminator_loss(functools.partial(D, level=level), inputs[level],
                                                       targets[level], fake.images[level], ctx)
            total = loss if total is None else total + loss
            logged = {k: v + logged[k] if k in logged else v for k, v in scalars.items()}
        assert total is not None  # at least one level
        return total, logged

    def generator_adversarial_loss(self, D: Discriminator, real_a: torch.Tensor, fake: PyramidOutput) -> torch.Tensor:
        """pix2pix's G adversarial loss at every level, summed."""
        inputs = gaussian_pyramid(real_a, self.num_levels)
        losses = [super(LAPGAN, self).generator_adversarial_loss(functools.partial(D, level=level), inputs[level],
                                                                 fake.images[level])
                  for level in range(self.num_levels)]
        return torch.stack(losses).sum()

    def reconstruction_loss(self, fake: PyramidOutput, real_b: torch.Tensor) -> torch.Tensor:
        """L1 of every level's image to the target at that level, summed (with the real coarser image
        as condition, the L1 of the band to the real band)."""
        targets = gaussian_pyramid(real_b, self.num_levels)
        losses = [super(LAPGAN, self).reconstruction_loss(fake.images[level], targets[level])
                  for level in range(self.num_levels)]
        return torch.stack(losses).sum()

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """The finest image of the chained levels, clamped to [-1, 1] (a sum of an upsampled image
        and a band can leave the range)."""
        return self.nets["G"](x).images[-1].clamp(-1, 1)


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def lapgan(
    parts: Parts,
    /,
    *,
    levels: int = 3,
    lambda_l1: float = 100.0,
    gan_mode: GANLossName = "vanilla",
    gan_options: LossOptions = None,
    conditional: bool = True,
) -> LAPGAN:
    """LAPGAN (Denton et al. 2015), conditional: a generator and a discriminator per pyramid level, pix2pix's losses.

    Args:
        parts: builds the recipe's [generator] and [discriminator] once per level.
        levels: pyramid levels L (3: 64, 128 and 256 pixels for 256-pixel crops); 1 is pix2pix.
        lambda_l1: weight of the L1 term at every level; pix2pix uses 100.
        gan_mode: the adversarial loss at every level: vanilla (pix2pix's), lsgan, hinge or wgangp.
        gan_options: options of that loss.
        conditional: D_l sees the input beside the image at its level; False: the image alone.
    """
    if levels < 1:
        raise ValueError(f"Expected levels >= 1, got {levels}")
    gan_loss = parts.loss(gan_mode, **(gan_options or {}))
    c_in, c_out = parts.in_channels, parts.out_channels
    generators = [parts.generator()] + [parts.generator(in_channels=c_in + c_out) for _ in range(levels - 1)]
    d_channels = c_in + c_out if conditional else c_out
    discriminators = [parts.discriminator(in_channels=d_channels) for _ in range(levels)]
    return LAPGAN(LaplacianGenerator(generators), LevelDiscriminators(discriminators), gan_loss,
                  lambda_l1=lambda_l1, conditional=conditional)
