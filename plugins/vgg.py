"""VGG19 perceptual losses: pix2pixHD's (`vgg19`) and one at any named layers (`vgg19_layers`).

`vgg19` is pix2pixHD's (Wang et al., CVPR 2018, https://arxiv.org/abs/1711.11585):
L1 distances between VGG19 activations of the generated and the real image at relu1_1, relu2_1,
relu3_1, relu4_1 and relu5_1, weighted 1/32, 1/16, 1/8, 1/4 and 1 (the reference's ``VGGLoss``),
after Johnson et al. 2016 (https://arxiv.org/abs/1603.08155). The target's features are detached,
so the loss trains only what produced ``x``.

The network is the ``features`` part of torchvision's ``vgg19`` (up to relu5_1, its first 30
layers), built from torchvision's own layer table so that no 100M-parameter classifier is
allocated. Its ImageNet weights come from a LOCAL file only, in torchvision's state-dict format
(``vgg19-dcbb9e9d.pth`` from torchvision's model zoo): the loss never downloads anything. Random
weights (``allow_random = true``) exist for tests; they give no useful perceptual signal.

Unlike the pix2pixHD reference, which feeds [-1, 1] images to VGG as they are, inputs are mapped to
[0, 1] and normalised with the ImageNet statistics the weights were trained with.

Example:
    >>> import torch
    >>> loss = vgg19(allow_random=True)
    >>> x = torch.rand(1, 3, 32, 32) * 2 - 1
    >>> loss(x, x).item()
    0.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import RecipeError, register_loss

__all__ = [
    "LAYER_WEIGHTS",
    "SLICE_ENDS",
    "LayerPerceptualLoss",
    "VGGPerceptualLoss",
    "load_vgg19_features",
    "vgg19",
    "vgg19_layer_names",
    "vgg19_layers",
]

# Indices in vgg19.features after which relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 come out
# (the reference's slices [0:2], [2:7], [7:12], [12:21], [21:30]).
SLICE_ENDS: tuple[int, ...] = (2, 7, 12, 21, 30)
LAYER_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HOW_TO_GET = (
    "download vgg19-dcbb9e9d.pth once from torchvision's model zoo "
    "(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) and give its path in "
    "[method] vgg_options = { weights = \"PATH\" }"
)


def _vgg19_features() -> nn.Sequential:
    """torchvision's vgg19 `features` (randomly initialised), cut after relu5_1."""
    # Imported here: importing torchvision costs ~160 MB of RSS and ~1.5 s (it loads
    # torch._dynamo), which every plugin load would pay for a loss few recipes use.
    from torchvision.models.vgg import cfgs, make_layers

    return nn.Sequential(*list(make_layers(cfgs["E"], batch_norm=False))[: SLICE_ENDS[-1]])


