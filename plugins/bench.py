"""`tkit bench`: training and inference throughput, FLOPs and peak memory of a recipe's networks.

A first-party plugin that adds one command, as `reference_import` adds `tkit convert`.
`run_bench` builds the recipe's method exactly as `tkit train` does (through the `Trainer`: the
same networks, memory format, precision, optimisers and `StepRunner`) and measures, after a
warm-up, in windows whose length is calibrated on the warm-up:

- **train step**: one step as the trainer takes it (its `StepRunner`, the method's real
  `training_step` with the trainer's updates, or on a GPU the CUDA graph around it) on a synthetic batch already on the device (uint8 noise at `load_size`, prepared once
  by the method's own `prepare_batch`), so data loading is left out;
- **train loop**: the same step fed by the trainer's own data path (cached dataset, loader,
  the method's `prepare_batch`), as in `tkit train`, at the recipe's own batch size; it needs the
  recipe's data (or `synthetic_data=True`) and is reported as skipped otherwise;
- **inference**: `method.translate` under `torch.inference_mode` and `test_time(method, mode)`
  in "eval" mode (deterministic) and "paper" mode (dropout on, batch statistics);
- **FLOPs per image**, counted by `torch.utils.flop_counter.FlopCounterMode` for one training
  step (forward and backward of every network) and one inference forward;
- **a matmul reference rate**: the best of several `torch.mm` of square matrices in the dtype the
  networks run in, measured in the same run, so each throughput also reads as a fraction of what
  this machine does on a dense matrix product at that moment (absolute speeds drift on shared
  machines; the fraction drifts less);
- **peak memory**: the peak RSS of a fresh process that only builds the method and trains a
  few steps at the given batch size (a peak RSS is a lifetime peak, so measuring it in the
  benchmarking process would include everything measured before; see `max_rss_bytes`), plus the
  CUDA `max_memory_allocated` of that process on a GPU.

Every throughput is the median of its windows, with their minimum and maximum.

Training processes keep freed memory in the process on the CPU, as `tkit train` does
(`translate_kit.allocator`): the command sets it for the memory probes and the timed steps alike.

Example:
    >>> from translate_kit_plugins.bench import run_bench
    >>> result = run_bench(recipe, registry, pm, device="cpu", batch_sizes=(1,))  # doctest: +SKIP
    >>> result.figure("train_step", 1).images_per_s  # doctest: +SKIP
    0.83
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import torch
import typer
from torch.utils.data import Dataset, default_collate

from translate_kit.api import (
    DataError,
    Method,
    OptionError,
    Recipe,
    Registry,
    Trainer,
    cli_command,
    compiled_nets,
    eval_copy,
    find_recipe,
    get_plugin_manager,
    hookimpl,
    keep_freed_memory,
    load_recipe,
    make_loader,
    register,
    session,
    test_time,
    write_synth_facades,
)

__all__ = [
    "LABELS",
    "NOISE_DATASET",
    "BenchResult",
    "MatmulRate",
    "MemoryPeak",
    "NoisePairs",
    "Throughput",
    "Timing",
    "abba_windows",
    "bench",
    "bench_trainer",
    "calls_per_window",
    "count_flops",
    "device_sync",
    "inference_fn",
    "matmul_rate",
    "max_rss_bytes",
    "noise_pairs",
    "peak_memory",
    "render",
    "run_bench",
    "synthetic_batch",
    "time_windows",
    "train_step_fn",
]

Mode = Literal["paper", "eval"]
NOISE_DATASET = "tkit_bench_noise"  # the in-memory dataset a benchmark trains on when data is not needed
_PROBE_MARK = "TKIT_BENCH_PROBE "  # prefix of the JSON line a memory probe prints
_MAX_STEPS_PER_WINDOW = 10_000

LABELS = {  # short names of the figures, for tables
    "train_step": "train step",
    "train_loop": "train+data",
    "infer_eval": "infer eval",
    "infer_paper": "infer paper",
    "infer_eval_compiled": "infer eval, compiled",
    "infer_paper_compiled": "infer paper, compiled",
}


# ------------------------------------------------------------------------------------------------
# Results


@dataclass
class Timing:
    """Wall-clock seconds of each timed window of `steps_per_window` calls."""

    steps_per_window: int
    seconds: list[float]

    def rates(self, items_per_call: int) -> list[float]:
        """Items per second of each window."""
        return [items_per_call * self.steps_per_window / max(s, 1e-12) for s in self.seconds]


@dataclass
class MatmulRate:
    """The best rate of `torch.mm` on `size` x `size` matrices of `dtype`, in FLOP/s."""

    dtype: str
    size: int
    flops_per_s: float
    repeats: int


@dataclass
class Throughput:
    """One measured figure: images per second over windows, and its share of the matmul rate.

    Attributes:
        what: "train_step", "train_loop", "infer_eval" or "infer_paper".
        batch_size: images per call.
        images_per_s: median over the windows.
        min_images_per_s, max_images_per_s: the slowest and the fastest window.
        windows: images/s of every window, in the order they ran.
        steps_per_window: calls per window (calibrated on the warm-up).
        flops_per_image: FLOPs one image costs in this figure (None when not counted).
        matmul_fraction: achieved FLOP/s (flops_per_image * images_per_s) over the matmul rate.
    """

    what: str
    batch_size: int
    images_per_s: float
    min_images_per_s: float
    max_images_per_s: float
    windows: list[float]
    steps_per_window: int
    flops_per_image: float | None = None
    matmul_fraction: float | None = None

    @classmethod
    def from_timing(
        cls, what: str, batch_size: int, timing: Timing, flops_per_image: float | None, matmul: MatmulRate | None
    ) -> Throughput:
        rates = timing.rates(batch_size)
        median = statistics.median(rates)
        fraction = None
        if flops_per_image is not None and matmul is not None and matmul.flops_per_s > 0:
            fraction = flops_per_image * median / matmul.flops_per_s
        return cls(what, batch_size, median, min(rates), max(rates), rates, timing.steps_per_window,
                   flops_per_image, fraction)


@dataclass
class MemoryPeak:
    """Memory of a fresh process that built the method and trained `steps` steps at `batch_size`.

    Attributes:
        baseline_rss_bytes: peak RSS once imports are done and the networks and optimisers are
            built, before the first step.
        peak_rss_bytes: peak RSS after the steps (`max_rss_bytes`, a lifetime peak of that process).
        cuda_max_allocated_bytes: `torch.cuda.max_memory_allocated` of that process, on CUDA.
    """

    batch_size: int
    steps: int
    baseline_rss_bytes: int
    peak_rss_bytes: int
    cuda_max_allocated_bytes: int | None = None


@dataclass
class BenchResult:
    """Everything `run_bench` measured; `to_dict()` is what `tkit bench --json` prints."""

    recipe: str
    device: str
    threads: int
    torch_version: str
    precision: str  # the dtype the networks compute in: "float32", or the autocast dtype
    channels_last: bool
    crop_size: int | tuple[int, int]  # data.crop_size as the recipe gives it: a side, or (height, width)
    parameters: dict[str, int]  # per network in method.nets
    matmul: MatmulRate | None
    train_flops_per_image: float | None
    infer_flops_per_image: float | None
    throughput: list[Throughput] = field(default_factory=list)
    memory: list[MemoryPeak] = field(default_factory=list)
    bench_process_peak_rss_bytes: int = 0  # lifetime peak of the benchmarking process itself
    skipped: dict[str, str] = field(default_factory=dict)  # what was not measured, and why
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole benchmark

    def figure(self, what: str, batch_size: int) -> Throughput | None:
        """The throughput `what` at `batch_size`, if measured."""
        return next((t for t in self.throughput if t.what == what and t.batch_size == batch_size), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# Timing


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def calls_per_window(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, window_s: float) -> int:
    """Run `warmup` timed calls (at least one); return the calls per window for `window_s` seconds."""
    last = 0.0
    for _ in range(max(1, warmup)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        last = time.perf_counter() - start
    return max(1, min(_MAX_STEPS_PER_WINDOW, math.ceil(window_s / max(last, 1e-9))))


def time_windows(
    fns: Mapping[str, Callable[[], Any]],
    *,
    sync: Callable[[], None],
    warmup: int = 2,
    windows: int = 5,
    window_s: float = 1.0,
) -> dict[str, Timing]:
    """Time each function in `windows` windows, interleaving the functions window by window.

    Each function is warmed up first; its last warm-up call sets how many calls make a window of
    about `window_s` seconds (at least one). The windows then alternate between the functions, in
    ABBA order (the order reverses every window), so that a slow drift of the machine's speed hits
    every function alike. The device is synchronised only at the edges of a window, so queued GPU
    work overlaps between calls as it does in training.

    Args:
        fns: name -> a callable doing one step (a training step, an inference batch, ...).
        sync: waits for the device (see `device_sync`).
        warmup: untimed calls before calibration (at least one is made).
        windows: timed windows per function.
        window_s: target duration of a window in seconds (0: one call per window).

    Returns:
        name -> its `Timing`.
    """
    if windows < 1:
        raise OptionError(f"Expected at least 1 window, got {windows}.")
    steps = {name: calls_per_window(fn, sync, warmup, window_s) for name, fn in fns.items()}

    def run_window(name: str) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(steps[name]):
            fns[name]()
        sync()
        return time.perf_counter() - start

    return abba_windows(steps, run_window, windows=windows)


def abba_windows(steps: Mapping[str, int], run_window: Callable[[str], float], *, windows: int) -> dict[str, Timing]:
    """`windows` windows of each name in `steps`, in ABBA order: the order of the names reverses
    every window. `run_window(name)` runs `steps[name]` calls and returns their wall-clock seconds
    (in this process, as `time_windows` does, or in another one).

    Example:
        >>> timing = abba_windows({"a": 2, "b": 3}, lambda name: {"a": 1.0, "b": 2.0}[name], windows=2)
        >>> timing["b"].rates(items_per_call=4)
        [6.0, 6.0]
    """
    if windows < 1:
        raise OptionError(f"Expected at least 1 window, got {windows}.")
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for window in range(windows):
        for name in order if window % 2 == 0 else reversed(order):
            seconds[name].append(run_window(name))
    return {name: Timing(steps[name], seconds[name]) for name in steps}


def matmul_rate(
    device: torch.device, dtype: torch.dtype = torch.float32, *, size: int | None = None, repeats: int = 5
) -> MatmulRate:
    """The best FLOP/s of `torch.mm` on square `size` matrices of `dtype` (2·n³ FLOPs per product).

    The default size saturates the device: 2048 on a CPU, 8192 on a GPU.
    """
    n = size or (8192 if device.type == "cuda" else 2048)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty_like(a)
    sync = device_sync(device)
    torch.mm(a, b, out=out)  # first call: thread pool / cuBLAS handle and heuristics
    best = math.inf
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        best = min(best, time.perf_counter() - start)
    return MatmulRate(str(dtype).removeprefix("torch."), n, 2 * n**3 / max(best, 1e-12), max(1, repeats))


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs `fn` dispatches, as `torch.utils.flop_counter.FlopCounterMode` counts them.

    Convolutions and matrix products (forward and backward) are counted as 2 FLOPs per
    multiply-add; normalisation, activations, losses and optimiser updates are not counted.

    Example:
        >>> conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        >>> count_flops(lambda: conv(torch.zeros(1, 3, 16, 16))) == 2 * 3 * 8 * 9 * 16 * 16
        True
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def max_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes.

    On Linux this is `VmHWM` of /proc/self/status, the high-water mark of the process's own
    address space. `ru_maxrss` is not used there: the kernel carries the parent's high-water mark
    across fork + exec (subprocess uses vfork), so a fresh child would start at its parent's peak.
    Elsewhere it is `ru_maxrss` (KiB on Linux-likes, bytes on macOS).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# ------------------------------------------------------------------------------------------------
# Building what is timed


class NoisePairs(Dataset):
    """`count` pairs of uint8 uniform noise of `size` (a square's side, or (height, width)): data
    for timing, not for learning."""

    def __init__(self, count: int, size: int | tuple[int, int], in_channels: int, out_channels: int,
                 seed: int) -> None:
        self.count, self.seed = count, seed
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.channels = {"A": in_channels, "B": out_channels}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        generator = torch.Generator().manual_seed(self.seed + index)
        item: dict[str, torch.Tensor | str] = {
            key: torch.randint(0, 256, (c, *self.size), generator=generator, dtype=torch.uint8)
            for key, c in self.channels.items()
        }
        item["name"] = f"noise_{index}"
        return item


@register("dataset", NOISE_DATASET)
def noise_pairs(
    *, count: int = 8, size: int | tuple[int, int] = 256, in_channels: int = 3, out_channels: int = 3, seed: int = 0
) -> NoisePairs:
    """In-memory uint8 noise pairs of `size` (an int, or [height, width] as `data.load_size`), for
    timing without data on disk (`tkit bench`)."""
    return NoisePairs(count, size, in_channels, out_channels, seed)


@contextlib.contextmanager
def bench_trainer(
    recipe: Recipe,
    registry: Registry,
    pm: Any,
    *,
    device: str = "auto",
    data: Literal["recipe", "noise"] = "noise",
    noise_count: int = 8,
) -> Iterator[Trainer]:
    """A `Trainer` for `recipe` whose run folder is a temporary directory, removed afterwards.

    Args:
        data: "recipe" reads the recipe's dataset (it must exist); "noise" swaps it for
            `noise_count` in-memory noise pairs at `load_size`, so the method, its optimisers and
            its step context are built exactly as for training without any data on disk.
    """
    with tempfile.TemporaryDirectory(prefix="tkit-bench-") as tmp:
        recipe = dataclasses.replace(recipe, run=dataclasses.replace(recipe.run, dir=tmp, name="bench"))
        if data == "noise":
            d = recipe.data
            options = {"count": max(noise_count, recipe.train.batch_size), "size": d.load_size,
                       "in_channels": d.in_channels, "out_channels": d.out_channels, "seed": recipe.run.seed}
            noise = dataclasses.replace(d, dataset=NOISE_DATASET, options=options, cache=True, num_workers=0)
            recipe = dataclasses.replace(recipe, data=noise)
        trainer = Trainer(recipe, registry=registry, pm=pm, device=device)
        try:
            yield trainer
        finally:
            trainer.close()


def synthetic_batch(trainer: Trainer, batch_size: int, *, seed: int = 0) -> dict[str, Any]:
    """A training batch of uniform uint8 noise at `load_size`, prepared once by the method's own
    `prepare_batch` (to the device, jittered, in the networks' memory format): what a training
    step gets, without the data path."""
    data = trainer.recipe.data
    noise = NoisePairs(batch_size, data.load_size, data.in_channels, data.out_channels, seed)
    return trainer.method.prepare_batch(default_collate([noise[i] for i in range(batch_size)]), trainer.batch_spec)


def _step(trainer: Trainer, batch: Mapping[str, Any]) -> None:
    """One optimisation step, as the trainer takes it: its `StepRunner`, or the CUDA graph around it."""
    trainer.train_step(batch, step=trainer.state.step, epoch=trainer.state.epoch)
    trainer.state.step += 1


def train_step_fn(trainer: Trainer, batch: Mapping[str, Any]) -> Callable[[], None]:
    """One training step of the trainer's method on the same batch, per call."""
    trainer.method.train()
    return lambda: _step(trainer, batch)


def _endless_batches(trainer: Trainer, batch_size: int) -> Iterator[Mapping[str, Any]]:
    """The trainer's loader at `batch_size`, epoch after epoch in the trainer's sampler order."""
    loader = make_loader(trainer.dataset, trainer.sampler, batch_size=batch_size,
                         num_workers=trainer.recipe.data.num_workers, pin_memory=trainer.device.type == "cuda")
    epoch = 0
    while True:
        trainer.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_loop_fn(trainer: Trainer, batch_size: int) -> Callable[[], None]:
    """One step of the training loop per call: next batch from the loader, prepared by the method
    (`Method.prepare_batch`, the data path of `tkit train`), then the step."""
    trainer.method.train()
    batches = _endless_batches(trainer, batch_size)
    return lambda: _step(trainer, trainer.method.prepare_batch(next(batches), trainer.batch_spec))


def inference_fn(
    method: Method,
    x: torch.Tensor,
    mode: Mode,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    compile: bool = False,
) -> Callable[[], None]:
    """One `method.translate(x)` per call, in test-time `mode`, under `torch.inference_mode`, as
    `Translator` runs it: eval mode on a batch-norm-folded copy (`inference.eval_copy`); with
    `compile`, through `torch.compile` with freezing (`inference.compiled_nets`, what
    `Translator(compile=True)` runs; the first call compiles).

    Paper mode normalises with the statistics of the batch it is given: at batch > 1 that is the
    whole batch (the network's cost is the same as per image; `Translator` runs one image at a
    time in paper mode, so its images do not mix).
    """
    modes = method  # test_time switches the original modules, which compiled wrappers hold
    if mode == "eval":
        method = modes = eval_copy(method)
    if compile:
        method = compiled_nets(method)

    def run() -> None:
        with torch.inference_mode(), test_time(modes, mode), autocast():
            method.translate(x)

    return run


# ------------------------------------------------------------------------------------------------
# Peak memory, in a fresh process


def peak_memory(
    recipe: Recipe,
    *,
    device: str,
    batch_size: int,
    steps: int = 2,
    threads: int | None = None,
    plugins_dir: Path | None = None,
    timeout_s: float = 600.0,
) -> MemoryPeak:
    """Peak memory of training `recipe` at `batch_size`, measured in a fresh Python process.

    The process imports translate-kit and the installed plugins (those of `plugins_dir` too),
    builds the method on noise data as `bench_trainer` does, and trains `steps` steps on a
    synthetic batch (the optimiser states exist from the first step on, so two steps reach the
    steady peak).

    Raises:
        OptionError: the process failed; the message holds the end of its error output.
    """
    spec = {"recipe": recipe.to_dict(), "source": recipe.source, "device": device, "batch_size": batch_size,
            "steps": steps, "threads": threads or torch.get_num_threads(),
            "plugins_dir": str(plugins_dir) if plugins_dir is not None else None}
    done = subprocess.run([sys.executable, "-m", "translate_kit_plugins.bench", json.dumps(spec, default=str)],
                          capture_output=True, text=True, timeout=timeout_s)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_PROBE_MARK):
            return MemoryPeak(**json.loads(line[len(_PROBE_MARK):]))
    tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    raise OptionError(f"The memory probe at batch {batch_size} failed (exit status {done.returncode}): {tail}")


def _probe(spec: Mapping[str, Any]) -> MemoryPeak:
    """The fresh process's side of `peak_memory`: a training process, with its malloc setting."""
    keep_freed_memory()
    torch.set_num_threads(int(spec["threads"]))
    plugins_dir = Path(spec["plugins_dir"]) if spec["plugins_dir"] else None
    pm = get_plugin_manager(plugins_dir=plugins_dir)
    registry = Registry.from_plugin_manager(pm)
    recipe = dataclasses.replace(load_recipe(spec["recipe"], registry=registry), source=spec["source"])
    batch_size, steps = int(spec["batch_size"]), int(spec["steps"])
    with bench_trainer(recipe, registry, pm, device=spec["device"], noise_count=batch_size) as trainer:
        batch = synthetic_batch(trainer, batch_size)
        baseline = max_rss_bytes()
        step = train_step_fn(trainer, batch)
        for _ in range(steps):
            step()
        device_sync(trainer.device)()
        cuda = torch.cuda.max_memory_allocated(trainer.device) if trainer.device.type == "cuda" else None
        return MemoryPeak(batch_size, steps, baseline, max_rss_bytes(), cuda)


# ------------------------------------------------------------------------------------------------
# The benchmark


def _synthesise_data(recipe: Recipe, folder: Path, count: int) -> Recipe:
    """`recipe` reading `count` synthetic facade pairs written to `folder` (the pix2pix A|B layout)."""
    split = str(recipe.data.options.get("split", "train"))
    # Square facades at the larger side of load_size; loading resizes them to load_size (H, W).
    write_synth_facades(folder, count=count, size=max(32, *recipe.data.load_hw), splits=((split, 1.0),),
                        seed=recipe.run.seed)
    options = {**recipe.data.options, "root": str(folder)}
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, options=options))


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    if not sizes or any(int(s) < 1 for s in sizes):
        raise OptionError(f"Expected {name} of at least 1 image each, got {list(sizes)}.")
    return tuple(int(s) for s in sizes)


