"""One input, many outputs: samples of a multimodal method, a style image and named inference
options (`InferenceOption`, `Configurable`), through the `Translator`, files and `tkit translate`,
with a toy family written here as a plugin would write it."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import quick_overrides
from torch import nn
from torchvision.io import read_image as decode_png
from torchvision.io import write_png
from typer.testing import CliRunner

from translate_kit.api import (
    InferenceOption,
    InputSpec,
    Method,
    Parts,
    StepContext,
    register_generator,
    register_method,
)
from translate_kit.build import build_method
from translate_kit.cli import make_app
from translate_kit.cli.common import Session
from translate_kit.errors import InferenceError, PluginError
from translate_kit.inference import Translator, parse_options, translate_files
from translate_kit.method import describe_inputs
from translate_kit.recipe import load_recipe
from translate_kit.registry import Registry
from translate_kit.testing import first_party_plugin_manager
from translate_kit.train.trainer import Trainer

# ------------------------------------------------------------------------------------------------
# A toy family: a latent shift per image (multimodal), a style image's mean, two named options


@register_generator()
def toy_sampler_net(*, in_channels: int = 3, out_channels: int = 3) -> nn.Conv2d:
    """A 1x1 convolution (test family)."""
    return nn.Conv2d(in_channels, out_channels, 1)


OPTIONS = {
    "strength": InferenceOption("scale of the latent shift; 0 makes the output deterministic", type=float, default=1.0),
    "channel": InferenceOption("the channel the shift goes to, or all", choices=("all", "red", "green", "blue"),
                               default="all"),
}


class ToySampler(Method):
    """tanh(G(x) + strength * z + style mean), z ~ N(0, 1) per image, on one channel or all."""

    roles = {"G": "translate"}
    sample_mode = "eval"

    def __init__(self, generator: nn.Module, *, strength: float = 1.0, channel: str = "all",
                 style: torch.Tensor | None = None) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": generator})
        self.strength, self.channel, self.style = strength, channel, style

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G"]}

    def training_step(self, batch: Mapping[str, Any], ctx: StepContext) -> dict[str, torch.Tensor]:
        with ctx.autocast():
            loss = F.l1_loss(self.nets["G"](batch["A"]).float(), batch["B"])
        ctx.update("G", loss)
        return {"loss_G_L1": loss.detach()}

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.randn(x.shape[0], 1, 1, 1, device=x.device) * self.strength
        if self.channel != "all":
            mask = torch.zeros(1, x.shape[1], 1, 1, device=x.device)
            mask[:, ("red", "green", "blue").index(self.channel)] = 1
            z = z * mask
        shift = 0.0 if self.style is None else float(self.style.mean())
        return torch.tanh(self.nets["G"](x) + z + shift)

    def input_spec(self, default: InputSpec) -> InputSpec:
        return dataclasses.replace(default, multimodal=self.strength > 0, style_image=True, options=OPTIONS)

    def with_options(self, **values: Any) -> ToySampler:
        if values.get("strength", 0.0) < 0:
            raise ValueError(f"expected strength >= 0, got {values['strength']}")
        settings = {"strength": self.strength, "channel": self.channel, **values}
        return ToySampler(self.nets["G"], style=self.style, **settings)

    def with_style(self, style: torch.Tensor) -> ToySampler:
        return ToySampler(self.nets["G"], strength=self.strength, channel=self.channel, style=style)


@register_method(tables={"generator": "generator"})
def toy_sampler(parts: Parts, /) -> ToySampler:
    """A multimodal toy with a style image and two inference options (test family)."""
    return ToySampler(parts.generator())


class ClaimsOptions(Method):
    """Declares options but cannot bind them (no with_options)."""

    roles = {"G": "translate"}

    def __init__(self) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": nn.Conv2d(3, 3, 1)})

    def input_spec(self, default: InputSpec) -> InputSpec:
        return dataclasses.replace(default, options=OPTIONS)


TOY_RECIPE = {"data": {"dataset": "aligned", "root": "unused", "direction": "BtoA"},
              "method": {"name": "toy_sampler"}, "generator": {"name": "toy_sampler_net"}}


@pytest.fixture(scope="module")
def toy_registry() -> Registry:
    return Registry.from_plugin_manager(first_party_plugin_manager(plugins=[sys.modules[__name__]]))


@pytest.fixture(scope="module")
def run(toy_registry, tiny_facades, tmp_path_factory) -> Path:
    """The toy trained one step: a run folder with a checkpoint."""
    out = tmp_path_factory.mktemp("sampler_runs")
    recipe = load_recipe(TOY_RECIPE, [*quick_overrides(tiny_facades, out, steps=1), 'run.name="toy"'],
                         registry=toy_registry)
    trainer = Trainer(recipe, registry=toy_registry, pm=first_party_plugin_manager(), device="cpu")
    trainer.fit()
    return trainer.run_dir


@pytest.fixture()
def translator(run, toy_registry) -> Translator:
    return Translator.from_checkpoint(run, device="cpu", registry=toy_registry, seed=5)


def images(count: int, size: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (3, size, size + 4 * i), generator=g, dtype=torch.uint8) for i in range(count)]


# ------------------------------------------------------------------------------------------------
# The contract: options declared, parsed and checked


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        (InferenceOption("n", type=int), "3", 3),
        (InferenceOption("x", type=float), "0.25", 0.25),
        (InferenceOption("x", type=float), 2, 2.0),
        (InferenceOption("b", type=bool), "yes", True),
        (InferenceOption("b", type=bool), "off", False),
        (InferenceOption("s", choices=("a", "b")), "b", "b"),
        (InferenceOption("s"), "window:3,door:1", "window:3,door:1"),
    ],
)
def test_an_option_parses_text_and_typed_values(option, text, expected):
    value = option.parse(text, name="o")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (InferenceOption("n", type=int), "three", "o=three: expected an int, got 'three'"),
        (InferenceOption("n", type=int), "2.5", "expected an int"),
        (InferenceOption("n", type=int), True, "o=True: expected int, got bool"),
        (InferenceOption("b", type=bool), "maybe", "o=maybe: expected a bool"),
        (InferenceOption("s", choices=("a", "b")), "c", "o=c: expected one of a, b"),
    ],
)
def test_an_option_refuses_what_it_does_not_take(option, value, message):
    with pytest.raises(ValueError, match=message):
        option.parse(value, name="o")


def test_options_are_declared_soundly():
    with pytest.raises(ValueError, match="choices only for a str option"):
        InferenceOption("n", type=int, choices=("1",))
    with pytest.raises(ValueError, match="type int, float, str or bool"):
        InferenceOption("n", type=list)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default=c: expected one of a, b"):
        InferenceOption("s", choices=("a", "b"), default="c")
    with pytest.raises(ValueError, match="identifier -> InferenceOption"):
        InputSpec(options={"feature-cluster": InferenceOption("n", type=int)})
    with pytest.raises(ValueError, match="identifier -> InferenceOption"):
        InputSpec(options={"n": "an int"})  # type: ignore[dict-item]
    assert InferenceOption("how strong", type=float, default=1.0).describe() == "float, default 1.0: how strong"
    assert hash(InputSpec(options=OPTIONS)) == hash(InputSpec())  # options do not enter the hash


def test_a_method_declaring_options_must_bind_them(toy_registry):
    method = build_method(load_recipe(TOY_RECIPE, registry=toy_registry), toy_registry)
    assert describe_inputs(method, channels=3).options == OPTIONS
    with pytest.raises(PluginError, match=r"declares options \(strength, channel\), but ClaimsOptions has no "
                                          r"with_options\(\*\*values\)"):
        describe_inputs(ClaimsOptions(), channels=3)


def test_unknown_options_and_bad_values_are_one_paragraph_errors():
    spec = InputSpec(options=OPTIONS)
    assert parse_options(spec, {"strength": "0.5", "channel": "red"}) == {"strength": 0.5, "channel": "red"}
    with pytest.raises(InferenceError, match=(
            r"This model has no option 'strenght'. Did you mean 'strength'\? Its options: strength \(float, default "
            r"1.0: .*\); channel \(one of all, red, green, blue, default all: .*\).")):
        parse_options(spec, {"strenght": "1"})
    with pytest.raises(InferenceError, match=r"Option strength=lots: expected a float, got 'lots' \(strength: float"):
        parse_options(spec, {"strength": "lots"})
    with pytest.raises(InferenceError, match="This model takes no options, so strength=1 cannot be used"):
        parse_options(InputSpec(), {"strength": "1"})


# ------------------------------------------------------------------------------------------------
# The Translator: samples, options, a style image


def test_samples_differ_repeat_and_leave_the_callers_random_state(translator):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    drawn = translator.translate_samples(images(2), samples=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert [len(outputs) for outputs in drawn] == [3, 3]
    assert all(not torch.equal(a, b) for outputs in drawn for a, b in zip(outputs, outputs[1:]))
    again = translator.translate_samples(images(2), samples=3)
    assert all(torch.equal(a, b) for x, y in zip(drawn, again) for a, b in zip(x, y))


def test_sample_i_is_seed_plus_i_whatever_the_batch_or_the_other_images(run, toy_registry, translator):
    x = images(3, size=16)
    same_size = [x[0], x[0].flip(-1), x[0].flip(-2)]
    drawn = translator.translate_samples(same_size, samples=2)
    batched = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, seed=5, batch_size=3)
    assert all(torch.equal(a, b) for x1, y1 in zip(drawn, batched.translate_samples(same_size, samples=2))
               for a, b in zip(x1, y1))
    for i in range(2):  # sample i of an image alone is sample i of it among others, drawn with seed 5 + i
        alone = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, seed=5 + i)
        assert torch.equal(alone(same_size[1]), drawn[1][i])


def test_tiles_of_a_multimodal_image_share_one_draw(run, toy_registry):
    """Every tile is drawn from the sample's seed, so a 1x1 network tiled equals it untiled."""
    whole = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, seed=2)
    tiled = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, seed=2, tile=16, overlap=8)
    x = images(1, size=40)
    assert all(torch.equal(a, b) for a, b in zip(whole.translate_samples(x, 2)[0], tiled.translate_samples(x, 2)[0]))


