"""pix2pix and pix2pixHD frame by frame against vid2vid on the synthetic facades video, with the
same number of steps, scored by `tkit eval`'s temporal metric and per-frame FCN-score (issue 16).
Sized for a CPU: 64 px frames, narrow networks.

    python benchmarks/video_comparison.py --work /tmp/vexp --segmenter /tmp/semantic_bench/runs/fcn_facades_128 \\
        --steps 2000 --reuse [--strip docs/images/video_strip_methods.png]

What one command does (every folder goes under --work, outside the repository):

1. `tkit data synth-video WORK/facades_video --train 16 --test 4 --frames 12 --size 64` (real and
   synthetic facades filmed by a moving camera, exact flow), unless it exists; and WORK/flat, the
   same frames as a flat paired folder of links, which the image models train on.
2. Trains, each with `tkit train` in a subprocess for --steps steps at batch 2:
   - pix2pix (`recipes/pix2pix_facades.toml` with a 6-level U-Net for 64 px);
   - pix2pixHD (`recipes/pix2pixhd_facades.toml` with vid2vid's G and D widths: the frame-by-frame
     twin of vid2vid's networks);
   - vid2vid (`recipes/vid2vid_facades_video.toml`, clips of 3 frames for the first half of the steps
     and 6 for the second), once with training clips that follow the generated first frame (the
     recipe's) and once the real one (the reference's).
3. Scores each on the 4 test sequences with `tkit eval` (`--video-data` for the image models, which
   then run frame by frame): the warping error against the exact flow, per-frame L1/PSNR/SSIM and
   the per-frame FCN-score with --segmenter (a facades FCN run folder, e.g. the one
   benchmarks/semantic_synthesis.py trains).
4. Prints a table and writes the figures to WORK/video_comparison.json; with --strip, draws frames
   0, 3, 6 and 9 of the first test sequence (labels, real, then each model; 2x, nearest).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from semantic_synthesis import ROOT, TKIT, evaluate, train

FRAMES = ["data.load_size=64", "data.crop_size=64", "train.batch_size=2"]
# name: (recipe, data folder ("video" or "flat"), overrides)
MODELS: dict[str, tuple[str, str, list[str]]] = {
    "pix2pix": ("pix2pix_facades", "flat", [
        'data.dataset="paired"', 'data.direction="AtoB"', 'generator.name="unet"', "generator.num_downs=6",
        *FRAMES,
    ]),
    "pix2pixHD": ("pix2pixhd_facades", "flat", [
        'data.dataset="paired"', 'data.direction="AtoB"', "generator.ngf=16", "generator.n_downsampling=3",
        "generator.n_blocks=3", "discriminator.num_d=2", "discriminator.n_layers=2", "discriminator.ndf=16",
        *FRAMES,
    ]),
    "vid2vid": ("vid2vid_facades_video", "video", []),
    "vid2vid, real first frame": ("vid2vid_facades_video", "video", ['method.first_frame="real"']),
}


def make_data(work: Path) -> tuple[Path, Path]:
    """The synthetic video set and its frames as a flat paired folder (links), made once."""
    video, flat = work / "facades_video", work / "flat"
    if not (video / "test").is_dir():
        subprocess.run([TKIT, "data", "synth-video", str(video), "--train", "16", "--test", "4", "--frames", "12",
                        "--size", "64"], check=True, cwd=ROOT)
    for frame in sorted(video.glob("*/[AB]/*/*.png")):
        split, side, sequence = frame.parts[-4], frame.parts[-3], frame.parts[-2]
        link = flat / split / side / f"{sequence}_{frame.name}"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(frame)
    return video, flat


def strip(runs: dict[str, Path], video: Path, out: Path) -> None:
    """Frames 0, 3, 6, 9 of the first test sequence: labels, real, then each model (2x, nearest)."""
    import torch
    import torch.nn.functional as F
    from torchvision.io import write_png
    from translate_kit_plugins.video_data import video_frames

    from translate_kit.api import Translator, read_image

    test = video_frames(root=str(video), split="test", clip_length=2)
    _, files_a, files_b = test.sequences[0]
    labels = [read_image(p) for p in files_a]
    lines = [torch.stack(labels), torch.stack([read_image(p) for p in files_b])]
    for run in runs.values():
        lines.append(torch.stack(list(Translator.from_checkpoint(run, device="cpu").translate_sequence(labels))))
    picks = [0, 3, 6, 9]
    image = torch.cat([torch.cat([line[t] for t in picks], dim=2) for line in lines], dim=1)
    image = F.interpolate(image[None].float(), scale_factor=2, mode="nearest")[0].round().to(torch.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(image, str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="data and run folders go here")
    parser.add_argument("--segmenter", type=Path, required=True, help="a facades FCN run folder")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--reuse", action="store_true", help="keep runs this script finished with the same command")
    parser.add_argument("--strip", type=Path, help="write the frame strip here")
    args = parser.parse_args()
    if not (args.segmenter / "checkpoints").is_dir():
        sys.exit(f"error: --segmenter {args.segmenter} is not a run folder (no checkpoints/ in it); train one with "
                 "benchmarks/semantic_synthesis.py or `tkit train recipes/fcn_facades.toml`.")
    work = args.work.resolve()
    video, flat = make_data(work)
    results: dict[str, Any] = {"steps": args.steps, "models": {}}
    runs: dict[str, Path] = {}
    for name, (recipe, data, sets) in MODELS.items():
        run_name = name.replace(", ", "_").replace(" ", "_")
        sets = [*sets, f"method.clip_double_every={args.steps // 2}"] if data == "video" else sets
        seconds = train(f"recipes/{recipe}.toml", run_name, sets, data=str(video if data == "video" else flat),
                        work=work, steps=args.steps, batch=None, reuse=args.reuse)
        runs[name] = work / "runs" / run_name
        extra = ["--video-data", str(video)] if data == "flat" else []
        scores, _ = evaluate(runs[name], args.segmenter, work / "eval" / f"{run_name}.json", extra)
        results["models"][name] = {"train_seconds": round(seconds, 1), **scores}
        print(f"{name}: trained in {seconds:.0f} s", flush=True)
    (work / "video_comparison.json").write_text(json.dumps(results, indent=2))
    real = next(iter(results["models"].values()))["warping_error"]["real"]
    print(f"\n| model ({args.steps} steps) | warping error | L1 | PSNR | SSIM | FCN per-pixel / per-class / IoU |")
    print("|---|---|---|---|---|---|")
    for name, r in results["models"].items():
        fcn, pixel = r["fcn"]["generated"], r["pixel"]
        print(f"| {name} | {r['warping_error']['generated']:.4f} | {pixel['l1']:.3f} | {pixel['psnr']:.2f} | "
              f"{pixel['ssim']:.3f} | {fcn['pixel_accuracy']:.3f} / {fcn['mean_class_accuracy']:.3f} / "
              f"{fcn['mean_iou']:.3f} |")
    print(f"| real frames | {real:.4f} (the floor) | | | | |")
    if args.strip:
        strip(runs, video, args.strip)
        print(f"strip: {args.strip} (rows: labels, real, {', '.join(runs)})")


if __name__ == "__main__":
    main()
