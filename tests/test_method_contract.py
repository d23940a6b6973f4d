"""The method contract holds families unlike pix2pix, each built entirely in this file, as a
third-party plugin would build it, with no change to the core:

- a toy x2 super-resolution method: its items carry one high-resolution image, which the method
  degrades on the device itself (`prepare_batch`), and its output is twice its input's size
  (`Upscaling`), so translation, tiling, evaluation and export must all follow the scale;
- a toy x2 method evaluated as super-resolution is: at the images' stored sizes (`load_size = 0`,
  batches of differing sizes as lists), scored on the luma with a shaved border
  (`eval_protocol`), with a grey original marked by its dataset, and an optional table
  (`Parts.has`) of a component kind of its own;
- a toy method that reads the palette `data.palette` names (`Parts.palette`);
- a toy method with two learning rates and Adam(0, 0.9) per optimiser group (`optimizer_defaults`,
  overridable by `[train.optimizers.<group>]`), an extra encoder network of a component kind of its
  own built from an `[encoder]` table (`tables=`, `Parts.component`), two translate networks, and
  an exponential moving average of both.

This module is the plugin: its marked factories are registered by handing the module itself to
the plugin manager.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from translate_kit.api import (
    BatchSpec,
    EvalProtocol,
    GANLossName,
    Method,
    OptimizerSettings,
    PairedJitter,
    Parts,
    StepContext,
    frozen,
    register,
    register_dataset,
    register_generator,
    register_method,
)
from translate_kit.errors import RecipeError
from translate_kit.registry import Registry
from translate_kit.testing import check_method, first_party_plugin_manager

# ------------------------------------------------------------------------------------------------
# A x2 super-resolution family


class Upsampler(nn.Module):
    """x2: nearest-neighbour upsampling plus a learned residual through a pixel shuffle."""

    scale = 2  # Upscaling: the output is twice the input's size
    size_multiple, min_size = 1, 1  # SizeConstrained: any size

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 4 * channels, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.interpolate(x, scale_factor=2, mode="nearest") + self.body(x))


@register_generator(tiny={"width": 4})
def toy_upsampler(*, in_channels: int = 3, out_channels: int = 3, width: int = 8) -> Upsampler:
    """A x2 upsampler (test family)."""
    if in_channels != out_channels:
        raise ValueError(f"Expected as many input as output channels, got {in_channels} and {out_channels}")
    return Upsampler(in_channels, width)


class ToySR(Method):
    """Learns to undo a 2x2 average pooling that it applies itself, on the device."""

    roles = {"G": "translate"}
    sample_mode = "eval"

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator})

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G"]}

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        # Only the high-resolution image is read; the input is made from it.
        high = PairedJitter(spec.crop_size, spec.flip, keys=("B",)).prepare({"B": batch["B"]}, spec)["B"]
        return {"A": F.avg_pool2d(high, 2), "B": high}

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        with ctx.autocast():
            loss = F.l1_loss(self.nets["G"](batch["A"]).float(), batch["B"])
        ctx.update("G", loss)
        return {"loss_G_L1": loss.detach()}


@register_method(tables={"generator": "generator"})
def toy_sr(parts: Parts, /) -> ToySR:
    """x2 super-resolution with an L1 loss (test family)."""
    return ToySR(parts.generator())


@register_method(tables={"generator": "generator"})
def toy_palette_sr(parts: Parts, /) -> ToySR:
    """x2 super-resolution that keeps the palette `data.palette` names (test family)."""
    method = ToySR(parts.generator())
    method.palette = parts.palette
    return method


class SizedImages(torch.utils.data.Dataset):
    """High-resolution images of two sizes; the second is marked as a grey original."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = [
            {"B": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8), "name": name, "grey": grey}
            for (h, w), name, grey in (((40, 36), "a", False), ((34, 46), "b", True))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


@register_dataset()
def toy_sized(*, root: str, split: str = "test") -> SizedImages:
    """Two images of different sizes (test family)."""
    return SizedImages()


