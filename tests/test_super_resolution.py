"""Super-resolution end to end: the x4 benchmark protocol on the real Set5/Set14 images, PSNR and
GAN training started from each other (`init_from`), network interpolation, x4 translation tiled
and untiled, ONNX export of a x4 model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import RECIPES
from torchvision.io import ImageReadMode, decode_image, write_png
from typer.testing import CliRunner

from translate_kit.api import CheckpointError, RecipeError, read_model
from translate_kit.cli import make_app
from translate_kit.eval.metrics import PixelMetrics, rgb_to_y
from translate_kit.inference import Translator
from translate_kit.testing import tiny_recipe
from translate_kit.train.trainer import Trainer

SR_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sr"
needs_sr_data = pytest.mark.skipif(
    not (SR_DATA / "Set5" / "LRx4").is_dir() or not (SR_DATA / "Set14" / "LRx4").is_dir(),
    reason=f"the SR benchmark images (Set5, Set14 with HR/ and LRx4/) are not in {SR_DATA}",
)
RANDOM_VGG = 'method.perceptual_options={ layers = { conv5_4 = 1.0 }, allow_random = true }'


@pytest.fixture(scope="module")
def hr_images(tmp_path_factory):
    """Six 128x96 high-resolution images with structure (smooth gradients and edges)."""
    root = tmp_path_factory.mktemp("hr")
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        low = torch.rand(3, 12, 16, generator=g)
        image = torch.nn.functional.interpolate(low[None], size=(96, 128), mode="bicubic", align_corners=False)[0]
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        (root / "train").mkdir(exist_ok=True)
        write_png(image, str(root / "train" / f"{i}.png"))
    return root


def train_tiny(recipe: str, registry, pm, root: Path, run_dir: Path, *overrides: str, steps: int = 2):
    tiny = tiny_recipe(RECIPES / recipe, registry, data_root=root, run_dir=run_dir, steps=steps,
                       overrides=['data.split="train"', *overrides])
    trainer = Trainer(tiny, registry=registry, pm=pm, device="cpu")
    trainer.fit()
    return trainer.run_dir


@pytest.fixture(scope="module")
def psnr_and_gan_runs(registry, pm, hr_images, tmp_path_factory):
    """RRDB-PSNR (tiny), then ESRGAN started from it with random VGG19 weights."""
    runs = tmp_path_factory.mktemp("sr_runs")
    psnr = train_tiny("rrdb_psnr_x4.toml", registry, pm, hr_images, runs / "psnr", "train.ema_decay=0.9")
    gan = train_tiny("esrgan_x4.toml", registry, pm, hr_images, runs / "gan", f'method.init_from="{psnr.as_posix()}"',
                     RANDOM_VGG)
    return psnr, gan


# ------------------------------------------------------------------------------------------------
# The x4 protocol


def _psnr_y_independent(sr: torch.Tensor, hr: torch.Tensor, shave: int, grey: bool) -> float:
    """PSNR of uint8 RGB images on MATLAB's rgb2ycbcr Y (or the raw channel of a grey original),
    written out with plain arithmetic in float64."""
    def y(rgb: torch.Tensor) -> torch.Tensor:
        if grey:
            return rgb[0].double()[shave:-shave, shave:-shave]
        r, g, b = rgb.double() / 255
        return (16 + 65.481 * r + 128.553 * g + 24.966 * b)[shave:-shave, shave:-shave]
    mse = (y(sr) - y(hr)).pow(2).mean().item()
    return 10 * torch.log10(torch.tensor(255.0**2 / mse, dtype=torch.float64)).item()


def test_y_psnr_equals_an_independent_computation():
    g = torch.Generator().manual_seed(1)
    hr = torch.randint(0, 256, (3, 3, 40, 36), generator=g, dtype=torch.uint8)
    sr = (hr.int() + torch.randint(-20, 21, hr.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    grey = torch.tensor([False, True, False])
    metrics = PixelMetrics(color="y", shave=4)
    got = metrics.update(sr.double() / 255, hr.double() / 255, grey=grey)["psnr"]
    expected = [_psnr_y_independent(sr[i], hr[i], 4, bool(grey[i])) for i in range(3)]
    assert got.tolist() == pytest.approx(expected, abs=1e-9)


def test_equal_channels_alone_are_scored_in_y():
    """A grey image stored as RGB is scaled to studio range unless the dataset marks its original as grey."""
    mid = torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64)
    assert rgb_to_y(mid).flatten()[0].item() == pytest.approx((16 + 0.5 * 219) / 255)
    assert rgb_to_y(mid, grey=torch.tensor([True])).flatten()[0].item() == 0.5
    assert rgb_to_y(mid[:, :1]).shape == (1, 1, 2, 2)


@needs_sr_data
@pytest.mark.parametrize(("split", "published"), [("Set5", 28.425), ("Set14", 25.995)])
def test_bicubic_reproduces_the_literature(split, published, tmp_path):
    """Bicubic x4 of the benchmark LR images: 28.42-28.43 dB (Set5) and 25.99-26.00 dB (Set14) in
    the literature, Y channel with 4 pixels shaved; the protocol is stated in the JSON, and each
    image's figure equals the independent computation on the images the command wrote."""
    out = tmp_path / "report.json"
    result = CliRunner().invoke(make_app(), [
        "eval", str(RECIPES / "bicubic_x4.toml"), "--split", split, "--data-root", str(SR_DATA), "--out",
        str(tmp_path / "page"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["pixel"]["psnr"] == pytest.approx(published, abs=0.05)
    grey = ["bridge"] if split == "Set14" else []
    assert report["protocol"] == {"resize": False, "color": "y", "shave": 4, "grey": grey}
    assert "luma (Y), 4 px shaved" in " ".join(result.output.split())
    for row in report["per_image"]:
        sr = decode_image(str(tmp_path / "page" / row["images"]["output"]), mode=ImageReadMode.RGB)
        hr = decode_image(str(SR_DATA / split / "HR" / f"{row['name']}.png"), mode=ImageReadMode.RGB)
        assert row["psnr"] == pytest.approx(_psnr_y_independent(sr, hr, 4, row["name"] in grey), abs=1e-9)


def test_rgb_on_request_gives_lower_figures_than_y(tmp_path, registry):
    """`--color rgb` scores every channel and says so."""
    folder = tmp_path / "data" / "Set"
    g = torch.Generator().manual_seed(3)
    for i in range(2):
        low = torch.rand(3, 8, 8, generator=g)
        hr = torch.nn.functional.interpolate(low[None], size=(48, 48), mode="bicubic", align_corners=False)[0]
        (folder / "HR").mkdir(parents=True, exist_ok=True)
        write_png((hr.clamp(0, 1) * 255).round().to(torch.uint8), str(folder / "HR" / f"{i}.png"))
    reports = {}
    for color in ("y", "rgb"):
        out = tmp_path / f"{color}.json"
        result = CliRunner().invoke(make_app(), [
            "eval", str(RECIPES / "bicubic_x4.toml"), "--split", "Set", "--data-root", str(tmp_path / "data"),
            "--color", color, "--out", str(tmp_path / color), "--json", str(out), "--no-images"])
        assert result.exit_code == 0, result.output
        reports[color] = json.loads(out.read_text())
    assert reports["rgb"]["protocol"]["color"] == "rgb" and reports["y"]["protocol"]["color"] == "y"
    # Y weights the channels and scales to studio range (219/255 of the span): errors shrink, PSNR rises.
    assert reports["rgb"]["pixel"]["psnr"] < reports["y"]["pixel"]["psnr"]
    too_much = CliRunner().invoke(make_app(), [
        "eval", str(RECIPES / "bicubic_x4.toml"), "--split", "Set", "--data-root", str(tmp_path / "data"),
        "--shave", "20", "--no-images"])
    assert too_much.exit_code == 1 and "lower --shave" in " ".join(too_much.output.split())


def test_milestones_need_the_step_schedule(registry):
    from translate_kit.recipe import load_recipe

    with pytest.raises(RecipeError, match="milestones"):
        load_recipe(RECIPES / "srresnet_t91.toml", ["train.milestones=[100]"], registry=registry)


# ------------------------------------------------------------------------------------------------
# PSNR stage, GAN stage, interpolation


def test_the_gan_stage_starts_from_the_psnr_run(psnr_and_gan_runs, registry):
    psnr, gan = psnr_and_gan_runs
    start = read_model(psnr).ema["G"]
    gan_model = read_model(gan)
    assert set(gan_model.nets) == {"G", "D"}
    # Two GAN steps at lr 1e-4 move the PSNR weights a little, never far: the stage did start there.
    moved = max((gan_model.nets["G"][k].float() - v.float()).abs().max().item() for k, v in start.items())
    assert 0 < moved < 0.01
    page = (gan / "index.html").read_text()
    assert "samples/" in page


def test_the_gan_checkpoint_does_not_need_the_run_it_started_from(psnr_and_gan_runs, registry, tmp_path):
    """init_from is read when training starts fresh (`warm_start`), not when the method is rebuilt."""
    psnr, gan = psnr_and_gan_runs
    hidden = tmp_path / "hidden"
    psnr.rename(hidden)
    try:
        translator = Translator.from_checkpoint(gan, device="cpu", registry=registry)
        assert tuple(translator(torch.zeros(3, 10, 12, dtype=torch.uint8)).shape) == (3, 40, 48)
    finally:
        hidden.rename(psnr)


def test_init_from_refuses_another_generator_or_pixel_range(psnr_and_gan_runs, registry, pm, hr_images, tmp_path):
    psnr, _ = psnr_and_gan_runs
    with pytest.raises(RecipeError, match="does not fit"):
        train_tiny("esrgan_x4.toml", registry, pm, hr_images, tmp_path, f'method.init_from="{psnr.as_posix()}"',
                   RANDOM_VGG, "generator.nf=16")
    with pytest.raises(RecipeError, match="pixel_range"):
        train_tiny("esrgan_x4.toml", registry, pm, hr_images, tmp_path, f'method.init_from="{psnr.as_posix()}"',
                   RANDOM_VGG, 'generator.pixel_range="-1..1"')


def test_interpolation_blends_every_parameter(psnr_and_gan_runs, tmp_path):
    psnr, gan = psnr_and_gan_runs
    out = tmp_path / "interp.pt"
    app = make_app(plugin_commands=True)
    result = CliRunner().invoke(app, ["interpolate", str(psnr), str(gan), str(out), "--alpha", "0.8"])
    assert result.exit_code == 0, result.output
    a, b, mixed = read_model(psnr).ema["G"], read_model(gan).ema["G"], read_model(out).nets["G"]
    for key, value in mixed.items():
        torch.testing.assert_close(value, 0.2 * a[key] + 0.8 * b[key], atol=1e-6, rtol=0)
    again = CliRunner().invoke(app, ["interpolate", str(psnr), str(gan), str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output
    # The blend translates and evaluates like any checkpoint.
    assert Translator.from_checkpoint(out, device="cpu").scale == 4


def test_interpolating_different_architectures_is_a_clear_error(psnr_and_gan_runs, registry, pm, hr_images,
                                                               tmp_path):
    psnr, _ = psnr_and_gan_runs
    other = train_tiny("rrdb_psnr_x4.toml", registry, pm, hr_images, tmp_path / "other", "generator.nf=16", steps=1)
    from translate_kit_plugins.super_resolution import interpolate_checkpoints

    with pytest.raises(CheckpointError, match="architectures differ"):
        interpolate_checkpoints(psnr, other, 0.5)
    with pytest.raises(CheckpointError, match="alpha"):
        interpolate_checkpoints(psnr, psnr, 1.5)


# ------------------------------------------------------------------------------------------------
# x4 inference and export


@pytest.fixture(scope="module")
def msrresnet_run(registry, pm, hr_images, tmp_path_factory):
    return train_tiny("srresnet_t91.toml", registry, pm, hr_images, tmp_path_factory.mktemp("msr"))


def test_a_photo_is_upscaled_x4_tiled_and_untiled_alike(msrresnet_run, registry, monkeypatch):
    """517x300 -> 2068x1200; with an overlap beyond four times the receptive field, tiles change
    nothing (1e-4 in [-1, 1] before the conversion to 8 bits)."""
    g = torch.Generator().manual_seed(5)
    low = torch.rand(3, 30, 52, generator=g)
    photo = torch.nn.functional.interpolate(low[None], size=(300, 517), mode="bilinear", align_corners=False)[0]
    photo = (photo * 255).round().to(torch.uint8)
    untiled = Translator.from_checkpoint(msrresnet_run, device="cpu", registry=registry)
    tiled = Translator.from_checkpoint(msrresnet_run, device="cpu", registry=registry, tile=128, overlap=48)
    out = untiled(photo)
    assert tuple(out.shape) == (3, 1200, 2068) and out.dtype == torch.uint8
    import translate_kit.inference as inference

    monkeypatch.setattr(inference, "to_uint8", lambda x: x)  # compare the floats the two paths blend
    a, b = untiled(photo), tiled(photo)
    assert a.dtype == torch.float32 and a.shape == b.shape
    assert (a - b).abs().max().item() < 1e-4


def test_onnx_export_of_a_x4_model_records_the_scale_and_matches(msrresnet_run, registry, tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the optional extra translate-kit[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="checking the graph needs onnxruntime (translate-kit[onnx])")
    from translate_kit.export import export_model

    written = export_model(msrresnet_run, tmp_path / "sr.onnx", fmt="onnx", registry=registry)
    described = json.loads(written[1].read_text())
    assert described["output"]["scale"] == 4
    session = ort.InferenceSession(str(written[0]), providers=["CPUExecutionProvider"])
    generator = Translator.from_checkpoint(msrresnet_run, device="cpu", registry=registry).method.nets["G"].eval()
    for seed, shape in enumerate([(1, 3, 24, 24), (2, 3, 30, 52)]):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        (y,) = session.run(None, {"images": x.numpy()})
        assert y.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(y), generator(x), atol=1e-5, rtol=1e-4)