def test_samples_of_a_model_that_is_not_multimodal_are_refused(translator):
    deterministic = translator.bind(options={"strength": "0"})
    assert not deterministic.spec.multimodal
    with pytest.raises(InferenceError, match=r"The model \(ToySampler\) is not multimodal: it gives one output per "
                                             "input, so 2 samples would be 2 copies. Ask for 1 sample"):
        deterministic.translate_samples(images(1), samples=2)
    with pytest.raises(InferenceError, match="Expected samples >= 1, got 0"):
        translator.translate_samples(images(1), samples=0)


def test_bound_options_change_the_output_and_share_the_networks(translator):
    x = images(1)
    plain = translator.translate_samples(x, 1)[0][0]
    red = translator.bind(options={"channel": "red"})
    assert red.method.nets["G"] is translator.method.nets["G"] and red.method.channel == "red"
    assert translator.method.channel == "all"  # the original is untouched
    out = red.translate_samples(x, 1)[0][0]
    assert not torch.equal(out, plain) and torch.equal(out[1:], red.bind(options={"strength": 0.0})(x[0])[1:])
    with pytest.raises(InferenceError, match="--option strength=-1: expected strength >= 0, got -1.0"):
        translator.bind(options={"strength": "-1"})


def test_a_style_image_is_converted_and_bound(translator):
    x = images(1)[0]
    bright = translator.bind(style=torch.full((1, 9, 7), 255, dtype=torch.uint8))  # gray, any size
    assert bright.method.style.shape == (1, 3, 9, 7) and bright.method.style.min() == 1.0
    assert not torch.equal(bright(x), translator(x))
    with pytest.raises(Exception, match="The style image has 2 channel"):
        translator.bind(style=torch.zeros(2, 4, 4, dtype=torch.uint8))


