"""pix2pixHD (Wang et al., CVPR 2018, https://arxiv.org/abs/1711.11585): coarse-to-fine generator,
multiscale discriminator, feature matching.

- ``GlobalGenerator`` (G1): c7s1-64, d128, d256, d512, d1024, 9 residual blocks at 1024, u512,
  u256, u128, u64, c7s1-3, tanh; InstanceNorm (no affine, so convolutions keep their bias) and
  reflection padding, as in the reference code.
- ``LocalEnhancer`` (G2 on top of G1): c7s1-32, d64 on the full-resolution input; G1 runs on the
  input average-pooled to half size and its last feature map (before its c7s1-3 head) is added to
  the front-end output; then 3 residual blocks at 64, u32, c7s1-3. Coarse to fine: train a
  `global_generator`, load its weights with `LocalEnhancer.load_global_weights`, then train with
  `train_global = false` (the reference's `niter_fix_global`) and/or jointly.
- ``MultiscaleDiscriminator``: ``num_d`` PatchGANs of the same architecture (the patchgan
  plugin's ``PatchDiscriminator``) on the pair at full, 1/2, 1/4 ... resolution, each scale
  average-pooled from the last (AvgPool2d(3, stride 2, padding 1, count_include_pad=False)).
  The reference pads its 4x4 convolutions by 2; pix2pix's PatchGAN, reused here, pads by 1, so the
  logit maps are a few pixels smaller and the receptive fields the same.
- Losses, as in the reference (``models/pix2pixHD_model.py``):
  LSGAN summed over scales (the reference's ``GANLoss`` adds the per-scale losses; the gan_losses
  plugin averages a list, so the method multiplies by the number of scales); D's loss halved,
  0.5 * (real + fake); feature matching with weight lambda_FM = 10 (``feature_matching_loss``:
  L1 per layer and scale, each weighted 4 / (n_layers + 1) * 1 / num_d); the VGG19 loss with
  lambda = 10 (vgg plugin) when a weights file is given.
- Label maps (``label_nc`` > 0, data from the ``label_maps`` dataset): G and D take the one-hot
  class map, plus the instance-boundary map with ``instance_maps = true``, instead of an image.
- ``FeatureEncoder`` (E, an ``[encoder]`` table of kind ``feature_encoder``): the paper's
  instance-wise feature encoder, a small encoder-decoder (ngf 16, 4 down-samplings, 3 feature
  channels, instance norm) on the real photo whose output is averaged inside each instance
  (``instance_mean``) and concatenated to G's input; trained with G (E is in G's optimiser group,
  as in the reference). Without instance maps every class is one instance, as in the reference.
  After training, ``tkit features RUN`` (plugin ``feature_clusters``) clusters the instances'
  features per class with k-means (k = 10) into ``RUN/feature_clusters.pt``; ``translate`` then
  fills each class with a cluster centre: drawn at random per class and sample (a multimodal
  model), or chosen with the inference options ``feature_cluster`` / ``feature_clusters``
  (``tkit translate RUN --option feature_cluster=3``). Without that file the features are zero.

Example:
    >>> import torch
    >>> d = multiscale(ndf=8, n_layers=1, num_d=3)
    >>> [tuple(p.shape) for p in d(torch.randn(1, 6, 32, 32))]
    [(1, 1, 14, 14), (1, 1, 6, 6), (1, 1, 2, 2)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.label_maps import label_channels, label_input, labels_from_image
from translate_kit_plugins.patchgan import PatchDiscriminator
from translate_kit_plugins.resnet import ResidualBlock

from translate_kit.api import (
    MULTISCALE_LOGITS,
    BatchSpec,
    CheckpointError,
    ComponentRef,
    DataError,
    GANLossName,
    InferenceOption,
    InputSpec,
    LossOptions,
    Method,
    Norm,
    OptionsOf,
    PairedJitter,
    Palette,
    Parts,
    StepContext,
    atomic_save,
    conv_bias,
    did_you_mean,
    encode_palette,
    frozen,
    init_weights,
    make_norm,
    register,
    register_discriminator,
    register_generator,
    register_method,
    to_unit_range,
    unwrap,
)

__all__ = [
    "CLUSTERS_FILE",
    "FEATURE_OPTIONS",
    "FeatureClusters",
    "FeatureEncoder",
    "FeatureMatchingLoss",
    "GlobalGenerator",
    "LabelSpec",
    "LocalEnhancer",
    "MultiscaleDiscriminator",
    "Pix2PixHD",
    "feature_encoder",
    "feature_matching_loss",
    "global_generator",
    "instance_mean",
    "local_enhancer",
    "multiscale",
    "pix2pixhd",
]

INSTANCES = "instances"  # the label_maps dataset's key of instance-id maps
CLUSTERS_FILE = "feature_clusters.pt"  # beside checkpoints/ in a run folder: written by `tkit features`


def _downsample() -> nn.AvgPool2d:
    """Half resolution, as the reference's multiscale D and local enhancer do: (H, W) -> ceil(H/2), ceil(W/2)."""
    return nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)


def _check_input(x: torch.Tensor, channels: int, multiple: int, minimum: int) -> None:
    h, w = x.shape[-2:] if x.ndim == 4 else (0, 0)
    if x.ndim != 4 or x.shape[1] != channels or h % multiple or w % multiple or min(h, w) < minimum:
        raise ValueError(
            f"Expected input of shape (B, {channels}, H, W) with H, W divisible by {multiple} and >= {minimum}, "
            f"got {tuple(x.shape)}"
        )


# --- generators -------------------------------------------------------------------------------


