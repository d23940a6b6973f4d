"""Non-square sizes in the data contract: `data.load_size` / `data.crop_size` as [height, width].

Parsing and its errors, the (H, W) jitter and resize, the size checks per side, the consumers that
refuse what they cannot do, and a tiny non-square SPADE run (recipes/spade_cityscapes.toml, with
instance maps) that trains, resumes bit for bit, translates and is scored by `tkit eval`.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import RECIPES
from typer.testing import CliRunner

from translate_kit.cli import make_app
from translate_kit.data.jitter import PairedJitter, centre_crop
from translate_kit.data.loading import PreparedDataset, nearest_resize
from translate_kit.errors import RecipeError
from translate_kit.method import BatchSpec
from translate_kit.recipe import load_recipe, size_hw

HEIGHT, WIDTH = 40, 72  # the stored images of the tiny Cityscapes-like data
LOAD, CROP = [36, 68], [32, 64]
CLASSES = 8  # fewer than Cityscapes' 35, to keep the label-map convolutions of the tiny run cheap


# --- the recipe keys ------------------------------------------------------------------------------


def test_an_int_stays_square_and_a_pair_is_height_width():
    square = load_recipe(RECIPES / "pix2pix_facades.toml")
    assert (square.data.load_size, square.data.crop_size, square.data.crop_hw, square.data.load_hw) == (
        286, 256, (256, 256), (286, 286))
    wide = load_recipe(RECIPES / "pix2pix_facades.toml", ["data.load_size=[40, 72]", "data.crop_size=[32, 64]"])
    assert (wide.data.load_size, wide.data.crop_hw, wide.data.square_crop) == ((40, 72), (32, 64), False)
    assert "crop_size = [32, 64]" in wide.to_toml()  # and it loads back the same
    assert load_recipe(wide.to_dict()).data == wide.data
    assert size_hw([3, 5]) == (3, 5) and size_hw(7) == (7, 7)
    with pytest.raises(TypeError, match="Expected an int or"):
        size_hw(True)


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.load_size=[40, 72]", "data.crop_size=[32, 80]"],
     "key 'crop_size': expected a crop no larger than data.load_size ([40, 72]) in height and width, got [32, 80]"),
    (["data.crop_size=[0, 8]"], "key 'crop_size': expected a positive integer, or [height, width] of positive "
                                "integers, got [0, 8]"),
    (["data.load_size=[0, 8]"], "key 'load_size': expected [height, width] of positive integers"),
    (["data.crop_size=[8, 8, 8]"],
     "key 'crop_size': expected int or an array of 2 values (int, int), got [8, 8, 8] (list)"),
    (["data.crop_size=[8, 1.5]"], "key 'crop_size': expected int or an array of 2 values"),
    (["data.load_size=-2"], "key 'load_size': expected a positive integer, [height, width] of positive integers, or "
                            "0 to keep stored sizes, got -2"),
])
def test_bad_sizes_name_the_key_and_the_value(overrides, message):
    with pytest.raises(RecipeError) as caught:
        load_recipe(RECIPES / "pix2pix_facades.toml", overrides)
    assert message in str(caught.value) and "--set data." in str(caught.value)


# --- resize and jitter ----------------------------------------------------------------------------


def _coordinates(batch: int, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) int32: sample * 10000 + row * 100 + column, so a window shows where it came from."""
    rows = torch.arange(height).view(1, 1, height, 1) * 100
    cols = torch.arange(width).view(1, 1, 1, width)
    return (torch.arange(batch).view(batch, 1, 1, 1) * 10000 + rows + cols).to(torch.int32)


