"""LPIPS: the learned perceptual distance between two images, version 0.1.

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018, https://arxiv.org/abs/1801.03924 (eq. 1). BicycleGAN (Zhu et al.,
NeurIPS 2017, https://arxiv.org/abs/1711.11586, sec. 6) measures the diversity of a multimodal
translator with it; `translate_kit.eval.diversity` does that.

For images `x0`, `x1` in [-1, 1] (`(B, 3, H, W)`):

1. the scaling layer: `(x - shift) / scale` per channel, shift `(-0.030, -0.088, -0.188)`, scale
   `(0.458, 0.448, 0.450)` (the ImageNet normalisation re-expressed for [-1, 1] inputs);
2. the backbone's five stages (AlexNet: relu1 ... relu5; VGG16: relu1_2 ... relu5_3) give features
   `f_l` of `C_l` channels;
3. each feature vector is divided by its norm over channels: `f / (||f||_2 + 1e-10)`;
4. `d = Σ_l mean_{h,w} Σ_c w_{l,c} (f0_l - f1_l)²_{c,h,w}`, with the learned non-negative 1×1
   weights `w_l` ("lin" layers, no bias).

Weights come from two published files, read unchanged from a local folder and never downloaded:
torchvision's ImageNet backbone (`alexnet-owt-7be5be79.pth`, or `vgg16-397923af.pth`; its classifier
tensors are not used) and the lpips package's v0.1 linear layers (`alex.pth` / `vgg.pth`, tensors
`lin{l}.model.1.weight` of shape `(1, C_l, 1, 1)`). `load_lpips` finds the folder as FID finds its
file (`--lpips-weights`, then `$TRANSLATE_KIT_LPIPS_WEIGHTS`). The backbone is torchvision's own
`alexnet().features` / `vgg16().features`, cut into the five stages, so its tensors keep their names.

Why not torchmetrics' `LearnedPerceptualImagePatchSimilarity`: it fetches the backbone through
torchvision's downloader (`weights=DEFAULT`), which reaches the network unless a cache happens to
hold the file, and reads the linear layers from a copy bundled with torchmetrics rather than from a
file the user names. Written here, the network is small (stages, norms, a weighted sum), every
figure names the SHA-256 of both files, and it needs no optional package.

Deviations from the lpips package: none in the distance. Dropout before the linear layers (active
only when LPIPS itself was trained) is left out; no `spatial` map, no input resizing, no SqueezeNet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from translate_kit.errors import CheckpointError, DataError
from translate_kit.eval.weights import check_tensors, locate_weights, read_state_dict, sha256

__all__ = [
    "LPIPS",
    "LPIPS_NETS",
    "LPIPS_WEIGHTS_ENV",
    "LPIPSNet",
    "load_lpips",
    "lpips_network",
    "unit_normalize",
]

LPIPS_WEIGHTS_ENV = "TRANSLATE_KIT_LPIPS_WEIGHTS"
_LINEAR_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{}"
# The scaling layer of lpips v0.1: ImageNet's mean and std, for inputs in [-1, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips' normalize_tensor: added to the norm, outside the square root


@dataclass(frozen=True, slots=True)
class LPIPSNet:
    """One LPIPS backbone: where torchvision's `features` are cut, and its two weight files.

    Attributes:
        name: "alex" or "vgg" (the lpips package's names).
        arch: the torchvision model ("alexnet", "vgg16").
        cuts: stage `l` is `features[cuts[l]:cuts[l + 1]]`, ending after a ReLU.
        channels: channels of each stage's output.
        backbone_file: torchvision's ImageNet weights file.
        backbone_url: where it is published.
        linear_file: the lpips package's v0.1 linear layers.
        min_size: the smallest height and width every stage still has a pixel for.
    """

    name: str
    arch: str
    cuts: tuple[int, ...]
    channels: tuple[int, ...]
    backbone_file: str
    backbone_url: str
    linear_file: str
    min_size: int

    @property
    def linear_url(self) -> str:
        return _LINEAR_URL.format(self.linear_file)


LPIPS_NETS = {
    # AlexNet: relu1 | pool, relu2 | pool, relu3 | relu4 | relu5. 11x11 stride 4 then two 3x3 stride-2
    # pools: 31 pixels is the least that leaves one pixel for the last stages.
    "alex": LPIPSNet("alex", "alexnet", (0, 2, 5, 8, 10, 12), (64, 192, 384, 256, 256), "alexnet-owt-7be5be79.pth",
                     "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "alex.pth", 31),
    # VGG16: relu1_2 | pool ... relu2_2 | pool ... relu3_3 | pool ... relu4_3 | pool ... relu5_3; four pools.
    "vgg": LPIPSNet("vgg", "vgg16", (0, 4, 9, 16, 23, 30), (64, 128, 256, 512, 512), "vgg16-397923af.pth",
                    "https://download.pytorch.org/models/vgg16-397923af.pth", "vgg.pth", 16),
}


def unit_normalize(features: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Each feature vector `(B, C, H, W)[b, :, h, w]` divided by its Euclidean norm plus `eps`."""
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance between images in [-1, 1]: see the module docstring.

    Args:
        stages: modules run one after the other on the scaled images; each one's output is a
            compared feature map.
        channels: each stage's output channels (the linear layers' inputs).
        min_size: smallest height/width the stages take (for a clear error instead of torch's).
        name: the backbone, for reports ("alex", "vgg"; "custom" for other stages).

    Attributes:
        weights: `{"backbone": file name, "linear": file name}` ({} for fresh weights).
        weights_sha256: the same files' SHA-256.

    Example:
        >>> net = lpips_network("alex")  # fresh weights: for shapes only; load_lpips(folder) for scores
        >>> x = torch.rand(2, 3, 32, 32) * 2 - 1
        >>> net(x, x).tolist()  # identical images
        [0.0, 0.0]
        >>> sum(p.numel() for p in net.lins.parameters())  # 64 + 192 + 384 + 256 + 256
        1152
    """

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int], *, min_size: int = 1,
                 name: str = "custom") -> None:
        super().__init__()
        if len(stages) != len(channels):
            raise ValueError(f"Expected one channel count per stage, got {len(stages)} stages and {len(channels)}")
        self.stages = nn.ModuleList(stages)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)
        for lin in self.lins:  # fresh weights as the trained ones are: non-negative, so d >= 0
            nn.init.uniform_(lin.weight, 0.0, 1.0 / lin.in_channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.min_size, self.name = min_size, name
        self.weights: dict[str, str] = {}
        self.weights_sha256: dict[str, str] = {}
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LPIPS:
        """Stay in eval mode whatever `mode` says (a measuring instrument, not a model to train)."""
        return super().train(False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised features of each stage for `(B, 1 or 3, H, W)` images in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            raise DataError(f"LPIPS expects float images of shape (B, 1 or 3, H, W) in [-1, 1], got {images.dtype} "
                            f"of shape {tuple(images.shape)}.")
        if min(images.shape[-2:]) < self.min_size:
            raise DataError(f"LPIPS ({self.name}) needs images of at least {self.min_size}x{self.min_size} pixels, "
                            f"got {images.shape[-1]}x{images.shape[-2]} (WxH); evaluate at a larger size.")
        lo, hi = (v.item() for v in torch.aminmax(images))
        if not (-1.0 <= lo and hi <= 1.0):  # also catches NaN
            raise DataError(f"LPIPS expects image values in [-1, 1], got min {lo:.6g}, max {hi:.6g}.")
        x = images.to(self.shift.device, torch.float32).expand(-1, 3, -1, -1)  # grey: one plane three times
        with torch.autocast(x.device.type, enabled=False):  # float32 whatever the caller's precision
            x = (x - self.shift) / self.scale
            out = []
            for stage in self.stages:
                x = stage(x)
                out.append(unit_normalize(x))
        return out

    def distance(self, features0: Sequence[torch.Tensor], features1: Sequence[torch.Tensor]) -> torch.Tensor:
        """`(B,)` distances between two lists of `features` outputs."""
        total = 0.0
        for lin, f0, f1 in zip(self.lins, features0, features1, strict=True):
            total = total + lin((f0 - f1).square()).mean(dim=(1, 2, 3))  # one output channel: mean over H, W
        return total  # type: ignore[return-value]

    def forward(self, images0: torch.Tensor, images1: torch.Tensor) -> torch.Tensor:
        """`(B,)` LPIPS distances between `(B, C, H, W)` images in [-1, 1], pair by pair."""
        if images0.shape != images1.shape:
            raise DataError(f"LPIPS compares images of one shape, got {tuple(images0.shape)} and "
                            f"{tuple(images1.shape)}.")
        return self.distance(self.features(images0), self.features(images1))

    def consecutive(self, images: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
        """`(N - 1,)` distances between images `i` and `i + 1` of `(N, C, H, W)` images in [-1, 1].

        Each image goes through the backbone once, `batch_size` at a time, so memory holds at most
        `batch_size + 1` images' features.
        """
        distances: list[torch.Tensor] = []
        previous: list[torch.Tensor] | None = None
        for start in range(0, len(images), batch_size):
            feats = self.features(images[start : start + batch_size])
            if previous is not None:
                feats = [torch.cat([p, f]) for p, f in zip(previous, feats)]
            if len(feats[0]) > 1:
                distances.append(self.distance([f[:-1] for f in feats], [f[1:] for f in feats]))
            previous = [f[-1:] for f in feats]
        return torch.cat(distances) if distances else torch.zeros(0, device=self.shift.device)


def _torchvision_features(net: LPIPSNet) -> nn.Sequential:
    """torchvision's `features` of `net.arch`, with fresh convolution weights. Built on the meta
    device first: the classifier (most of the parameters, and seconds of initialisation for VGG16)
    is never used."""
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, net.arch)(weights=None)
    features = model.features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    return features


def _create_lpips(net: str) -> tuple[nn.Sequential, LPIPS]:
    """torchvision's `features` (named as in its weights file) and the LPIPS network cut from them,
    sharing the same parameters."""
    if net not in LPIPS_NETS:
        raise ValueError(f"Expected net 'alex' or 'vgg', got {net!r}")
    spec = LPIPS_NETS[net]
    features = _torchvision_features(spec)
    # Each stage after the first starts with a pool, which does not write into its input, so
    # torchvision's in-place ReLUs never overwrite a feature map that is kept for the distance.
    stages = [features[a:b] for a, b in zip(spec.cuts, spec.cuts[1:])]
    return features, LPIPS(stages, spec.channels, min_size=spec.min_size, name=spec.name)


def lpips_network(net: Literal["alex", "vgg"] = "alex") -> LPIPS:
    """LPIPS on torchvision's AlexNet or VGG16 with fresh weights (shapes and tests; `load_lpips` for
    scores). Raises ValueError for another `net`."""
    return _create_lpips(net)[1]


def _how_to_get_it(spec: LPIPSNet) -> str:
    return (
        f"LPIPS ({spec.name}) reads two published files from one folder; translate-kit never downloads them: "
        f"torchvision's ImageNet {spec.arch} weights {spec.backbone_file} ({spec.backbone_url}) and the lpips "
        f"package's v0.1 linear layers {spec.linear_file} ({spec.linear_url}). Download both into one folder and "
        f"pass it with `tkit eval --lpips-weights FOLDER` or the environment variable {LPIPS_WEIGHTS_ENV}; or leave "
        "LPIPS out with --no-lpips (the pixel-space diversity needs no weights)."
    )


def load_lpips(
    folder: str | os.PathLike[str] | None = None,
    *,
    net: Literal["alex", "vgg"] = "alex",
    device: str | torch.device = "cpu",
) -> LPIPS:
    """LPIPS v0.1 with the published weights in a local folder.

    Args:
        folder: holds the backbone file (`alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth`) and the
            linear layers (`alex.pth` / `vgg.pth`); None or "": `$TRANSLATE_KIT_LPIPS_WEIGHTS`.
        net: "alex" (the BicycleGAN protocol's and lpips' default) or "vgg".
        device: where the network goes.

    Returns:
        The network in eval mode with no gradients, `weights` and `weights_sha256` set.

    Raises:
        OptionError: no folder given anywhere.
        CheckpointError: the folder or a file is missing, unreadable, or holds other tensors.
    """
    if net not in LPIPS_NETS:
        raise ValueError(f"Expected net 'alex' or 'vgg', got {net!r}")
    spec = LPIPS_NETS[net]
    how = _how_to_get_it(spec)
    where = locate_weights(((folder, "given"), (os.environ.get(LPIPS_WEIGHTS_ENV), f"from {LPIPS_WEIGHTS_ENV}")),
                           what="LPIPS weights folder", how_to_get=how, kind="folder")
    files = {"backbone": where / spec.backbone_file, "linear": where / spec.linear_file}
    for file in files.values():
        if not file.is_file():
            raise CheckpointError(f"The LPIPS weights folder {where} holds no {file.name}. {how}")
    features, model = _create_lpips(net)
    backbone = read_state_dict(files["backbone"], how_to_get=how)
    expected = {f"features.{k}": v for k, v in features.state_dict().items()}
    check_tensors(backbone, expected, files["backbone"], what=f"torchvision's {spec.arch} weights file",
                  layout=f"torchvision's {spec.arch}().features (its classifier.* tensors are not read)",
                  how_to_get=how, ignore=lambda name: name.startswith("classifier."))
    features.load_state_dict({k[len("features."):]: v for k, v in backbone.items() if k in expected})
    linear = read_state_dict(files["linear"], how_to_get=how)
    names = {f"lin{i}.model.1.weight": f"{i}.weight" for i in range(len(spec.channels))}  # the file's -> ours
    check_tensors(linear, {k: model.lins.state_dict()[v] for k, v in names.items()}, files["linear"],
                  what=f"the lpips v0.1 linear-layer file for {spec.name}",
                  layout="the lpips package's weights/v0.1 file (lin0.model.1.weight ... lin4.model.1.weight)",
                  how_to_get=how)
    model.lins.load_state_dict({ours: linear[theirs] for theirs, ours in names.items()})
    model.weights = {k: f.name for k, f in files.items()}
    model.weights_sha256 = {k: sha256(f) for k, f in files.items()}
    return model.to(device)

