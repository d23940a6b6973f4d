"""Super-resolution networks: SRResNet, BasicSR's MSRResNet, ESRGAN's RRDBNet, and their discriminators.

- SRResNet / SRGAN: Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
  Adversarial Network", CVPR 2017, https://arxiv.org/abs/1609.04802 (Figure 4).
- MSRResNet: the "modified SRResNet" of BasicSR (https://github.com/XPixelGroup/BasicSR): no batch
  norm, LeakyReLU(0.1), a bilinear global residual.
- RRDBNet / ESRGAN: Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial
  Networks", ECCVW 2018, https://arxiv.org/abs/1809.00219 (Figures 3 and 4); its x2 and x1 forms
  (pixel-unshuffled input) are Real-ESRGAN's.
- VGG-style discriminator: SRGAN's and ESRGAN's image classifier, in BasicSR's layout.
- U-Net discriminator with spectral norm: Wang et al., "Real-ESRGAN: Training Real-World Blind
  Super-Resolution with Pure Synthetic Data", ICCVW 2021, https://arxiv.org/abs/2107.10833
  (Section 3.3, Figure 6).

Parameter counts (3 -> 3 channels, 64 features): ``srresnet`` x4 1,549,462; ``msrresnet`` x4
1,517,571; ``rrdbnet`` x4 16,697,987; ``vgg_discriminator`` (input 128) 14,499,401;
``unet_discriminator_sn`` 4,376,897.

**Output range.** translate-kit's images are in [-1, 1]. Super-resolution networks end with a plain
convolution (no tanh): their output is *unbounded*, near the image range once trained but not inside
it by construction (MSRResNet adds the bilinear upsampling of its input to a residual, so any
residual pushes saturated pixels past +-1). Clamping is left to consumers (metrics, image writers).

**State-dict keys** follow BasicSR / Real-ESRGAN wherever those exist, so their checkpoints load
with ``load_state_dict`` and no renaming (MSRResNet, RRDBNet, VGGStyleDiscriminator,
UNetDiscriminatorSN; see each class). SRResNet has no reference checkpoint format; its keys are
listed in its class docstring.

Example:
    >>> import torch
    >>> net = rrdbnet(nf=8, n_blocks=1, growth=4, scale=2)
    >>> net.scale, net.size_multiple
    (2, 2)
    >>> net(torch.randn(1, 3, 16, 24)).shape
    torch.Size([1, 3, 32, 48])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import LOGITS, check_image_batch, register_discriminator, register_generator

__all__ = [
    "RRDB",
    "MSRResNet",
    "NoNormResidualBlock",
    "RRDBNet",
    "ResidualDenseBlock",
    "SRResNet",
    "SRResNetBlock",
    "UNetDiscriminatorSN",
    "VGGStyleDiscriminator",
    "msrresnet",
    "rrdbnet",
    "srresnet",
    "unet_discriminator_sn",
    "vgg_discriminator",
]

# The scale of residual branches at initialisation (BasicSR: Kaiming normal x 0.1), so that a deep
# stack of residual blocks starts close to the identity.
_RESIDUAL_INIT_SCALE = 0.1
# ESRGAN's residual scaling inside every dense block and every RRDB.
_DENSE_RESIDUAL_SCALE = 0.2
# The feature side the VGG-style discriminator reduces its input to before the dense layers.
_VGG_MAX_SIDE = 4
_MAX_MULT = 8  # VGG-style discriminator: widths double per stage and stop at 8·nf


@torch.no_grad()
def _kaiming_scaled_(modules: Iterable[nn.Module], scale: float) -> None:
    """Kaiming-normal (fan in, gain sqrt 2) weights times `scale`, zero biases, for every Conv2d in `modules`."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def _conv3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def _check_positive(**values: int) -> None:
    bad = {k: v for k, v in values.items() if v < 1}
    if bad:
        raise ValueError(f"Expected {', '.join(values)} >= 1, got {', '.join(f'{k}={v}' for k, v in bad.items())}")


def _check_images(x: torch.Tensor, channels: int, multiple: int = 1) -> None:
    """Raise ValueError unless `x` is `(B, channels, H, W)` (H and W multiples of `multiple`)."""
    if multiple > 1:
        check_image_batch(x, channels, multiple)
    elif x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"Expected input of shape (B, {channels}, H, W), got {tuple(x.shape)}")


