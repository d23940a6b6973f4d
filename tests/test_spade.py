"""The SPADE method: training on label maps, TTUR, the label input, multimodal and style inference."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES, quick_overrides

from translate_kit.api import BatchSpec, encode_palette, to_unit_range
from translate_kit.eval.labels import FACADES
from translate_kit.inference import Translator
from translate_kit.method import describe_inputs
from translate_kit.recipe import load_recipe
from translate_kit.train.trainer import Trainer

TINY = [
    "generator.ngf=4", "generator.spade_hidden=8", "generator.crop_size=32",
    "discriminator.ndf=4", "discriminator.n_layers=2",
]
VAE = ["method.use_vae=true", 'encoder.name="spade_encoder"', "encoder.ndf=2", "encoder.input_size=128"]


def make_trainer(registry, pm, root, run_dir, *extra, steps=2, **kwargs):
    overrides = quick_overrides(root, run_dir, steps=steps) + TINY + list(extra)
    recipe = load_recipe(RECIPES / "spade_facades_cpu.toml", overrides, registry=registry)
    return Trainer(recipe, registry=registry, pm=pm, device="cpu", **kwargs)


def without_optimizer_tables(registry, root, run_dir, *extra):
    """The CPU recipe without its [train.optimizers.*] tables: the method's own defaults decide."""
    tables = load_recipe(RECIPES / "spade_facades_cpu.toml", quick_overrides(root, run_dir) + TINY + list(extra),
                         registry=registry).to_dict()
    tables["train"].pop("optimizers", None)
    return load_recipe(tables, registry=registry)


def test_spade_trains_with_ttur_and_keeps_it_on_resume(registry, pm, tiny_facades, tmp_path):
    recipe = without_optimizer_tables(registry, tiny_facades, tmp_path)
    assert not recipe.train.optimizers
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    before = {k: v.clone() for k, v in trainer.method.nets["G"].state_dict().items()}
    history = trainer.fit()
    assert {"loss_G_GAN", "loss_G_FM", "loss_D_real", "loss_D_fake"} <= set(history[-1])
    assert all(math.isfinite(v) for r in history for v in r.values())
    after = trainer.method.nets["G"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("original"))  # spectral-norm weights

    def settings(t):
        return {g: (o.param_groups[0]["lr"], tuple(o.param_groups[0]["betas"])) for g, o in t.optimizers.items()}

    assert settings(trainer) == {"G": (1e-4, (0.0, 0.9)), "D": (4e-4, (0.0, 0.9))}  # TTUR, from the method
    recipe = load_recipe(trainer.run_dir / "recipe.toml", ["train.max_steps=3"], registry=registry)
    assert not recipe.train.optimizers  # the stored recipe names no rates either: they come from the method
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=trainer.run_dir, resume=True)
    assert settings(resumed) == settings(trainer)
    assert [o.state_dict()["state"] != {} for o in resumed.optimizers.values()] == [True, True]  # Adam moments restored
    resumed.fit()


def test_recipe_tables_change_the_methods_ttur(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "train.optimizers.D.lr=3e-4")
    assert [trainer.optimizers[g].param_groups[0]["lr"] for g in ("G", "D")] == [1e-4, 3e-4]
    assert trainer.method.optimizer_groups() == {"G": ["G"], "D": ["D"]}
    trainer.close()


