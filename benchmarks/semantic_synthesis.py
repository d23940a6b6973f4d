"""pix2pix, pix2pixHD, SPADE and multimodal SPADE (VAE) on the real facades, with the same budget,
scored by one FCN segmenter (issue 14, item 7). Sized for a CPU: 128 px, narrower networks.

    python benchmarks/semantic_synthesis.py --data /work/shared/data/facades --work /tmp/semantic_bench \\
        --steps 600 --batch 4 --segmenter-steps 300

    python benchmarks/semantic_synthesis.py --data /work/shared/data/facades --work /tmp/semantic_bench --probe 5

What one command does (every run folder goes under --work, outside the repository):

1. Trains each generator with `tkit train RECIPE --set ...` in a subprocess, the same number of
   steps (--steps) and batch size (--batch) for each, at 128 px (resize 143, random 128 crop), and
   records each run's wall time. The learning rate stays constant: --steps is far below the
   recipes' 100 epochs at the initial rate.
2. Trains the FCN segmenter (`fcn_facades` at 128 px, --segmenter-steps at batch 8), or reuses the
   one given by --segmenter (or found in WORK/runs/fcn_facades_128); the same one for every method.
3. Scores each generator on the test split with `tkit eval RUN --segmenter SEG --split test --json`
   (eval mode; SPADE-VAE with eval's seed 0): FCN per-pixel / per-class accuracy and class IoU,
   L1 / PSNR / SSIM, and the ground-truth row (the segmenter on the real photos).
4. Diversity of SPADE-VAE: K samples per test map (z seeded 0 .. K-1 through
   `Translator.translate_samples`), the mean pairwise L1 between the samples of a map ([0, 1]
   pixel units) averaged over maps, and the FCN-score of each sample set.
5. Pictures (128 px tiles) in --images: one test map through every method, SPADE-VAE with four z,
   and SPADE-VAE following reference photos from the train split (`with_style`).
6. Prints a table and writes every figure to WORK/semantic_synthesis.json.

--probe N trains each for N steps only and prints seconds per step (from the wall time of an N-step
run minus a 1-step run, so start-up and the final checkpoint cancel) and the --steps that fits
--budget-minutes. The figures are in docs/semantic-synthesis.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TKIT = str(Path(sys.executable).with_name("tkit"))
SIZE = ["data.load_size=143", "data.crop_size=128"]  # 128 px crops of 143 px images (pix2pix's 286 -> 256, halved)

# name: (recipe, overrides). Widths are narrowed for a 2-core CPU; the losses are the recipes'.
METHODS: dict[str, tuple[str, list[str]]] = {
    "pix2pix": ("pix2pix_facades", [
        "generator.name=unet", "generator.num_downs=7", "generator.ngf=32",  # 128 -> 1x1 bottleneck
        "discriminator.ndf=32",
    ]),
    "pix2pixHD": ("pix2pixhd_facades", [
        "generator.ngf=32", "generator.n_downsampling=3", "generator.n_blocks=4",  # 128 -> 16x16, 256 channels
        "discriminator.ndf=32",
    ]),
    "SPADE": ("spade_facades", [
        "generator.ngf=16", "generator.crop_size=128", "generator.spade_hidden=64",
        "discriminator.ndf=32",
    ]),
    "SPADE-VAE": ("spade_facades", [
        "generator.ngf=16", "generator.crop_size=128", "generator.spade_hidden=64",
        "discriminator.ndf=32",
        "method.use_vae=true", 'encoder.name="spade_encoder"', "encoder.ndf=16", "encoder.input_size=128",
    ]),
}
SEGMENTER = ("fcn_facades", [
    "data.load_size=128", "data.crop_size=128",  # no jitter, as the recipe: photos at eval size
    "train.batch_size=8",
])
SEGMENTER_NAME = "fcn_facades_128"


def train(recipe: str, name: str, sets: list[str], *, data: str, work: Path, steps: int, batch: int | None,
          reuse: bool = False) -> float:
    """`tkit train` in a subprocess; returns its wall time in seconds (log in WORK/logs/NAME.log).
    With `reuse`, a run this script finished before with the same command is kept, with its time."""
    args = [TKIT, "train", recipe, "--overwrite", "--device", "cpu",
            "--set", f"data.root={data}", "--set", f"run.dir={work / 'runs'}", "--set", f"run.name={name}",
            "--set", f"train.max_steps={steps}", "--set", f"train.log_every={max(1, min(50, steps))}",
            "--set", "train.sample_every=100000", "--set", "train.checkpoint_every=100000"]
    if batch is not None:
        args += ["--set", f"train.batch_size={batch}"]
    for item in sets:
        args += ["--set", item]
    record = work / "runs" / name / "wall_time.json"
    if reuse and record.is_file() and json.loads(record.read_text())["command"] == args:
        return json.loads(record.read_text())["seconds"]
    (work / "logs").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(work / "logs" / f"{name}.log", "w") as log:
        log.write(" ".join(args) + "\n")
        log.flush()
        done = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"tkit train {recipe} ({name}) failed; see {work / 'logs' / f'{name}.log'}")
    record.write_text(json.dumps({"command": args, "seconds": seconds}))
    return seconds


def evaluate(run: Path, segmenter: Path, out: Path, extra: list[str] | None = None) -> tuple[dict[str, Any], float]:
    """`tkit eval RUN --segmenter SEG --split test --json [EXTRA]`; returns the JSON and the wall time."""
    args = [TKIT, "eval", str(run), "--segmenter", str(segmenter), "--split", "test", "--device", "cpu",
            "--json", str(out), "--out", str(out.with_suffix("")), "--no-images", *(extra or [])]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"tkit eval {run} failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(out.read_text()), seconds


def _loader(translator: Any, registry: Any, split: str, batch_size: int = 8):  # noqa: ANN202
    """The run's dataset at test-time size, prepared by its method as `tkit eval` does (uint8 A, B)."""
    import torch
    from torch.utils.data import DataLoader

    from translate_kit.data.jitter import from_unit_range
    from translate_kit.data.loading import collate_items
    from translate_kit.eval.evaluate import eval_dataset
    from translate_kit.method import BatchSpec

    dataset = eval_dataset(translator.recipe, registry, split)
    spec = BatchSpec(torch.device("cpu"), translator.recipe.data.crop_size, flip=False, train=False)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_items):
        prepared = translator.method.prepare_batch(batch, spec)
        yield batch["name"], from_unit_range(prepared["A"]), from_unit_range(prepared["B"])


