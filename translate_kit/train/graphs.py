"""The whole training step as one CUDA graph (`train.cuda_graphs`).

At batch 1 a pix2pix step on a current GPU is a few hundred small kernels whose work takes well
under a millisecond, while launching them from Python costs tens of microseconds each: the step is
bound by the host. A CUDA graph records the step's kernels once (`torch.cuda.graph`) and replays
them with one launch, so the host only copies the next batch into the graph's input buffers.

Capture records what the step does on the device, once; so the step must do the same thing every
time, and must never make the host wait for the device:

- the method promises a static step (`Method.static_step`): the same kernels and shapes at every
  step, no branch on the step number or on host random numbers, no `.item()`;
- the non-finite check runs on the device (`StepRunner`'s "device" check: fused Adam skips a
  bad update itself), so Adam/AdamW in every group and no fp16 grad scaler;
- learning rates are tensors on the device, which the schedule fills in place: the graph reads
  the new rate without being captured again;
- autocast's weight cache is off (its cached casts would be freed between replays);
- one process (DDP's gradient hooks are not captured here), and not `train.compile`.

`graph_blocker` says which of these fails, and the trainer prints it in one line and trains
eagerly. `GraphedStep` runs the first `warmup` steps eagerly on a side stream (which sets up
optimiser state, cuDNN's algorithm choices and autograd's streams before capture, as CUDA graphs
require), captures the next step and replays it for every step after, each one exactly one step:
the weights, optimiser states and random streams advance as the eager steps' do. Capture needs a
GPU; on the CPU the plan and its messages are tested, and `benchmarks/gpu_paper_run.py` checks a
graphed run against an eager one on a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from translate_kit.method import Method
from translate_kit.recipe import TrainConfig
from translate_kit.train.distributed import Distributed
from translate_kit.train.optim import EMA
from translate_kit.train.step import StepResult, StepRunner, device_check_blocker

__all__ = ["GraphedStep", "graph_blocker", "lr_tensors", "portable_state", "training_step"]

TrainStep = Callable[..., StepResult]  # called as `step(batch, step=..., epoch=...)`


def training_step(
    method: Method, optimizers: Mapping[str, torch.optim.Optimizer], train: TrainConfig, *, device: torch.device,
    autocast_dtype: torch.dtype | None, scaler: Any, distributed: Distributed, ema: EMA | None,
    say: Callable[..., Any] | None = None,
) -> tuple[StepRunner, TrainStep]:
    """The trainer's step: the runner (with the recipe's non-finite check) and what to call each
    step, a `GraphedStep` around it where `train.cuda_graphs` allows and nothing blocks capture.

    On a GPU that cannot capture, `say` gets one line saying why; on the CPU nothing is said.
    """
    device_ok = device_check_blocker(optimizers, scaler) is None
    check = train.nonfinite_check
    if check == "auto":
        check = "device" if device.type == "cuda" and device_ok else "host"
    runner = StepRunner(method, optimizers, device=device, autocast_dtype=autocast_dtype, scaler=scaler,
                        distributed=distributed, ema=ema, nonfinite_check=check)
    if train.cuda_graphs == "off":
        return runner, runner
    blocker = graph_blocker(method, optimizers, device=device, scaler=scaler, distributed=distributed.enabled,
                            compiled=train.compile)
    if blocker is None and check != "device":
        blocker = "train.nonfinite_check = \"host\" waits for the device at every update"
    line = say if say is not None else (lambda *args, **kwargs: None)
    if blocker is None:
        return runner, GraphedStep(runner, say=lambda text: line(text, markup=False, highlight=False))
    if device.type == "cuda":
        line(f"No CUDA graph for the training step: {blocker}; training eagerly.", markup=False, highlight=False)
    return runner, runner


def graph_blocker(
    method: Method, optimizers: Mapping[str, torch.optim.Optimizer], *, device: torch.device, scaler: Any,
    distributed: bool, compiled: bool,
) -> str | None:
    """Why this run's step cannot be captured as a CUDA graph, or None when it can.

    Example:
        >>> graph_blocker(Method(), {}, device=torch.device("cpu"), scaler=None, distributed=False, compiled=False)
        'the device is not a CUDA GPU'
    """
    if device.type != "cuda":
        return "the device is not a CUDA GPU"
    if distributed:
        return "several processes train together (DDP's gradient all-reduce is not captured)"
    if compiled:
        return "train.compile is on (torch.compile's own mode=\"reduce-overhead\" captures graphs)"
    if not method.static_step:
        return (f"the method ({type(method).__name__}) does not declare a static step (Method.static_step: the "
                "same kernels every step, no host reads)")
    return device_check_blocker(optimizers, scaler)


def lr_tensors(optimizers: Mapping[str, torch.optim.Optimizer], device: torch.device) -> None:
    """Make every group's learning rate a 0-dim tensor on `device` (kept if it is one already).

    The schedule then writes new rates into these tensors in place (torch's schedulers `fill_` a
    tensor rate), which a captured graph reads at each replay. Checkpoints store plain floats
    (`portable_state`), so a run resumes on any device.
    """
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            lr = group["lr"]
            if not (isinstance(lr, torch.Tensor) and lr.device == device):
                group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)


def portable_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`optimizer.state_dict()` with plain-float learning rates (see `lr_tensors`)."""
    state = optimizer.state_dict()
    groups = [{**g, "lr": float(g["lr"])} if isinstance(g["lr"], torch.Tensor) else g for g in state["param_groups"]]
    return {**state, "param_groups": groups}


