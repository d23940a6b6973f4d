"""The trainer: everything around a method's optimisation step.

The method (pix2pix, ...) owns its networks and losses and does one step on a batch. The trainer
owns the rest: device and precision, optimisers and their schedules, data order and jitter, the
run folder with its checkpoints, samples and page, progress, and the run events plugins listen to.

    trainer = Trainer(recipe, registry=registry, pm=pm, console=console)
    trainer.fit()

Under torchrun the same trainer runs once per process (see `distributed.py`): each network is
wrapped in DistributedDataParallel, each rank trains on its share of every global batch, and rank
0 alone writes the run folder, prints and calls the run-event hooks.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from translate_kit import __version__
from translate_kit.allocator import keep_freed_memory
from translate_kit.data.jitter import PairedJitter, to_unit_range
from translate_kit.data.loading import EpochSampler, PreparedDataset, make_loader
from translate_kit.errors import CheckpointError, DataError, RecipeError, TrainingError
from translate_kit.method import Method, test_time
from translate_kit.pages import SampleRow, save_png, write_run_page
from translate_kit.progress import make_progress
from translate_kit.recipe import Recipe
from translate_kit.registry import Registry
from translate_kit.train.checkpoint import FORMAT, VERSION, atomic_save, newest_checkpoint, prune_checkpoints
from translate_kit.train.distributed import Distributed, parameter_fingerprints, stream_seed

__all__ = [
    "RecipeParts",
    "TrainState",
    "Trainer",
    "autocast_dtype",
    "linear_decay",
    "select_device",
    "uses_channels_last",
]


def select_device(name: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; other names are checked for availability."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RecipeError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError(f"Device {name!r} was asked for, but CUDA is not available here; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RecipeError(f"Device {name!r} was asked for, but MPS is not available here; use --device cpu.")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision` on `device`; None means fp32 (no autocast).

    "auto" is bf16 on CUDA where the GPU has it, fp16 (with a grad scaler) on older GPUs, and fp32
    elsewhere; "bf16"/"fp16" are taken as asked, on any device.
    """
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def uses_channels_last(memory_format: str, device: torch.device) -> bool:
    """`train.memory_format`: "auto" is channels_last on CUDA (tensor cores want NHWC), else contiguous."""
    return memory_format == "channels_last" or (memory_format == "auto" and device.type == "cuda")


def linear_decay(epochs: int, decay_epochs: int) -> Callable[[int], float]:
    """The pix2pix reference's "linear" policy as a LambdaLR factor of the epoch index.

    Constant for `epochs` epochs, then falling by 1/(decay_epochs + 1) per epoch; the last epoch
    trains at 1/(decay_epochs + 1) of the initial rate (the reference never reaches exactly 0).
    """

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(decay_epochs + 1)

    return factor


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DDP wrappers."""
    while True:
        inner = getattr(net, "_orig_mod", None) or getattr(net, "module", None)
        if not isinstance(inner, nn.Module):
            return net
        net = inner


@dataclass
class TrainState:
    """Where a run is: the resume point, saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    epoch_step: int = 0  # batches of that epoch already done
    step: int = 0  # optimisation steps done in total
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0


class RecipeParts:
    """Builds a method's components from the recipe's tables (the core side of `Parts`)."""

    def __init__(self, recipe: Recipe, registry: Registry) -> None:
        self.recipe, self.registry = recipe, registry

    @property
    def in_channels(self) -> int:
        return self.recipe.data.in_channels

    @property
    def out_channels(self) -> int:
        return self.recipe.data.out_channels

    def _build(self, kind: str, defaults: Mapping[str, Any], fixed: Mapping[str, Any]) -> nn.Module:
        method = self.recipe.components["method"]["name"]
        table = self.recipe.components.get(kind)
        if table is None:
            raise RecipeError(f"{self.recipe.source}: method {method!r} needs a [{kind}] table with a name.")
        spec = self.registry.get(kind, table.get("name", ""), where=f"{self.recipe.where(kind)}, name")
        accepted = {o.name for o in spec.options}
        # Channel counts follow the data unless the recipe says otherwise; the method's own
        # requirements (`fixed`) must not be contradicted.
        defaults = {k: v for k, v in defaults.items() if k in accepted and k not in table and k not in fixed}
        return self.registry.build(kind, {**table, **defaults}, where=self.recipe.where(kind), fixed=fixed)

    def generator(self, **fixed: Any) -> nn.Module:
        defaults = {"in_channels": self.in_channels, "out_channels": self.out_channels}
        return self._build("generator", defaults, fixed)

    def discriminator(self, **fixed: Any) -> nn.Module:
        return self._build("discriminator", {}, fixed)

    def segmenter(self, **fixed: Any) -> nn.Module:
        return self._build("segmenter", {"in_channels": self.in_channels}, fixed)

    def loss(self, name: str, **options: Any) -> nn.Module:
        return self.registry.build("loss", {"name": name, **options}, where=f"{self.recipe.where('method')}, loss")


