"""SPADE / GauGAN networks (Park et al., "Semantic Image Synthesis with Spatially-Adaptive
Normalization", CVPR 2019, https://arxiv.org/abs/1903.07291): generator, image encoder and
multiscale discriminator.

- ``SPADE``: a normalisation without learned affine parameters (batch or instance statistics),
  then a per-pixel scale and shift computed from the label map, nearest-resized to the feature
  map: ``out = norm(x) * (1 + gamma(m)) + beta(m)``, where ``gamma`` and ``beta`` are two
  convolutions on a shared convolution + ReLU (128 hidden channels) over the map ``m``.
- ``SPADEResBlock``: two stages of SPADE, LeakyReLU(0.2) and a 3x3 convolution (the middle width is
  ``min(fin, fout)``), plus a shortcut; where the width changes the shortcut is learned (SPADE and
  a 1x1 convolution without bias). Spectral norm on the block's convolutions when asked.
- ``SPADEGenerator``: a 16·ngf feature map at low resolution, made from the label map
  (nearest-downsampled, then a 3x3 convolution ``fc``) or, in VAE mode, from a latent code z
  (a linear ``fc``: z_dim -> 16·ngf·sh·sw); then ``head_0``, ``G_middle_0``, ``G_middle_1``,
  ``up_0`` .. ``up_3`` (16, 16, 16, 8, 4, 2, 1 x ngf) with a nearest x2 up-sampling before each
  block but ``head_0`` and ``G_middle_1``; ``num_upsampling_layers = "more"`` adds an
  up-sampling before ``G_middle_1``, ``"most"`` also one more block ``up_4`` (ngf/2) after a last
  up-sampling; LeakyReLU(0.2), a 3x3 ``conv_img`` and tanh. So the output is 2^5, 2^6 or 2^7 times
  the starting map.
- ``ConvEncoder``: six stride-2 3x3 convolutions (ndf, 2, 4, 8, 8, 8 x ndf) with instance norm
  and LeakyReLU(0.2) on the image resized to 256x256, then ``fc_mu`` and ``fc_var`` from the 4x4
  map to z_dim: the posterior q(z | image) for multimodal and reference-style synthesis.
- ``SPADEMultiscaleDiscriminator``: ``num_d`` PatchGANs (``SPADEPatchDiscriminator``) on the
  (label map, image) pair at full, 1/2 ... resolution, with spectral norm and instance norm.

Module and parameter names follow the reference code's (``fc``, ``head_0``, ``norm_0.mlp_shared``,
``conv_s``, ...), so that the official generators convert by renaming spectral norm's keys only
(``spade_import``). Layer layouts, the hidden width 128, z_dim 256 and the initialisation (Xavier
normal with gain 0.02, biases 0) are the reference's.

**Spectral norm** is ``torch.nn.utils.parametrizations.spectral_norm``: a parametrised weight
stored as ``<conv>.parametrizations.weight.original`` with the power-iteration vectors ``...0._u``
and ``...0._v``. One power iteration runs at each forward in training mode; in eval mode the
stored vectors are used as they are. (The reference uses the older hook-based
``torch.nn.utils.spectral_norm``, keys ``weight_orig``, ``weight_u``, ``weight_v``; the two give
the same weight from the same vectors.)

**The label map** is a float tensor ``(B, semantic_nc, H, W)``: the one-hot classes (``label_nc``
channels, one more for a don't-care class) and, when instance maps are used, their boundary map as
one more channel; that count is the reference's ``semantic_nc``. The registered factories call it
``in_channels`` (the generator contract's name); the method fixes it from its data.

API for a training method (the SPADE method: hinge loss, feature matching, VGG, KLD, TTUR):

- ``G = spade_generator(in_channels=semantic_nc, ...)``; ``G(seg)`` or, in VAE mode,
  ``G(seg, z)`` -> image ``(B, 3, H, W)`` in (-1, 1) (z ``(B, z_dim)``; sampled from N(0, I) when
  omitted).
- ``E = spade_encoder(...)`` (kind ``encoder``); ``mu, logvar = E(image)`` (or ``E.encode``);
  ``z = reparameterize(mu, logvar)``. The reference's KL term is
  ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))`` (a sum, weighted 0.05).
- ``D = spade_multiscale(in_channels=semantic_nc + 3, ...)``; ``D(pair)`` -> one logit map per
  scale; ``D(pair, return_features=True)`` -> ``(logits, features)`` with ``features[k]`` scale
  k's ``n_layers`` intermediate outputs, as pix2pixHD's multiscale D returns them. The reference's
  feature-matching weight (lambda / num_D per layer) is what ``pix2pixhd.feature_matching_loss``
  computes when a scale has four feature maps (its 4 / n_features factor is then 1): the default
  ``n_layers = 4``.

Example:
    >>> import torch
    >>> g = spade_generator(in_channels=4, ngf=2, spade_hidden=8)
    >>> g(torch.rand(1, 4, 64, 32)).shape
    torch.Size([1, 3, 64, 32])
    >>> mu, logvar = spade_encoder(ndf=2, input_size=128)(torch.rand(2, 3, 40, 40))
    >>> mu.shape, logvar.shape
    (torch.Size([2, 256]), torch.Size([2, 256]))
    >>> d = spade_multiscale(in_channels=7, ndf=4)
    >>> [tuple(p.shape) for p in d(torch.rand(1, 7, 64, 64))]
    [(1, 1, 11, 11), (1, 1, 7, 7)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from translate_kit_plugins.label_maps import label_channels, label_input, labels_from_image
from translate_kit_plugins.patchgan import receptive_field

from translate_kit.api import (
    MULTISCALE_LOGITS,
    BatchSpec,
    ComponentRef,
    DataError,
    GANLossName,
    InputSpec,
    LossOptions,
    Method,
    Norm,
    OptimizerSettings,
    OptionsOf,
    PairedJitter,
    Palette,
    Parts,
    RecipeError,
    StepContext,
    TrainingError,
    encode_palette,
    frozen,
    make_norm,
    register,
    register_discriminator,
    register_generator,
    register_method,
    to_unit_range,
    unwrap,
)

__all__ = [
    "SPADE",
    "ConvEncoder",
    "SPADEGenerator",
    "SPADEMultiscaleDiscriminator",
    "SPADENorm",
    "SPADEPatchDiscriminator",
    "SPADEMethod",
    "SPADEResBlock",
    "UpsamplingLayers",
    "kl_divergence",
    "reparameterize",
    "spade",
    "spade_encoder",
    "spade_feature_matching",
    "spade_generator",
    "spade_multiscale",
    "up_samplings",
]

# The parameter-free normalisation inside SPADE. "syncbatch" is the reference's default; in one
# process it is batch norm, and across processes the trainer synchronises batch norm
# (train.sync_batchnorm, on by default), so it builds the same layer as "batch".
SPADENorm = Literal["syncbatch", "batch", "instance"]
UpsamplingLayers = Literal["normal", "more", "most"]

_UP_SAMPLINGS = {"normal": 5, "more": 6, "most": 7}
_INIT_GAIN = 0.02  # the reference's --init_type xavier --init_variance 0.02
_LRELU = 0.2
_D_MAX_WIDTH = 512  # the discriminator's widths double per layer and stop at 512
_ENCODER_LAYERS = 6  # stride-2 convolutions of the image encoder


def up_samplings(num_upsampling_layers: str) -> int:
    """How many x2 up-samplings the generator makes: 5 ("normal"), 6 ("more") or 7 ("most").

    Example:
        >>> up_samplings("more")
        6
    """
    if num_upsampling_layers not in _UP_SAMPLINGS:
        raise ValueError(f"Expected num_upsampling_layers 'normal', 'more' or 'most', got {num_upsampling_layers!r}")
    return _UP_SAMPLINGS[num_upsampling_layers]


def _xavier(layer: nn.Conv2d | nn.Linear) -> nn.Conv2d | nn.Linear:
    """The reference's initialisation: Xavier-normal weights with gain 0.02, zero bias."""
    nn.init.xavier_normal_(layer.weight, gain=_INIT_GAIN)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _conv(
    cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int | None = None, bias: bool = True,
    spectral: bool = False,
) -> nn.Conv2d:
    """A convolution initialised as the reference's, then spectrally normalised if asked (so the
    power-iteration vectors start from the initialised weight)."""
    conv = _xavier(nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if padding is None else padding, bias=bias))
    return spectral_norm(conv) if spectral else conv


