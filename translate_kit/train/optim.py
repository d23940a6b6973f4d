"""Optimisers, learning-rate schedules and the moving average of weights.

Each optimiser group the method declares gets its own optimiser, whose settings come, key by key,
from the recipe's `[train.optimizers.<group>]` table, else the method's `optimizer_defaults()`,
else `[train]` (`lr`, `betas`; Adam; no weight decay). RMSprop is offered for the critics of
DualGAN and WGAN-style methods (`optimizer = "rmsprop"`, `alpha`). The schedule is the pix2pix reference's
"linear" policy for every group.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from translate_kit.method import Method, unwrap
from translate_kit.recipe import OptimizerSettings, TrainConfig

__all__ = ["EMA", "allocate_adam_state", "build_optimizers", "linear_decay", "lr_factor", "optimizer_settings"]


def optimizer_settings(method: Method, train: TrainConfig) -> dict[str, OptimizerSettings]:
    """The resolved settings of every optimiser group of `method` (no key left None)."""
    base = OptimizerSettings(optimizer="adam", lr=train.lr, betas=train.betas, weight_decay=0.0, alpha=0.99)
    defaults = method.optimizer_defaults()
    return {
        group: train.optimizers.get(group, OptimizerSettings()).over(defaults.get(group, OptimizerSettings()).over(base))
        for group in method.optimizer_groups()
    }


def build_optimizers(method: Method, train: TrainConfig, device: torch.device) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per group, over the trainable parameters of the group's networks."""
    optimizers: dict[str, torch.optim.Optimizer] = {}
    settings = optimizer_settings(method, train)
    for group, net_names in method.optimizer_groups().items():
        params = [p for n in net_names for p in method.nets[n].parameters() if p.requires_grad]
        s = settings[group]
        if s.optimizer == "rmsprop":  # no fused kernel exists; torch's multi-tensor (foreach) path
            optimizers[group] = torch.optim.RMSprop(params, lr=s.lr, alpha=s.alpha, weight_decay=s.weight_decay)
            continue
        cls = torch.optim.AdamW if s.optimizer == "adamw" else torch.optim.Adam
        # Fused (one vectorised pass per parameter) on CUDA and the CPU: at batch 1 the
        # per-tensor loop of the default CPU Adam costs a fifth of a 256-pixel pix2pix step.
        fused = True if device.type in ("cuda", "cpu") else None
        optimizers[group] = cls(params, lr=s.lr, betas=s.betas, weight_decay=s.weight_decay, fused=fused)
        allocate_adam_state(optimizers[group])
    return optimizers


def allocate_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Create an Adam optimiser's moment buffers now, as its first `step()` would (zero moments,
    step 0), for every parameter that has none yet.

    Adam makes its state lazily, inside the first step, after that step's activations were freed.
    With freed memory kept in the process (`translate_kit.allocator`, which `tkit train` turns on
    for the CPU) the moments (twice the parameters) then fill the holes the activations left, and
    the second step's activations need new memory on top (docs/benchmarks.md). Made before any
    activation exists, they sit apart from them. Training is bit-for-bit the same
    (tests/test_train.py). The state goes in through `load_state_dict`, Adam's public format.
    """
    index, state = 0, {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state[index] = optimizer.state[p] if p in optimizer.state else {
                "step": torch.zeros((), dtype=torch.float32),  # load_state_dict moves it where fused Adam wants it
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                **({"max_exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                   if group.get("amsgrad") else {}),
            }
            index += 1
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def lr_factor(train: TrainConfig) -> Callable[[int], float]:
    """`train.schedule` as a LambdaLR factor of the epoch index (see `TrainConfig`).

    Example:
        >>> from translate_kit.recipe import TrainConfig
        >>> [round(lr_factor(TrainConfig(epochs=1, decay_epochs=4, schedule="cosine"))(e), 3) for e in range(5)]
        [1.0, 1.0, 0.854, 0.5, 0.146]
        >>> [lr_factor(TrainConfig(schedule="step", milestones=(2, 4), gamma=0.5))(e) for e in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    if train.schedule == "linear":
        return linear_decay(train.epochs, train.decay_epochs)
    if train.schedule == "cosine":
        epochs, decay = train.epochs, max(train.decay_epochs, 1)

        def cosine(epoch: int) -> float:
            done = min(max(epoch - epochs, 0), decay)  # the last decay epoch still trains, above 0
            return 0.5 * (1.0 + math.cos(math.pi * done / decay))

        return cosine
    milestones, gamma = tuple(train.milestones), train.gamma

    def step(epoch: int) -> float:
        return gamma ** sum(1 for m in milestones if epoch >= m)

    return step


def linear_decay(epochs: int, decay_epochs: int) -> Callable[[int], float]:
    """The pix2pix reference's "linear" policy as a LambdaLR factor of the epoch index.

    Constant for `epochs` epochs, then falling by 1/(decay_epochs + 1) per epoch; the last epoch
    trains at 1/(decay_epochs + 1) of the initial rate (the reference never reaches exactly 0).
    """

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(decay_epochs + 1)

    return factor


class EMA:
    """Exponential moving averages of some networks' weights (`train.ema_decay`).

    After every step, each averaged parameter moves towards the trained one:
    `avg = decay * avg + (1 - decay) * live`; buffers (batch-norm statistics) are copied, as they
    are averages already. The averages start equal to the networks. Every process of a
    distributed run holds the same weights, so each keeps the same averages.

    Args:
        nets: name -> the live network (wrappers such as DDP or torch.compile are looked through).
        decay: weight of the past, in [0, 1) (BasicSR: 0.999).

    Example:
        >>> net = nn.Linear(1, 1, bias=False)
        >>> _ = nn.init.constant_(net.weight, 0.0)
        >>> ema = EMA({"net": net}, decay=0.75)
        >>> _ = nn.init.constant_(net.weight, 1.0)  # a training step
        >>> ema.update()
        >>> ema.nets["net"].weight.item()
        0.25
    """

    def __init__(self, nets: Mapping[str, nn.Module], decay: float) -> None:
        self.decay = decay
        live = {name: unwrap(net) for name, net in nets.items()}
        self.nets = {name: copy.deepcopy(net).requires_grad_(False) for name, net in live.items()}
        self._pairs = [
            (list(self.nets[name].parameters()), list(net.parameters()), list(self.nets[name].buffers()),
             list(net.buffers()))
            for name, net in live.items()
        ]

    @torch.no_grad()
    def reset(self) -> None:
        """Start the averages afresh from the networks' current weights (after loading a checkpoint
        that kept none)."""
        for avg_params, live_params, avg_buffers, live_buffers in self._pairs:
            for avg, live in zip([*avg_params, *avg_buffers], [*live_params, *live_buffers]):
                avg.copy_(live)

    @torch.no_grad()
    def update(self) -> None:
        for avg_params, live_params, avg_buffers, live_buffers in self._pairs:
            if avg_params:
                torch._foreach_lerp_(avg_params, [p.detach() for p in live_params], 1.0 - self.decay)
            for avg, live in zip(avg_buffers, live_buffers):
                avg.copy_(live)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: net.state_dict() for name, net in self.nets.items()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state[name])

    @contextlib.contextmanager
    def applied(self, method: Method) -> Iterator[None]:
        """Inside the block, `method.nets` holds the averaged networks in place of the live ones."""
        live = {name: method.nets[name] for name in self.nets}
        for name, net in self.nets.items():
            method.nets[name] = net
        try:
            yield
        finally:
            for name, net in live.items():
                method.nets[name] = net
