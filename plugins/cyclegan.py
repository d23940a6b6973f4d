"""CycleGAN: unpaired translation with cycle consistency, Zhu et al., ICCV 2017 (https://arxiv.org/abs/1703.10593).

Two generators and two discriminators, named as in the reference implementation:

- G_A: A -> B and G_B: B -> A;
- D_A judges B-domain images (real B against G_A(A)), D_B judges A-domain images (real A
  against G_B(B)). Neither is conditional: a D sees one image, never a pair.

One step, in the reference's order: the G step first, with both D frozen: LSGAN losses of G_A and
G_B, cycle losses lambda_A * |G_B(G_A(A)) - A| and lambda_B * |G_A(G_B(B)) - B|, and the identity
losses lambda_idt * (lambda_B * |G_A(B) - B| + lambda_A * |G_B(A) - A|); then the D step on real
images and on fakes drawn from a history pool of 50 (Shrivastava et al. 2017), each D's loss
halved. The logged losses carry their weights, as the reference logs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from translate_kit.api import GANLossName, Method, Parts, StepContext, frozen, register_method

__all__ = ["CycleGAN", "ImagePool", "cyclegan"]


class ImagePool:
    """A history of generated images for the discriminator (Shrivastava et al., CVPR 2017).

    Per image of a batch: while the pool holds fewer than `size` images, the new one is stored and
    returned; once full, with probability 1/2 a uniformly chosen stored image is returned and
    replaced by the new one, else the new one is returned. `size` 0 returns the batch as is.

    The pool lives on the images' device: one `(size, C, H, W)` buffer and a count, and every
    choice is made there with `torch.where` from two draws per image (a uniform number and a slot,
    from torch's random state on that device, which the trainer's checkpoints restore, so a
    resumed run draws the same). So a query never makes the host wait for the device, and a
    training step that queries the pool does the same device work every time: CycleGAN's step can
    be captured as one CUDA graph (`Method.static_step`).

    Args:
        size: images kept (CycleGAN: 50).

    Example:
        >>> pool = ImagePool(2)
        >>> pool.query(torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
        >>> len(pool)
        2
    """

    def __init__(self, size: int = 50) -> None:
        if size < 0:
            raise ValueError(f"Expected a pool size >= 0, got {size}")
        self.size = size
        self.buffer: torch.Tensor | None = None  # (size, C, H, W), the first `count` stored
        self.count = torch.zeros((), dtype=torch.long)

    def __len__(self) -> int:
        """Images stored (reads the count from the device)."""
        return int(self.count)

    def _place(self, images: torch.Tensor) -> torch.Tensor:
        """The buffer on `images`' device and dtype, made on the first query."""
        if self.buffer is None:
            self.buffer = images.new_zeros((self.size, *images.shape[1:]))
        if self.buffer.shape[1:] != images.shape[1:]:
            raise ValueError(f"Expected images of shape {tuple(self.buffer.shape[1:])} like the pooled ones, "
                             f"got {tuple(images.shape[1:])}")
        self.buffer = self.buffer.to(images.device, images.dtype)
        self.count = self.count.to(images.device)
        return self.buffer

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch `(B, C, H, W)` of the same shape, mixing in stored images as described."""
        if self.size == 0:
            return images
        buffer = self._place(images.detach())
        out = []
        for image in images.detach():
            filling = self.count < self.size
            draw = torch.rand((), device=image.device)
            chosen = torch.randint(0, self.size, (1,), device=image.device)
            slot = torch.where(filling, self.count.clamp(max=self.size - 1), chosen[0]).reshape(1)
            stored = buffer.index_select(0, slot)[0]
            swap = filling.logical_not() & (draw < 0.5)
            out.append(torch.where(swap, stored, image))
            buffer.index_copy_(0, slot, torch.where(filling | swap, image, stored)[None])
            self.count += filling.long()
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        """The stored images as one tensor `(N, C, H, W)` (empty `(0,)` while none are stored)."""
        count = len(self)
        return self.buffer[:count].clone() if self.buffer is not None and count else torch.empty(0)

    def load_state(self, images: torch.Tensor) -> None:
        """Restore what `state` returned."""
        if images.numel() and images.shape[0] > self.size:
            raise ValueError(f"Expected at most {self.size} pooled images, got {images.shape[0]}")
        self.buffer, self.count = None, torch.zeros((), dtype=torch.long)
        if images.numel():
            self.buffer = images.new_zeros((self.size, *images.shape[1:]))
            self.buffer[: images.shape[0]] = images
            self.count = torch.tensor(images.shape[0])


class CycleGAN(Method):
    """Two generators and two unconditional discriminators trained with cycle consistency.

    Args:
        g_a: A -> B generator, `(B, C_A, H, W)` to `(B, C_B, H, W)` in [-1, 1].
        g_b: B -> A generator.
        d_a: discriminator of B-domain images (`C_B` channels in).
        d_b: discriminator of A-domain images (`C_A` channels in).
        gan_loss: a GAN loss component (CycleGAN: lsgan).
        lambda_a: weight of the A -> B -> A cycle loss (paper: 10).
        lambda_b: weight of the B -> A -> B cycle loss (paper: 10).
        lambda_identity: identity loss weight relative to lambda_a/lambda_b (paper: 0.5); 0 turns
            it off. It needs C_A == C_B.
        pool_size: generated images each D's history pool keeps (paper: 50; 0: no pool).
    """

    # `translate` is A -> B, so G_A alone translates (and is exported); G_B serves the cycle loss.
    roles = {"G_A": "translate", "G_B": "auxiliary", "D_A": "adversary", "D_B": "adversary"}
    static_step = True  # the pools choose on the device: the step can be one CUDA graph

    def __init__(
        self,
        g_a: nn.Module,
        g_b: nn.Module,
        d_a: nn.Module,
        d_b: nn.Module,
        gan_loss: nn.Module,
        *,
        lambda_a: float = 10.0,
        lambda_b: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G_A": g_a, "G_B": g_b, "D_A": d_a, "D_B": d_b})
        self.gan_loss = gan_loss
        self.lambda_a, self.lambda_b, self.lambda_identity = lambda_a, lambda_b, lambda_identity
        self.fake_a_pool = ImagePool(pool_size)  # G_B's outputs, shown to D_B
        self.fake_b_pool = ImagePool(pool_size)  # G_A's outputs, shown to D_A

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G_A", "G_B"], "D": ["D_A", "D_B"]}

    def _d_loss(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss_real = self.gan_loss(d(real), target_is_real=True, for_discriminator=True)
        loss_fake = self.gan_loss(d(fake), target_is_real=False, for_discriminator=True)
        return 0.5 * (loss_real + loss_fake)

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        G_A, G_B, D_A, D_B = (self.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        real_a, real_b = batch["A"], batch["B"]

        # G step: fool both frozen D, and come back to the start through the other generator.
        with frozen([D_A, D_B]), ctx.autocast():
            fake_b = G_A(real_a)
            fake_a = G_B(real_b)
            loss_g_a = self.gan_loss(D_A(fake_b), target_is_real=True, for_discriminator=False)
            loss_g_b = self.gan_loss(D_B(fake_a), target_is_real=True, for_discriminator=False)
            loss_cycle_a = self.lambda_a * F.l1_loss(G_B(fake_b), real_a)
            loss_cycle_b = self.lambda_b * F.l1_loss(G_A(fake_a), real_b)
            if self.lambda_identity > 0:
                # A generator fed an image of its target domain should leave it alone.
                loss_idt_a = self.lambda_identity * self.lambda_b * F.l1_loss(G_A(real_b), real_b)
                loss_idt_b = self.lambda_identity * self.lambda_a * F.l1_loss(G_B(real_a), real_a)
            else:
                loss_idt_a = loss_idt_b = torch.zeros((), device=real_a.device)
            loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
        ctx.update("G", loss_g)

        # D step: real images against fakes from the history pools (the fakes of this step's
        # forward pass, made before G's update, as in the reference).
        pooled_b = self.fake_b_pool.query(fake_b.detach())
        pooled_a = self.fake_a_pool.query(fake_a.detach())
        with ctx.autocast():
            loss_d_a = self._d_loss(D_A, real_b, pooled_b)
            loss_d_b = self._d_loss(D_B, real_a, pooled_a)
        penalty = self.gan_loss.penalty(D_A, real_b, pooled_b) + self.gan_loss.penalty(D_B, real_a, pooled_a)
        ctx.update("D", loss_d_a + loss_d_b + penalty)

        losses = {
            "loss_G_A": loss_g_a,
            "loss_G_B": loss_g_b,
            "loss_cycle_A": loss_cycle_a,
            "loss_cycle_B": loss_cycle_b,
            "loss_idt_A": loss_idt_a,
            "loss_idt_B": loss_idt_b,
            "loss_D_A": loss_d_a,
            "loss_D_B": loss_d_b,
        }
        return {k: v.detach().float() for k, v in losses.items()}

    def extra_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_a_pool.state(), "fake_B_pool": self.fake_b_pool.state()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.fake_a_pool.load_state(state.get("fake_A_pool", torch.empty(0)))
        self.fake_b_pool.load_state(state.get("fake_B_pool", torch.empty(0)))


@register_method(tables={"generator": "generator", "discriminator": "discriminator"})
def cyclegan(
    parts: Parts,
    /,
    *,
    lambda_a: float = 10.0,
    lambda_b: float = 10.0,
    lambda_identity: float = 0.5,
    pool_size: int = 50,
    gan_mode: GANLossName = "lsgan",
) -> CycleGAN:
    """CycleGAN (Zhu et al. 2017): two generators, two discriminators, cycle and identity losses.

    The recipe's [generator] table builds G_A (A -> B) and G_B (B -> A, channels swapped); its
    [discriminator] table builds D_A (on B images) and D_B (on A images).

    Args:
        parts: builds the recipe's [generator] and [discriminator] (given by the trainer).
        lambda_a: weight of the cycle loss A -> B -> A; the paper uses 10.
        lambda_b: weight of the cycle loss B -> A -> B; the paper uses 10.
        lambda_identity: identity loss, as a fraction of lambda_a/lambda_b; the paper uses 0.5
            (0 turns it off; it needs as many input as output channels).
        pool_size: the discriminators' history pools of generated images; the paper uses 50.
        gan_mode: the adversarial loss: lsgan (the paper's), vanilla, hinge or wgangp.
    """
    if min(lambda_a, lambda_b, lambda_identity) < 0:
        raise ValueError(f"Expected lambdas >= 0, got {lambda_a}, {lambda_b}, {lambda_identity}")
    if pool_size < 0:
        raise ValueError(f"Expected pool_size >= 0, got {pool_size}")
    c_a, c_b = parts.in_channels, parts.out_channels
    if lambda_identity > 0 and c_a != c_b:
        raise ValueError(
            f"the identity loss needs as many input as output channels, got {c_a} and {c_b}; "
            "set method.lambda_identity = 0 or make data.in_channels equal data.out_channels"
        )
    gan_loss = parts.loss(gan_mode)
    return CycleGAN(
        parts.generator(),
        parts.generator(in_channels=c_b, out_channels=c_a),
        parts.discriminator(in_channels=c_b),
        parts.discriminator(in_channels=c_a),
        gan_loss,
        lambda_a=lambda_a,
        lambda_b=lambda_b,
        lambda_identity=lambda_identity,
        pool_size=pool_size,
    )
