"""pix2pix, GMAN, MAD-GAN and BicycleGAN on the real facades with the same number of steps, scored by
one FCN segmenter, with the diversity of their outputs; and StarGAN per direction (issue 15, item 7).
Sized for a CPU: 128 px, narrower networks.

    python benchmarks/families.py --data /work/shared/data/facades --work /tmp/semantic_bench \\
        --steps 400 --segmenter-steps 200 --threads 1 --reuse

What one command does (every run folder goes under --work, outside the repository):

1. Trains each paired family with `tkit train RECIPE --set ...` in a subprocess, --steps steps each
   at 128 px (resize 143, random 128 crop), batch 1 (BicycleGAN: 2, its two halves), and records
   each run's wall time. The learning rate stays constant. With --work pointing at the folder of
   benchmarks/semantic_synthesis.py and --reuse, its pix2pix run and segmenter are reused: the
   commands are the same.
2. Scores each on the test split with `tkit eval RUN --segmenter SEG --json`: FCN per-pixel /
   per-class accuracy and class IoU, L1 / PSNR / SSIM. For the multimodal families (BicycleGAN,
   MAD-GAN) `--diversity --no-lpips` adds the mean L1 between consecutive samples (--samples per map, in
   [-1, 1] units; no LPIPS: its AlexNet weights are not on this machine) and each sample set's
   FCN-score. pix2pix and GMAN give one output per map in eval mode; their figure is the same
   distance between --samples outputs with test-time dropout (`--mode paper`: pix2pix's only noise).
3. StarGAN: `tkit data facades-domains` writes the facades as three domains (photo, labels,
   edges); one model trains on all of them unpaired; labels -> photo is scored by the FCN
   segmenter against the real maps, photo -> labels by the per-pixel accuracy of the generated map
   (decoded to the nearest palette colour) against the real map.
   Wall times depend on what else the machine runs; the CPU seconds of each training process
   (user + system, from the kernel's accounting) much less so. Both are recorded.
4. --pictures (a second call, once the runs exist) draws into --images: one test map through every
   paired family, MAD-GAN's three generators and BicycleGAN with four z; StarGAN's translations of
   one test scene.
5. Prints a table and writes every figure to WORK/families.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from semantic_synthesis import ROOT, SEGMENTER, SEGMENTER_NAME, SIZE, TKIT, _loader, _segment, evaluate, train

# name: (recipe, overrides, batch, multimodal). pix2pix's overrides are semantic_synthesis.py's, so its
# run is shared; the others narrow their networks the same way (U-Net 128 -> 1x1, width 32; D width 32).
FAMILIES: dict[str, tuple[str, list[str], int, bool]] = {
    "pix2pix": ("pix2pix_facades", [
        "generator.name=unet", "generator.num_downs=7", "generator.ngf=32", "discriminator.ndf=32",
    ], 1, False),
    "GMAN": ("gman_facades", [
        "generator.num_downs=7", "generator.ngf=32",
        'discriminator.member_options={ n_layers = 3, ndf = 32, norm = "batch" }',
    ], 1, False),
    "MAD-GAN": ("madgan_facades", [
        "generator.num_downs=7", "generator.ngf=32", "discriminator.ndf=32",
    ], 1, True),
    "BicycleGAN": ("bicyclegan_facades", [
        "generator.num_downs=7", "generator.ngf=32", 'encoder.name="resnet_encoder_128"', "encoder.nef=32",
        "discriminator.ndf=32",
    ], 2, True),
}
# BicycleGAN's protocol draws 20 samples per input (19 consecutive pairs); 10 here halve the time spent
# sampling and segmenting on a 2-core CPU (--samples 20 restores the protocol).
SAMPLES = 10


def run_name(recipe: str, name: str, steps: int) -> str:
    """The run folder's name; the step count in it keeps runs of other budgets (and the 800-step runs
    of semantic_synthesis.py in the same --work) apart."""
    return f"{recipe}_{name.lower().replace('-', '_')}_128_{steps}"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dropout_diversity(run: Path, registry: Any, samples: int) -> dict[str, Any]:
    """The diversity of a single-output model through its test-time dropout (`mode="paper"`): sample s
    of every map is translated with dropout seeded s; the same consecutive-pair L1 as `--diversity`."""
    import torch

    from translate_kit.eval.diversity import Diversity
    from translate_kit.inference import Translator

    translators = [Translator.from_checkpoint(run, device="cpu", registry=registry, mode="paper", seed=s * 1000)
                   for s in range(samples)]
    diversity = Diversity(samples)
    with torch.inference_mode():
        for _, inputs, _ in _loader(translators[0], registry, "test"):
            drawn = torch.stack([torch.stack(t.translate_batch(list(inputs))) for t in translators], dim=1)
            for per_map in drawn:  # (samples, C, H, W) uint8
                diversity.update(per_map)
    return diversity.compute()


# StarGAN at 128 px (its paper's size): the recipe's networks narrowed to width 32 (G 6 residual blocks,
# D 6 convolutions as published), batch 4 (the paper's 16 would take an hour on 2 cores); --steps D
# steps, a G step every fifth.
STARGAN = ("stargan_facades", ["generator.conv_dim=32", "discriminator.conv_dim=32"], 4)
STARGAN_DIRECTIONS = (("labels", "photo"), ("photo", "labels"), ("edges", "photo"))


def stargan_scores(run: Path, domains_root: Path, segmenter_run: Path, registry: Any) -> dict[str, Any]:
    """Each direction on the paired test scenes, at the model's 128 px: X -> photo by the FCN segmenter
    against the real map; photo -> labels by the generated map (nearest palette colour) against it."""
    import torch
    from torch.nn import functional as F

    from translate_kit.data.io import list_images, read_image
    from translate_kit.eval.labels import decode_palette
    from translate_kit.eval.metrics import ConfusionMatrix
    from translate_kit.inference import Translator

    model = Translator.from_checkpoint(run, device="cpu", registry=registry, batch_size=8)
    segmenter = Translator.from_checkpoint(segmenter_run, device="cpu", registry=registry)
    palette = segmenter.method.palette
    stems = [p.stem for p in list_images(domains_root / "test" / "labels")]

    def load(domain: str, stem: str, *, label: bool = False) -> torch.Tensor:
        image = read_image(domains_root / "test" / domain / f"{stem}.png")[:3].unsqueeze(0)
        mode = {"mode": "nearest-exact"} if label else {"mode": "bilinear", "antialias": True, "align_corners": False}
        return F.interpolate(image.float(), size=(128, 128), **mode).round().clamp(0, 255).to(torch.uint8)[0]

    scores: dict[str, Any] = {}
    with torch.inference_mode():
        for source, target in STARGAN_DIRECTIONS:
            bound = model.bind(options={"to": target})
            matrix = ConfusionMatrix(palette.num_classes, class_names=palette.names)
            for start in range(0, len(stems), 8):
                chunk = stems[start:start + 8]
                outputs = torch.stack(bound.translate_batch([load(source, s) for s in chunk]))
                true = segmenter.method.decode_labels(torch.stack([load("labels", s, label=True) for s in chunk]))
                if target == "photo":
                    predicted = _segment(segmenter, outputs)
                else:  # the generated map itself, every pixel read as its nearest palette colour
                    predicted = decode_palette(outputs, palette, max_distance=None)
                matrix.update(predicted, true)
            result = matrix.compute().to_dict()
            keys = ("pixel_accuracy", "mean_class_accuracy", "mean_iou")
            scores[f"{source}->{target}"] = {k: result[k] for k in keys}
    return scores


def pictures(work: Path, registry: Any, out: Path, *, index: int, steps: int) -> list[str]:
    """PNG grids of 128 px tiles: one test map through every paired family (MAD-GAN's three
    generators, BicycleGAN with four z); StarGAN's translations of one test scene."""
    import torch
    from torchvision.io import write_png
    from torchvision.utils import make_grid

    from translate_kit.data.io import read_image
    from translate_kit.inference import Translator

    def grid(tiles: list[Any], path: Path) -> str:
        write_png(make_grid(torch.stack(tiles), nrow=len(tiles), padding=2, pad_value=255), str(path),
                  compression_level=9)
        return str(path)

    out.mkdir(parents=True, exist_ok=True)
    written = []
    translators = {name: Translator.from_checkpoint(work / "runs" / run_name(recipe, name, steps), device="cpu",
                                                    registry=registry, seed=0)
                   for name, (recipe, *_rest) in FAMILIES.items()}
    for i, (_, inputs, targets) in enumerate(_loader(translators["pix2pix"], registry, "test", batch_size=1)):
        if i == index:
            label, photo = inputs[0], targets[0]
            break
    row = [label, translators["pix2pix"].translate_batch([label])[0], translators["GMAN"].translate_batch([label])[0]]
    row += translators["MAD-GAN"].translate_samples([label], 3)[0]  # generators 0, 1, 2
    row += translators["BicycleGAN"].translate_samples([label], 4)[0]  # z seeded 0 .. 3
    written.append(grid([*row, photo], out / "families_paired.png"))

    run = work / "runs" / run_name(STARGAN[0], "StarGAN", steps)
    if run.is_dir():
        model = Translator.from_checkpoint(run, device="cpu", registry=registry)
        domains = work / "facades_domains" / "test"
        stem = sorted(p.stem for p in (domains / "labels").glob("*.png"))[index]
        scene = {d: torch.nn.functional.interpolate(read_image(domains / d / f"{stem}.png")[:3][None].float(),
                                                    size=(128, 128), mode="nearest-exact")[0].to(torch.uint8)
                 for d in ("photo", "labels", "edges")}
        scene = {d: image.expand(3, -1, -1) for d, image in scene.items()}  # the edge maps are grey
        tiles = []
        for source, target in STARGAN_DIRECTIONS:
            tiles += [scene[source], model.bind(options={"to": target}).translate_batch([scene[source]])[0]]
        written.append(grid(tiles, out / "families_stargan.png"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "facades"), help="the pix2pix facades")
    parser.add_argument("--work", default="/tmp/semantic_bench",
                        help="run folders, logs, JSON (outside the repository)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of every family")
    parser.add_argument("--segmenter-steps", type=int, default=200, help="steps of the FCN segmenter (batch 8)")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images", help="where the PNG grids go")
    parser.add_argument("--picture-index", type=int, default=0, help="test map shown (dataset order)")
    parser.add_argument("--reuse", action="store_true", help="keep runs an earlier call finished with the same command")
    parser.add_argument("--only", default="", help="comma-separated families to run (default: all)")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS of the tkit processes (0: torch's default)")
    parser.add_argument("--pictures", action="store_true", help="only draw the pictures from the trained runs")
    parser.add_argument("--samples", type=int, default=SAMPLES, help="samples per test map for the diversity figure")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    if work == ROOT or ROOT in work.parents:
        raise SystemExit(f"--work {work} is inside the repository; run folders stay outside it")
    work.mkdir(parents=True, exist_ok=True)
    if args.threads:  # inherited by every tkit process; one thread each wastes no time spinning when
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # other jobs share the cores

    from translate_kit.plugins import get_plugin_manager
    from translate_kit.registry import Registry

    registry = Registry.from_plugin_manager(get_plugin_manager())
    if args.pictures:
        print("\n".join(pictures(work, registry, args.images, index=args.picture_index, steps=args.steps)))
        return
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {__import__('torch').__version__}",
        "steps": args.steps, "size": 128, "threads": args.threads, "families": {},
    }
    seconds = train(SEGMENTER[0], SEGMENTER_NAME, SEGMENTER[1], data=args.data, work=work, steps=args.segmenter_steps,
                    batch=None, reuse=args.reuse)
    segmenter = work / "runs" / SEGMENTER_NAME
    results["segmenter"] = {"run": str(segmenter), "steps": args.segmenter_steps, "wall_s": seconds}
    chosen = [n for n in FAMILIES if not args.only or n in args.only.split(",")]

    runs: dict[str, Path] = {}
    for name in chosen:
        recipe, sets, batch, multimodal = FAMILIES[name]
        cpu = children_cpu_s()
        seconds = train(recipe, run_name(recipe, name, args.steps), SIZE + sets, data=args.data, work=work,
                        steps=args.steps, batch=batch, reuse=args.reuse)
        cpu = children_cpu_s() - cpu  # CPU seconds of the training process (0 for a reused run)
        runs[name] = work / "runs" / run_name(recipe, name, args.steps)
        print(f"{name}: {args.steps} steps at batch {batch} in {seconds:.0f} s", flush=True)
        extra = ["--diversity", "--no-lpips", "--diversity-samples", str(args.samples)] if multimodal else []
        out = work / "eval" / f"{runs[name].name}.json"
        record = runs[name] / "wall_time.json"
        if args.reuse and out.is_file() and out.stat().st_mtime > record.stat().st_mtime:  # scored after training
            report, eval_seconds = json.loads(out.read_text()), float("nan")
        else:
            report, eval_seconds = evaluate(runs[name], segmenter, out, extra)
        entry = results["families"][name] = {
            "recipe": recipe, "run": str(runs[name]), "overrides": SIZE + sets, "batch": batch,
            "train_wall_s": seconds, "train_cpu_s": cpu, "eval_wall_s": eval_seconds, "pixel": report["pixel"],
            "fcn": {k: report["fcn"]["generated"][k] for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou")},
            "ground_truth": {k: report["fcn"]["ground_truth"][k] for k in ("pixel_accuracy", "mean_class_accuracy",
                                                                           "mean_iou")},
        }
        if multimodal:
            entry["diversity"] = report["diversity"]
        else:
            start = time.perf_counter()
            entry["diversity"] = dropout_diversity(runs[name], registry, args.samples)
            entry["diversity"]["source"] = "test-time dropout (mode paper)"
            entry["diversity"]["wall_s"] = time.perf_counter() - start
        print(f"{name}: evaluated in {eval_seconds:.0f} s", flush=True)

    if not args.only or "StarGAN" in args.only.split(","):
        domains = work / "facades_domains"
        if not (domains / "test" / "labels").is_dir():
            done = subprocess.run([TKIT, "data", "facades-domains", args.data, str(domains)], capture_output=True,
                                  text=True, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"tkit data facades-domains failed:\n{done.stdout}\n{done.stderr}")
        recipe, sets, batch = STARGAN
        cpu = children_cpu_s()
        seconds = train(recipe, run_name(recipe, "StarGAN", args.steps), ["data.split=train", *sets], data=str(domains),
                        work=work, steps=args.steps, batch=batch, reuse=args.reuse)
        run = work / "runs" / run_name(recipe, "StarGAN", args.steps)
        results["families"]["StarGAN"] = {
            "recipe": recipe, "run": str(run), "overrides": sets, "batch": batch, "train_wall_s": seconds,
            "train_cpu_s": children_cpu_s() - cpu, "directions": stargan_scores(run, domains, segmenter, registry),
        }
        print(f"StarGAN: {args.steps} steps at batch {batch} in {seconds:.0f} s", flush=True)

    results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = work / "families.json"
    if args.only and out.is_file():  # a partial call adds to (or replaces rows of) the earlier table
        earlier = json.loads(out.read_text())
        results["families"] = {**earlier.get("families", {}), **results["families"]}
        results["commands"] = [*earlier.get("commands", [earlier.get("command")]), results["command"]]
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nJSON: {out}")


def print_table(results: dict[str, Any]) -> None:
    head = ("family", "batch", "train s", "FCN pix", "FCN cls", "FCN IoU", "L1", "PSNR", "SSIM", "div. L1")
    print("\n" + " | ".join(f"{h:>10s}" for h in head))
    for name, m in results["families"].items():
        if "directions" in m:
            continue
        div = m["diversity"].get("l1", float("nan"))
        cells = (name, m["batch"], f"{m['train_wall_s']:.0f}", f"{m['fcn']['pixel_accuracy']:.3f}",
                 f"{m['fcn']['mean_class_accuracy']:.3f}", f"{m['fcn']['mean_iou']:.3f}", f"{m['pixel']['l1']:.4f}",
                 f"{m['pixel']['psnr']:.2f}", f"{m['pixel']['ssim']:.4f}", f"{div:.4f}")
        print(" | ".join(f"{str(c):>10s}" for c in cells))
    for name, m in results["families"].items():
        for direction, d in m.get("directions", {}).items():
            print(f"{name} {direction}: per-pixel {d['pixel_accuracy']:.3f}, per-class {d['mean_class_accuracy']:.3f}, "
                  f"IoU {d['mean_iou']:.3f}")


if __name__ == "__main__":
    main()
