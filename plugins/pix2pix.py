"""pix2pix: the paired conditional GAN of Isola et al., CVPR 2017 (https://arxiv.org/abs/1611.07004).

The objective is G* = arg min_G max_D L_cGAN(G, D) + lambda * L1(G). D sees the input beside the
real or generated output (channels concatenated), so it judges the pair, not the output alone.
One step: D on the real pair and on the detached fake pair, its loss halved (the reference's
choice, slowing D relative to G); then G with D frozen, GAN loss on the fake pair plus lambda * L1.

Extension point: `training_step` is the loop above, and the four things a variant changes are
methods of their own that a subclass overrides, so a variant is a subclass, not a copy:

- `generate(real_a, real_b)`: what G makes from the input (several outputs, a pyramid);
- `discriminator_loss(D, real_a, real_b, fake, ctx)`: D's loss on real and detached fake pairs,
  with its regulariser, and the scalars to log;
- `generator_adversarial_loss(D, real_a, fake)`: G's adversarial loss through the frozen D;
- `reconstruction_loss(fake, real_b)`: the term weighted by `lambda_l1`.

`translate_kit_plugins.madgan` (k generators, a (k+1)-class D) and `translate_kit_plugins.lapgan`
(a Laplacian pyramid with a D per level) are the first-party examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from translate_kit.api import GANLossName, LossOptions, Method, Parts, StepContext, frozen, register_method

__all__ = ["Discriminator", "Pix2Pix", "pix2pix"]

# A discriminator as the loss methods take it: the network, or any callable of its input.
Discriminator = Callable[[torch.Tensor], Any]


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

    static_step = True  # the same kernels every step: its step can be one CUDA graph (train.cuda_graphs)

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

    def pair(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What D sees: input and output concatenated along channels, or the output alone when not `conditional`."""
        return torch.cat([x, y], dim=1) if self.conditional else y

    def generate(self, real_a: torch.Tensor, real_b: torch.Tensor) -> Any:
        """G's output for a training step, run under autocast: `(B, C_out, H, W)` here.

        Args:
            real_a: inputs `(B, C_in, H, W)` in [-1, 1].
            real_b: targets `(B, C_out, H, W)`; unused here, given for variants that condition
                on the target during training (LAPGAN's finer levels see the real coarser image).

        Returns:
            Whatever the three loss methods below take as `fake` (a tensor for pix2pix).
        """
        return self.nets["G"](real_a)

    def discriminator_loss(
        self, D: Discriminator, real_a: torch.Tensor, real_b: torch.Tensor, fake: Any, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss: real pairs are real, detached generated pairs are fake; G gets no gradient.

        The forward passes run under `ctx.autocast()`, the regulariser (`gan_loss.penalty`, zero
        unless wgangp) outside it, as the adversarial contract asks.

        Args:
            D: the discriminator, read from `self.nets` by the caller (it may be wrapped), or any
                callable of its input (LAPGAN passes one level's discriminator).
            real_a: inputs `(B, C_in, H, W)`.
            real_b: targets `(B, C_out, H, W)`.
            fake: what `generate` returned (not yet detached).
            ctx: the step's context (autocast).

        Returns:
            The loss to minimise (a scalar, penalty included) and the detached scalars to log
            (`loss_D_real`, `loss_D_fake`).
        """
        with ctx.autocast():
            real_pair = self.pair(real_a, real_b)
            fake_pair = self.pair(real_a, fake.detach())
            loss_d_real = self.gan_loss(D(real_pair), target_is_real=True, for_discriminator=True)
            loss_d_fake = self.gan_loss(D(fake_pair), target_is_real=False, for_discriminator=True)
            loss_d = 0.5 * (loss_d_real + loss_d_fake)
        penalty = self.gan_loss.penalty(D, real_pair, fake_pair)  # zero unless wgangp
        # Returning frees the pairs (2 x (B, C_in + C_out, H, W)) before G's backward, the step's peak.
        return loss_d + penalty, {"loss_D_real": loss_d_real.detach(), "loss_D_fake": loss_d_fake.detach()}

    def generator_adversarial_loss(self, D: Discriminator, real_a: torch.Tensor, fake: Any) -> torch.Tensor:
        """G's adversarial loss: the frozen D should take the generated pairs for real (run under
        autocast, with D's parameters frozen by the caller)."""
        return self.gan_loss(D(self.pair(real_a, fake)), target_is_real=True, for_discriminator=False)

    def reconstruction_loss(self, fake: Any, real_b: torch.Tensor) -> torch.Tensor:
        """The term weighted by `lambda_l1`: the mean absolute error to the target (run under autocast)."""
        return torch.nn.functional.l1_loss(fake, real_b)

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        D = self.nets["D"]
        real_a, real_b = batch["A"], batch["B"]
        with ctx.autocast():
            fake_b = self.generate(real_a, real_b)

        # D step: real pairs are real, generated pairs are fake; G gets no gradient from here.
        loss_d, logged_d = self.discriminator_loss(D, real_a, real_b, fake_b, ctx)
        ctx.update("D", loss_d)
        del loss_d

        # G step: fool the frozen D and stay close to the target in L1.
        with frozen([D]), ctx.autocast():
            loss_g_gan = self.generator_adversarial_loss(D, real_a, fake_b)
            loss_g_l1 = self.reconstruction_loss(fake_b, real_b)
            loss_g = loss_g_gan + self.lambda_l1 * loss_g_l1
        ctx.update("G", loss_g)

        return {"loss_G_GAN": loss_g_gan.detach(), "loss_G_L1": loss_g_l1.detach(), **logged_d}


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