def _downsampling_stem(in_channels: int, ngf: int, n_downsampling: int, norm: Norm) -> tuple[list[nn.Module], int]:
    """The front both pix2pixHD's global generator and its feature encoder start with: c7s1-ngf, then
    n_downsampling stride-2 3x3 convolutions doubling the width; returns the layers and the width."""
    bias = conv_bias(norm)
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), make_norm(norm, ngf), nn.ReLU(True)
    ]
    width = ngf
    for _ in range(n_downsampling):
        layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias), make_norm(norm, 2 * width),
                   nn.ReLU(True)]
        width *= 2
    return layers, width


def _upsampling(width: int, n_upsampling: int, norm: Norm) -> list[nn.Module]:
    """Their way back up: n_upsampling stride-2 3x3 transposed convolutions halving the width."""
    layers: list[nn.Module] = []
    for _ in range(n_upsampling):
        layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=conv_bias(norm)),
                   make_norm(norm, width // 2), nn.ReLU(True)]
        width //= 2
    return layers


class GlobalGenerator(nn.Module):
    """pix2pixHD's G1: c7s1-ngf, `n_downsampling` stride-2 convs, `n_blocks` residual blocks, as many
    transposed convs, c7s1-out, tanh.

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the first layer (ngf·2^n_downsampling in the residual blocks).
        n_downsampling: stride-2 convolutions (4 in the paper).
        n_blocks: residual blocks (9 in the paper).
        norm: "instance" (the paper's), "batch" or "none".

    Attributes:
        size_multiple: 2^n_downsampling; H and W must be multiples of it.
        min_size: 2^(n_downsampling+1): the residual blocks' reflection padding needs a bottleneck
            of at least 2x2.
        front: everything up to and including the last up-sampling (its output, ngf channels at
            full resolution, is what the local enhancer adds to); `head` is c7s1-out + tanh.

    Shape:
        (B, in_channels, H, W) -> (B, out_channels, H, W), values in (-1, 1).
    """

    def __init__(
        self, *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_downsampling: int = 4,
        n_blocks: int = 9, norm: str = "instance",
    ) -> None:
        super().__init__()
        if n_downsampling < 0 or n_blocks < 0:
            raise ValueError(f"Expected n_downsampling and n_blocks >= 0, got {n_downsampling}, {n_blocks}")
        if min(in_channels, out_channels, ngf) < 1:
            raise ValueError(
                f"Expected in_channels, out_channels and ngf >= 1, got {in_channels}, {out_channels}, {ngf}"
            )
        self.in_channels, self.out_channels, self.ngf = in_channels, out_channels, ngf
        self.size_multiple = 2**n_downsampling
        self.min_size = max(4, 2 ** (n_downsampling + 1) if n_blocks else 2**n_downsampling)
        layers, width = _downsampling_stem(in_channels, ngf, n_downsampling, norm)
        layers += [ResidualBlock(width, norm, 0.0) for _ in range(n_blocks)]
        layers += _upsampling(width, n_downsampling, norm)
        self.front = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before the head, (B, ngf, H, W)."""
        _check_input(x, self.in_channels, self.size_multiple, self.min_size)
        return self.front(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LocalEnhancer(nn.Module):
    """pix2pixHD's G2 around a G1: G1 on the half-size input, its last feature map added to G2's
    front-end (c7s1-ngf, d 2·ngf), then residual blocks, u ngf, c7s1-out, tanh.

    Args:
        global_generator: G1, with `ngf == 2 * ngf` of this enhancer.
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: feature maps of the front end's first layer (32 in the paper).
        n_blocks: residual blocks of the enhancer (3 in the paper).
        norm: "instance", "batch" or "none".
        train_global: False freezes G1's parameters (the trainer then leaves them out of the
            optimiser): the reference's first phase of fine-tuning a pre-trained G1.

    Attributes:
        size_multiple: 2·G1's multiple (G1 runs at half resolution).
        min_size: 2·G1's minimum.
    """

    def __init__(
        self, global_generator: GlobalGenerator, *, in_channels: int = 3, out_channels: int = 3, ngf: int = 32,
        n_blocks: int = 3, norm: str = "instance", train_global: bool = True,
    ) -> None:
        super().__init__()
        if global_generator.ngf != 2 * ngf:
            raise ValueError(
                f"Expected the global generator's ngf to be 2 * ngf = {2 * ngf}, got {global_generator.ngf}"
            )
        if global_generator.in_channels != in_channels:
            raise ValueError(
                f"Expected the global generator to take {in_channels} channels, got {global_generator.in_channels}"
            )
        if n_blocks < 0:
            raise ValueError(f"Expected n_blocks >= 0, got {n_blocks}")
        self.in_channels = in_channels
        self.size_multiple = 2 * global_generator.size_multiple
        self.min_size = 2 * global_generator.min_size
        self.global_generator = global_generator
        self.global_generator.head = nn.Identity()  # G1's c7s1-3 head is unused (the reference drops it)
        self.global_generator.requires_grad_(train_global)
        self.downsample = _downsample()
        bias = conv_bias(norm)
        self.front = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), make_norm(norm, ngf), nn.ReLU(True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1, bias=bias), make_norm(norm, 2 * ngf), nn.ReLU(True),
        )
        self.back = nn.Sequential(
            *[ResidualBlock(2 * ngf, norm, 0.0) for _ in range(n_blocks)],
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1, bias=bias),
            make_norm(norm, ngf),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, out_channels, 7),
            nn.Tanh(),
        )

    def load_global_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a trained `GlobalGenerator`'s state dict into G1 (its c7s1-out head is dropped)."""
        self.global_generator.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith("head.")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels, self.size_multiple, self.min_size)
        coarse = self.global_generator.features(self.downsample(x))
        return self.back(self.front(x) + coarse)