def load_vgg19_features(features: nn.Sequential, path: str | Path) -> nn.Sequential:
    """Load the `features.*` tensors of a torchvision vgg19 state dict into `features`.

    Args:
        features: the layers built by `_vgg19_features`.
        path: a local `.pth` file holding torchvision's vgg19 state dict (full, or its `features`
            part with keys `N.weight`).

    Raises:
        RecipeError: the file is missing or is not a vgg19 state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"VGG19 weights file {str(path)!r} does not exist; {_HOW_TO_GET}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated download, an HTML page saved as .pth, ...
        raise RecipeError(f"Cannot read VGG19 weights from {str(path)!r} ({exc}); {_HOW_TO_GET}.") from None
    if not isinstance(state, dict):
        raise RecipeError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict; {_HOW_TO_GET}.")
    if any(k.startswith("features.") for k in state):
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    wanted = features.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise RecipeError(
            f"{str(path)!r} is not a torchvision vgg19 state dict (missing features.{missing[0]}); {_HOW_TO_GET}."
        )
    try:
        features.load_state_dict({k: state[k] for k in wanted})
    except RuntimeError as exc:  # shapes of another VGG
        raise RecipeError(f"{str(path)!r} does not fit vgg19: {exc}") from None
    return features


class VGGPerceptualLoss(nn.Module):
    """Weighted L1 between VGG19 features of `x` and of `y` (detached), pix2pixHD's VGG loss.

    Args:
        features: vgg19 `features` up to relu5_1 (30 layers); frozen and kept in eval mode.
        layer_weights: one weight per slice in `SLICE_ENDS` (default 1/32 ... 1).

    Shape:
        x, y: (B, 3, H, W) in [-1, 1], H and W >= 16 (relu5_1 is at 1/16 resolution).
        Output: a scalar.
    """

    def __init__(self, features: nn.Sequential, layer_weights: tuple[float, ...] = LAYER_WEIGHTS) -> None:
        super().__init__()
        if len(layer_weights) != len(SLICE_ENDS):
            raise ValueError(f"Expected {len(SLICE_ENDS)} layer weights, got {len(layer_weights)}")
        starts = (0, *SLICE_ENDS[:-1])
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in zip(starts, SLICE_ENDS))
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        # A fixed feature extractor: stays in eval mode whatever its owner does.
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at relu1_1 ... relu5_1 of images in [-1, 1], shape (B, 3, H, W)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Expected input of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for block in self.slices:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum_i w_i * mean|phi_i(x) - phi_i(y)|, gradients flowing into `x` only."""
        if x.shape != y.shape:
            raise ValueError(f"Expected x and y of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        loss = x.new_zeros((), dtype=torch.float32)
        for w, fx, fy in zip(self.layer_weights, self.features(x), self.features(y)):
            loss = loss + w * F.l1_loss(fx.float(), fy.detach().float())
        return loss


@register_loss(tiny={"allow_random": True})
def vgg19(*, weights: str = "", allow_random: bool = False) -> VGGPerceptualLoss:
    """VGG19 perceptual loss (pix2pixHD): L1 at relu1_1..relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1.

    Args:
        weights: path of a local torchvision vgg19 state dict (vgg19-dcbb9e9d.pth); nothing is
            downloaded.
        allow_random: with no weights file, use random weights (for tests only: the loss is then
            no perceptual measure).

    Raises:
        RecipeError: no weights file and allow_random is false, or the file is missing or wrong.
    """
    features = _vgg19_features()
    if weights:
        load_vgg19_features(features, weights)
    elif not allow_random:
        raise RecipeError(
            f"VGG19 weights file needed: {_HOW_TO_GET}; allow_random = true only for tests."
        )
    return VGGPerceptualLoss(features)


# --- a perceptual loss at any VGG19 layers (super-resolution) ---------------------------------------


def vgg19_layer_names() -> list[str]:
    """Names of torchvision's vgg19 `features` layers, in order: conv1_1, relu1_1, conv1_2, relu1_2,
    pool1, conv2_1, ... relu5_4, pool5 (the naming of the super-resolution literature)."""
    names = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


class LayerPerceptualLoss(nn.Module):
    """Weighted distances between VGG19 features of `x` and of `y` (detached) at named layers.

    A `convX_Y` layer is the feature *before* its ReLU, as ESRGAN uses it (conv5_4: sharper
    textures, no sparse activations); `reluX_Y` after it, as SRGAN's VGG54 is usually read.

    Args:
        features: vgg19 `features` (frozen, eval mode; its ReLUs are made out-of-place, so a
            `conv` feature is not overwritten by the ReLU that follows it).
        layers: layer name -> weight.
        criterion: "l1" (mean absolute difference) or "mse".

    Shape:
        x, y: (B, 3, H, W) in [-1, 1]. Output: a scalar.
    """

    def __init__(self, features: nn.Sequential, layers: dict[str, float], criterion: str = "l1") -> None:
        super().__init__()
        names = vgg19_layer_names()
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise ValueError(f"Expected VGG19 layer names such as conv5_4 or relu2_2, got {sorted(layers) or 'none'}")
        if criterion not in ("l1", "mse"):
            raise ValueError(f"Expected criterion 'l1' or 'mse', got {criterion!r}")
        last = max(names.index(name) for name in layers)
        self.features = nn.Sequential(*features[: last + 1])
        for layer in self.features:
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        self.wanted = {names.index(name): float(weight) for name, weight in layers.items()}
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LayerPerceptualLoss:
        return super().train(False)  # a fixed feature extractor

    def _features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Expected input of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.wanted:
                out[index] = x
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum_l w_l * d(phi_l(x), phi_l(y)), gradients flowing into `x` only."""
        if x.shape != y.shape:
            raise ValueError(f"Expected x and y of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        fx = self._features(x)
        with torch.no_grad():
            fy = self._features(y)
        loss = x.new_zeros((), dtype=torch.float32)
        for index, weight in self.wanted.items():
            loss = loss + weight * self.criterion(fx[index].float(), fy[index].float())
        return loss


@register_loss(tiny={"allow_random": True})
def vgg19_layers(
    *,
    layers: dict[str, float] | None = None,
    criterion: Literal["l1", "mse"] = "l1",
    weights: str = "",
    allow_random: bool = False,
) -> LayerPerceptualLoss:
    """VGG19 perceptual loss at named layers (default ESRGAN's conv5_4, before the activation).

    Args:
        layers: layer name -> weight: `convX_Y` before the ReLU, `reluX_Y` after it. Real-ESRGAN
            uses { conv1_2 = 0.1, conv2_2 = 0.1, conv3_4 = 1, conv4_4 = 1, conv5_4 = 1 }.
        criterion: "l1" (ESRGAN, Real-ESRGAN) or "mse" (SRGAN).
        weights: path of a local torchvision vgg19 state dict; nothing is downloaded.
        allow_random: with no weights file, random weights (tests only: no perceptual signal).

    Raises:
        RecipeError: no weights file and allow_random is false, or the file is missing or wrong.
    """
    chosen = dict(layers) if layers is not None else {"conv5_4": 1.0}
    features = _vgg19_all_features()
    if weights:
        load_vgg19_features(features, weights)
    elif not allow_random:
        raise RecipeError(f"VGG19 weights file needed: {_HOW_TO_GET}; allow_random = true only for tests.")
    return LayerPerceptualLoss(features, chosen, criterion)


def _vgg19_all_features() -> nn.Sequential:
    """torchvision's vgg19 `features`, all 37 layers (randomly initialised)."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["E"], batch_norm=False)
