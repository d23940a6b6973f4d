"""Several training processes, one model: torchrun's environment, the process group, and the few
collective operations the trainer needs.

`tkit train` under torchrun (`torchrun --nproc-per-node N -m translate_kit train RECIPE`) runs N
copies of the same command. Each copy is one *rank*: it reads `RANK`, `WORLD_SIZE` and
`LOCAL_RANK` from the environment torchrun sets, joins the process group, and trains on its share
of every global batch (see `EpochSampler`). The trainer wraps each network in
`DistributedDataParallel`, so gradients are averaged over the ranks inside `backward` and every
rank takes the same optimiser step. Without torchrun (`WORLD_SIZE` unset or 1) nothing here does
anything: a `Distributed()` is rank 0 of 1 and every collective is a no-op.

    with process_group(select_device("auto")) as group:   # what `tkit train` does
        Trainer(recipe, registry=registry, pm=pm, distributed=group, ...).fit()

Two process groups are used when training on CUDA: NCCL for the gradients and the log scalars
(tensors that live on the GPU), and a small gloo group for the per-step stop flag and for Python
objects (RNG states, fingerprints). Flags and objects are CPU data; sending them through NCCL would
copy them to the GPU and make the host wait for the device every step. On the CPU, gloo does both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from translate_kit.errors import RecipeError, TrainingError

__all__ = [
    "Distributed",
    "check_replicas",
    "LaunchEnv",
    "launch_env",
    "parameter_fingerprints",
    "process_device",
    "process_group",
    "rank_batch_size",
    "stream_seed",
    "sync_batchnorm",
    "wrap_for_processes",
]


@dataclass(frozen=True, slots=True)
class LaunchEnv:
    """What torchrun tells a process about its place: global rank, number of processes, and the
    rank among the processes of its own machine (which picks its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """torchrun's `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; a plain `tkit train` is rank 0 of 1.

    Example:
        >>> launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
        LaunchEnv(rank=3, world_size=4, local_rank=1)
        >>> launch_env({})
        LaunchEnv(rank=0, world_size=1, local_rank=0)
    """
    environ = os.environ if environ is None else environ
    try:
        world_size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise TrainingError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them); got "
            f"RANK={environ.get('RANK')!r}, WORLD_SIZE={environ.get('WORLD_SIZE')!r}, "
            f"LOCAL_RANK={environ.get('LOCAL_RANK')!r}."
        ) from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise TrainingError(f"Inconsistent launch environment: RANK={rank}, WORLD_SIZE={world_size}, "
                            f"LOCAL_RANK={local_rank}.")
    return LaunchEnv(rank=rank, world_size=world_size, local_rank=local_rank)


def process_device(device: torch.device, env: LaunchEnv) -> torch.device:
    """The device of this process: the asked-for device, except that under torchrun on CUDA every
    process takes the GPU of its local rank (`cuda:LOCAL_RANK`), one GPU per process.

    Raises:
        RecipeError: several processes and a device they cannot share: one named GPU (`cuda:N`),
            fewer visible GPUs than processes on this machine, or MPS.
    """
    if env.world_size == 1:
        return device
    if device.type == "cuda":
        if device.index is not None:
            raise RecipeError(
                f"--device {device} names one GPU, but under torchrun every process takes its own, cuda:LOCAL_RANK. "
                "Pass --device cuda (or auto), and choose the GPUs with CUDA_VISIBLE_DEVICES."
            )
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise RecipeError(
                f"This is local process {env.local_rank} of its machine, but only {count} GPU(s) are visible; "
                f"start at most {count} processes per machine (torchrun --nproc-per-node {count})."
            )
        return torch.device("cuda", env.local_rank)
    if device.type == "mps":
        raise RecipeError("Several processes cannot share the MPS device (torch has no MPS collectives); "
                          "train in one process, or pass --device cpu.")
    return device