@register_generator(tiny={"ngf": 4, "n_downsampling": 2, "n_blocks": 1})
def global_generator(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_downsampling: int = 4, n_blocks: int = 9,
    norm: Norm = "instance",
) -> GlobalGenerator:
    """pix2pixHD's global generator G1 (182,443,267 parameters with the defaults).

    H and W must be multiples of 2^n_downsampling and at least 2^(n_downsampling+1).
    Weights N(0, 0.02), as the reference initialises them.
    """
    return init_weights(GlobalGenerator(in_channels=in_channels, out_channels=out_channels, ngf=ngf,
                                        n_downsampling=n_downsampling, n_blocks=n_blocks, norm=norm))


@register_generator(tiny={"ngf": 2, "n_local_blocks": 1, "global_ngf": 4, "global_n_downsampling": 2,
                          "global_n_blocks": 1})
def local_enhancer(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 32, n_local_blocks: int = 3, global_ngf: int = 64,
    global_n_downsampling: int = 4, global_n_blocks: int = 9, norm: Norm = "instance", train_global: bool = True,
) -> LocalEnhancer:
    """pix2pixHD's local enhancer G2 on a global generator G1 (2x its resolution).

    global_ngf must be 2 * ngf (G1's last feature map is added to G2's d(2·ngf) output). H and W
    must be multiples of 2^(global_n_downsampling+1). train_global = false freezes G1 (load a
    trained G1 into `.global_generator` first).
    """
    g1 = GlobalGenerator(in_channels=in_channels, out_channels=out_channels, ngf=global_ngf,
                         n_downsampling=global_n_downsampling, n_blocks=global_n_blocks, norm=norm)
    return init_weights(LocalEnhancer(g1, in_channels=in_channels, out_channels=out_channels, ngf=ngf,
                                      n_blocks=n_local_blocks, norm=norm, train_global=train_global))


# --- instance-wise feature encoder ----------------------------------------------------------


def _instance_groups(instances: torch.Tensor) -> tuple[torch.Tensor, int]:
    """For `(B, 1, H, W)` ids: each pixel's group (an instance of one image) as an index into
    0..K-1, flattened image by image, and K."""
    ids = instances.reshape(instances.shape[0], -1).to(torch.int64)
    ids = ids - ids.min()
    keys = ids + torch.arange(ids.shape[0], device=ids.device)[:, None] * (int(ids.max()) + 1)
    _, inverse = torch.unique(keys, return_inverse=True)
    return inverse.flatten(), int(inverse.max()) + 1


def _group_means(features: torch.Tensor, groups: torch.Tensor, count: int) -> torch.Tensor:
    """Mean of `(B, C, H, W)` features over each group (see `_instance_groups`): `(C, count)`, float32."""
    channels = features.shape[1]
    flat = features.float().transpose(0, 1).reshape(channels, -1)  # (C, B·H·W), image by image
    sums = flat.new_zeros(channels, count).index_add_(1, groups, flat)
    return sums / torch.bincount(groups, minlength=count).to(flat.dtype)


