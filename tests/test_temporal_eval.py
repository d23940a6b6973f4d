"""The temporal-consistency metric of `tkit eval` (translate_kit.eval.temporal): the warping error
against an independent bilinear warp, a model that copies its input, and tiny vid2vid and pix2pix runs
evaluated through the command line on a tiny synthetic video."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import RECIPES, quick_overrides
from typer.testing import CliRunner

from translate_kit.api import Method, read_image, translate_sequence, warping_error
from translate_kit.cli import make_app
from translate_kit.errors import OptionError
from translate_kit.eval.temporal import evaluate_video
from translate_kit.testing import tiny_recipe


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    """Two training and two test sequences of 4 frames, 32 px, synthetic facades with exact flow."""
    from translate_kit_plugins.video_data import write_synth_video

    root = tmp_path_factory.mktemp("temporal_video")
    write_synth_video(root, sequences={"train": 2, "test": 2}, frames=4, size=32, source="synthetic", seed=3)
    return root


@pytest.fixture(scope="module")
def test_set(video_root):
    from translate_kit_plugins.video_data import video_frames

    return video_frames(root=str(video_root), split="test", clip_length=2)


def bilinear_warp_by_hand(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` (C, H, W) sampled at p + flow(p), bilinear, coordinates clamped to the image (borders
    replicated): written with gathers, not grid_sample."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    x = (xs + flow[0].double()).clamp(0, width - 1)
    y = (ys + flow[1].double()).clamp(0, height - 1)
    x0, y0 = x.floor().long().clamp(max=width - 2), y.floor().long().clamp(max=height - 2)
    ax, ay = x - x0, y - y0
    img = image.double()
    return ((1 - ax) * (1 - ay) * img[:, y0, x0] + ax * (1 - ay) * img[:, y0, x0 + 1]
            + (1 - ax) * ay * img[:, y0 + 1, x0] + ax * ay * img[:, y0 + 1, x0 + 1])


def floor_by_hand(test_set) -> float:
    """The real target frames' warping error pooled over every test sequence, images in [0, 1]."""
    total, count = 0.0, 0
    for s, (_, _, files_b) in enumerate(test_set.sequences):
        frames = [read_image(p).double() / 255 for p in files_b]
        stored = test_set.flow_of(s)
        for t in range(1, len(frames)):
            valid = stored["valid"][t].double()
            diff = (frames[t] - bilinear_warp_by_hand(frames[t - 1], stored["flow"][t])).abs() * valid
            total += float(diff.sum())
            count += int(valid.sum()) * frames[t].shape[0]
    return total / count


