"""FID and KID: distances between the Inception features of generated and real images.

FID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500) fits one Gaussian to each set of
features and gives the Fréchet distance between them. KID (Bińkowski et al. 2018,
https://arxiv.org/abs/1801.01401) is the unbiased estimate of the squared maximum mean discrepancy
with the polynomial kernel `k(x, y) = (x·y / d + 1)³`, averaged over random subsets.

The network is the "FID Inception" of pytorch-fid (https://github.com/mseitzer/pytorch-fid), the
TensorFlow graph that the published FID numbers come from, ported to PyTorch. It is torchvision's
Inception v3 with a 1008-class head and four differences in the pooling branch of its blocks, because
TensorFlow's pooling differs from PyTorch's:

- Mixed_5b-5d (A blocks), Mixed_6b-6e (C blocks) and Mixed_7b (first E block) average without the
  padding: TensorFlow divides by the number of pixels inside the image (`count_include_pad=False`);
- Mixed_7c (second E block) takes the maximum instead of the mean in its pooling branch.

The weights are the file `pt_inception-2015-12-05-6726825d.pth`, read from a local path only
(`load_fid_inception`); nothing is downloaded. Its tensor names are those of torchvision's
`Inception3(num_classes=1008, aux_logits=False)`, which is why `FIDInception` keeps torchvision's
attribute names.

Protocol (pytorch-fid's): images in [0, 1], grey ones repeated to three channels, resized to
299 × 299 (bilinear, `align_corners=False`, no antialiasing), scaled to [-1, 1]; the 2048 features
are the global average pool after Mixed_7c ("pool3"). The statistics are torchmetrics' (the optional
extra `metrics`, imported when `FIDKID` is made): `FrechetInceptionDistance` and
`KernelInceptionDistance` with a pass-through feature extractor, so each image goes through the
network once and both metrics share its features, accumulated in float64. docs/metrics.md gives the
whole protocol and how to read the numbers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from translate_kit.errors import DataError, OptionError
from translate_kit.eval.weights import check_tensors, locate_weights, read_state_dict, sha256

__all__ = [
    "FIDInception",
    "FIDInceptionA",
    "FIDInceptionC",
    "FIDInceptionE",
    "FIDKID",
    "FIDKIDScore",
    "FID_WEIGHTS_ENV",
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_URL",
    "fid_kid",
    "fid_weights_path",
    "load_fid_inception",
]

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
FID_WEIGHTS_ENV = "TRANSLATE_KIT_FID_WEIGHTS"
INPUT_SIZE = 299  # the side every image is resized to, as in pytorch-fid


# --------------------------------------------------------------------------------------------------
# blocks: torchvision's, with TensorFlow's pooling


def _avg_pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 "SAME" average divides by the pixels inside the image, not by 9 at the borders.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    """torchvision's `InceptionA` (Mixed_5b-5d) whose pooling branch averages without the padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = self.branch_pool(_avg_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, pooled], dim=1)


