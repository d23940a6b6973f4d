"""PatchGAN discriminators of pix2pix: one real/fake logit per overlapping image patch.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017,
https://arxiv.org/abs/1611.07004 (Section 3.2.2, Appendix 6.1.2; patch-size ablation in Table 3).

``PatchDiscriminator`` with ``n_layers`` stride-2 convolutions has a receptive field of 16 (n_layers
1), 70 (3, the paper's choice) or 286 (5) pixels; ``PixelDiscriminator`` judges each pixel alone
(1x1). Both match the reference implementation's parameter counts exactly (ndf 64, 6 input channels,
BatchNorm): 139,585 / 2,768,705 / 11,159,361 and 9,024. The discriminator sees the input image and
the real or generated output concatenated along channels, hence ``in_channels = 6`` for RGB.

``forward(x, return_features=True)`` also returns the activations of every block before the final
convolution, which pix2pixHD's feature-matching loss compares between real and fake pairs.

Example:
    >>> import torch
    >>> d = patchgan_70(ndf=8)
    >>> d.receptive_field
    70
    >>> d(torch.randn(1, 6, 256, 256)).shape  # the paper's 30x30 patch map
    torch.Size([1, 1, 30, 30])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, overload

import torch
from torch import nn

from translate_kit.api import LOGITS, Norm, conv_bias, init_weights, make_norm, register_discriminator

__all__ = [
    "PatchDiscriminator",
    "PixelDiscriminator",
    "patchgan",
    "patchgan_16",
    "patchgan_286",
    "patchgan_70",
    "pixelgan",
    "receptive_field",
]

_MAX_MULT = 8  # channel multipliers double per layer and stop at 8 (512 feature maps for ndf 64)


def receptive_field(modules: Iterable[nn.Module]) -> int:
    """Receptive field, in input pixels, of a chain of convolutions given in forward order.

    Each convolution widens the field by ``(kernel - 1) * dilation`` times the product of the
    strides before it. Non-convolution modules (norms, activations) leave it unchanged. Square
    kernels are assumed (the height's values are used).

    Example:
        >>> receptive_field([nn.Conv2d(1, 1, 4, stride=2), nn.Conv2d(1, 1, 4, stride=1)])
        10
    """
    field, jump = 1, 1
    for m in modules:
        if isinstance(m, nn.Conv2d):
            field += (m.kernel_size[0] - 1) * m.dilation[0] * jump
            jump *= m.stride[0]
    return field


class _BlockDiscriminator(nn.Module):
    """A chain of blocks and a final convolution to 1 channel; subclasses fill `blocks` and `head`."""

    blocks: nn.ModuleList
    head: nn.Conv2d
    in_channels: int
    min_size: int

    def _finish(self) -> None:
        self.receptive_field = receptive_field(self.modules())

    @overload
    def forward(self, x: torch.Tensor, return_features: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def forward(self, x: torch.Tensor, return_features: Literal[True]) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Score the patches of a batch of (input, output) pairs.

        Args:
            x: pairs concatenated along channels, shape (B, in_channels, H, W).
            return_features: also return each block's output (for feature matching).

        Returns:
            Logits of shape (B, 1, h, w), one per patch; with ``return_features``, the tuple
            ``(logits, features)`` where ``features`` holds one (B, C_k, h_k, w_k) tensor per block,
            in forward order, the logits not included.

        Raises:
            ValueError: the input has the wrong number of channels or is smaller than ``min_size``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"Expected input of shape (B, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        if not return_features:
            for block in self.blocks:
                x = block(x)
            return self.head(x)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features


class PatchDiscriminator(_BlockDiscriminator):
    """PatchGAN: ``n_layers`` stride-2 convolutions, one stride-1, then a 1-channel logit map.

    Blocks: Conv4x4/2 ndf -> LeakyReLU(0.2); then for k = 1 .. n_layers-1: Conv4x4/2 ndf·min(2^k, 8)
    -> norm -> LeakyReLU; then Conv4x4/1 ndf·min(2^n_layers, 8) -> norm -> LeakyReLU; head Conv4x4/1
    to 1 channel. Padding 1 everywhere, so an H x W input gives (H / 2^n_layers - 2) square logits.

    Any ``n_layers >= 1`` is well defined (the channel count stops growing at 8·ndf); the field
    grows as 16, 34, 70, 142, 286, 574... The paper studies 1 (16), 3 (70) and 5 (286); deeper
    fields cover the whole image, so the discriminator stops being a patch discriminator.

    Args:
        in_channels: channels of the input (6 for an RGB pair).
        ndf: feature maps of the first convolution.
        n_layers: stride-2 convolutions.
        norm: "batch" (pix2pix), "instance" (CycleGAN) or "none".

    Attributes:
        receptive_field: input pixels (per side) that one output logit sees.
        min_size: the smallest input height and width giving a 1x1 output (``3 * 2**n_layers``).

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(self, *, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"Expected n_layers >= 1, got {n_layers}")
        if min(in_channels, ndf) < 1:
            raise ValueError(f"Expected in_channels and ndf >= 1, got {in_channels}, {ndf}")
        self.in_channels = in_channels
        self.n_layers = n_layers
        self.min_size = 3 * 2**n_layers
        self.size_multiple = 1
        bias = conv_bias(norm)
        widths = [ndf * min(2**k, _MAX_MULT) for k in range(n_layers + 1)]
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))]
        for k in range(1, n_layers + 1):
            stride = 2 if k < n_layers else 1
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(widths[k - 1], widths[k], 4, stride, 1, bias=bias),
                    make_norm(norm, widths[k]),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 1)
        self._finish()