@register("toy_blur")
def toy_box_blur() -> nn.Module:
    """A 3x3 box blur applied to the high-resolution images before pooling (test family)."""
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class ToyStoredSR(ToySR):
    """ToySR evaluated at stored sizes in luma, with an optional [blur] table."""

    def __init__(self, generator: nn.Module, blur: nn.Module | None) -> None:
        super().__init__(generator)
        self.blur = blur
        self.seen_lists = 0

    def eval_protocol(self) -> EvalProtocol:
        return EvalProtocol(resize=False, color="y", shave=2)

    def prepare_batch(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        if spec.crop_size is not None:
            return super().prepare_batch(batch, spec)
        images = batch["B"] if isinstance(batch["B"], list) else list(batch["B"])
        self.seen_lists += isinstance(batch["B"], list)
        high = torch.stack([x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2] for x in images]).float() / 127.5 - 1
        source = self.blur(high) if self.blur is not None else high
        return {"A": F.avg_pool2d(source, 2), "B": high, "name": batch["name"]}


@register_method(tables={"generator": "generator", "blur": "toy_blur"})
def toy_stored_sr(parts: Parts, /) -> ToyStoredSR:
    """x2 super-resolution evaluated at stored sizes (test family)."""
    return ToyStoredSR(parts.generator(), parts.component("blur") if parts.has("blur") else None)


class ToyWarmSR(ToySR):
    """ToySR whose fresh runs start from fixed weights (`warm_start`), counted."""

    calls = 0

    def warm_start(self) -> None:
        type(self).calls += 1
        with torch.no_grad():
            for p in self.nets["G"].parameters():
                p.fill_(0.01)


@register_method(tables={"generator": "generator"})
def toy_warm_sr(parts: Parts, /) -> ToyWarmSR:
    """x2 super-resolution started from fixed weights (test family)."""
    return ToyWarmSR(parts.generator())


# ------------------------------------------------------------------------------------------------
# Two learning rates and an encoder of a kind of its own


class StyleEncoder(nn.Module):
    def __init__(self, channels: int, style: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, style, 3, stride=2, padding=1), nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, style, 1, 1)


@register("encoder")
def toy_style_encoder(*, in_channels: int = 3, style: int = 4) -> StyleEncoder:
    """A global style code of an image (test family)."""
    return StyleEncoder(in_channels, style)


class StyledGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, style: int, width: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.style = nn.Conv2d(style, width, 1)
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(torch.relu(self.inp(x) + self.style(style))))


@register_generator()
def toy_styled_generator(*, in_channels: int = 3, out_channels: int = 3, style: int = 4, width: int = 8) -> StyledGenerator:
    """A generator modulated by a style code (test family)."""
    return StyledGenerator(in_channels, out_channels, style, width)


class ToyStyled(Method):
    roles = {"G": "translate", "E": "translate", "D": "adversary"}

    def __init__(self, generator: nn.Module, encoder: nn.Module, discriminator: nn.Module, gan_loss: nn.Module) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator, "E": encoder, "D": discriminator})
        self.gan_loss = gan_loss

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G", "E"], "D": ["D"]}

    def optimizer_defaults(self) -> dict[str, OptimizerSettings]:
        # SPADE's two time-scale rule: D learns four times faster; Adam without momentum.
        return {"G": OptimizerSettings(lr=1e-4, betas=(0.0, 0.9)), "D": OptimizerSettings(lr=4e-4, betas=(0.0, 0.9))}

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return self.nets["G"](x, self.nets["E"](x))  # the style of the input itself

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        G, E, D = self.nets["G"], self.nets["E"], self.nets["D"]
        with ctx.autocast():
            fake = G(batch["A"], E(batch["B"]))
            loss_d = self.gan_loss(D(batch["B"]), True) + self.gan_loss(D(fake.detach()), False)
        ctx.update("D", loss_d + self.gan_loss.penalty(D, batch["B"], fake.detach()))
        with frozen([D]), ctx.autocast():
            loss_g = self.gan_loss(D(fake), True, for_discriminator=False) + 10 * F.l1_loss(fake, batch["B"])
        ctx.update("G", loss_g)
        return {"loss_D": loss_d.detach(), "loss_G": loss_g.detach()}


