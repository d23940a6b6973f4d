"""The method contract: how a training method (pix2pix, CycleGAN, ...) meets the trainer.

A method owns its networks and losses and does one optimisation step on a batch. The trainer owns
everything around it: the device, precision, optimisers and their schedules, checkpoints, logging
and distribution. So that pix2pix, pix2pixHD and CycleGAN fit without the trainer knowing which
is which:

- the method keeps its networks in `self.nets` (an `nn.ModuleDict`: `{"G", "D"}` or
  `{"G_A", "G_B", "D_A", "D_B"}`) and says in `optimizer_groups()` which networks each optimiser
  updates (`{"G": ["G"], "D": ["D"]}`);
- `training_step(batch, ctx)` runs its forward passes under `ctx.autocast()` and calls
  `ctx.update("D", loss_D)` then `ctx.update("G", loss_G)`; the context does the precision-aware
  backward, skips non-finite losses, steps the optimiser and zeroes gradients, so no method touches
  AMP or DDP; it returns the scalars to log (detached tensors);
- `translate(x)` is inference: the trainer's sample pages call only that.

A method factory receives a `Parts` as its positional-only first argument and builds its networks
from the recipe's tables through it:

    @register_method()
    def pix2pix(parts: Parts, /, *, lambda_l1: float = 100.0) -> Pix2Pix:
        return Pix2Pix(parts.generator(), parts.discriminator(in_channels=6), lambda_l1=lambda_l1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, Protocol

import torch
from torch import nn

__all__ = ["Method", "Parts", "StepContext", "frozen", "test_time"]


class StepContext(Protocol):
    """What the trainer hands to `Method.training_step`."""

    step: int  # optimisation steps done before this one
    epoch: int  # 0-based

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Mixed precision for forward passes where the recipe asks for it; a no-op otherwise."""

    def update(self, group: str, loss: torch.Tensor) -> bool:
        """Backward `loss`, step optimiser `group`, zero its gradients; False if skipped (non-finite)."""


class Method(nn.Module):
    """Base class of training methods; see the module docstring for the contract."""

    nets: nn.ModuleDict
    # How the trainer's sample pages run `translate`: "paper" (pix2pix's test time: dropout on,
    # batch statistics) or "eval" (deterministic; right for a segmenter).
    sample_mode: Literal["paper", "eval"] = "paper"
    # The networks `translate` runs: what `tkit export` writes and an exported model must hold.
    inference_nets: tuple[str, ...] = ("G",)

    def optimizer_groups(self) -> dict[str, list[str]]:
        """Optimiser name -> the networks in `self.nets` it updates, in update order."""
        raise NotImplementedError

    def training_step(self, batch: Mapping[str, torch.Tensor], ctx: StepContext) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch of images in [-1, 1]; returns the scalars to log."""
        raise NotImplementedError

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        """Translate inputs `(B, C_in, H, W)` in [-1, 1] to outputs `(B, C_out, H, W)` in [-1, 1]."""
        return self.nets["G"](x)

    def extra_state(self) -> dict[str, Any]:
        """State beyond the networks that a checkpoint must keep (e.g. an image pool); tensors only."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `extra_state` returned."""


class Parts(Protocol):
    """Builds components from the recipe's tables for a method factory."""

    def generator(self, **fixed: Any) -> nn.Module:
        """A new generator from the recipe's [generator] table; `fixed` options override nothing the
        recipe sets differently (a clash is a recipe error)."""

    def discriminator(self, **fixed: Any) -> nn.Module:
        """A new discriminator from the recipe's [discriminator] table."""

    def segmenter(self, **fixed: Any) -> nn.Module:
        """A new segmenter from the recipe's [segmenter] table (e.g. `num_classes` fixed by the method)."""

    def loss(self, name: str, **options: Any) -> nn.Module:
        """A loss component by registry name."""

    @property
    def in_channels(self) -> int:
        """Channels of the method's input images (after `data.direction`)."""

    @property
    def out_channels(self) -> int:
        """Channels of the target images."""


@contextlib.contextmanager
def frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Turn off gradients of `modules`' parameters inside the block (a GAN's D during the G step),
    restoring each parameter's previous flag afterwards."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@contextlib.contextmanager
def test_time(module: nn.Module, mode: Literal["paper", "eval"] = "eval") -> Iterator[None]:
    """Put `module` in a test-time mode inside the block, restoring every submodule's mode after.

    Args:
        module: a network or a whole method.
        mode: "eval" is deterministic (dropout off, batch norm with its running statistics);
            "paper" is pix2pix's test time: dropout on and batch norm with the test batch's own
            statistics. The running statistics are left untouched in both modes.
    """
    modes = [(m, m.training) for m in module.modules()]
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [m.track_running_stats for m in norms]
    if mode == "eval":
        module.eval()
    elif mode == "paper":
        module.train()
        for m in norms:  # batch statistics, and no update of the running ones
            m.track_running_stats = False
    else:
        raise ValueError(f"Expected mode 'paper' or 'eval', got {mode!r}")
    try:
        yield
    finally:
        for m, flag in zip(norms, tracking):
            m.track_running_stats = flag
        for m, training in modes:
            m.training = training
