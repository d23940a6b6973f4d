"""DualGAN: unpaired translation by dual learning, Yi, Zhang, Tan and Gong, ICCV 2017
(https://arxiv.org/abs/1704.02510; reference code: github.com/duxingren14/DualGAN).

Two generators and two critics, named as in the paper (U is the data's A domain, V its B domain):

- G_A: U -> V and G_B: V -> U, U-Nets with skip connections "as in pix2pix" (paper, Sec. 3.2);
  the recipe's [generator] table builds both through the registry (`unet`);
- D_A judges V images (real v against G_A(u)), D_B judges U images (real u against G_B(v)):
  70x70 PatchGANs (Sec. 3.2), unconditional, built from the recipe's [discriminator] table
  (`patchgan`).

The objective (Sec. 3.1) is WGAN's (Arjovsky et al. 2017, https://arxiv.org/abs/1701.07875) plus
the reconstruction ("recovery") error in L1:

- critics: l_d^A = D_A(G_A(u)) - D_A(v) and l_d^B = D_B(G_B(v)) - D_B(u), means over the batch and
  the patch map, minimised together;
- generators: l^g = lambda_U |u - G_B(G_A(u))| + lambda_V |v - G_A(G_B(v))| - D_A(G_A(u)) - D_B(G_B(v)).
  (Eq. 3 as printed scores G_B(v) with D_A and G_A(u) with D_B; Eqs. 1-2, the text and the
  reference code pair each critic with the generator whose outputs it judges, as here.)

Training follows Algorithm 1: every step updates both critics on its batch and then clips every
critic parameter to [-c, c]; after every `n_critic`-th critic update the generators are updated
too, on that step's batch. The generator losses are computed (without gradients) on the other
steps as well, so every step logs the same scalars.

**Weight clipping** happens in `after_update("D")`, the method contract's hook that
`ctx.update("D", ...)` calls right after the critics' optimiser step: so the clamp follows D's
step directly, as Algorithm 1 line 7 does, and the G update of the same step already sees the
clipped critics. Clamping at the start of the next D step instead would leave the critics
unclipped for the G update, the checkpoints and the logged scores, which is another algorithm.
The clipped weights are what checkpoints store, so a resume continues exactly.

**RMSProp** (Sec. 3.3, after WGAN) is both groups' optimiser by default (`optimizer_defaults`),
with the reference's decay 0.9 (`alpha`); the recipe's `train.lr` is its 5e-5.

Deviations from the published setting, each on purpose:

- RMSProp is torch's (mean square starting at 0); TensorFlow's, which the reference runs, starts
  it at 1, which differs in the first updates only.
- The generator update reuses the batch of the critic update before it; Algorithm 1 samples a new
  one (line 9). The reference code does the same.
- Kernels are pix2pix's 4x4 (the registered `unet` and `patchgan`); the reference's TensorFlow
  layers use 5x5.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from translate_kit.api import Method, OptimizerSettings, Parts, StepContext, frozen, register_method

__all__ = ["DualGAN", "clip_parameters", "critic_loss", "dualgan", "generator_adversarial_loss"]


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss `mean(D(fake)) - mean(D(real))` (DualGAN's l_d), in float32.

    Args:
        real_scores: the critic's scores of real images, any shape (a PatchGAN's `(B, 1, h, w)`).
        fake_scores: its scores of generated images.

    Example:
        >>> critic_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.5]))
        tensor(-1.5000)
    """
    return fake_scores.float().mean() - real_scores.float().mean()


