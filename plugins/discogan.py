"""DiscoGAN: discovering cross-domain relations with two coupled GANs, Kim, Cha, Kim, Lee and Kim,
ICML 2017 (https://arxiv.org/abs/1703.05192; reference code: github.com/SKTBrain/DiscoGAN).

Networks, named as in the paper:

- G_AB: A -> B and G_BA: B -> A, encoder-decoders (`discogan_generator`): 4x4 stride-2
  convolutions with leaky ReLU down to a bottleneck, then 4x4 stride-2 transposed convolutions
  with ReLU back up; no skip connections, unlike a U-Net;
- D_A judges A images (real a against G_BA(b)), D_B judges B images (real b against G_AB(a))
  (`discogan_discriminator`): the generator's encoder plus a last 4x4 convolution to one logit,
  which the loss passes through the sigmoid.

With the reference's widths (64 first-layer maps, batch norm, no biases) the networks have exactly
the reference's parameter counts: 5,513,856 (generator) and 2,765,568 (discriminator).

The objective is the paper's, for G_AB and the same with A and B swapped for G_BA:

- L_GAB = L_GAN_B + L_CONST_A, with L_GAN_B = -log D_B(G_AB(a)) (the non-saturating GAN loss) and
  L_CONST_A = d(G_BA(G_AB(a)), a), d the mean squared error (the paper names MSE first among
  the distances it allows; the reference uses it);
- L_G = L_GAB + L_GBA; L_D = L_DA + L_DB with L_DB = -log D_B(b) - log(1 - D_B(G_AB(a))).

Each step updates both discriminators on the step's batch, then both generators against the
updated discriminators. The adversarial loss is a registered one (`gan_mode`, "vanilla" for the
paper's); there is no history pool of generated images (the paper uses none). The recipe's
optimisers are the reference's: Adam, lr 2e-4, betas (0.5, 0.999), L2 weight decay 1e-5 on both
groups.

Deviations from the reference code (github.com/SKTBrain/DiscoGAN), which differs from the paper:

- its generator loss mixes the GAN loss with a feature-matching term on D's intermediate features
  (0.1 GAN + 0.9 feature matching) and weights reconstruction against both by a schedule (0.01
  for the first 10,000 iterations, then 0.5); here the paper's unweighted sum is implemented, with
  `lambda_const` as the one weight (1: the paper's);
- it alternates one D update and two G updates over consecutive iterations; here every step
  updates D then G;
- it halves each discriminator's loss (0.5 real + 0.5 fake); the paper's L_D, used here, does not;
- its generator ends in a sigmoid on [0, 1] images; here tanh on [-1, 1] images (the same
  function up to an affine map, 2 sigmoid(2x) - 1 = tanh(x));
- it keeps PyTorch's default initialisation; here weights are drawn from N(0, 0.02) as in the
  other GANs of this toolkit (DCGAN's, on which DiscoGAN's networks are modelled);
- its optional fifth layer (a 4x4 convolution to a 100-channel 1x1 code, for 64-pixel images
  only) is not offered; `n_downs = 5` gives five layers on 128-pixel and larger images instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from translate_kit.api import (
    LOGITS,
    GANLossName,
    Method,
    Norm,
    Parts,
    StepContext,
    check_image_batch,
    conv_bias,
    frozen,
    init_weights,
    make_norm,
    register_discriminator,
    register_generator,
    register_method,
)

__all__ = [
    "DiscoDiscriminator",
    "DiscoGAN",
    "DiscoGenerator",
    "discogan",
    "discogan_discriminator",
    "discogan_generator",
]

# Feature maps double per stride-2 layer and stop growing at 8x the first layer's (512 for 64).
_MAX_MULT = 8


def _widths(base: int, layers: int) -> list[int]:
    return [base * min(2**k, _MAX_MULT) for k in range(layers)]


class DiscoGenerator(nn.Module):
    """DiscoGAN's encoder-decoder: ``n_downs`` convolutions down, as many transposed ones up.

    Encoder: Conv4x4/2 ngf -> LeakyReLU(0.2); then for k = 1 .. n_downs-1: Conv4x4/2 ngf·min(2^k, 8)
    -> norm -> LeakyReLU(0.2). Decoder, mirrored: for k = n_downs-1 .. 1: ConvT4x4/2 to
    ngf·min(2^(k-1), 8) -> norm -> ReLU; then ConvT4x4/2 to ``out_channels`` -> Tanh. Padding 1, so
    every layer halves or doubles the size exactly; the bottleneck is (H / 2^n_downs) square. A
    convolution has a bias only where no batch norm follows it (`conv_bias`); with batch norm, the
    reference's choice, no layer has one, as in the reference.

    Args:
        in_channels: channels of the input images.
        out_channels: channels of the output images.
        ngf: feature maps of the first convolution (64 in the reference).
        n_downs: stride-2 convolutions (and transposed convolutions): 4 for the paper's 64-pixel images.
        norm: "batch" (the reference), "instance" or "none".

    Attributes:
        size_multiple: ``2**n_downs``; input heights and widths must be its multiples.
        min_size: ``2**n_downs`` (a 1x1 bottleneck).

    Example:
        >>> net = DiscoGenerator(ngf=8)
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(
        self, *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_downs: int = 4, norm: str = "batch"
    ) -> None:
        super().__init__()
        if n_downs < 1:
            raise ValueError(f"Expected n_downs >= 1, got {n_downs}")
        if min(in_channels, out_channels, ngf) < 1:
            raise ValueError(
                f"Expected in_channels, out_channels and ngf >= 1, got {in_channels}, {out_channels}, {ngf}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size_multiple = self.min_size = 2**n_downs
        bias = conv_bias(norm)
        widths = _widths(ngf, n_downs)
        encoder: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, True)]
        for k in range(1, n_downs):
            encoder += [nn.Conv2d(widths[k - 1], widths[k], 4, 2, 1, bias=bias), make_norm(norm, widths[k]),
                        nn.LeakyReLU(0.2, True)]
        decoder: list[nn.Module] = []
        for k in range(n_downs - 1, 0, -1):
            decoder += [nn.ConvTranspose2d(widths[k], widths[k - 1], 4, 2, 1, bias=bias),
                        make_norm(norm, widths[k - 1]), nn.ReLU(True)]
        decoder += [nn.ConvTranspose2d(widths[0], out_channels, 4, 2, 1, bias=bias), nn.Tanh()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate images `(B, in_channels, H, W)` in [-1, 1], H and W multiples of `size_multiple`,
        to `(B, out_channels, H, W)` in [-1, 1].

        Raises:
            ValueError: the input has the wrong channels or a size that is not a multiple of `size_multiple`.
        """
        check_image_batch(x, self.in_channels, self.size_multiple)
        return self.decoder(self.encoder(x))


class DiscoDiscriminator(nn.Module):
    """DiscoGAN's discriminator: the generator's encoder, then Conv4x4/1 (no padding) to one logit.

    Blocks: Conv4x4/2 ndf -> LeakyReLU(0.2); for k = 1 .. n_layers-1: Conv4x4/2 ndf·min(2^k, 8)
    -> norm -> LeakyReLU(0.2); head Conv4x4/1 without padding to 1 channel. A 64-pixel image with
    ``n_layers = 4`` (the reference's) gives one logit; larger images give an (H / 2^n_layers - 3)
    square map. The sigmoid of the paper's D is left to the loss (binary cross-entropy on logits).

    Args:
        in_channels: channels of the judged images (unconditional: one image, not a pair).
        ndf: feature maps of the first convolution (64 in the reference).
        n_layers: stride-2 convolutions.
        norm: "batch" (the reference), "instance" or "none".

    Attributes:
        min_size: the smallest input side giving one logit, ``4 * 2**n_layers``.

    Example:
        >>> DiscoDiscriminator(ndf=8)(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 1, 1, 1])
    """

    def __init__(self, *, in_channels: int = 3, ndf: int = 64, n_layers: int = 4, norm: str = "batch") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"Expected n_layers >= 1, got {n_layers}")
        if min(in_channels, ndf) < 1:
            raise ValueError(f"Expected in_channels and ndf >= 1, got {in_channels}, {ndf}")
        self.in_channels = in_channels
        self.min_size, self.size_multiple = 4 * 2**n_layers, 1
        bias = conv_bias(norm)
        widths = _widths(ndf, n_layers)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1, bias=bias), nn.LeakyReLU(0.2, True)]
        for k in range(1, n_layers):
            layers += [nn.Conv2d(widths[k - 1], widths[k], 4, 2, 1, bias=bias), make_norm(norm, widths[k]),
                       nn.LeakyReLU(0.2, True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(B, 1, h, w)` of images `(B, in_channels, H, W)`, H and W >= `min_size`.

        Raises:
            ValueError: the input has the wrong channels or is smaller than `min_size`.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels or min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"Expected input of shape (B, {self.in_channels}, H, W) with H, W >= {self.min_size}, "
                f"got {tuple(x.shape)}"
            )
        return self.head(self.body(x))


@register_generator(tiny={"ngf": 8})
def discogan_generator(
    *, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_downs: int = 4, norm: Norm = "batch"
) -> DiscoGenerator:
    """DiscoGAN's encoder-decoder generator; n_downs 4 for the paper's 64x64 images.

    Weights N(0, 0.02), batch norm scales N(1, 0.02), biases 0.

    Args:
        in_channels: channels of the input images; the method sets them from the data.
        out_channels: channels of the output images.
        ngf: feature maps of the first convolution (64 in the reference).
        n_downs: stride-2 convolutions down and transposed convolutions up (>= 1).
        norm: "batch" (the reference), "instance" or "none".

    Example:
        >>> sum(p.numel() for p in discogan_generator().parameters())
        5513856
    """
    return init_weights(DiscoGenerator(in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_downs=n_downs,
                                       norm=norm))


@register_discriminator(output=LOGITS, tiny={"ndf": 8, "n_layers": 3})
def discogan_discriminator(*, in_channels: int = 3, ndf: int = 64, n_layers: int = 4, norm: Norm = "batch"
                           ) -> DiscoDiscriminator:
    """DiscoGAN's discriminator: one logit per 64x64 image with n_layers 4 (the reference's).

    Args:
        in_channels: channels of the judged images; the method sets them from the data.
        ndf: feature maps of the first convolution (64 in the reference).
        n_layers: stride-2 convolutions (>= 1); inputs must be at least 4 * 2**n_layers pixels.
        norm: "batch" (the reference), "instance" or "none".

    Example:
        >>> sum(p.numel() for p in discogan_discriminator().parameters())
        2765568
    """
    return init_weights(DiscoDiscriminator(in_channels=in_channels, ndf=ndf, n_layers=n_layers, norm=norm))


class DiscoGAN(Method):
    """Two encoder-decoder generators and two discriminators with reconstruction losses.

    Args:
        g_ab: A -> B generator, `(B, C_A, H, W)` to `(B, C_B, H, W)` in [-1, 1].
        g_ba: B -> A generator.
        d_a: discriminator of A-domain images (`C_A` channels in).
        d_b: discriminator of B-domain images (`C_B` channels in).
        gan_loss: an adversarial loss component (the paper's: vanilla).
        lambda_const: weight of both reconstruction losses (the paper's: 1).
    """

    # `translate` is A -> B, so G_AB alone translates (and is exported); G_BA serves the reconstruction.
    roles = {"G_AB": "translate", "G_BA": "auxiliary", "D_A": "adversary", "D_B": "adversary"}

    def __init__(
        self, g_ab: nn.Module, g_ba: nn.Module, d_a: nn.Module, d_b: nn.Module, gan_loss: nn.Module, *,
        lambda_const: float = 1.0,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G_AB": g_ab, "G_BA": g_ba, "D_A": d_a, "D_B": d_b})
        self.gan_loss = gan_loss
        self.lambda_const = lambda_const

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G_AB", "G_BA"], "D": ["D_A", "D_B"]}

    def _d_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss_real = self.gan_loss(d(real), target_is_real=True, for_discriminator=True)
        loss_fake = self.gan_loss(d(fake), target_is_real=False, for_discriminator=True)
        return loss_real + loss_fake

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G_AB, G_BA, D_A, D_B = (self.nets[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
        real_a, real_b = batch["A"], batch["B"]
        with ctx.autocast():
            fake_b = G_AB(real_a)
            fake_a = G_BA(real_b)

        # D step: L_DA + L_DB on real images and this step's translations.
        with ctx.autocast():
            loss_d_a = self._d_loss(D_A, real_a, fake_a.detach())
            loss_d_b = self._d_loss(D_B, real_b, fake_b.detach())
        penalty = (self.gan_loss.penalty(D_A, real_a, fake_a.detach())
                   + self.gan_loss.penalty(D_B, real_b, fake_b.detach()))
        ctx.update("D", loss_d_a + loss_d_b + penalty)

        # G step: L_GAB + L_GBA against the updated, frozen discriminators.
        with frozen([D_A, D_B]), ctx.autocast():
            loss_gan_b = self.gan_loss(D_B(fake_b), target_is_real=True, for_discriminator=False)
            loss_gan_a = self.gan_loss(D_A(fake_a), target_is_real=True, for_discriminator=False)
            loss_const_a = self.lambda_const * F.mse_loss(G_BA(fake_b).float(), real_a.float())
            loss_const_b = self.lambda_const * F.mse_loss(G_AB(fake_a).float(), real_b.float())
            loss_g = loss_gan_b + loss_const_a + loss_gan_a + loss_const_b
        ctx.update("G", loss_g)

        losses = {
            "loss_GAN_A": loss_gan_a,
            "loss_GAN_B": loss_gan_b,
            "loss_const_A": loss_const_a,
            "loss_const_B": loss_const_b,
            "loss_D_A": loss_d_a,
            "loss_D_B": loss_d_b,
        }
        return {k: v.detach().float() for k, v in losses.items()}


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def discogan(parts: Parts, /, *, lambda_const: float = 1.0, gan_mode: GANLossName = "vanilla") -> DiscoGAN:
    """DiscoGAN (Kim et al. 2017): two generators, two discriminators, GAN and reconstruction losses.

    The recipe's [generator] table builds G_AB (A -> B) and G_BA (B -> A, channels swapped); its
    [discriminator] table builds D_A (on A images) and D_B (on B images).

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        lambda_const: weight of the reconstruction losses L_CONST_A and L_CONST_B (mean squared
            errors); the paper adds them unweighted (1).
        gan_mode: the adversarial loss: vanilla (the paper's), lsgan, hinge or wgangp.
    """
    if lambda_const < 0:
        raise ValueError(f"expected method.lambda_const >= 0, got {lambda_const}")
    c_a, c_b = parts.in_channels, parts.out_channels
    return DiscoGAN(
        parts.generator(),
        parts.generator(in_channels=c_b, out_channels=c_a),
        parts.discriminator(in_channels=c_a),
        parts.discriminator(in_channels=c_b),
        parts.loss(gan_mode),
        lambda_const=lambda_const,
    )
