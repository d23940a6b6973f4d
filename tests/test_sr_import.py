"""`tkit convert` for official super-resolution weights (plugins/sr_import.py) and the "weight_format"
extension point it plugs into (plugins/reference_import.py).

The official code is not imported. The `Official*` modules below re-implement each official layout
independently, from its description (module docstring of sr_import): the module nesting that gives
the official state-dict keys, and the forward pass on images in [0, 1]. Each is tiny (nf 8, 2
blocks, growth 4), randomly initialised, saved as the official code saves it, converted with the
command, and the converted model must compute the same function on translate-kit's [-1, 1] images:
2 f((x + 1) / 2) - 1.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.reference_import import (
    ImportedWeights,
    import_weights,
    recognise_weights,
    save_conversion,
)
from translate_kit_plugins.sr_import import basicsr, esrgan
from typer.testing import CliRunner

from translate_kit.errors import CheckpointError, PluginError
from translate_kit.registry import Registry, register

NF, BLOCKS, GROWTH = 8, 2, 4
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}  # float32, the same operations in the same order


def conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, 1, 1)


# ------------------------------------------------------------------------------------------------
# ESRGAN's original layout (architecture.py): conv blocks are Sequentials (conv, LeakyReLU) or
# (conv,) inside the dense blocks; the RRDBs and the trunk conv sit in a shortcut block's `sub`;
# the outer Sequential is flat: conv, shortcut, (upsample, conv, lrelu) per stage, conv, lrelu, conv.


class OriginalDenseBlock(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        for j in range(1, 5):
            setattr(self, f"conv{j}", nn.Sequential(conv3(nf + (j - 1) * gc, gc), nn.LeakyReLU(0.2, True)))
        self.conv5 = nn.Sequential(conv3(nf + 4 * gc, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for j in range(1, 5):
            features.append(getattr(self, f"conv{j}")(torch.cat(features, 1)))
        return self.conv5(torch.cat(features, 1)).mul(0.2) + x


class OriginalRRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = (OriginalDenseBlock(nf, gc) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))).mul(0.2) + x


class Shortcut(nn.Module):
    def __init__(self, sub: nn.Module) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class OfficialESRGANOriginal(nn.Module):
    def __init__(self, c: int = 3, nf: int = NF, nb: int = BLOCKS, gc: int = GROWTH, stages: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv3(c, nf), Shortcut(nn.Sequential(*(OriginalRRDB(nf, gc) for _ in range(nb)),
                                                                         conv3(nf, nf)))]
        for _ in range(stages):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv3(nf, nf), nn.LeakyReLU(0.2, True)]
        layers += [conv3(nf, nf), nn.LeakyReLU(0.2, True), conv3(nf, c)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


# ------------------------------------------------------------------------------------------------
# Flat RRDBNets: ESRGAN's later RRDBNet_arch.py and BasicSR / Real-ESRGAN (plain convolutions,
# one LeakyReLU; only the names differ), the latter pixel-unshuffling its input at x2 and x1.


class FlatDenseBlock(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        for j in range(1, 5):
            setattr(self, f"conv{j}", conv3(nf + (j - 1) * gc, gc))
        self.conv5 = conv3(nf + 4 * gc, nf)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for j in range(1, 5):
            features.append(self.lrelu(getattr(self, f"conv{j}")(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class FlatRRDB(nn.Module):
    def __init__(self, nf: int, gc: int, names: tuple[str, str, str]) -> None:
        super().__init__()
        self.names = names
        for name in names:
            setattr(self, name, FlatDenseBlock(nf, gc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.names:
            out = getattr(self, name)(out)
        return out * 0.2 + x


def flat_trunk(nf: int, gc: int, nb: int, names: tuple[str, str, str]) -> nn.Sequential:
    return nn.Sequential(*(FlatRRDB(nf, gc, names) for _ in range(nb)))


class OfficialESRGANRenamed(nn.Module):
    def __init__(self, c: int = 3, nf: int = NF, nb: int = BLOCKS, gc: int = GROWTH) -> None:
        super().__init__()
        self.conv_first = conv3(c, nf)
        self.RRDB_trunk = flat_trunk(nf, gc, nb, ("RDB1", "RDB2", "RDB3"))
        self.trunk_conv = conv3(nf, nf)
        self.upconv1, self.upconv2, self.HRconv = conv3(nf, nf), conv3(nf, nf), conv3(nf, nf)
        self.conv_last = conv3(nf, c)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.trunk_conv(self.RRDB_trunk(feat))
        feat = self.lrelu(self.upconv1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.upconv2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.HRconv(feat)))


def unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """BasicSR's pixel_unshuffle, written out: channel c, row offset i, column offset j -> c r^2 + i r + j."""
    b, c, h, w = x.shape
    return x.view(b, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4).reshape(b, c * r * r, h // r, w // r)


class OfficialBasicSRRRDBNet(nn.Module):
    def __init__(self, c: int = 3, nf: int = NF, nb: int = BLOCKS, gc: int = GROWTH, scale: int = 4) -> None:
        super().__init__()
        self.r = 4 // scale
        self.conv_first = conv3(c * self.r * self.r, nf)
        self.body = flat_trunk(nf, gc, nb, ("rdb1", "rdb2", "rdb3"))
        self.conv_body = conv3(nf, nf)
        self.conv_up1, self.conv_up2, self.conv_hr = conv3(nf, nf), conv3(nf, nf), conv3(nf, nf)
        self.conv_last = conv3(nf, c)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(unshuffle(x, self.r) if self.r > 1 else x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


# ------------------------------------------------------------------------------------------------
# BasicSR's MSRResNet: residual blocks conv-ReLU-conv, LeakyReLU(0.1) elsewhere, pixel-shuffle
# up-sampling (x4: two x2 stages; x2 / x3: one), and the bilinear upsampled input added at the end.


class ResidualNoBN(nn.Module):
    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv3(nf, nf), conv3(nf, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class OfficialMSRResNet(nn.Module):
    def __init__(self, c: int = 3, nf: int = NF, nb: int = BLOCKS, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.conv_first = conv3(c, nf)
        self.body = nn.Sequential(*(ResidualNoBN(nf) for _ in range(nb)))
        r = 3 if scale == 3 else 2
        self.upconv1 = conv3(nf, nf * r * r)
        if scale == 4:
            self.upconv2 = conv3(nf, nf * 4)
        self.pixel_shuffle = nn.PixelShuffle(r)
        self.conv_hr, self.conv_last = conv3(nf, nf), conv3(nf, c)
        self.lrelu = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.body(self.lrelu(self.conv_first(x)))
        feat = self.lrelu(self.pixel_shuffle(self.upconv1(feat)))
        if self.scale == 4:
            feat = self.lrelu(self.pixel_shuffle(self.upconv2(feat)))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------------------
# Helpers


def official(cls: type[nn.Module], seed: int = 0, **options: Any) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**options).eval()


def tkit(*args: str) -> Any:
    from translate_kit.cli import make_app

    return CliRunner().invoke(make_app(plugin_commands=True), ["convert", *args])


def convert_file(tmp_path: Path, weights: Any, *args: str, name: str = "official.pth") -> tuple[Any, Path]:
    path = tmp_path / name
    torch.save(weights, path)
    out = tmp_path / "converted.pt"
    return tkit(str(path), str(out), "--overwrite", *args), out


def generator(out: Path, registry: Registry) -> nn.Module:
    from translate_kit.inference import Translator

    return Translator.from_checkpoint(out, device="cpu", registry=registry).method.nets["G"].eval()


def one_line(text: str) -> str:
    """The output as one line: rich's panel borders dropped, wrapped lines joined."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


CASES = {
    # id: (official network, how the official code saves it, input side, expected description, [generator] table)
    "esrgan-original-x4": (
        lambda: official(OfficialESRGANOriginal), lambda sd: sd, 8,
        "RRDBNet x4, nf 8, 2 blocks, growth 4, 3 -> 3 channels (ESRGAN's original layout (architecture.py))",
        {"name": "rrdbnet", "nf": 8, "n_blocks": 2, "growth": 4, "scale": 4, "pixel_range": "0..1"},
    ),
    "esrgan-renamed-x4": (
        lambda: official(OfficialESRGANRenamed, seed=1), lambda sd: sd, 8,
        "RRDBNet x4, nf 8, 2 blocks, growth 4, 3 -> 3 channels (ESRGAN's RRDBNet_arch.py layout)",
        {"name": "rrdbnet", "nf": 8, "n_blocks": 2, "growth": 4, "scale": 4, "pixel_range": "0..1"},
    ),
    "basicsr-x4": (
        lambda: official(OfficialBasicSRRRDBNet, seed=2), lambda sd: {"params_ema": sd}, 8,
        "RRDBNet x4, nf 8, 2 blocks, growth 4, 3 -> 3 channels (BasicSR / Real-ESRGAN RRDBNet layout, params_ema)",
        {"name": "rrdbnet", "nf": 8, "n_blocks": 2, "growth": 4, "scale": 4, "pixel_range": "0..1"},
    ),
    "realesrgan-x2": (
        lambda: official(OfficialBasicSRRRDBNet, seed=3, scale=2), lambda sd: {"params_ema": sd}, 12,
        "RRDBNet x2 (input pixel-unshuffled by 2), nf 8, 2 blocks, growth 4, 3 -> 3 channels",
        {"name": "rrdbnet", "nf": 8, "n_blocks": 2, "growth": 4, "scale": 2, "pixel_range": "0..1"},
    ),
    "realesrgan-x1-grey": (
        lambda: official(OfficialBasicSRRRDBNet, seed=4, c=1, scale=1), lambda sd: {"params": sd}, 16,
        "RRDBNet x1 (input pixel-unshuffled by 4), nf 8, 2 blocks, growth 4, 1 -> 1 channels",
        {"name": "rrdbnet", "nf": 8, "n_blocks": 2, "growth": 4, "scale": 1, "pixel_range": "0..1"},
    ),
    "msrresnet-x4": (
        lambda: official(OfficialMSRResNet, seed=5), lambda sd: {"params": sd}, 8,
        "MSRResNet x4, nf 8, 2 blocks, 3 -> 3 channels (BasicSR MSRResNet layout, params)",
        {"name": "msrresnet", "nf": 8, "n_blocks": 2, "scale": 4, "pixel_range": "0..1"},
    ),
    "msrresnet-x3": (
        lambda: official(OfficialMSRResNet, seed=6, scale=3), lambda sd: sd, 7,
        "MSRResNet x3, nf 8, 2 blocks, 3 -> 3 channels (BasicSR MSRResNet layout)",
        {"name": "msrresnet", "nf": 8, "n_blocks": 2, "scale": 3, "pixel_range": "0..1"},
    ),
    "msrresnet-x2": (
        lambda: official(OfficialMSRResNet, seed=7, scale=2), lambda sd: {"params_ema": sd}, 9,
        "MSRResNet x2, nf 8, 2 blocks, 3 -> 3 channels",
        {"name": "msrresnet", "nf": 8, "n_blocks": 2, "scale": 2, "pixel_range": "0..1"},
    ),
}


# ------------------------------------------------------------------------------------------------
# Conversions compute the official function


@pytest.mark.parametrize("case", list(CASES))
def test_converted_weights_compute_the_official_network(tmp_path, registry, case):
    make, save_as, side, described, table = CASES[case]
    net = make()
    result, out = convert_file(tmp_path, save_as(net.state_dict()), "--data-root", "../shared/data/sr")
    assert result.exit_code == 0, result.output
    assert described in one_line(result.output)

    from translate_kit.train.checkpoint import load_checkpoint

    recipe = load_checkpoint(out)["recipe"]
    assert recipe["generator"] == table
    assert recipe["method"]["name"] == "sr_psnr"
    channels = 1 if "grey" in case else 3
    assert {k: recipe["data"][k] for k in ("dataset", "root", "scale", "load_size", "in_channels")} == {
        "dataset": "sr_images", "root": os.path.abspath("../shared/data/sr"), "scale": table["scale"], "load_size": 0,
        "in_channels": channels}

    g = generator(out, registry)
    x = torch.rand(2, channels, side, side + 4, generator=torch.Generator().manual_seed(9)) * 2 - 1
    with torch.no_grad():
        expected = net((x + 1) / 2) * 2 - 1
        got = g(x)
    assert expected.shape == (2, channels, side * table["scale"], (side + 4) * table["scale"])
    assert expected.std() > 1e-2  # a degenerate output would prove nothing
    torch.testing.assert_close(got, expected, **TOLERANCE)


def test_the_value_range_is_adapted_not_ignored(tmp_path, registry):
    """The official weights expect [0, 1]: fed translate-kit's [-1, 1] images unchanged they give
    another picture, which is why the converted recipe sets pixel_range "0..1"."""
    net = official(OfficialBasicSRRRDBNet)
    result, out = convert_file(tmp_path, {"params_ema": net.state_dict()})
    assert result.exit_code == 0, result.output
    plain = registry.create("generator", "rrdbnet", nf=NF, n_blocks=BLOCKS, growth=GROWTH).eval()
    plain.load_state_dict(generator(out, registry).state_dict())  # the same keys and weights, stored as published
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        assert (plain(x) - (net((x + 1) / 2) * 2 - 1)).abs().max() > 1e-2
        torch.testing.assert_close(plain((x + 1) / 2), net((x + 1) / 2), **TOLERANCE)


def test_params_ema_is_preferred_and_named(tmp_path, registry):
    ema, trained = official(OfficialBasicSRRRDBNet, seed=10), official(OfficialBasicSRRRDBNet, seed=11)
    result, out = convert_file(tmp_path, {"params": trained.state_dict(), "params_ema": ema.state_dict()})
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert "params_ema)" in text and "Took the weights under 'params_ema'" in text and "'params' weights are not used" in text
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(generator(out, registry)(x), ema((x + 1) / 2) * 2 - 1, **TOLERANCE)


def test_dataparallel_prefix_is_stripped(tmp_path, registry):
    net = official(OfficialESRGANOriginal, seed=12)
    result, out = convert_file(tmp_path, {f"module.{k}": v for k, v in net.state_dict().items()})
    assert result.exit_code == 0, result.output
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(generator(out, registry)(x), net((x + 1) / 2) * 2 - 1, **TOLERANCE)


def test_converted_model_evaluates_on_an_sr_split(tmp_path):
    """`tkit eval OUT --split NAME --data-root ROOT` reads HR images (the x2 inputs are made on the fly)."""
    from torchvision.io import write_png

    from translate_kit.cli import make_app

    hr = tmp_path / "sr" / "Tiny" / "HR"
    hr.mkdir(parents=True)
    for i in range(2):
        write_png(torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)),
                  str(hr / f"{i}.png"))
    net = official(OfficialBasicSRRRDBNet, scale=2)
    result, out = convert_file(tmp_path, {"params_ema": net.state_dict()}, "--data-root", str(tmp_path / "sr"))
    assert result.exit_code == 0, result.output
    report = tmp_path / "eval.json"
    evaluated = CliRunner().invoke(make_app(plugin_commands=True), [
        "eval", str(out), "--split", "Tiny", "--no-images", "--device", "cpu", "--out", str(tmp_path / "eval"),
        "--json", str(report)])
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(report.read_text())
    assert figures["images"] == 2 and figures["protocol"]["shave"] == 2  # shave the scale, the SR protocol
    assert all(math.isfinite(image["psnr"]) for image in figures["per_image"])


# ------------------------------------------------------------------------------------------------
# Errors: one paragraph naming the file, what was found and what is expected; exit status 1


def without(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _original() -> dict[str, torch.Tensor]:
    return official(OfficialESRGANOriginal).state_dict()


def _basicsr(**options: Any) -> dict[str, torch.Tensor]:
    return official(OfficialBasicSRRRDBNet, **options).state_dict()


def _with(state: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**state, key: value}


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param(lambda: without(_original(), "model.1.sub.1.RDB3."),
                     r"does not fit the network its keys suggest \(RRDBNet x4, nf 8, 2 blocks.*missing "
                     r"model\.1\.sub\.1\.RDB3\.conv1\.0\.weight", id="esrgan-block-cut-short"),
        pytest.param(lambda: without(_original(), "model.1.sub.0."),
                     r"ESRGAN's original layout .* residual blocks are at indices 1; expected consecutive blocks from 0",
                     id="esrgan-first-block-missing"),
        pytest.param(lambda: without(_original(), "model.10."), r"its key model\.10\.weight is missing",
                     id="esrgan-no-last-conv"),
        pytest.param(lambda: official(OfficialESRGANOriginal, stages=1).state_dict(),
                     r"original layout with 1 up-sampling stage\(s\) \(x2: its last convolution is model\.7\)",
                     id="esrgan-x2-architecture"),
        pytest.param(lambda: official(OfficialESRGANOriginal, stages=0).state_dict(),
                     r"original layout with 0 up-sampling stage\(s\) \(x1: its last convolution is model\.4\)",
                     id="esrgan-x1-architecture"),
        pytest.param(lambda: _with(_original(), "model.1.sub.0.RDB2.conv2.0.weight", torch.zeros(4, 9, 3, 3)),
                     r"wrong shape model\.1\.sub\.0\.RDB2\.conv2\.0\.weight \(4, 9, 3, 3\) instead of \(4, 12, 3, 3\)",
                     id="esrgan-wrong-shape"),
        pytest.param(lambda: _with(_original(), "model.1.sub.0.RDB1.extra.weight", torch.zeros(1)),
                     r"unexpected model\.1\.sub\.0\.RDB1\.extra\.weight", id="esrgan-key-left-over"),
        pytest.param(lambda: {"params_ema": without(_basicsr(), "body.1.rdb2.")},
                     r"missing body\.1\.rdb2\.conv1\.weight", id="basicsr-block-cut-short"),
        pytest.param(lambda: {"params": _with(_basicsr(), "conv_first.weight", torch.zeros(NF, 6, 3, 3))},
                     r"conv_first takes 6 input channels while conv_last gives 3: expected 3 \(x4\), 12 \(x2",
                     id="basicsr-unshuffle-channels"),
        pytest.param(lambda: {"params_ema": {"body.0.weight": torch.zeros(8, 3, 3, 3), "body.0.bias": torch.zeros(8)}},
                     r"looks like a BasicSR / Real-ESRGAN file \(params_ema\) but holds neither RRDBNet .* nor MSRResNet",
                     id="basicsr-other-network"),
        pytest.param(lambda: {"params": _basicsr(), "params_ema": [1, 2]},
                     r"its 'params_ema' entry holds a list, not a state dict", id="basicsr-params-ema-not-a-dict"),
        pytest.param(lambda: {"params_ema": {"conv_first.weight": torch.zeros(8, 3, 3, 3), "iter": 3}},
                     r"its weights have entries that hold no tensor: iter", id="basicsr-not-tensors"),
        pytest.param(lambda: {"encoder.0.weight": torch.zeros(4, 3, 3, 3)},
                     r"fit no network of the reference pix2pix/CycleGAN code.* Nor is it in one of the other weight "
                     r"formats tkit convert reads \(basicsr: BasicSR / Real-ESRGAN files.*; esrgan: ESRGAN's RRDBNet",
                     id="unknown-keys"),
    ],
)
def test_files_that_do_not_fit_an_sr_layout(tmp_path, weights, expected):
    result, _ = convert_file(tmp_path, weights(), name="RRDB_ESRGAN_x4.pth")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    text = one_line(result.output)
    assert text.startswith("Error:") and "Traceback" not in text
    assert str(tmp_path / "RRDB_ESRGAN_x4.pth") in text
    assert re.search(expected, text), text


def test_pix2pix_options_are_refused_for_an_sr_file(tmp_path):
    result, out = convert_file(tmp_path, _original(), "--norm", "batch", "--direction", "BtoA")
    assert result.exit_code == 1
    assert "options --norm, --direction are for reference pix2pix/CycleGAN checkpoints only" in one_line(result.output)
    assert not out.exists()


def test_reference_pix2pix_files_still_take_the_reference_path(tmp_path):
    from test_convert import RefUnet

    torch.manual_seed(0)
    result, _ = convert_file(tmp_path, RefUnet(3, 3, 7, 4, "batch").state_dict(), name="latest_net_G.pth")
    assert result.exit_code == 0, result.output
    assert "method pix2pix" in result.output and "U-Net, 7 levels (unet_128)" in result.output


def test_help_covers_both_uses():
    result = tkit("--help")
    text = one_line(result.output)
    assert result.exit_code == 0
    assert "reference checkpoint folder" in text and "weight_format" in text and "RealESRGAN_x4plus.pth" in text


# ------------------------------------------------------------------------------------------------
# The extension point: any plugin's "weight_format" is consulted, and its result is checked


class MarkerFormat:
    """A third party's format: files with a `marker` key hold a bicubic upsampler (no weights)."""

    summary = "marker files (key marker)"

    def __init__(self, nets: dict[str, dict[str, torch.Tensor]] | None = None) -> None:
        self.nets = nets or {}

    def recognises(self, weights: Any) -> bool:
        return "marker" in weights

    def convert(self, weights: Any, *, source: Path, data_root: str, run_name: str) -> ImportedWeights:
        recipe = {"run": {"name": run_name}, "data": {"dataset": "sr_images", "root": data_root, "scale": 2,
                                                      "load_size": 0, "crop_size": 32},
                  "method": {"name": "sr_psnr"}, "generator": {"name": "bicubic", "scale": 2}}
        return ImportedWeights(recipe, self.nets, {name: "bicubic" for name in self.nets})


@register("weight_format")
def marker() -> MarkerFormat:
    return MarkerFormat()


@register("weight_format")
def marker_bad_keys() -> MarkerFormat:
    return MarkerFormat({"G": {"bogus": torch.zeros(1)}})


@register("weight_format")
def everything() -> MarkerFormat:
    fmt = MarkerFormat()
    fmt.recognises = lambda weights: True  # type: ignore[method-assign]
    return fmt


def local_registry(registry: Registry, *formats: Any) -> Registry:
    local = Registry()
    for spec in registry.specs():
        local.add(spec.factory, plugin=spec.plugin)
    for fmt in formats:
        local.add(fmt, plugin="third_party")
    return local


def test_a_third_party_format_is_consulted(tmp_path, registry):
    from translate_kit.train.checkpoint import load_checkpoint

    local = local_registry(registry, marker)
    path = tmp_path / "marked.pth"
    torch.save({"marker": torch.ones(1)}, path)
    recognised = recognise_weights(path, local)
    assert recognised is not None and recognised.format_name == "marker"
    conversion = import_weights(recognised, data_root="somewhere", run_name="marked", registry=local)
    assert conversion.method == "sr_psnr" and conversion.fresh == ["G"]
    save_conversion(conversion, tmp_path / "marked.pt")
    ckpt = load_checkpoint(tmp_path / "marked.pt")
    assert ckpt["recipe"]["generator"]["name"] == "bicubic" and ckpt["converted_from"] == str(path)

    torch.save(_original(), tmp_path / "esrgan.pth")  # the built-in formats are still there
    assert recognise_weights(tmp_path / "esrgan.pth", local).format_name == "esrgan"


def test_weights_that_do_not_fit_the_formats_own_recipe_are_a_plugin_error(tmp_path, registry):
    local = local_registry(registry, marker_bad_keys)
    torch.save({"marker": torch.ones(1)}, tmp_path / "marked.pth")
    recognised = recognise_weights(tmp_path / "marked.pth", local)
    with pytest.raises(PluginError, match="Weight format 'marker_bad_keys' read .* do not fit the network its own"):
        import_weights(recognised, registry=local)


def test_two_formats_claiming_a_file_is_an_error(tmp_path, registry):
    local = local_registry(registry, everything)
    torch.save(_original(), tmp_path / "esrgan.pth")
    with pytest.raises(CheckpointError, match=r"recognised by several weight formats: 'esrgan' \(plugin 'sr_import'\), "
                                              r"'everything' \(plugin 'third_party'\)"):
        recognise_weights(tmp_path / "esrgan.pth", local)


def test_the_builtin_formats_recognise_only_their_own_files():
    original, renamed = _original(), official(OfficialESRGANRenamed).state_dict()
    basic, msr = _basicsr(), official(OfficialMSRResNet).state_dict()
    pix2pix = {"model.model.0.weight": torch.zeros(1), "model.1.weight": torch.zeros(1)}
    assert [esrgan().recognises(w) for w in (original, renamed, basic, {"params_ema": basic}, msr, pix2pix)] == [
        True, True, False, False, False, False]
    assert [basicsr().recognises(w) for w in (original, renamed, basic, {"params_ema": basic}, msr, pix2pix)] == [
        False, False, True, True, True, False]