class PixelDiscriminator(_BlockDiscriminator):
    """1x1 PatchGAN ("PixelGAN"): judges every pixel's colour alone.

    Blocks: Conv1x1 ndf -> LeakyReLU(0.2); Conv1x1 2·ndf -> norm -> LeakyReLU; head Conv1x1 to 1
    channel (biased only where the norm says, as in the reference).

    Args:
        in_channels: channels of the input (6 for an RGB pair).
        ndf: feature maps of the first convolution.
        norm: "batch", "instance" or "none".

    Attributes:
        receptive_field: 1.
        min_size: 1.
    """

    def __init__(self, *, in_channels: int = 6, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        if min(in_channels, ndf) < 1:
            raise ValueError(f"Expected in_channels and ndf >= 1, got {in_channels}, {ndf}")
        self.in_channels = in_channels
        self.min_size = self.size_multiple = 1
        bias = conv_bias(norm)
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, inplace=True)),
                nn.Sequential(
                    nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), make_norm(norm, 2 * ndf), nn.LeakyReLU(0.2, inplace=True)
                ),
            ]
        )
        self.head = nn.Conv2d(2 * ndf, 1, 1, bias=bias)
        self._finish()


@register_discriminator(output=LOGITS, tiny={"ndf": 8})
def patchgan(*, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch") -> PatchDiscriminator:
    """PatchGAN discriminator; n_layers 1/3/5 give 16/70/286-pixel patches (3 is the paper's).

    Weights are initialised as in the paper: N(0, 0.02), norm scales N(1, 0.02), biases 0.

    Args:
        in_channels: channels of the (input, output) pair; the pix2pix method sets it.
        ndf: feature maps of the first convolution (64 in the paper).
        n_layers: stride-2 convolutions (>= 1).
        norm: "batch" (pix2pix), "instance" (CycleGAN) or "none".

    Example:
        >>> sum(p.numel() for p in patchgan().parameters())
        2768705
    """
    return init_weights(PatchDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm))


@register_discriminator(output=LOGITS, tiny={"ndf": 8})
def pixelgan(*, in_channels: int = 6, ndf: int = 64, norm: Norm = "batch") -> PixelDiscriminator:
    """1x1 PixelGAN discriminator: judges colours only, no structure (9,024 parameters)."""
    return init_weights(PixelDiscriminator(in_channels=in_channels, ndf=ndf, norm=norm))


@register_discriminator(output=LOGITS, tiny={"ndf": 8})
def patchgan_16(*, in_channels: int = 6, ndf: int = 64, norm: Norm = "batch") -> PatchDiscriminator:
    """16x16 PatchGAN (n_layers 1, 139,585 parameters)."""
    return patchgan(in_channels=in_channels, ndf=ndf, n_layers=1, norm=norm)


@register_discriminator(output=LOGITS, tiny={"ndf": 8})
def patchgan_70(*, in_channels: int = 6, ndf: int = 64, norm: Norm = "batch") -> PatchDiscriminator:
    """70x70 PatchGAN (n_layers 3, the paper's choice, 2,768,705 parameters)."""
    return patchgan(in_channels=in_channels, ndf=ndf, n_layers=3, norm=norm)


@register_discriminator(output=LOGITS, tiny={"ndf": 8})
def patchgan_286(*, in_channels: int = 6, ndf: int = 64, norm: Norm = "batch") -> PatchDiscriminator:
    """286x286 PatchGAN (n_layers 5, 11,159,361 parameters)."""
    return patchgan(in_channels=in_channels, ndf=ndf, n_layers=5, norm=norm)