def test_a_style_image_for_a_model_without_one_is_refused(translator):
    plain = dataclasses.replace(translator.spec, style_image=False)
    translator.spec = plain
    with pytest.raises(InferenceError, match=r"The model \(ToySampler\) takes no style image; translate without "
                                             "--style"):
        translator.bind(style=torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_files_get_one_png_per_sample(translator, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, image in zip(("a", "b"), images(2)):
        write_png(image, str(folder / f"{name}.png"))
    write_png(images(1)[0], str(folder / "a_1.png"))  # a stem that a sample name could take
    written = translate_files(translator, [folder], tmp_path / "out", samples=2)
    assert [p.name for p in written] == ["a_0.png", "a_1.png", "a_1_0.png", "a_1_1.png", "b_0.png", "b_1.png"]
    drawn = translator.translate_samples([decode_png(str(folder / "b.png"))], 2)[0]
    assert all(torch.equal(decode_png(str(tmp_path / "out" / f"b_{i}.png")), drawn[i]) for i in range(2))
    with pytest.raises(InferenceError, match="not multimodal"):
        translate_files(translator.bind(options={"strength": "0"}), [folder], tmp_path / "none", samples=2)
    assert not (tmp_path / "none").exists()


# ------------------------------------------------------------------------------------------------
# tkit translate


@pytest.fixture()
def invoke(monkeypatch):
    def run(registry: Registry, *args: Any):
        # The command's registry holds the toy family, as --plugins-dir would.
        monkeypatch.setattr(Session, "registry", property(lambda self: registry))
        result = CliRunner().invoke(make_app(), [str(a) for a in args])
        return result, " ".join(result.output.split())

    return run


def test_cli_samples_style_and_options(invoke, run, toy_registry, tmp_path):
    source = tmp_path / "in.png"
    write_png(images(1, size=20)[0], str(source))
    style = tmp_path / "style.png"
    write_png(torch.full((3, 8, 8), 200, dtype=torch.uint8), str(style))
    result, output = invoke(toy_registry, "translate", run, source, "-o", tmp_path / "out", "--samples", 3,
                            "--seed", 4, "--style", style, "--option", "channel=green", "--option", "strength=2")
    assert result.exit_code == 0, output
    assert "3 samples each (seed 4 + i)" in output and "Wrote 3 image(s)" in output
    expected = Translator.from_checkpoint(run, device="cpu", registry=toy_registry, seed=4).bind(
        style=decode_png(str(style)), options={"channel": "green", "strength": 2.0})
    drawn = expected.translate_samples([decode_png(str(source))], 3)[0]
    assert all(torch.equal(decode_png(str(tmp_path / "out" / f"in_{i}.png")), drawn[i]) for i in range(3))
    # Without --seed a multimodal model starts at 0, so a run repeats.
    result, output = invoke(toy_registry, "translate", run, source, "-o", tmp_path / "again", "--samples", 2)
    assert result.exit_code == 0 and "(seed 0 + i)" in output, output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--option", "strenght=2"], "Error: The model (ToySampler) has no option 'strenght'. Did you mean "
                                     "'strength'? Its options: strength (float, default 1.0:"),
        (["--option", "channel=purple"], "Error: Option channel=purple: expected one of all, red, green, blue"),
        (["--option", "strength"], "Error: --option 'strength': expected NAME=VALUE, e.g. --option "
                                   "feature_cluster=3; --list-options shows what the model takes."),
        (["--option", "strength=1", "--option", "strength=2"], "--option strength is given twice"),
        (["--option", "strength=0", "--samples", "2"], "Error: The model (ToySampler) is not multimodal"),
    ],
)
def test_cli_bad_options_are_one_paragraph_errors(invoke, run, toy_registry, tmp_path, args, message):
    source = tmp_path / "in.png"
    write_png(images(1)[0], str(source))
    result, output = invoke(toy_registry, "translate", run, source, "-o", tmp_path / "out", *args)
    assert result.exit_code == 1 and message in output, output
    assert isinstance(result.exception, SystemExit) and not (tmp_path / "out").exists()


