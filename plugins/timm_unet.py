"""U-Net generator with any timm encoder (a `features_only` backbone) and a light decoder.

The encoder/decoder shape of Ronneberger et al., "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015, https://arxiv.org/abs/1505.04597, with the encoder swapped for an
ImageNet backbone, as in segmentation_models_pytorch's `Unet` (Iakubovskii, 2019) and TernausNet
(Iglovikov & Shvets 2018, https://arxiv.org/abs/1801.05746). A pretrained encoder gives pix2pix-style
translation a head start on small data sets.

Layout, for an encoder with ``n`` feature stages (reductions ``r_0 < ... < r_{n-1}``, e.g. 2, 4, 8,
16, 32 for ResNets and EfficientNets, 4 .. 32 for ConvNeXt)::

    [-1, 1] images -> ImageNet normalisation (optional) -> encoder -> features f_0 .. f_{n-1}
    decoder stage k < n-1  bilinear upsample to f_{n-2-k}'s size -> concat f_{n-2-k}
                           -> 2 x (Conv3x3 -> norm -> ReLU) -> [Dropout]
    decoder stage n-1      bilinear upsample to the input size (x r_0) -> 2 x (Conv3x3 -> norm -> ReLU)
    head                   Conv3x3 (with bias) -> Tanh

Upsampling is bilinear followed by convolutions, not a transposed convolution: it adds no
parameters, follows any reduction step (timm encoders are not all x2 per stage) by resizing to the
skip feature's size, and avoids the checkerboard artefacts of strided transposed convolutions
(Odena et al. 2016, https://distill.pub/2016/deconv-checkerboard/).

``decoder_channels`` gives one width per decoder stage, deepest first, so it needs one entry per
encoder stage. A longer tuple is truncated to its first ``n`` entries (so the default
``(256, 128, 64, 32, 16)`` also serves 4-stage encoders such as ConvNeXt, as ``(256, 128, 64, 32)``);
a shorter one is an error. The decoder is initialised as pix2pix does (N(0, 0.02)); the encoder keeps
timm's initialisation or the weights read from ``encoder_weights``. ``norm`` applies to the decoder
only: the encoder keeps its own normalisation (BatchNorm for most timm CNNs).

Example:
    >>> import torch
    >>> net = timm_unet(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8))
    >>> net.size_multiple
    32
    >>> net(torch.rand(1, 3, 64, 96) * 2 - 1).shape
    torch.Size([1, 3, 64, 96])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.segmenters import IMAGENET_MEAN, IMAGENET_STD, load_state_file

from translate_kit.api import (
    Norm,
    RecipeError,
    check_image_batch,
    conv_bias,
    did_you_mean,
    init_weights,
    make_norm,
    register_generator,
)

__all__ = ["DecoderBlock", "TimmUNet", "timm_unet"]


class DecoderBlock(nn.Sequential):
    """Two (Conv 3x3 -> norm -> ReLU) layers, then optional dropout.

    Args:
        in_channels: input feature maps (upsampled decoder features plus the skip's).
        out_channels: output feature maps.
        norm: normalisation after each convolution ("batch", "instance" or "none").
        dropout: dropout probability after the block (0 for none).

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, dropout: float = 0.0) -> None:
        super().__init__()
        bias = conv_bias(norm)
        for i, channels in enumerate((in_channels, out_channels), start=1):
            self.add_module(f"conv{i}", nn.Conv2d(channels, out_channels, 3, padding=1, bias=bias))
            self.add_module(f"norm{i}", make_norm(norm, out_channels))
            self.add_module(f"act{i}", nn.ReLU(inplace=True))
        if dropout > 0:
            self.add_module("dropout", nn.Dropout(dropout))


