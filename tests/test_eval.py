"""`tkit eval`: figures equal recomputations from what it wrote; JSON, page, FCN rows, errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import RECIPES, quick_overrides
from typer.testing import CliRunner

from translate_kit.cli import make_app
from translate_kit.eval.labels import FACADES, decode_palette


@pytest.fixture(scope="module")
def runs(tmp_path_factory, registry, pm, tiny_facades):
    """A tiny pix2pix run (labels -> photo) and a tiny segmenter run (photo -> labels)."""
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    root = tmp_path_factory.mktemp("eval_runs")
    tiny = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]
    pix = load_recipe(RECIPES / "pix2pix_facades.toml", quick_overrides(tiny_facades, root) + tiny, registry=registry)
    Trainer(pix, registry=registry, pm=pm, device="cpu").fit()
    seg_overrides = quick_overrides(tiny_facades, root) + ["segmenter.name=timm_fpn", "segmenter.width=16",
                                                           "train.max_steps=4", "data.load_size=32"]
    seg = load_recipe(RECIPES / "fcn_facades.toml", seg_overrides, registry=registry)
    Trainer(seg, registry=registry, pm=pm, device="cpu").fit()
    return root / "pix2pix_facades", root / "fcn_facades"


def read(path):
    from torchvision.io import read_image

    return read_image(str(path))


def test_eval_writes_json_and_page_whose_figures_match_the_images(runs, tmp_path, tiny_facades):
    pix, seg = runs
    out = tmp_path / "eval"
    args = ["eval", pix, "--segmenter", seg, "--split", "train", "--out", out, "--json", tmp_path / "r.json",
            "--batch-size", "3"]
    result = CliRunner().invoke(make_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    for text in ("l1", "psnr", "ssim", "FCN-score", "generated photos", "real photos (ceiling)", "window"):
        assert text in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 8 and report["split"] == "train" and report["mode"] == "eval"
    assert set(report["pixel"]) == {"l1", "mse", "psnr", "ssim"}
    assert set(report["fcn"]) == {"generated", "ground_truth"}
    assert len(report["fcn"]["generated"]["per_class"]) == 12

    # Per-image L1 from the PNGs the command wrote, computed independently.
    l1s = []
    hist = torch.zeros(12, 12, dtype=torch.int64)
    for row in report["per_image"]:
        output = read(out / row["images"]["output"]).double() / 255
        target = read(out / row["images"]["target"]).double() / 255
        assert row["l1"] == pytest.approx((output - target).abs().mean().item(), abs=1e-9)
        l1s.append(row["l1"])
        true = decode_palette(read(out / row["images"]["input"]), FACADES, max_distance=60.0)
        pred = decode_palette(read(out / row["images"]["segmented"]), FACADES)  # exact palette colours
        keep = true != 255
        hist += torch.bincount(true[keep] * 12 + pred[keep], minlength=144).view(12, 12)
    assert report["pixel"]["l1"] == pytest.approx(sum(l1s) / len(l1s))
    assert report["fcn"]["generated"]["pixel_accuracy"] == pytest.approx((hist.diag().sum() / hist.sum()).item())
    page = (out / "index.html").read_text()
    assert "sortBy" in page and "FCN-score" in page and "images/1_output.png" in page


def test_eval_without_segmenter_and_paper_mode(runs, tmp_path):
    pix, _ = runs
    args = ["eval", pix, "--split", "test", "--mode", "paper", "--seed", "3", "--no-images", "--json", tmp_path / "p.json"]
    result = CliRunner().invoke(make_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["images"] == 1 and report["fcn"] == {} and report["mode"] == "paper"
    assert not (pix / "eval_test").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--split", "nosuch"], "does not exist"),
        (["--segmenter", "PIX"], "is not a segmenter run"),
        (["--mode", "papr"], "Invalid value for '--mode'"),
    ],
)
def test_eval_errors_are_clear(runs, extra, expected):
    pix, _ = runs
    extra = [str(pix) if e == "PIX" else e for e in extra]
    result = CliRunner().invoke(make_app(), ["eval", str(pix), *extra])
    assert result.exit_code in (1, 2) and expected in result.output, result.output
    assert isinstance(result.exception, SystemExit)  # handled, not an escaped exception


def test_scores_do_not_depend_on_the_batch_size(runs, tmp_path):
    """The segmenter and the generator run at deterministic test time: no batch statistics leak in."""
    pix, seg = runs
    reports = []
    for batch_size in (1, 3):
        path = tmp_path / f"b{batch_size}.json"
        args = ["eval", pix, "--segmenter", seg, "--split", "train", "--no-images", "--json", path,
                "--batch-size", str(batch_size)]
        result = CliRunner().invoke(make_app(), [str(a) for a in args])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(path.read_text()))
    for key in ("generated", "ground_truth"):
        assert reports[0]["fcn"][key]["pixel_accuracy"] == reports[1]["fcn"][key]["pixel_accuracy"]
    assert reports[0]["pixel"]["l1"] == pytest.approx(reports[1]["pixel"]["l1"], abs=1e-6)
