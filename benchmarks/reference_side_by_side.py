"""translate-kit's pix2pix against the reference PyTorch implementation, side by side.

    python benchmarks/reference_side_by_side.py --reference PATH [--device cpu] [--windows 5]
        [--batch-sizes 1,4] [--infer-batch-sizes 1,8] [--threads N] [--set table.key=value ...]
        [--no-memory] [--quick] [--json] [--precision fp32|bf16] [--variant LABEL:KEY=VALUE[;KEY=VALUE]]
        [--no-inference]

PATH is a checkout of the reference code (junyanz/pytorch-CycleGAN-and-pix2pix or a fork). Both
sides build the same model: the U-Net 256 generator with dropout, the 70x70 PatchGAN ("basic"),
batch norm, fp32, 256x256 images, Adam lr 2e-4 betas (0.5, 0.999), the vanilla GAN loss and
lambda_L1 = 100. The reference is built from its own classes (`Pix2PixModel` with an
options namespace written out here, weights initialised by its `init_weights`), without its CLI
or data. translate-kit's side is `recipes/pix2pix_facades.toml` with `train.precision=fp32`, built
by the bench plugin's `bench_trainer` exactly as `tkit train` builds it.

Each side runs in a worker process of its own (translate-kit's training, its inference, the
reference), so that each has the process-wide settings it has when run alone: the malloc setting
translate-kit's trainer applies on the CPU, cudnn.benchmark = True for the reference. The parent
times windows that alternate between the sides (ABBA order), one process computing at a time, so
that a drift of the machine's speed hits both alike; each figure is the median over its windows:

- one training step on the same synthetic batch (no data loading), at each `--batch-sizes`;
- generator inference at each `--infer-batch-sizes`: "eval" (translate-kit's eval mode; the
  reference's `test.py --eval`) and "paper" (translate-kit's paper mode: dropout on, batch
  statistics; the reference's default `test.py`, which leaves the networks in training mode);
- the peak RSS of training at each batch size, each side in a fresh process of its own.

The table gives the medians and the ratio ours / reference (above 1: translate-kit is faster; for
memory, above 1: translate-kit uses more).

Options for GPU comparisons (benchmarks/gpu_paper_run.py uses them; the defaults leave everything above
as it is):

- `--precision bf16`: translate-kit with `train.precision=bf16` (bf16 autocast), and the reference's
  step and inference run under `torch.autocast(dtype=torch.bfloat16)`. The reference itself has no
  mixed-precision option: the autocast wrapper is this script's, the usual way to add it to a
  PyTorch training step, and is the same mechanism translate-kit's bf16 uses.
- `--variant LABEL:KEY=VALUE[;KEY=VALUE...]` (repeatable): instead of one translate-kit training
  side, one per variant, each with these recipe overrides on top of `--set`'s, all timed in the
  same ABBA windows as the reference; the training rows then carry the variant's label. E.g.
  `--variant graphs:train.cuda_graphs=auto --variant eager:train.cuda_graphs=off`.
- `--no-inference`: time training only (no inference process, no inference rows).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "pix2pix_facades.toml"
OUR_OVERRIDES = ["train.precision=fp32"]  # the reference trains in fp32 (--precision changes both sides)
PROBE_MARK = "SIDE_BY_SIDE_PROBE "


def fail(message: str) -> NoReturn:
    """Print one error paragraph and exit with status 1."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def our_overrides(args: argparse.Namespace) -> list[str]:
    """translate-kit's recipe overrides: the precision both sides use, then `--set`'s."""
    return [f"train.precision={args.precision}", *args.overrides]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`LABEL:KEY=VALUE[;KEY=VALUE...]` -> (label, overrides)."""
    label, sep, body = text.partition(":")
    overrides = [part.strip() for part in body.split(";") if part.strip()]
    if not sep or not label.strip().isidentifier() or not overrides or any("=" not in o for o in overrides):
        fail(f"--variant {text!r}: expected LABEL:KEY=VALUE[;KEY=VALUE...] with a label of letters, digits and "
             "underscores, e.g. --variant graphs:train.cuda_graphs=auto")
    return label.strip(), overrides


def reference_autocast(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The context the reference's computations run in: bf16 autocast for `--precision bf16` (the
    reference has no such option itself; see the module docstring), else nothing."""
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def parse_sizes(text: str, option: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        fail(f"{option}: expected comma-separated positive integers such as 1,4, got {text!r}")
    return sizes


# ------------------------------------------------------------------------------------------------
# The reference


def load_reference(path: Path) -> ModuleType:
    """The reference's `models.pix2pix_model` module, imported from the checkout at `path`."""
    path = path.expanduser().resolve()
    model_file = path / "models" / "pix2pix_model.py"
    if not path.is_dir():
        fail(f"--reference {path}: no such folder. Pass a checkout of the reference code, e.g. "
             "git clone https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix")
    if not model_file.is_file():
        fail(f"--reference {path}: it has no models/pix2pix_model.py, so it is not a checkout of "
             "pytorch-CycleGAN-and-pix2pix. Pass the folder that holds models/, options/ and train.py.")
    sys.path.insert(0, str(path))
    try:
        module = importlib.import_module("models.pix2pix_model")
    finally:
        sys.path.remove(str(path))
    if Path(module.__file__ or "").resolve() != model_file:
        fail(f"another package named 'models' ({module.__file__}) shadows the reference's; run the script "
             "from a folder without one.")
    return module


def reference_options(device: torch.device, checkpoints_dir: str) -> argparse.Namespace:
    """The options the reference's `train.py --model pix2pix` ends up with.

    These are the defaults of its options/base_options.py and options/train_options.py after
    `Pix2PixModel.modify_commandline_options` (norm batch, netG unet_256, gan_mode vanilla,
    pool_size 0, lambda_L1 100), written out rather than parsed: its parser reads sys.argv and
    imports its data and visualisation packages.
    """
    return argparse.Namespace(
        isTrain=True, device=device, checkpoints_dir=checkpoints_dir, name="side_by_side",
        preprocess="resize_and_crop", input_nc=3, output_nc=3, ngf=64, ndf=64, netG="unet_256", netD="basic",
        n_layers_D=3, norm="batch", no_dropout=False, init_type="normal", init_gain=0.02, gan_mode="vanilla",
        lr=0.0002, beta1=0.5, lambda_L1=100.0, direction="AtoB", pool_size=0, continue_train=False,
    )


def build_reference(module: ModuleType, device: torch.device, checkpoints_dir: str) -> Any:
    """A reference `Pix2PixModel` on `device`, initialised as its `setup()` does.

    `setup()` is not called: its `init_net` moves the networks to cuda:0 whenever CUDA exists,
    whatever the device asked for. The same `init_weights` (normal, gain 0.02) is applied here and
    the networks are moved to `device`. Its constructor prints and sets
    torch.backends.cudnn.benchmark = True for the whole process; the flag is put back here, and
    the reference's timing process sets it again (`build_side`).
    """
    opt = reference_options(device, checkpoints_dir)
    keep = torch.backends.cudnn.benchmark
    with contextlib.redirect_stdout(io.StringIO()):
        model = module.Pix2PixModel(opt)
        for name in model.model_names:
            net = getattr(model, "net" + name)
            module.networks.init_weights(net, opt.init_type, init_gain=opt.init_gain)
            net.to(device)
    torch.backends.cudnn.benchmark = keep
    return model


def reference_step(model: Any, batch: Mapping[str, Any],
                   autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                   ) -> Callable[[], None]:
    """One `optimize_parameters()` of the reference on `batch`, per call (its training step), inside
    `autocast()` (see `reference_autocast`)."""
    data = {"A": batch["A"], "B": batch["B"], "A_paths": batch["name"], "B_paths": batch["name"]}

    def step() -> None:
        model.set_input(data)
        with autocast():
            model.optimize_parameters()

    return step


def reference_inference(model: Any, x: torch.Tensor, mode: str,
                        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                        ) -> Callable[[], None]:
    """The reference's `test()` (G forward under no_grad) on `x`, per call.

    "eval" is `test.py --eval` (model.eval()); "paper" is its default, the networks left in
    training mode (dropout on, batch statistics, running statistics updated). G is put back in
    training mode after each call, as the training step expects it.
    """

    def run() -> None:
        model.netG.train(mode == "paper")
        model.real_A = x
        with autocast():
            model.test()
        model.netG.train()

    return run


def peak_rss_bytes() -> int:
    """Peak RSS of this process (VmHWM; see translate_kit_plugins.bench.max_rss_bytes for why not ru_maxrss).

    Written out here rather than imported so that the reference's memory probe loads nothing of
    translate-kit and its RSS holds only what the reference itself needs.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def probe_reference(path: Path, device_name: str, batch_size: int, steps: int, precision: str = "fp32") -> None:
    """The fresh process measuring the reference's peak memory: build, `steps` steps, print JSON."""
    device = torch.device(device_name)
    module = load_reference(path)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_reference(module, device, tmp)
        generator = torch.Generator().manual_seed(0)
        batch = {key: (torch.rand(batch_size, 3, 256, 256, generator=generator) * 2 - 1).to(device)
                 for key in ("A", "B")}
        batch["name"] = [f"noise_{i}" for i in range(batch_size)]
        baseline = peak_rss_bytes()
        step = reference_step(model, batch, reference_autocast(device, precision))
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    peak = {"batch_size": batch_size, "steps": steps, "baseline_rss_bytes": baseline,
            "peak_rss_bytes": peak_rss_bytes(), "cuda_max_allocated_bytes": cuda}
    print(PROBE_MARK + json.dumps(peak), flush=True)


def reference_memory(path: Path, device: str, batch_size: int, steps: int, threads: int,
                     precision: str = "fp32") -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--reference", str(path), "--device", device,
               "--threads", str(threads), "--probe-reference", str(batch_size), "--probe-steps", str(steps),
               "--precision", precision]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(PROBE_MARK):
            return json.loads(line[len(PROBE_MARK):])
    tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    raise RuntimeError(f"the reference's memory probe at batch {batch_size} failed: {tail}")