@register_method(tables={"generator": "generator", "encoder": "encoder", "discriminator": "discriminator"})
def toy_styled(parts: Parts, /, *, gan_mode: GANLossName = "hinge") -> ToyStyled:
    """A style-encoder GAN with two learning rates (test family)."""
    return ToyStyled(parts.generator(), parts.component("encoder"),
                     parts.discriminator(in_channels=parts.out_channels), parts.loss(gan_mode))


# ------------------------------------------------------------------------------------------------
# Recipes and fixtures

SR_RECIPE = """
[data]
dataset = "aligned"
root = "{root}"
direction = "BtoA"

[method]
name = "toy_sr"

[generator]
name = "toy_upsampler"
"""

STYLED_RECIPE = """
[data]
dataset = "aligned"
root = "{root}"
direction = "BtoA"

[method]
name = "toy_styled"

[generator]
name = "toy_styled_generator"

[encoder]
name = "toy_style_encoder"

[discriminator]
name = "patchgan_16"
ndf = 8

[train]
ema_decay = 0.9

[train.optimizers.D]
lr = 3e-4
"""


@pytest.fixture(scope="module")
def toy_pm() -> Any:
    return first_party_plugin_manager(plugins=[sys.modules[__name__]])


@pytest.fixture(scope="module")
def toy_registry(toy_pm: Any) -> Registry:
    return Registry.from_plugin_manager(toy_pm)


def write_recipe(tmp_path: Path, text: str, root: Path) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text.format(root=root.as_posix()), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# Super-resolution


def test_super_resolution_trains_resumes_translates_tiles_evaluates_and_exports(toy_pm, toy_registry, tiny_facades,
                                                                                 tmp_path):
    from translate_kit.eval.evaluate import EvalOptions, eval_dataset, evaluate
    from translate_kit.export import export_model
    from translate_kit.inference import Translator

    recipe = write_recipe(tmp_path, SR_RECIPE, tiny_facades)
    check_method(recipe, toy_registry, toy_pm, data_root=tiny_facades, tmp_path=tmp_path)  # train, resume, 2x
    run = tmp_path / "straight" / "run"
    translator = Translator.from_checkpoint(run, device="cpu", registry=toy_registry)
    assert translator.geometry.scale == 2
    image = torch.randint(0, 256, (3, 37, 45), dtype=torch.uint8)
    whole = translator(image)
    assert whole.shape == (3, 74, 90)

    # Tiles of 24 input pixels overlapping by 12: the blend reaches 3 input pixels into each tile
    # side, beyond the 2-pixel receptive field, so tiles give the untiled result.
    tiled = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, tile=24, overlap=12)(image)
    assert tiled.shape == (3, 74, 90)
    assert (tiled.int() - whole.int()).abs().max() <= 1  # float rounding of the blend

    # Evaluation compares the 2x outputs with the high-resolution targets the method made.
    dataset = eval_dataset(translator.recipe, toy_registry, "test")
    report = evaluate(translator, dataset, options=EvalOptions(split="test", batch_size=2), out_dir=None,
                      checkpoint=str(run))
    assert report.images == 1 and math.isfinite(report.pixel["psnr"])

    written = export_model(run, tmp_path / "sr.safetensors", registry=toy_registry)
    description = json.loads(written[1].read_text())
    assert description["output"]["scale"] == 2 and description["nets"] == ["G"]
    exported = Translator.from_checkpoint(written[0], device="cpu", registry=toy_registry)
    assert torch.equal(exported(image), whole)


