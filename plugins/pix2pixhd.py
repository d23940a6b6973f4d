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
  lambda = 10 (vgg plugin) when a weights file is given. The paper's optional instance-boundary
  maps and instance-wise feature encoder are not implemented.

Example:
    >>> import torch
    >>> d = multiscale(ndf=8, n_layers=1, num_d=3)
    >>> [tuple(p.shape) for p in d(torch.randn(1, 6, 32, 32))]
    [(1, 1, 14, 14), (1, 1, 6, 6), (1, 1, 2, 2)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.patchgan import PatchDiscriminator
from translate_kit_plugins.resnet import ResidualBlock

from translate_kit.api import (
    MULTISCALE_LOGITS,
    ComponentRef,
    GANLossName,
    LossOptions,
    Method,
    Norm,
    OptionsOf,
    Parts,
    StepContext,
    conv_bias,
    frozen,
    init_weights,
    make_norm,
    register_discriminator,
    register_generator,
    register_method,
)

__all__ = [
    "FeatureMatchingLoss",
    "GlobalGenerator",
    "LocalEnhancer",
    "MultiscaleDiscriminator",
    "Pix2PixHD",
    "feature_matching_loss",
    "global_generator",
    "local_enhancer",
    "multiscale",
    "pix2pixhd",
]


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
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), make_norm(norm, ngf), nn.ReLU(True)
        ]
        width = ngf
        for _ in range(n_downsampling):
            layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias), make_norm(norm, 2 * width),
                       nn.ReLU(True)]
            width *= 2
        layers += [ResidualBlock(width, norm, 0.0) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                make_norm(norm, width // 2),
                nn.ReLU(True),
            ]
            width //= 2
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


class Pix2PixHD(Method):
    """Paired cGAN with a multiscale D: GAN (summed over scales) + lambda_FM·FM (+ lambda_VGG·VGG, + lambda_L1·L1).

    Args:
        generator: maps (B, C_in, H, W) to (B, C_out, H, W) in [-1, 1].
        discriminator: a `MultiscaleDiscriminator` (or any D whose `forward(x, return_features=True)`
            gives `(logits, features)`, per scale or for one scale) on (B, C_in + C_out, H, W) pairs.
        gan_loss: a GAN loss component (lsgan in the paper).
        lambda_fm: weight of the feature-matching loss (paper: 10).
        vgg_loss: the VGG perceptual loss, or None.
        lambda_vgg: its weight (paper: 10).
        lambda_l1: weight of an L1 term (pix2pixHD has none: 0).
    """

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, gan_loss: nn.Module, *, lambda_fm: float,
        vgg_loss: nn.Module | None, lambda_vgg: float, lambda_l1: float,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator, "D": discriminator})
        self.roles = {"G": "translate", "D": "adversary"}
        self.gan_loss = gan_loss
        self.vgg_loss = vgg_loss
        self.lambda_fm, self.lambda_vgg, self.lambda_l1 = lambda_fm, lambda_vgg, lambda_l1

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"D": ["D"], "G": ["G"]}

    def _gan(self, logits: list[torch.Tensor], real: bool, for_discriminator: bool) -> torch.Tensor:
        # The reference sums the per-scale losses; the GAN loss component averages a list.
        return len(logits) * self.gan_loss(logits, target_is_real=real, for_discriminator=for_discriminator)

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G, D = self.nets["G"], self.nets["D"]
        real_a, real_b = batch["A"], batch["B"]
        with ctx.autocast():
            fake_b = G(real_a)

        # D step on real pairs and detached fake pairs, its loss halved as in the reference.
        with ctx.autocast():
            real_pair = torch.cat([real_a, real_b], dim=1)
            fake_pair = torch.cat([real_a, fake_b.detach()], dim=1)
            pred_real, pred_fake = _as_list(D(real_pair)), _as_list(D(fake_pair))
            loss_d_real = self._gan(pred_real, True, True)
            loss_d_fake = self._gan(pred_fake, False, True)
            loss_d = 0.5 * (loss_d_real + loss_d_fake)
        penalty = self.gan_loss.penalty(D, real_pair, fake_pair)  # zero unless wgangp
        ctx.update("D", loss_d + penalty)

        # G step with D frozen. The real features are recomputed with the updated D, so both sides
        # of the feature matching come from the same D (the reference computes all from one D).
        with frozen([D]), ctx.autocast():
            pred_fake, feats_fake = _as_scales(D(torch.cat([real_a, fake_b], dim=1), return_features=True))
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


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
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
) -> Pix2PixHD:
    """pix2pixHD (Wang et al. 2018): conditional multiscale GAN + feature matching (+ VGG) on paired images.

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        lambda_fm: weight of the discriminator feature-matching loss; the paper uses 10.
        lambda_vgg: weight of the VGG19 perceptual loss; the paper uses 10. 0 (the default) builds
            no VGG, since its weights must come from a local file.
        vgg_loss: the perceptual loss (the paper's `vgg19`).
        vgg_options: options of that loss, e.g. `{ weights = "vgg19-dcbb9e9d.pth" }`.
        lambda_l1: weight of an L1 term (not in pix2pixHD: 0).
        gan_mode: the adversarial loss: lsgan (the paper's), vanilla, hinge or wgangp.
        gan_options: options of that loss.
    """
    gan_loss = parts.loss(gan_mode, **(gan_options or {}))
    if min(lambda_fm, lambda_vgg, lambda_l1) < 0:
        raise ValueError(f"Expected lambda_fm, lambda_vgg, lambda_l1 >= 0, got {lambda_fm}, {lambda_vgg}, {lambda_l1}")
    perceptual = parts.loss(vgg_loss, **(vgg_options or {})) if lambda_vgg > 0 else None
    return Pix2PixHD(
        parts.generator(),
        parts.discriminator(in_channels=parts.in_channels + parts.out_channels),
        gan_loss,
        lambda_fm=lambda_fm,
        vgg_loss=perceptual,
        lambda_vgg=lambda_vgg,
        lambda_l1=lambda_l1,
    )