def stream_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank `rank`'s own random stream (dropout, jitter, image pools) from step `step`.

    Rank 0 keeps the stream of `run.seed` itself, so a one-process run is unchanged; other ranks
    need streams of their own, or every rank would draw the same crops and dropout masks for
    different images. A resumed run reseeds a rank from `(seed, rank, step)` only when its
    checkpoint lacks that rank's saved state (it was written by fewer processes).

    Example:
        >>> stream_seed(0, 1, 0) == stream_seed(0, 1, 0) != stream_seed(0, 2, 0)
        True
    """
    digest = hashlib.sha256(f"translate-kit/{seed}/{rank}/{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch.manual_seed takes up to 2**63 - 1


def check_replicas(fingerprints: list[dict[str, str]], *, step: int, path: Any) -> None:
    """Raise unless every rank's `parameter_fingerprints` equal rank 0's: a checkpoint holding rank
    0's weights stands for all ranks only then."""
    differing = sorted({net for other in fingerprints[1:] for net, digest in other.items()
                        if digest != fingerprints[0].get(net)})
    if differing:
        raise TrainingError(
            f"After step {step} the {len(fingerprints)} processes hold different weights for network(s) "
            f"{', '.join(differing)} ({path} has rank 0's). The method changes parameters outside ctx.update, or "
            "differently on each rank; DistributedDataParallel keeps ranks equal only through the averaged "
            "gradients that ctx.update applies."
        )