def test_jitter_crops_height_width_windows_identically_across_keys():
    torch.manual_seed(0)
    ids = _coordinates(6, 9, 13)
    batch = {"A": ids.to(torch.float32).repeat(1, 3, 1, 1), "B": ids.to(torch.float32), "L": ids}
    out = PairedJitter((4, 7), flip=True, label_keys=("L",))(batch)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"A": (6, 3, 4, 7), "B": (6, 1, 4, 7), "L": (6, 1, 4, 7)}
    assert out["L"].dtype == torch.int32
    flipped = 0
    for i in range(6):
        window = out["L"][i, 0].long()
        assert torch.equal(out["B"][i, 0].long(), window) and all(torch.equal(c.long(), window) for c in out["A"][i])
        assert torch.all(window // 10000 == i)  # every key from its own sample
        rows, cols = window % 10000 // 100, window % 100
        top, left = int(rows.min()), int(cols.min())
        assert torch.equal(rows, torch.arange(top, top + 4).view(4, 1).expand(4, 7))  # contiguous rows
        if int(cols[0, 0]) != left:  # flipped left-right: the columns run backwards
            flipped += 1
            cols = cols.flip(-1)
        assert torch.equal(cols, torch.arange(left, left + 7).expand(4, 7))
    assert 0 < flipped < 6


def test_test_time_centre_crop_and_resize_to_height_width():
    ids = _coordinates(1, 6, 10)
    assert centre_crop(ids, (2, 4))[0, 0].tolist() == [[203, 204, 205, 206], [303, 304, 305, 306]]
    spec = BatchSpec(torch.device("cpu"), crop_size=[2, 4], flip=False, train=False)
    assert spec.crop_size == (2, 4) and spec.crop_hw == (2, 4)
    images = torch.randint(0, 256, (1, 3, 6, 10), dtype=torch.uint8)
    prepared = PairedJitter(spec.crop_size, False).prepare({"A": images, "B": images}, spec)
    assert prepared["A"].shape == (1, 3, 2, 4)
    with pytest.raises(ValueError, match="Expected crop_size None, an int or"):
        BatchSpec(torch.device("cpu"), crop_size=(2, 4, 4))
    # Nearest-exact by indexing, independently: row i of an (H -> h) resize is floor((2i + 1) H / 2h).
    labels = _coordinates(1, 5, 9)[0]
    resized = nearest_resize(labels, (3, 4))
    assert resized.tolist() == [[[r * 100 + c for c in (1, 3, 5, 7)] for r in (0, 2, 4)]]

    class Items(torch.utils.data.Dataset):
        label_keys = ("L",)

        def __len__(self):
            return 1

        def __getitem__(self, index):
            return {"A": torch.zeros(3, 5, 9, dtype=torch.uint8), "L": labels, "name": "x"}

    item = PreparedDataset(Items(), load_size=(3, 4), channels={"A": 1}, cache=False)[0]
    assert item["A"].shape == (1, 3, 4) and torch.equal(item["L"], resized)
    with pytest.raises(ValueError, match="Expected load_size 0, a positive int or"):
        PreparedDataset(Items(), load_size=(0, 4), channels={"A": 1}, cache=False)


# --- consumers ------------------------------------------------------------------------------------


def test_size_checks_name_the_side_that_does_not_fit(registry):
    from translate_kit.build import build_method, check_sizes

    tiny = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=2", "discriminator.ndf=2"]
    fits = load_recipe(RECIPES / "pix2pix_facades.toml", [*tiny, "data.load_size=[64, 96]", "data.crop_size=[64, 96]"],
                       registry=registry)
    method = build_method(fits, registry)
    check_sizes(method, fits)
    odd = load_recipe(fits.to_dict(), ["data.crop_size=[64, 80]"], registry=registry)
    with pytest.raises(RecipeError, match=r"crop_size \[64, 80\] gives network G \(UNetGenerator\) inputs of width 80 "
                                          r"pixels, but it needs sizes that are multiples of 32"):
        check_sizes(method, odd)


def test_super_resolution_refuses_a_non_square_patch():
    from translate_kit_plugins.super_resolution import _crop_pair

    spec = BatchSpec(torch.device("cpu"), crop_size=(8, 16))
    with pytest.raises(RecipeError, match=r"data.crop_size \[8, 16\] is not square, but super-resolution trains on "
                                          "square patches"):
        _crop_pair(torch.zeros(1, 3, 32, 32), None, 2, spec)


def test_a_vae_spade_generator_must_make_the_training_crop(registry):
    from translate_kit.build import build_method

    tables = ["method.use_vae=true", 'encoder.name="spade_encoder"', "encoder.ndf=2", "encoder.input_size=128",
              "generator.ngf=2", "generator.spade_hidden=8", "discriminator.ndf=4", "discriminator.n_layers=3",
              "data.load_size=[32, 64]", "data.crop_size=[32, 64]"]
    batch = {"A": torch.zeros(1, 1, 32, 64, dtype=torch.uint8), "B": torch.zeros(1, 3, 32, 64, dtype=torch.uint8)}
    spec = BatchSpec(torch.device("cpu"), crop_size=(32, 64), flip=False)
    square = load_recipe(RECIPES / "spade_facades.toml", [*tables, "generator.crop_size=64"], registry=registry)
    with pytest.raises(RecipeError, match=r"\[data\] crop_size \[32, 64\] \(height, width\) differs from the 64x64 "
                                          r"images .* Set \[generator\] crop_size = 64 and aspect_ratio = 2"):
        build_method(square, registry).prepare_batch(batch, spec)
    wide = load_recipe(square.to_dict(), ["generator.aspect_ratio=2.0"], registry=registry)
    assert build_method(wide, registry).prepare_batch(batch, spec)["B"].shape == (1, 3, 32, 64)


# --- a tiny non-square run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city_folders(tmp_path_factory):
    """root/train/{labels,images,instances}: two 40x72 maps of ids below 8, photos, 16-bit instance ids."""
    from torchvision.io import write_png

    root = tmp_path_factory.mktemp("tiny_city")
    for folder in ("labels", "images", "instances"):
        (root / "train" / folder).mkdir(parents=True)
    g = torch.Generator().manual_seed(3)
    for i in range(2):
        blocks = torch.randint(0, CLASSES, (1, HEIGHT // 8 + 1, WIDTH // 8 + 1), generator=g, dtype=torch.uint8)
        labels = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :HEIGHT, :WIDTH].contiguous()
        write_png(labels, str(root / "train" / "labels" / f"c{i}.png"))
        write_png(torch.randint(0, 256, (3, HEIGHT, WIDTH), generator=g, dtype=torch.uint8),
                  str(root / "train" / "images" / f"c{i}.png"))
        # Two instances per class region: ids above 255 (Cityscapes' class * 1000 + n), as 16-bit PNGs.
        instances = labels.to(torch.int32) * 1000 + (torch.arange(WIDTH) >= WIDTH // 2).to(torch.int32)
        from PIL import Image

        Image.fromarray(instances[0].numpy().astype("uint16")).save(root / "train" / "instances" / f"c{i}.png")
    return root


def _city(root, run_dir, *extra):
    return [f'data.root="{root.as_posix()}"', f'run.dir="{run_dir.as_posix()}"', f"data.load_size={LOAD}",
            f"data.crop_size={CROP}", 'generator.num_upsampling_layers="normal"', "generator.crop_size=64",
            "generator.ngf=2", "generator.spade_hidden=8", "discriminator.ndf=4", "discriminator.n_layers=3",
            f"data.label_nc={CLASSES}", f"method.label_nc={CLASSES}", "method.lambda_vgg=0.0", "train.batch_size=1",
            "train.log_every=1",
            "train.num_samples=1", "train.checkpoint_every=1000", *extra]


def test_a_non_square_spade_run_trains_resumes_translates_and_evaluates(city_folders, tmp_path, registry, pm,
                                                                          monkeypatch):
    """One step, a resume to two (the contract tests check resumes bit for bit), samples, translate,
    the serve canvas and the ONNX example, eval."""
    from torchvision.io import read_image

    from translate_kit.inference import Translator
    from translate_kit.train.trainer import Trainer

    source = RECIPES / "spade_cityscapes.toml"
    shipped = load_recipe(source, registry=registry)
    assert (shipped.data.crop_hw, shipped.data.load_hw) == ((256, 512), (256, 512))
    first = load_recipe(source, _city(city_folders, tmp_path, "train.max_steps=1"), registry=registry)
    trainer = Trainer(first, registry=registry, pm=pm, device="cpu")
    assert trainer.dataset[0]["A"].shape == (1, *LOAD) and trainer.dataset[0]["instances"].max() > 255
    trainer.fit()
    after_one = {k: v.clone() for k, v in trainer.method.nets["G"].state_dict().items()}
    run = trainer.run_dir
    resumed = Trainer(load_recipe(first.to_dict(), ["train.max_steps=2"], registry=registry), registry=registry,
                      pm=pm, device="cpu", run_dir=run, resume=True)
    assert resumed.state.step == 1
    history = resumed.fit()
    assert resumed.state.step == 2 and all(torch.isfinite(torch.tensor(list(r.values()))).all() for r in history)
    assert any(not torch.equal(after_one[k], v) for k, v in resumed.method.nets["G"].state_dict().items())
    sample = next((run / "samples").rglob("epoch_*/*.png"))
    assert read_image(str(sample)).shape[-2:] == tuple(CROP)  # the sample page's centre crop is (H, W)

    translator = Translator.from_checkpoint(run, device="cpu", registry=registry)
    assert translator.recipe.data.crop_size == tuple(CROP)
    labels = read_image(str(city_folders / "train" / "labels" / "c0.png"))
    assert translator(labels).shape == (3, HEIGHT, WIDTH)

    from translate_kit.export import _save_onnx
    from translate_kit.serve.models import served_model

    info = served_model("city", translator, registry).info()  # tkit serve's canvas
    assert (info["canvas_height"], info["canvas_width"], info["canvas_size"]) == (*CROP, CROP[1])
    traced = []

    class Program:
        def save(self, path):
            open(path, "wb").close()

    def export(module, args, **options):  # the example `tkit export --format onnx` traces, without tracing
        traced.append(tuple(args[0].shape))
        return Program()

    monkeypatch.setattr(torch.onnx, "export", export)
    shape = _save_onnx(translator, tmp_path / "g.onnx", opset=None, dynamic=False, example_size=None)
    assert shape == [1, 1, *CROP] and traced == [(1, 1, *CROP)]

    result = CliRunner().invoke(make_app(), ["eval", str(run), "--split", "train", "--out", str(tmp_path / "eval"),
                                             "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["images"] == 2
    output = read_image(str(tmp_path / "eval" / report["per_image"][0]["images"]["output"]))
    assert output.shape[-2:] == tuple(CROP)  # test images resized to data.crop_size (H, W), never cropped
