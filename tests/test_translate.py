"""Inference: any-size translation, checkpoint loading, modes, tiling, batching, files and the CLI."""

from __future__ import annotations

import doctest

import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPES, quick_overrides
from torch import nn
from torchvision.io import read_image as decode_png
from torchvision.io import write_png
from typer.testing import CliRunner

import translate_kit.inference
import translate_kit.method
from translate_kit.build import build_method
from translate_kit.cli import make_app
from translate_kit.data.jitter import to_unit_range
from translate_kit.data.synth import render_facade
from translate_kit.errors import CheckpointError, DataError, InferenceError
from translate_kit.inference import Translator, expand_inputs, translate_files
from translate_kit.method import Method
from translate_kit.pages import to_uint8
from translate_kit.recipe import Recipe, load_recipe
from translate_kit.train.checkpoint import checkpoint_paths, load_checkpoint
from translate_kit.train.trainer import Trainer

TINY_UNET = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]

# Tiled vs untiled, in grey levels (uint8), measured on a 300x517 facade label map with the tiny
# 5-level U-Net (size multiple 32) after calibrating its batch-norm statistics on that image, so
# the output has contrast (std ~10 levels; a 2-step model's raw output is nearly flat, std ~1).
# A U-Net sees almost the whole tile, so tiling it is approximate: measured mean 0.22 / max 9
# for tile 256, overlap 64 and mean 1.56 / max 15 for tile 128, overlap 64 (overlap 0: max 65).
# A network whose receptive field fits in a quarter of the overlap gives the untiled result.
TILING_TOLERANCE = {
    # (tile, overlap): (max mean |difference|, max |difference|)
    (256, 64): (0.5, 12),
    (128, 64): (2.5, 24),
}


@pytest.fixture(scope="module")
def run(registry, pm, tiny_facades, tmp_path_factory):
    """A tiny pix2pix run (2 steps, 32x32 crops): its run folder."""
    out = tmp_path_factory.mktemp("translate_runs")
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", quick_overrides(tiny_facades, out) + TINY_UNET,
                         registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    trainer.fit()
    return trainer.run_dir


@pytest.fixture(scope="module")
def translator(run, registry):
    return Translator.from_checkpoint(run, device="cpu", registry=registry)


@pytest.fixture(scope="module")
def app():
    return make_app()