def test_the_batch_holds_exact_ids_their_colours_and_the_photo(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    loader_batch = next(iter(trainer.loader))
    batch = trainer.method.prepare_batch(loader_batch, BatchSpec(torch.device("cpu"), 32, flip=True))
    labels = batch["labels"]
    assert labels.shape == (2, 1, 32, 32) and set(labels.unique().tolist()) <= set(range(12))
    assert torch.equal(batch["A"], to_unit_range(encode_palette(labels[:, 0].long(), FACADES)))
    assert batch["B"].shape == (2, 3, 32, 32) and batch["B"].abs().max() <= 1
    seg = trainer.method._semantics(labels, None)
    assert seg.shape == (2, 12, 32, 32) and torch.equal(seg.argmax(1, keepdim=True), labels.long())
    trainer.close()


def test_translate_takes_a_colour_map_of_any_multiple_size(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    trainer.fit()
    translator = Translator.from_checkpoint(trainer.run_dir, device="cpu", registry=registry)
    label_map = encode_palette(torch.randint(0, 12, (40, 56)), FACADES)
    out = translator(label_map)
    assert out.shape == (3, 40, 56) and out.dtype == torch.uint8
    described = describe_inputs(translator.method, channels=3, palette=FACADES)  # what tkit serve offers
    assert described.kind == "label_map" and not described.multimodal and not described.style_image


def test_vae_mode_samples_z_and_follows_a_style(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, *VAE)
    history = trainer.fit()
    assert "loss_G_KLD" in history[-1] and trainer.method.optimizer_groups()["G"] == ["G", "E"]
    method = trainer.method.eval()
    x = to_unit_range(encode_palette(torch.randint(0, 12, (1, 32, 32)), FACADES))

    def sample(m, seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return m.translate(x)

    assert torch.equal(sample(method, 1), sample(method, 1)) and not torch.equal(sample(method, 1), sample(method, 2))
    photos = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    styled = [method.with_style(p) for p in photos]
    assert not torch.equal(sample(styled[0], 1), sample(styled[1], 1))  # z follows the style image
    assert styled[0].nets is method.nets  # the same networks
    # A map of another size: resized to the generator's size and back.
    wide = to_unit_range(encode_palette(torch.randint(0, 12, (1, 32, 64)), FACADES))
    torch.manual_seed(0)
    with torch.no_grad():
        assert method.translate(wide).shape == (1, 3, 32, 64)


def test_a_vae_generator_without_an_encoder_samples_but_cannot_train(registry, pm, tiny_facades, tmp_path):
    from translate_kit.errors import TrainingError

    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "method.use_vae=true")
    spec = describe_inputs(trainer.method, channels=3, palette=FACADES)
    assert spec.multimodal and not spec.style_image  # a converted official generator: z from the prior only
    with pytest.raises(TrainingError, match=r"needs the image encoder: add an \[encoder\] table"):
        trainer.fit()


def test_ids_the_model_has_no_class_for_are_a_data_error(registry, pm, tiny_facades, tmp_path):
    from translate_kit.errors import DataError

    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    trainer.close()
    ids = torch.full((1, 1, 32, 32), 40, dtype=torch.uint8)
    with pytest.raises(DataError, match="label_nc = 12 and no dont_care"):
        trainer.method.translate(to_unit_range(ids))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (['generator.use_vae=true'], "needs [method] use_vae = true"),
        (["method.lambda_fm=-1"], "loss weights >= 0"),
    ],
)
def test_settings_that_cannot_work_are_refused(registry, tiny_facades, tmp_path, overrides, message):
    from translate_kit.build import build_method
    from translate_kit.errors import TranslateKitError

    recipe = load_recipe(RECIPES / "spade_facades_cpu.toml", TINY + overrides, registry=registry)
    with pytest.raises((TranslateKitError, ValueError), match=message.replace("[", r"\[")):
        build_method(recipe, registry)


def test_tkit_translate_gives_seeded_samples_and_follows_a_style(registry, pm, tiny_facades, tmp_path):
    from torchvision.io import read_image as decode_png
    from torchvision.io import write_png
    from typer.testing import CliRunner

    from translate_kit.cli import make_app
    from translate_kit.train.checkpoint import checkpoint_paths, load_checkpoint

    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, *VAE)
    trainer.fit()
    # Two steps leave the output within a grey level of 0 whatever z is: amplify the last layer
    # so that the PNGs show how z moves it.
    [path] = checkpoint_paths(trainer.run_dir / "checkpoints")
    saved = load_checkpoint(path)
    saved["nets"]["G"]["conv_img.weight"] *= 300
    torch.save(saved, path)
    write_png(encode_palette(torch.randint(0, 12, (32, 32)), FACADES), str(tmp_path / "map.png"))
    write_png(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), str(tmp_path / "style.png"))

    def run(out, *options):
        result = CliRunner().invoke(make_app(), ["translate", str(trainer.run_dir), str(tmp_path / "map.png"), "--out",
                                                 str(tmp_path / out), "--device", "cpu", *options])
        assert result.exit_code == 0, result.output
        return [decode_png(str(p)) for p in sorted((tmp_path / out).glob("*.png"))]

    first, again = run("a", "--samples", "2", "--seed", "5"), run("b", "--samples", "2", "--seed", "5")
    assert len(first) == 2 and all(torch.equal(a, b) for a, b in zip(first, again)) and not torch.equal(*first)
    styled = run("c", "--samples", "2", "--seed", "5", "--style", str(tmp_path / "style.png"))
    assert len(styled) == 2 and not torch.equal(styled[0], first[0])


def test_tkit_serve_offers_a_spade_model_as_a_palette_to_paint_with_seeds_and_styles(registry, pm, tiny_facades,
                                                                                      tmp_path):
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    from starlette.testclient import TestClient
    from torchvision.io import decode_image, encode_png

    from translate_kit.serve.app import create_app
    from translate_kit.serve.models import load_models

    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, *VAE)
    trainer.fit()
    client = TestClient(create_app(load_models([trainer.run_dir], registry=registry, device="cpu")))
    [info] = client.get("/api/models").json()["models"]
    assert (info["input"], info["multimodal"], info["style_image"]) == ("label_map", True, True)
    assert info["palette"]["names"][2] == "window" and len(info["palette"]["colors"]) == 12
    painted = encode_png(encode_palette(torch.randint(0, 12, (32, 32)), FACADES)).numpy().tobytes()
    photo = encode_png(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)).numpy().tobytes()
    answer = client.post("/api/translate", data={"model": info["name"], "samples": "2", "seed": "3", "format": "json"},
                         files={"image": ("map.png", painted, "image/png"), "style": ("s.png", photo, "image/png")})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["images"]) == 2 and (answer.json()["width"], answer.json()["height"]) == (32, 32)
    single = client.post("/api/translate", data={"model": info["name"]},
                         files={"image": ("map.png", painted, "image/png")})
    assert single.status_code == 200
    assert decode_image(torch.frombuffer(bytearray(single.content), dtype=torch.uint8)).shape == (3, 32, 32)