# ------------------------------------------------------------------------------------------------
# Side by side


def summary(rates: list[float]) -> dict[str, Any]:
    return {"images_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "windows": rates}


def parameters(nets: Mapping[str, torch.nn.Module]) -> dict[str, int]:
    return {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}


REPLY_MARK = "SIDE_BY_SIDE_REPLY "
SIDES = ("ours_train", "ours_infer", "reference")  # one process each; see `Worker`


def inference_variants(compile: bool) -> list[tuple[str, bool]]:
    """(mode, compiled) of translate-kit's inference figures: eval and paper, and compiled with --compile."""
    return [(mode, compiled) for compiled in ((False, True) if compile else (False,)) for mode in ("eval", "paper")]


def build_side(side: str, args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[dict[str, Any], dict[str, Any]]:
    """The timed functions of one side, by name (`train_step:B`, `infer_eval:B`, ...), and its info.

    "ours_train" is translate-kit's trainer as `tkit train` builds it, with the CPU allocator
    setting it applies (translate_kit/allocator.py); "ours_infer" is the same method translated
    as `tkit translate` runs it, with malloc's defaults; "reference" is the reference's
    `Pix2PixModel`, with its own process settings (cudnn.benchmark = True, malloc's defaults).
    """
    from translate_kit_plugins.bench import bench_trainer, inference_fn, synthetic_batch, train_step_fn

    fns: dict[str, Callable[[], None]] = {}
    if side == "reference":
        module = load_reference(args.reference)
        device = torch.device(args.device)
        model = build_reference(module, device, stack.enter_context(tempfile.TemporaryDirectory()))
        torch.backends.cudnn.benchmark = True  # its BaseModel sets this for its whole process
        autocast = reference_autocast(device, args.precision)
        generator = torch.Generator().manual_seed(0)
        for b in args.batch_sizes:
            batch = {key: (torch.rand(b, 3, 256, 256, generator=generator) * 2 - 1).to(device) for key in "AB"}
            fns[f"train_step:{b}"] = reference_step(model, {**batch, "name": [f"noise_{i}" for i in range(b)]},
                                                    autocast)
        for b in args.infer_batch_sizes if args.inference else ():
            x = (torch.rand(b, 3, 256, 256, generator=generator) * 2 - 1).to(device)
            for mode in ("eval", "paper"):
                fns[f"infer_{mode}:{b}"] = reference_inference(model, x, mode, autocast)
        return fns, {"device": str(device), "parameters": parameters({"G": model.netG, "D": model.netD})}

    from translate_kit.plugins import get_plugin_manager
    from translate_kit.recipe import load_recipe
    from translate_kit.registry import Registry

    if side == "ours_train":  # the malloc setting `tkit train` makes on the CPU; inference keeps the defaults
        from translate_kit.allocator import keep_freed_memory

        if torch.device(args.device).type == "cpu":
            keep_freed_memory()
    pm = get_plugin_manager()
    registry = Registry.from_plugin_manager(pm)
    recipe = load_recipe(RECIPE, our_overrides(args), registry=registry)
    trainer = stack.enter_context(bench_trainer(recipe, registry, pm, device=args.device,
                                                noise_count=max(args.batch_sizes)))
    if side == "ours_train":
        for b in args.batch_sizes:
            fns[f"train_step:{b}"] = train_step_fn(trainer, synthetic_batch(trainer, b))
    else:
        for b in args.infer_batch_sizes:
            x = synthetic_batch(trainer, b, seed=1)["A"]
            for mode, compiled in inference_variants(args.compile):
                what = f"infer_{mode}" + ("_compiled" if compiled else "")
                fns[f"{what}:{b}"] = inference_fn(trainer.method, x, mode, trainer.step_runner.autocast, compile=compiled)
    return fns, {"device": str(trainer.device), "parameters": parameters(trainer.method.nets),
                 "cudnn_benchmark": torch.backends.cudnn.benchmark}


def serve(side: str, args: argparse.Namespace) -> None:
    """A worker process: build `side`, then answer the parent's requests on stdin, one per line.

    `info` -> JSON; `calibrate NAME` -> calls per window of about --window-seconds, after
    --warmup calls; `window NAME N` -> seconds of N calls (the device synchronised at both edges);
    `quit`. Replies go to stdout after REPLY_MARK; anything else printed goes to stderr.
    """
    from translate_kit_plugins.bench import device_sync

    replies = sys.stdout
    sys.stdout = sys.stderr  # the reference prints; keep the reply channel clean
    with contextlib.ExitStack() as stack:
        fns, info = build_side(side, args, stack)
        info["threads"] = torch.get_num_threads()
        answer_requests(fns, info, device_sync(torch.device(info["device"])), args, replies)


def answer_requests(fns: Mapping[str, Callable[[], None]], info: Mapping[str, Any], sync: Callable[[], None],
                    args: argparse.Namespace, replies: Any) -> None:
    """The worker's side of the protocol: answer the parent's requests on stdin until `quit`."""
    from translate_kit_plugins.bench import calls_per_window

    for line in sys.stdin:
        command, *words = line.split()
        if command == "quit":
            break
        if command == "info":
            answer = json.dumps(info)
        elif command == "calibrate":
            answer = str(calls_per_window(fns[words[0]], sync, args.warmup, args.window_seconds))
        else:  # window NAME N
            fn, calls = fns[words[0]], int(words[1])
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            answer = repr(time.perf_counter() - start)
        print(REPLY_MARK + answer, file=replies, flush=True)


class Worker:
    """One side in a process of its own (`serve`), so that each runs with its own process-wide
    settings (malloc thresholds, cudnn.benchmark, thread pools), as it does on its own."""

    def __init__(self, side: str, args: argparse.Namespace, extra_overrides: tuple[str, ...] = (),
                 label: str = "") -> None:
        self.side = f"{side} ({label})" if label else side
        self.errors = tempfile.TemporaryFile(mode="w+")
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--reference", str(args.reference),
                   "--device", args.device, "--threads", str(args.threads or torch.get_num_threads()),
                   "--batch-sizes", ",".join(map(str, args.batch_sizes)),
                   "--infer-batch-sizes", ",".join(map(str, args.infer_batch_sizes)),
                   "--warmup", str(args.warmup), "--window-seconds", str(args.window_seconds),
                   "--precision", args.precision, *(["--compile"] if args.compile else []),
                   *([] if args.inference else ["--no-inference"]),
                   *(f"--set={o}" for o in [*args.overrides, *extra_overrides])]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
                                        text=True)

    def ask(self, *words: object) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(" ".join(map(str, words)) + "\n")
            self.process.stdin.flush()
            for line in self.process.stdout:
                if line.startswith(REPLY_MARK):
                    return line[len(REPLY_MARK):].strip()
        except BrokenPipeError:
            pass
        self.process.wait()
        self.errors.seek(0)
        tail = " ".join(self.errors.read().strip().splitlines()[-3:])
        raise RuntimeError(f"the {self.side} process failed (exit status {self.process.returncode}): {tail}")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.errors.close()