class FIDInceptionC(InceptionC):
    """torchvision's `InceptionC` (Mixed_6b-6e) whose pooling branch averages without the padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        pooled = self.branch_pool(_avg_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, pooled], dim=1)


class FIDInceptionE(InceptionE):
    """torchvision's `InceptionE` with the FID network's pooling branch.

    Args:
        in_channels: input channels (1280 for Mixed_7b, 2048 for Mixed_7c).
        pool: "avg", a 3x3 average without the padding (Mixed_7b, pytorch-fid's `FIDInceptionE_1`),
            or "max", a 3x3 maximum (Mixed_7c, pytorch-fid's `FIDInceptionE_2`).
    """

    def __init__(self, in_channels: int, *, pool: Literal["avg", "max"]) -> None:
        if pool not in ("avg", "max"):
            raise ValueError(f"Expected pool 'avg' or 'max', got {pool!r}")
        super().__init__(in_channels)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_without_padding(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(branch3x3),
                self.branch3x3_2b(branch3x3),
                self.branch3x3dbl_3a(branch3x3dbl),
                self.branch3x3dbl_3b(branch3x3dbl),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


# --------------------------------------------------------------------------------------------------
# the network


class FIDInception(nn.Module):
    """The FID Inception v3: `(B, 1 or 3, H, W)` images in [0, 1] to `(B, 2048)` pool3 features.

    It resizes and normalises its input itself (pytorch-fid's protocol), so it can also be given to
    torchmetrics as a custom extractor: `FrechetInceptionDistance(feature=net, normalize=True)`
    (torchmetrics reads `num_features` and passes the images as they are). It stays in eval mode
    (`train()` changes nothing): batch statistics would make a score depend on the batch. The
    1008-class head `fc` is never run; it is kept so that the weights file loads as it is.

    Attributes:
        num_features: 2048.
        weights_file: the name of the file the weights came from ("" for fresh weights).
        weights_sha256: that file's SHA-256 ("" for fresh weights).

    Example:
        >>> net = FIDInception()  # fresh weights: for shapes only; load_fid_inception(path) for scores
        >>> sum(p.numel() for p in net.parameters())
        23850960
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        # Attribute names are torchvision's Inception3's: the weights file uses them.
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)  # the TensorFlow graph's ImageNet head (1008 classes); unused
        self.weights_file = ""
        self.weights_sha256 = ""
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FIDInception:
        """Stay in eval mode whatever `mode` says (a measuring instrument, not a model to train)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features of `images`, `(B, 1 or 3, H, W)` floats in [0, 1]; returns `(B, 2048)`."""
        if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            raise ValueError(
                f"Expected float images of shape (B, 1 or 3, H, W) in [0, 1], got {images.dtype} of shape "
                f"{tuple(images.shape)}" + ("" if images.is_floating_point() else " (divide uint8 images by 255)")
            )
        lo, hi = (v.item() for v in torch.aminmax(images))
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(f"Expected image values in [0, 1], got min {lo:.6g}, max {hi:.6g}")
        x = images.to(self.fc.weight.dtype).expand(-1, 3, -1, -1)  # grey: the same plane three times
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        with torch.autocast(x.device.type, enabled=False):  # the protocol's float32, inside mixed precision too
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                          self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
                x = block(x)
            return x.mean(dim=(2, 3))  # global average pool: pool3


# --------------------------------------------------------------------------------------------------
# the weights file


def _how_to_get_it() -> str:
    return (
        f"FID and KID need pytorch-fid's Inception weights, the file {FID_WEIGHTS_NAME}; translate-kit never "
        f"downloads it. Download it once from {FID_WEIGHTS_URL} and pass its path with `tkit eval --fid-weights "
        f"PATH`, the environment variable {FID_WEIGHTS_ENV}, or the recipe key train.eval_fid_weights."
    )


def fid_weights_path(path: str | os.PathLike[str] | None = None, *, fallback: str | os.PathLike[str] = "") -> Path:
    """The FID weights file to read: `path`, else `$TRANSLATE_KIT_FID_WEIGHTS`, else `fallback`
    (a recipe's `train.eval_fid_weights`), the first that is set; it must exist.

    Raises:
        OptionError: none is set.
        CheckpointError: the file does not exist.
    """
    candidates = ((path, "given"), (os.environ.get(FID_WEIGHTS_ENV), f"from {FID_WEIGHTS_ENV}"),
                  (fallback, "from the recipe's train.eval_fid_weights"))
    return locate_weights(candidates, what="FID weights file", how_to_get=_how_to_get_it())


def _check_tensors(state: Mapping[str, Any], expected: Mapping[str, torch.Tensor], file: Path | None) -> None:
    """Raise CheckpointError unless `state` has exactly the expected tensor names and shapes.
    BatchNorm's `num_batches_tracked` counters are left out: files differ in them and eval mode
    never reads them."""
    check_tensors(state, expected, file, what="the FID Inception weights file",
                  layout="torchvision's Inception3(num_classes=1008, aux_logits=False) with pytorch-fid's names",
                  how_to_get=_how_to_get_it(), ignore=lambda name: name.endswith("num_batches_tracked"))


def load_fid_inception(
    path: str | os.PathLike[str] | None = None,
    *,
    fallback: str | os.PathLike[str] = "",
    device: str | torch.device = "cpu",
) -> FIDInception:
    """The FID Inception with the weights of a local `pt_inception-2015-12-05-6726825d.pth`.

    Args:
        path: the weights file; None or "": `$TRANSLATE_KIT_FID_WEIGHTS`, then `fallback`.
        fallback: used when neither is set (a recipe's `train.eval_fid_weights`).
        device: where the network goes.

    Returns:
        The network in eval mode with no gradients, its `weights_file` and `weights_sha256` set.

    Raises:
        OptionError: no path given anywhere.
        CheckpointError: the file is missing, unreadable, or holds other tensors than the network's.
    """
    file = fid_weights_path(path, fallback=fallback)
    state = read_state_dict(file, how_to_get=_how_to_get_it())
    net = FIDInception()
    _check_tensors(state, net.state_dict(), file)
    net.load_state_dict({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, strict=False)
    net.weights_file, net.weights_sha256 = file.name, sha256(file)
    return net.to(device)


# --------------------------------------------------------------------------------------------------
# statistics


@dataclass(frozen=True, slots=True)
class FIDKIDScore:
    """FID and KID of one comparison (keys of the `inception` object of `tkit eval --json`).

    Attributes:
        fid: Fréchet distance between the Gaussians fitted to the two sets of features.
        kid_mean: KID, the mean over subsets of the unbiased MMD² estimate (can be slightly negative).
        kid_std: standard deviation of the per-subset estimates (population formula).
        generated_images: images in the generated set.
        real_images: images in the real set.
        kid_subsets: subsets drawn.
        kid_subset_size: images per subset, from each set.
    """

    fid: float
    kid_mean: float
    kid_std: float
    generated_images: int
    real_images: int
    kid_subsets: int
    kid_subset_size: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class _GivenFeatures(nn.Module):
    """The "extractor" torchmetrics calls: features are computed once, by `FIDKID`, and both metrics
    receive them as they are (float64, so torchmetrics also returns FID in float64)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _torchmetrics() -> tuple[type, type]:
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError:
        raise OptionError(
            "FID and KID need the optional package torchmetrics, which is not installed; install it with "
            "`pip install 'translate-kit[metrics]'`."
        ) from None
    return FrechetInceptionDistance, KernelInceptionDistance


class FIDKID:
    """Streaming FID and KID between generated and real images, batch by batch.

    Each batch goes through `network` once; torchmetrics' `FrechetInceptionDistance` (running sums
    and outer products, float64) and `KernelInceptionDistance` (the features themselves, float64:
    2048 × 8 bytes per image) share the features. KID draws `kid_subsets` subsets of
    `min(kid_subset_size, generated, real)` images from each set with the generator seeded by `seed`,
    so the same images give the same numbers.

    Args:
        network: images to `(B, num_features)` features, with a `num_features` attribute:
            a `FIDInception` from `load_fid_inception`, or any such module (tests use an identity).
        kid_subsets: subsets for KID (torch-fidelity's and torchmetrics' 100).
        kid_subset_size: images per subset before the cap (their 1000).
        seed: seed of the subset draws.

    Raises:
        OptionError: torchmetrics is not installed.

    Example:
        >>> net = nn.Flatten()  # an identity on (B, 3, 1, 1) "images": the features are the pixels
        >>> net.num_features = 3
        >>> metric = FIDKID(net)
        >>> g = torch.Generator().manual_seed(0)
        >>> metric.update(torch.rand(50, 3, 1, 1, generator=g), real=True)
        >>> metric.update(torch.rand(50, 3, 1, 1, generator=g) + 5, real=False)
        >>> score = metric.compute()
        >>> round(score.fid), score.kid_subset_size  # means 5 apart in 3 dimensions: 3 * 5**2
        (75, 50)
    """

    def __init__(self, network: nn.Module, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
                 seed: int = 0) -> None:
        num_features = getattr(network, "num_features", None)
        if not isinstance(num_features, int):
            raise TypeError(f"Expected a network with an int attribute num_features, got {type(network).__name__}")
        if kid_subsets < 1 or kid_subset_size < 2:
            raise ValueError(f"Expected kid_subsets >= 1 and kid_subset_size >= 2, got {kid_subsets}, {kid_subset_size}")
        frechet, kernel = _torchmetrics()
        self.network = network
        self.kid_subsets, self.kid_subset_size, self.seed = kid_subsets, kid_subset_size, seed
        # No gathering across processes: under torchrun every rank scores the whole split itself
        # (validation), so a gather would count each image once per rank, and would be a
        # collective call the other ranks might not make.
        local = {"sync_on_compute": False, "distributed_available_fn": lambda: False}
        self._fid = frechet(feature=_GivenFeatures(num_features), **local)
        with warnings.catch_warnings():  # "will save all extracted features": known, and what KID needs
            warnings.filterwarnings("ignore", message=".*extracted features", category=UserWarning)
            self._kid = kernel(feature=_GivenFeatures(num_features), subsets=kid_subsets,
                               subset_size=kid_subset_size, **local)
        self.counts = {False: 0, True: 0}  # real? -> images seen

    def update(self, images: torch.Tensor, *, real: bool) -> None:
        """Add a batch `(B, C, H, W)` of generated (`real=False`) or real images, as the network takes
        them (for `FIDInception`: floats in [0, 1], 1 or 3 channels, any size)."""
        device = next(iter(self.network.parameters()), images).device
        with torch.no_grad():
            features = self.network(images.to(device)).to("cpu", torch.float64)
        self._fid.update(features, real=real)
        self._kid.update(features, real=real)
        self.counts[real] += len(features)

    def compute(self) -> FIDKIDScore:
        """FID and KID of everything added.

        Raises:
            DataError: fewer than 2 generated or 2 real images (no covariance, no unbiased MMD).
        """
        generated, real = self.counts[False], self.counts[True]
        if min(generated, real) < 2:
            raise DataError(
                f"FID and KID need at least 2 generated and 2 real images, got {generated} and {real}; "
                "evaluate more images."
            )
        fid = float(self._fid.compute())
        size = min(self.kid_subset_size, generated, real)
        self._kid.subset_size = size
        with torch.random.fork_rng(devices=[]):  # KID draws its subsets with torch's global generator
            torch.manual_seed(self.seed)
            kid_mean, kid_std = (float(v) for v in self._kid.compute())
        return FIDKIDScore(fid, kid_mean, kid_std, generated, real, self.kid_subsets, size)


def fid_kid(
    generated: Iterable[torch.Tensor],
    real: Iterable[torch.Tensor],
    *,
    network: nn.Module,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> FIDKIDScore:
    """FID and KID between two sets of images, read one batch at a time.

    Args:
        generated: batches `(B, C, H, W)` or single images `(C, H, W)`, floats in [0, 1].
        real: the same for the real images; the two sets may differ in size.
        network: a `FIDInception` (`load_fid_inception(path)`) or another module with `num_features`.
        kid_subsets, kid_subset_size, seed: see `FIDKID`.

    Returns:
        A `FIDKIDScore`.

    Example (with real weights):
        >>> net = load_fid_inception("pt_inception-2015-12-05-6726825d.pth")  # doctest: +SKIP
        >>> fid_kid(generated_batches, real_batches, network=net).fid  # doctest: +SKIP
    """
    metric = FIDKID(network, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
    for images, is_real in ((generated, False), (real, True)):
        for batch in images:
            metric.update(batch if batch.ndim == 4 else batch.unsqueeze(0), real=is_real)
    return metric.compute()