class TrainContext:
    """The `StepContext` a method's `training_step` gets: precision-aware updates.

    With several processes (`distributed`), the gradients are averaged by DistributedDataParallel
    inside `backward`, and the decision to skip a non-finite update is taken from every rank's
    loss, so that all ranks skip or step together.
    """

    def __init__(
        self,
        optimizers: Mapping[str, torch.optim.Optimizer],
        *,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        scaler: torch.amp.GradScaler | None,
        state: TrainState,
        distributed: Distributed | None = None,
    ) -> None:
        self.optimizers, self.device, self.autocast_dtype, self.scaler = optimizers, device, autocast_dtype, scaler
        self.state = state
        self.distributed = distributed if distributed is not None else Distributed()
        self.skipped_this_step = False
        self.scaler_stepped = False  # GradScaler.update() is valid only after at least one scaler.step()

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def epoch(self) -> int:
        return self.state.epoch

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
                return self._skip(optimizer)
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler_stepped = True
        else:
            loss.backward()
            # One check, one device sync, for the loss and every gradient (see `_gradient_probe`).
            # The gradients are the same on every rank after DDP's all-reduce, the losses are
            # not, so the verdict is agreed between the ranks.
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            probe = _gradient_probe(grads) if grads else loss.detach()
            if not self.distributed.all_finite(probe + loss.detach().float()):
                # Skip rather than poison the weights; many in a row means the run has diverged.
                return self._skip(optimizer)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return True

    def _skip(self, optimizer: torch.optim.Optimizer) -> bool:
        optimizer.zero_grad(set_to_none=True)
        self.skipped_this_step = True
        return False


def allocate_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Create an Adam optimiser's moment buffers now, as its first `step()` would (zero moments,
    step 0), for every parameter that has none yet.

    Adam makes its state lazily, inside the first step, after that step's activations were freed.
    With freed memory kept in the process (`translate_kit.allocator`) the moments (twice the
    parameters: 435 MB for unet_256) then fill the holes the activations left, and the second
    step's activations need new memory on top: 40-70 MB more peak RSS at batch 4 (docs/benchmarks.md).
    Made before any activation exists, they sit apart from them. Training is bit-for-bit the same
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


def _gradient_probe(grads: list[torch.Tensor]) -> torch.Tensor:
    """A scalar that is NaN or inf if any gradient element is (and, harmlessly, when finite ones
    overflow it, which only a diverged run's gradients do).

    A sum propagates NaN and inf (inf + -inf is NaN), so one plain reduction pass suffices: on the
    CPU a per-tensor sum costs about a tenth of a max-abs norm (10 ms against 92 ms over the 54 M
    gradients of unet_256, measured), 8 % of a 256-pixel batch-1 step otherwise. On CUDA the
    multi-tensor norm kernel does the same in a launch or two.
    """
    if grads[0].is_cuda:
        return torch.nn.utils.get_total_norm(grads, foreach=True)
    return torch.stack([g.sum() for g in grads]).sum()


