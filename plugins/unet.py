"""U-Net generator of pix2pix.

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017,
https://arxiv.org/abs/1611.07004 (generator: Section 3.2.1 and Appendix 6.1.1), after the U-Net of
Ronneberger et al., https://arxiv.org/abs/1505.04597.

The network is written flat, as an encoder list, a decoder list and an explicit skip stack, rather
than as the reference's recursively nested blocks. It computes the same function as the reference
``UnetGenerator`` (the same layers, the same skip order) and has exactly its parameter counts:
``unet_256`` 54,413,955 and ``unet_128`` 41,828,995 (ngf 64, BatchNorm, 3 -> 3 channels).

Layout for ``num_downs = n`` (level ``i`` has ``ngf * min(2**i, 8)`` feature maps)::

    encoder  level 0      Conv4x4/2                         (no activation before, no norm)
             level 1..n-2 LeakyReLU(0.2) -> Conv4x4/2 -> norm
             level n-1    LeakyReLU(0.2) -> Conv4x4/2       (innermost: no norm)
    decoder  level n-1    ReLU -> ConvT4x4/2 -> norm         then concat the skip of level n-2
             level i      ReLU -> ConvT4x4/2 -> norm [-> Dropout]  then concat the skip of level i-1
             level 0      ReLU -> ConvT4x4/2 (with bias) -> Tanh

Dropout sits on the decoder levels 4 <= i <= n-2, the paper's "CD512" layers: three of them for
``unet_256``, two for ``unet_128``, none when ``n <= 5``.

Example:
    >>> import torch
    >>> net = unet(num_downs=5, ngf=8)
    >>> net.size_multiple
    32
    >>> net(torch.randn(2, 3, 32, 64)).shape
    torch.Size([2, 3, 32, 64])
"""

from __future__ import annotations

import torch
from torch import nn

from translate_kit.api import Norm, check_image_batch, conv_bias, init_weights, make_norm, register_generator

__all__ = ["DownBlock", "UNetGenerator", "UpBlock", "decoder_level", "level_dropout", "level_widths", "unet", "unet_128", "unet_256"]

# Channel multipliers double with depth and stop growing at 8 (512 feature maps for ngf 64).
_MAX_MULT = 8
# The first decoder level that gets dropout, as in the reference (its "ngf * 8 -> ngf * 8" blocks).
_FIRST_DROPOUT_LEVEL = 4


def level_widths(ngf: int, num_downs: int) -> list[int]:
    """Feature maps of each U-Net level, outermost first: ngf, 2 ngf, 4 ngf, then 8 ngf.

    Example:
        >>> level_widths(64, 8)
        [64, 128, 256, 512, 512, 512, 512, 512]
    """
    return [ngf * min(2**i, _MAX_MULT) for i in range(num_downs)]


def level_dropout(level: int, num_downs: int, dropout: float) -> float:
    """The dropout of decoder level `level` (0 outermost): `dropout` on levels 4 .. num_downs - 2,
    the reference's rule (dropout in its 8 ngf blocks but the innermost), else 0.

    Example:
        >>> [level_dropout(i, 8, 0.5) for i in range(8)]
        [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0]
    """
    return dropout if _FIRST_DROPOUT_LEVEL <= level < num_downs - 1 else 0.0


class DownBlock(nn.Sequential):
    """One encoder level: [LeakyReLU(0.2)] -> Conv 4x4 stride 2 -> [norm].

    Args:
        in_channels: input feature maps.
        out_channels: output feature maps.
        norm: normalisation after the convolution ("batch", "instance" or "none").
        outermost: the first level, applied to the image: no activation before the convolution.
        innermost: the bottleneck level: no normalisation after the convolution.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H / 2, W / 2)
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: str, outermost: bool = False, innermost: bool = False
    ) -> None:
        super().__init__()
        if not outermost:
            # In place, as in the reference: the input is the level above's output, which is also
            # its skip, so the skip becomes LeakyReLU(skip). Nothing changes, since the decoder
            # reads a skip only through its ReLU and ReLU(LeakyReLU(x)) = ReLU(x) (gradient too),
            # but one feature map per level is not kept twice: 31 MiB less at batch 4, 256 px.
            self.add_module("act", nn.LeakyReLU(0.2, inplace=True))
        # The reference decides the bias from the norm type alone, also for the two levels that have
        # no norm after them (the first and the innermost); parameter counts follow it.
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=conv_bias(norm)))
        if not (outermost or innermost):
            self.add_module("norm", make_norm(norm, out_channels))


class UpBlock(nn.Sequential):
    """One decoder level: ReLU -> ConvTranspose 4x4 stride 2 -> norm [-> Dropout], or -> Tanh at the top.

    Args:
        in_channels: input feature maps (the level below's output concatenated with its skip).
        out_channels: output feature maps.
        norm: normalisation after the transposed convolution.
        outermost: the last level, producing the image: a biased convolution and Tanh, no norm.
        dropout: dropout probability after the norm (0 for none).

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, 2 H, 2 W)
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: str, outermost: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        # In place is safe: the input is the concatenation (or the innermost convolution's output),
        # used by nothing else.
        self.add_module("act", nn.ReLU(inplace=True))
        bias = True if outermost else conv_bias(norm)
        self.add_module("conv", nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias))
        if outermost:
            self.add_module("tanh", nn.Tanh())
            return
        self.add_module("norm", make_norm(norm, out_channels))
        if dropout > 0:
            self.add_module("dropout", nn.Dropout(dropout))