# The image range a network's weights compute in. translate-kit hands every network images in
# [-1, 1]; ESRGAN, BasicSR and Real-ESRGAN trained theirs on [0, 1]. Folding the change of range
# into the first convolution's weights is not exact (its zero padding means black in one range and
# grey in the other), so a "0..1" network maps its input to [0, 1] and its output back instead.
PixelRange = Literal["-1..1", "0..1"]


def _check_range(pixel_range: str) -> str:
    if pixel_range not in ("-1..1", "0..1"):
        raise ValueError(f'Expected pixel_range "-1..1" or "0..1", got {pixel_range!r}')
    return pixel_range


def _into_range(x: torch.Tensor, pixel_range: str) -> torch.Tensor:
    return x.add(1).mul(0.5) if pixel_range == "0..1" else x


def _out_of_range(y: torch.Tensor, pixel_range: str) -> torch.Tensor:
    return y.mul(2).sub(1) if pixel_range == "0..1" else y


def _check_choice(name: str, value: int, choices: tuple[int, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Expected {name} in {', '.join(map(str, choices))}, got {value}")


# --- SRResNet (Ledig et al.) ------------------------------------------------------------------


class SRResNetBlock(nn.Module):
    """SRResNet's residual block: x + BN(conv3x3(PReLU(BN(conv3x3(x))))).

    The convolutions and norms sit in one ``nn.Sequential`` (``body``), so that translate-kit's
    inference copy folds each batch norm into the convolution before it.

    Args:
        channels: feature maps in and out.

    Shape:
        (B, channels, H, W) -> (B, channels, H, W)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv3(channels, channels), nn.BatchNorm2d(channels), nn.PReLU(),
            _conv3(channels, channels), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """SRResNet, SRGAN's generator: residual blocks at low resolution, sub-pixel upsampling.

    Layout (Ledig et al., Figure 4): conv 9x9 nf -> PReLU; ``n_blocks`` ``SRResNetBlock``; conv 3x3
    -> BN, plus the long skip from the first PReLU; ``log2(scale)`` upsampling stages (conv 3x3 to
    4·nf, pixel-shuffle x2, PReLU); conv 9x9 to ``out_channels``. Every convolution has a bias and
    every PReLU one shared slope, as in the common re-implementations (the paper gives neither), so
    the x4 network with 64 features and 16 blocks has 1,549,462 parameters. PyTorch's default
    initialisation (the paper names none).

    State-dict keys: ``conv_first.0`` (conv 9x9), ``conv_first.1`` (PReLU), ``body.N.body.{0,1,2,3,4}``
    (conv, BN, PReLU, conv, BN of block N), ``conv_body.{0,1}`` (conv, BN), ``upsample.{3k, 3k+2}``
    (conv and PReLU of stage k), ``conv_last``.

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        nf: feature maps (64 in the paper).
        n_blocks: residual blocks (16 in the paper).
        scale: 2 or 4 (one or two upsampling stages).

    Attributes:
        scale: the upscaling factor (`Upscaling`).
        size_multiple, min_size: 1 (`SizeConstrained`: any size).

    Raises:
        ValueError: an argument is out of range.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, scale H, scale W), unbounded values.
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, nf: int = 64, n_blocks: int = 16,
                 scale: int = 4, pixel_range: PixelRange = "-1..1") -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, nf=nf)
        self.pixel_range = _check_range(pixel_range)
        if n_blocks < 0:
            raise ValueError(f"Expected n_blocks >= 0, got {n_blocks}")
        _check_choice("scale", scale, (2, 4))
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.size_multiple = self.min_size = 1
        self.conv_first = nn.Sequential(nn.Conv2d(in_channels, nf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*(SRResNetBlock(nf) for _ in range(n_blocks)))
        self.conv_body = nn.Sequential(_conv3(nf, nf), nn.BatchNorm2d(nf))
        stages: list[nn.Module] = []
        for _ in range(scale // 2):  # scale 2: one stage; 4: two
            stages += [_conv3(nf, 4 * nf), nn.PixelShuffle(2), nn.PReLU()]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(nf, out_channels, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale a batch of images.

        Args:
            x: images of shape (B, in_channels, H, W), in [-1, 1].

        Returns:
            Images of shape (B, out_channels, scale H, scale W); unbounded (not clamped to [-1, 1]).

        Raises:
            ValueError: the input is not (B, in_channels, H, W).
        """
        _check_images(x, self.in_channels)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        return self.conv_last(self.upsample(feat))


# --- MSRResNet (BasicSR) ----------------------------------------------------------------------


class NoNormResidualBlock(nn.Module):
    """Residual block without batch norm: x + conv3x3(ReLU(conv3x3(x))) (EDSR's, MSRResNet's).

    Both convolutions are Kaiming-normal initialised and scaled by 0.1 (BasicSR), so a deep stack
    starts near the identity.

    Args:
        channels: feature maps in and out.

    Shape:
        (B, channels, H, W) -> (B, channels, H, W)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3(channels, channels)
        self.conv2 = _conv3(channels, channels)
        self.relu = nn.ReLU(inplace=True)  # on conv1's output only, which nothing else reads
        _kaiming_scaled_([self.conv1, self.conv2], _RESIDUAL_INIT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """BasicSR's modified SRResNet: no batch norm, LeakyReLU(0.1), a bilinear global residual.

    Layout: conv_first 3x3 -> LeakyReLU(0.1); ``n_blocks`` ``NoNormResidualBlock``; upsampling
    (x4: two of conv 3x3 nf -> 4·nf, pixel-shuffle 2, LeakyReLU; x2: one such stage; x3: one with
    9·nf and pixel-shuffle 3); conv_hr 3x3 -> LeakyReLU; conv_last 3x3; plus the input upsampled
    bilinearly (align_corners False), so the network learns the residual to bilinear upsampling.
    Initialisation as BasicSR's: Kaiming normal x 0.1, biases 0, for every convolution (the
    residual blocks' included); 1,517,571 parameters at x4 with 64 features and 16 blocks.

    State-dict keys are BasicSR's ``MSRResNet``'s: ``conv_first``, ``body.N.conv1``, ``body.N.conv2``,
    ``upconv1``, ``upconv2`` (x4 only), ``conv_hr``, ``conv_last``; its checkpoints load unchanged.

    Args:
        in_channels: input image channels.
        out_channels: output image channels; must equal ``in_channels`` (the global residual adds
            the upsampled input to the output).
        nf: feature maps (64).
        n_blocks: residual blocks (16).
        scale: 2, 3 or 4.
        pixel_range: the image range the weights compute in (see `PixelRange`).

    Attributes:
        scale: the upscaling factor (`Upscaling`).
        size_multiple, min_size: 1 (`SizeConstrained`: any size).

    Raises:
        ValueError: an argument is out of range, or the channel counts differ.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, scale H, scale W), unbounded values.
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, nf: int = 64, n_blocks: int = 16,
                 scale: int = 4, pixel_range: PixelRange = "-1..1") -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, nf=nf)
        self.pixel_range = _check_range(pixel_range)
        if n_blocks < 0:
            raise ValueError(f"Expected n_blocks >= 0, got {n_blocks}")
        _check_choice("scale", scale, (2, 3, 4))
        if in_channels != out_channels:
            raise ValueError(
                f"Expected out_channels == in_channels (the global residual adds the upsampled input), "
                f"got {in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.size_multiple = self.min_size = 1
        self.conv_first = _conv3(in_channels, nf)
        self.body = nn.Sequential(*(NoNormResidualBlock(nf) for _ in range(n_blocks)))
        shuffle = 3 if scale == 3 else 2
        self.upconv1 = _conv3(nf, nf * shuffle**2)
        self.upconv2 = _conv3(nf, 4 * nf) if scale == 4 else None
        self.pixel_shuffle = nn.PixelShuffle(shuffle)
        self.conv_hr = _conv3(nf, nf)
        self.conv_last = _conv3(nf, out_channels)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)  # always on a fresh convolution or shuffle output
        _kaiming_scaled_(
            [m for m in (self.conv_first, self.upconv1, self.upconv2, self.conv_hr, self.conv_last) if m is not None],
            _RESIDUAL_INIT_SCALE,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale a batch of images.

        Args:
            x: images of shape (B, in_channels, H, W), in [-1, 1].

        Returns:
            Images of shape (B, out_channels, scale H, scale W); unbounded (not clamped to [-1, 1]).

        Raises:
            ValueError: the input is not (B, in_channels, H, W).
        """
        _check_images(x, self.in_channels)
        x = _into_range(x, self.pixel_range)
        feat = self.body(self.lrelu(self.conv_first(x)))
        feat = self.lrelu(self.pixel_shuffle(self.upconv1(feat)))
        if self.upconv2 is not None:
            feat = self.lrelu(self.pixel_shuffle(self.upconv2(feat)))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return _out_of_range(out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False),
                             self.pixel_range)


# --- RRDBNet (ESRGAN, Real-ESRGAN) -----------------------------------------------------------


class ResidualDenseBlock(nn.Module):
    """ESRGAN's residual dense block: five densely connected 3x3 convolutions, residual scaled 0.2.

    Convolution k (1..4) sees the input and every earlier output concatenated and gives ``growth``
    feature maps, followed by LeakyReLU(0.2); conv5 maps all of them back to ``channels`` with no
    activation; the block returns x + 0.2 * conv5(...). Kaiming normal x 0.1 (BasicSR).

    Args:
        channels: feature maps in and out (64).
        growth: feature maps each of conv1..conv4 adds (32).

    Shape:
        (B, channels, H, W) -> (B, channels, H, W)
    """

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        for k in range(1, 5):
            self.add_module(f"conv{k}", _conv3(channels + (k - 1) * growth, growth))
        self.conv5 = _conv3(channels + 4 * growth, channels)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)  # on fresh convolution outputs only
        _kaiming_scaled_(list(self.children()), _RESIDUAL_INIT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(self.lrelu(conv(torch.cat(features, dim=1))))
        return x + _DENSE_RESIDUAL_SCALE * self.conv5(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three ``ResidualDenseBlock`` in a row, residual scaled 0.2.

    Args:
        channels: feature maps in and out.
        growth: growth of each dense block.

    Shape:
        (B, channels, H, W) -> (B, channels, H, W)
    """

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _DENSE_RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN's generator: RRDBs at low resolution, then nearest-neighbour upsampling and convolutions.

    Layout: conv_first 3x3; ``n_blocks`` ``RRDB``; conv_body 3x3, plus the skip from conv_first;
    two stages of (nearest x2, conv 3x3, LeakyReLU 0.2) (conv_up1, conv_up2); conv_hr 3x3 ->
    LeakyReLU(0.2); conv_last 3x3. No batch norm. The x4 network with 64 features, 23 blocks and
    growth 32 has 16,697,987 parameters.

    Scales 2 and 1 are Real-ESRGAN's: the input is first pixel-unshuffled by 2 (x2) or 4 (x1), so
    conv_first sees ``in_channels * 4`` (or ``* 16``) channels at half (a quarter) resolution, and
    the same x4 upsampling brings it to 2x (1x) the input's size. Inputs must then be multiples of
    2 (4). The unshuffle orders channels as BasicSR's ``pixel_unshuffle`` does (channel c, row
    offset i, column offset j -> c·r² + i·r + j, which is ``F.pixel_unshuffle``'s order).

    Initialisation as BasicSR's: Kaiming normal x 0.1 and zero biases inside the dense blocks,
    PyTorch's default elsewhere.

    State-dict keys are BasicSR's / Real-ESRGAN's ``RRDBNet``'s, so their checkpoints (the
    ``params`` or ``params_ema`` entry) load with no renaming: ``conv_first``,
    ``body.N.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
    ``conv_last``.

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        nf: feature maps (64).
        n_blocks: RRDBs (23).
        growth: growth channels of the dense blocks (32).
        scale: 4 (ESRGAN), 2 or 1 (Real-ESRGAN's pixel-unshuffled forms).
        pixel_range: the image range the weights compute in (see `PixelRange`).

    Attributes:
        scale: the upscaling factor (`Upscaling`).
        size_multiple, min_size: the pixel-unshuffle factor: 1 at x4, 2 at x2, 4 at x1
            (`SizeConstrained`).

    Raises:
        ValueError: an argument is out of range.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, scale H, scale W), unbounded values.
    """

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, nf: int = 64, n_blocks: int = 23,
                 growth: int = 32, scale: int = 4, pixel_range: PixelRange = "-1..1") -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, nf=nf, growth=growth)
        self.pixel_range = _check_range(pixel_range)
        if n_blocks < 0:
            raise ValueError(f"Expected n_blocks >= 0, got {n_blocks}")
        _check_choice("scale", scale, (1, 2, 4))
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.unshuffle = 4 // scale
        self.size_multiple = self.min_size = self.unshuffle
        self.conv_first = _conv3(in_channels * self.unshuffle**2, nf)
        self.body = nn.Sequential(*(RRDB(nf, growth) for _ in range(n_blocks)))
        self.conv_body = _conv3(nf, nf)
        self.conv_up1 = _conv3(nf, nf)
        self.conv_up2 = _conv3(nf, nf)
        self.conv_hr = _conv3(nf, nf)
        self.conv_last = _conv3(nf, out_channels)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)  # on fresh convolution outputs only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale a batch of images.

        Args:
            x: images of shape (B, in_channels, H, W), in [-1, 1]; H and W multiples of
                ``size_multiple`` (the pixel-unshuffle factor).

        Returns:
            Images of shape (B, out_channels, scale H, scale W); unbounded (not clamped to [-1, 1]).

        Raises:
            ValueError: the input has the wrong number of channels, or a size that is not a multiple
                of ``size_multiple``.
        """
        _check_images(x, self.in_channels, self.size_multiple)
        x = _into_range(x, self.pixel_range)
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return _out_of_range(self.conv_last(self.lrelu(self.conv_hr(feat))), self.pixel_range)


# --- discriminators ---------------------------------------------------------------------------


class VGGStyleDiscriminator(nn.Module):
    """SRGAN/ESRGAN's VGG-style discriminator: strided conv blocks, two dense layers, one logit per image.

    Stage k (0, 1, ...) has ``nf·min(2^k, 8)`` feature maps: conv 3x3 stride 1 (stage 0: with bias,
    then LeakyReLU(0.2); later stages: no bias, BN, LeakyReLU), then conv 4x4 stride 2 (no bias) ->
    BN -> LeakyReLU(0.2). Stages are added until the map is at most 4x4: 5 stages for inputs 96
    and 128 (3x3, 4x4), 6 for 192 and 256 (3x3, 4x4). Then linear (8·nf·side²) -> 100 ->
    LeakyReLU(0.2) -> linear 1. At 128 and 256 this is exactly BasicSR's ``VGGStyleDiscriminator``
    (ESRGAN's); 96 (SRGAN's HR patch) and 192 extend the same rule. SRGAN's own discriminator
    differs (3x3 stride-2 convolutions, dense 1024, sigmoid). PyTorch's default initialisation,
    as BasicSR. 14,499,401 parameters for nf 64, input 128.

    The input size is fixed by the dense layer: it is declared as ``size_multiple = min_size =
    input_size``, and any other size is a ValueError.

    State-dict keys are BasicSR's: ``conv0_0``, ``conv0_1``, ``bn0_1``, ``conv{k}_0``, ``bn{k}_0``,
    ``conv{k}_1``, ``bn{k}_1`` for k >= 1, ``linear1``, ``linear2``; its checkpoints load unchanged.

    Args:
        in_channels: input image channels.
        nf: feature maps of the first stage (64).
        input_size: the one input height and width it takes: 96, 128, 192 or 256.

    Attributes:
        input_size: as given.
        size_multiple, min_size: ``input_size`` (`SizeConstrained`).

    Raises:
        ValueError: an argument is out of range.

    Shape:
        (B, in_channels, input_size, input_size) -> (B, 1) logits.
    """

    def __init__(self, *, in_channels: int = 3, nf: int = 64, input_size: int = 128) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, nf=nf)
        _check_choice("input_size", input_size, (96, 128, 192, 256))
        self.in_channels, self.input_size = in_channels, input_size
        self.size_multiple = self.min_size = input_size
        side, stages = input_size, 0
        while side > _VGG_MAX_SIDE:
            side, stages = side // 2, stages + 1
        self.n_stages = stages
        width_in = in_channels
        for k in range(stages):
            width = nf * min(2**k, _MAX_MULT)
            self.add_module(f"conv{k}_0", nn.Conv2d(width_in, width, 3, 1, 1, bias=k == 0))
            if k > 0:
                self.add_module(f"bn{k}_0", nn.BatchNorm2d(width))
            self.add_module(f"conv{k}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
            self.add_module(f"bn{k}_1", nn.BatchNorm2d(width))
            width_in = width
        self.linear1 = nn.Linear(width_in * side * side, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)  # on fresh convolution, norm or linear outputs only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score a batch of images.

        Args:
            x: images of shape (B, in_channels, input_size, input_size).

        Returns:
            Logits of shape (B, 1).

        Raises:
            ValueError: the input is not (B, in_channels, input_size, input_size).
        """
        n = self.input_size
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != (n, n):
            raise ValueError(
                f"Expected input of shape (B, {self.in_channels}, {n}, {n}) (this discriminator takes one size, "
                f"its input_size), got {tuple(x.shape)}"
            )
        modules = self._modules
        for k in range(self.n_stages):
            x = modules[f"conv{k}_0"](x)
            if k > 0:
                x = modules[f"bn{k}_0"](x)
            x = self.lrelu(x)
            x = self.lrelu(modules[f"bn{k}_1"](modules[f"conv{k}_1"](x)))
        x = self.lrelu(self.linear1(x.flatten(1)))
        return self.linear2(x)


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm: one real/fake logit per pixel.

    Layout (LeakyReLU(0.2) after every convolution but the last): conv0 3x3 nf (no spectral
    norm); conv1..conv3 4x4 stride 2 to 2·nf, 4·nf, 8·nf; three up stages, each bilinear x2
    (align_corners False) then conv 3x3 (conv4 to 4·nf, conv5 to 2·nf, conv6 to nf), the
    encoder feature of the same resolution added after it (``skip_connection``); conv7 and conv8
    3x3 nf; conv9 3x3 to one channel. conv1..conv8 carry spectral norm and no bias; conv0 and
    conv9 are plain biased convolutions. PyTorch's default initialisation, as Real-ESRGAN.
    4,376,897 parameters for nf 64.

    Spectral norm is ``torch.nn.utils.spectral_norm`` (one power iteration per training
    forward), which adds two buffers per normalised convolution and stores the weight as
    ``weight_orig``. The state-dict keys are therefore exactly Real-ESRGAN's, and its
    discriminator checkpoints load unchanged: ``conv0.weight``, ``conv0.bias``,
    ``conv{1..8}.weight_orig`` (parameters), ``conv{1..8}.weight_u``, ``conv{1..8}.weight_v``
    (buffers: the power iteration's vectors), ``conv9.weight``, ``conv9.bias``.

    Args:
        in_channels: input image channels.
        nf: feature maps of the first convolution (64).
        skip_connection: add the encoder features to the decoder's (Real-ESRGAN: True).

    Attributes:
        size_multiple, min_size: 8 (`SizeConstrained`: three stride-2 levels).

    Raises:
        ValueError: an argument is out of range.

    Shape:
        (B, in_channels, H, W) -> (B, 1, H, W) logits, H and W multiples of 8.
    """

    def __init__(self, *, in_channels: int = 3, nf: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, nf=nf)
        self.in_channels, self.skip_connection = in_channels, skip_connection
        self.size_multiple = self.min_size = 8
        sn = nn.utils.spectral_norm
        self.conv0 = _conv3(in_channels, nf)
        self.conv1 = sn(nn.Conv2d(nf, 2 * nf, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(2 * nf, 4 * nf, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(4 * nf, 8 * nf, 4, 2, 1, bias=False))
        self.conv4 = sn(_conv3(8 * nf, 4 * nf, bias=False))
        self.conv5 = sn(_conv3(4 * nf, 2 * nf, bias=False))
        self.conv6 = sn(_conv3(2 * nf, nf, bias=False))
        self.conv7 = sn(_conv3(nf, nf, bias=False))
        self.conv8 = sn(_conv3(nf, nf, bias=False))
        self.conv9 = _conv3(nf, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)  # on fresh convolution outputs only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score every pixel of a batch of images.

        Args:
            x: images of shape (B, in_channels, H, W), H and W multiples of 8.

        Returns:
            Logits of shape (B, 1, H, W).

        Raises:
            ValueError: the input has the wrong number of channels or a size that is not a multiple of 8.
        """
        _check_images(x, self.in_channels, self.size_multiple)
        x0 = self.lrelu(self.conv0(x))
        x1 = self.lrelu(self.conv1(x0))
        x2 = self.lrelu(self.conv2(x1))
        feat = self.lrelu(self.conv3(x2))
        for conv, skip in ((self.conv4, x2), (self.conv5, x1), (self.conv6, x0)):
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=False)))
            if self.skip_connection:
                feat = feat + skip
        feat = self.lrelu(self.conv8(self.lrelu(self.conv7(feat))))
        return self.conv9(feat)