def test_evaluation_at_stored_sizes_in_luma_with_grey_originals(toy_registry, tmp_path):
    from translate_kit.data.jitter import from_unit_range
    from translate_kit.eval.evaluate import EvalOptions, eval_dataset, evaluate
    from translate_kit.eval.metrics import rgb_to_y
    from translate_kit.inference import Translator

    reports, translators = {}, {}
    for blur in (False, True):
        text = SR_RECIPE.replace('dataset = "aligned"', 'dataset = "toy_sized"').replace('direction = "BtoA"', "")
        text = text.replace('name = "toy_sr"', 'name = "toy_stored_sr"')
        text += '[blur]\nname = "toy_box_blur"\n' if blur else ""
        recipe = write_recipe(tmp_path, text.replace("[data]", "[data]\nload_size = 0"), tmp_path)
        translator = translators[blur] = Translator.from_recipe(recipe, registry=toy_registry, device="cpu")
        assert (translator.method.blur is not None) == blur  # Parts.has
        dataset = eval_dataset(translator.recipe, toy_registry, "test", resize=False)
        reports[blur] = evaluate(translator, dataset, options=EvalOptions(split="test", batch_size=2), out_dir=None,
                                 checkpoint="untrained")
    report, translator = reports[False], translators[False]
    assert report.protocol == {"resize": False, "color": "y", "shave": 2, "grey": ["b"]}
    assert translator.method.seen_lists == 0  # stored sizes are evaluated one image at a time
    # Each image's PSNR: Y of the output against Y of the target, 2 pixels shaved; "b" on its raw channel.
    spec = BatchSpec(torch.device("cpu"), None, flip=False, train=False)
    for row, item in zip(report.per_image, SizedImages().items):
        prepared = translator.method.prepare_batch({"B": [item["B"]], "name": [item["name"]]}, spec)
        high = from_unit_range(prepared["B"])[0]
        out = translator(from_unit_range(prepared["A"])[0])
        grey = torch.tensor([item["grey"]])
        y_out = rgb_to_y(out[None].double() / 255, grey=grey)[..., 2:-2, 2:-2]
        y_ref = rgb_to_y(high[None].double() / 255, grey=grey)[..., 2:-2, 2:-2]
        assert out.shape == high.shape and row["name"] == item["name"]
        assert row["psnr"] == pytest.approx(-10 * math.log10((y_out - y_ref).square().mean().item()), abs=1e-9)
    assert reports[True].pixel["psnr"] != report.pixel["psnr"]  # the optional table was used


def test_parts_give_the_palette_data_palette_names(toy_registry, tiny_facades, tmp_path):
    from translate_kit.build import build_method
    from translate_kit.recipe import load_recipe

    path = write_recipe(tmp_path, SR_RECIPE, tiny_facades)
    named = load_recipe(path, ['method.name="toy_palette_sr"', 'data.palette="facades"'], registry=toy_registry)
    assert build_method(named, toy_registry).palette.names[2] == "window"
    unnamed = load_recipe(path, ['method.name="toy_palette_sr"'], registry=toy_registry)
    assert build_method(unnamed, toy_registry).palette is None


def test_warm_start_runs_once_when_a_run_starts_fresh(toy_pm, toy_registry, tiny_facades, tmp_path):
    """Before the optimisers and the moving average are made; not on a resume, not for inference."""
    from translate_kit.inference import Translator
    from translate_kit.recipe import load_recipe
    from translate_kit.testing import tiny_recipe
    from translate_kit.train.trainer import Trainer

    text = SR_RECIPE.replace('name = "toy_sr"', 'name = "toy_warm_sr"') + "[train]\nema_decay = 0.5\n"
    recipe = tiny_recipe(write_recipe(tmp_path, text, tiny_facades), toy_registry, data_root=tiny_facades,
                         run_dir=tmp_path, steps=1)
    ToyWarmSR.calls = 0
    trainer = Trainer(recipe, registry=toy_registry, pm=toy_pm, device="cpu")
    assert ToyWarmSR.calls == 1
    assert all(bool((p == 0.01).all()) for p in trainer.method.nets["G"].parameters())
    assert all(bool((p == 0.01).all()) for p in trainer.ema.state_dict()["G"].values() if p.is_floating_point())
    trainer.fit()
    resumed = load_recipe(recipe.to_dict(), ["train.max_steps=2"], registry=toy_registry)
    Trainer(resumed, registry=toy_registry, pm=toy_pm, device="cpu", run_dir=trainer.run_dir, resume=True).fit()
    Translator.from_checkpoint(trainer.run_dir, device="cpu", registry=toy_registry)
    assert ToyWarmSR.calls == 1