class CopyInput(Method):
    """A toy model whose output is its input (label frames out for label frames in)."""

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SequenceOf:
    """The slice of `Translator` that `evaluate_video` uses, around a bare method: uint8 frames in, uint8
    frames out, through the core's `translate_sequence` (frame by frame for a method without recurrence)."""

    mode = "eval"

    def __init__(self, method: Method) -> None:
        self.method = method

    def translate_sequence(self, frames):
        inputs = (f[None].float() / 127.5 - 1 for f in frames)
        for y in translate_sequence(self.method, inputs):
            yield ((y[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def test_floor_and_copying_model_by_hand(test_set):
    report = evaluate_video(SequenceOf(CopyInput()), test_set, checkpoint="copy", split="test")
    assert report.sequences == 2 and report.frames == 8
    assert report.warping_error["real"] == pytest.approx(floor_by_hand(test_set), rel=1e-5, abs=1e-7)
    # The copying model's outputs are the label frames: their warping error, and their L1 to the photos.
    labels, l1s = [], []
    for s, (_, files_a, files_b) in enumerate(test_set.sequences):
        a = torch.stack([read_image(p) for p in files_a]).double() / 255
        b = torch.stack([read_image(p) for p in files_b]).double() / 255
        labels.append((a, test_set.flow_of(s)))
        l1s += (a - b).abs().mean((1, 2, 3)).tolist()
    sums = [warping_error(a, f["flow"], f["valid"]) * (f["valid"][1:].sum() * 3) for a, f in labels]
    counts = [f["valid"][1:].sum() * 3 for _, f in labels]
    assert report.warping_error["generated"] == pytest.approx(float(sum(sums) / sum(counts)), rel=1e-6)
    assert report.per_sequence[0]["warping_error"] == pytest.approx(
        float(warping_error(labels[0][0], labels[0][1]["flow"], labels[0][1]["valid"])), rel=1e-6)
    assert report.pixel["l1"] == pytest.approx(sum(l1s) / len(l1s), rel=1e-9)
    assert [row["name"] for row in report.per_frame[:4]] == [f"{test_set.sequences[0][0]}/{t:05d}" for t in range(4)]
    # Label maps move with the camera, so copying them is not free of warping error either.
    assert report.warping_error["generated"] > 0 and report.warping_error["real"] > 0


def test_a_non_video_data_set_is_refused_in_one_paragraph():
    with pytest.raises(OptionError, match="not a video data set") as info:
        evaluate_video(SequenceOf(CopyInput()), [{"A": torch.zeros(3, 8, 8)}], checkpoint="copy", split="test")
    assert "\n" not in str(info.value) and "--video-data" in str(info.value)


@pytest.fixture(scope="module")
def vid2vid_run(tmp_path_factory, registry, pm, video_root):
    from translate_kit.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("temporal_runs")
    recipe = tiny_recipe(RECIPES / "vid2vid_facades_video.toml", registry, data_root=video_root, run_dir=run_dir,
                         steps=1, overrides=["data.clip_length=4", "method.clip_double_every=0",
                                             "method.temporal_scales=1"])
    Trainer(recipe, registry=registry, pm=pm, device="cpu").fit()
    return run_dir / recipe.run.name


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory, registry, pm, tiny_facades):
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("temporal_pix")
    tiny = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", quick_overrides(tiny_facades, run_dir, steps=1) + tiny,
                         registry=registry)
    Trainer(recipe, registry=registry, pm=pm, device="cpu").fit()
    return run_dir / recipe.run.name


def test_vid2vid_run_evaluates_through_the_cli(vid2vid_run, test_set, tmp_path):
    result = CliRunner().invoke(make_app(), ["eval", str(vid2vid_run), "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    assert "warping error" in result.output and "floor" in result.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["kind"] == "video" and report["split"] == "test"
    assert report["sequences"] == 2 and report["frames"] == 8 and len(report["per_frame"]) == 8
    assert report["warping_error"]["real"] == pytest.approx(floor_by_hand(test_set), rel=1e-5, abs=1e-7)
    assert set(report["pixel"]) == {"l1", "mse", "psnr", "ssim"}
    l1s = [row["l1"] for row in report["per_frame"]]
    assert report["pixel"]["l1"] == pytest.approx(sum(l1s) / len(l1s))


def test_pix2pix_frame_by_frame_on_video_data_through_the_cli(pix2pix_run, video_root, test_set, tmp_path):
    from translate_kit.inference import Translator

    args = ["eval", str(pix2pix_run), "--video-data", str(video_root), "--limit", "1",
            "--json", str(tmp_path / "p.json")]
    result = CliRunner().invoke(make_app(), args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["sequences"] == 1 and report["frames"] == 4
    # Frame by frame: the same outputs as translating each frame alone, whose warping error is recomputed.
    translator = Translator.from_checkpoint(pix2pix_run, device="cpu")
    _, files_a, _ = test_set.sequences[0]
    outputs = torch.stack(translator.translate_batch([read_image(p) for p in files_a])).double() / 255
    stored = test_set.flow_of(0)
    expected = warping_error(outputs, stored["flow"], stored["valid"])
    assert report["warping_error"]["generated"] == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["--temporal"], "not a video data set"), (["--video-data", "FACADES"], "no A/ and B/ folders")],
)
def test_cli_errors_without_video_data_are_one_paragraph(pix2pix_run, tiny_facades, extra, expected):
    extra = [str(tiny_facades) if e == "FACADES" else e for e in extra]
    result = CliRunner().invoke(make_app(), ["eval", str(pix2pix_run), *extra])
    assert result.exit_code in (1, 2) and expected in result.output, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