def run_bench(
    recipe: Recipe,
    registry: Registry,
    pm: Any,
    *,
    device: str = "auto",
    batch_sizes: Sequence[int] = (1, 4),
    infer_batch_sizes: Sequence[int] = (1, 8),
    windows: int = 5,
    window_s: float = 1.0,
    warmup: int = 2,
    loop: bool = True,
    loop_batch_size: int | None = None,
    synthetic_data: bool = False,
    memory: bool = True,
    memory_steps: int = 2,
    flops: bool = True,
    matmul_size: int | None = None,
    plugins_dir: Path | None = None,
    compile_inference: bool = False,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Benchmark a recipe; see the module docstring for what is measured and how.

    Args:
        recipe: a validated recipe (its `[train]` precision, memory format and compile apply).
        registry: the components it names.
        pm: the plugin manager (the trainer needs one; no run event is fired).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        batch_sizes: training batch sizes (train step, train loop, peak memory).
        infer_batch_sizes: inference batch sizes (eval and paper mode).
        windows: timed windows per figure; figures are the median over them.
        window_s: target seconds per window (the calls per window are calibrated on the warm-up;
            at least one call); 0 gives one call per window.
        warmup: untimed calls before each figure (at least one).
        loop: also time the training loop with data loading.
        loop_batch_size: its batch size (default: the recipe's `train.batch_size`, what
            `tkit train` runs; one size only, since the loop costs as much as the step and more).
        synthetic_data: for the loop, write a few synthetic facade pairs to a temporary folder and
            read those instead of `data.root` (pix2pix A|B layout).
        memory: measure peak memory per training batch size in fresh processes.
        memory_steps: training steps each memory probe makes.
        flops: count FLOPs per image (and so the matmul fractions).
        matmul_size: side of the reference matmul (default: 2048 on CPU, 8192 on GPU).
        plugins_dir: the `--plugins-dir` the memory probes must load too.
        compile_inference: also time inference through `torch.compile` with freezing, as
            `tkit translate --compile` runs it (the compilation happens in the warm-up).
        log: called with a line of progress before each stage.

    Returns:
        A `BenchResult`; what could not be measured is in its `skipped` with the reason.
    """
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    batch_sizes = _check_sizes("train batch sizes", batch_sizes)
    infer_batch_sizes = _check_sizes("inference batch sizes", infer_batch_sizes)
    if windows < 1:
        raise OptionError(f"Expected at least 1 window, got {windows}.")
    loop_batch = loop_batch_size or recipe.train.batch_size
    say = log or (lambda line: None)
    skipped: dict[str, str] = {}
    notes: list[str] = []

    with contextlib.ExitStack() as stack:
        # The data: the loop needs the recipe's (or synthetic) images; the rest runs on noise.
        data_recipe: Recipe | None = recipe
        if loop and synthetic_data:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tkit-bench-data-")))
            say("writing synthetic facades for the loop")
            data_recipe = _synthesise_data(recipe, folder, count=max(8, 2 * loop_batch))
        elif not loop:
            data_recipe = None
            skipped["train_loop"] = "not measured (loop disabled)"
        else:
            root = recipe.data.options.get("root")
            if root is not None and not Path(str(root)).exists():
                data_recipe = None
                skipped["train_loop"] = (
                    f"skipped: data.root {root} missing (give --set data.root=PATH, or --synthetic-data)"
                )
        trainer: Trainer | None = None
        if data_recipe is not None:
            say("building the method and reading the data")
            try:
                trainer = stack.enter_context(bench_trainer(data_recipe, registry, pm, device=device, data="recipe"))
            except DataError as exc:
                skipped["train_loop"] = f"skipped: the recipe's data cannot be read: {exc}"
        if trainer is None:
            say("building the method")
            trainer = stack.enter_context(
                bench_trainer(recipe, registry, pm, device=device, noise_count=max(batch_sizes))
            )
        method, dev = trainer.method, trainer.device
        sync = device_sync(dev)
        compute_dtype = trainer.autocast_dtype or torch.float32

        say(f"matmul reference rate ({str(compute_dtype).removeprefix('torch.')})")
        matmul = matmul_rate(dev, compute_dtype, size=matmul_size)

        train_flops = infer_flops = None
        if flops:
            say("counting FLOPs")
            try:
                b = batch_sizes[0]
                train_flops = count_flops(train_step_fn(trainer, synthetic_batch(trainer, b))) / b
                x = synthetic_batch(trainer, infer_batch_sizes[0])["A"]
                infer_flops = count_flops(inference_fn(method, x, "eval", trainer.step_runner.autocast)) / x.shape[0]
            except Exception as exc:  # a network FlopCounterMode cannot trace must not sink the timings
                skipped["flops"] = f"FlopCounterMode failed: {type(exc).__name__}: {exc}"
        else:
            skipped["flops"] = "not counted (flops disabled)"

        throughput: list[Throughput] = []
        timing_options = {"sync": sync, "warmup": warmup, "windows": windows, "window_s": window_s}
        for b in batch_sizes:
            say(f"train step, batch {b}")
            timing = time_windows({"step": train_step_fn(trainer, synthetic_batch(trainer, b))}, **timing_options)
            throughput.append(Throughput.from_timing("train_step", b, timing["step"], train_flops, matmul))
        if "train_loop" not in skipped:
            if loop_batch > len(trainer.dataset):
                skipped["train_loop"] = f"skipped: batch {loop_batch} exceeds the {len(trainer.dataset)} images"
            else:
                say(f"train loop with data, batch {loop_batch}")
                timing = time_windows({"loop": train_loop_fn(trainer, loop_batch)}, **timing_options)
                throughput.append(Throughput.from_timing("train_loop", loop_batch, timing["loop"], train_flops, matmul))
        for b in infer_batch_sizes:
            x = synthetic_batch(trainer, b, seed=1)["A"]
            for compiled in (False, True) if compile_inference else (False,):
                for mode in ("eval", "paper"):
                    what = f"infer_{mode}" + ("_compiled" if compiled else "")
                    say(f"inference, {mode} mode, batch {b}" + (" (compiled)" if compiled else ""))
                    fn = inference_fn(method, x, mode, trainer.step_runner.autocast, compile=compiled)
                    timing = time_windows({mode: fn}, **timing_options)
                    throughput.append(Throughput.from_timing(what, b, timing[mode], infer_flops, matmul))

        result = BenchResult(
            recipe=recipe.source,
            device=str(dev),
            threads=torch.get_num_threads(),
            torch_version=torch.__version__,
            precision=str(compute_dtype).removeprefix("torch."),
            channels_last=trainer.channels_last,
            crop_size=recipe.data.crop_size,
            parameters={name: sum(p.numel() for p in net.parameters()) for name, net in method.nets.items()},
            matmul=matmul,
            train_flops_per_image=train_flops,
            infer_flops_per_image=infer_flops,
            throughput=throughput,
        )

    # After the trainer is gone, so the probes do not compete with its memory.
    if memory:
        for b in batch_sizes:
            say(f"peak memory, batch {b} (fresh process)")
            try:
                result.memory.append(peak_memory(recipe, device=device, batch_size=b, steps=memory_steps,
                                                 plugins_dir=plugins_dir))
            except (OptionError, subprocess.TimeoutExpired) as exc:
                skipped[f"memory@{b}"] = str(exc)
    else:
        skipped["memory"] = "not measured (memory disabled)"

    notes.append("train step and inference run on synthetic batches (noise in [-1, 1]) already on the device")
    # The benchmark itself loads the cores, so only the load average at its start says whether
    # other processes were competing with it.
    if load_at_start + result.threads > (os.cpu_count() or 1) + 0.5:
        notes.append(f"the machine was busy (load average {load_at_start:.1f} at the start, {os.cpu_count()} cores, "
                     f"{result.threads} threads): other processes competed for the cores, so absolute figures are "
                     "low and noisy; compare side by side, or use fewer --threads")
    if any(b > 1 for b in infer_batch_sizes):
        notes.append("paper mode at batch > 1 normalises over the batch; `tkit translate --mode paper` runs one "
                     "image at a time")
    notes.append("FLOPs: convolutions and matrix products only (torch.utils.flop_counter); the matmul fraction "
                 "is achieved FLOP/s over the best torch.mm rate of this run")
    if dev.type == "cuda" and compute_dtype == torch.float32 and torch.backends.cudnn.allow_tf32:
        notes.append("cuDNN may run fp32 convolutions in TF32 (torch.backends.cudnn.allow_tf32) while the fp32 "
                     "matmul reference does not, so a fraction above 1 is possible")
    result.skipped, result.notes = skipped, notes
    result.bench_process_peak_rss_bytes = max_rss_bytes()
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------------------------
# The command

DEFAULT_BATCH_SIZES = "1,4"  # the baseline: train batch 1 (the paper's) and 4
DEFAULT_INFER_BATCH_SIZES = "1,8"


def parse_sizes(text: str, option: str) -> tuple[int, ...]:
    """"1,4" -> (1, 4); anything else than positive integers is a usage error naming the option."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"expected comma-separated positive integers such as 1,4, got {text!r}",
                                 param_hint=option)
    return sizes