def _param_free_norm(norm: str, channels: int) -> nn.Module:
    if norm in ("batch", "syncbatch"):
        return nn.BatchNorm2d(channels, affine=False)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"Expected norm 'syncbatch', 'batch' or 'instance', got {norm!r}")


def _check_positive(**values: int) -> None:
    bad = {k: v for k, v in values.items() if v < 1}
    if bad:
        raise ValueError(f"Expected {', '.join(values)} >= 1, got {', '.join(f'{k}={v}' for k, v in bad.items())}")


# --- SPADE and its residual block ---------------------------------------------------------------


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``norm(x) * (1 + gamma(m)) + beta(m)``.

    Args:
        channels: feature maps of ``x`` (the reference's ``norm_nc``).
        semantic_nc: channels of the label map ``m``.
        norm: the parameter-free normalisation: "syncbatch" / "batch" (batch statistics, running
            averages for eval mode) or "instance".
        kernel_size: of the three convolutions (3 in the paper; odd).
        hidden: channels of the shared convolution (128 in the reference).

    Submodules (the reference's names): ``param_free_norm``, ``mlp_shared`` (conv + ReLU),
    ``mlp_gamma``, ``mlp_beta``.

    Shape:
        x (B, channels, H, W), m (B, semantic_nc, H', W') -> (B, channels, H, W); ``m`` is resized
        to (H, W) with nearest neighbour.
    """

    def __init__(
        self, channels: int, semantic_nc: int, *, norm: SPADENorm = "syncbatch", kernel_size: int = 3,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        _check_positive(channels=channels, semantic_nc=semantic_nc, hidden=hidden)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Expected an odd kernel_size >= 1, got {kernel_size}")
        self.param_free_norm = _param_free_norm(norm, channels)
        self.mlp_shared = nn.Sequential(_conv(semantic_nc, hidden, kernel_size), nn.ReLU())
        self.mlp_gamma = _conv(hidden, channels, kernel_size)
        self.mlp_beta = _conv(hidden, channels, kernel_size)

    def modulation(self, seg: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma and beta, (B, channels, *size), from the label map nearest-resized to `size`."""
        hidden = self.mlp_shared(F.interpolate(seg, size=size, mode="nearest"))
        return self.mlp_gamma(hidden), self.mlp_beta(hidden)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.modulation(seg, (x.shape[-2], x.shape[-1]))
        return self.param_free_norm(x) * (1 + gamma) + beta


class SPADEResBlock(nn.Module):
    """SPADE residual block: ``shortcut(x) + conv_1(act(norm_1(conv_0(act(norm_0(x, m))), m)))``.

    ``act`` is LeakyReLU(0.2); ``conv_0`` maps fin -> min(fin, fout), ``conv_1`` -> fout (3x3, with
    bias). Where fin != fout the shortcut is learned: ``conv_s(norm_s(x, m))``, a 1x1 convolution
    without bias; otherwise it is the identity.

    Args:
        fin: input feature maps.
        fout: output feature maps.
        semantic_nc: channels of the label map.
        norm: SPADE's parameter-free normalisation.
        spectral: spectral norm on conv_0, conv_1 and conv_s (the reference's "spectral..." norm_G).
        kernel_size: SPADE's convolutions.
        hidden: SPADE's shared channels.

    Attributes:
        learned_shortcut: fin != fout.
    """

    def __init__(
        self, fin: int, fout: int, semantic_nc: int, *, norm: SPADENorm = "syncbatch", spectral: bool = True,
        kernel_size: int = 3, hidden: int = 128,
    ) -> None:
        super().__init__()
        _check_positive(fin=fin, fout=fout)
        self.learned_shortcut = fin != fout
        middle = min(fin, fout)
        spade = {"norm": norm, "kernel_size": kernel_size, "hidden": hidden}
        self.conv_0 = _conv(fin, middle, 3, spectral=spectral)
        self.conv_1 = _conv(middle, fout, 3, spectral=spectral)
        self.norm_0 = SPADE(fin, semantic_nc, **spade)
        self.norm_1 = SPADE(middle, semantic_nc, **spade)
        if self.learned_shortcut:
            self.conv_s = _conv(fin, fout, 1, bias=False, spectral=spectral)
            self.norm_s = SPADE(fin, semantic_nc, **spade)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), _LRELU))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), _LRELU))
        return shortcut + dx


