"""Recipes: parsing, overrides, validation messages (every shipped recipe trains: test_contracts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RECIPES

from translate_kit.errors import RecipeError, UnknownComponentError
from translate_kit.recipe import TrainConfig, dump_toml, load_recipe, parse_override


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


# Every shipped recipe trains, resumes and translates: tests/test_contracts.py::test_recipe_contract.


def test_overrides_never_change_the_callers_tables(registry):
    """A recipe given as tables (a checkpoint's) is copied deeply before dotted overrides write into it."""
    import copy

    source = load_recipe(RECIPES / "pix2pix_facades.toml", registry=registry).to_dict()
    source["method"]["gan_options"] = {"target_real": 1.0}
    before = copy.deepcopy(source)
    recipe = load_recipe(source, ["method.gan_options.target_real=0.9", "train.optimizers.D.lr=1e-3"],
                         registry=registry)
    assert source == before
    assert recipe.components["method"]["gan_options"] == {"target_real": 0.9}
    assert recipe.train.optimizers["D"].lr == 1e-3