def generator_adversarial_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's Wasserstein loss `-mean(D(fake))`, in float32.

    Example:
        >>> generator_adversarial_loss(torch.tensor([0.5, 1.5]))
        tensor(-1.)
    """
    return -fake_scores.float().mean()


@torch.no_grad()
def clip_parameters(modules: Iterable[nn.Module], clip: float) -> None:
    """Clamp every parameter of `modules` to [-clip, clip] in place (WGAN's weight clipping).

    Buffers (batch norm's running statistics) are not parameters and are left alone.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> _ = nn.init.constant_(net.weight, 3.0)
        >>> clip_parameters([net], 0.5)
        >>> net.weight.tolist()
        [[0.5, 0.5]]
    """
    for module in modules:
        for p in module.parameters():
            p.clamp_(-clip, clip)


class DualGAN(Method):
    """Two U-Net generators and two Wasserstein critics with weight clipping (see the module docstring).

    Args:
        g_a: U -> V generator, `(B, C_U, H, W)` to `(B, C_V, H, W)` in [-1, 1].
        g_b: V -> U generator.
        d_a: critic of V-domain images (`C_V` channels in).
        d_b: critic of U-domain images (`C_U` channels in).
        lambda_u: weight of the U recovery error |u - G_B(G_A(u))|.
        lambda_v: weight of the V recovery error |v - G_A(G_B(v))|.
        n_critic: critic updates per generator update.
        clip: critic parameters are clamped to [-clip, clip] after every critic update.
    """

    # `translate` is U -> V, so G_A alone translates (and is exported); G_B serves the recovery loss.
    roles = {"G_A": "translate", "G_B": "auxiliary", "D_A": "adversary", "D_B": "adversary"}

    def __init__(
        self,
        g_a: nn.Module,
        g_b: nn.Module,
        d_a: nn.Module,
        d_b: nn.Module,
        *,
        lambda_u: float = 1000.0,
        lambda_v: float = 1000.0,
        n_critic: int = 2,
        clip: float = 0.01,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G_A": g_a, "G_B": g_b, "D_A": d_a, "D_B": d_b})
        self.lambda_u, self.lambda_v, self.n_critic, self.clip = lambda_u, lambda_v, n_critic, clip

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G_A", "G_B"], "D": ["D_A", "D_B"]}

    def updates_generators(self, step: int) -> bool:
        """Whether step `step` (0-based) ends with a generator update: after every `n_critic`-th
        critic update (steps n_critic - 1, 2 n_critic - 1, ...)."""
        return (step + 1) % self.n_critic == 0

    def optimizer_defaults(self) -> dict[str, OptimizerSettings]:
        """RMSProp for critics and generators, decay 0.9 (the paper's optimiser, the reference's decay)."""
        rmsprop = OptimizerSettings(optimizer="rmsprop", alpha=0.9)
        return {"D": rmsprop, "G": rmsprop}

    def after_update(self, group: str) -> None:
        """Clip the critics right after their optimiser step (Algorithm 1, line 7)."""
        if group == "D":
            clip_parameters([self.nets["D_A"], self.nets["D_B"]], self.clip)

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G_A, G_B, D_A, D_B = (self.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        real_u, real_v = batch["A"], batch["B"]
        update_g = self.updates_generators(ctx.step)

        # The translations feed both critics; they keep a graph only when G is updated this step.
        with torch.set_grad_enabled(update_g), ctx.autocast():
            fake_v = G_A(real_u)
            fake_u = G_B(real_v)

        # Critic step: D_A(G_A(u)) - D_A(v) and D_B(G_B(v)) - D_B(u); then clip (Algorithm 1, l. 5-7).
        with ctx.autocast():
            loss_d_a = critic_loss(D_A(real_v), D_A(fake_v.detach()))
            loss_d_b = critic_loss(D_B(real_u), D_B(fake_u.detach()))
        ctx.update("D", loss_d_a + loss_d_b)  # and the clamp, in after_update("D")

        # Generator step against the clipped critics: fool them and recover the inputs.
        with frozen([D_A, D_B]), torch.set_grad_enabled(update_g), ctx.autocast():
            loss_g_a = generator_adversarial_loss(D_A(fake_v))
            loss_g_b = generator_adversarial_loss(D_B(fake_u))
            loss_recon_u = self.lambda_u * F.l1_loss(G_B(fake_v).float(), real_u.float())
            loss_recon_v = self.lambda_v * F.l1_loss(G_A(fake_u).float(), real_v.float())
            loss_g = loss_g_a + loss_g_b + loss_recon_u + loss_recon_v
        if update_g:
            ctx.update("G", loss_g)

        losses = {
            "loss_G_A": loss_g_a,
            "loss_G_B": loss_g_b,
            "loss_recon_U": loss_recon_u,
            "loss_recon_V": loss_recon_v,
            "loss_D_A": loss_d_a,
            "loss_D_B": loss_d_b,
        }
        return {k: v.detach().float() for k, v in losses.items()}


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def dualgan(
    parts: Parts,
    /,
    *,
    lambda_u: float = 1000.0,
    lambda_v: float = 1000.0,
    n_critic: int = 2,
    clip: float = 0.01,
) -> DualGAN:
    """DualGAN (Yi et al. 2017): two generators, two clipped Wasserstein critics, L1 recovery losses.

    The recipe's [generator] table builds G_A (U -> V, U the data's A) and G_B (V -> U, channels
    swapped); its [discriminator] table builds D_A (on V images) and D_B (on U images).

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        lambda_u: weight of the U recovery error; the paper sets lambda_U and lambda_V within
            [100, 1000] by task.
        lambda_v: weight of the V recovery error.
        n_critic: critic updates per generator update; the paper uses 2 to 4.
        clip: the critics' weight-clipping bound c; the paper uses 0.01 to 0.1 by domain.
    """
    if min(lambda_u, lambda_v) < 0:
        raise ValueError(f"expected method.lambda_u and method.lambda_v >= 0, got {lambda_u} and {lambda_v}")
    if n_critic < 1:
        raise ValueError(f"expected method.n_critic >= 1 critic updates per generator update, got {n_critic}")
    if not clip > 0:
        raise ValueError(f"expected method.clip > 0 (the paper uses 0.01 to 0.1), got {clip}")
    c_u, c_v = parts.in_channels, parts.out_channels
    return DualGAN(
        parts.generator(),
        parts.generator(in_channels=c_v, out_channels=c_u),
        parts.discriminator(in_channels=c_v),
        parts.discriminator(in_channels=c_u),
        lambda_u=lambda_u,
        lambda_v=lambda_v,
        n_critic=n_critic,
        clip=clip,
    )