# --- factories --------------------------------------------------------------------------------


@register_generator(tiny={"nf": 8, "n_blocks": 1})
def srresnet(*, in_channels: int = 3, out_channels: int = 3, nf: int = 64, n_blocks: int = 16,
             scale: Literal[2, 4] = 4) -> SRResNet:
    """SRResNet (SRGAN's generator, with batch norm); output unbounded, not clamped to [-1, 1].

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        nf: feature maps (64 in the paper).
        n_blocks: residual blocks (16 in the paper).
        scale: upscaling factor, 2 or 4.

    Example:
        >>> sum(p.numel() for p in srresnet().parameters())
        1549462
    """
    return SRResNet(in_channels=in_channels, out_channels=out_channels, nf=nf, n_blocks=n_blocks, scale=scale)


@register_generator(tiny={"nf": 8, "n_blocks": 1})
def msrresnet(*, in_channels: int = 3, out_channels: int = 3, nf: int = 64, n_blocks: int = 16,
              scale: Literal[2, 3, 4] = 4, pixel_range: PixelRange = "-1..1") -> MSRResNet:
    """BasicSR's modified SRResNet (no batch norm, bilinear global residual); output unbounded.

    Args:
        in_channels: input image channels.
        out_channels: output image channels (equal to in_channels: the global residual).
        nf: feature maps (64).
        n_blocks: residual blocks (16).
        scale: upscaling factor, 2, 3 or 4.
        pixel_range: "-1..1" (translate-kit's images) or "0..1" (BasicSR's: its weights load as they are).

    Example:
        >>> sum(p.numel() for p in msrresnet().parameters())
        1517571
    """
    return MSRResNet(in_channels=in_channels, out_channels=out_channels, nf=nf, n_blocks=n_blocks, scale=scale,
                     pixel_range=pixel_range)