def invoke(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.output


def facade_labels(height: int, width: int, seed: int = 3) -> torch.Tensor:
    """A uint8 (3, H, W) label map with structure: synthetic facades side by side."""
    side = max(height, 32)
    tiles = [render_facade(seed + i, side)[1] for i in range(-(-width // side))]
    return torch.cat(tiles, dim=2)[:, :height, :width].contiguous()


def calibrated(run, registry, image: torch.Tensor, **options) -> Translator:
    """A translator whose batch-norm running statistics are those of `image` (padded), so its
    eval-mode output has contrast."""
    translator = Translator.from_checkpoint(run, device="cpu", registry=registry, **options)
    m = translator.size_multiple
    h, w = (-(-s // m) * m for s in image.shape[-2:])
    x = F.pad(to_unit_range(image[None]), (0, w - image.shape[-1], 0, h - image.shape[-2]), mode="reflect")
    net = translator.method.nets["G"]
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    return translator


# ------------------------------------------------------------------------------------------------
# Sizes, channels, checkpoints


def test_any_size_comes_back_at_the_same_size(translator):
    image = facade_labels(300, 517)
    out = translator(image)
    assert out.shape == (3, 300, 517) and out.dtype == torch.uint8 and out.device.type == "cpu"
    batch = translator(torch.stack([image, image.flip(-1)]))
    assert batch.shape == (2, 3, 300, 517) and torch.equal(batch[0], out)
    outs = translator([image, image[:, :45, :61]])
    assert [tuple(o.shape) for o in outs] == [(3, 300, 517), (3, 45, 61)]


def test_float_input_in_unit_range_matches_uint8(translator):
    image = facade_labels(64, 96)
    assert torch.equal(translator(to_unit_range(image)), translator(image))


def test_odd_sizes_are_reflection_padded_centred_and_cropped_back(translator):
    image = facade_labels(300, 517)  # padded to 320 x 544: 10 + 10 rows, 13 + 14 columns
    x = F.pad(to_unit_range(image[None]), (13, 14, 10, 10), mode="reflect")
    with torch.no_grad():
        translator.method.eval()
        expected = to_uint8(translator.method.nets["G"](x)[0, :, 10:310, 13:530])
    assert torch.equal(translator(image), expected)


def test_aligned_sizes_are_translated_exactly_as_the_network_does(translator):
    image = facade_labels(64, 96)  # multiples of 32: no padding
    with torch.no_grad():
        translator.method.eval()
        expected = to_uint8(translator.method.nets["G"](to_unit_range(image[None]))[0])
    assert torch.equal(translator(image), expected)


def test_images_smaller_than_the_padding_are_replicate_padded(translator):
    out = translator(facade_labels(5, 7))  # needs 27 and 25 pixels of padding: more than the image
    assert out.shape == (3, 5, 7)


def test_gray_input_to_an_rgb_model(translator):
    gray = facade_labels(40, 50)[:1]
    out = translator(gray)
    assert out.shape == (3, 40, 50)
    assert torch.equal(out, translator(gray.expand(3, -1, -1)))
    assert torch.equal(translator(to_unit_range(gray)), out)


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_channels_that_cannot_be_converted_are_a_clear_error(translator, channels):
    with pytest.raises(DataError, match=f"has {channels} channel\\(s\\), but the model takes 3"):
        translator(torch.zeros(channels, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ([], "No images to translate"),
        (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), "No images to translate"),
        (torch.zeros(8, 8, dtype=torch.uint8), r"Expected images of shape \(C, H, W\)"),
        (torch.zeros(3, 8, 8, dtype=torch.int32), "expected uint8 .* got dtype torch.int32"),
    ],
)
def test_bad_inputs_are_clear_errors(translator, images, expected):
    with pytest.raises(DataError, match=expected):
        translator(images)


def test_run_folder_and_checkpoint_file_both_load(run, registry, translator):
    [file] = checkpoint_paths(run / "checkpoints")
    by_file = Translator.from_checkpoint(file, device="cpu", registry=registry)
    assert translator.checkpoint == by_file.checkpoint == file and translator.step == 2
    image = facade_labels(48, 80)
    assert torch.equal(by_file(image), translator(image))


def test_loading_leaves_the_global_random_state_alone(run, registry):
    before = torch.get_rng_state()
    Translator.from_checkpoint(run, device="cpu", registry=registry)
    assert torch.equal(torch.get_rng_state(), before)


def test_folder_without_checkpoints_is_a_clear_error(tmp_path, registry):
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        Translator.from_checkpoint(tmp_path, registry=registry)
    with pytest.raises(CheckpointError, match="does not exist"):
        Translator.from_checkpoint(tmp_path / "missing.pt", registry=registry)


def _tampered(run, tmp_path, **generator) -> object:
    [file] = checkpoint_paths(run / "checkpoints")
    state = load_checkpoint(file)
    state["recipe"]["generator"].update(generator)
    path = tmp_path / "tampered.pt"
    torch.save(state, path)
    return path


def test_weights_that_do_not_fit_the_recipe_are_a_checkpoint_error(run, registry, tmp_path):
    with pytest.raises(CheckpointError, match="do not fit the networks its recipe describes"):
        Translator.from_checkpoint(_tampered(run, tmp_path, ngf=16), registry=registry)


def test_a_recipe_that_no_longer_builds_is_a_checkpoint_error(run, registry, tmp_path):
    with pytest.raises(CheckpointError, match="Cannot rebuild the networks .*Unknown generator 'unet_9000'"):
        Translator.from_checkpoint(_tampered(run, tmp_path, name="unet_9000"), registry=registry)


@pytest.mark.parametrize("options", [{"tile": 100}, {"tile": 16}, {"tile": 64, "overlap": 64}, {"batch_size": 0},
                                     {"mode": "train"}])
def test_bad_options_are_clear_errors(run, registry, options):
    options = {"device": "cpu", **options}
    with pytest.raises(InferenceError, match="multiple of 32|overlap|batch_size|mode"):
        Translator.from_checkpoint(run, registry=registry, **options)


# ------------------------------------------------------------------------------------------------
# Modes


def test_eval_mode_is_deterministic(translator):
    image = facade_labels(64, 64)
    assert torch.equal(translator(image), translator(image))


def _dropout_translator(registry, **options) -> Translator:
    """An untrained 6-level U-Net: the smallest with dropout (decoder level 4)."""
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", TINY_UNET + ["generator.num_downs=6"], registry=registry)
    torch.manual_seed(0)
    method = build_method(recipe, registry)
    return Translator(method, recipe, device="cpu", **options)


def test_paper_mode_is_reproducible_with_a_seed_and_differs_from_eval(registry):
    image = facade_labels(64, 64)
    eval_out = _dropout_translator(registry)(image)
    before = torch.get_rng_state()
    first = _dropout_translator(registry, mode="paper", seed=7)(image)
    assert torch.equal(torch.get_rng_state(), before)  # a private random state
    assert torch.equal(_dropout_translator(registry, mode="paper", seed=7)(image), first)
    assert not torch.equal(_dropout_translator(registry, mode="paper", seed=8)(image), first)
    assert not torch.equal(first, eval_out)


def test_paper_mode_seeds_each_image_so_batching_does_not_matter(registry):
    images = [facade_labels(64, 64, seed=s) for s in (1, 2, 3)]
    together = _dropout_translator(registry, mode="paper", seed=7, batch_size=3)(images)
    one = _dropout_translator(registry, mode="paper", seed=7, batch_size=1)
    alone = [one.translate_batch([image], first_index=i)[0] for i, image in enumerate(images)]
    assert all(torch.equal(a, b) for a, b in zip(together, alone))


def test_paper_mode_of_the_trained_model_differs_from_eval(run, registry, translator):
    image = facade_labels(64, 64)
    paper = Translator.from_checkpoint(run, device="cpu", mode="paper", seed=0, registry=registry)
    assert not torch.equal(paper(image), translator(image))
    assert torch.equal(paper(image), paper(image))


# ------------------------------------------------------------------------------------------------
# Batching and tiling


def test_batching_gives_the_same_results_as_one_by_one_in_eval_mode(run, registry, translator):
    images = [facade_labels(64, 96, seed=s) for s in range(5)] + [facade_labels(40, 40)]
    batched = Translator.from_checkpoint(run, device="cpu", registry=registry, batch_size=3)(images)
    for image, out in zip(images, batched):
        assert torch.equal(out, translator(image))


@pytest.mark.parametrize(("tile", "overlap"), list(TILING_TOLERANCE))
def test_tiled_output_agrees_with_untiled(run, registry, tile, overlap):
    image = facade_labels(300, 517)
    whole = calibrated(run, registry, image)
    tiled = calibrated(run, registry, image, tile=tile, overlap=overlap, batch_size=4)
    expected, got = whole(image).int(), tiled(image).int()
    assert got.shape == expected.shape == (3, 300, 517)
    assert expected.float().std() > 5  # the comparison is not between two flat images
    diff = (got - expected).abs()
    mean_tol, max_tol = TILING_TOLERANCE[(tile, overlap)]
    assert diff.float().mean() <= mean_tol and diff.max() <= max_tol, (diff.float().mean(), diff.max())


class LocalMethod(Method):
    """Three 3x3 convolutions: a receptive field of 7x7 pixels, sizes in multiples of 4."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(8, 3, 3, padding=1), nn.Tanh())
        net.size_multiple, net.min_size = 4, 0
        self.nets = nn.ModuleDict({"G": net})
        self.roles = {"G": "translate"}


def test_tiling_is_exact_when_the_receptive_field_fits_in_the_overlap():
    image = facade_labels(150, 157)
    whole = Translator(LocalMethod(), Recipe(), device="cpu")(image)
    assert whole.float().std() > 5
    # A quarter of the overlap (4 px) covers the receptive field's reach (3 px): exact.
    tiled = Translator(LocalMethod(), Recipe(), device="cpu", tile=32, overlap=16)(image)
    assert torch.equal(tiled, whole)
    # Without overlap the tile borders show.
    seams = Translator(LocalMethod(), Recipe(), device="cpu", tile=32, overlap=0)(image)
    assert not torch.equal(seams, whole)


# ------------------------------------------------------------------------------------------------
# Files


@pytest.fixture()
def image_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    write_png(facade_labels(40, 56, seed=1), str(folder / "2.png"))
    write_png(facade_labels(33, 70, seed=2), str(folder / "10.png"))
    write_png(facade_labels(40, 56, seed=3)[:1], str(folder / "gray.png"))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_and_glob_inputs(translator, image_folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    write_png(facade_labels(20, 24), str(other / "2.png"))  # the same stem as imgs/2.png
    written = translate_files(translator, [image_folder, str(other / "*.png")], tmp_path / "out")
    assert [p.name for p in written] == ["2.png", "10.png", "gray.png", "2_1.png"]
    sizes = [tuple(decode_png(str(p)).shape) for p in written]
    assert sizes == [(3, 40, 56), (3, 33, 70), (3, 40, 56), (3, 20, 24)]
    # A pattern that repeats a folder's files adds nothing.
    assert expand_inputs([image_folder, str(image_folder / "*")]) == expand_inputs([image_folder])


def test_files_in_batches_match_one_by_one(run, registry, translator, image_folder, tmp_path):
    one = translate_files(translator, [image_folder], tmp_path / "one")
    calls = []
    batched = Translator.from_checkpoint(run, device="cpu", registry=registry, batch_size=2)
    many = translate_files(batched, [image_folder], tmp_path / "many", on_image=lambda s, t: calls.append(s.name))
    assert calls == ["2.png", "10.png", "gray.png"]
    for a, b in zip(one, many):
        assert torch.equal(decode_png(str(a)), decode_png(str(b)))


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ([], "No inputs given"),
        (["nowhere.png"], "Input nowhere.png does not exist"),
        (["nowhere/*.png"], "Pattern 'nowhere/\\*.png' matches no image"),
    ],
)
def test_bad_file_inputs_are_clear_errors(translator, tmp_path, monkeypatch, inputs, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=expected):
        translate_files(translator, inputs, tmp_path / "out")


def test_empty_folder_is_a_clear_error(translator, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="Input folder .*empty holds no images"):
        translate_files(translator, [tmp_path / "empty"], tmp_path / "out")


def test_inputs_are_never_overwritten(translator, image_folder):
    before = (image_folder / "2.png").read_bytes()
    with pytest.raises(DataError, match="would overwrite the input"):
        translate_files(translator, [image_folder], image_folder)
    assert (image_folder / "2.png").read_bytes() == before


def test_unreadable_image_names_the_file(translator, image_folder, tmp_path):
    (image_folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match="3.png"):
        translate_files(translator, [image_folder], tmp_path / "out")


# ------------------------------------------------------------------------------------------------
# Command line


def test_cli_translates_a_png_at_its_own_size(app, run, tmp_path):
    source = tmp_path / "facade.png"
    write_png(facade_labels(300, 517), str(source))
    result, output = invoke(app, "translate", run, source, "--out", tmp_path / "out")
    assert result.exit_code == 0, output
    assert decode_png(str(tmp_path / "out" / "facade.png")).shape == (3, 300, 517)
    assert "Wrote 1 image(s)" in output


def test_cli_tiles_and_batches(app, run, image_folder, tmp_path):
    result, output = invoke(app, "translate", run, str(image_folder / "*.png"), "-o", tmp_path / "out",
                            "--batch-size", 2, "--tile", 32, "--overlap", 16, "--mode", "paper", "--seed", 3)
    assert result.exit_code == 0, output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["10.png", "2.png", "gray.png"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("state_dict", "is not a translate-kit checkpoint (no 'translate-kit/checkpoint' marker)"),
        ("truncated", "is not a torch.save archive"),
        (b"\x00\x01not a checkpoint at all" * 10, "is not a torch.save archive"),
    ],
)
def test_cli_foreign_or_corrupt_checkpoint(app, run, image_folder, tmp_path, content, expected):
    path = tmp_path / "model.pt"
    if content == "state_dict":
        torch.save(nn.Conv2d(3, 3, 3).state_dict(), path)  # what the reference pix2pix code saves
    elif content == "truncated":
        data = checkpoint_paths(run / "checkpoints")[0].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    result, output = invoke(app, "translate", path, image_folder, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Error:" in output and expected in output, output
    assert isinstance(result.exception, SystemExit)  # handled, not an escaped exception
    assert not (tmp_path / "out").exists()


def test_cli_unreadable_image_names_the_file(app, run, image_folder, tmp_path):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result, output = invoke(app, "translate", run, image_folder, "--out", tmp_path / "out")
    assert result.exit_code == 1 and "Cannot decode image" in output and "broken.png" in output, output
    assert isinstance(result.exception, SystemExit)  # handled, not an escaped exception


def test_cli_bad_tile_is_a_clear_error(app, run, image_folder, tmp_path):
    result, output = invoke(app, "translate", run, image_folder, "--out", tmp_path / "out", "--tile", 100)
    assert result.exit_code == 1 and "multiples of 32" in output, output
    assert isinstance(result.exception, SystemExit)


def test_cli_help(app):
    result, output = invoke(app, "translate", "--help")
    assert result.exit_code == 0 and "--tile" in output and "--mode" in output and "--no-auto-tile" in output


def test_an_image_that_would_not_fit_is_tiled_automatically_and_said_once(run, registry, monkeypatch):
    """Two 300x260 images (over four times a 128-pixel probe) with too little memory: tiled with the
    tile size said once, exactly as an explicit --tile of that size; with enough memory, whole."""
    import re

    monkeypatch.setattr(translate_kit.inference, "_PROBE_SIDE", 128)  # the 512 default needs 1-megapixel images
    images = [facade_labels(260, 300, seed=seed) for seed in (1, 2)]
    whole = Translator.from_checkpoint(run, device="cpu", registry=registry, auto_tile=False)(images)
    monkeypatch.setattr(translate_kit.inference, "available_bytes", lambda device: 64 * 2**30)
    roomy = Translator.from_checkpoint(run, device="cpu", registry=registry)
    assert all(torch.equal(a, b) for a, b in zip(roomy(images), whole))  # 64 GiB: nothing to tile

    said: list[str] = []
    probe = Translator.from_checkpoint(run, device="cpu", registry=registry)
    probe.translate_batch(images[:1])  # measures the bytes per pixel (and finds enough memory)
    per_pixel = probe._bytes_per_pixel
    assert per_pixel is not None and per_pixel > 0
    # Memory for about a 100x100 tile: half of the "available" bytes is the budget.
    monkeypatch.setattr(translate_kit.inference, "available_bytes", lambda device: int(2 * per_pixel * 100**2))
    tight = Translator.from_checkpoint(run, device="cpu", registry=registry, notify=said.append)
    outputs = tight(images)
    assert len(said) == 1 and "would need about" in said[0], said
    tile = int(re.search(r"in (\d+)x\1 tiles", said[0]).group(1))
    assert tile == 96  # the largest multiple of 32 below 100
    explicit = Translator.from_checkpoint(run, device="cpu", registry=registry, tile=tile, overlap=64)(images)
    assert all(o.shape == (3, 260, 300) and torch.equal(o, e) for o, e in zip(outputs, explicit))
    assert any(not torch.equal(o, w) for o, w in zip(outputs, whole))  # a U-Net's tiles differ a little


def test_docstring_examples():
    assert doctest.testmod(translate_kit.inference).failed == 0


def test_eval_mode_runs_a_batchnorm_folded_copy_that_follows_the_weights(run, registry):
    translator = Translator.from_checkpoint(run, device="cpu", registry=registry)
    generator = translator.method.nets["G"]
    x = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def reference() -> torch.Tensor:
        with torch.no_grad(), translate_kit.method.test_time(generator, "eval"):
            return generator(x)

    runner = translator._runner()
    norms = [m for m in runner.nets["G"].modules() if isinstance(m, nn.BatchNorm2d)]
    assert not norms and any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())
    assert runner.nets["D"] is translator.method.nets["D"]  # not copied
    with torch.inference_mode():
        torch.testing.assert_close(translator._forward(x), reference(), atol=1e-5, rtol=1e-4)
    assert translator._runner() is runner  # cached while the weights stay
    with torch.no_grad():
        next(m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)).running_var.mul_(4)
    assert translator._runner() is not runner
    with torch.inference_mode():
        torch.testing.assert_close(translator._forward(x), reference(), atol=1e-5, rtol=1e-4)
    assert any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())  # the original is untouched


def test_compiled_translation_equals_the_eager_one_in_both_modes(run, registry):
    image = facade_labels(40, 70)
    for mode in ("eval", "paper"):  # the tiny U-Net has no dropout: paper mode is deterministic too
        eager = Translator.from_checkpoint(run, device="cpu", registry=registry, mode=mode)
        compiled = Translator.from_checkpoint(run, device="cpu", registry=registry, mode=mode, compile=True)
        expected, got = eager(image), compiled(image)
        assert (got.int() - expected.int()).abs().max() <= 1, mode  # float rounding may move a level
        runner = compiled._runner()
        assert type(runner.nets["G"].compiled).__name__ == "OptimizedModule" and runner is not compiled.method


def test_a_translator_built_under_inference_mode_translates(run, registry):
    with torch.inference_mode():
        translator = Translator.from_checkpoint(run, device="cpu", registry=registry)
        out = translator(facade_labels(32, 40))
    assert out.shape == (3, 32, 40)


def test_a_tile_below_the_models_minimum_size_is_refused():
    method = LocalMethod()
    method.nets["G"].min_size = 8
    with pytest.raises(InferenceError, match="multiples of 4 and at least 8; use such a size, e.g. 8"):
        Translator(method, Recipe(), device="cpu", tile=4)
