"""Building blocks shared by architectures: normalisation by name and the papers' initialisation.

Kept in the core so that every plugin (first-party or not) resolves "batch"/"instance"/"none" the
same way and initialises weights as pix2pix/CycleGAN do, instead of re-deriving the bias rule in
every class.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["NORMS", "Norm", "check_image_batch", "conv_bias", "init_weights", "make_norm"]

Norm = Literal["batch", "instance", "none"]
NORMS: tuple[str, ...] = ("batch", "instance", "none")


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer `norm` for `channels` feature maps.

    "batch" is BatchNorm with affine parameters and running statistics; "instance" is InstanceNorm
    without either (the pix2pix/CycleGAN reference's choice); "none" is the identity.

    Example:
        >>> norm = make_norm("instance", 8)
        >>> type(norm).__name__, norm.affine, norm.track_running_stats
        ('InstanceNorm2d', False, False)
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"Expected norm to be one of {', '.join(NORMS)}, got {norm!r}")


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by `norm` needs its own bias.

    BatchNorm's shift makes a bias redundant; InstanceNorm without affine parameters subtracts the
    mean (so a bias is redundant too, but the reference keeps it, and parameter counts follow the
    reference); with no norm the bias is the only shift.
    """
    return norm != "batch"


def check_image_batch(x: torch.Tensor, channels: int, multiple: int) -> None:
    """Raise ValueError unless `x` is `(B, channels, H, W)` with H and W multiples of `multiple`.

    Example:
        >>> check_image_batch(torch.zeros(1, 3, 30, 32), 3, 4)
        Traceback (most recent call last):
        ...
        ValueError: Expected input of shape (B, 3, H, W) with H, W divisible by 4, got (1, 3, 30, 32)
    """
    if x.ndim != 4 or x.shape[1] != channels or x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(
            f"Expected input of shape (B, {channels}, H, W) with H, W divisible by {multiple}, got {tuple(x.shape)}"
        )


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise as pix2pix does: conv/linear weights N(0, std), biases 0, norm scales N(1, std).

    Returns the module, so `init_weights(UNetGenerator(...))` reads as construction.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module