def test_cli_lists_a_models_options(invoke, run, toy_registry):
    result, output = invoke(toy_registry, "translate", run, "--list-options")
    assert result.exit_code == 0, output
    assert "method ToySampler: multimodal: --samples N draws N outputs per input; takes --style IMAGE." in output
    assert "strength float, default 1.0: scale of the latent shift" in output
    assert "channel one of all, red, green, blue, default all: the channel" in output


def test_cli_refuses_samples_style_and_options_a_pix2pix_model_does_not_take(invoke, registry, tiny_facades,
                                                                            tmp_path):
    from conftest import RECIPES

    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", quick_overrides(tiny_facades, tmp_path, steps=1) + [
        "generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"], registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=first_party_plugin_manager(), device="cpu")
    trainer.fit()
    source = next(tiny_facades.glob("train/*.*"))
    for args, message in [
        (["--samples", "2"], "Error: The model (Pix2Pix) is not multimodal"),
        (["--style", source], "Error: The model (Pix2Pix) takes no style image; translate without --style"),
        (["--option", "feature_cluster=1"], "Error: The model (Pix2Pix) takes no options, so feature_cluster=1 "
                                            "cannot be used"),
    ]:
        result, output = invoke(registry, "translate", trainer.run_dir, source, "-o", tmp_path / "out", *args)
        assert result.exit_code == 1 and message in output, output
    result, output = invoke(registry, "translate", trainer.run_dir, "--list-options")
    assert "one output per input; no --style IMAGE. No --option NAME=VALUE." in output, output
    result, output = invoke(registry, "translate", trainer.run_dir, source)
    assert result.exit_code == 1 and "Missing --out FOLDER" in output, output
