"""`tkit translate`: translate image files, or a video, with a trained checkpoint."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command, session
from translate_kit.errors import OptionError
from translate_kit.progress import make_progress

__all__ = ["translate"]


class Mode(str, Enum):
    eval = "eval"
    paper = "paper"


@cli_command
def translate(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="A checkpoint file (RUN/checkpoints/step_*.pt) or a run folder (its newest checkpoint).",
                       show_default=False),
    ],
    inputs: Annotated[
        Optional[list[str]],
        typer.Argument(help="Image files, folders (the images directly inside) or quoted glob patterns like "
                       "'photos/*.jpg'.", show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Folder for the outputs, one PNG per input named <input stem>.png "
                     "(<input stem>_N.png for sample N with --samples). Required unless --list-options.",
                     show_default=False),
    ] = None,
    mode: Annotated[
        Mode,
        typer.Option(help="eval: deterministic. paper: pix2pix's test time (dropout on, batch norm with each "
                     "image's own statistics)."),
    ] = Mode.eval,
    seed: Annotated[
        Optional[int],
        typer.Option(help="Paper mode: seed the dropout so a run can be repeated (image i uses SEED + i). A "
                     "multimodal model: sample i of every input uses SEED + i (default 0)."),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(min=1, help="Outputs per input from a multimodal model (one that draws a latent code), "
                     "written <stem>_N.png for sample N."),
    ] = 1,
    style: Annotated[
        Optional[Path],
        typer.Option(help="A style image for a model that follows one (example-guided, e.g. SPADE with its "
                     "encoder).", show_default=False),
    ] = None,
    option: Annotated[
        Optional[list[str]],
        typer.Option("--option", help="NAME=VALUE: an option the model declares (repeat for several); "
                     "--list-options shows them.", show_default=False),
    ] = None,
    list_options: Annotated[
        bool,
        typer.Option("--list-options", help="Say what the model takes (samples, a style image, its options) "
                     "and exit."),
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images (of the same size) or tiles per forward pass.")] = 1,
    tile: Annotated[
        Optional[int],
        typer.Option(min=1, help="Translate large images in tiles of this many pixels (a multiple of the "
                     "model's size multiple, e.g. 256 or 512 for a U-Net 256), blended where they overlap."),
    ] = None,
    overlap: Annotated[int, typer.Option(min=0, help="Minimum overlap of neighbouring tiles, in pixels.")] = 64,
    auto_tile: Annotated[
        bool,
        typer.Option("--auto-tile/--no-auto-tile", help="Without --tile, translate an image that would not fit "
                     "the device's memory at once in tiles of the largest size that fits (said once)."),
    ] = True,
    compile: Annotated[
        bool,
        typer.Option("--compile", help="Compile the generator (torch.compile with freezing): a wait for each new "
                     "image size, then faster translation. Worth it for many images."),
    ] = False,
    video: Annotated[
        bool,
        typer.Option("--video", help="Read the input folder as the frames of one video (natural order) and write "
                     "OUT/frames/ and OUT/<name>.mp4. A video file (.mp4, .mov, .mkv, .avi, .webm) is one by itself. "
                     "A model with a recurrence (vid2vid) makes each frame from the previous outputs; others "
                     "translate frame by frame."),
    ] = False,
    fps: Annotated[float, typer.Option(min=0.001, help="Frame rate of the video written from a folder of frames "
                                       "(a video file keeps its own).")] = 25.0,
    first_frame: Annotated[
        Optional[Path],
        typer.Option("--first-frame", help="Video: an image used as the first output frame, which the model "
                     "continues from (default: generated).", show_default=False),
    ] = None,
    ema: Annotated[
        bool,
        typer.Option("--ema/--no-ema", help="Use the moving averages of the weights when the run kept them "
                     "(train.ema_decay); --no-ema: the trained weights themselves."),
    ] = True,
) -> None:
    """Translate images of any size with a trained model; outputs keep each input's size (times the model's
    scale, for super-resolution)."""
    from translate_kit.data.io import read_image
    from translate_kit.inference import Translator, expand_inputs, translate_files

    console = Console()
    state = session(ctx)
    values = _option_values(option or [])
    video_source = _video_source(inputs or [], video) if not list_options else None
    if first_frame is not None and video_source is None:
        raise OptionError("--first-frame is for videos: give a video file, or a folder of frames with --video.")
    if not list_options:  # before loading the model: a typo fails at once
        if out is None:
            raise OptionError("Missing --out FOLDER: the folder for the outputs.")
        files = [] if video_source is not None else expand_inputs(inputs or [])
    style_image = read_image(style) if style is not None else None
    translator = Translator.from_checkpoint(
        checkpoint, device=device, mode=mode.value, registry=state.registry,
        seed=seed, batch_size=batch_size, tile=tile, overlap=overlap, compile=compile, use_ema=ema,
        auto_tile=auto_tile, notify=lambda line: console.print(f"[yellow]{line}", highlight=False),
    )
    if list_options:
        _list_options(console, translator)
        return
    translator = translator.bind(style=style_image, options=values)
    if translator.spec.multimodal and translator.seed is None:
        translator.seed = 0  # samples repeat from run to run, as in `tkit serve`
    if video_source is not None:
        if samples > 1:
            raise OptionError("--samples is for images; a video is translated once.")
        _translate_video(console, translator, video_source, out, fps=fps, first_frame=first_frame)
        return
    drawn = f", {samples} samples each (seed {translator.seed} + i)" if samples > 1 else ""
    console.print(
        f"Translating {len(files)} image(s) with {translator.checkpoint} (step {translator.step}"
        f"{', averaged weights' if translator.averaged else ''}) on {translator.device}, {mode.value} mode{drawn}."
    )
    started = time.perf_counter()
    with make_progress(console) as progress:
        task = progress.add_task("translate", total=len(files) * samples, stats="")
        written = translate_files(
            translator, files, out, samples=samples,
            on_image=lambda source, _: progress.update(task, advance=1, stats=source.name),
        )
    elapsed = time.perf_counter() - started
    rate = len(written) / max(elapsed, 1e-9)
    console.print(f"Wrote {len(written)} image(s) to {out} in {elapsed:.1f} s ({rate:.2f} images/s).")


def _video_source(inputs: list[str], video: bool) -> Path | None:
    """The one video to translate (a video file, or a folder of frames with --video), or None for images."""
    from translate_kit.inference import VIDEO_EXTENSIONS

    is_file = [Path(i).suffix.lower() in VIDEO_EXTENSIONS for i in inputs]
    if not video and not any(is_file):
        return None
    if len(inputs) != 1:
        raise OptionError(f"A video is translated on its own: give one video file or one folder of frames, got "
                          f"{len(inputs)} inputs.")
    source = Path(inputs[0])
    if not source.exists():
        raise OptionError(f"Video input {source} does not exist.")
    return source


def _translate_video(console: Console, translator: Any, source: Path, out: Path, *, fps: float,
                     first_frame: Path | None) -> None:
    from translate_kit.inference import translate_video
    from translate_kit.method import SequenceTranslator

    recurrent = "with its recurrence" if isinstance(translator.method, SequenceTranslator) else "frame by frame"
    console.print(f"Translating video {source} with {translator.checkpoint} (step {translator.step}) on "
                  f"{translator.device}, {recurrent}.")
    started = time.perf_counter()
    with make_progress(console) as progress:
        task = progress.add_task("translate", total=None, stats="")
        frames, path = translate_video(translator, source, out, fps=fps, first_frame=first_frame,
                                       on_frame=lambda i: progress.update(task, advance=1, stats=f"frame {i}"))
    elapsed = time.perf_counter() - started
    console.print(f"Wrote {len(frames)} frames to {out / 'frames'} and the video {path} in {elapsed:.1f} s.")


def _option_values(pairs: list[str]) -> dict[str, str]:
    """`["NAME=VALUE", ...]` -> `{NAME: VALUE}`; the model checks names and values."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError(f"--option {pair!r}: expected NAME=VALUE, e.g. --option feature_cluster=3; "
                              "--list-options shows what the model takes.")
        if name in values:
            raise OptionError(f"--option {name} is given twice ({values[name]!r} and {value!r}); give it once.")
        values[name] = value
    return values


def _list_options(console: Console, translator: Any) -> None:
    """What the model takes, for --list-options."""
    from rich.markup import escape

    spec = translator.spec
    method = type(translator.method).__name__
    console.print(f"{translator.checkpoint} (step {translator.step}), method {method}:", highlight=False)
    sampled = "multimodal: --samples N draws N outputs per input" if spec.multimodal else "one output per input"
    console.print(f"  {sampled}; {'takes' if spec.style_image else 'no'} --style IMAGE.", highlight=False)
    if not spec.options:
        console.print("  No --option NAME=VALUE.", highlight=False)
        return
    console.print("  --option NAME=VALUE, one per option:", highlight=False)
    for name, declared in spec.options.items():
        console.print(f"    {name}  {escape(declared.describe())}", highlight=False)