@register_generator(tiny={"nf": 8, "n_blocks": 1, "growth": 4})
def rrdbnet(*, in_channels: int = 3, out_channels: int = 3, nf: int = 64, n_blocks: int = 23, growth: int = 32,
            scale: Literal[1, 2, 4] = 4, pixel_range: PixelRange = "-1..1") -> RRDBNet:
    """ESRGAN's RRDBNet (x4; x2 and x1 pixel-unshuffle their input, as Real-ESRGAN); output unbounded.

    BasicSR / Real-ESRGAN checkpoints load with no renaming (same state-dict keys).

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        nf: feature maps (64).
        n_blocks: residual-in-residual dense blocks (23).
        growth: growth channels of the dense blocks (32).
        scale: upscaling factor: 4, or 2 / 1 (inputs multiples of 2 / 4).
        pixel_range: "-1..1" (translate-kit's images) or "0..1" (ESRGAN's, BasicSR's and
            Real-ESRGAN's: their weights load as they are).

    Example:
        >>> sum(p.numel() for p in rrdbnet(n_blocks=1).parameters())  # 16,697,987 with 23 blocks
        870659
    """
    return RRDBNet(in_channels=in_channels, out_channels=out_channels, nf=nf, n_blocks=n_blocks, growth=growth,
                   scale=scale, pixel_range=pixel_range)


