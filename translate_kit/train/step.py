"""One training step: the method's `training_step` with precision-aware, NaN-safe updates.

`StepRunner` is the `StepContext` a method's `training_step` gets, and calling it runs one whole
step and says what happened:

    runner = StepRunner(method, optimizers, device=device, autocast_dtype=None, scaler=None)
    result = runner(batch, step=0, epoch=0)      # -> StepResult(scalars, skipped)

The trainer and `tkit bench` both step through it, so a benchmark times exactly what training runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from translate_kit.method import Method
from translate_kit.train.distributed import Distributed
from translate_kit.train.optim import EMA

__all__ = ["StepResult", "StepRunner"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did.

    Attributes:
        scalars: the method's logged scalars (detached tensors, still on the device).
        skipped: the optimiser groups whose update was skipped for a NaN/inf loss or gradient.
    """

    scalars: dict[str, torch.Tensor]
    skipped: tuple[str, ...] = ()

    @property
    def nonfinite(self) -> bool:
        """Whether any update of the step was skipped."""
        return bool(self.skipped)


class StepRunner:
    """Runs `method.training_step` and is its `StepContext` (see the module docstring).

    With several processes (`distributed`), the gradients are averaged by DistributedDataParallel
    inside `backward`, and the decision to skip a non-finite update is taken from every rank's
    loss, so that all ranks skip or step together.

    Args:
        method: the method, its networks on the device (and wrapped as the trainer wants).
        optimizers: one per optimiser group the method declares.
        device: the training device.
        autocast_dtype: mixed-precision dtype of forward passes; None for fp32.
        scaler: a `GradScaler` for fp16, else None.
        distributed: this process's place among several (default: one process).
        ema: moving averages updated after every step, or None.
    """

    def __init__(
        self,
        method: Method,
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        scaler: torch.amp.GradScaler | None,
        distributed: Distributed | None = None,
        ema: EMA | None = None,
    ) -> None:
        self.method, self.optimizers, self.device = method, optimizers, device
        self.autocast_dtype, self.scaler, self.ema = autocast_dtype, scaler, ema
        self.distributed = distributed if distributed is not None else Distributed()
        self.step = self.epoch = 0
        self._skipped: list[str] = []
        self._scaler_stepped = False  # GradScaler.update() is valid only after at least one scaler.step()

    def __call__(self, batch: Mapping[str, Any], *, step: int, epoch: int) -> StepResult:
        """One optimisation step on a prepared batch (`Method.prepare_batch`)."""
        self.step, self.epoch = step, epoch
        self._skipped, self._scaler_stepped = [], False
        scalars = self.method.training_step(batch, self)
        if self._scaler_stepped:  # a step whose every update was skipped has nothing to unscale
            assert self.scaler is not None
            self.scaler.update()
        if self.ema is not None:
            self.ema.update()
        return StepResult({k: v.detach() for k, v in scalars.items()}, tuple(self._skipped))

    # The StepContext a method sees.

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def update(self, group: str, loss: torch.Tensor) -> bool:
        optimizer = self.optimizers.get(group)
        if optimizer is None:
            raise KeyError(f"Unknown optimiser group {group!r}; the method declares {sorted(self.optimizers)}")
        if self.scaler is not None:
            # fp16: the scaler itself skips updates with inf/NaN gradients (an overflow of the
            # scale, expected now and then; the gradients are already averaged over the ranks, so
            # every rank's scaler agrees); only a non-finite loss counts as divergence. Across
            # processes that check must come before backward: a rank skipping backward alone
            # would leave the others waiting in DDP's gradient all-reduce.
            if not self.distributed.all_finite(loss):
                return self._skip(group, optimizer)
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self._scaler_stepped = True
        else:
            loss.backward()
            # One check, one device sync, for the loss and every gradient (see `_gradient_probe`).
            # The gradients are the same on every rank after DDP's all-reduce, the losses are
            # not, so the verdict is agreed between the ranks.
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            probe = _gradient_probe(grads) if grads else loss.detach()
            if not self.distributed.all_finite(probe + loss.detach().float()):
                # Skip rather than poison the weights; many in a row means the run has diverged.
                return self._skip(group, optimizer)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.method.after_update(group)
        return True

    def _skip(self, group: str, optimizer: torch.optim.Optimizer) -> bool:
        optimizer.zero_grad(set_to_none=True)
        self._skipped.append(group)
        self.method.after_update(group)  # a projection may run again: the weights did not move
        return False


def _gradient_probe(grads: list[torch.Tensor]) -> torch.Tensor:
    """A scalar that is NaN or inf if any gradient element is (and, harmlessly, when finite ones
    overflow it, which only a diverged run's gradients do).

    A sum propagates NaN and inf (inf + -inf is NaN), so one plain reduction pass suffices; on the
    CPU a per-tensor sum costs about a tenth of a max-abs norm (docs/benchmarks.md). On CUDA the
    multi-tensor norm kernel does the same in a launch or two.
    """
    if grads[0].is_cuda:
        return torch.nn.utils.get_total_norm(grads, foreach=True)
    return torch.stack([g.sum() for g in grads]).sum()