def parameter_fingerprints(nets: Mapping[str, nn.Module]) -> dict[str, str]:
    """A SHA-256 of every network's parameters (names, dtypes, shapes and exact bits), by network.

    Ranks hold identical parameters when their fingerprints are equal. Buffers are left out: with
    per-process batch norm (`train.sync_batchnorm = false`) every rank keeps its own running
    statistics, which is expected.
    """
    out = {}
    for name, net in nets.items():
        digest = hashlib.sha256()
        for key, param in net.named_parameters():
            data = param.detach().contiguous().cpu()
            digest.update(f"{key}:{data.dtype}:{tuple(data.shape)};".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
        out[name] = digest.hexdigest()
    return out


@dataclass(frozen=True)
class Distributed:
    """This process's place among the training processes, and the collectives the trainer uses.

    `Distributed()` is a single process: rank 0 of 1, and every method is a no-op that returns
    what one process would. Otherwise the default process group must be initialised
    (`process_group` does it for `tkit train`).

    Attributes:
        rank: global rank; rank 0 writes the run folder.
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        control: the process group of flags and Python objects (gloo); None: the default group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: Any = None

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, samples, logs and the page, and prints."""
        return self.rank == 0

    @classmethod
    def current(cls) -> Distributed:
        """The processes of the initialised default group, or a single process.

        Raises:
            TrainingError: torchrun started several processes (WORLD_SIZE > 1) but nobody
                initialised the process group: each would train alone and all would write the
                same run folder.
        """
        import torch.distributed as dist

        env = launch_env()
        if dist.is_available() and dist.is_initialized():
            if dist.get_world_size() == 1:
                return cls()
            control = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
            return cls(dist.get_rank(), dist.get_world_size(), env.local_rank, control)
        if env.world_size > 1:
            raise TrainingError(
                f"This process is rank {env.rank} of WORLD_SIZE={env.world_size} (torchrun), but no process group "
                "is initialised. Use `tkit train`, or create the Trainer inside "
                "`with translate_kit.train.distributed.process_group(device) as group:` and pass distributed=group."
            )
        return cls()

    def place(self, device: torch.device) -> torch.device:
        """`process_device` for this process."""
        return process_device(device, LaunchEnv(self.rank, self.world_size, self.local_rank))

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any rank (one tiny all-reduce on the CPU)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        value = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def any_on_device(self, flag: torch.Tensor) -> torch.Tensor:
        """`flag` (a float tensor on the training device), made its maximum over the ranks in place
        without the host waiting: the device-side twin of `any` (train/step.py)."""
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    def all_finite(self, value: torch.Tensor) -> bool:
        """True on every rank if `value` (on the training device) is finite on every rank.

        Decisions that follow from per-rank values, such as skipping an update whose loss is NaN,
        must be the same on every rank, or the ranks' weights would part.
        """
        flag = torch.isfinite(value.detach().float()).all().to(torch.int32).reshape(1)
        if self.enabled:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def same_everywhere(self, value: int) -> bool:
        """Whether every rank passes the same integer (e.g. the step it resumed at)."""
        if not self.enabled:
            return True
        import torch.distributed as dist

        values = torch.tensor([value, -value], dtype=torch.int64)
        dist.all_reduce(values, op=dist.ReduceOp.MAX, group=self.control)
        return int(values[0]) == -int(values[1])

    def main_says(self, flag: bool) -> bool:
        """Rank 0's `flag`, on every rank: one decision taken on rank 0's view (its disk)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        value = torch.tensor([int(flag)], dtype=torch.int32)
        dist.broadcast(value, src=0, group=self.control)
        return bool(value.item())

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of `tensor` over the ranks (every rank passes the same shape), on its device."""
        if not self.enabled:
            return tensor
        import torch.distributed as dist

        total = tensor.detach().float().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def mean_of(self, device: torch.device, sums: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-rank sums of logged scalars averaged over the ranks, in one all-reduce on `device`
        (the training device, where NCCL wants them), so logs are means over the global batch, as
        one process with that batch would log them."""
        if not self.enabled or not sums:
            return dict(sums)
        keys = list(sums)  # the method's order, the same on every rank
        stacked = torch.stack([torch.as_tensor(sums[k], device=device).float().reshape(()) for k in keys])
        return dict(zip(keys, self.mean(stacked)))

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` (picklable, CPU tensors), in rank order, on rank 0; None elsewhere."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.control)
        return out

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (small and picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier(group=self.control)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Distributed]:
    """Join torchrun's process group for the block, and leave it after; one process: no-op.

    The backend is NCCL when the processes train on CUDA (each on `cuda:LOCAL_RANK`) and gloo on
    the CPU. torchrun's `MASTER_ADDR`, `MASTER_PORT`, `RANK` and `WORLD_SIZE` say where and who:
    on one machine `--standalone` sets them, across machines its rendezvous does. A group that
    the caller initialised already is used as it is and left open.

    Args:
        device: the device asked for (`select_device(...)`); under torchrun on CUDA each process
            moves to the GPU of its local rank.
    """
    import torch.distributed as dist

    env = launch_env()
    if env.world_size == 1 or (dist.is_available() and dist.is_initialized()):
        yield Distributed.current()
        return
    if not dist.is_available():
        raise TrainingError("This torch build has no torch.distributed; train in one process.")
    device = process_device(device, env)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        control = dist.new_group(backend="gloo") if device.type == "cuda" else None
        yield Distributed(dist.get_rank(), dist.get_world_size(), env.local_rank, control)
    finally:
        dist.destroy_process_group()


def rank_batch_size(batch_size: int, dist: Distributed, *, where: str) -> int:
    """`train.batch_size` is the global batch; return each rank's share, which must be whole."""
    world = dist.world_size
    if batch_size % world:
        lower = batch_size // world * world
        choices = [str(v) for v in (lower, lower + world) if v >= world]
        raise RecipeError(
            f"{where}, key 'batch_size': {batch_size} is the global batch size and must split evenly over the "
            f"{world} processes of this run (WORLD_SIZE={world}); use a multiple of {world}, e.g. "
            f"{' or '.join(choices)} (--set train.batch_size={choices[-1]})."
        )
    return batch_size // world


def sync_batchnorm(nets: nn.ModuleDict, dist: Distributed, device: torch.device, *, where: str, per_rank: int) -> None:
    """Across processes, let batch norm see the global batch (SyncBatchNorm), as one process would;
    in place in `nets`.

    Plain BatchNorm in DDP normalises each rank's `batch_size / world_size` images with their
    own statistics: a different model from the single-process one (with 1 image per rank it
    is instance normalisation in disguise), and every rank keeps different running statistics.

    Args:
        where: the recipe's [train] table, for messages (`train.sync_batchnorm` turns this on).
        per_rank: images each process trains on per step, for messages.
    """
    with_bn = [
        name for name, net in nets.items() if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    ]
    if not with_bn:
        return
    if device.type != "cuda":
        raise RecipeError(
            f"{where}, key 'sync_batchnorm': network(s) {', '.join(with_bn)} use batch norm, and "
            f"train.sync_batchnorm = true would synchronise its statistics over the {dist.world_size} processes, "
            f"but torch's SyncBatchNorm runs on CUDA only and this run is on {device.type}. Set "
            "train.sync_batchnorm = false (--set train.sync_batchnorm=false) to let each process normalise with "
            f"the statistics of its own {per_rank} image(s), or use norm = \"instance\"."
        )
    for name in with_bn:
        nets[name] = nn.SyncBatchNorm.convert_sync_batchnorm(nets[name])


def wrap_for_processes(nets: nn.ModuleDict, device: torch.device) -> None:
    """Wrap each trainable network in DistributedDataParallel, in place in `nets`.

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

    device_ids = [device.index] if device.type == "cuda" else None
    for name in list(nets):
        net = nets[name]
        if not any(p.requires_grad for p in net.parameters()):
            continue  # nothing to average (and DDP refuses such a module)
        nets[name] = DistributedDataParallel(net, device_ids=device_ids, forward_sync_buffers=False)
