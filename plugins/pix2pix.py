"""pix2pix: the paired conditional GAN of Isola et al., CVPR 2017 (https://arxiv.org/abs/1611.07004).

The objective is G* = arg min_G max_D L_cGAN(G, D) + lambda * L1(G). D sees the input beside the
real or generated output (channels concatenated), so it judges the pair, not the output alone.
One step: D on the real pair and on the detached fake pair, its loss halved (the reference's
choice, slowing D relative to G); then G with D frozen, GAN loss on the fake pair plus lambda * L1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from translate_kit.api import GANLossName, LossOptions, Method, Parts, StepContext, frozen, register_method

__all__ = ["Pix2Pix", "pix2pix"]


class Pix2Pix(Method):
    """Paired cGAN + L1 (networks: G translates, D judges pairs).

    Args:
        generator: maps `(B, C_in, H, W)` to `(B, C_out, H, W)`, both in [-1, 1].
        discriminator: maps `(B, C_in + C_out, H, W)` pairs to a logit map.
        gan_loss: an adversarial loss (`vanilla`, `lsgan`, `hinge`, `wgangp`).
        lambda_l1: weight of the L1 term (paper: 100).
        conditional: show D the input beside the output (pix2pix); False gives the paper's
            unconditional "GAN" ablation, where D sees the output alone.
    """

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, gan_loss: nn.Module, *, lambda_l1: float, conditional: bool
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator, "D": discriminator})
        self.roles = {"G": "translate", "D": "adversary"}
        self.gan_loss = gan_loss
        self.lambda_l1 = lambda_l1
        self.conditional = conditional

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"D": ["D"], "G": ["G"]}

    def _pair(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, y], dim=1) if self.conditional else y

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G, D = self.nets["G"], self.nets["D"]
        real_a, real_b = batch["A"], batch["B"]
        with ctx.autocast():
            fake_b = G(real_a)

        # D step: real pairs are real, generated pairs are fake; G gets no gradient from here.
        with ctx.autocast():
            real_pair = self._pair(real_a, real_b)
            fake_pair = self._pair(real_a, fake_b.detach())
            loss_d_real = self.gan_loss(D(real_pair), target_is_real=True, for_discriminator=True)
            loss_d_fake = self.gan_loss(D(fake_pair), target_is_real=False, for_discriminator=True)
            loss_d = 0.5 * (loss_d_real + loss_d_fake)
        penalty = self.gan_loss.penalty(D, real_pair, fake_pair)  # zero unless wgangp
        ctx.update("D", loss_d + penalty)
        del real_pair, fake_pair, loss_d, penalty  # 2 x (B, C_in + C_out, H, W) less at G's backward, the step's peak

        # G step: fool the frozen D and stay close to the target in L1.
        with frozen([D]), ctx.autocast():
            loss_g_gan = self.gan_loss(D(self._pair(real_a, fake_b)), target_is_real=True, for_discriminator=False)
            loss_g_l1 = torch.nn.functional.l1_loss(fake_b, real_b)
            loss_g = loss_g_gan + self.lambda_l1 * loss_g_l1
        ctx.update("G", loss_g)

        return {
            "loss_G_GAN": loss_g_gan.detach(),
            "loss_G_L1": loss_g_l1.detach(),
            "loss_D_real": loss_d_real.detach(),
            "loss_D_fake": loss_d_fake.detach(),
        }


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def pix2pix(
    parts: Parts,
    /,
    *,
    lambda_l1: float = 100.0,
    gan_mode: GANLossName = "vanilla",
    gan_options: LossOptions = None,
    conditional: bool = True,
) -> Pix2Pix:
    """pix2pix (Isola et al. 2017): conditional GAN + lambda * L1 on paired images.

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        lambda_l1: weight of the L1 term; the paper uses 100.
        gan_mode: the adversarial loss: vanilla (the paper's), lsgan, hinge or wgangp.
        gan_options: options of that loss, e.g. `{ target_real = 0.9 }` (one-sided label smoothing)
            or `{ gp_weight = 10.0 }` for wgangp.
        conditional: D sees (input, output) pairs; False is the paper's unconditional ablation.
    """
    gan_loss = parts.loss(gan_mode, **(gan_options or {}))
    d_channels = parts.in_channels + parts.out_channels if conditional else parts.out_channels
    return Pix2Pix(
        parts.generator(),
        parts.discriminator(in_channels=d_channels),
        gan_loss,
        lambda_l1=lambda_l1,
        conditional=conditional,
    )