# --- generator ----------------------------------------------------------------------------------


class SPADEGenerator(nn.Module):
    """SPADE's generator (see the module docstring for the layout).

    Without VAE the starting map is the label map nearest-downsampled by 2^num_up, so any H, W that
    are multiples of 2^num_up work (at the training crop this is the reference's sh x sw). In VAE
    mode the linear ``fc`` fixes the starting map at sh x sw, sw = crop_size // 2^num_up,
    sh = round(sw / aspect_ratio), so the label map must be (sh·2^num_up) x (sw·2^num_up).

    Args:
        semantic_nc: channels of the label map (label_nc, +1 don't-care, +1 instance boundaries).
        out_channels: image channels (3).
        ngf: width unit (64): 16·ngf at the start, ngf after ``up_3``.
        num_upsampling_layers: "normal" (5 up-samplings), "more" (6) or "most" (7, and ``up_4``).
        crop_size: image width at training (the VAE's starting map; 256, Cityscapes 512).
        aspect_ratio: width / height at training (1, Cityscapes 2).
        use_vae: start from z (``fc`` linear) instead of the label map (``fc`` a 3x3 convolution).
        z_dim: latent size in VAE mode (256).
        norm: SPADE's parameter-free normalisation ("syncbatch", the reference's).
        spectral: spectral norm on the residual blocks' convolutions (the reference's).
        spade_kernel: SPADE's kernel size (3).
        spade_hidden: SPADE's shared channels (128).

    Attributes:
        size_multiple: 2^num_up (``SizeConstrained``); min_size the same, twice that with instance
            norm (whose statistics need a starting map of more than one pixel).
        num_up: up-samplings.
        latent_size: (sh, sw), the starting map at the training crop.
        image_size: (sh·2^num_up, sw·2^num_up), the output size at the training crop (VAE mode: always).

    Raises:
        ValueError: an argument is out of range, or crop_size / aspect_ratio leave no starting map.
    """

    def __init__(
        self, semantic_nc: int, *, out_channels: int = 3, ngf: int = 64,
        num_upsampling_layers: UpsamplingLayers = "normal", crop_size: int = 256, aspect_ratio: float = 1.0,
        use_vae: bool = False, z_dim: int = 256, norm: SPADENorm = "syncbatch", spectral: bool = True,
        spade_kernel: int = 3, spade_hidden: int = 128,
    ) -> None:
        super().__init__()
        _check_positive(semantic_nc=semantic_nc, out_channels=out_channels, ngf=ngf, z_dim=z_dim)
        self.num_up = up_samplings(num_upsampling_layers)
        if aspect_ratio <= 0:
            raise ValueError(f"Expected aspect_ratio > 0, got {aspect_ratio}")
        sw = crop_size // 2**self.num_up
        sh = round(sw / aspect_ratio)
        if min(sw, sh) < 1:
            raise ValueError(
                f"Expected crop_size >= {2**self.num_up} and crop_size / aspect_ratio >= {2**self.num_up} for "
                f"num_upsampling_layers {num_upsampling_layers!r} (a starting map of at least 1x1), got crop_size "
                f"{crop_size} and aspect_ratio {aspect_ratio}"
            )
        self.semantic_nc, self.out_channels, self.ngf = semantic_nc, out_channels, ngf
        self.num_upsampling_layers = num_upsampling_layers
        self.use_vae, self.z_dim = use_vae, z_dim
        self.latent_size = (sh, sw)
        self.image_size = (sh * 2**self.num_up, sw * 2**self.num_up)
        self.size_multiple = 2**self.num_up
        # Instance statistics need more than one pixel: the starting map must be larger than 1x1.
        self.min_size = 2 * self.size_multiple if norm == "instance" else self.size_multiple
        if norm == "instance" and use_vae and sh * sw < 2:
            raise ValueError(
                f"Expected a VAE starting map of more than one pixel with instance norm, got {sh}x{sw} (crop_size "
                f"{crop_size}, aspect_ratio {aspect_ratio}); raise crop_size or use norm 'syncbatch'"
            )

        if use_vae:
            self.fc: nn.Module = _xavier(nn.Linear(z_dim, 16 * ngf * sh * sw))
        else:
            self.fc = _conv(semantic_nc, 16 * ngf, 3)

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, semantic_nc, norm=norm, spectral=spectral, kernel_size=spade_kernel,
                                 hidden=spade_hidden)

        self.head_0 = block(16 * ngf, 16 * ngf)
        self.G_middle_0 = block(16 * ngf, 16 * ngf)
        self.G_middle_1 = block(16 * ngf, 16 * ngf)
        self.up_0 = block(16 * ngf, 8 * ngf)
        self.up_1 = block(8 * ngf, 4 * ngf)
        self.up_2 = block(4 * ngf, 2 * ngf)
        self.up_3 = block(2 * ngf, ngf)
        final = ngf
        if num_upsampling_layers == "most":
            if ngf < 2:
                raise ValueError(f"Expected ngf >= 2 for num_upsampling_layers 'most' (up_4 has ngf // 2), got {ngf}")
            self.up_4 = block(ngf, ngf // 2)
            final = ngf // 2
        self.conv_img = _conv(final, out_channels, 3)

    def _check(self, seg: torch.Tensor, z: torch.Tensor | None) -> None:
        m = self.size_multiple
        if seg.ndim != 4 or seg.shape[1] != self.semantic_nc or seg.shape[-2] % m or seg.shape[-1] % m:
            raise ValueError(
                f"Expected a label map of shape (B, {self.semantic_nc}, H, W) with H, W divisible by {m}, "
                f"got {tuple(seg.shape)}"
            )
        if self.use_vae and tuple(seg.shape[-2:]) != self.image_size:
            raise ValueError(
                f"Expected a label map of shape (B, {self.semantic_nc}, {self.image_size[0]}, {self.image_size[1]}) in "
                f"VAE mode (the size crop_size and aspect_ratio fix), got {tuple(seg.shape)}"
            )
        if z is not None and not self.use_vae:
            raise ValueError("Expected no z: this generator starts from the label map (use_vae is false)")
        if z is not None and (z.ndim != 2 or z.shape[0] != seg.shape[0] or z.shape[1] != self.z_dim):
            raise ValueError(f"Expected z of shape ({seg.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")

    def forward(self, seg: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Synthesise images from label maps.

        Args:
            seg: label maps, (B, semantic_nc, H, W), H and W multiples of 2^num_up (VAE mode:
                exactly ``image_size``).
            z: VAE mode only: latent codes (B, z_dim); drawn from N(0, I) when omitted.

        Returns:
            Images (B, out_channels, H, W) in (-1, 1).
        """
        self._check(seg, z)
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.z_dim, device=seg.device, dtype=seg.dtype)
            x = self.fc(z).view(seg.shape[0], 16 * self.ngf, *self.latent_size)
        else:
            start = (seg.shape[-2] // self.size_multiple, seg.shape[-1] // self.size_multiple)
            x = self.fc(F.interpolate(seg, size=start, mode="nearest"))
        x = self.head_0(x, seg)
        x = self.G_middle_0(_up(x), seg)
        if self.num_upsampling_layers in ("more", "most"):
            x = _up(x)
        x = self.G_middle_1(x, seg)
        for block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(_up(x), seg)
        if self.num_upsampling_layers == "most":
            x = self.up_4(_up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, _LRELU)))


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


# --- image encoder ------------------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample of N(mu, exp(logvar)) differentiable in both: ``mu + eps * exp(logvar / 2)``.

    Example:
        >>> reparameterize(torch.zeros(2, 3), torch.full((2, 3), -1e4)).abs().max()  # variance ~ 0
        tensor(0.)
    """
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


class ConvEncoder(nn.Module):
    """SPADE's image encoder: the mean and log-variance of q(z | image).

    The image is resized (bilinear) to input_size x input_size, then six blocks of a stride-2 3x3
    convolution (ndf, 2, 4, 8, 8, 8 x ndf; spectral norm and no bias before a norm, as the
    reference's "spectralinstance"), the norm, LeakyReLU(0.2); ``fc_mu`` and ``fc_var`` are linear
    maps of the flattened (8·ndf, input_size/64, input_size/64) features to z_dim.

    Args:
        in_channels: image channels (3).
        ndf: width unit (the reference uses its ngf, 64).
        z_dim: latent size (256).
        input_size: the side every image is resized to (256: a 4x4 final map); a multiple of 64,
            at least 128 with instance norm (whose statistics need more than one pixel).
        norm: "instance" (the reference's), "batch" or "none".
        spectral: spectral norm on the six convolutions.

    Shape:
        (B, in_channels, H, W), any H and W -> mu, logvar, each (B, z_dim).
    """

    def __init__(
        self, *, in_channels: int = 3, ndf: int = 64, z_dim: int = 256, input_size: int = 256,
        norm: Norm = "instance", spectral: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, ndf=ndf, z_dim=z_dim)
        side = 2**_ENCODER_LAYERS
        least = 2 * side if norm == "instance" else side
        if input_size % side or input_size < least:
            raise ValueError(
                f"Expected input_size a multiple of {side} and >= {least} (norm {norm!r}), got {input_size}"
            )
        self.in_channels, self.z_dim, self.input_size = in_channels, z_dim, input_size
        widths = [in_channels] + [ndf * min(2**k, 8) for k in range(_ENCODER_LAYERS)]
        self.layers = nn.ModuleList(
            nn.Sequential(
                _conv(widths[k], widths[k + 1], 3, stride=2, bias=norm == "none", spectral=spectral),
                make_norm(norm, widths[k + 1]),
                nn.LeakyReLU(_LRELU),
            )
            for k in range(_ENCODER_LAYERS)
        )
        features = widths[-1] * (input_size // side) ** 2
        self.fc_mu = _xavier(nn.Linear(features, z_dim))
        self.fc_var = _xavier(nn.Linear(features, z_dim))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (B, z_dim), of images (B, in_channels, H, W) in [-1, 1]."""
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"Expected images of shape (B, {self.in_channels}, H, W), got {tuple(image.shape)}")
        x = image
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        for layer in self.layers:
            x = layer(x)
        x = x.flatten(1)
        return self.fc_mu(x), self.fc_var(x)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same as calling the encoder: (mu, logvar)."""
        return self(image)

    def sample(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z, mu, logvar): the codes of `image` with one reparameterised sample z."""
        mu, logvar = self(image)
        return reparameterize(mu, logvar), mu, logvar


# --- discriminator ------------------------------------------------------------------------------


class SPADEPatchDiscriminator(nn.Module):
    """SPADE's PatchGAN ("NLayerDiscriminator"): ``n_layers`` blocks, then a 1-channel logit map.

    Blocks: Conv4x4/2 ndf -> LeakyReLU(0.2); then for k = 1 .. n_layers-1: Conv4x4 (stride 2, the
    last stride 1) to min(ndf·2^k, 512) -> norm -> LeakyReLU(0.2), the convolution spectrally
    normalised and without bias when a norm follows; head Conv4x4/1 to 1 channel. Every 4x4
    convolution pads by 2. The first and last convolutions carry no spectral norm, as in the
    reference.

    Differences from pix2pix's ``PatchDiscriminator``: padding 2 (not 1), no bias before the norm,
    spectral norm, widths capped at 512 (not 8·ndf), and ``n_layers`` counts the blocks (SPADE's
    default 4 has pix2pix's ``n_layers = 3`` layout).

    Args:
        in_channels: channels of the (label map, image) pair.
        ndf: feature maps of the first convolution (64).
        n_layers: blocks before the head (4 in the reference, ``n_layers_D``).
        norm: "instance" (the reference's), "batch" or "none".
        spectral: spectral norm on the blocks' convolutions but the first.

    Attributes:
        receptive_field: input pixels (per side) one logit sees.
        min_size: 2 (instance norm needs two pixels in each normalised map).
    """

    def __init__(
        self, *, in_channels: int = 6, ndf: int = 64, n_layers: int = 4, norm: Norm = "instance", spectral: bool = True
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, ndf=ndf, n_layers=n_layers)
        self.in_channels, self.n_layers = in_channels, n_layers
        self.min_size, self.size_multiple = 2, 1
        blocks = [nn.Sequential(_conv(in_channels, ndf, 4, stride=2, padding=2), nn.LeakyReLU(_LRELU))]
        width = ndf
        for k in range(1, n_layers):
            previous, width = width, min(2 * width, _D_MAX_WIDTH)
            stride = 1 if k == n_layers - 1 else 2
            blocks.append(nn.Sequential(
                _conv(previous, width, 4, stride=stride, padding=2, bias=norm == "none", spectral=spectral),
                make_norm(norm, width),
                nn.LeakyReLU(_LRELU),
            ))
        self.blocks = nn.ModuleList(blocks)
        self.head = _conv(width, 1, 4, padding=2)
        self.receptive_field = receptive_field(self.modules())

    @overload
    def forward(self, x: torch.Tensor, return_features: Literal[False] = ...) -> torch.Tensor: ...

    @overload
    def forward(self, x: torch.Tensor, return_features: Literal[True]) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, 1, h, w); with `return_features`, also each block's output (n_layers tensors)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"Expected input of shape (B, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        logits = self.head(x)
        return (logits, features) if return_features else logits


class SPADEMultiscaleDiscriminator(nn.Module):
    """``num_d`` SPADE PatchGANs on the input at full, 1/2, 1/4 ... resolution (the reference's
    ``MultiscaleDiscriminator``): each scale is average-pooled from the last (3x3, stride 2,
    padding 1, padding not counted), as in pix2pixHD.

    Args:
        in_channels: channels of the (label map, image) pair.
        ndf: feature maps of each PatchGAN's first convolution (64).
        n_layers: blocks of each PatchGAN (4).
        num_d: scales (2 in the reference).
        norm: "instance" (the reference's "spectralinstance" with ``spectral``), "batch" or "none".
        spectral: spectral norm in each PatchGAN.

    Attributes:
        num_d: scales.
        min_size: 2^(num_d-1) + 1, so the coarsest scale sees at least 2 pixels.
        receptive_field: each scale's field in its own pixels.
    """

    def __init__(
        self, *, in_channels: int = 6, ndf: int = 64, n_layers: int = 4, num_d: int = 2, norm: Norm = "instance",
        spectral: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(num_d=num_d)
        self.in_channels, self.num_d = in_channels, num_d
        self.scales = nn.ModuleList(
            SPADEPatchDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm, spectral=spectral)
            for _ in range(num_d)
        )
        self.size_multiple = 1
        self.min_size = 2 ** (num_d - 1) + 1
        self.receptive_field = self.scales[0].receptive_field

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> list[torch.Tensor] | tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """Score the patches of `x` at every scale.

        Args:
            x: (label map, image) pairs concatenated along channels, (B, in_channels, H, W),
                H, W >= min_size.
            return_features: also return every scale's block outputs (for feature matching).

        Returns:
            One logit map (B, 1, h_k, w_k) per scale, full resolution first; with
            `return_features`, `(logits, features)` where `features[k]` holds scale k's n_layers
            block outputs.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"Expected input of shape (B, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        logits, features = [], []
        for k, d in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out, feats = d(x, return_features=True)
            logits.append(out)
            features.append(feats)
        return (logits, features) if return_features else logits


# --- registered factories -----------------------------------------------------------------------


@register_generator(tiny={"ngf": 2, "spade_hidden": 8})
def spade_generator(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, num_upsampling_layers: UpsamplingLayers = "normal",
    crop_size: int = 256, aspect_ratio: float = 1.0, use_vae: bool = False, z_dim: int = 256,
    norm: SPADENorm = "syncbatch", spectral: bool = True, spade_kernel: int = 3, spade_hidden: int = 128,
) -> SPADEGenerator:
    """SPADE's generator (GauGAN): label map -> image through SPADE residual blocks.

    Args:
        in_channels: channels of the label map, the reference's semantic_nc (label_nc, +1 for a
            don't-care class, +1 for instance boundaries); the SPADE method sets it.
        out_channels: image channels.
        ngf: width unit (64 in the paper).
        num_upsampling_layers: "normal" (5 x2 up-samplings: H, W multiples of 32), "more" (6, the
            reference's Cityscapes setting) or "most" (7, and a block up_4).
        crop_size: training image width; fixes the starting map of VAE mode.
        aspect_ratio: training width / height (Cityscapes 2). With `data.crop_size = [height,
            width]` these are `width` and `width / height` (Cityscapes: [256, 512] -> 512, 2); in
            VAE mode the SPADE method refuses a training crop of another size, without VAE the
            generator takes any multiple of 2^num_up and the two only document the setting.
        use_vae: start from a latent code z (with an image encoder) instead of the label map.
        z_dim: latent size (256).
        norm: SPADE's parameter-free norm: "syncbatch" (the reference's; batch norm synchronised
            across processes by the trainer), "batch" or "instance".
        spectral: spectral norm on the residual blocks' convolutions.
        spade_kernel: kernel size of SPADE's convolutions (3).
        spade_hidden: SPADE's shared channels (128 in the reference).
    """
    return SPADEGenerator(
        in_channels, out_channels=out_channels, ngf=ngf, num_upsampling_layers=num_upsampling_layers,
        crop_size=crop_size, aspect_ratio=aspect_ratio, use_vae=use_vae, z_dim=z_dim, norm=norm, spectral=spectral,
        spade_kernel=spade_kernel, spade_hidden=spade_hidden,
    )


@register("encoder", tiny={"ndf": 2, "input_size": 128})
def spade_encoder(
    *, in_channels: int = 3, ndf: int = 64, z_dim: int = 256, input_size: int = 256, norm: Norm = "instance",
    spectral: bool = True,
) -> ConvEncoder:
    """SPADE's image encoder: (mu, logvar) of z for multimodal and reference-style synthesis.

    Args:
        in_channels: image channels.
        ndf: width unit (64, the reference's ngf).
        z_dim: latent size (256; the generator's z_dim).
        input_size: the side images are resized to (256: a 4x4 final map).
        norm: "instance" (the reference's), "batch" or "none".
        spectral: spectral norm on the convolutions.
    """
    return ConvEncoder(in_channels=in_channels, ndf=ndf, z_dim=z_dim, input_size=input_size, norm=norm,
                       spectral=spectral)


@register_discriminator(output=MULTISCALE_LOGITS, tiny={"ndf": 4, "n_layers": 3})
def spade_multiscale(
    *, in_channels: int = 6, ndf: int = 64, n_layers: int = 4, num_d: int = 2, norm: Norm = "instance",
    spectral: bool = True,
) -> SPADEMultiscaleDiscriminator:
    """SPADE's multiscale discriminator: num_d spectral-instance-norm PatchGANs (n_layers 4, num_d 2).

    Args:
        in_channels: channels of the (label map, image) pair: semantic_nc + 3; the method sets it.
        ndf: feature maps of the first convolution (64).
        n_layers: blocks of each PatchGAN (the reference's n_layers_D, 4).
        num_d: scales (2).
        norm: "instance", "batch" or "none".
        spectral: spectral norm on the normalised convolutions.
    """
    return SPADEMultiscaleDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, num_d=num_d, norm=norm,
                                        spectral=spectral)


# --- the method ----------------------------------------------------------------------------------


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z | image) || N(0, I)) summed over the batch and the latent dimensions, as the
    reference's KLD loss (weighted by lambda_kld, 0.05): ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))``.

    Example:
        >>> kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)).item() == 0  # q is the prior
        True
        >>> round(kl_divergence(torch.ones(1, 2), torch.zeros(1, 2)).item(), 4)  # 0.5 * |mu|^2
        1.0
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def spade_feature_matching(
    real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]
) -> torch.Tensor:
    """SPADE's discriminator feature matching: the sum over scales and intermediate layers of
    mean|fake - real| / num_d, the real features detached (multiply by lambda_feat, 10).

    Example:
        >>> real = [[torch.zeros(1, 2, 2, 2)], [torch.zeros(1, 1, 1, 1)]]
        >>> spade_feature_matching(real, [[torch.ones(1, 2, 2, 2)], [torch.full((1, 1, 1, 1), 3.0)]])  # (1 + 3) / 2
        tensor(2.)
    """
    if len(real_features) != len(fake_features) or not real_features:
        raise ValueError(f"Expected the same non-zero number of scales, got {len(real_features)} and {len(fake_features)}")
    loss = torch.zeros((), device=fake_features[0][0].device)
    for real, fake in zip(real_features, fake_features):
        for r, f in zip(real, fake, strict=True):
            loss = loss + F.l1_loss(f.float(), r.detach().float()) / len(real_features)
    return loss