def _crop_text(crop: int | tuple[int, int] | list[int]) -> str:
    """`256`, or `256x512` (height x width) for a [height, width] crop."""
    return str(crop) if isinstance(crop, int) else "x".join(str(side) for side in crop)


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def render(result: BenchResult, console: Any) -> None:
    """Print `result` as a compact table, then memory, what was skipped and the notes."""
    from rich.markup import escape
    from rich.table import Table

    matmul = result.matmul
    rate = f"{matmul.flops_per_s / 1e9:.1f} GFLOP/s ({matmul.size}² {matmul.dtype} torch.mm)" if matmul else "—"
    table = Table(
        title=f"{result.recipe} on {result.device} ({result.threads} thread{'s' * (result.threads != 1)}), "
        f"{result.precision}, {_crop_text(result.crop_size)} px",
        caption=f"images/s: median (min–max) over windows. train step: a synthetic batch on the device; "
        f"train+data: the training loop reading the data. % matmul: of {rate}",
    )
    for column in ("measure", "batch", "images/s", "ms/image", "GFLOP/image", "% matmul"):
        table.add_column(column, justify="left" if column == "measure" else "right", no_wrap=True)
    for t in result.throughput:
        gflop = "—" if t.flops_per_image is None else f"{t.flops_per_image / 1e9:.3g}"
        share = "—" if t.matmul_fraction is None else f"{100 * t.matmul_fraction:.1f}"
        table.add_row(LABELS.get(t.what, t.what), str(t.batch_size),
                      f"{t.images_per_s:.3g} ({t.min_images_per_s:.3g}–{t.max_images_per_s:.3g})",
                      f"{1e3 / t.images_per_s:.3g}", gflop, share)
    console.print(table)
    if result.memory:
        memory = Table(title="peak memory of training, a fresh process per batch size",
                       caption="RSS in GiB: peak (before the first step)")
        for column in ("batch", "RSS", "CUDA max allocated"):
            memory.add_column(column, justify="right", no_wrap=True)
        for m in result.memory:
            memory.add_row(str(m.batch_size), f"{_gib(m.peak_rss_bytes)} ({_gib(m.baseline_rss_bytes)})",
                           "—" if m.cuda_max_allocated_bytes is None else _gib(m.cuda_max_allocated_bytes))
        console.print(memory)
    params = ", ".join(f"{name} {count / 1e6:.2f} M" for name, count in result.parameters.items())
    own = _gib(result.bench_process_peak_rss_bytes)
    console.print(f"parameters: {params}; this process's own peak RSS {own} GiB; {result.seconds:.0f} s in all")
    # Escape: reasons quote recipe tables like [data], which rich would read as markup.
    for what, why in result.skipped.items():
        console.print(f"[yellow]{escape(what)}: {escape(why)}[/]")
    for note in result.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