SETTLE_S = 0.05  # pause before each window, so the other processes' worker threads have gone idle


def remote_windows(pairs: Mapping[str, tuple[Worker, str]], args: argparse.Namespace) -> dict[str, Any]:
    """ABBA windows over functions that live in worker processes (label -> (worker, function name))."""
    from translate_kit_plugins.bench import abba_windows

    steps = {label: int(worker.ask("calibrate", name)) for label, (worker, name) in pairs.items()}

    def run_window(label: str) -> float:
        worker, name = pairs[label]
        time.sleep(SETTLE_S)
        return float(worker.ask("window", name, steps[label]))

    return abba_windows(steps, run_window, windows=args.windows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from translate_kit_plugins.bench import peak_memory

    from translate_kit.plugins import get_plugin_manager
    from translate_kit.recipe import load_recipe
    from translate_kit.registry import Registry

    def say(line: str) -> None:
        if not args.json:
            print(f"... {line}", file=sys.stderr, flush=True)

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    load_reference(args.reference)  # a wrong path fails here, with its message, before any process starts
    recipe = load_recipe(RECIPE, our_overrides(args), registry=Registry.from_plugin_manager(
        get_plugin_manager()))
    rows: list[dict[str, Any]] = []
    say("building both models, each side in a process of its own")
    # Training sides: "ours_train", or one "ours_train:LABEL" per --variant, each in its own process.
    trainers = {f"ours_train:{label}": (label, tuple(extra)) for label, extra in args.variants} or {
        "ours_train": ("", ())}
    workers = {key: Worker("ours_train", args, extra, label) for key, (label, extra) in trainers.items()}
    workers.update({side: Worker(side, args) for side in SIDES if side != "ours_train"
                    and (side != "ours_infer" or args.inference)})
    try:
        info = {side: json.loads(worker.ask("info")) for side, worker in workers.items()}
        reference = workers["reference"]
        for b in args.batch_sizes:
            say(f"train step, batch {b}")
            pairs = {key: (workers[key], f"train_step:{b}") for key in trainers}
            pairs["reference"] = (reference, f"train_step:{b}")
            t = remote_windows(pairs, args)
            for key, (label, _) in trainers.items():
                row = {"what": "train_step", "batch_size": b, "ours": summary(t[key].rates(b)),
                       "reference": summary(t["reference"].rates(b))}
                rows.append({**row, "variant": label, "overrides": list(trainers[key][1])} if label else row)
        for b in args.infer_batch_sizes if args.inference else ():
            say(f"generator inference, batch {b}")
            pairs = {}
            for mode, compiled in inference_variants(args.compile):
                what = f"infer_{mode}" + ("_compiled" if compiled else "")
                pairs[what] = (workers["ours_infer"], f"{what}:{b}")
                pairs[f"reference_{mode}"] = (reference, f"infer_{mode}:{b}")
            t = remote_windows(pairs, args)
            for mode, compiled in inference_variants(args.compile):
                what = f"infer_{mode}" + ("_compiled" if compiled else "")
                rows.append({"what": what, "batch_size": b, "ours": summary(t[what].rates(b)),
                             "reference": summary(t[f"reference_{mode}"].rates(b))})
    finally:
        for worker in workers.values():
            worker.close()
    for row in rows:
        row["ratio"] = row["ours"]["images_per_s"] / row["reference"]["images_per_s"]
    first = info[next(iter(trainers))]  # the (first) translate-kit training side
    device_name, threads = first["device"], first["threads"]
    params = {"ours": first["parameters"], "reference": info["reference"]["parameters"]}

    memory: list[dict[str, Any]] = []
    if args.memory:
        for b in args.batch_sizes:
            say(f"peak memory, batch {b} (a fresh process per side)")
            ours_peak = peak_memory(recipe, device=device_name, batch_size=b, steps=args.probe_steps, threads=threads)
            reference_peak = reference_memory(args.reference, device_name, b, args.probe_steps, threads,
                                              args.precision)
            memory.append({"batch_size": b, "ours": dataclasses.asdict(ours_peak), "reference": reference_peak,
                           "ratio_peak_rss": ours_peak.peak_rss_bytes / reference_peak["peak_rss_bytes"]})
    notes = [
        "each side runs in a process of its own, with its own process-wide settings: translate-kit's training with "
        "the malloc setting `tkit train` applies on the CPU (translate_kit/allocator.py), its inference and the "
        "reference with glibc malloc's defaults",
        "windows alternate between the sides in ABBA order; figures are medians over the windows",
        "train step: one optimisation step of G and D on the same synthetic batch already on the device",
        "paper = translate-kit's paper mode / the reference's default test.py (networks in training mode); "
        "eval = translate-kit's eval mode / test.py --eval",
        "translate-kit checks every update's loss and gradients for NaN/inf (one reduction and one device sync per "
        "optimiser); the reference does not",
    ]
    if load_at_start + threads > (os.cpu_count() or 1) + 0.5:  # as translate_kit_plugins.bench.run_bench notes it
        notes.append(f"the machine was busy (load average {load_at_start:.1f} at the start, {os.cpu_count()} cores, "
                     f"{threads} threads): absolute figures are low and noisy, the ratios less so")
    if device_name.startswith("cuda"):
        notes.append("the reference runs with cudnn.benchmark = True (its BaseModel sets it), translate-kit with "
                     f"{first['cudnn_benchmark']}; translate-kit uses fused Adam and channels_last on "
                     "CUDA when the recipe says auto")
    if args.precision != "fp32":
        notes.append(f"{args.precision}: translate-kit with train.precision={args.precision}; the reference's step "
                     "and inference inside torch.autocast (it has no mixed-precision option of its own)")
    if args.variants and args.memory:
        notes.append("the memory probe trains translate-kit with --set's overrides only, not a variant's")
    if params["ours"] != params["reference"]:
        notes.append(f"PARAMETER COUNTS DIFFER: ours {params['ours']}, reference {params['reference']}")
    return {"device": device_name, "threads": threads, "torch_version": torch.__version__,
            "reference": str(args.reference), "precision": args.precision, "our_overrides": our_overrides(args),
            "parameters": params, "rows": rows, "memory": memory, "notes": notes}


def render(result: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from translate_kit_plugins.bench import LABELS as labels
    threads = f"{result['threads']} thread{'s' * (result['threads'] != 1)}"
    precision = result.get("precision", "fp32")
    table = Table(title=f"translate-kit vs reference pix2pix on {result['device']} ({threads}), {precision}, 256 px",
                  caption="images/s: median (min–max) over windows")
    for column in ("measure", "batch", "ours", "reference", "ours/ref"):
        table.add_column(column, justify="left" if column == "measure" else "right", no_wrap=True)

    def cell(figure: Mapping[str, Any]) -> str:
        return f"{figure['images_per_s']:.3g} ({figure['min']:.3g}–{figure['max']:.3g})"

    for row in result["rows"]:
        measure = labels[row["what"]] + (f" ({row['variant']})" if row.get("variant") else "")
        table.add_row(measure, str(row["batch_size"]), cell(row["ours"]), cell(row["reference"]),
                      f"{row['ratio']:.2f}")
    console = Console()
    console.print(table)
    if result["memory"]:
        memory = Table(title="peak RSS of training, a fresh process per side",
                       caption="GiB: peak (before the first step)")
        for column in ("batch", "ours", "reference", "ours/ref"):
            memory.add_column(column, justify="right", no_wrap=True)
        for m in result["memory"]:
            ours, ref = m["ours"], m["reference"]
            memory.add_row(str(m["batch_size"]),
                           f"{ours['peak_rss_bytes'] / 2**30:.2f} ({ours['baseline_rss_bytes'] / 2**30:.2f})",
                           f"{ref['peak_rss_bytes'] / 2**30:.2f} ({ref['baseline_rss_bytes'] / 2**30:.2f})",
                           f"{m['ratio_peak_rss']:.2f}")
        console.print(memory)
    console.print(f"parameters: ours {result['parameters']['ours']}, reference {result['parameters']['reference']}")
    for note in result["notes"]:
        console.print(f"[dim]note: {note}[/]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="checkout of pytorch-CycleGAN-and-pix2pix")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch-sizes", default=None, help="training batch sizes (default 1,4; --quick: 1)")
    parser.add_argument("--infer-batch-sizes", default=None, help="inference batch sizes (default 1,8; --quick: 1)")
    parser.add_argument("--windows", type=int, default=None, help="timed windows per side and figure (default 5)")
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="target length of a window (default 1.0; --quick: 0, one call)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per side first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra override of translate-kit's recipe, e.g. train.memory_format=contiguous")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-RSS probes")
    parser.add_argument("--compile", action="store_true",
                        help="also time ours compiled as `tkit translate --compile` runs it (the reference stays eager)")
    parser.add_argument("--probe-steps", type=int, default=2, help="training steps of each memory probe")
    parser.add_argument("--quick", action="store_true", help="a smoke run: batch 1, 2 windows of one call")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="both sides: fp32 (default) or bf16 autocast (the reference's wrapped in torch.autocast)")
    parser.add_argument("--variant", dest="variant_texts", action="append", default=[],
                        help="a translate-kit training side of its own, LABEL:KEY=VALUE[;KEY=VALUE] (repeatable), "
                             "e.g. graphs:train.cuda_graphs=auto")
    parser.add_argument("--no-inference", dest="inference", action="store_false",
                        help="time training only: no inference process and rows")
    parser.add_argument("--probe-reference", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=SIDES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            fail(f"--threads: expected a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.probe_reference is not None:
        probe_reference(args.reference, args.device, args.probe_reference, args.probe_steps, args.precision)
        return
    args.variants = [parse_variant(text) for text in args.variant_texts]
    if len({label for label, _ in args.variants}) != len(args.variants):
        fail("--variant: each variant needs a label of its own")
    args.batch_sizes = parse_sizes(args.batch_sizes or ("1" if args.quick else "1,4"), "--batch-sizes")
    args.infer_batch_sizes = parse_sizes(args.infer_batch_sizes or ("1" if args.quick else "1,8"),
                                         "--infer-batch-sizes")
    args.windows = args.windows if args.windows is not None else (2 if args.quick else 5)
    args.window_seconds = args.window_seconds if args.window_seconds is not None else (0.0 if args.quick else 1.0)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.windows < 1 or args.warmup < 1 or args.window_seconds < 0:
        fail("--windows and --warmup must be at least 1 and --window-seconds at least 0")
    if args.worker is not None:
        serve(args.worker, args)
        return
    from translate_kit.errors import TranslateKitError

    try:
        result = run(args)
    except TranslateKitError as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result)


if __name__ == "__main__":
    main()