def _segment(segmenter: Any, images):  # noqa: ANN001, ANN202
    from translate_kit.data.jitter import to_unit_range
    from translate_kit.method import test_time

    with test_time(segmenter.method, "eval"):  # running statistics: scores independent of the batch
        return segmenter.method.classify(to_unit_range(images.to(segmenter.device))).cpu()


def diversity(run: Path, segmenter_run: Path, samples: int, registry: Any) -> dict[str, Any]:
    """K samples per test map (sample s drawn with seed s): mean pairwise L1 and each set's FCN-score."""
    import torch

    from translate_kit.eval.metrics import ConfusionMatrix
    from translate_kit.inference import Translator

    translator = Translator.from_checkpoint(run, device="cpu", registry=registry, seed=0, batch_size=8)
    segmenter = Translator.from_checkpoint(segmenter_run, device="cpu", registry=registry)
    palette = segmenter.method.palette
    matrices = [ConfusionMatrix(palette.num_classes, class_names=palette.names) for _ in range(samples)]
    distances: list[float] = []
    with torch.inference_mode():
        for names, inputs, _ in _loader(translator, registry, "test"):
            drawn = translator.translate_samples(list(inputs), samples, names=names)  # per map, K uint8 images
            true = segmenter.method.decode_labels(inputs)
            for s in range(samples):
                matrices[s].update(_segment(segmenter, torch.stack([d[s] for d in drawn])), true)
            for outputs in drawn:
                pairs = [(a.float() - b.float()).abs().mean().item() / 255
                         for a, b in itertools.combinations(outputs, 2)]
                distances.append(sum(pairs) / len(pairs))
    scores = [m.compute().to_dict() for m in matrices]
    return {
        "samples": samples,
        "seeds": list(range(samples)),
        "maps": len(distances),
        "mean_pairwise_l1": sum(distances) / len(distances),
        "per_sample_fcn": [{k: s[k] for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou")} for s in scores],
    }


def pictures(runs: dict[str, Path], registry: Any, out: Path, *, index: int, styles: list[int]) -> list[str]:
    """The PNG grids: one test map through each method; SPADE-VAE with 4 z; with reference styles."""
    import torch
    from torchvision.io import write_png
    from torchvision.utils import make_grid

    from translate_kit.inference import Translator

    def test_item(translator: Any, split: str, i: int) -> tuple[Any, Any]:
        for names, inputs, targets in _loader(translator, registry, split, batch_size=1):
            if i == 0:
                return inputs[0], targets[0]
            i -= 1
        raise IndexError(i)

    def grid(tiles: list[Any], path: Path) -> None:
        image = make_grid(torch.stack(tiles), nrow=len(tiles), padding=2, pad_value=255)
        write_png(image, str(path), compression_level=9)

    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    translators = {name: Translator.from_checkpoint(run, device="cpu", registry=registry, seed=0)
                   for name, run in runs.items()}
    vae = translators["SPADE-VAE"]
    label, photo = test_item(vae, "test", index)  # the SPADE dataset's map: palette colours, nearest-resized
    row = [label]
    for name in ("pix2pix", "pix2pixHD", "SPADE", "SPADE-VAE"):
        x, _ = test_item(translators[name], "test", index)
        row.append(translators[name].translate_batch([x])[0])
    row.append(photo)
    grid(row, out / "semantic_synthesis_methods.png")
    samples = vae.translate_samples([label], 4)[0]
    grid([label, *samples], out / "semantic_synthesis_vae_z.png")
    styled = [label]
    for i in styles:
        _, reference = test_item(vae, "train", i)
        styled += [reference, vae.bind(style=reference).translate_batch([label])[0]]
    grid(styled, out / "semantic_synthesis_vae_style.png")
    written += [str(out / f"semantic_synthesis_{n}.png") for n in ("methods", "vae_z", "vae_style")]
    return written


def probe(args: argparse.Namespace, work: Path) -> None:
    """Seconds per step of each training, from an N-step and a 1-step run; the --steps that fits."""
    rates: dict[str, float] = {}
    jobs = {**{n: (r, s, args.batch) for n, (r, s) in METHODS.items()},
            SEGMENTER_NAME: (SEGMENTER[0], SEGMENTER[1], None)}
    for name, (recipe, sets, batch) in jobs.items():
        one = train(recipe, f"probe_{name}", sets + SIZE * (batch is not None), data=args.data, work=work,
                    steps=1, batch=batch)
        many = train(recipe, f"probe_{name}", sets + SIZE * (batch is not None), data=args.data, work=work,
                     steps=args.probe, batch=batch)
        rates[name] = (many - one) / (args.probe - 1)
        print(f"{name:16s} {rates[name]:6.2f} s/step   (1 step {one:.1f} s, {args.probe} steps {many:.1f} s)", flush=True)
    generators = sum(v for k, v in rates.items() if k != SEGMENTER_NAME)
    budget = args.budget_minutes * 60 - rates[SEGMENTER_NAME] * args.segmenter_steps - 4 * 20  # ~20 s start-up each
    print(f"segmenter {args.segmenter_steps} steps: {rates[SEGMENTER_NAME] * args.segmenter_steps:.0f} s; "
          f"--steps fitting {args.budget_minutes} min: {int(budget / generators)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "facades"), help="the pix2pix facades")
    parser.add_argument("--work", default="/tmp/semantic_bench", help="run folders, logs, JSON (outside the repository)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of every generator")
    parser.add_argument("--batch", type=int, default=4, help="batch size of every generator")
    parser.add_argument("--segmenter-steps", type=int, default=300, help="steps of the FCN segmenter (batch 8)")
    parser.add_argument("--segmenter", type=Path, help="reuse this segmenter run instead of training one")
    parser.add_argument("--samples", type=int, default=4, help="SPADE-VAE samples per test map")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images", help="where the PNG grids go")
    parser.add_argument("--picture-index", type=int, default=0, help="test map shown (dataset order)")
    parser.add_argument("--style-indices", default="0,1", help="train photos used as reference styles")
    parser.add_argument("--reuse", action="store_true", help="keep runs an earlier call finished with the same command")
    parser.add_argument("--probe", type=int, default=0, help="only time N steps of each training")
    parser.add_argument("--budget-minutes", type=float, default=35.0, help="--probe: all training within this")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    if work == ROOT or ROOT in work.parents:
        raise SystemExit(f"--work {work} is inside the repository; run folders stay outside it")
    work.mkdir(parents=True, exist_ok=True)
    if args.probe:
        probe(args, work)
        return

    from translate_kit.plugins import get_plugin_manager
    from translate_kit.registry import Registry

    registry = Registry.from_plugin_manager(get_plugin_manager())
    started = datetime.now(timezone.utc)
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs, torch {__import__('torch').__version__}",
        "steps": args.steps, "batch": args.batch, "size": 128, "overrides": {}, "methods": {},
    }
    segmenter = args.segmenter or (work / "runs" / SEGMENTER_NAME)
    if args.segmenter is None:
        seconds = train(SEGMENTER[0], SEGMENTER_NAME, SEGMENTER[1], data=args.data, work=work,
                        steps=args.segmenter_steps, batch=None, reuse=args.reuse)
        results["segmenter"] = {"run": str(segmenter), "trained": True, "reused": args.reuse, "steps": args.segmenter_steps, "batch": 8,
                                "wall_s": seconds, "overrides": SEGMENTER[1]}
        print(f"segmenter: {args.segmenter_steps} steps in {seconds:.0f} s", flush=True)
    else:
        results["segmenter"] = {"run": str(segmenter), "trained": False, "wall_s": 0.0}
        print(f"segmenter: reusing {segmenter}", flush=True)

    runs: dict[str, Path] = {}
    for name, (recipe, sets) in METHODS.items():
        run_name = f"{recipe}_{name.lower().replace('-', '_')}_128"
        seconds = train(recipe, run_name, SIZE + sets, data=args.data, work=work, steps=args.steps, batch=args.batch,
                        reuse=args.reuse)
        runs[name] = work / "runs" / run_name
        results["methods"][name] = {"recipe": recipe, "run": str(runs[name]), "overrides": SIZE + sets,
                                    "train_wall_s": seconds}
        print(f"{name}: {args.steps} steps in {seconds:.0f} s", flush=True)
    results["train_wall_s_total"] = sum(m["train_wall_s"] for m in results["methods"].values()) + \
        results["segmenter"].get("wall_s", 0.0)

    for name, run in runs.items():
        report, seconds = evaluate(run, segmenter, work / "eval" / f"{run.name}.json")
        entry = results["methods"][name]
        entry["eval_wall_s"] = seconds
        entry["pixel"] = report["pixel"]
        entry["fcn"] = {k: report["fcn"]["generated"][k]
                        for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "pixels")}
        entry["ground_truth"] = {k: report["fcn"]["ground_truth"][k]
                                 for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou", "pixels")}
        print(f"{name}: evaluated in {seconds:.0f} s", flush=True)

    start = time.perf_counter()
    results["methods"]["SPADE-VAE"]["diversity"] = diversity(runs["SPADE-VAE"], segmenter, args.samples, registry)
    results["methods"]["SPADE-VAE"]["diversity"]["wall_s"] = time.perf_counter() - start
    styles = [int(i) for i in args.style_indices.split(",") if i]
    results["pictures"] = pictures(runs, registry, args.images, index=args.picture_index, styles=styles)
    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")

    out = work / "semantic_synthesis.json"
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nJSON: {out}\npictures: {', '.join(results['pictures'])}")


def print_table(results: dict[str, Any]) -> None:
    head = ("method", "steps", "batch", "train s", "FCN pix", "FCN cls", "FCN IoU", "L1", "PSNR", "SSIM", "div. L1")
    print("\n" + " | ".join(f"{h:>9s}" for h in head))
    for name, m in results["methods"].items():
        div = m.get("diversity", {}).get("mean_pairwise_l1", 0.0)
        cells = (name, results["steps"], results["batch"], f"{m['train_wall_s']:.0f}", f"{m['fcn']['pixel_accuracy']:.3f}",
                 f"{m['fcn']['mean_class_accuracy']:.3f}", f"{m['fcn']['mean_iou']:.3f}", f"{m['pixel']['l1']:.4f}",
                 f"{m['pixel']['psnr']:.2f}", f"{m['pixel']['ssim']:.4f}", f"{div:.4f}")
        print(" | ".join(f"{str(c):>9s}" for c in cells))
    for name, m in results["methods"].items():
        g = m["ground_truth"]
        print(f"ground truth (real photos, {name}'s test maps): {g['pixel_accuracy']:.3f} / "
              f"{g['mean_class_accuracy']:.3f} / {g['mean_iou']:.3f} ({g['pixels']} pixels)")
    d = results["methods"]["SPADE-VAE"]["diversity"]
    per = ", ".join(f"{s['pixel_accuracy']:.3f}" for s in d["per_sample_fcn"])
    print(f"SPADE-VAE diversity: mean pairwise L1 {d['mean_pairwise_l1']:.4f} over {d['maps']} maps x "
          f"{d['samples']} samples; FCN per-pixel of each sample set: {per}")
    if any(math.isnan(float(m["fcn"]["pixel_accuracy"])) for m in results["methods"].values()):
        print("warning: a NaN FCN-score")


if __name__ == "__main__":
    main()
