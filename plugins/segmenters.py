"""Semantic segmenters for the FCN-score: torchvision's FCN/DeepLab/LR-ASPP and timm encoders + FPN.

The pix2pix paper scores generated photos by how well an off-the-shelf segmenter labels them
(FCN-8s on Cityscapes, Long et al. 2015, https://arxiv.org/abs/1411.4038). No pretrained facades
segmenter exists, so translate-kit trains one with its own trainer (method `segmentation`, recipe
`fcn_facades.toml`) and `tkit eval` uses it.

Every segmenter here takes images in [-1, 1] (translate-kit's convention), normalises them with the
ImageNet statistics its backbone expects, and returns logits `(B, num_classes, H, W)` at the input
resolution. Weights only ever come from local files (never a download):

- `weights`: a state dict of the whole segmentation model in torchvision's format;
- `backbone_weights`: an ImageNet classifier's state dict (torchvision's `resnet50-*.pth`,
  `mobilenet_v3_large-*.pth`, or a timm model's) for the backbone alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import RecipeError, register_segmenter

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "FPNSegmenter",
    "Segmenter",
    "deeplabv3_mobilenet_v3_large",
    "deeplabv3_resnet50",
    "fcn_resnet50",
    "load_state_file",
    "lraspp_mobilenet_v3_large",
    "timm_fpn",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_backbone(module: nn.Module, path: str) -> None:
    """Load an ImageNet classifier's weights into a backbone; the classifier head is left out.

    A file whose names match none of the backbone's (another architecture, or keys with a prefix
    such as "features.") is an error rather than a silent no-op.
    """
    state = load_state_file(path, "backbone_weights")
    shared = set(state) & set(module.state_dict())
    if not shared:
        raise RecipeError(
            f"backbone_weights {path} share no parameter name with the backbone (e.g. it has "
            f"{next(iter(state), 'nothing')!r}); give the ImageNet weights of the same architecture."
        )
    module.load_state_dict({k: v for k, v in state.items() if k in shared}, strict=False)


def load_state_file(path: str, what: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise RecipeError(
            f"{what} file {file} does not exist. Weights are read from local files only; download them "
            "once by hand (e.g. torchvision's model zoo) and give their path, or leave the key empty."
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the same user error
        raise RecipeError(f"Cannot read {what} file {file}: {str(exc).splitlines()[0]}.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RecipeError(f"{what} file {file} does not hold a state dict.")
    return state


class Segmenter(nn.Module):
    """Wrap a segmentation network: [-1, 1] input -> ImageNet normalisation -> logits at input size.

    Args:
        model: maps normalised images to logits, or to a dict whose "out" entry holds them
            (torchvision's segmentation models).
        num_classes: number of output classes.
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Expected images of shape (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        x = ((x + 1) * 0.5 - self.mean) / self.std
        out = self.model(x)
        logits = out["out"] if isinstance(out, dict) else out
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def _torchvision(
    builder: Callable[..., nn.Module], *, num_classes: int, in_channels: int, weights: str, backbone_weights: str
) -> Segmenter:
    if in_channels != 3:
        raise ValueError(f"torchvision segmenters take RGB images (in_channels 3), got in_channels {in_channels}")
    model = builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=None)
    if backbone_weights:
        _load_backbone(model.backbone, backbone_weights)
    if weights:
        model.load_state_dict(load_state_file(weights, "weights"))
    return Segmenter(model, num_classes)


def _no_aux(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    # LR-ASPP has no auxiliary head and rejects the aux_loss argument.
    def build(**kwargs: object) -> nn.Module:
        kwargs.pop("aux_loss", None)
        return builder(**kwargs)

    return build


@register_segmenter()
def fcn_resnet50(
    *, num_classes: int = 12, in_channels: int = 3, weights: str = "", backbone_weights: str = ""
) -> Segmenter:
    """FCN with a ResNet-50 backbone (torchvision), the paper's segmenter family; 33M parameters."""
    from torchvision.models.segmentation import fcn_resnet50 as build

    return _torchvision(build, num_classes=num_classes, in_channels=in_channels, weights=weights,
                        backbone_weights=backbone_weights)


@register_segmenter()
def deeplabv3_resnet50(
    *, num_classes: int = 12, in_channels: int = 3, weights: str = "", backbone_weights: str = ""
) -> Segmenter:
    """DeepLabV3 with a ResNet-50 backbone (torchvision)."""
    from torchvision.models.segmentation import deeplabv3_resnet50 as build

    return _torchvision(build, num_classes=num_classes, in_channels=in_channels, weights=weights,
                        backbone_weights=backbone_weights)


@register_segmenter()
def deeplabv3_mobilenet_v3_large(
    *, num_classes: int = 12, in_channels: int = 3, weights: str = "", backbone_weights: str = ""
) -> Segmenter:
    """DeepLabV3 with a MobileNetV3-Large backbone (torchvision); light enough for CPU training."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large as build

    return _torchvision(build, num_classes=num_classes, in_channels=in_channels, weights=weights,
                        backbone_weights=backbone_weights)


@register_segmenter()
def lraspp_mobilenet_v3_large(
    *, num_classes: int = 12, in_channels: int = 3, weights: str = "", backbone_weights: str = ""
) -> Segmenter:
    """LR-ASPP with a MobileNetV3-Large backbone (torchvision); the lightest torchvision segmenter."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large as build

    return _torchvision(_no_aux(build), num_classes=num_classes, in_channels=in_channels, weights=weights,
                        backbone_weights=backbone_weights)


class FPNSegmenter(nn.Module):
    """A timm `features_only` encoder with a small FPN decoder (lateral 1x1, top-down sum, 3x3 head).

    Args:
        encoder: timm model name, e.g. "resnet18", "convnext_tiny", "efficientnet_b0".
        num_classes: output classes.
        width: channels of the decoder.
        in_channels: input channels passed to timm.
    """

    def __init__(self, encoder: str, num_classes: int, width: int, in_channels: int) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model(encoder, pretrained=False, features_only=True, in_chans=in_channels)
        channels = self.encoder.feature_info.channels()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = self.lateral[-1](features[-1])
        for feature, lateral in zip(reversed(features[:-1]), reversed(self.lateral[:-1])):
            y = F.interpolate(y, size=feature.shape[-2:], mode="nearest") + lateral(feature)
        return self.classifier(self.smooth(y))


@register_segmenter(tiny={"width": 16})
def timm_fpn(
    *,
    encoder: str = "resnet18",
    num_classes: int = 12,
    in_channels: int = 3,
    width: int = 128,
    weights: str = "",
    backbone_weights: str = "",
) -> Segmenter:
    """Any timm features_only encoder (resnet18 by default) with a small FPN decoder."""
    import timm

    if encoder not in timm.list_models():
        raise ValueError(f"unknown timm encoder {encoder!r}; `timm.list_models('resnet*')` lists the choices")
    if in_channels != 3:
        raise ValueError(f"timm_fpn normalises with ImageNet RGB statistics, so in_channels must be 3, got {in_channels}")
    net = FPNSegmenter(encoder, num_classes, width, in_channels)
    if backbone_weights:
        _load_backbone(net.encoder, backbone_weights)
    segmenter = Segmenter(net, num_classes)
    if weights:
        net.load_state_dict(load_state_file(weights, "weights"))
    return segmenter