class Trainer:
    """Train a recipe's method; see the module docstring.

    Args:
        recipe: a validated recipe.
        registry: the components the recipe names.
        pm: the plugin manager whose run-event hooks are called.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        console: rich console for progress and messages (none: quiet).
        run_dir: the run folder (default `<run.dir>/<run.name>`).
        resume: continue from the newest checkpoint in `run_dir`.
        overwrite: delete an existing run folder and start over.
        checkpoint: with `resume`, the (path, contents) of that checkpoint when the caller has
            already loaded it (a pix2pix checkpoint with Adam states is about 0.7 GB).
        distributed: this process's place among several training processes (torchrun); by
            default the initialised process group's, or a single process. `train.batch_size` is
            the global batch: each of the `world_size` ranks trains on `batch_size / world_size`
            images per step.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        registry: Registry,
        pm: Any,
        device: str = "auto",
        console: Any | None = None,
        run_dir: Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        checkpoint: tuple[Path, Mapping[str, Any]] | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self.dist = distributed if distributed is not None else Distributed.current()
        # Only rank 0 prints: other ranks draw no progress bars and report nothing twice.
        self.recipe, self.registry, self.pm = recipe, registry, pm
        self.console = console if self.dist.is_main else None
        self.device = self.dist.place(select_device(device))
        if self.device.type == "cpu":
            keep_freed_memory()  # glibc would page-fault every step's activations back in (see allocator.py)
        self.run_dir = Path(run_dir) if run_dir is not None else Path(recipe.run.dir) / recipe.run.name
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.state = TrainState()
        self.history: list[dict[str, float]] = []
        self.stop_requested = False  # agreed by every rank after each step; see _sync_stop
        self._stop_signal = False  # this process got SIGINT/SIGTERM
        self.resumed_from: Path | None = None
        self._reset_log_window()
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_count = 0
        train = recipe.train
        self.rank_batch_size = self._check_global_batch()

        resume_from = self._check_run_dir(resume=resume, overwrite=overwrite, checkpoint=checkpoint)
        random.seed(recipe.run.seed)
        torch.manual_seed(recipe.run.seed)

        # Method and networks. Every rank builds them from the same seed, so all start equal
        # (DistributedDataParallel also copies rank 0's weights to the others when it wraps them).
        self.method: Method = registry.build(
            "method", recipe.components["method"], where=recipe.where("method"), args=(RecipeParts(recipe, registry),)
        )
        self._check_sizes()
        self._prepare_batchnorm()
        self.channels_last = uses_channels_last(train.memory_format, self.device)
        self.method.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        if self.dist.rank:  # rank 0 keeps run.seed's stream, so one process trains as it always did
            self._seed_stream(step=0)
        if self.dist.enabled:
            self._wrap_for_processes()
        if train.compile:
            for name in list(self.method.nets):
                self.method.nets[name] = torch.compile(self.method.nets[name])

        # Precision.
        self.autocast_dtype = autocast_dtype(train.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None

        # Optimisers and schedules: one Adam per group the method declares.
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for group, net_names in self.method.optimizer_groups().items():
            params = [p for n in net_names for p in self.method.nets[n].parameters() if p.requires_grad]
            # Fused Adam (one vectorised pass per parameter) on CUDA and the CPU: at batch 1 the
            # per-tensor loop of the default CPU Adam costs a fifth of a 256-pixel pix2pix step.
            fused = self.device.type in ("cuda", "cpu")
            self.optimizers[group] = torch.optim.Adam(params, lr=train.lr, betas=train.betas, fused=fused or None)
            allocate_adam_state(self.optimizers[group])
        factor = linear_decay(train.epochs, train.decay_epochs)
        self.schedulers = {g: torch.optim.lr_scheduler.LambdaLR(o, factor) for g, o in self.optimizers.items()}
        self.ctx = TrainContext(
            self.optimizers,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
            scaler=self.scaler,
            state=self.state,
            distributed=self.dist,
        )

        # Data.
        data = recipe.data
        table = {"name": data.dataset, **data.options}
        if "on_error" in {o.name for o in registry.get("dataset", data.dataset, where=recipe.where("data")).options}:
            table.setdefault("on_error", data.on_error)  # e.g. `paired` drops files without a partner
        dataset = registry.build("dataset", table, where=recipe.where("data"))
        self.dataset = PreparedDataset(
            dataset,
            load_size=data.load_size,
            channels={"A": data.in_channels, "B": data.out_channels},
            cache=data.cache,
            on_error=data.on_error,
        )
        # Decode (and with on_error = "skip", vet) every image now: the set of items fixes the
        # data order, so it must be known before the sampler is made.
        self._warm_cache()
        self._report_skipped()
        if not self.dist.same_everywhere(len(self.dataset)):
            raise DataError(
                f"The {self.dist.world_size} processes found different numbers of usable images (rank "
                f"{self.dist.rank}: {len(self.dataset)}): an image that failed to read on one machine only, or "
                "data folders that differ between machines. Every process must see the same files."
            )
        if len(self.dataset) < train.batch_size:
            raise DataError(
                f"The dataset has {len(self.dataset)} image(s), fewer than train.batch_size = {train.batch_size}; "
                "add images or lower the batch size."
            )
        # Each rank reads its own shard of the epoch's permutation, batch_size / world_size images
        # at a time. Not torch's DistributedSampler: EpochSampler restarts an epoch at any offset
        # (exact resume), and its shards make global batch i hold the same images for any number
        # of processes (see its docstring), so a run may resume on a different number of GPUs.
        self.sampler = EpochSampler(
            len(self.dataset), seed=recipe.run.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )
        self.loader = make_loader(
            self.dataset,
            self.sampler,
            batch_size=self.rank_batch_size,
            num_workers=data.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        self.steps_per_epoch = len(self.dataset) // train.batch_size
        self.jitter = PairedJitter(data.crop_size, data.flip)

        if resume_from is not None:
            self._restore(resume_from)
        # Only now, with everything built on every rank, touch the run folder: a recipe that
        # fails to build leaves no half-made run behind, and rank 0 cannot create the folder
        # before a slower rank has checked that it did not exist.
        self.dist.barrier()
        if self.dist.is_main:
            self._write_run_dir(overwrite=overwrite)
        self._saved_step = self.state.step if resume_from is not None else -1

    # ----------------------------------------------------------------------------------------
    # Set-up helpers

    def _check_run_dir(
        self, *, resume: bool, overwrite: bool, checkpoint: tuple[Path, Mapping[str, Any]] | None
    ) -> Mapping[str, Any] | None:
        """Refuse what would lose work; return the checkpoint to resume from, if resuming."""
        run_dir = self.run_dir
        if resume:
            found = checkpoint if checkpoint is not None else newest_checkpoint(self.checkpoint_dir)
            if found is None:
                raise CheckpointError(
                    f"Nothing to resume in {run_dir}: it holds no checkpoint. Start the run afresh with "
                    "`tkit train RECIPE` (add --overwrite to replace the folder)."
                )
            self.resumed_from = found[0]
            return found[1]
        if run_dir.exists() and any(run_dir.iterdir()):
            ours = (run_dir / "recipe.toml").exists() or self.checkpoint_dir.exists()
            if not overwrite:
                hint = f"resume it with `tkit train --resume {run_dir}`, or " if ours else ""
                raise CheckpointError(
                    f"Run folder {run_dir} already exists and is not empty; {hint}start over with --overwrite, "
                    "or choose another run name with --set run.name=NAME."
                )
            if not ours:
                raise CheckpointError(
                    f"Run folder {run_dir} exists but is not a translate-kit run (no recipe.toml or checkpoints/); "
                    "refusing to delete it. Choose another run.name or run.dir."
                )
        return None

    def _write_run_dir(self, *, overwrite: bool) -> None:
        if overwrite and self.resumed_from is None and self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = f"# Resolved recipe of this run (from {self.recipe.source}).\n" + self.recipe.to_toml()
        tmp = self.run_dir / ".recipe.toml.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.run_dir / "recipe.toml")  # on resume, --set overrides are recorded too
        listed = self.run_dir / "skipped_inputs.txt"
        if self.dataset.skipped:
            lines = "".join(f"{name}\t{reason}\n" for name, reason in self.dataset.skipped)
            listed.write_text(lines, encoding="utf-8")
        else:  # a resumed run whose data is whole again
            listed.unlink(missing_ok=True)

    def _check_sizes(self) -> None:
        """Networks may declare `size_multiple` and `min_size`; check the crop against both now,
        rather than fail inside the first step."""
        crop = self.recipe.data.crop_size
        for name, net in self.method.nets.items():
            table = "generator" if name.startswith("G") else "discriminator"
            label = f"network {name} ({self.recipe.components.get(table, {}).get('name', name)})"
            multiple = getattr(net, "size_multiple", 1)
            if crop % multiple:
                raise RecipeError(
                    f"{self.recipe.where('data')}: crop_size {crop} does not fit {label}, which needs sizes that "
                    f"are multiples of {multiple}. Use a crop_size that is a multiple of {multiple}, or a "
                    "shallower network (e.g. --set generator.num_downs=N for a U-Net)."
                )
            minimum = getattr(net, "min_size", 0)
            if crop < minimum:
                raise RecipeError(
                    f"{self.recipe.where('data')}: crop_size {crop} is smaller than the {minimum} pixels {label} "
                    f"needs. Use a larger crop_size or a smaller network (e.g. fewer discriminator n_layers)."
                )

    def _check_global_batch(self) -> int:
        """`train.batch_size` is the global batch; return each rank's share, which must be whole."""
        batch, world = self.recipe.train.batch_size, self.dist.world_size
        if batch % world:
            lower = batch // world * world
            choices = [str(v) for v in (lower, lower + world) if v >= world]
            raise RecipeError(
                f"{self.recipe.where('train')}, key 'batch_size': {batch} is the global batch size and must split "
                f"evenly over the {world} processes of this run (WORLD_SIZE={world}); use a multiple of {world}, "
                f"e.g. {' or '.join(choices)} (--set train.batch_size={choices[-1]})."
            )
        return batch // world

    def _prepare_batchnorm(self) -> None:
        """Across processes, let batch norm see the global batch (SyncBatchNorm), as one process would.

        Plain BatchNorm in DDP normalises each rank's `batch_size / world_size` images with their
        own statistics: a different model from the single-process one (with 1 image per rank it
        is instance normalisation in disguise), and every rank keeps different running statistics.
        """
        if not self.dist.enabled or not self.recipe.train.sync_batchnorm:
            return
        with_bn = [
            name for name, net in self.method.nets.items()
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        ]
        if not with_bn:
            return
        if self.device.type != "cuda":
            raise RecipeError(
                f"{self.recipe.where('train')}, key 'sync_batchnorm': network(s) {', '.join(with_bn)} use batch norm, "
                f"and train.sync_batchnorm = true would synchronise its statistics over the {self.dist.world_size} "
                f"processes, but torch's SyncBatchNorm runs on CUDA only and this run is on {self.device.type}. "
                "Set train.sync_batchnorm = false (--set train.sync_batchnorm=false) to let each process normalise "
                f"with the statistics of its own {self.rank_batch_size} image(s), or use norm = \"instance\"."
            )
        for name in with_bn:
            self.method.nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(self.method.nets[name])

    def _seed_stream(self, step: int) -> None:
        """Give this rank its own random stream (dropout, jitter, image pools): see `stream_seed`."""
        seed = stream_seed(self.recipe.run.seed, self.dist.rank, step)
        random.seed(seed)
        torch.manual_seed(seed)  # and every CUDA device's generator

    def _wrap_for_processes(self) -> None:
        """Wrap each trainable network in DistributedDataParallel, in place in `method.nets`.

        One wrapper per network, not one around the method: each `ctx.update` backward reaches
        some networks only (a GAN's D step stops at the detached fake; its G step runs through D
        frozen), and each wrapper averages the gradients of its own network when they are ready.
        The methods' patterns need no special settings:

        - a network called several times before one backward (D on the real and the fake pair;
          CycleGAN's generators three times) is fine: autograd sums a parameter's gradient over
          every use before DDP's hook for it fires, once;
        - a network frozen with `method.frozen` has no parameter that requires grad, so no hook
          fires and its wrapper has nothing pending. So `find_unused_parameters` stays off (it
          costs a graph walk per forward); a method must use all trainable parameters of a
          network in a backward that reaches it, or DDP says which ones it did not use;
        - `forward_sync_buffers=False` (formerly `broadcast_buffers`): the default copies rank 0's
          buffers (batch-norm running statistics) to every rank at the start of every forward, a
          collective in each of a GAN's three or more forwards per step, and one that would hang
          a forward run by rank 0 alone. It buys nothing: training forwards normalise with batch
          statistics, never the running ones; with SyncBatchNorm those agree between ranks anyway,
          and with per-process batch norm each rank keeps its own and checkpoints hold rank 0's;
        - no `static_graph`: which networks a backward reaches changes within a step.
        """
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        for name in list(self.method.nets):
            net = self.method.nets[name]
            if not any(p.requires_grad for p in net.parameters()):
                continue  # nothing to average (and DDP refuses such a module)
            self.method.nets[name] = DistributedDataParallel(net, device_ids=device_ids, forward_sync_buffers=False)

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def _rng_state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks and a checkpoint must keep for each: the random streams and
        the method's extra state (e.g. CycleGAN's image pools of this rank's fakes), on the CPU."""
        return {"rng": self._rng_state(), "method_state": _to_cpu(self.method.extra_state())}

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimisers, schedules, RNGs, position.

        This is rank 0's view; `save_checkpoint` adds the other ranks' own states (`ranks`) and
        every rank's parameter fingerprints (`replica_fingerprints`) when training on several.
        """
        return {
            "format": FORMAT,
            "version": VERSION,
            "translate_kit_version": __version__,
            "recipe": self.recipe.to_dict(),
            "nets": {name: unwrap(net).state_dict() for name, net in self.method.nets.items()},
            "method_state": self.method.extra_state(),
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "schedulers": {g: s.state_dict() for g, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "state": {
                "epoch": self.state.epoch,
                "epoch_step": self.state.epoch_step,
                "step": self.state.step,
                "nonfinite_total": self.state.nonfinite_total,
                "nonfinite_in_row": self.state.nonfinite_in_row,
                "world_size": self.dist.world_size,
                "dataset_size": len(self.dataset),
            },
            "rng": self._rng_state(),
        }

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (once per step), keep the newest K, tell plugins.

        With several processes every rank calls this at the same step: the ranks' own states are
        gathered to rank 0, which alone writes, and nobody goes on (or exits) before the file is
        complete. The ranks' parameter fingerprints are compared, since a checkpoint holding rank
        0's weights stands for all ranks only if they are equal.
        """
        path = self.checkpoint_dir / f"step_{self.state.step:09d}.pt"
        # One decision for all ranks, from rank 0's disk (the others may not even see it).
        if self.dist.main_says(self._saved_step == self.state.step and path.exists()):
            return path
        self._saved_step = self.state.step
        fingerprints = others = None
        if self.dist.enabled:
            fingerprints = self.dist.all_gather(parameter_fingerprints(self._plain_nets()))
            others = self.dist.gather(None if self.dist.is_main else self._rank_state())
        if self.dist.is_main:
            state = self.checkpoint_state()
            if fingerprints is not None and others is not None:
                state["ranks"] = {rank: own for rank, own in enumerate(others) if rank}
                state["replica_fingerprints"] = fingerprints
            atomic_save(state, path)
            prune_checkpoints(self.checkpoint_dir, self.recipe.train.keep_checkpoints, newest=path)
            self._hook("translate_kit_checkpoint_saved", path=path, step=self.state.step)
        self.dist.barrier()
        if fingerprints is not None:
            self._check_replicas(fingerprints, path)
        return path

    def _check_replicas(self, fingerprints: list[dict[str, str]], path: Path) -> None:
        differing = sorted({net for other in fingerprints[1:] for net, digest in other.items()
                            if digest != fingerprints[0].get(net)})
        if differing:
            raise TrainingError(
                f"After step {self.state.step} the {self.dist.world_size} processes hold different weights for "
                f"network(s) {', '.join(differing)} ({path} has rank 0's). The method changes parameters outside "
                "ctx.update, or differently on each rank; DistributedDataParallel keeps ranks equal only through "
                "the averaged gradients that ctx.update applies."
            )

    def _plain_nets(self) -> dict[str, nn.Module]:
        return {name: unwrap(net) for name, net in self.method.nets.items()}

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        where = self.resumed_from or "the checkpoint"
        try:
            for name, net in self.method.nets.items():
                unwrap(net).load_state_dict(ckpt["nets"][name])
            for group, optimizer in self.optimizers.items():
                optimizer.load_state_dict(ckpt["optimizers"][group])
            for group, scheduler in self.schedulers.items():
                scheduler.load_state_dict(ckpt["schedulers"][group])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(
                f"{where} does not fit the networks of this recipe ({first}). Resume without --set overrides "
                "that change the architecture."
            ) from None
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        saved_train = ckpt["recipe"].get("train", {})
        saved_run = ckpt["recipe"].get("run", {})
        for table, key, saved, now in (
            ("train", "batch_size", saved_train.get("batch_size"), self.recipe.train.batch_size),
            ("run", "seed", saved_run.get("seed"), self.recipe.run.seed),
        ):
            if saved is not None and saved != now:
                # The resume point is "batches of this epoch's permutation done": both must stay.
                raise CheckpointError(
                    f"{where} was trained with {table}.{key} = {saved!r}; resuming with {now!r} would replay the "
                    f"wrong images. Resume without --set {table}.{key}, or start a new run."
                )
        state = ckpt["state"]
        self.state.epoch, self.state.epoch_step, self.state.step = state["epoch"], state["epoch_step"], state["step"]
        self.state.nonfinite_total = state.get("nonfinite_total", 0)
        self.state.nonfinite_in_row = state.get("nonfinite_in_row", 0)
        saved_size = state.get("dataset_size")
        if saved_size is not None and saved_size != len(self.dataset) and self.console is not None:
            # Allowed (images added or repaired), but the epoch's order is no longer the one the
            # interrupted run would have seen.
            self.console.print(
                f"[yellow]The dataset has {len(self.dataset)} usable images; the checkpoint was written with "
                f"{saved_size}. Training continues, but not in the order the interrupted run would have taken."
            )
        if not self.dist.same_everywhere(self.state.step):
            raise CheckpointError(
                f"The {self.dist.world_size} processes resumed from checkpoints of different steps. Every process "
                "must see the same run folder: put it on a file system all machines share."
            )
        self._restore_rank_state(ckpt)

    def _restore_rank_state(self, ckpt: Mapping[str, Any]) -> None:
        """Restore this rank's random streams and method state, or start fresh ones if the
        checkpoint was written by fewer processes and so has none for this rank."""
        own = {"rng": ckpt["rng"], "method_state": ckpt.get("method_state", {})}
        if self.dist.rank:
            own = ckpt.get("ranks", {}).get(self.dist.rank)
        saved_world = ckpt["state"].get("world_size", 1)
        if saved_world != self.dist.world_size and self.console is not None:
            self.console.print(
                f"[yellow]{self.resumed_from} was written by {saved_world} process(es) and this run has "
                f"{self.dist.world_size}: it goes on at the same step with the same global batches, but not "
                "bit-identically, since each process draws its own dropout and jitter."
            )
        if own is None:
            # The image pools and the like of rank 0 are as good a history as any.
            self.method.load_extra_state(ckpt.get("method_state", {}))
            self._seed_stream(step=self.state.step)
            return
        self.method.load_extra_state(own["method_state"])
        rng = own["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(_python_rng_state(rng["python"]))
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    # ----------------------------------------------------------------------------------------
    # The loop

    @property
    def total_epochs(self) -> int:
        return self.recipe.train.epochs + self.recipe.train.decay_epochs

    @property
    def total_steps(self) -> int:
        steps = self.total_epochs * self.steps_per_epoch
        return min(steps, self.recipe.train.max_steps) if self.recipe.train.max_steps else steps

    def _batch_to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(batch)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for key in ("A", "B"):
            images = batch[key].to(self.device, non_blocking=True)
            out[key] = to_unit_range(images)
        out = self.jitter(out)
        for key in ("A", "B"):
            out[key] = out[key].contiguous(memory_format=memory_format)
        return out

    def fit(self) -> list[dict[str, float]]:
        """Train until the recipe's epochs (or `train.max_steps`) are done; return the logged records."""
        train = self.recipe.train
        self._hook("translate_kit_run_start")
        status = "failed"
        with self._progress() as progress, self._stop_on_signal():
            task = progress.add_task("train", total=self.total_steps, completed=self.state.step, stats="")
            try:
                while self.state.epoch < self.total_epochs and not self._finished():
                    epoch = self.state.epoch
                    progress.update(task, description=f"epoch {epoch + 1}/{self.total_epochs}")
                    self._train_epoch(progress, task)
                    if self.state.epoch_step < self.steps_per_epoch:  # stopped inside the epoch
                        break
                    for scheduler in self.schedulers.values():
                        scheduler.step()
                    self.state.epoch, self.state.epoch_step = epoch + 1, 0
                    scalars = self._epoch_means()
                    if (epoch + 1) % train.sample_every == 0 or self.state.epoch == self.total_epochs:
                        self.write_samples(epoch + 1)
                    self._hook("translate_kit_epoch_end", epoch=epoch, scalars=scalars)
                    if (epoch + 1) % train.checkpoint_every == 0:
                        self.save_checkpoint()
                self._flush_log()
                self.save_checkpoint()
                if self.state.epoch_step:  # stopped mid-epoch: show where it got to
                    self.write_samples(self.state.epoch + 1)
                status = "interrupted" if self.stop_requested else "completed"
            finally:
                self._hook("translate_kit_run_end", status=status)
        return self.history

    def _hook(self, name: str, **kwargs: Any) -> None:
        """Call a run-event hook, on rank 0 only: plugins (loggers, notifiers) see one run, not one
        per process, and rank 0's run folder is the only one."""
        if self.dist.is_main:
            getattr(self.pm.hook, name)(trainer=self, **kwargs)

    def _finished(self) -> bool:
        max_steps = self.recipe.train.max_steps
        return self.stop_requested or bool(max_steps and self.state.step >= max_steps)

    def _train_epoch(self, progress: Any, task: Any) -> None:
        self.sampler.set_epoch(self.state.epoch, start=self.state.epoch_step * self.rank_batch_size)
        self._epoch_sums = {}
        self._epoch_count = 0
        self.method.train()
        # A rank's shard is ceil(len / world_size) images, which can hold one batch more than
        # the epoch's len // batch_size global steps; every rank stops at the same step.
        for batch in itertools.islice(self.loader, self.steps_per_epoch - self.state.epoch_step):
            batch = self._batch_to_device(batch)
            self.ctx.skipped_this_step = self.ctx.scaler_stepped = False
            scalars = self.method.training_step(batch, self.ctx)
            if self.ctx.scaler_stepped:  # a step whose every update was skipped has nothing to unscale
                self.scaler.update()
            self.state.step += 1
            self.state.epoch_step += 1
            self._count_nonfinite()
            for key, value in scalars.items():
                value = value.detach().float()
                self._log_sums[key] = self._log_sums.get(key, 0) + value
                self._epoch_sums[key] = self._epoch_sums.get(key, 0) + value
            self._log_count += 1
            self._epoch_count += 1
            progress.advance(task)
            if self.state.step % self.recipe.train.log_every == 0:
                record = self._flush_log()
                progress.update(task, stats=_format_stats(record))
            self._sync_stop()
            if self._finished():
                return

    def _sync_stop(self) -> None:
        """Turn a stop signal into `stop_requested`, on every rank after the same step.

        torchrun passes a SIGINT or SIGTERM on to each process, and a scheduler may signal one
        process alone; each arrives at its own moment. A rank that stopped alone would leave the
        others waiting in the next gradient all-reduce, so the flag is agreed (one tiny all-reduce
        per step; none with one process).
        """
        self.stop_requested = self.stop_requested or self.dist.any(self._stop_signal)

    def _count_nonfinite(self) -> None:
        if not self.ctx.skipped_this_step:
            self.state.nonfinite_in_row = 0
            return
        self.state.nonfinite_in_row += 1
        self.state.nonfinite_total += 1
        if self.state.nonfinite_in_row >= self.recipe.train.max_nonfinite_steps:
            raise TrainingError(
                f"The loss was NaN or infinite in {self.state.nonfinite_in_row} steps in a row (step "
                f"{self.state.step}); training stopped. The newest checkpoint in {self.checkpoint_dir} holds the "
                "last good weights. Lower train.lr, try train.precision = \"fp32\", or check the data."
            )

    def _reset_log_window(self) -> None:
        self._log_sums: dict[str, torch.Tensor] = {}
        self._log_count = 0
        self._log_time = time.perf_counter()

    def _flush_log(self) -> dict[str, float]:
        if not self._log_count:
            return {}
        elapsed = max(time.perf_counter() - self._log_time, 1e-9)
        record: dict[str, float] = {"step": self.state.step, "epoch": self.state.epoch}
        record.update({k: float(v) / self._log_count for k, v in self._over_ranks(self._log_sums).items()})
        record["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"] if self.optimizers else 0.0
        # batch_size is the global batch: this is the whole job's speed, not one rank's.
        record["images_per_s"] = self._log_count * self.recipe.train.batch_size / elapsed
        record["nonfinite_total"] = self.state.nonfinite_total
        record["data_skipped"] = len(self.dataset.skipped)
        self.history.append(record)
        self._hook("translate_kit_train_log", step=self.state.step, epoch=self.state.epoch, scalars=record)
        self._reset_log_window()
        return record

    def _epoch_means(self) -> dict[str, float]:
        count = max(self._epoch_count, 1)
        return {k: float(v) / count for k, v in self._over_ranks(self._epoch_sums).items()}

    def _over_ranks(self, sums: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-rank sums of logged scalars averaged over the ranks (one all-reduce), so the logs
        are means over the global batch, as one process with that batch would log them."""
        if not self.dist.enabled or not sums:
            return dict(sums)
        keys = list(sums)  # the method's order, the same on every rank
        means = self.dist.mean(torch.stack([torch.as_tensor(sums[k], device=self.device).float() for k in keys]))
        return dict(zip(keys, means))

    def _warm_cache(self) -> None:
        if self.dataset.cache is None and self.dataset.on_error == "fail":
            return
        with self._progress(transient=True) as progress:
            task = progress.add_task("decode", total=len(self.dataset), stats="")
            self.dataset.warm(threads=max(1, torch.get_num_threads()), on_item=lambda: progress.advance(task))

    def _report_skipped(self) -> None:
        """Say what was left out (`data.on_error = "skip"`: unreadable images, files without a
        partner); `_write_run_dir` also lists it in the run folder."""
        skipped = self.dataset.skipped
        if skipped and self.console is not None:
            from rich.markup import escape

            shown = "".join(f"\n  {escape(name)}: {escape(reason)}" for name, reason in skipped[:5])
            more = f"\n  ... and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            self.console.print(
                f"[yellow]Skipped {len(skipped)} unusable item(s) (data.on_error = \"skip\"); "
                f"{len(self.dataset)} remain. The list is in skipped_inputs.txt of the run folder.{shown}{more}"
            )

    def _progress(self, transient: bool = False) -> Any:
        return make_progress(self.console, transient=transient)

    @contextlib.contextmanager
    def _stop_on_signal(self) -> Iterator[None]:
        """First Ctrl-C / SIGTERM: finish the current step, checkpoint and stop. Second: stop now."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_signal:
                raise KeyboardInterrupt
            # Only noted here; `_sync_stop` acts on it after the step, on every rank at once.
            self._stop_signal = True
            if self.console is not None:
                self.console.print(
                    "[yellow]Stopping after this step and saving a checkpoint (press Ctrl-C again to abort)."
                )

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # ----------------------------------------------------------------------------------------
    # Samples and the run page

    def sample_items(self) -> list[dict[str, Any]]:
        """The first `train.num_samples` training images, centre-cropped to crop_size, unjittered."""
        crop = self.recipe.data.crop_size
        items = []
        for index in range(min(self.recipe.train.num_samples, len(self.dataset))):
            item = self.dataset[index]
            top = (item["A"].shape[-2] - crop) // 2
            left = (item["A"].shape[-1] - crop) // 2
            cropped = {k: item[k][:, top : top + crop, left : left + crop] for k in ("A", "B")}
            items.append({**cropped, "name": str(item["name"])})
        return items

    @torch.no_grad()
    def write_samples(self, epoch: int) -> None:
        """Translate the sample images at pix2pix test time and refresh `index.html`.

        Every rank runs the networks, rank 0 alone writes: in "paper" mode a SyncBatchNorm layer
        takes batch statistics from all ranks, so a forward pass on rank 0 alone would wait for
        the others forever.
        """
        items = self.sample_items()
        samples = self.run_dir / "samples"
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        # A private RNG: sampling must not move the training RNG, or resumes would not be exact.
        with torch.random.fork_rng(devices=devices), test_time(self.method, self.method.sample_mode):
            torch.manual_seed(self.recipe.run.seed)
            for item in items:
                x = to_unit_range(item["A"][None].to(self.device))
                with self.ctx.autocast():
                    y = self.method.translate(x)
                if not self.dist.is_main:
                    continue
                save_png(y[0].float(), samples / f"epoch_{epoch:04d}" / f"{item['name']}.png")
                for key, folder in (("A", "input"), ("B", "target")):
                    path = samples / folder / f"{item['name']}.png"
                    if not path.exists():
                        save_png(item[key], path)
        if self.dist.is_main:
            self.write_page(items)

    def write_page(self, items: list[dict[str, Any]] | None = None) -> Path:
        """Refresh `index.html` from the sample images on disk and `losses.jsonl`."""
        samples = self.run_dir / "samples"
        epochs = sorted(int(p.name.split("_")[1]) for p in samples.glob("epoch_*") if p.is_dir())
        shown = _spread(epochs, 10)
        rows = []
        for item in self.sample_items() if items is None else items:
            name = item["name"]
            outputs = [(e, f"samples/epoch_{e:04d}/{name}.png") for e in shown]
            rows.append(SampleRow(name, f"samples/input/{name}.png", f"samples/target/{name}.png", outputs))
        summary = {
            "recipe": self.recipe.source,
            "method": str(self.recipe.components["method"].get("name")),
            "step": str(self.state.step),
            "epoch": f"{self.state.epoch}/{self.total_epochs}",
            "device": str(self.device),
        }
        if self.dist.enabled:
            summary["device"] = f"{self.device.type}, {self.dist.world_size} processes"
        return write_run_page(
            self.run_dir, title=f"translate-kit run: {self.recipe.run.name}", summary=summary, rows=rows,
            recipe_text=self.recipe.to_toml(),
        )


def _spread(values: list[int], count: int) -> list[int]:
    """Up to `count` values spread evenly over `values`, always keeping the last."""
    if len(values) <= count:
        return values
    picks = {values[round(i * (len(values) - 1) / (count - 1))] for i in range(count)}
    return sorted(picks)


def _format_stats(record: Mapping[str, float]) -> str:
    losses = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in record.items() if k.startswith("loss"))
    speed = record.get("images_per_s")
    return f"{losses}  {speed:.1f} img/s" if speed is not None and math.isfinite(speed) else losses


def _to_cpu(value: Any) -> Any:
    """`value` with every tensor in it (nested dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _python_rng_state(state: Any) -> tuple[Any, ...]:
    # torch.load returns the tuple's inner sequence as a list after a round trip through some formats.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
