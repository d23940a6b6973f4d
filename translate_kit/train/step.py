"""One training step: the method's `training_step` with precision-aware, NaN-safe updates.

`StepRunner` is the `StepContext` a method's `training_step` gets, and calling it runs one whole
step and says what happened:

    runner = StepRunner(method, optimizers, device=device, autocast_dtype=None, scaler=None)
    result = runner(batch, step=0, epoch=0)      # -> StepResult(scalars, skipped)

The trainer and `tkit bench` both step through it, so a benchmark times exactly what training runs.

A non-finite loss or gradient skips its update. Where that is decided is `nonfinite_check`:

- "host" reads one flag per update from the device (a synchronisation: the host waits for the
  step's kernels to finish) and skips on the host, so `StepResult.skipped` names the groups at once;
- "device" never waits: the flag stays a device tensor that fused Adam reads itself (its
  `found_inf`, the mechanism torch's GradScaler uses: the update and the step count are left
  exactly as they were), and `StepResult.pending` carries it to whoever counts skipped steps
  (`NonfiniteCounter`, a few hundred steps later in one read). It needs fused Adam/AdamW in every
  group and no fp16 grad scaler; it is what lets a whole step run ahead of the host, or be
  captured as one CUDA graph (`graphs.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from translate_kit.method import Method
from translate_kit.train.distributed import Distributed
from translate_kit.train.optim import EMA

__all__ = ["NonfiniteCounter", "StepResult", "StepRunner", "device_check_blocker"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step did.

    Attributes:
        scalars: the method's logged scalars (detached tensors, still on the device).
        skipped: the optimiser groups whose update was skipped for a NaN/inf loss or gradient
            (checked on the host).
        pending: with the device-side check, a 0-dim float tensor on the device, 1 where some
            update of the step was skipped; None otherwise.
    """

    scalars: dict[str, torch.Tensor]
    skipped: tuple[str, ...] = ()
    pending: torch.Tensor | None = None

    @property
    def nonfinite(self) -> bool:
        """Whether any update of the step was skipped (reading `pending` waits for the device)."""
        return bool(self.skipped) or (self.pending is not None and bool(self.pending))


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
        nonfinite_check: where a non-finite update is detected and skipped, "host" or "device"
            (module docstring; `device_check_blocker` says whether "device" is possible).
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
        nonfinite_check: Literal["host", "device"] = "host",
    ) -> None:
        self.method, self.optimizers, self.device = method, optimizers, device
        self.autocast_dtype, self.scaler, self.ema = autocast_dtype, scaler, ema
        self.distributed = distributed if distributed is not None else Distributed()
        if nonfinite_check == "device" and (blocker := device_check_blocker(optimizers, scaler)):
            raise ValueError(f"The device-side non-finite check is not possible here: {blocker}.")
        self.nonfinite_check = nonfinite_check
        # Autocast's cache of cast weights must be off while a CUDA graph is captured (graphs.py).
        self.autocast_cache = True
        self.step = self.epoch = 0
        self._skipped: list[str] = []
        self._flags: list[torch.Tensor] = []
        self._scaler_stepped = False  # GradScaler.update() is valid only after at least one scaler.step()

    def __call__(self, batch: Mapping[str, Any], *, step: int, epoch: int) -> StepResult:
        """One optimisation step on a prepared batch (`Method.prepare_batch`)."""
        self.step, self.epoch = step, epoch
        self._skipped, self._flags, self._scaler_stepped = [], [], False
        scalars = self.method.training_step(batch, self)
        if self._scaler_stepped:  # a step whose every update was skipped has nothing to unscale
            assert self.scaler is not None
            self.scaler.update()
        if self.ema is not None:
            self.ema.update()
        pending = torch.stack(self._flags).amax() if self._flags else None
        return StepResult({k: v.detach() for k, v in scalars.items()}, tuple(self._skipped), pending)

    # The StepContext a method sees.

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=self.autocast_cache)

    def update(self, group: str, loss: torch.Tensor) -> bool | torch.Tensor:
        optimizer = self.optimizers.get(group)
        if optimizer is None:
            raise KeyError(f"Unknown optimiser group {group!r}; the method declares {sorted(self.optimizers)}")
        if self.nonfinite_check == "device":
            return self._update_on_device(group, optimizer, loss)
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

    def _update_on_device(self, group: str, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
        """The update with the check left on the device: fused Adam skips it where the flag is 1."""
        loss.backward()
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        probe = (_gradient_probe(grads) if grads else 0) + loss.detach().float()
        flag = self.distributed.any_on_device(torch.isfinite(probe).logical_not().float().reshape(()))
        optimizer.found_inf = flag  # type: ignore[attr-defined]  # read by Adam/AdamW's fused step
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
        optimizer.zero_grad(set_to_none=True)
        self._flags.append(flag)
        self.method.after_update(group)
        return flag == 0

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


def device_check_blocker(optimizers: Mapping[str, torch.optim.Optimizer], scaler: Any) -> str | None:
    """Why the device-side non-finite check cannot run with these optimisers, or None if it can."""
    if scaler is not None:
        return "fp16's grad scaler does its own check (train.precision = \"bf16\" or \"fp32\" have none)"
    unfused = sorted(g for g, o in optimizers.items() if not o.defaults.get("fused"))
    if unfused:
        return f"optimiser group(s) {', '.join(unfused)} have no fused Adam step to skip an update on the device"
    return None


class NonfiniteCounter:
    """Counts skipped steps in step order into a `TrainState`, reading device flags in bulk.

    A host-checked step is counted at once; a device-checked one (`StepResult.pending`) waits in a
    list until `settle`, which reads them all with one synchronisation, in order, so the totals,
    the run of steps in a row and the stop after `limit` of them are exactly those of a per-step
    count, only known later (the trainer settles before every log line and checkpoint).
    """

    def __init__(self, state: Any, *, limit: int, checkpoint_dir: Path) -> None:
        self.state, self.limit, self.checkpoint_dir = state, limit, checkpoint_dir
        self._pending: list[torch.Tensor] = []

    def add(self, result: StepResult) -> None:
        if result.pending is None:
            self.settle()
            self.state.count_nonfinite(bool(result.skipped), limit=self.limit, checkpoint_dir=self.checkpoint_dir)
        else:  # a copy: a replayed CUDA graph writes its next flag into the same tensor
            self._pending.append(result.pending.detach().clone())

    def settle(self) -> None:
        if not self._pending:
            return
        flags, self._pending = torch.stack(self._pending).tolist(), []
        for flag in flags:
            self.state.count_nonfinite(flag > 0, limit=self.limit, checkpoint_dir=self.checkpoint_dir)