def test_super_resolution_onnx_export_takes_any_size(toy_pm, toy_registry, tiny_facades, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from translate_kit.export import export_model
    from translate_kit.inference import Translator
    from translate_kit.testing import tiny_recipe
    from translate_kit.train.trainer import Trainer

    recipe = tiny_recipe(write_recipe(tmp_path, SR_RECIPE, tiny_facades), toy_registry, data_root=tiny_facades,
                         run_dir=tmp_path, steps=1)
    Trainer(recipe, registry=toy_registry, pm=toy_pm, device="cpu").fit()
    run = tmp_path / "run"
    onnx_file = export_model(run, tmp_path / "sr.onnx", fmt="onnx", registry=toy_registry)[0]
    session = ort.InferenceSession(str(onnx_file))
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    (y,) = session.run(None, {"images": x.numpy()})
    assert y.shape == (1, 3, 40, 56)
    expected = Translator.from_checkpoint(run, device="cpu", registry=toy_registry).method.translate(x)
    torch.testing.assert_close(torch.from_numpy(y), expected.detach(), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Two learning rates, an encoder, EMA


def test_groups_get_their_own_settings_from_method_and_recipe(toy_pm, toy_registry, tiny_facades, tmp_path):
    from translate_kit.recipe import load_recipe
    from translate_kit.testing import tiny_recipe
    from translate_kit.train.trainer import Trainer

    recipe = tiny_recipe(write_recipe(tmp_path, STYLED_RECIPE, tiny_facades), toy_registry, data_root=tiny_facades,
                         run_dir=tmp_path, overrides=["train.optimizers.G.weight_decay=0.01"])
    trainer = Trainer(recipe, registry=toy_registry, pm=toy_pm, device="cpu")
    g, d = trainer.optimizers["G"].param_groups[0], trainer.optimizers["D"].param_groups[0]
    assert (g["lr"], g["betas"], g["weight_decay"]) == (1e-4, (0.0, 0.9), 0.01)  # method defaults + --set
    assert (d["lr"], d["betas"], d["weight_decay"]) == (3e-4, (0.0, 0.9), 0.0)  # the recipe's lr wins
    assert {id(p) for p in trainer.optimizers["G"].param_groups[0]["params"]} == {
        id(p) for n in ("G", "E") for p in trainer.method.nets[n].parameters()}
    assert isinstance(trainer.method.nets["E"], StyleEncoder)  # built from [encoder], a kind of its own
    assert toy_registry.get("encoder", "toy_style_encoder").plugin == __name__

    text = recipe.to_toml()
    assert "optimizers = {D = {lr = 0.0003}, G = {weight_decay = 0.01}}" in text
    assert load_recipe(recipe.to_dict(), registry=toy_registry).train.optimizers == recipe.train.optimizers


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.optimizers.E.lr=1e-3"], r"\[train.optimizers.E\] names no optimiser group of method 'toy_styled'; "
                                         r"its groups are G, D"),
        (["train.optimizers.D.lrr=1e-3"], r"unknown key 'lrr'. Did you mean 'lr'\?"),
        (["train.optimizers.D.lr=-1"], r"expected lr > 0"),
        (["encoder.styel=3"], r"\[encoder\]: unknown key 'styel' for encoder 'toy_style_encoder'. Did you mean 'style'\?"),
        (["encoderr.name=toy_style_encoder"], r"\[encoderr\]: unknown table. Did you mean 'encoder'\?"),
        (["method.gan_mode=l1"], r"loss 'l1' is not an adversarial loss"),
    ],
)
def test_contract_mistakes_are_recipe_errors(toy_pm, toy_registry, tiny_facades, tmp_path, overrides, expected):
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    path = write_recipe(tmp_path, STYLED_RECIPE, tiny_facades)
    with pytest.raises(RecipeError, match=expected):
        recipe = load_recipe(path, overrides, registry=toy_registry)
        Trainer(recipe, registry=toy_registry, pm=toy_pm, device="cpu", run_dir=tmp_path / "run")


