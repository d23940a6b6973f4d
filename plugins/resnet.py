"""ResNet generator of CycleGAN (Zhu et al., ICCV 2017, https://arxiv.org/abs/1703.10593).

After Johnson et al.'s style-transfer network: c7s1-ngf, two stride-2 down-samplings, `n_blocks`
residual blocks at 4·ngf, two stride-2 up-samplings, c7s1-out, tanh. Reflection padding keeps
borders free of zero-padding artefacts; InstanceNorm without affine parameters is the CycleGAN
default, so convolutions keep their bias (parameter counts equal the reference implementation's:
resnet_9blocks 11,378,179, resnet_6blocks 7,837,699).
"""

from __future__ import annotations

import torch
from torch import nn

from translate_kit.api import Norm, check_image_batch, conv_bias, init_weights, make_norm, register_generator

__all__ = ["ResidualBlock", "ResnetGenerator", "resnet", "resnet_6blocks", "resnet_9blocks"]

_DOWNSAMPLINGS = 2


class ResidualBlock(nn.Module):
    """x + [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm](x)."""

    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), make_norm(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Encoder (c7s1 + 2 stride-2 convs), `n_blocks` residual blocks, decoder (2 transposed convs + c7s1).

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the first layer (4·ngf in the residual blocks).
        n_blocks: residual blocks (9 for 256 px, 6 for 128 px in CycleGAN).
        norm: "instance" (CycleGAN), "batch" or "none".
        dropout: dropout inside each residual block (0 in CycleGAN).

    Attributes:
        size_multiple: 4; input heights and widths must be multiples of it.
        min_size: 8: the residual blocks' reflection padding needs maps of at least 2x2.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H, W), values in (-1, 1).
    """

    size_multiple = 2**_DOWNSAMPLINGS
    min_size = 2 * size_multiple

    def __init__(
        self, *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
        norm: str = "instance", dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"Expected n_blocks >= 0, got {n_blocks}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout}")
        self.in_channels = in_channels
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            make_norm(norm, ngf),
            nn.ReLU(inplace=True),
        ]
        width = ngf
        for _ in range(_DOWNSAMPLINGS):
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias), make_norm(norm, 2 * width),
                       nn.ReLU(inplace=True)]
            width *= 2
        layers += [ResidualBlock(width, norm, dropout) for _ in range(n_blocks)]
        for _ in range(_DOWNSAMPLINGS):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                make_norm(norm, width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, self.in_channels, self.size_multiple)
        return self.model(x)


@register_generator(tiny={"ngf": 4, "n_blocks": 1})
def resnet(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9, norm: Norm = "instance",
    dropout: float = 0.0,
) -> ResnetGenerator:
    """ResNet generator (CycleGAN) with any number of residual blocks. H, W must be multiples of 4."""
    return init_weights(ResnetGenerator(in_channels=in_channels, out_channels=out_channels, ngf=ngf,
                                        n_blocks=n_blocks, norm=norm, dropout=dropout))


@register_generator(tiny={"ngf": 4})
def resnet_9blocks(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: Norm = "instance", dropout: float = 0.0
) -> ResnetGenerator:
    """ResNet generator with 9 residual blocks (CycleGAN at 256 px): 11,378,179 parameters."""
    return resnet(in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_blocks=9, norm=norm, dropout=dropout)


@register_generator(tiny={"ngf": 4})
def resnet_6blocks(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, norm: Norm = "instance", dropout: float = 0.0
) -> ResnetGenerator:
    """ResNet generator with 6 residual blocks (CycleGAN at 128 px): 7,837,699 parameters."""
    return resnet(in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_blocks=6, norm=norm, dropout=dropout)