def instance_mean(features: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
    """Every pixel gets the mean feature of its instance (pix2pixHD's instance-wise average pooling).

    Args:
        features: `(B, C, H, W)`.
        instances: integer instance ids `(B, 1, H, W)`; ids are per image (id 3 of image 0 and id 3
            of image 1 are two instances). A class map works as an instance map: one instance per class.

    Returns:
        `(B, C, H, W)` float32, differentiable with respect to `features`.

    Example:
        >>> f = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
        >>> instance_mean(f, torch.tensor([[[[0, 0], [0, 9]]]])).tolist()
        [[[[3.0, 3.0], [3.0, 7.0]]]]
    """
    if features.ndim != 4 or instances.shape != (features.shape[0], 1, *features.shape[-2:]):
        raise ValueError(f"Expected features (B, C, H, W) and instances (B, 1, H, W) of the same B, H, W, got "
                         f"{tuple(features.shape)} and {tuple(instances.shape)}")
    if instances.is_floating_point():
        raise ValueError(f"Expected integer instance ids, got {instances.dtype}")
    groups, count = _instance_groups(instances)
    means = _group_means(features, groups, count)
    b, c, h, w = features.shape
    return means[:, groups].reshape(c, b, h, w).transpose(0, 1)


class FeatureEncoder(nn.Module):
    """pix2pixHD's encoder E: c7s1-ngf, `n_downsampling` stride-2 convs, as many transposed convs,
    c7s1-feat_num, tanh; its output is averaged inside each instance (`instance_mean`).

    Args:
        in_channels: channels of the photos it encodes.
        feat_num: feature channels (3 in the paper).
        ngf: feature maps of the first layer (16 in the reference, `nef`).
        n_downsampling: stride-2 convolutions (4 in the reference, `n_downsample_E`).
        norm: "instance" (the reference's), "batch" or "none".

    Attributes:
        size_multiple: 2^n_downsampling; H and W must be multiples of it.
        min_size: 2^(n_downsampling+1): instance norm needs more than one value at the bottleneck.

    Shape:
        `forward(image, instances)`: (B, in_channels, H, W), (B, 1, H, W) ids -> (B, feat_num, H, W),
        constant inside each instance, in (-1, 1).
    """

    def __init__(
        self, *, in_channels: int = 3, feat_num: int = 3, ngf: int = 16, n_downsampling: int = 4, norm: str = "instance"
    ) -> None:
        super().__init__()
        if min(in_channels, feat_num, ngf) < 1 or n_downsampling < 0:
            raise ValueError(f"Expected in_channels, feat_num, ngf >= 1 and n_downsampling >= 0, got {in_channels}, "
                             f"{feat_num}, {ngf}, {n_downsampling}")
        self.in_channels, self.feat_num = in_channels, feat_num
        self.size_multiple, self.min_size = 2**n_downsampling, 2 ** (n_downsampling + 1)
        layers, width = _downsampling_stem(in_channels, ngf, n_downsampling, norm)
        layers += _upsampling(width, n_downsampling, norm)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, feat_num, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel features before the pooling, (B, feat_num, H, W)."""
        _check_input(image, self.in_channels, self.size_multiple, self.min_size)
        return self.model(image)

    def forward(self, image: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return instance_mean(self.features(image), instances)


@register("feature_encoder", tiny={"ngf": 2, "n_downsampling": 2})
def feature_encoder(
    *, in_channels: int = 3, feat_num: int = 3, ngf: int = 16, n_downsampling: int = 4, norm: Norm = "instance"
) -> FeatureEncoder:
    """pix2pixHD's instance-wise feature encoder E (788,803 parameters with the defaults).

    H and W must be multiples of 2^n_downsampling and at least 2^(n_downsampling+1).
    """
    return init_weights(FeatureEncoder(in_channels=in_channels, feat_num=feat_num, ngf=ngf,
                                       n_downsampling=n_downsampling, norm=norm))


@dataclasses.dataclass(frozen=True)
class FeatureClusters:
    """k-means centres of the instance features, per class: what `tkit features` writes to
    `RUN/feature_clusters.pt` and `Pix2PixHD.load_run_files` reads.

    Attributes:
        centres: `(label_nc, k, feat_num)` float32; class c's first `counts[c]` rows are its centres.
        counts: `(label_nc,)` int64: clusters per class (0: the class had no instance to cluster).
        names: the class names.
        seed: the k-means seed.
        source: the checkpoint file whose encoder made the features.
        step: that checkpoint's step.
        instances: `(label_nc,)` int64: instances clustered per class.
    """

    centres: torch.Tensor
    counts: torch.Tensor
    names: tuple[str, ...]
    seed: int
    source: str
    step: int
    instances: torch.Tensor

    FORMAT = "translate-kit/pix2pixhd-feature-clusters"

    def save(self, path: Path) -> None:
        """Write the file atomically (a crash leaves the previous one)."""
        state = {"format": self.FORMAT, "version": 1, "centres": self.centres.cpu(), "counts": self.counts.cpu(),
                 "names": list(self.names), "seed": self.seed, "source": self.source, "step": self.step,
                 "instances": self.instances.cpu()}
        atomic_save(state, Path(path))

    @classmethod
    def read(cls, path: Path) -> FeatureClusters:
        """Read a file `save` wrote.

        Raises:
            CheckpointError: not such a file, or damaged.
        """
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("format") != cls.FORMAT:
                raise ValueError("no feature-clusters marker")
            clusters = cls(state["centres"].float(), state["counts"].long(), tuple(state["names"]), int(state["seed"]),
                           str(state["source"]), int(state["step"]), state["instances"].long())
            if clusters.centres.ndim != 3 or clusters.counts.shape != clusters.centres.shape[:1]:
                raise ValueError(f"centres {tuple(clusters.centres.shape)} and counts {tuple(clusters.counts.shape)}")
        except Exception as exc:  # any unreadable content is the same problem for the user
            raise CheckpointError(f"{path} is not a readable feature-clusters file ({exc}); make it again with "
                                  "`tkit features RUN`.") from None
        return clusters


# --- discriminator ----------------------------------------------------------------------------


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchGANs of one architecture on the input at full, 1/2, 1/4 ... resolution.

    Args:
        in_channels: channels of the (input, output) pair.
        ndf: feature maps of each PatchGAN's first convolution.
        n_layers: stride-2 convolutions of each PatchGAN.
        num_d: scales (3 in the paper; 2 is the reference code's default).
        norm: "instance" (the paper's), "batch" or "none".

    Attributes:
        num_d: scales.
        min_size: the smallest H, W every scale accepts: the coarsest scale sees ceil(H / 2^(num_d-1))
            pixels and a PatchGAN needs m = 3·2^n_layers, so (m - 1)·2^(num_d-1) + 1.
        receptive_field: each scale's field in its own pixels (x 2^k in full-resolution pixels).
    """

    def __init__(
        self, *, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, num_d: int = 3, norm: str = "instance"
    ) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"Expected num_d >= 1, got {num_d}")
        self.in_channels, self.num_d = in_channels, num_d
        self.size_multiple = 1
        self.scales = nn.ModuleList(
            PatchDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm) for _ in range(num_d)
        )
        self.downsample = _downsample()
        self.min_size = (self.scales[0].min_size - 1) * 2 ** (num_d - 1) + 1
        self.receptive_field = self.scales[0].receptive_field

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Score the patches of `x` at every scale.

        Args:
            x: pairs concatenated along channels, (B, in_channels, H, W), H, W >= min_size.
            return_features: also return every scale's block outputs (for feature matching).

        Returns:
            One logit map (B, 1, h_k, w_k) per scale, full resolution first; with
            `return_features`, `(logits, features)` where `features[k]` is scale k's list of
            n_layers + 1 block outputs.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"Expected input of shape (B, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        logits, features = [], []
        for k, d in enumerate(self.scales):
            if k:
                x = self.downsample(x)
            if return_features:
                out, feats = d(x, return_features=True)
                features.append(feats)
            else:
                out = d(x)
            logits.append(out)
        return (logits, features) if return_features else logits


@register_discriminator(output=MULTISCALE_LOGITS, tiny={"ndf": 4, "n_layers": 2, "num_d": 2})
def multiscale(
    *, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, num_d: int = 3, norm: Norm = "instance"
) -> MultiscaleDiscriminator:
    """pix2pixHD's multiscale discriminator: num_d PatchGANs at full, 1/2, 1/4 ... resolution.

    Inputs must be at least (3·2^n_layers - 1)·2^(num_d-1) + 1 pixels (93 for n_layers 3, num_d 3).
    """
    return init_weights(MultiscaleDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, num_d=num_d,
                                                norm=norm))