class GraphedStep:
    """A `StepRunner` step captured once and replayed (module docstring). Call it as the runner.

    Args:
        runner: the step runner, built with the "device" non-finite check.
        warmup: eager steps before the capture (on a side stream).
        say: prints one line (the capture's outcome).
    """

    def __init__(self, runner: StepRunner, *, warmup: int = 3, say: Any = print) -> None:
        if runner.nonfinite_check != "device":
            raise ValueError("GraphedStep needs a StepRunner with nonfinite_check=\"device\"")
        self.runner, self.warmup, self.say = runner, warmup, say
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self._eager_steps = 0
        self._inputs: dict[str, torch.Tensor] = {}
        self._packed: torch.Tensor | None = None  # the scalars and the skip flag, written by each replay
        self._names: list[str] = []

    def __call__(self, batch: Mapping[str, Any], *, step: int, epoch: int) -> StepResult:
        if self.failed or (self.graph is not None and not self._fits(batch)):
            return self.runner(batch, step=step, epoch=epoch)  # eager (a batch of other shapes, or no graph)
        if self.graph is None:
            if self._eager_steps < self.warmup:
                self._eager_steps += 1
                return self._on_side_stream(batch, step, epoch)
            if not self._capture(batch, step, epoch):
                return self.runner(batch, step=step, epoch=epoch)
        for key, buffer in self._inputs.items():
            buffer.copy_(batch[key], non_blocking=True)
        self.runner.step, self.runner.epoch = step, epoch
        assert self.graph is not None and self._packed is not None
        self.graph.replay()
        values = self._packed.clone().unbind()
        return StepResult(dict(zip(self._names, values[:-1], strict=True)), (), values[-1])

    def _fits(self, batch: Mapping[str, Any]) -> bool:
        return all(isinstance(batch.get(k), torch.Tensor) and batch[k].shape == b.shape and batch[k].dtype == b.dtype
                   for k, b in self._inputs.items())

    def _on_side_stream(self, batch: Mapping[str, Any], step: int, epoch: int) -> StepResult:
        side = torch.cuda.Stream(self.runner.device)
        side.wait_stream(torch.cuda.current_stream(self.runner.device))
        with torch.cuda.stream(side):
            result = self.runner(batch, step=step, epoch=epoch)
        torch.cuda.current_stream(self.runner.device).wait_stream(side)
        return result

    def _capture(self, batch: Mapping[str, Any], step: int, epoch: int) -> bool:
        """Record one step on static copies of `batch`; False (said once) if capture fails."""
        runner = self.runner
        lr_tensors(runner.optimizers, runner.device)
        for optimizer in runner.optimizers.values():
            for group in optimizer.param_groups:
                group["capturable"] = True  # torch refuses to capture an optimiser step otherwise
            optimizer.zero_grad(set_to_none=True)  # gradients are then allocated in the graph's pool
        self._inputs = {k: v.detach().clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        static_batch = {**batch, **self._inputs}
        runner.autocast_cache = False
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(runner.device)
        try:
            with torch.cuda.graph(graph):
                result = runner(static_batch, step=step, epoch=epoch)
                assert result.pending is not None
                self._names = list(result.scalars)
                self._packed = torch.stack([v.float().reshape(()) for v in result.scalars.values()]
                                           + [result.pending.float().reshape(())])
        except Exception as exc:  # noqa: BLE001 - any capture failure falls back to the eager step
            self.failed, runner.autocast_cache = True, True
            for optimizer in runner.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.say(f"CUDA graph capture of the training step failed ({type(exc).__name__}: {first}); "
                     "training eagerly. Set train.cuda_graphs = \"off\" to skip the attempt.")
            return False
        self.graph = graph
        self.say(f"Training step captured as one CUDA graph after {self._eager_steps} eager steps.")
        return True
