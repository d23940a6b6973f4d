"""translate-kit's MSRResNet and RRDBNet against BasicSR's own architecture code, side by side.

    python benchmarks/sr_side_by_side.py [--basicsr PATH] [--device cpu] [--nets msrresnet,rrdbnet]
        [--batch-size 16] [--rrdb-batch-size 4] [--lr-size 32] [--windows 5] [--threads N]
        [--setup same|native] [--compile] [--no-memory] [--quick] [--json]

PATH is a checkout of BasicSR (https://github.com/XPixelGroup/BasicSR), by default .ref/BasicSR, a
git-ignored folder; it is never committed:

    git clone https://github.com/XPixelGroup/BasicSR .ref/BasicSR

**Only BasicSR's architecture files are imported**: basicsr/archs/arch_util.py, srresnet_arch.py
and rrdbnet_arch.py, each loaded by path with importlib. None of BasicSR's package `__init__` files
runs (basicsr/__init__.py imports its data, losses, metrics, models and compiled ops, and its last
release breaks with current torchvision). What the three files import from the package is stubbed
in `sys.modules`, minimally: `basicsr.utils.registry.ARCH_REGISTRY` (its `register()` gives the
class back unchanged), `basicsr.utils.get_root_logger` (a `logging` logger) and `basicsr.ops.dcn`
(placeholders for the deformable convolution, which neither network uses). Their other imports
are the real ones (torch, torchvision, distutils; the last two are stubbed only where missing, and
the result says so).

Both sides build the same networks, MSRResNet (64 features, 16 blocks, x4) and RRDBNet (64
features, 23 RRDBs, growth 32, x4), with the same initial weights: translate-kit's initialisation,
its state dict loaded into BasicSR's network (the keys are the same). Before anything is timed the
two forward the batch on the CPU in fp32, and their outputs must agree to 1e-5 (the largest
difference is reported). One training step is: forward, L1 loss to the HR batch, backward, an Adam
step (lr 2e-4, betas (0.9, 0.99): BasicSR's MSRResNet and RRDB-PSNR settings), on the same batch
(noise; `--lr-size` pixels square, the HR batch 4x that) already on the device.

- `--setup same` (default): both sides run the very same loop, so the network code is the only
  difference: fused Adam (translate-kit's trainer's choice on the CPU and CUDA), glibc malloc's
  defaults, and cudnn.benchmark = True on CUDA.
- `--setup native`: each side with its own framework's training setup. translate-kit: fused Adam
  with its moments made before the first step (`translate_kit.train.optim.allocate_adam_state`)
  and, on the CPU, the malloc setting `tkit train` applies (`translate_kit.allocator`). BasicSR:
  torch's default (for-each) Adam, as its SRModel builds it, and cudnn.benchmark = True, as its
  train.py sets it.

As in benchmarks/reference_side_by_side.py, whose process helpers this script imports, each side
runs in a worker process of its own and the parent times windows that alternate between the sides
in ABBA order, one process computing at a time; every figure is the median over its windows. The
peak RSS of training is measured for each side, network and variant (compiled ones aside) in a
fresh process (a peak RSS is a lifetime peak), with CUDA's max_memory_allocated on a GPU; "step" is
that peak less the peak before the first step, i.e. without imports, weights and batch.

On CUDA the step is also timed in channels_last with bf16 autocast and, with `--compile`, that step
through `torch.compile`, both sides alike. The tables give images/s and the ratio ours / BasicSR
(above 1: translate-kit is faster; for memory, above 1: translate-kit uses more).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

# Run by path, so this folder is on sys.path: the worker processes and helpers of the pix2pix side by side.
from reference_side_by_side import (
    PROBE_MARK,
    Worker,
    answer_requests,
    fail,
    peak_rss_bytes,
    remote_windows,
    summary,
)
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASICSR = ROOT / ".ref" / "BasicSR"
BASICSR_ARCH_FILES = ("arch_util", "srresnet_arch", "rrdbnet_arch")  # loaded in this order
NETS = ("msrresnet", "rrdbnet")
SIDES = ("ours", "basicsr")  # one worker process each
SCALE = 4
LR, BETAS = 2e-4, (0.9, 0.99)  # BasicSR's options/train/{SRResNet_SRGAN,ESRGAN}/train_*_x4.yml
SANITY_TOLERANCE = 1e-5  # largest |ours - BasicSR| of the outputs on the batch, fp32 on the CPU
ARCHS = {  # the settings, and --quick's tiny ones
    "full": {"msrresnet": {"nf": 64, "n_blocks": 16}, "rrdbnet": {"nf": 64, "n_blocks": 23, "growth": 32}},
    "quick": {"msrresnet": {"nf": 16, "n_blocks": 2}, "rrdbnet": {"nf": 16, "n_blocks": 2, "growth": 8}},
}


# ------------------------------------------------------------------------------------------------
# BasicSR's architecture files, and nothing else of it


class _ArchRegistry:
    """Stands in for `basicsr.utils.registry.ARCH_REGISTRY`: `@ARCH_REGISTRY.register()` keeps the class."""

    def register(self, obj: Any = None) -> Any:
        return obj if obj is not None else (lambda cls: cls)


class _Unavailable(nn.Module):
    """Stands in for what this benchmark does not load (BasicSR's compiled deformable convolution)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("not loaded by benchmarks/sr_side_by_side.py")


def _unavailable(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("not loaded by benchmarks/sr_side_by_side.py")


def _stub(name: str, **attrs: Any) -> ModuleType:
    """A package in sys.modules whose submodules come only from sys.modules (an empty __path__)."""
    module = ModuleType(name)
    module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _stub_if_missing(name: str, **attrs: Any) -> bool:
    """Stub a third-party module BasicSR's arch_util imports but never calls for these networks."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # distutils' deprecation
            importlib.import_module(name)
        return False
    except Exception:
        _stub(name, **attrs)
        return True


def load_basicsr(path: Path) -> tuple[dict[str, type[nn.Module]], list[str]]:
    """BasicSR's `MSRResNet` and `RRDBNet` classes, from its three architecture files only.

    Returns:
        net name -> class, and the third-party modules stubbed because they are missing.
    """
    path = path.expanduser().resolve()
    archs = path / "basicsr" / "archs"
    if not path.is_dir():
        fail(f"--basicsr {path}: no such folder. Fetch BasicSR's code first, e.g. "
             f"git clone https://github.com/XPixelGroup/BasicSR {path}")
    missing = [f"basicsr/archs/{name}.py" for name in BASICSR_ARCH_FILES if not (archs / f"{name}.py").is_file()]
    if missing:
        fail(f"--basicsr {path}: it has no {', '.join(missing)}, so it is not a checkout of BasicSR. "
             "Pass the folder that holds basicsr/ and setup.py.")
    stubbed = []
    if "basicsr.archs.rrdbnet_arch" not in sys.modules:
        _stub("basicsr")
        _stub("basicsr.archs")  # its __init__ would import every arch file of the package
        _stub("basicsr.utils", get_root_logger=lambda *args, **kwargs: logging.getLogger("basicsr"))
        _stub("basicsr.utils.registry", ARCH_REGISTRY=_ArchRegistry())
        _stub("basicsr.ops")
        _stub("basicsr.ops.dcn", ModulatedDeformConvPack=_Unavailable, modulated_deform_conv=_unavailable)
        if _stub_if_missing("torchvision", __version__="0"):
            stubbed.append("torchvision")
        if _stub_if_missing("distutils"):
            _stub("distutils.version", LooseVersion=_unavailable)
            stubbed.append("distutils")
        for name in BASICSR_ARCH_FILES:
            spec = importlib.util.spec_from_file_location(f"basicsr.archs.{name}", archs / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    spec.loader.exec_module(module)
            except Exception as exc:
                why = " ".join(f"{type(exc).__name__}: {exc}".split())
                fail(f"--basicsr {path}: basicsr/archs/{name}.py does not import with this script's stubs ({why}). "
                     "It may need more of BasicSR than its registry, logger and ops.dcn; see the docstring.")
    classes = {"msrresnet": sys.modules["basicsr.archs.srresnet_arch"].MSRResNet,
               "rrdbnet": sys.modules["basicsr.archs.rrdbnet_arch"].RRDBNet}
    return classes, stubbed


def basicsr_commit(path: Path) -> str | None:
    """The checkout's commit (with "-dirty" when tracked files changed), or None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# ------------------------------------------------------------------------------------------------
# The networks and the training step, on either side


def build_ours(net: str, arch: Mapping[str, int]) -> nn.Module:
    """translate-kit's network, from its registered factory."""
    from translate_kit_plugins.sr_networks import msrresnet, rrdbnet

    return {"msrresnet": msrresnet, "rrdbnet": rrdbnet}[net](scale=SCALE, **arch)


def build_basicsr(classes: Mapping[str, type[nn.Module]], net: str, arch: Mapping[str, int]) -> nn.Module:
    """BasicSR's network with the same settings, under its own argument names."""
    if net == "msrresnet":
        return classes[net](num_in_ch=3, num_out_ch=3, num_feat=arch["nf"], num_block=arch["n_blocks"], upscale=SCALE)
    return classes[net](num_in_ch=3, num_out_ch=3, scale=SCALE, num_feat=arch["nf"], num_block=arch["n_blocks"],
                        num_grow_ch=arch["growth"])


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def prepare(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Write each network's initial weights (translate-kit's) and batch to `folder`; check both sides on them.

    Each side's processes load these files, so both train the same weights on the same batch. The
    check: BasicSR's network takes translate-kit's state dict (strict) and both forward the batch,
    fp32 on the CPU, to outputs within SANITY_TOLERANCE.
    """
    classes, _ = load_basicsr(args.basicsr)
    sanity: dict[str, Any] = {}
    for index, net in enumerate(args.nets):
        arch = ARCHS[args.arch][net]
        torch.manual_seed(index)
        ours = build_ours(net, arch)
        theirs = build_basicsr(classes, net, arch)
        state = ours.state_dict()
        try:
            theirs.load_state_dict(state)
        except RuntimeError as exc:
            fail(f"BasicSR's {type(theirs).__name__} does not take translate-kit's state dict: "
                 f"{' '.join(str(exc).split())[:400]}")
        b, side = batch_size(args, net), args.lr_size
        generator = torch.Generator().manual_seed(100 + index)
        lr = torch.rand(b, 3, side, side, generator=generator) * 2 - 1
        hr = torch.rand(b, 3, SCALE * side, SCALE * side, generator=generator) * 2 - 1
        with torch.no_grad():
            difference = (ours.eval()(lr) - theirs.eval()(lr)).abs().max().item()
        sanity[net] = {"max_abs_diff": difference, "tolerance": SANITY_TOLERANCE, "batch_size": b,
                       "parameters": {"ours": parameter_count(ours), "basicsr": parameter_count(theirs)}}
        if not difference <= SANITY_TOLERANCE:
            fail(f"sanity check: translate-kit's and BasicSR's {net} disagree on the same weights and batch, "
                 f"max |difference| {difference:.3g} > {SANITY_TOLERANCE:g}; the timings would compare different "
                 "networks")
        torch.save({"state_dict": state, "lr": lr, "hr": hr}, folder / f"{net}.pt")
    return sanity


def load_side(side: str, net: str, args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """`side`'s network with the shared initial weights, and the shared (LR, HR) batch, on the CPU."""
    arch = ARCHS[args.arch][net]
    model = build_ours(net, arch) if side == "ours" else build_basicsr(load_basicsr(args.basicsr)[0], net, arch)
    saved = torch.load(Path(args.init_dir) / f"{net}.pt", weights_only=True)
    model.load_state_dict(saved["state_dict"])
    return model.train(), saved["lr"], saved["hr"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """How the step runs: memory format, autocast and compilation, the same on both sides."""

    name: str
    channels_last: bool = False
    bf16: bool = False  # autocast to bfloat16
    compiled: bool = False


def variants(device: torch.device, compile: bool) -> list[Variant]:
    """fp32; on CUDA also channels_last + bf16 autocast; with `compile`, the last of those compiled too."""
    chosen = [Variant("fp32")]
    if device.type == "cuda":
        chosen.append(Variant("channels_last+bf16", channels_last=True, bf16=True))
    if compile:
        chosen.append(dataclasses.replace(chosen[-1], name=chosen[-1].name + "+compile", compiled=True))
    return chosen


def process_settings(side: str, setup: str, device: torch.device) -> dict[str, Any]:
    """Apply `side`'s process-wide settings in this process (see `--setup` in the docstring); return them."""
    kept = False
    if setup == "native" and side == "ours" and device.type == "cpu":
        from translate_kit.allocator import keep_freed_memory

        kept = keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = setup == "same" or side == "basicsr"
    return {"keep_freed_memory": kept, "cudnn_benchmark": torch.backends.cudnn.benchmark}


def adam(side: str, params: Iterable[nn.Parameter], device: torch.device, setup: str) -> torch.optim.Optimizer:
    """Adam with BasicSR's lr and betas, as `setup` builds it for `side`."""
    if setup == "native" and side == "basicsr":
        return torch.optim.Adam(params, lr=LR, betas=BETAS)  # BaseModel.get_optimizer: torch's defaults
    # Fused on the CPU and CUDA, as translate_kit.train.optim.build_optimizers makes it.
    optimizer = torch.optim.Adam(params, lr=LR, betas=BETAS, fused=True if device.type in ("cpu", "cuda") else None)
    if setup == "native":
        from translate_kit.train.optim import allocate_adam_state

        allocate_adam_state(optimizer)
    return optimizer


def train_step(side: str, net: nn.Module, lr: torch.Tensor, hr: torch.Tensor, variant: Variant,
               setup: str, device: torch.device) -> Callable[[], None]:
    """One training step of `net` (moved, in place, to `device` and the variant's memory format) per call."""
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    net.to(device=device, memory_format=fmt)
    lr, hr = (t.to(device).contiguous(memory_format=fmt) for t in (lr, hr))
    optimizer = adam(side, net.parameters(), device, setup)
    model = torch.compile(net) if variant.compiled else net

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16) if variant.bf16 else contextlib.nullcontext():
            loss = F.l1_loss(model(lr), hr)
        loss.backward()
        optimizer.step()

    return step


# ------------------------------------------------------------------------------------------------
# Worker processes and memory probes


def serve(side: str, args: argparse.Namespace) -> None:
    """A worker process: build `side`'s steps, then answer the parent's requests on stdin.

    The protocol is benchmarks/reference_side_by_side.py's (`Worker.ask`, `remote_windows`):
    `info`, `calibrate NAME`, `window NAME N`, `quit`; replies go to stdout after REPLY_MARK.
    """
    from translate_kit_plugins.bench import device_sync

    replies = sys.stdout
    sys.stdout = sys.stderr  # keep the reply channel clean
    device = torch.device(args.device)
    info: dict[str, Any] = {"device": str(device), **process_settings(side, args.setup, device), "parameters": {}}
    fns: dict[str, Callable[[], None]] = {}
    for net in args.nets:
        base, lr, hr = load_side(side, net, args)
        info["parameters"][net] = parameter_count(base)
        for variant in variants(device, args.compile):
            fns[f"{net}:{variant.name}"] = train_step(side, copy.deepcopy(base), lr, hr, variant, args.setup, device)
        del base
    info["threads"] = torch.get_num_threads()
    answer_requests(fns, info, device_sync(device), args, replies)


def child_options(args: argparse.Namespace) -> list[str]:
    """The options a worker or probe process of this script gets from the parent."""
    return ["--basicsr", str(args.basicsr), "--device", args.device, "--threads", str(args.threads),
            "--init-dir", str(args.init_dir), "--setup", args.setup, "--nets", ",".join(args.nets),
            "--warmup", str(args.warmup), "--window-seconds", str(args.window_seconds),
            "--probe-steps", str(args.probe_steps), *(["--quick"] if args.quick else []),
            *(["--compile"] if args.compile else [])]


class SRWorker(Worker):
    """`Worker` (its `ask` and `close`, the request protocol) started on this script's `serve`.

    `Worker.__init__` is not called: it builds the pix2pix script's command line.
    """

    def __init__(self, side: str, args: argparse.Namespace) -> None:
        self.side = side
        self.errors = tempfile.TemporaryFile(mode="w+")
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, *child_options(args)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
                                        text=True)


def probe(side: str, net: str, variant_name: str, args: argparse.Namespace) -> None:
    """The fresh process measuring one side's peak memory: build, `--probe-steps` steps, print JSON.

    BasicSR's probe imports nothing of translate-kit (`peak_rss_bytes` comes from a module that
    imports only torch), so its RSS holds only what BasicSR's side needs.
    """
    device = torch.device(args.device)
    process_settings(side, args.setup, device)
    variant = {v.name: v for v in variants(device, compile=False)}[variant_name]
    model, lr, hr = load_side(side, net, args)
    step = train_step(side, model, lr, hr, variant, args.setup, device)
    baseline = peak_rss_bytes()
    for _ in range(args.probe_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cuda = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    print(PROBE_MARK + json.dumps({"steps": args.probe_steps, "baseline_rss_bytes": baseline,
                                   "peak_rss_bytes": peak_rss_bytes(), "cuda_max_allocated_bytes": cuda}), flush=True)


def peak_memory(side: str, net: str, variant: Variant, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", side, "--probe-net", net,
               "--probe-variant", variant.name, *child_options(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(PROBE_MARK):
            return json.loads(line[len(PROBE_MARK):])
    tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    raise RuntimeError(f"the {side} memory probe of {net} ({variant.name}) failed (exit status {done.returncode}): "
                       f"{tail}")


# ------------------------------------------------------------------------------------------------
# Side by side


def batch_size(args: argparse.Namespace, net: str) -> int:
    return args.batch_size if net == "msrresnet" else args.rrdb_batch_size


def run(args: argparse.Namespace) -> dict[str, Any]:
    def say(line: str) -> None:
        if not args.json:
            print(f"... {line}", file=sys.stderr, flush=True)

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    device = torch.device(args.device)
    chosen = variants(device, args.compile)
    _, stubbed = load_basicsr(args.basicsr)  # a wrong path fails here, with its message, before any process starts
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sr_side_by_side_") as folder:
        args.init_dir = folder
        say("sanity check: translate-kit's weights in BasicSR's networks, outputs on the same batch")
        sanity = prepare(args, Path(folder))
        say("building both sides, each in a process of its own")
        workers = {side: SRWorker(side, args) for side in SIDES}
        try:
            info = {side: json.loads(worker.ask("info")) for side, worker in workers.items()}
            for net in args.nets:
                b = batch_size(args, net)
                for variant in chosen:
                    say(f"{net}, {variant.name}: training step, batch {b}")
                    name = f"{net}:{variant.name}"
                    t = remote_windows({side: (workers[side], name) for side in SIDES}, args)
                    row = {"net": net, "variant": variant.name, "batch_size": b,
                           **{side: summary(t[side].rates(b)) for side in SIDES}}
                    row["ratio"] = row["ours"]["images_per_s"] / row["basicsr"]["images_per_s"]
                    rows.append(row)
        finally:
            for worker in workers.values():
                worker.close()
        if args.memory:
            for net in args.nets:
                for variant in (v for v in chosen if not v.compiled):
                    say(f"{net}, {variant.name}: peak memory (a fresh process per side)")
                    peaks = {side: peak_memory(side, net, variant, args) for side in SIDES}
                    ours, ref = peaks["ours"], peaks["basicsr"]
                    entry = {"net": net, "variant": variant.name, "batch_size": batch_size(args, net), **peaks,
                             "ratio_peak_rss": ours["peak_rss_bytes"] / ref["peak_rss_bytes"],
                             "ratio_step_rss": (ours["peak_rss_bytes"] - ours["baseline_rss_bytes"])
                             / max(1, ref["peak_rss_bytes"] - ref["baseline_rss_bytes"])}
                    if ours["cuda_max_allocated_bytes"] and ref["cuda_max_allocated_bytes"]:
                        entry["ratio_cuda_max_allocated"] = (ours["cuda_max_allocated_bytes"]
                                                             / ref["cuda_max_allocated_bytes"])
                    memory.append(entry)
    threads = info["ours"]["threads"]
    notes = [
        "both sides train the same weights (translate-kit's initialisation, its state dict loaded into BasicSR's "
        "network) on the same batch: forward, L1 loss, backward, Adam (lr 2e-4, betas 0.9, 0.99)",
        "BasicSR: only basicsr/archs/{arch_util,srresnet_arch,rrdbnet_arch}.py, imported by path; its registry, "
        "logger and ops.dcn stubbed",
        "windows alternate between the sides in ABBA order; figures are medians over the windows",
    ]
    if args.setup == "same":
        notes.append("setup same: one loop for both sides, fused Adam, malloc's defaults"
                     + (", cudnn.benchmark on" if device.type == "cuda" else ""))
    else:
        notes.append("setup native: translate-kit with fused Adam, its moments made before the first step"
                     + (" and the malloc setting of `tkit train`" if device.type == "cpu" else "")
                     + "; BasicSR with torch's default (for-each) Adam" + (", cudnn.benchmark on"
                                                                           if device.type == "cuda" else ""))
    if stubbed:
        notes.append(f"not installed, stubbed for BasicSR's arch_util: {', '.join(stubbed)}")
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        notes.append("fp32 convolutions may run in TF32 on both sides (torch.backends.cudnn.allow_tf32)")
    if load_at_start + threads > (os.cpu_count() or 1) + 0.5:  # as translate_kit_plugins.bench.run_bench notes it
        notes.append(f"the machine was busy (load average {load_at_start:.1f} at the start, {os.cpu_count()} cores, "
                     f"{threads} threads): absolute figures are low and noisy, the ratios less so")
    if args.arch == "quick":
        notes.append("--quick: tiny networks and images, a smoke run; the figures mean nothing")
    return {"device": info["ours"]["device"], "threads": threads, "torch_version": torch.__version__,
            "basicsr": {"path": str(args.basicsr), "commit": basicsr_commit(args.basicsr), "stubbed": stubbed},
            "setup": args.setup, "processes": {side: {k: info[side][k] for k in ("keep_freed_memory",
                                                                                 "cudnn_benchmark")}
                                               for side in SIDES},
            "archs": {net: ARCHS[args.arch][net] for net in args.nets}, "scale": SCALE, "lr_size": args.lr_size,
            "sanity": sanity, "rows": rows, "memory": memory, "notes": notes}


def render(result: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    commit = (result["basicsr"]["commit"] or "unknown commit")[:12]
    threads = f"{result['threads']} thread{'s' * (result['threads'] != 1)}"
    size = result["lr_size"]
    table = Table(title=f"translate-kit vs BasicSR ({commit}) on {result['device']} ({threads}), one training "
                        f"step, {size}->{size * result['scale']} px, setup {result['setup']}",
                  caption="images/s: median (min–max) over windows")
    for column in ("network", "variant", "batch", "ours", "BasicSR", "ours/BasicSR"):
        table.add_column(column, justify="left" if column in ("network", "variant") else "right", no_wrap=True)

    def cell(figure: Mapping[str, Any]) -> str:
        return f"{figure['images_per_s']:.3g} ({figure['min']:.3g}–{figure['max']:.3g})"

    for row in result["rows"]:
        table.add_row(row["net"], row["variant"], str(row["batch_size"]), cell(row["ours"]), cell(row["basicsr"]),
                      f"{row['ratio']:.2f}")
    console = Console(width=None if sys.stdout.isatty() else 132)  # a log keeps the tables whole
    console.print(table)
    if result["memory"]:
        cuda = any("ratio_cuda_max_allocated" in m for m in result["memory"])
        memory = Table(title="peak RSS of training, a fresh process per side",
                       caption="GiB: peak (before the first step); ratios ours/BasicSR of the peak, of the step "
                               "(peak less before)" + (" and of CUDA's max_memory_allocated" if cuda else ""))
        for column in ("network", "variant", "batch", "ours", "BasicSR", "ours/BasicSR", "step",
                       *(["cuda"] if cuda else [])):
            memory.add_column(column, justify="left" if column in ("network", "variant") else "right", no_wrap=True)
        for m in result["memory"]:
            ours, ref = m["ours"], m["basicsr"]
            memory.add_row(m["net"], m["variant"], str(m["batch_size"]),
                           f"{ours['peak_rss_bytes'] / 2**30:.2f} ({ours['baseline_rss_bytes'] / 2**30:.2f})",
                           f"{ref['peak_rss_bytes'] / 2**30:.2f} ({ref['baseline_rss_bytes'] / 2**30:.2f})",
                           f"{m['ratio_peak_rss']:.2f}", f"{m['ratio_step_rss']:.2f}",
                           *([f"{m['ratio_cuda_max_allocated']:.2f}" if "ratio_cuda_max_allocated" in m else "-"]
                             if cuda else []))
        console.print(memory)
    for net, check in result["sanity"].items():
        console.print(f"sanity: {net} outputs agree, max |ours - BasicSR| = {check['max_abs_diff']:.2g} "
                      f"(tolerance {check['tolerance']:g}); {check['parameters']['ours']:,} parameters each")
    for note in result["notes"]:
        console.print(f"[dim]note: {note}[/]")


def parse_nets(text: str) -> tuple[str, ...]:
    nets = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [net for net in nets if net not in NETS]
    if not nets or unknown:
        fail(f"--nets: expected a comma-separated choice of {', '.join(NETS)}, got {text!r}")
    return nets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--basicsr", type=Path, default=DEFAULT_BASICSR,
                        help=f"checkout of XPixelGroup/BasicSR (default {DEFAULT_BASICSR.relative_to(ROOT)})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--nets", default=",".join(NETS), help=f"networks to compare (default {','.join(NETS)})")
    parser.add_argument("--batch-size", type=int, default=None, help="MSRResNet's batch (default 16; --quick: 2)")
    parser.add_argument("--rrdb-batch-size", type=int, default=None,
                        help="RRDBNet's batch (default 4 on the CPU, 16 on CUDA; --quick: 2)")
    parser.add_argument("--lr-size", type=int, default=None,
                        help="side of the low-resolution images; the targets are 4x (default 32; --quick: 16)")
    parser.add_argument("--windows", type=int, default=None, help="timed windows per side and figure (default 5)")
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="target length of a window (default 1.0; --quick: 0, one call)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per side first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--setup", choices=("same", "native"), default="same",
                        help="same: one loop for both sides (default); native: each framework's own optimiser and "
                             "process settings")
    parser.add_argument("--compile", action="store_true", help="also time the step through torch.compile, both sides")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-RSS probes")
    parser.add_argument("--probe-steps", type=int, default=2, help="training steps of each memory probe")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: tiny networks (16 features, 2 blocks), 16 px, batch 2, 2 windows of one call")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    parser.add_argument("--worker", choices=SIDES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe", choices=SIDES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-net", choices=NETS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-variant", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--init-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    args.nets = parse_nets(args.nets)
    args.basicsr = args.basicsr.expanduser().resolve()
    args.arch = "quick" if args.quick else "full"
    try:
        device = torch.device(args.device)
    except RuntimeError:
        fail(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {args.device}: CUDA is not available here")
    if args.threads is not None and args.threads < 1:
        fail(f"--threads: expected a positive integer, got {args.threads}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    if args.batch_size is None:
        args.batch_size = 2 if args.quick else 16
    if args.rrdb_batch_size is None:
        args.rrdb_batch_size = 2 if args.quick else 16 if device.type == "cuda" else 4
    if args.lr_size is None:
        args.lr_size = 16 if args.quick else 32
    args.windows = args.windows if args.windows is not None else (2 if args.quick else 5)
    args.window_seconds = args.window_seconds if args.window_seconds is not None else (0.0 if args.quick else 1.0)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if min(args.batch_size, args.rrdb_batch_size, args.lr_size) < 1:
        fail("--batch-size, --rrdb-batch-size and --lr-size must be positive")
    if args.windows < 1 or args.warmup < 1 or args.window_seconds < 0 or args.probe_steps < 1:
        fail("--windows, --warmup and --probe-steps must be at least 1 and --window-seconds at least 0")
    if args.probe is not None:
        probe(args.probe, args.probe_net, args.probe_variant, args)
        return
    if args.worker is not None:
        serve(args.worker, args)
        return
    from translate_kit.errors import TranslateKitError

    try:
        result = run(args)
    except (TranslateKitError, RuntimeError) as exc:
        fail(str(exc))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result)


if __name__ == "__main__":
    main()