# --- feature matching -------------------------------------------------------------------------


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """pix2pixHD's discriminator feature-matching loss.

    sum over scales k and layers i of 4 / L_k * 1 / num_d * mean|real_k,i - fake_k,i|, with L_k the
    layers of scale k (n_layers + 1 for a PatchGAN, the logits not included) and the real features
    detached. This is the reference's weighting (`4.0 / (n_layers_D + 1)` and `1.0 / num_D`): four
    times the mean of the per-layer L1 distances. Multiply by lambda_FM (10) in the method.

    Args:
        real_features: per scale, the list of D's block outputs on the real pair.
        fake_features: the same on the generated pair (gradients flow through these).

    Returns:
        A float32 scalar; zero when the features are equal.

    Raises:
        ValueError: the two disagree in scales, layers or shapes, or are empty.

    Example:
        >>> real = [[torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]]
        >>> fake = [[torch.ones(1, 2, 2, 2), torch.full((1, 1, 1, 1), 3.0)]]
        >>> feature_matching_loss(real, fake)  # 4/2 * (1 + 3)
        tensor(8.)
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(
            f"Expected the same non-zero number of scales, got {len(real_features)} and {len(fake_features)}"
        )
    num_d = len(real_features)
    loss = torch.zeros((), dtype=torch.float32, device=fake_features[0][0].device)
    for real, fake in zip(real_features, fake_features):
        if len(real) != len(fake) or not real:
            raise ValueError(f"Expected the same non-zero number of layers per scale, got {len(real)} and {len(fake)}")
        weight = 4.0 / len(real) / num_d
        for r, f in zip(real, fake):
            if r.shape != f.shape:
                raise ValueError(f"Expected features of the same shape, got {tuple(r.shape)} and {tuple(f.shape)}")
            loss = loss + weight * F.l1_loss(f.float(), r.detach().float())
    return loss


class FeatureMatchingLoss(nn.Module):
    """Module form of `feature_matching_loss`."""

    def forward(
        self, real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
    ) -> torch.Tensor:
        return feature_matching_loss(real_features, fake_features)


# --- method -----------------------------------------------------------------------------------


def _as_list(logits: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [logits] if isinstance(logits, torch.Tensor) else list(logits)


def _as_scales(out: Any) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """(logits, features) of a multiscale D, or of a single PatchGAN seen as one scale."""
    logits, features = out
    if isinstance(logits, torch.Tensor):
        return [logits], [features]
    return list(logits), list(features)


@dataclasses.dataclass(frozen=True)
class LabelSpec:
    """How pix2pixHD reads label maps (the `label_maps` dataset's class ids).

    Attributes:
        label_nc: classes: ids 0..label_nc-1, one-hot encoded for G and D.
        dont_care: the id of unlabelled pixels (an all-zero class vector), or None.
        instance_maps: the items hold instance maps (key "instances"): their boundary map is one
            more input channel of G and D, and E pools over instances (not classes).
        palette: the classes' colours (`data.palette`): `translate` decodes colour label maps with
            it, and the prepared batch's "A" is the map in these colours. None: one-channel maps of ids.
    """

    label_nc: int
    dont_care: int | None = None
    instance_maps: bool = False
    palette: Palette | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.palette.names if self.palette is not None else tuple(str(i) for i in range(self.label_nc))


FEATURE_OPTIONS = {
    "feature_cluster": InferenceOption(
        "the cluster centre that fills every instance (0..k-1, per class: a class with fewer clusters takes N mod "
        "its count); without it each class draws one at random per sample", type=int),
    "feature_clusters": InferenceOption(
        "per class, CLASS:N,... (a class name or id; e.g. window:3,door:1); the other classes follow "
        "feature_cluster, or draw at random"),
}


class Pix2PixHD(Method):
    """Paired cGAN with a multiscale D: GAN (summed over scales) + lambda_FM·FM (+ lambda_VGG·VGG, + lambda_L1·L1).

    Args:
        generator: maps G's input (an image, or the label channels plus the encoder's features) to
            (B, C_out, H, W) in [-1, 1].
        discriminator: a `MultiscaleDiscriminator` (or any D whose `forward(x, return_features=True)`
            gives `(logits, features)`, per scale or for one scale) on (condition, image) pairs.
        gan_loss: a GAN loss component (lsgan in the paper).
        lambda_fm: weight of the feature-matching loss (paper: 10).
        vgg_loss: the VGG perceptual loss, or None.
        lambda_vgg: its weight (paper: 10).
        lambda_l1: weight of an L1 term (pix2pixHD has none: 0).
        labels: label-map input (`LabelSpec`); None: the input is an image (pix2pix's data).
        encoder: the instance-wise `FeatureEncoder` (needs `labels`), or None.
    """

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, gan_loss: nn.Module, *, lambda_fm: float,
        vgg_loss: nn.Module | None, lambda_vgg: float, lambda_l1: float, labels: LabelSpec | None = None,
        encoder: FeatureEncoder | None = None,
    ) -> None:
        super().__init__()
        if encoder is not None and labels is None:
            raise ValueError("Expected label maps (labels) with a feature encoder: its features are pooled per class")
        self.nets = nn.ModuleDict({"G": generator, "D": discriminator})
        self.roles = {"G": "translate", "D": "adversary"}
        if encoder is not None:  # trained with G; inference reads cluster centres instead
            self.nets["E"] = encoder
            self.roles["E"] = "auxiliary"
        self.gan_loss = gan_loss
        self.vgg_loss = vgg_loss
        self.lambda_fm, self.lambda_vgg, self.lambda_l1 = lambda_fm, lambda_vgg, lambda_l1
        self.labels = labels
        self.feat_num = encoder.feat_num if encoder is not None else 0
        # Cluster centres (`load_run_files`) and the chosen centre per class (-1: drawn at random).
        self.register_buffer("cluster_centres", None, persistent=False)
        self.register_buffer("cluster_counts", None, persistent=False)
        self.register_buffer("cluster_choice", None, persistent=False)

    @property
    def static_step(self) -> bool:  # type: ignore[override]
        """Without the instance-wise encoder: its per-instance pooling (`torch.unique`) reads the device."""
        return "E" not in self.nets

    def optimizer_groups(self) -> dict[str, list[str]]:
        # E learns through G's loss, in G's optimiser, as in the reference.
        return {"D": ["D"], "G": ["G", "E"] if "E" in self.nets else ["G"]}

    # --- label maps ---------------------------------------------------------------------------

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """Images: pix2pix's paired jitter. Label maps: the class ids (and instance ids) cropped and
        flipped with the photo, exactly; "labels" holds the ids `(B, 1, H, W)` and "A", what
        `translate` takes, the map as an image in [-1, 1] (in the palette's colours)."""
        labels = self.labels
        if labels is None:
            return super().prepare_batch(batch, spec)
        a = batch.get("A")
        if isinstance(a, torch.Tensor) and (a.ndim != 4 or a.shape[1] != 1 or a.is_floating_point()):
            raise DataError(f"pix2pixhd with label_nc = {labels.label_nc} reads label maps of class ids, uint8 "
                            f"(B, 1, H, W), but the batch's A is {a.dtype} {tuple(a.shape)}; use the label_maps "
                            'dataset ([data] dataset = "label_maps").')
        if labels.instance_maps and INSTANCES not in batch:
            raise DataError("pix2pixhd with instance_maps = true needs instance maps, but the items have none; give "
                            "the label_maps dataset an instances_dir (layout \"folders\"), or set instance_maps = "
                            "false (each class is then one instance).")
        keys = ("A", INSTANCES) if labels.instance_maps else ("A",)
        jitter = self.__dict__.get("_label_jitter")
        if jitter is None or (jitter.crop_size, jitter.flip_enabled) != (spec.crop_size, spec.flip):
            jitter = self.__dict__["_label_jitter"] = PairedJitter(spec.crop_size, spec.flip, keys=("B",),
                                                                   label_keys=keys)
        out = jitter.prepare(batch, spec)
        out["labels"] = out["A"].to(torch.int64)
        out["A"] = self._label_image(out["labels"])
        return out

    def _label_image(self, ids: torch.Tensor) -> torch.Tensor:
        """Class ids `(B, 1, H, W)` as `translate`'s input: the colour map, or the ids in [-1, 1]."""
        labels = self.labels
        assert labels is not None
        if labels.palette is None:
            return to_unit_range(ids.to(torch.uint8))
        ignore = labels.dont_care if labels.dont_care is not None else -1
        return to_unit_range(encode_palette(ids[:, 0], labels.palette, ignore_index=ignore))

    def _condition(self, ids: torch.Tensor, instances: torch.Tensor | None) -> torch.Tensor:
        """G's and D's label channels: one-hot classes (+ the instance boundaries)."""
        labels = self.labels
        assert labels is not None
        return label_input(ids, labels.label_nc, instances=instances, dont_care=labels.dont_care)

    # --- one step -----------------------------------------------------------------------------

    def _gan(self, logits: list[torch.Tensor], real: bool, for_discriminator: bool) -> torch.Tensor:
        # The reference sums the per-scale losses; the GAN loss component averages a list.
        return len(logits) * self.gan_loss(logits, target_is_real=real, for_discriminator=for_discriminator)

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G, D = self.nets["G"], self.nets["D"]
        real_b = batch["B"]
        with ctx.autocast():
            if self.labels is None:
                condition = g_input = batch["A"]
            else:
                instances = batch[INSTANCES] if self.labels.instance_maps else None
                condition = g_input = self._condition(batch["labels"], instances)
                if "E" in self.nets:  # features of the real photo, averaged per instance (per class without maps)
                    pooled = self.nets["E"](real_b, batch["labels"] if instances is None else instances)
                    g_input = torch.cat([condition, pooled.to(condition.dtype)], dim=1)
            fake_b = G(g_input)

        # D step on real pairs and detached fake pairs, its loss halved as in the reference.
        with ctx.autocast():
            real_pair = torch.cat([condition, real_b.to(condition.dtype)], dim=1)
            fake_pair = torch.cat([condition, fake_b.detach().to(condition.dtype)], dim=1)
            pred_real, pred_fake = _as_list(D(real_pair)), _as_list(D(fake_pair))
            loss_d_real = self._gan(pred_real, True, True)
            loss_d_fake = self._gan(pred_fake, False, True)
            loss_d = 0.5 * (loss_d_real + loss_d_fake)
        penalty = self.gan_loss.penalty(D, real_pair, fake_pair)  # zero unless wgangp
        ctx.update("D", loss_d + penalty)

        # G step with D frozen. The real features are recomputed with the updated D, so both sides
        # of the feature matching come from the same D (the reference computes all from one D).
        with frozen([D]), ctx.autocast():
            fake_pair = torch.cat([condition, fake_b.to(condition.dtype)], dim=1)
            pred_fake, feats_fake = _as_scales(D(fake_pair, return_features=True))
            with torch.no_grad():
                _, feats_real = _as_scales(D(real_pair, return_features=True))
            loss_g_gan = self._gan(pred_fake, True, False)
            loss_g_fm = feature_matching_loss(feats_real, feats_fake)
            loss_g = loss_g_gan + self.lambda_fm * loss_g_fm
            scalars = {"loss_G_GAN": loss_g_gan.detach(), "loss_G_FM": loss_g_fm.detach()}
            if self.vgg_loss is not None:
                loss_g_vgg = self.vgg_loss(fake_b, real_b)
                loss_g = loss_g + self.lambda_vgg * loss_g_vgg
                scalars["loss_G_VGG"] = loss_g_vgg.detach()
            if self.lambda_l1 > 0:
                loss_g_l1 = F.l1_loss(fake_b.float(), real_b.float())
                loss_g = loss_g + self.lambda_l1 * loss_g_l1
                scalars["loss_G_L1"] = loss_g_l1.detach()
        ctx.update("G", loss_g)

        return {**scalars, "loss_D_real": loss_d_real.detach(), "loss_D_fake": loss_d_fake.detach()}

    # --- inference ----------------------------------------------------------------------------

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """Images: G(x). Label maps (a colour map in the palette's colours, or one channel of ids,
        in [-1, 1]): G on the one-hot classes (+ their boundaries: without an instance map each
        class is one instance) and, with the encoder, each class filled with a feature cluster
        centre (`load_run_files`; zeros without clusters)."""
        G = self.nets["G"]
        labels = self.labels
        if labels is None:
            return G(x)
        try:
            ids = labels_from_image(x, palette=labels.palette)
            condition = self._condition(ids, ids if labels.instance_maps else None)
        except ValueError as exc:
            raise DataError(f"The label map does not fit this model: {exc}") from None
        if "E" in self.nets:
            condition = torch.cat([condition, self.feature_map(ids)], dim=1)
        return G(condition.to(x.dtype))

    def feature_map(self, ids: torch.Tensor) -> torch.Tensor:
        """The encoder's input to G at inference, `(B, feat_num, H, W)` for class ids `(B, 1, H, W)`:
        each class filled with its chosen cluster centre, or one drawn at random per class (one
        draw of fixed size per call, so every tile and every image of a call agrees); zero for
        classes without clusters, for unlabelled pixels, and everywhere without clusters."""
        labels = self.labels
        assert labels is not None
        b, _, h, w = ids.shape
        centres, counts = self.cluster_centres, self.cluster_counts
        if centres is None or counts is None or self.cluster_choice is None:
            return torch.zeros(b, self.feat_num, h, w, device=ids.device)
        choice = self.cluster_choice.clone()
        if bool((choice < 0).any()):
            drawn = (torch.rand(labels.label_nc, device=centres.device) * counts).long()
            choice = torch.where(choice < 0, drawn, choice)
        choice = torch.minimum(choice % counts.clamp_min(1), (counts - 1).clamp_min(0))
        values = centres[torch.arange(labels.label_nc, device=centres.device), choice]  # (label_nc, feat_num)
        values = values * (counts > 0)[:, None]
        inside = (ids >= 0) & (ids < labels.label_nc)
        filled = values[ids.clamp(0, labels.label_nc - 1)[:, 0]] * inside[:, 0, :, :, None]
        return filled.permute(0, 3, 1, 2).contiguous()

    def load_run_files(self, run_dir: Path) -> None:
        """Read `RUN/feature_clusters.pt` (`tkit features`) when the model has an encoder and the file exists."""
        path = Path(run_dir) / CLUSTERS_FILE
        if "E" not in self.nets or not path.is_file():
            return
        clusters = FeatureClusters.read(path)
        assert self.labels is not None
        expected = (self.labels.label_nc, self.feat_num)
        if (clusters.centres.shape[0], clusters.centres.shape[2]) != expected:
            raise CheckpointError(
                f"{path} holds clusters of {clusters.centres.shape[0]} classes x {clusters.centres.shape[2]} features, "
                f"but this model has {expected[0]} x {expected[1]}: it was made for another run. Make it again with "
                f"`tkit features {Path(run_dir)}`."
            )
        device = next(self.nets["G"].parameters()).device
        self.cluster_centres = clusters.centres.to(device)
        self.cluster_counts = clusters.counts.to(device)
        self.cluster_choice = torch.full((self.labels.label_nc,), -1, dtype=torch.int64, device=device)

    def input_spec(self, default: InputSpec) -> InputSpec:
        """With the encoder: the options `feature_cluster` / `feature_clusters`, and multimodal while
        some class draws its cluster at random."""
        if "E" not in self.nets:
            return default
        random = self.cluster_choice is not None and bool((self.cluster_choice < 0).any())
        return dataclasses.replace(default, multimodal=random, options=FEATURE_OPTIONS)

    def with_options(self, **values: Any) -> Pix2PixHD:
        """A method sharing these networks that fills classes with the chosen cluster centres.

        Raises:
            ValueError: no clusters yet (run `tkit features`), an unknown class, or a cluster it lacks.
        """
        labels = self.labels
        if self.cluster_counts is None or self.cluster_choice is None or labels is None:
            raise ValueError("this model has no feature clusters yet: run `tkit features RUN` first (it clusters the "
                             f"training set's instance features into RUN/{CLUSTERS_FILE})")
        counts = self.cluster_counts.tolist()
        choice = self.cluster_choice.clone()
        if "feature_cluster" in values:
            n = values["feature_cluster"]
            if not 0 <= n < max(counts):
                raise ValueError(f"feature_cluster={n}: the classes have 0..{max(counts) - 1} clusters")
            choice[:] = n
        for part in filter(None, (p.strip() for p in values.get("feature_clusters", "").split(","))):
            name, sep, number = part.rpartition(":")
            c = self._class_index(name.strip(), part) if sep else None
            if c is None or not number.strip().lstrip("-").isdigit():
                raise ValueError(f"feature_clusters: expected CLASS:N, e.g. {labels.names[0]}:3, got {part!r}")
            n = int(number)
            if not 0 <= n < counts[c]:
                have = f"clusters 0..{counts[c] - 1}" if counts[c] else "no clusters (no instance of it was clustered)"
                raise ValueError(f"feature_clusters: class {labels.names[c]!r} has {have}, so {n} cannot be chosen")
            choice[c] = n
        return self.shared_copy(cluster_choice=choice)

    def _class_index(self, name: str, part: str) -> int:
        assert self.labels is not None
        names = self.labels.names
        if name in names:
            return names.index(name)
        if name.isdigit() and int(name) < len(names):
            return int(name)
        raise ValueError(f"feature_clusters: unknown class {name!r} in {part!r}.{did_you_mean(name, names)} Classes: "
                         f"{', '.join(names)}")

    @torch.no_grad()
    def instance_features(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's feature of every instance of a prepared batch (`tkit features`).

        Returns:
            `(classes, features, areas)`: per instance, its class id (the most frequent id of its
            pixels), its mean feature `(feat_num,)` and its share of its image's pixels.
        """
        labels = self.labels
        if labels is None or "E" not in self.nets:
            raise ValueError("Expected a pix2pixhd model with a feature encoder")
        encoder = unwrap(self.nets["E"])
        ids = batch["labels"]
        instances = batch[INSTANCES] if labels.instance_maps else ids
        groups, count = _instance_groups(instances)
        features = _group_means(encoder.features(batch["B"]), groups, count).T  # (K, feat_num)
        pixels = torch.bincount(groups, minlength=count)
        votes = torch.bincount(groups * 256 + ids.flatten().clamp(0, 255), minlength=count * 256).view(count, 256)
        areas = pixels.double() / (ids.shape[-2] * ids.shape[-1])
        return votes.argmax(1), features, areas


@register_method(tables={"generator": "generator", "discriminator": "discriminator", "encoder": "feature_encoder"})
def pix2pixhd(
    parts: Parts,
    /,
    *,
    lambda_fm: float = 10.0,
    lambda_vgg: float = 0.0,
    vgg_loss: Annotated[str, ComponentRef("loss")] = "vgg19",
    vgg_options: Annotated[dict[str, Any] | None, OptionsOf("vgg_loss")] = None,
    lambda_l1: float = 0.0,
    gan_mode: GANLossName = "lsgan",
    gan_options: LossOptions = None,
    label_nc: int = 0,
    dont_care: int = -1,
    instance_maps: bool = False,
) -> Pix2PixHD:
    """pix2pixHD (Wang et al. 2018): conditional multiscale GAN + feature matching (+ VGG) on paired images.

    Args:
        parts: builds the recipe's [generator] and [discriminator], and the optional [encoder] (a
            `feature_encoder`: the instance-wise feature encoder) (given by the trainer).
        lambda_fm: weight of the discriminator feature-matching loss; the paper uses 10.
        lambda_vgg: weight of the VGG19 perceptual loss; the paper uses 10. 0 (the default) builds
            no VGG, since its weights must come from a local file.
        vgg_loss: the perceptual loss (the paper's `vgg19`).
        vgg_options: options of that loss, e.g. `{ weights = "vgg19-dcbb9e9d.pth" }`.
        lambda_l1: weight of an L1 term (not in pix2pixHD: 0).
        gan_mode: the adversarial loss: lsgan (the paper's), vanilla, hinge or wgangp.
        gan_options: options of that loss.
        label_nc: > 0: the input is a label map of that many classes (the `label_maps` dataset),
            one-hot encoded; `translate` decodes colour maps with `data.palette` (whose class count
            must be label_nc), or reads one channel of ids without one. 0: the input is an image.
        dont_care: the label maps' id of unlabelled pixels (all-zero class vector); -1: none.
        instance_maps: the data has instance maps (the label_maps dataset's instances_dir): add
            their boundary map to G's and D's input, and pool the encoder's features per instance.
    """
    gan_loss = parts.loss(gan_mode, **(gan_options or {}))
    if min(lambda_fm, lambda_vgg, lambda_l1) < 0:
        raise ValueError(f"Expected lambda_fm, lambda_vgg, lambda_l1 >= 0, got {lambda_fm}, {lambda_vgg}, {lambda_l1}")
    perceptual = parts.loss(vgg_loss, **(vgg_options or {})) if lambda_vgg > 0 else None
    if label_nc < 0 or (dont_care != -1 and not label_nc <= dont_care <= 255):
        raise ValueError(f"Expected label_nc >= 0 and dont_care -1 or in {label_nc}..255, got {label_nc}, {dont_care}")
    if not label_nc and (instance_maps or parts.has("encoder")):
        raise ValueError("instance maps and the feature encoder need label maps: set label_nc to the number of "
                         'classes and read the data with the label_maps dataset ([data] dataset = "label_maps")')
    palette = parts.palette if label_nc else None
    if palette is not None and palette.num_classes != label_nc:
        raise ValueError(f"label_nc = {label_nc} differs from the {palette.num_classes} classes of data.palette "
                         f"({', '.join(palette.names[:3])}, ...); set label_nc = {palette.num_classes}")
    kwargs = dict(lambda_fm=lambda_fm, vgg_loss=perceptual, lambda_vgg=lambda_vgg, lambda_l1=lambda_l1)
    if not label_nc:
        return Pix2PixHD(parts.generator(), parts.discriminator(in_channels=parts.in_channels + parts.out_channels),
                         gan_loss, **kwargs)
    labels = LabelSpec(label_nc, None if dont_care == -1 else dont_care, instance_maps, palette)
    condition = label_channels(label_nc, instances=instance_maps)
    encoder = parts.component("encoder", in_channels=parts.out_channels) if parts.has("encoder") else None
    if encoder is not None and not isinstance(encoder, FeatureEncoder):
        raise ValueError(f"Expected the [encoder] to be a FeatureEncoder, got {type(encoder).__name__}")
    feat_num = encoder.feat_num if encoder is not None else 0
    return Pix2PixHD(
        parts.generator(in_channels=condition + feat_num),
        parts.discriminator(in_channels=condition + parts.out_channels),
        gan_loss, labels=labels, encoder=encoder, **kwargs,
    )
