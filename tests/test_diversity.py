"""Diversity in `tkit eval`: LPIPS against a hand computation, its weight files, the pixel-space
figure, the FCN-score of sample sets, and `--diversity` on an untrained SPADE VAE (multimodal)."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from typer.testing import CliRunner

from translate_kit.cli import make_app
from translate_kit.errors import CheckpointError, OptionError
from translate_kit.eval.diversity import Diversity, consecutive_l1, summarize_sample_fcn
from translate_kit.eval.lpips import LPIPS, LPIPS_NETS, LPIPS_WEIGHTS_ENV, load_lpips, lpips_network
from translate_kit.eval.metrics import ConfusionMatrix

SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)  # lpips v0.1's scaling layer, written out again
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def by_hand(features0, features1, weights):
    """LPIPS eq. 1 from per-layer features: unit-normalise over channels (norm + 1e-10), squared
    difference, weight each channel, sum channels, average positions, sum layers."""
    total = torch.zeros(len(features0[0]), dtype=torch.float64)
    for a, b, w in zip(features0, features1, weights):
        a, b = a.double(), b.double()
        a = a / (torch.sqrt((a * a).sum(1, keepdim=True)) + 1e-10)
        b = b / (torch.sqrt((b * b).sum(1, keepdim=True)) + 1e-10)
        total += (w.double().view(1, -1, 1, 1) * (a - b) ** 2).sum(1).mean((1, 2))
    return total


def test_lpips_equals_a_hand_computation_on_a_tiny_backbone():
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, padding=1)
    net = LPIPS([nn.Sequential(conv1, nn.ReLU()), nn.Sequential(nn.AvgPool2d(2), conv2)], [4, 5])
    assert sum(p.numel() for p in net.lins.parameters()) == 4 + 5
    x0, x1 = torch.rand(2, 5, 3, 8, 8) * 2 - 1
    s0, s1 = (x0 - SHIFT) / SCALE, (x1 - SHIFT) / SCALE
    f0 = [torch.relu(conv1(s0))]
    f1 = [torch.relu(conv1(s1))]
    f0.append(conv2(nn.functional.avg_pool2d(f0[0], 2)))
    f1.append(conv2(nn.functional.avg_pool2d(f1[0], 2)))
    expected = by_hand(f0, f1, [lin.weight.flatten() for lin in net.lins])
    assert torch.allclose(net(x0, x1).double(), expected, rtol=1e-5, atol=1e-7)
    assert expected.min() > 0 and net(x0, x0).abs().max() == 0  # identical images: exactly 0
    # Consecutive pairs, across chunk boundaries, equal the pairs one by one.
    chain = torch.cat([x0, x1])
    pairs = torch.stack([net(chain[i : i + 1], chain[i + 1 : i + 2])[0] for i in range(len(chain) - 1)])
    for batch_size in (1, 3, 16):
        assert torch.allclose(net.consecutive(chain, batch_size=batch_size), pairs, rtol=1e-6, atol=1e-8)


def test_the_alexnet_lpips_cuts_torchvisions_features_after_each_relu():
    net = lpips_network("alex")
    assert LPIPS_NETS["alex"].channels == (64, 192, 384, 256, 256)
    layers = [m for stage in net.stages for m in stage]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    # torchvision's AlexNet features, from the architecture: (out, in, kernel) per convolution.
    shapes = [(64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3), (256, 256, 3)]
    assert [(c.out_channels, c.in_channels, c.kernel_size[0]) for c in convs] == shapes
    assert sum(p.numel() for p in net.stages.parameters()) == sum(o * i * k * k + o for o, i, k in shapes)
    assert sum(p.numel() for p in net.lins.parameters()) == 64 + 192 + 384 + 256 + 256
    # Running the 12 layers in order, the compared maps are the outputs of layers 1, 4, 7, 9, 11 (the ReLUs).
    x0, x1 = torch.rand(2, 2, 3, 40, 48) * 2 - 1
    kept0, kept1, h0, h1 = [], [], (x0 - SHIFT) / SCALE, (x1 - SHIFT) / SCALE
    for index, layer in enumerate(layers):
        h0, h1 = layer(h0.clone()), layer(h1.clone())
        if index in (1, 4, 7, 9, 11):
            kept0.append(h0.clone())
            kept1.append(h1.clone())
    assert len(layers) == 12 and all(isinstance(layers[i], nn.ReLU) for i in (1, 4, 7, 9, 11))
    expected = by_hand(kept0, kept1, [lin.weight.flatten() for lin in net.lins])
    assert torch.allclose(net(x0, x1).double(), expected, rtol=1e-5)
    with pytest.raises(Exception, match="at least 31x31 pixels"):
        net(x0[..., :30, :30], x1[..., :30, :30])
    with pytest.raises(Exception, match=r"values in \[-1, 1\]"):
        net(x0 * 2, x1)


def test_identical_samples_have_no_diversity_and_l1_is_in_minus_one_one_units():
    net = lpips_network("alex")
    same = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(4, -1, -1, -1)
    diversity = Diversity(4, lpips=net)
    assert diversity.update(same) == {"l1_diversity": 0.0, "lpips_diversity": 0.0}
    black_white = torch.tensor([0, 255, 0], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 32, 32)
    assert consecutive_l1(black_white).tolist() == [2.0, 2.0]  # the whole [-1, 1] range
    row = diversity.update(torch.cat([same[:2], black_white[:2]]))
    assert row["l1_diversity"] == pytest.approx(consecutive_l1(torch.cat([same[:2], black_white[:2]])).mean().item())
    figures = diversity.compute()
    assert figures["inputs"] == 2 and figures["pairs_per_input"] == 3 and figures["l1_units"] == "[-1, 1]"
    assert figures["l1"] == pytest.approx(row["l1_diversity"] / 2)
    assert figures["lpips"] == pytest.approx(row["lpips_diversity"] / 2) and row["lpips_diversity"] > 0
    assert figures["lpips_std"] == pytest.approx(row["lpips_diversity"] / 2)  # population std of (0, d)


def test_sample_sets_fcn_summary():
    sets = [ConfusionMatrix(2) for _ in range(3)]
    truth = torch.tensor([[0, 0, 1, 1]])
    for matrix, prediction in zip(sets, ([0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1])):
        matrix.update(torch.tensor([prediction]), truth)
    summary = summarize_sample_fcn(sets)
    assert summary["per_sample_pixel_accuracy"] == [1.0, 0.75, 0.5]
    assert summary["pixel_accuracy"] == pytest.approx(0.75) and summary["pixel_accuracy_min"] == 0.5
    assert summary["pixel_accuracy_std"] == pytest.approx(math.sqrt(0.125 / 3))
    # Class IoUs: (1, 1), (1/2, 2/3), (0, 1/2): means 1, 7/12, 1/4.
    assert summary["mean_iou"] == pytest.approx((1 + 7 / 12 + 1 / 4) / 3)


# ------------------------------------------------------------------------------------------------
# The weight files


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A folder with the two files under their published names, random tensors in their layouts."""
    folder = tmp_path_factory.mktemp("lpips_weights")
    torch.manual_seed(1)
    from torchvision.models import alexnet

    with torch.device("meta"):
        shapes = {f"features.{k}": v.shape for k, v in alexnet().features.state_dict().items()}
    backbone = {k: torch.randn(shape) * 0.05 for k, shape in shapes.items()}
    backbone["classifier.6.bias"] = torch.zeros(1000)  # the file's head: there, and not read
    torch.save(backbone, folder / "alexnet-owt-7be5be79.pth")
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(linear, folder / "alex.pth")
    return folder, backbone, linear