@register_discriminator(output=LOGITS, tiny={"nf": 4, "input_size": 96})
def vgg_discriminator(*, in_channels: int = 3, nf: int = 64,
                      input_size: Literal[96, 128, 192, 256] = 128) -> VGGStyleDiscriminator:
    """VGG-style discriminator of SRGAN/ESRGAN: one logit per image, fixed input size (BasicSR's layout).

    Args:
        in_channels: image channels (3: it judges the super-resolved or real HR image alone).
        nf: feature maps of the first stage (64).
        input_size: the one height and width it takes (ESRGAN: 128; SRGAN's patches: 96).

    Example:
        >>> sum(p.numel() for p in vgg_discriminator().parameters())
        14499401
    """
    return VGGStyleDiscriminator(in_channels=in_channels, nf=nf, input_size=input_size)


@register_discriminator(output=LOGITS, tiny={"nf": 4})
def unet_discriminator_sn(*, in_channels: int = 3, nf: int = 64, skip_connection: bool = True) -> UNetDiscriminatorSN:
    """Real-ESRGAN's U-Net discriminator with spectral norm: a logit per pixel; sizes multiples of 8.

    Args:
        in_channels: image channels.
        nf: feature maps of the first convolution (64).
        skip_connection: add encoder features to the decoder's (True in Real-ESRGAN).

    Example:
        >>> sum(p.numel() for p in unet_discriminator_sn().parameters())
        4376897
    """
    return UNetDiscriminatorSN(in_channels=in_channels, nf=nf, skip_connection=skip_connection)
