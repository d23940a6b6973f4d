"""`tkit bench` and translate_kit.bench: figures are positive and finite, FLOPs match a hand count,
the JSON has its documented keys, missing data is reported rather than fatal. No timing asserts."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import RECIPES
from torch import nn
from translate_kit_plugins.bench import run_bench, time_windows
from typer.testing import CliRunner

from translate_kit.cli import make_app
from translate_kit.errors import OptionError as BenchError
from translate_kit.recipe import load_recipe
from translate_kit.registry import Registry, register_discriminator, register_generator

TINY = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8",
        "data.load_size=36", "data.crop_size=32"]
FAST = {"windows": 2, "window_s": 0.0, "warmup": 1, "matmul_size": 128}
RESULT_KEYS = {"recipe", "device", "threads", "torch_version", "precision", "channels_last", "crop_size", "parameters",
               "matmul", "train_flops_per_image", "infer_flops_per_image", "throughput", "memory",
               "bench_process_peak_rss_bytes", "skipped", "notes", "seconds"}
THROUGHPUT_KEYS = {"what", "batch_size", "images_per_s", "min_images_per_s", "max_images_per_s", "windows",
                   "steps_per_window", "flops_per_image", "matmul_fraction"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread, and two threads crawl when other jobs load the cores;
    the memory probe inherits the setting. The CLI's --threads is not used: it would stay set."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_bench_api_measures_every_figure(tiny_facades, registry, pm):
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", [*TINY, f'data.root="{tiny_facades.as_posix()}"'],
                         registry=registry)
    result = run_bench(recipe, registry, pm, device="cpu", batch_sizes=(2,), infer_batch_sizes=(1, 2), **FAST)
    figures = {(t.what, t.batch_size): t for t in result.throughput}
    assert set(figures) == {("train_step", 2), ("train_loop", 1), ("infer_eval", 1), ("infer_eval", 2),
                            ("infer_paper", 1), ("infer_paper", 2)}
    for t in figures.values():
        assert all(positive(v) for v in (t.images_per_s, t.min_images_per_s, t.max_images_per_s, *t.windows))
        assert t.min_images_per_s <= t.images_per_s <= t.max_images_per_s and len(t.windows) == 2
        assert positive(t.flops_per_image) and positive(t.matmul_fraction)
    # A training step runs G forward and backward and D three times: it costs more than inference.
    assert result.train_flops_per_image > 2 * result.infer_flops_per_image > 0
    assert positive(result.matmul.flops_per_s) and result.matmul.size == 128
    assert result.parameters["G"] > 0 and result.parameters["D"] > 0
    [peak] = result.memory  # measured in a fresh process
    assert peak.batch_size == 2 and peak.peak_rss_bytes >= peak.baseline_rss_bytes > 0
    assert peak.cuda_max_allocated_bytes is None
    assert result.skipped == {}


@register_generator("bench_test_conv")
def _conv_generator(*, in_channels: int = 3, out_channels: int = 3) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


@register_discriminator("bench_test_conv")
def _conv_discriminator(*, in_channels: int = 6) -> nn.Module:
    return nn.Conv2d(in_channels, 1, 3, padding=1)


def test_flops_equal_a_hand_count_for_single_convolutions(registry, pm, tmp_path):
    """G and D are single 3x3 convolutions, so every FLOP of pix2pix's step can be counted by hand."""
    conv_registry = Registry()
    for spec in registry.specs():
        conv_registry.add(spec.factory, plugin=spec.plugin)
    conv_registry.add(_conv_generator, plugin="test_bench")
    conv_registry.add(_conv_discriminator, plugin="test_bench")
    tables = {"data": {"root": str(tmp_path / "absent"), "load_size": 20, "crop_size": 16},
              "method": {"name": "pix2pix", "gan_mode": "vanilla", "lambda_l1": 100.0},
              "generator": {"name": "bench_test_conv"}, "discriminator": {"name": "bench_test_conv"}}
    recipe = load_recipe(tables, registry=conv_registry)
    result = run_bench(recipe, conv_registry, pm, device="cpu", batch_sizes=(2,), infer_batch_sizes=(3,),
                       memory=False, **FAST)
    h = w = 16
    g = 2 * 3 * 3 * 9 * h * w  # one forward of G per image: 2 * C_in * C_out * k^2 * H * W
    d = 2 * 6 * 1 * 9 * h * w  # one forward of D on an (input, output) pair
    assert result.infer_flops_per_image == g
    # Forward: G once, D on the real pair, the detached fake pair, then the fake pair for G's loss.
    # Backward: D's weight gradient for its two D-step calls (the inputs need none), D's input
    # gradient for the G step (D is frozen: no weight gradient), G's weight gradient (the input
    # images need none).
    assert result.train_flops_per_image == (g + 3 * d) + (2 * d + d + g)
    assert "missing" in result.skipped["train_loop"]


def test_time_windows_interleaves_in_abba_order():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    timings = time_windows(fns, sync=lambda: None, warmup=1, windows=3, window_s=0.0)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-ups, then windows a b | b a | a b
    assert all(t.steps_per_window == 1 and len(t.seconds) == 3 for t in timings.values())
    with pytest.raises(BenchError, match="at least 1 window"):
        time_windows(fns, sync=lambda: None, windows=0)


@pytest.fixture(scope="module")
def app():
    return make_app(plugin_commands=True)  # `tkit bench` is the bench plugin's command


def test_cli_json_has_the_documented_keys_and_reports_missing_data(app, tmp_path):
    missing = tmp_path / "no_such_folder"
    args = ["bench", str(RECIPES / "pix2pix_facades.toml"), "--quick", "--json", "--no-memory", "--device", "cpu",
            "--infer-batch-sizes", "1,2", *[x for o in [*TINY, f"data.root={missing}"] for x in ("--set", o)]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == RESULT_KEYS
    assert [(t["what"], t["batch_size"]) for t in data["throughput"]] == [
        ("train_step", 1), ("infer_eval", 1), ("infer_paper", 1), ("infer_eval", 2), ("infer_paper", 2)]
    assert all(set(t) == THROUGHPUT_KEYS and positive(t["images_per_s"]) for t in data["throughput"])
    assert data["skipped"]["train_loop"].startswith(f"skipped: data.root {missing} missing")
    assert data["skipped"]["memory"].startswith("not measured")
    assert set(data["matmul"]) == {"dtype", "size", "flops_per_s", "repeats"}


def test_cli_help_and_bad_batch_sizes(app):
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0 and "--batch-sizes" in result.output and "--quick" in result.output
    result = CliRunner().invoke(app, ["bench", str(RECIPES / "quickstart.toml"), "--batch-sizes", "1,zero"])
    assert result.exit_code == 2 and "expected comma-separated positive integers" in result.output


def test_cli_recipe_errors_are_one_paragraph(app):
    result = CliRunner().invoke(app, ["bench", str(RECIPES / "quickstart.toml"), "--set", "generator.ngff=3"])
    assert result.exit_code == 1 and "unknown key 'ngff'" in result.output and "Traceback" not in result.output