class SPADEMethod(Method):
    """SPADE / GauGAN training (Park et al. 2019): label map -> photo with hinge GAN, feature
    matching and VGG losses, and in VAE mode an image encoder with a KL term.

    One step is the reference's: first G (and E) against the frozen D, then D on a fresh fake
    from the updated G. D sees the (label map, image) pairs of fakes and reals in one batch, as the
    reference concatenates them, so its normalisation treats both alike.

    Args:
        generator: `G(seg)`, or `G(seg, z)` in VAE mode; seg `(B, semantic_nc, H, W)`.
        discriminator: a multiscale D on `(B, semantic_nc + C_out, H, W)` pairs that returns
            `(logits, features)` per scale with `return_features=True`.
        encoder: the image encoder (VAE mode) or None.
        gan_loss: an adversarial loss (hinge in the paper), averaged over D's scales.
        vgg_loss: the VGG perceptual loss, or None.
        label_nc: classes of the label maps; `instances`: one more channel, the instance
            boundaries; `dont_care`: the id of unlabelled pixels (all-zero class vectors), or None.
        palette: the classes' colours when label maps come as colour images (`data.palette`).
        lambda_fm, lambda_vgg, lambda_kld: the loss weights (paper: 10, 10, 0.05).
    """

    sample_mode = "eval"
    static_step = True  # the same kernels every step: one CUDA graph on a GPU (train.cuda_graphs)

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, encoder: nn.Module | None, gan_loss: nn.Module, *,
        vgg_loss: nn.Module | None, label_nc: int, instances: bool, dont_care: int | None, palette: Palette | None,
        lambda_fm: float, lambda_vgg: float, lambda_kld: float,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator, "D": discriminator})
        self.roles = {"G": "translate", "D": "adversary"}
        if encoder is not None:  # a translate network: inference encodes style images with it
            self.nets["E"] = encoder
            self.roles["E"] = "translate"
        self.gan_loss, self.vgg_loss = gan_loss, vgg_loss
        self.label_nc, self.instances, self.dont_care, self.palette = label_nc, instances, dont_care, palette
        self.lambda_fm, self.lambda_vgg, self.lambda_kld = lambda_fm, lambda_vgg, lambda_kld
        self.use_vae = bool(getattr(unwrap(generator), "use_vae", False))
        self._jitter: tuple[tuple[Any, ...], PairedJitter] | None = None
        self._style: torch.Tensor | None = None  # with_style: the reference image

    # -- the contract --------------------------------------------------------------------------

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G", "E"] if "E" in self.nets else ["G"], "D": ["D"]}

    def optimizer_defaults(self) -> dict[str, OptimizerSettings]:
        # TTUR (Heusel et al. 2017) as the reference sets it: G at half, D at twice the base 2e-4, Adam betas (0, 0.9).
        return {"G": OptimizerSettings(lr=1e-4, betas=(0.0, 0.9)), "D": OptimizerSettings(lr=4e-4, betas=(0.0, 0.9))}

    def input_spec(self, default: InputSpec) -> InputSpec:
        return dataclasses.replace(default, multimodal=self.use_vae, style_image="E" in self.nets)

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        """The photo `B` in [-1, 1]; the label map's ids as `labels` (and `instances`), cropped and
        flipped with it exactly; and `A`, the label map as an image in [-1, 1] (its palette
        colours, or the ids as grey levels), which sample pages, `tkit eval` and `translate` take."""
        label_keys = ("A", "instances") if "instances" in batch else ("A",)  # without instance maps: classes
        key = (spec.crop_size, spec.flip, label_keys)
        if self._jitter is None or self._jitter[0] != key:
            if spec.crop_size is not None:
                self._check_crop(spec.crop_hw)
            self._jitter = (key, PairedJitter(spec.crop_size, spec.flip, keys=("B",), label_keys=label_keys))
        out = self._jitter[1].prepare(batch, spec)
        out["labels"] = out["A"]
        out["A"] = self._label_image(out["A"])
        return out

    def _check_crop(self, crop: tuple[int, int]) -> None:
        """In VAE mode the generator's linear ``fc`` makes a starting map of one size only, which
        [generator] crop_size and aspect_ratio fix (the reference's sw = crop_size / 2^num_up,
        sh = sw / aspect_ratio): the training crop must be exactly the generator's image size.
        Without VAE the generator takes any multiple of 2^num_up, so the two need not agree."""
        generator = unwrap(self.nets["G"])
        size = tuple(getattr(generator, "image_size", crop))
        if self.use_vae and size != tuple(crop):
            height, width = crop
            num_up = getattr(generator, "num_up", 0)
            raise RecipeError(
                f"[data] crop_size [{height}, {width}] (height, width) differs from the {size[0]}x{size[1]} images the "
                f"VAE-mode SPADE generator makes ([generator] crop_size is the width and aspect_ratio the width / "
                f"height: width {size[1]}, height round({size[1]} / 2^{num_up} / aspect_ratio) x 2^{num_up} = "
                f"{size[0]}). Set [generator] crop_size = {width} and aspect_ratio = {width / height:g}, or make "
                f"data.crop_size [{size[0]}, {size[1]}]."
            )

    def _label_image(self, labels: torch.Tensor) -> torch.Tensor:
        if self.palette is None:
            return to_unit_range(labels.to(torch.uint8))
        ignore = self.dont_care if self.dont_care is not None else 255
        return to_unit_range(encode_palette(labels[:, 0].long(), self.palette, ignore_index=ignore))

    def _semantics(self, labels: torch.Tensor, instances: torch.Tensor | None) -> torch.Tensor:
        if self.instances and instances is None:  # no instance map given: each class region is one instance
            instances = labels
        try:
            return label_input(labels, self.label_nc, instances=instances if self.instances else None,
                               dont_care=self.dont_care)
        except ValueError as exc:  # ids the model has no class for: the data and [method] disagree
            dont_care = f"dont_care = {self.dont_care}" if self.dont_care is not None else "no dont_care"
            raise DataError(
                f"A label map holds ids this SPADE model has no class for ({exc}). The model has label_nc = "
                f"{self.label_nc} and {dont_care} ([method]); give label maps with those ids, or make [method] "
                "label_nc and dont_care those of [data]."
            ) from None

    def _discriminate(
        self, seg: torch.Tensor, fake: torch.Tensor, real: torch.Tensor, *, features: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        pairs = torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)], 0)
        if features:
            logits, feats = self.nets["D"](pairs, return_features=True)
        else:
            logits, feats = self.nets["D"](pairs), []
        n = fake.shape[0]
        return ([x[:n] for x in logits], [x[n:] for x in logits],
                [[f[:n] for f in scale] for scale in feats], [[f[n:] for f in scale] for scale in feats])

    def _fake(self, seg: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """G's output for `seg` and, in VAE mode, the KL term of the posterior of `real`."""
        if not self.use_vae:
            return self.nets["G"](seg), None
        if "E" not in self.nets:
            raise TrainingError("Training a SPADE generator in VAE mode needs the image encoder: add an [encoder] "
                                'table (name = "spade_encoder"). Without one the model only samples z at inference.')
        mu, logvar = self.nets["E"](real)
        return self.nets["G"](seg, reparameterize(mu, logvar)), kl_divergence(mu, logvar)

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        real = batch["B"]
        seg = self._semantics(batch["labels"], batch.get("instances")).to(real.dtype)
        if not real.is_contiguous() and real.is_contiguous(memory_format=torch.channels_last):
            seg = seg.contiguous(memory_format=torch.channels_last)  # as the batch (train.memory_format)

        # G (and E) against the frozen D.
        with frozen([self.nets["D"]]), ctx.autocast():
            fake, kld = self._fake(seg, real)
            pred_fake, _, feats_fake, feats_real = self._discriminate(seg, fake, real, features=True)
            loss_g_gan = self.gan_loss(pred_fake, target_is_real=True, for_discriminator=False)
            loss_g_fm = spade_feature_matching(feats_real, feats_fake)
            loss_g = loss_g_gan + self.lambda_fm * loss_g_fm
            scalars = {"loss_G_GAN": loss_g_gan.detach(), "loss_G_FM": loss_g_fm.detach()}
            if self.vgg_loss is not None:
                loss_g_vgg = self.vgg_loss(fake, real)
                loss_g = loss_g + self.lambda_vgg * loss_g_vgg
                scalars["loss_G_VGG"] = loss_g_vgg.detach()
            if kld is not None:
                loss_g = loss_g + self.lambda_kld * kld
                scalars["loss_G_KLD"] = kld.detach()
        ctx.update("G", loss_g)

        # D on a fresh fake from the updated G (and a fresh z), as the reference does.
        with torch.no_grad(), ctx.autocast():
            fake, _ = self._fake(seg, real)
        with ctx.autocast():
            pred_fake, pred_real, _, _ = self._discriminate(seg, fake.detach(), real, features=False)
            loss_d_fake = self.gan_loss(pred_fake, target_is_real=False, for_discriminator=True)
            loss_d_real = self.gan_loss(pred_real, target_is_real=True, for_discriminator=True)
        penalty = self.gan_loss.penalty(self.nets["D"], torch.cat([seg, real], 1), torch.cat([seg, fake], 1))
        ctx.update("D", loss_d_fake + loss_d_real + penalty)
        return {**scalars, "loss_D_real": loss_d_real.detach(), "loss_D_fake": loss_d_fake.detach()}

    # -- inference ------------------------------------------------------------------------------

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps as images in [-1, 1] (colour maps of the palette, or one-channel ids) ->
        photos. Without instance maps each class region is one instance. In VAE mode z is drawn
        from N(0, I) (seed the caller's random state for repeatable samples), or from the style
        image's posterior (`with_style`); the map is resized (nearest) to the generator's fixed
        size and the photo back to the map's size (bilinear)."""
        labels = labels_from_image(x.float(), palette=self.palette)
        seg = self._semantics(labels, None).to(x.dtype)
        if not self.use_vae:
            return self.nets["G"](seg)
        G = self.nets["G"]
        size = tuple(getattr(unwrap(G), "image_size", seg.shape[-2:]))
        z = None
        if self._style is not None:
            z = self.nets["E"](self._style)
            z = reparameterize(*z).expand(seg.shape[0], -1)
        resized = F.interpolate(seg, size=size, mode="nearest") if seg.shape[-2:] != size else seg
        out = G(resized, z)
        if out.shape[-2:] != seg.shape[-2:]:
            out = F.interpolate(out, size=seg.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def with_style(self, style: torch.Tensor) -> SPADEMethod:
        """This method, sharing its networks, drawing z from the posterior of `style` (one image
        `(1, 3, H, W)` in [-1, 1], any size: the encoder resizes it)."""
        if "E" not in self.nets:
            raise ValueError("This SPADE model has no image encoder, so it cannot follow a style image")
        return self.shared_copy(_style=style)


@register_method(tables={"generator": "generator", "discriminator": "discriminator", "encoder": "encoder"})
def spade(
    parts: Parts,
    /,
    *,
    label_nc: int = 0,
    instances: bool = False,
    dont_care: int = -1,
    use_vae: bool = False,
    lambda_fm: float = 10.0,
    lambda_vgg: float = 0.0,
    vgg_loss: Annotated[str, ComponentRef("loss")] = "vgg19",
    vgg_options: Annotated[dict[str, Any] | None, OptionsOf("vgg_loss")] = None,
    lambda_kld: float = 0.05,
    gan_mode: GANLossName = "hinge",
    gan_options: LossOptions = None,
) -> SPADEMethod:
    """SPADE / GauGAN (Park et al. 2019): semantic image synthesis from label maps.

    Args:
        parts: builds [generator], [discriminator] and, in VAE mode, [encoder].
        label_nc: classes; 0: the number of colours of `data.palette`.
        instances: feed instance boundaries as one more channel (`label_maps` with instances_dir;
            without instance maps, class boundaries).
        dont_care: the id of unlabelled pixels, as `data.dont_care`; -1: none.
        use_vae: multimodal: the generator starts from z; an [encoder] table's image encoder gives z
            in training (KL term, weight lambda_kld) and follows style images; translate samples z.
            Without an [encoder] the model can only translate (a converted official generator).
        lambda_fm: feature matching (paper: 10).
        lambda_vgg: the VGG19 loss (paper: 10). 0 (the default) builds no VGG: its ImageNet weights
            must come from a local file (`vgg_options = { weights = "vgg19-dcbb9e9d.pth" }`).
        vgg_loss, vgg_options: the perceptual loss and its options.
        lambda_kld: the KL term in VAE mode (paper: 0.05).
        gan_mode, gan_options: the adversarial loss (paper: hinge).
    """
    palette = parts.palette
    if label_nc == 0:
        if palette is None:
            raise ValueError("label_nc = 0 takes the class count from data.palette, which names none; set label_nc")
        label_nc = palette.num_classes
    if min(lambda_fm, lambda_vgg, lambda_kld) < 0:
        raise ValueError(f"Expected loss weights >= 0, got lambda_fm {lambda_fm}, lambda_vgg {lambda_vgg}, "
                         f"lambda_kld {lambda_kld}")
    # translate, sample pages and `tkit eval` hand the label map over as an image: a palette's colours
    # (3 channels) or the ids themselves (1 channel).
    channels = 3 if palette is not None else 1
    if parts.in_channels != channels:
        kind = "colour maps of data.palette" if palette is not None else "maps of class ids (no data.palette)"
        raise ValueError(f"label maps given as {kind} are {channels}-channel images: set data.in_channels = {channels}")
    semantic_nc = label_channels(label_nc, instances=instances)
    generator = parts.generator(in_channels=semantic_nc, **({"use_vae": True} if use_vae else {}))
    if bool(getattr(generator, "use_vae", False)) != use_vae:
        raise ValueError("[generator] use_vae = true needs [method] use_vae = true (an image encoder and the KL term)")
    discriminator = parts.discriminator(in_channels=semantic_nc + parts.out_channels)
    # Without an [encoder] a VAE generator samples z at inference only (a converted official model).
    encoder = None
    if use_vae and parts.has("encoder"):
        encoder = parts.component("encoder", in_channels=parts.out_channels, z_dim=generator.z_dim)
    perceptual = parts.loss(vgg_loss, **(vgg_options or {})) if lambda_vgg > 0 else None
    return SPADEMethod(
        generator, discriminator, encoder, parts.loss(gan_mode, **(gan_options or {})), vgg_loss=perceptual,
        label_nc=label_nc, instances=instances, dont_care=None if dont_care < 0 else dont_care, palette=palette,
        lambda_fm=lambda_fm, lambda_vgg=lambda_vgg, lambda_kld=lambda_kld,
    )