class TimmUNet(nn.Module):
    """A timm `features_only` encoder with a U-Net decoder back to the input resolution.

    Args:
        encoder: timm model name, e.g. "resnet34", "efficientnet_b0", "convnext_tiny"; any model
            that `timm.create_model(name, features_only=True)` accepts.
        in_channels: input image channels (passed to timm as ``in_chans``).
        out_channels: output image channels.
        decoder_channels: decoder widths, deepest stage first; truncated to the encoder's number of
            stages when longer (see the module docstring).
        norm: decoder normalisation, "batch", "instance" or "none".
        imagenet_norm: map [-1, 1] inputs to ImageNet's mean and standard deviation before the
            encoder, as pretrained timm backbones expect; needs ``in_channels == 3``. When False the
            encoder sees the [-1, 1] images as they are.
        dropout: dropout probability after every decoder stage that merges a skip feature (the
            full-resolution stage gets none); 0 disables it.

    Attributes:
        size_multiple: the encoder's largest reduction (32 for most CNNs); valid input heights and
            widths are its multiples.
        min_size: the smallest height and width to train or sample at: ``2 * size_multiple`` when the
            encoder has batch norm (a 1x1 deepest feature of a single image breaks it in training
            mode), else ``size_multiple``. Smaller sizes still work in eval mode.
        reductions: the encoder stages' reductions, shallowest first.
        decoder_channels: the decoder widths in use, deepest first.

    Raises:
        ValueError: an unknown encoder, an encoder without `features_only` support, or an
            argument out of range.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H, W), values in (-1, 1).
    """

    def __init__(
        self,
        *,
        encoder: str = "resnet34",
        in_channels: int = 3,
        out_channels: int = 3,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
        norm: str = "batch",
        imagenet_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, *decoder_channels, 1) < 1:
            raise ValueError(
                f"Expected in_channels, out_channels and decoder_channels >= 1, got {in_channels}, "
                f"{out_channels}, {tuple(decoder_channels)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected dropout in [0, 1), got {dropout}")
        if imagenet_norm and in_channels != 3:
            raise ValueError(
                f"imagenet_norm normalises with ImageNet's RGB statistics, so in_channels must be 3, got "
                f"{in_channels}; set imagenet_norm = false for other inputs"
            )
        self.encoder = _create_encoder(encoder, in_channels)
        info = self.encoder.feature_info
        channels, self.reductions = list(info.channels()), list(info.reduction())
        stages = len(channels)
        if len(decoder_channels) < stages:
            raise ValueError(
                f"Expected {stages} decoder_channels for encoder {encoder!r} (one per stage, reductions "
                f"{self.reductions}), got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        self.encoder_name = encoder
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.decoder_channels = tuple(decoder_channels[:stages])
        self.size_multiple = max(self.reductions)
        # At size_multiple pixels the deepest feature is 1x1: a batch of one then gives the encoder's
        # batch norms one value per channel in training mode, which they refuse (pix2pix trains with
        # batch 1 and samples in training mode). Twice the stride leaves 2x2.
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.encoder.modules())
        self.min_size = 2 * self.size_multiple if has_bn else self.size_multiple
        self.imagenet_norm = imagenet_norm
        # timm's transformer-style encoders (Swin, ...) return channels-last features.
        self.channels_last = str(getattr(self.encoder, "output_fmt", "NCHW")) in ("NHWC", "Format.NHWC")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        blocks, width = [], channels[-1]
        for k, out in enumerate(self.decoder_channels):
            skip = channels[stages - 2 - k] if k < stages - 1 else 0  # the last stage has no skip
            blocks.append(DecoderBlock(width + skip, out, norm=norm, dropout=dropout if skip else 0.0))
            width = out
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.Conv2d(width, out_channels, 3, padding=1), nn.Tanh())
        init_weights(self.decoder)
        init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a batch of images.

        Args:
            x: images of shape (B, in_channels, H, W) in [-1, 1], H and W multiples of ``size_multiple``.

        Returns:
            Images of shape (B, out_channels, H, W) in (-1, 1).

        Raises:
            ValueError: the input has the wrong number of channels or a size that is not a multiple
                of ``size_multiple``.
        """
        check_image_batch(x, self.in_channels, self.size_multiple)
        size = x.shape[-2:]
        if self.imagenet_norm:
            x = ((x + 1) * 0.5 - self.mean) / self.std
        features = self.encoder(x)
        if self.channels_last:
            features = [f.permute(0, 3, 1, 2) for f in features]
        y = features.pop()
        for block in self.decoder:
            target = features[-1].shape[-2:] if features else size
            if y.shape[-2:] != target:
                y = F.interpolate(y, size=target, mode="bilinear", align_corners=False)
            if features:
                y = torch.cat([y, features.pop()], dim=1)
            y = block(y)
        return self.head(y)


def _create_encoder(name: str, in_channels: int) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"Unknown timm encoder {name!r}.{did_you_mean(name, timm.list_models())} "
            "List the choices with `timm.list_models('resnet*')` (any pattern)"
        )
    try:
        return timm.create_model(name, pretrained=False, features_only=True, in_chans=in_channels)
    except (RuntimeError, NotImplementedError, AssertionError, TypeError, ValueError) as exc:
        raise ValueError(f"timm encoder {name!r} cannot be built with features_only=True: {exc}") from None


def _load_encoder(encoder: nn.Module, path: str) -> None:
    """Load an ImageNet classifier's state dict (timm's names) into a `features_only` encoder.

    The classifier head and stages the encoder leaves out are ignored. Unlike segmenters'
    `_load_backbone`, every encoder tensor must be found: a file that covers only part of it
    (another architecture sharing a stem) is an error, not a partial load. timm's feature wrappers
    rename flattened top-level sequences (`stages.0.` -> `stages_0.`), so both spellings are accepted.
    """
    state = load_state_file(path, "encoder_weights")
    wanted = encoder.state_dict()
    found: dict[str, torch.Tensor] = {}
    for key in wanted:
        head, dot, rest = key.partition(".")
        flat = head.rsplit("_", 1)
        original = f"{flat[0]}.{flat[1]}{dot}{rest}" if len(flat) == 2 and flat[1].isdigit() else key
        for candidate in (key, original):
            if candidate in state:
                found[key] = state[candidate]
                break
    missing = [k for k in wanted if k not in found and not k.endswith("num_batches_tracked")]
    if missing:
        raise RecipeError(
            f"encoder_weights {path} lack {len(missing)} of the encoder's {len(wanted)} tensors (e.g. "
            f"{missing[0]!r}; the file has e.g. {next(iter(state), 'nothing')!r}); give the ImageNet "
            "weights of the same timm architecture."
        )
    bad = [k for k, v in found.items() if not isinstance(v, torch.Tensor) or v.shape != wanted[k].shape]
    if bad:
        k = bad[0]
        got = tuple(found[k].shape) if isinstance(found[k], torch.Tensor) else type(found[k]).__name__
        raise RecipeError(
            f"encoder_weights {path}: {k!r} has shape {got}, the encoder expects {tuple(wanted[k].shape)} "
            "(another model size, or in_channels other than the file's?)."
        )
    encoder.load_state_dict(found, strict=False)


@register_generator(tiny={"encoder": "resnet10t", "decoder_channels": (16, 8, 8, 8, 8)})
def timm_unet(
    *,
    encoder: str = "resnet34",
    in_channels: int = 3,
    out_channels: int = 3,
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    norm: Norm = "batch",
    encoder_weights: str = "",
    imagenet_norm: bool = True,
    dropout: float = 0.0,
) -> TimmUNet:
    """U-Net with a timm encoder; input height and width must be multiples of its largest stride (32).

    Args:
        encoder: timm model name (`timm.list_models('resnet*')` lists choices); built with
            ``pretrained=False``, never downloaded.
        in_channels: input image channels.
        out_channels: output image channels.
        decoder_channels: decoder widths, deepest first, one per encoder stage (longer: truncated).
        norm: decoder normalisation, "batch", "instance" or "none".
        encoder_weights: a local file with the backbone's ImageNet classifier state dict (a timm
            model's `state_dict()`, or a checkpoint holding one under "state_dict"); "" keeps
            timm's random initialisation.
        imagenet_norm: normalise [-1, 1] inputs to ImageNet statistics inside the network (needs
            in_channels 3); pretrained encoders expect it.
        dropout: dropout after each skip-merging decoder stage (pix2pix's noise source; 0 disables it).

    Raises:
        RecipeError: `encoder_weights` is missing, unreadable or does not fit the encoder.
        ValueError: an unknown encoder name or an option out of range.

    Example:
        >>> net = timm_unet(encoder="resnet34")
        >>> net.decoder_channels, sum(p.numel() for p in net.parameters())
        ((256, 128, 64, 32, 16), 24436659)
    """
    net = TimmUNet(
        encoder=encoder,
        in_channels=in_channels,
        out_channels=out_channels,
        decoder_channels=decoder_channels,
        norm=norm,
        imagenet_norm=imagenet_norm,
        dropout=dropout,
    )
    if encoder_weights:
        _load_encoder(net.encoder, encoder_weights)
    return net