def decoder_level(level: int, widths: list[int], out_channels: int, *, norm: str, dropout: float) -> UpBlock:
    """Decoder level `level` of a U-Net whose encoder levels have `widths` (0 outermost): it reads
    the level below's output, concatenated with this level's skip except at the innermost, and
    writes `out_channels` at level 0, else the next level's width; dropout by `level_dropout`.

    Example:
        >>> decoder_level(0, [8, 16], 3, norm="batch", dropout=0.5).conv.out_channels
        3
    """
    num_downs = len(widths)
    return UpBlock(
        widths[level] if level == num_downs - 1 else 2 * widths[level],
        out_channels if level == 0 else widths[level - 1],
        norm=norm,
        outermost=level == 0,
        dropout=level_dropout(level, num_downs, dropout),
    )


class UNetGenerator(nn.Module):
    """The pix2pix U-Net: ``num_downs`` stride-2 levels down, as many up, with skip connections.

    Every encoder output except the innermost is concatenated (skip first) to the decoder output of
    the level below it. The reference needs ``num_downs >= 5``; here any ``num_downs >= 1`` works,
    with the same channel rule (``ngf * min(2**i, 8)`` at level ``i``), so the first five levels of
    every depth match the reference's and ``num_downs`` 1 to 4 are shallower versions of it (no
    dropout, since the reference puts dropout only between two 8·ngf levels). ``num_downs = 1`` is a
    single convolution and transposed convolution without a skip.

    Args:
        num_downs: number of stride-2 levels; input height and width must be multiples of
            ``2**num_downs`` (8 for 256x256 images, reaching 1x1 at the bottleneck).
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the first level.
        norm: "batch" (pix2pix), "instance" or "none".
        dropout: dropout probability in the decoder levels 4 .. num_downs-2 (0 disables it).

    Attributes:
        size_multiple: ``2**num_downs``; valid input heights and widths are its multiples.
        min_size: ``2**num_downs`` too (the bottleneck is then 1x1).

    Raises:
        ValueError: an argument is out of range.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H, W), values in (-1, 1).
    """

    def __init__(
        self,
        *,
        num_downs: int = 8,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_downs < 1:
            raise ValueError(f"Expected num_downs >= 1, got {num_downs}")
        if min(in_channels, out_channels, ngf) < 1:
            raise ValueError(
                f"Expected in_channels, out_channels and ngf >= 1, got {in_channels}, {out_channels}, {ngf}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout}")
        self.num_downs = num_downs
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size_multiple = self.min_size = 2**num_downs

        widths = level_widths(ngf, num_downs)
        innermost = num_downs - 1
        self.downs = nn.ModuleList(
            DownBlock(
                in_channels if i == 0 else widths[i - 1],
                widths[i],
                norm=norm,
                outermost=i == 0,
                innermost=i == innermost,
            )
            for i in range(num_downs)
        )
        # Decoder levels from the innermost up; every level but the innermost reads a concatenation.
        self.ups = nn.ModuleList(decoder_level(i, widths, out_channels, norm=norm, dropout=dropout)
                                 for i in reversed(range(num_downs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a batch of images.

        Args:
            x: images of shape (B, in_channels, H, W), H and W multiples of ``size_multiple``.

        Returns:
            Images of shape (B, out_channels, H, W) in (-1, 1).

        Raises:
            ValueError: the input has the wrong number of channels or a size that is not a multiple
                of ``size_multiple``.
        """
        check_image_batch(x, self.in_channels, self.size_multiple)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for up in self.ups:
            x = up(x)
            if skips:
                x = torch.cat([skips.pop(), x], dim=1)
        return x


@register_generator(tiny={"num_downs": 5, "ngf": 8})
def unet(
    *,
    num_downs: int = 8,
    in_channels: int = 3,
    out_channels: int = 3,
    ngf: int = 64,
    norm: Norm = "batch",
    dropout: float = 0.5,
) -> UNetGenerator:
    """U-Net generator (pix2pix); input height and width must be multiples of 2**num_downs.

    Weights are initialised as in the paper: N(0, 0.02), norm scales N(1, 0.02), biases 0.

    Args:
        num_downs: stride-2 levels (8 for 256x256 images, 7 for 128x128, 5 for 32x32 tests).
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the first level (64 in the paper).
        norm: "batch" (the paper), "instance" or "none".
        dropout: decoder dropout probability, the paper's only noise source (0 disables it).

    Example:
        >>> sum(p.numel() for p in unet(num_downs=8).parameters())
        54413955
    """
    net = UNetGenerator(
        num_downs=num_downs, in_channels=in_channels, out_channels=out_channels, ngf=ngf, norm=norm, dropout=dropout
    )
    return init_weights(net)


@register_generator(tiny={"ngf": 2})
def unet_256(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: Norm = "batch", dropout: float = 0.5
) -> UNetGenerator:
    """U-Net with 8 levels for 256x256 images (pix2pix's generator, 54,413,955 parameters)."""
    return unet(num_downs=8, in_channels=in_channels, out_channels=out_channels, ngf=ngf, norm=norm, dropout=dropout)


@register_generator(tiny={"ngf": 2})
def unet_128(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: Norm = "batch", dropout: float = 0.5
) -> UNetGenerator:
    """U-Net with 7 levels for 128x128 images (41,828,995 parameters)."""
    return unet(num_downs=7, in_channels=in_channels, out_channels=out_channels, ngf=ngf, norm=norm, dropout=dropout)