def test_styled_method_trains_resumes_and_averages(toy_pm, toy_registry, tiny_facades, tmp_path):
    from translate_kit.export import export_model
    from translate_kit.inference import Translator
    from translate_kit.train.checkpoint import newest_checkpoint

    recipe = write_recipe(tmp_path, STYLED_RECIPE, tiny_facades)
    check_method(recipe, toy_registry, toy_pm, data_root=tiny_facades, tmp_path=tmp_path)  # resume exact, EMA too
    run = tmp_path / "straight" / "run"
    _, ckpt = newest_checkpoint(run / "checkpoints")
    assert set(ckpt["ema"]) == {"G", "E"}  # the translate networks, not D
    assert any(not torch.equal(ckpt["ema"]["G"][k], v) for k, v in ckpt["nets"]["G"].items())

    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    averaged = Translator.from_checkpoint(run, device="cpu", registry=toy_registry)
    trained = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, use_ema=False)
    assert averaged.averaged and not trained.averaged
    assert not torch.equal(averaged(image), trained(image))

    written = export_model(run, tmp_path / "styled.safetensors", registry=toy_registry)
    description = json.loads(written[1].read_text())
    assert description["nets"] == ["G", "E"] and description["averaged_weights"] is True
    assert torch.equal(Translator.from_checkpoint(written[0], device="cpu", registry=toy_registry)(image),
                       averaged(image))


class ToyProjected(Method):
    """A method that projects its one weight into [-0.1, 0.1] after each update of group "W"."""

    def __init__(self) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"W": nn.Linear(1, 1, bias=False)})
        self.roles = {"W": "translate"}
        self.calls: list[tuple[str, float]] = []

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"W": ["W"]}

    def after_update(self, group: str) -> None:
        self.calls.append((group, self.nets["W"].weight.item()))  # what the optimiser step left
        with torch.no_grad():
            self.nets["W"].weight.clamp_(-0.1, 0.1)

    def training_step(self, batch, ctx):  # noqa: ANN001, ANN201
        loss = (self.nets["W"](batch["x"]) * batch["scale"]).sum()
        ctx.update("W", loss)
        return {"loss": loss.detach()}


def test_after_update_follows_every_optimiser_step_and_every_skip():
    """`Method.after_update(group)` runs right after the group's step (the step's own result is what
    it sees), before the step returns, and after a skipped (non-finite) update too."""
    from translate_kit.train.step import StepRunner

    method = ToyProjected()
    with torch.no_grad():
        method.nets["W"].weight.fill_(0.05)
    optimizers = {"W": torch.optim.SGD(method.nets["W"].parameters(), lr=1.0)}
    runner = StepRunner(method, optimizers, device=torch.device("cpu"), autocast_dtype=None, scaler=None)
    x = torch.ones(1, 1)
    runner({"x": x, "scale": torch.tensor(-1.0)}, step=0, epoch=0)  # gradient -1: SGD moves 0.05 to 1.05
    assert method.calls == [("W", pytest.approx(1.05))] and method.nets["W"].weight.item() == pytest.approx(0.1)
    result = runner({"x": x, "scale": torch.tensor(float("nan"))}, step=1, epoch=0)
    assert result.skipped == ("W",) and method.calls[-1] == ("W", pytest.approx(0.1))