@cli_command
def bench(
    ctx: typer.Context,
    recipe: Annotated[str, typer.Argument(help="Recipe file or name (`tkit recipes list`).")],
    overrides: Annotated[
        Optional[list[str]],
        typer.Option("--set", "-s", help="Override a recipe value: --set generator.ngf=32 (repeatable).",
                     show_default=False),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_sizes: Annotated[
        Optional[str],
        typer.Option(help=f"Training batch sizes, comma-separated (default {DEFAULT_BATCH_SIZES}; with --quick 1).",
                     show_default=False),
    ] = None,
    infer_batch_sizes: Annotated[
        Optional[str],
        typer.Option(help=f"Inference batch sizes (default {DEFAULT_INFER_BATCH_SIZES}; with --quick 1).",
                     show_default=False),
    ] = None,
    windows: Annotated[
        Optional[int],
        typer.Option(min=1, help="Timed windows per figure (default 5; with --quick 2).", show_default=False),
    ] = None,
    window_seconds: Annotated[
        Optional[float],
        typer.Option(min=0.0, help="Target length of a window; calls per window are calibrated on the warm-up "
                     "(default 1.0 s; with --quick 0: one call).", show_default=False),
    ] = None,
    warmup: Annotated[
        Optional[int], typer.Option(min=1, help="Untimed calls before each figure (default 2; with --quick 1).",
                                    show_default=False)
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="torch intra-op threads (default: torch's choice).", show_default=False)
    ] = None,
    synthetic_data: Annotated[
        bool, typer.Option("--synthetic-data", help="Time the data loop on a few synthetic facades written to a "
                           "temporary folder instead of data.root.")
    ] = False,
    loop: Annotated[bool, typer.Option(help="Time the training loop with data loading.")] = True,
    memory: Annotated[bool, typer.Option(help="Measure peak memory in a fresh process per batch size.")] = True,
    compile_inference: Annotated[
        bool, typer.Option("--compile-inference", help="Also time inference compiled as `tkit translate --compile` "
                           "runs it (torch.compile with freezing; compiling takes seconds to a minute).")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke run of a few seconds: batch 1, 2 windows of one call, 1 warm-up.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON only.")] = False,
) -> None:
    """Measure a recipe's training and inference images/s, FLOPs per image and peak memory.

    After a warm-up, each figure is the median over timed windows: one training step on a
    synthetic batch (no data loading), the training loop reading the recipe's data, and inference
    in eval and paper mode. FLOPs come from torch.utils.flop_counter, and each rate is also given
    as a fraction of a matrix-multiply rate measured in the same run. Compare runs by these
    fractions or side by side: absolute speeds drift on shared machines.
    """
    keep_freed_memory()  # the training steps are timed as `tkit train` runs them
    if threads is not None:
        torch.set_num_threads(threads)
    state = session(ctx)
    path = find_recipe(recipe, state.pm)
    loaded = load_recipe(path, overrides or [], registry=state.registry)
    quiet = json_output
    from rich.console import Console

    status = Console(stderr=True, highlight=False)
    result = run_bench(
        loaded,
        state.registry,
        state.pm,
        device=device,
        batch_sizes=parse_sizes(batch_sizes or ("1" if quick else DEFAULT_BATCH_SIZES), "--batch-sizes"),
        infer_batch_sizes=parse_sizes(
            infer_batch_sizes or ("1" if quick else DEFAULT_INFER_BATCH_SIZES), "--infer-batch-sizes"
        ),
        windows=windows if windows is not None else (2 if quick else 5),
        window_s=window_seconds if window_seconds is not None else (0.0 if quick else 1.0),
        warmup=warmup if warmup is not None else (1 if quick else 2),
        loop=loop,
        synthetic_data=synthetic_data,
        memory=memory,
        compile_inference=compile_inference,
        plugins_dir=state.plugins_dir,
        log=None if quiet else (lambda line: status.print(f"[dim]… {line}[/]")),
    )
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render(result, Console())

@hookimpl
def translate_kit_add_commands(app: typer.Typer) -> None:
    app.command(name="bench")(bench)


if __name__ == "__main__":  # the memory probe of `peak_memory`: python -m translate_kit_plugins.bench SPEC_JSON
    peak = _probe(json.loads(sys.argv[1]))
    print(_PROBE_MARK + json.dumps(dataclasses.asdict(peak)), flush=True)