def test_weights_load_from_a_folder_unchanged(weights, monkeypatch):
    folder, backbone, linear = weights
    monkeypatch.delenv(LPIPS_WEIGHTS_ENV, raising=False)
    net = load_lpips(folder)
    convs = [m for stage in net.stages for m in stage if isinstance(m, nn.Conv2d)]
    for conv, index in zip(convs, (0, 3, 6, 8, 10)):
        assert torch.equal(conv.weight, backbone[f"features.{index}.weight"])
        assert torch.equal(conv.bias, backbone[f"features.{index}.bias"])
    for i, lin in enumerate(net.lins):
        assert torch.equal(lin.weight, linear[f"lin{i}.model.1.weight"])
    assert net.weights == {"backbone": "alexnet-owt-7be5be79.pth", "linear": "alex.pth"}
    assert net.weights_sha256["linear"] == hashlib.sha256((folder / "alex.pth").read_bytes()).hexdigest()
    monkeypatch.setenv(LPIPS_WEIGHTS_ENV, str(folder))
    assert torch.equal(load_lpips().lins[2].weight, net.lins[2].weight)


def test_the_published_linear_file_has_the_layout_read(monkeypatch):
    """torchmetrics ships a copy of the lpips package's v0.1 alex.pth: its names and shapes are what
    `load_lpips` checks (only the layout is tested here; no figure uses these weights)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchmetrics")
    copy = Path(spec.origin).parent / "functional" / "image" / "lpips_models" / "alex.pth" if spec else None
    if copy is None or not copy.is_file():
        pytest.skip("torchmetrics' copy of alex.pth is not installed")
    state = torch.load(copy, map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(LPIPS_NETS["alex"].channels)}


def _one_paragraph_with_the_fix(message):
    assert "\n" not in message
    for text in ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                 "alex.pth", "lpips/weights/v0.1/alex.pth", "--lpips-weights", LPIPS_WEIGHTS_ENV, "--no-lpips"):
        assert text in message


def test_missing_or_wrong_weights_are_clear_errors(weights, tmp_path, monkeypatch):
    folder, backbone, linear = weights
    monkeypatch.delenv(LPIPS_WEIGHTS_ENV, raising=False)
    with pytest.raises(OptionError, match="No LPIPS weights folder was given") as error:
        load_lpips()
    _one_paragraph_with_the_fix(str(error.value))
    monkeypatch.setenv(LPIPS_WEIGHTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match=f"nowhere \\(from {LPIPS_WEIGHTS_ENV}\\) does not exist") as error:
        load_lpips()
    _one_paragraph_with_the_fix(str(error.value))
    half = tmp_path / "half"
    half.mkdir()
    torch.save(linear, half / "alex.pth")
    with pytest.raises(CheckpointError, match="holds no alexnet-owt-7be5be79.pth") as error:
        load_lpips(half)
    _one_paragraph_with_the_fix(str(error.value))
    torch.save({k: v for k, v in backbone.items() if k != "features.10.bias"}, half / "alexnet-owt-7be5be79.pth")
    with pytest.raises(CheckpointError, match=r"1 tensors missing \(e.g. features.10.bias\)"):
        load_lpips(half)
    torch.save(backbone, half / "alexnet-owt-7be5be79.pth")
    torch.save({**linear, "lin4.model.1.weight": torch.rand(1, 7, 1, 1)}, half / "alex.pth")
    with pytest.raises(CheckpointError, match=r"lin4.model.1.weight is 1x7x1x1, expected 1x256x1x1"):
        load_lpips(half)


# ------------------------------------------------------------------------------------------------
# tkit eval --diversity


@pytest.fixture(scope="module")
def recipes(tmp_path_factory, registry, tiny_facades):
    """Recipe files of an untrained SPADE VAE (multimodal), a tiny pix2pix (not) and a segmenter."""
    from translate_kit.recipe import load_recipe

    root = tmp_path_factory.mktemp("diversity")
    spade = ["generator.ngf=4", "generator.spade_hidden=8", "generator.crop_size=32", "discriminator.ndf=4",
             "discriminator.n_layers=2", "method.use_vae=true", 'encoder.name="spade_encoder"', "encoder.ndf=2",
             "encoder.input_size=128", "data.load_size=32"]
    pix = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4"]
    seg = ["segmenter.name=timm_fpn", 'segmenter.encoder="test_resnet"', "segmenter.width=8", "data.load_size=32"]
    paths = {}
    for name, recipe, extra in (("spade", "spade_facades_cpu", spade), ("pix2pix", "pix2pix_facades", pix),
                                ("fcn", "fcn_facades", seg)):
        loaded = load_recipe(RECIPES / f"{recipe}.toml", quick_overrides(tiny_facades, root) + extra,
                             registry=registry)
        paths[name] = root / f"{name}.toml"
        paths[name].write_text(loaded.to_toml(), encoding="utf-8")
    return paths


def run_eval(recipe, *options):
    result = CliRunner().invoke(make_app(), ["eval", str(recipe), "--device", "cpu", "--split", "test", *map(str, options)])
    return result


def test_diversity_is_refused_for_a_model_that_is_not_multimodal(recipes, tmp_path):
    result = run_eval(recipes["pix2pix"], "--diversity", "--no-lpips", "--out", tmp_path)
    assert result.exit_code == 1
    assert "is not multimodal" in result.output and "leave out --diversity" in result.output
    assert "Traceback" not in result.output


def test_diversity_without_lpips_weights_is_one_clear_paragraph(recipes, tmp_path, monkeypatch):
    monkeypatch.delenv(LPIPS_WEIGHTS_ENV, raising=False)
    result = run_eval(recipes["spade"], "--diversity", "--out", tmp_path)
    assert result.exit_code == 1 and "No LPIPS weights folder was given" in result.output
    assert "alexnet-owt-7be5be79.pth" in result.output and not (tmp_path / "index.html").exists()


def test_diversity_figures_match_the_samples_and_change_with_z(recipes, weights, tmp_path, registry):
    from torchvision.io import read_image

    from translate_kit.eval.evaluate import EvalOptions, eval_dataset, evaluate
    from translate_kit.inference import Translator

    out = tmp_path / "eval"
    result = run_eval(recipes["spade"], "--diversity-samples", 3, "--limit", 1, "--seed", 0,
                      "--lpips-weights", weights[0], "--out", out, "--json", out / "r.json")
    assert result.exit_code == 0, result.output
    assert "Diversity of the samples" in result.output and "LPIPS (alex)" in result.output
    assert "Diversity of the samples" in (out / "index.html").read_text()
    report = json.loads((out / "r.json").read_text())
    d, [row] = report["diversity"], report["per_image"]
    assert (d["samples"], d["pairs_per_input"], d["inputs"], d["seed"]) == (3, 2, 1, 0)
    assert d["lpips_net"] == "alex" and d["lpips_weights"]["linear"] == "alex.pth" and d["lpips"] > 0
    assert (d["l1"], d["lpips"]) == (row["l1_diversity"], row["lpips_diversity"])
    # Reproducible: a fresh translator with the same seed draws the same samples from the input PNG,
    # whose consecutive L1 ([-1, 1] units) and LPIPS are the figures reported; sample 0 is the output.
    translator = Translator.from_recipe(recipes["spade"], registry=registry, device="cpu", seed=0)
    [samples] = translator.translate_samples([read_image(str(out / row["images"]["input"]))], 3)
    x = torch.stack(samples).double() / 127.5 - 1
    assert d["l1"] == pytest.approx((x[1:] - x[:-1]).abs().mean().item(), rel=1e-9)
    net = load_lpips(weights[0])
    # float32 features of nearly equal samples: batches of another size round differently.
    assert d["lpips"] == pytest.approx(net(x[:-1].float(), x[1:].float()).double().mean().item(), rel=1e-3)
    assert torch.equal(samples[0], read_image(str(out / row["images"]["output"])))
    # Other draws of z: other figures. With a segmenter, each sample set gets its FCN-score.
    translator.seed = 1000
    segmenter = Translator.from_recipe(recipes["fcn"], registry=registry, device="cpu")
    options = EvalOptions(split="test", limit=1, write_images=False, diversity_samples=2)
    other = evaluate(translator, eval_dataset(translator.recipe, registry, "test"), options=options, out_dir=None,
                     checkpoint="spade", segmenter=segmenter, lpips_network=net)
    o = other.diversity
    assert o["seed"] == 1000 and o["l1"] != d["l1"] and o["lpips"] != d["lpips"]
    assert set(o["pixel"]) == {"l1", "mse", "psnr", "ssim"} and 0 <= o["pixel"]["ssim"] <= 1
    fcn = o["fcn"]
    assert len(fcn["per_sample_pixel_accuracy"]) == 2
    # Sample 0 of every input is the output scored as usual, so its set has the split's FCN-score.
    assert fcn["per_sample_pixel_accuracy"][0] == pytest.approx(other.fcn["generated"]["pixel_accuracy"])
    assert fcn["pixel_accuracy"] == pytest.approx(sum(fcn["per_sample_pixel_accuracy"]) / 2)
    assert other.per_image[0]["fcn_pixel_accuracy_samples"] == pytest.approx(fcn["pixel_accuracy"])  # one input
    pix = Translator.from_recipe(recipes["pix2pix"], registry=registry, device="cpu")
    with pytest.raises(OptionError, match="is not multimodal"):
        evaluate(pix, eval_dataset(pix.recipe, registry, "test"), options=options, out_dir=None, checkpoint="pix")
