"""`tkit eval`: score a trained model on a dataset split (per-pixel metrics, FCN-score, FID and KID, and
for a multimodal model the diversity of its samples), or on a video test set its temporal consistency
(the warping error; `translate_kit.eval.temporal`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command, session
from translate_kit.cli.translate import Mode
from translate_kit.errors import OptionError
from translate_kit.progress import make_progress

__all__ = ["eval_command"]


class Color(str, Enum):
    rgb = "rgb"
    y = "y"


class LPIPSNetName(str, Enum):
    alex = "alex"
    vgg = "vgg"


@cli_command
def eval_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="A run folder (its newest checkpoint), a checkpoint file, or a recipe (.toml): its model "
                       "untrained, for baselines without weights such as bicubic upsampling."),
    ],
    segmenter: Annotated[
        Optional[Path],
        typer.Option(help="Run folder or checkpoint of a segmenter (recipe fcn_facades) for the FCN-score."),
    ] = None,
    split: Annotated[
        Optional[str],
        typer.Option(help="Dataset split to evaluate (default: test; for a recipe .toml, its data.split).",
                     show_default=False),
    ] = None,
    data_root: Annotated[
        Optional[str], typer.Option(help="Read the data from here instead of the run's data.root.")
    ] = None,
    mode: Annotated[
        Mode, typer.Option(help="Test-time behaviour: eval (deterministic) or paper (dropout on, batch statistics).")
    ] = Mode.eval,
    seed: Annotated[
        int, typer.Option(help="Seed of paper mode's dropout, and of a multimodal model's samples (sample s is drawn "
                          "with seed + s; sample 0 is the output scored).")
    ] = 0,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per batch (paper mode still runs the generator one image at a time).")
    ] = 8,
    limit: Annotated[int, typer.Option(min=0, help="Evaluate only the first N images (0: all).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    color: Annotated[
        Optional[Color],
        typer.Option(help="Score every channel (rgb) or the luma (y, ITU-R BT.601); default: the method's protocol "
                     "(y for super-resolution)."),
    ] = None,
    shave: Annotated[
        Optional[int],
        typer.Option(min=0, help="Pixels cut from every border before scoring; default: the method's (the scale "
                     "for super-resolution)."),
    ] = None,
    ema: Annotated[
        bool,
        typer.Option("--ema/--no-ema", help="Use the moving averages of the weights when the run kept them "
                     "(train.ema_decay); --no-ema: the trained weights themselves."),
    ] = True,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Folder for index.html and images (default: RUN/eval_<split> beside the checkpoints)."),
    ] = None,
    fid: Annotated[
        bool,
        typer.Option("--fid", help="Also compute FID and KID between the outputs and the targets (pytorch-fid's "
                     "Inception; needs its weights file, see --fid-weights, and torchmetrics)."),
    ] = False,
    fid_weights: Annotated[
        Optional[Path],
        typer.Option(help="pytorch-fid's Inception weights, pt_inception-2015-12-05-6726825d.pth (default: "
                     "$TRANSLATE_KIT_FID_WEIGHTS, then the run's train.eval_fid_weights). Implies --fid.",
                     show_default=False),
    ] = None,
    diversity: Annotated[
        bool,
        typer.Option("--diversity", help="Multimodal models only: draw --diversity-samples samples per input and "
                     "report how far apart consecutive ones are: LPIPS (BicycleGAN's protocol; needs its weights, see "
                     "--lpips-weights, or --no-lpips) and the mean L1 in [-1, 1] units, with the samples' per-pixel "
                     "metrics and, with --segmenter, the FCN-score of each sample set."),
    ] = False,
    diversity_samples: Annotated[
        Optional[int],
        typer.Option(min=2, help="Samples per input for --diversity (default 20, BicycleGAN's: 19 consecutive "
                     "pairs). Implies --diversity.", show_default=False),
    ] = None,
    lpips: Annotated[
        bool,
        typer.Option("--lpips/--no-lpips", help="With --diversity, also the LPIPS distance between samples (needs its "
                     "weights); --no-lpips: the pixel-space figure only, no weights needed."),
    ] = True,
    lpips_net: Annotated[
        LPIPSNetName, typer.Option(help="LPIPS backbone: alex (BicycleGAN's and LPIPS's default) or vgg.")
    ] = LPIPSNetName.alex,
    lpips_weights: Annotated[
        Optional[Path],
        typer.Option(help="Folder holding LPIPS's two published files: torchvision's alexnet-owt-7be5be79.pth and "
                     "the lpips package's v0.1 alex.pth (for --lpips-net vgg: vgg16-397923af.pth and vgg.pth) "
                     "(default: $TRANSLATE_KIT_LPIPS_WEIGHTS). Implies --diversity.", show_default=False),
    ] = None,
    video_data: Annotated[
        Optional[Path],
        typer.Option(help="Score temporal consistency on this video test set (root/<split>/A/<sequence>/<frame>.png, "
                     "B/..., flow/<sequence>.pt, read by --video-dataset): every sequence is translated with the "
                     "model's recurrence, or frame by frame for an image model. Implies --temporal.",
                     show_default=False),
    ] = None,
    video_dataset: Annotated[
        str, typer.Option(help="The registered dataset that reads --video-data (it takes root and split).")
    ] = "video_frames",
    temporal: Annotated[
        bool,
        typer.Option("--temporal", help="Score temporal consistency (warping error, per-frame metrics, with "
                     "--segmenter the per-frame FCN-score). Automatic when the run's data set is a video set."),
    ] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write every figure to this JSON file.")] = None,
    images: Annotated[bool, typer.Option(help="Write input/output/target images and the HTML page.")] = True,
) -> None:
    """Translate a dataset split and print L1, MSE, PSNR, SSIM, with --segmenter the FCN-score, with
    --fid FID and KID, and with --diversity how far apart a multimodal model's samples are.

    On a video test set (the run's own data set when it is one, or --video-data) it translates each
    sequence with the model's recurrence and prints the warping error of the outputs and of the real
    frames (the floor) and the per-frame metrics.

    The FCN-score is for labels -> photo models: the segmenter labels the generated photos and the
    input label maps are the ground truth; the same segmenter on the real photos gives the ceiling.
    """
    import dataclasses

    from translate_kit.eval.diversity import DIVERSITY_SAMPLES
    from translate_kit.eval.evaluate import (
        INCEPTION_KEYS,
        EvalOptions,
        check_multimodal,
        describe_diversity,
        describe_inception,
        describe_protocol,
        diversity_rows,
        eval_dataset,
        evaluate,
        write_eval_page,
        write_json,
    )
    from translate_kit.eval.evaluate import format_value as _fmt
    from translate_kit.eval.temporal import FrameSequences
    from translate_kit.inference import Translator

    state = session(ctx)
    console = Console()
    if checkpoint.suffix == ".toml":
        translator = Translator.from_recipe(checkpoint, registry=state.registry, device=device, mode=mode.value,
                                            seed=seed, batch_size=batch_size)
        trained = sum(p.numel() for p in translator.method.parameters() if p.requires_grad)
        if trained:
            console.print(f"[yellow]{checkpoint} is a recipe: its model has {trained:,} untrained parameters.")
        run_dir = Path(translator.recipe.run.dir) / translator.recipe.run.name
        split = split or translator.recipe.data.options.get("split", "test")
    else:
        translator = Translator.from_checkpoint(checkpoint, device=device, mode=mode.value, seed=seed,
                                                batch_size=batch_size, registry=state.registry, pm=state.pm,
                                                use_ema=ema)
        run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
        if run_dir.name == "checkpoints":
            run_dir = run_dir.parent
    protocol = translator.method.eval_protocol()
    n_samples = 0
    if diversity or diversity_samples is not None or lpips_weights is not None:
        check_multimodal(translator)  # before reading any data or weights
        n_samples = diversity_samples or DIVERSITY_SAMPLES
    split = split or "test"
    protocol = dataclasses.replace(protocol, color=color.value if color else protocol.color,
                                   shave=protocol.shave if shave is None else shave)
    recipe = translator.recipe
    if data_root is not None:
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, options={**recipe.data.options,
                                                                                            "root": data_root}))
    if video_data is not None or temporal:
        if n_samples or fid or fid_weights is not None:
            raise OptionError("--diversity and --fid score single images; the temporal-consistency metric "
                              "(--temporal, --video-data) scores sequences. Run them as two evaluations.")
    if video_data is not None:
        table = {"name": video_dataset, "root": str(video_data), "split": split}
        sequences = state.registry.build("dataset", table, where=f"--video-data {video_data}")
        _eval_video(console, translator, sequences, checkpoint, split, limit, segmenter, device, state, json_path,
                    f"{video_data} ({video_dataset})")
        return
    dataset = eval_dataset(recipe, state.registry, split, resize=protocol.resize)
    if temporal or isinstance(dataset.dataset, FrameSequences):
        _eval_video(console, translator, dataset.dataset, checkpoint, split, limit, segmenter, device, state,
                    json_path, f"{recipe.data.options.get('root', '')} ({recipe.data.dataset})")
        return
    fid_network = None
    if fid or fid_weights is not None:
        from translate_kit.eval.fid import load_fid_inception

        fid_network = load_fid_inception(fid_weights, fallback=recipe.train.eval_fid_weights,
                                         device=translator.device)
    lpips_network = None
    if n_samples and lpips:
        from translate_kit.eval.lpips import load_lpips

        lpips_network = load_lpips(lpips_weights, net=lpips_net.value, device=translator.device)
    seg = None
    if segmenter is not None:
        seg = Translator.from_checkpoint(segmenter, device=device, mode="eval", registry=state.registry, pm=state.pm)
    out_dir = out if out is not None else run_dir / f"eval_{split}"
    options = EvalOptions(split=split, batch_size=batch_size, limit=limit, write_images=images,
                          diversity_samples=n_samples)
    total = min(limit, len(dataset)) if limit else len(dataset)
    with make_progress(console) as progress:
        task = progress.add_task("eval", total=total, stats="")
        report = evaluate(translator, dataset, options=options, out_dir=out_dir if images else None,
                          checkpoint=str(checkpoint), segmenter=seg, protocol=protocol, fid_network=fid_network,
                          lpips_network=lpips_network, on_batch=lambda done: progress.update(task, completed=done))

    from rich.table import Table

    table = Table(title=f"{checkpoint}: {split} split, {report.images} images, {mode.value} mode; "
                  f"{describe_protocol(report.protocol)}")
    for key in report.pixel:
        table.add_column(key, justify="right")
    inception = [report.inception[k] for k in INCEPTION_KEYS] if report.inception else []
    for key in INCEPTION_KEYS[: len(inception)]:
        table.add_column(key, justify="right")
    table.add_row(*(_fmt(v) for v in [*report.pixel.values(), *inception]))
    console.print(table)
    if report.inception:
        console.print(f"FID and KID: {describe_inception(report.inception)}")
    if report.diversity:
        spread = Table(title="Diversity of the samples (±: standard deviation)")
        rows = diversity_rows(report.diversity)
        for heading, _ in rows:
            spread.add_column(heading, justify="right")
        spread.add_row(*(value for _, value in rows))
        console.print(spread)
        console.print(f"Diversity: {describe_diversity(report.diversity)}")
    if report.fcn:
        fcn = Table(title="FCN-score")
        for column in ("", "per-pixel acc.", "per-class acc.", "class IoU"):
            fcn.add_column(column, justify="right")
        for key, label in (("generated", "generated photos"), ("ground_truth", "real photos (ceiling)")):
            s = report.fcn[key]
            fcn.add_row(label, _fmt(s["pixel_accuracy"]), _fmt(s["mean_class_accuracy"]), _fmt(s["mean_iou"]))
        console.print(fcn)
        per_class = Table(title="per class: generated (real)")
        for column in ("class", "accuracy", "IoU", "pixels"):
            per_class.add_column(column, justify="right")
        for gen, real in zip(report.fcn["generated"]["per_class"], report.fcn["ground_truth"]["per_class"]):
            per_class.add_row(gen["name"], f"{_fmt(gen['accuracy'])} ({_fmt(real['accuracy'])})",
                              f"{_fmt(gen['iou'])} ({_fmt(real['iou'])})", str(gen["gt_pixels"]))
        console.print(per_class)
    if images:
        console.print(f"Page: {write_eval_page(report, out_dir)}")
    if json_path is not None:
        write_json(report, json_path)
        console.print(f"JSON: {json_path}")


def _eval_video(console: Console, translator: Any, dataset: Any, checkpoint: Path, split: str, limit: int,
                segmenter: Optional[Path], device: str, state: Any, json_path: Optional[Path], source: str) -> None:
    """`tkit eval` on a video test set: translate each sequence with the model's recurrence and print
    the warping error (outputs and real frames), the per-frame metrics and the FCN-score."""
    from rich.table import Table

    from translate_kit.eval.evaluate import format_value as _fmt
    from translate_kit.eval.evaluate import write_json
    from translate_kit.eval.temporal import check_sequences, evaluate_video, video_rows
    from translate_kit.inference import Translator

    sequences = check_sequences(dataset, f"the data set of {source}")
    seg = None
    if segmenter is not None:
        seg = Translator.from_checkpoint(segmenter, device=device, mode="eval", registry=state.registry, pm=state.pm)
    total = min(limit, len(sequences.sequences)) if limit else len(sequences.sequences)
    with make_progress(console) as progress:
        task = progress.add_task("eval", total=total, stats="")
        report = evaluate_video(translator, sequences, checkpoint=str(checkpoint), split=split, limit=limit,
                                segmenter=seg, on_sequence=lambda done: progress.update(task, completed=done))
    table = Table(title=f"{checkpoint}: {split} split of {source}, {report.sequences} sequences, {report.frames} "
                  f"frames, {report.mode} mode; images in [0, 1], RGB")
    rows = video_rows(report)
    for heading, _ in rows:
        table.add_column(heading, justify="right")
    table.add_row(*(_fmt(value) for _, value in rows))
    console.print(table)
    if report.fcn:
        fcn = Table(title="FCN-score, per frame")
        for column in ("", "per-pixel acc.", "per-class acc.", "class IoU"):
            fcn.add_column(column, justify="right")
        for key, label in (("generated", "generated frames"), ("ground_truth", "real frames (ceiling)")):
            s = report.fcn[key]
            fcn.add_row(label, _fmt(s["pixel_accuracy"]), _fmt(s["mean_class_accuracy"]), _fmt(s["mean_iou"]))
        console.print(fcn)
    if json_path is not None:
        write_json(report, json_path)
        console.print(f"JSON: {json_path}")
