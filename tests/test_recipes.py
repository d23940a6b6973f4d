"""Recipes: parsing, overrides, validation messages, and every shipped recipe trains two steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RECIPES, quick_overrides

from translate_kit.errors import RecipeError, UnknownComponentError
from translate_kit.recipe import TrainConfig, dump_toml, load_recipe, parse_override

ALL_RECIPES = sorted(RECIPES.glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


MINIMAL = """
[data]
root = "x"
[method]
name = "pix2pix"
[generator]
name = "unet"
[discriminator]
name = "patchgan"
"""


def test_pix2pix_recipe_has_the_papers_settings(registry):
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", registry=registry)
    assert recipe.train == TrainConfig(
        epochs=100, decay_epochs=100, batch_size=1, lr=2e-4, betas=(0.5, 0.999), log_every=100, checkpoint_every=5
    )
    assert (recipe.data.load_size, recipe.data.crop_size, recipe.data.flip) == (286, 256, True)
    assert recipe.data.options == {"root": "data/facades", "split": "train", "direction": "BtoA"}
    assert recipe.components["method"] == {"name": "pix2pix", "lambda_l1": 100.0, "gan_mode": "vanilla"}
    assert recipe.components["discriminator"]["n_layers"] == 3


def test_overrides_are_typed(tmp_path, registry):
    recipe = load_recipe(
        write(tmp_path, MINIMAL),
        ["train.epochs=5", "train.lr=1e-3", "train.betas=[0.9, 0.99]", "data.root=../a/b", "generator.ngf=16"],
        registry=registry,
    )
    assert recipe.train.epochs == 5 and recipe.train.lr == 1e-3 and recipe.train.betas == (0.9, 0.99)
    assert recipe.data.options["root"] == "../a/b"
    assert recipe.components["generator"]["ngf"] == 16


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (MINIMAL + "[trian]\nepochs = 1\n", [], "[trian]: unknown table. Did you mean 'train'?"),
        (MINIMAL, ["train.epoch=3"], "--set train.epoch=3: unknown key 'epoch'. Did you mean 'epochs'?"),
        (MINIMAL, ["train.epochs=many"], "--set train.epochs=many, key 'epochs': expected int, got 'many' (str)"),
        (MINIMAL, ["train.precision=fp8"], "expected one of 'auto', 'fp32', 'bf16', 'fp16', got 'fp8'"),
        (MINIMAL, ["generator.ngff=3"], "unknown key 'ngff' for generator 'unet'. Did you mean 'ngf'?"),
        (MINIMAL, ["generator.ngf=1.5"], "key 'ngf' of generator 'unet': expected int, got 1.5 (float)"),
        (MINIMAL, ["data.load_size=100", "data.crop_size=128"], "no larger than data.load_size (100)"),
        (MINIMAL, ["data.direction=AtoC"], "expected one of 'AtoB', 'BtoA', got 'AtoC'"),
        (MINIMAL, ["data.rooot=x"], "unknown key 'rooot' for dataset 'aligned'. Did you mean 'root'?"),
        (MINIMAL.replace('name = "pix2pix"', 'name = "pix2px"'), [], "Unknown method 'pix2px'"),
        ("[run]\nname = 'x'\n", [], "missing table [method]"),
        ("[run\nname=1", [], "is not valid TOML"),
        (MINIMAL, ["train.epochs"], "expected table.key=value"),
        (MINIMAL, ["run.seed=35184372088832"], "expected an integer in [0, 2**32)"),
    ],
)
def test_errors_name_the_place_and_the_fix(tmp_path, registry, text, overrides, expected):
    with pytest.raises((RecipeError, UnknownComponentError)) as info:
        load_recipe(write(tmp_path, text), overrides, registry=registry)
    assert expected in str(info.value)


def test_missing_file_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.toml")


def test_round_trip_through_toml(tmp_path, registry):
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", ["train.betas=[0.5, 0.9]"], registry=registry)
    again = load_recipe(write(tmp_path, recipe.to_toml()), registry=registry)
    assert again.to_dict() == recipe.to_dict()
    assert load_recipe(recipe.to_dict(), registry=registry).train == recipe.train


def test_parse_override_values():
    assert parse_override("train.lr=2e-4") == ("train", "lr", 2e-4)
    assert parse_override("data.flip=false") == ("data", "flip", False)
    assert parse_override('run.name="a b"') == ("run", "name", "a b")


def test_dump_toml_escapes():
    import tomllib

    tables = {"t": {"s": 'quote " and \\ back', "n": [1, 2], "f": 0.5, "b": True, "key with space": 1}}
    assert tomllib.loads(dump_toml(tables)) == tables


@pytest.mark.parametrize("path", ALL_RECIPES, ids=[p.stem for p in ALL_RECIPES])
def test_every_shipped_recipe_loads_and_trains_two_steps(path, registry, pm, tiny_facades, tmp_path):
    from translate_kit.train.trainer import Trainer

    overrides = quick_overrides(tiny_facades, tmp_path)
    recipe = load_recipe(path, registry=registry)
    generator = recipe.components.get("generator", {})
    if str(generator.get("name")).startswith("unet"):  # a 32 px image takes at most 5 downsamplings
        overrides += ["generator.name=unet", "generator.num_downs=5"]
    if generator.get("name") == "timm_unet":  # a batch-norm encoder needs 2x its stride: 64 px
        overrides += ["data.load_size=72", "data.crop_size=64"]
    # Same architectures, narrower: the paper-size pix2pixHD generator alone has 182M parameters.
    for table, width in (("generator", "ngf"), ("discriminator", "ndf")):
        if table in recipe.components:
            options = {o.name for o in registry.get(table, recipe.components[table]["name"]).options}
            if width in options:
                overrides.append(f"{table}.{width}=8")
    recipe = load_recipe(path, overrides, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    history = trainer.fit()
    assert trainer.state.step == 2
    assert all(v == v for record in history for v in record.values())  # no NaN
    assert (trainer.run_dir / "index.html").is_file()
