"""FID and KID: torchmetrics' statistics against independent NumPy computations, the FID Inception's
structure against torchvision's, the weights-file errors, and `tkit eval --fid` end to end.

The references are written differently from torchmetrics on purpose: the Fréchet distance's trace
term from a symmetric eigen-decomposition (`tr sqrt(S1 S2) = tr sqrt(A S2 A)` with `A = sqrt(S1)`)
or from singular values (`tr sqrt(S1 S2)` = the nuclear norm of `X1 X2ᵀ / (n - 1)` for centred
feature matrices X), where torchmetrics takes the eigenvalues of the non-symmetric product; KID's
unbiased MMD² from whole NumPy kernel matrices. The FID Inception at 299 × 299 costs about half a
second per image on 2 CPU cores, so the tests that run it use a handful of images.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPES, quick_overrides
from torch import nn
from typer.testing import CliRunner

from translate_kit.cli import make_app
from translate_kit.errors import CheckpointError, OptionError
from translate_kit.eval.fid import (
    FID_WEIGHTS_ENV,
    FID_WEIGHTS_NAME,
    FID_WEIGHTS_URL,
    FIDKID,
    FIDInception,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE,
    _check_tensors,
    fid_kid,
    load_fid_inception,
)

# float64 features end to end (torchmetrics keeps the feature dtype): only rounding differs.
TOL = {"fid": {"rel": 1e-9, "abs": 1e-9}, "kid": {"rel": 1e-9, "abs": 1e-12}}


class Identity(nn.Module):
    """A feature "network" whose features are its input: (B, d, 1, 1) -> (B, d)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def gaussian(n: int, mean, std, seed: int) -> np.ndarray:
    """n samples of N(mean, diag(std²)), mixed by a fixed rotation (so the covariance is not diagonal)."""
    rng = np.random.default_rng(seed)
    d = len(mean)
    rotation, _ = np.linalg.qr(np.random.default_rng(99).normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * np.asarray(std)) @ rotation.T + np.asarray(mean) @ rotation.T


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def reference_fid(x: np.ndarray, y: np.ndarray) -> float:
    mx, my = x.mean(0), y.mean(0)
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    a = psd_sqrt(sx)
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(a @ sy @ a), 0, None)).sum()
    return float(((mx - my) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * trace_sqrt)


def reference_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    kernel = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.mean())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """NumPy comparison (torch.testing.assert_close would import torch.distributed: +1.5 s)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), rtol=rtol, atol=atol)


def as_images(features: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(features)[:, :, None, None]


# ------------------------------------------------------------------------------------------------
# statistics


def test_fid_equals_an_independent_computation_and_the_closed_form():
    mean_a, std_a = [0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 0.5, 1.0]
    mean_b, std_b = [1.0, 1.0, 0.0, 3.0], [1.0, 1.0, 1.0, 3.0]
    real, fake = gaussian(20000, mean_a, std_a, seed=1), gaussian(20000, mean_b, std_b, seed=2)
    metric = FIDKID(Identity(4), kid_subsets=2, kid_subset_size=100)
    for chunk in range(0, 20000, 5000):  # streamed in batches
        metric.update(as_images(real[chunk : chunk + 5000]), real=True)
        metric.update(as_images(fake[chunk : chunk + 5000]), real=False)
    score = metric.compute()
    assert score.fid == pytest.approx(reference_fid(fake, real), **TOL["fid"])
    # Between N(m1, S1) and N(m2, S2) whose covariances share eigenvectors (the same rotation here),
    # FID = |m1 - m2|² + Σ (σ1 - σ2)²: 5 + 5.25. The samples' FID is within sampling error of it.
    closed = sum((a - b) ** 2 for a, b in zip(mean_a, mean_b)) + sum((a - b) ** 2 for a, b in zip(std_a, std_b))
    assert closed == 10.25
    assert score.fid == pytest.approx(closed, rel=0.02)
    assert (score.generated_images, score.real_images) == (20000, 20000)


def test_kid_equals_the_unbiased_mmd_and_its_subsets_are_seeded():
    real, fake = gaussian(300, [0.0] * 5, [1.0] * 5, seed=3), gaussian(300, [0.3] * 5, [1.2] * 5, seed=4)
    whole = reference_unbiased_mmd2(fake, real)

    # Subsets as large as the sets (capped from the default 1000): every subset is the whole set.
    score = fid_kid(as_images(fake), list(as_images(real)), network=Identity(5), kid_subsets=3)
    assert score.kid_subset_size == 300
    assert score.kid_mean == pytest.approx(whole, **TOL["kid"])
    assert score.kid_std == pytest.approx(0.0, abs=1e-12)
    assert score.fid == pytest.approx(reference_fid(fake, real), **TOL["fid"])

    # 100 subsets of 50: each an unbiased estimate of the whole set's value; the same seed, the same draw.
    def kid(seed: int):
        s = fid_kid([as_images(fake)], [as_images(real)], network=Identity(5), kid_subset_size=50, seed=seed)
        return s.kid_mean, s.kid_std

    mean, std = kid(0)
    assert kid(0) == (mean, std) and kid(1) != (mean, std)
    assert std > 0 and abs(mean - whole) < 4 * std / math.sqrt(100)


def test_fewer_than_two_images_is_a_clear_error():
    from translate_kit.errors import DataError

    metric = FIDKID(Identity(2))
    metric.update(torch.rand(3, 2, 1, 1), real=True)
    metric.update(torch.rand(1, 2, 1, 1), real=False)
    with pytest.raises(DataError, match="at least 2 generated and 2 real images, got 1 and 3"):
        metric.compute()


def test_without_torchmetrics_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)  # import fails
    with pytest.raises(OptionError, match=r"pip install 'translate-kit\[metrics\]'"):
        FIDKID(Identity(2))


# ------------------------------------------------------------------------------------------------
# the network


def test_the_network_has_pytorch_fids_tensors():
    """pytorch-fid loads the weights file, strictly, into torchvision's Inception3(num_classes=1008,
    aux_logits=False) with four blocks swapped for variants of the same shapes: so that model's tensor
    names and shapes are the file's, and ours must be the same."""
    from torchvision.models import inception_v3

    net = FIDInception()
    reference = inception_v3(num_classes=1008, aux_logits=False, init_weights=False)
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    # torchvision's 1000-class Inception v3 without the auxiliary head has 23,834,568 parameters; the
    # TensorFlow graph's head has 8 classes more (1008: +8 x 2048 weights, +8 biases); the FID blocks
    # change only pooling, which has none.
    count = sum(p.numel() for p in net.parameters())
    assert count == 23_834_568 + 8 * 2048 + 8 == 23_850_960
    assert count == sum(p.numel() for p in reference.parameters())
    assert not any(p.requires_grad for p in net.parameters())
    assert not net.train().training  # stays in eval mode
    blocks = [type(getattr(net, f"Mixed_{n}")).__name__ for n in ("5b", "5c", "5d", "6b", "6c", "6d", "6e", "7b", "7c")]
    assert blocks == ["FIDInceptionA"] * 3 + ["FIDInceptionC"] * 4 + ["FIDInceptionE"] * 2
    assert (net.Mixed_7b.pool, net.Mixed_7c.pool) == ("avg", "max")


def _pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    """3x3 mean over the pixels inside the image (written with two convolutions, not avg_pool2d)."""
    ones = torch.ones(1, 1, 3, 3, dtype=x.dtype)
    sums = F.conv2d(x.flatten(0, 1)[:, None], ones, padding=1).view_as(x)
    counts = F.conv2d(torch.ones(1, 1, *x.shape[-2:], dtype=x.dtype), ones, padding=1)
    return sums / counts


def _pool_max(x: torch.Tensor) -> torch.Tensor:
    padded = F.pad(x, (1, 1, 1, 1), value=-math.inf)
    return padded.unfold(2, 3, 1).unfold(3, 3, 1).amax(dim=(-1, -2))


@pytest.mark.parametrize(
    ("block", "pooling"),
    [
        (lambda: FIDInceptionA(8, pool_features=4), _pool_without_padding),
        (lambda: FIDInceptionC(8, channels_7x7=4), _pool_without_padding),
        (lambda: FIDInceptionE(8, pool="avg"), _pool_without_padding),
        (lambda: FIDInceptionE(8, pool="max"), _pool_max),
    ],
    ids=["A", "C", "E_1", "E_2"],
)
def test_each_block_pools_as_tensorflow_did(block, pooling):
    torch.manual_seed(0)
    net = block().eval()
    x = torch.rand(2, 8, 5, 6) * 4 - 1
    pool_channels = net.branch_pool.conv.out_channels
    with torch.no_grad():
        got = net(x)[:, -pool_channels:]  # the pooling branch comes last
        expected = net.branch_pool(pooling(x))
    assert_close(got, expected)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights file with random weights, initialised so that the features stay of order 1."""
    torch.manual_seed(0)
    net = FIDInception()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("fid") / FID_WEIGHTS_NAME
    torch.save(net.state_dict(), path)
    return path


def test_a_saved_state_dict_round_trips_and_features_follow_the_protocol(weights):
    net = load_fid_inception(weights)
    saved = torch.load(weights, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())
    assert net.weights_file == FID_WEIGHTS_NAME
    assert net.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()

    seen = []
    net.Conv2d_1a_3x3.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    grey = torch.rand(1, 1, 40, 50)
    with torch.no_grad():
        features = net(grey)
        # pytorch-fid's protocol by hand: three equal channels, bilinear to 299 x 299, then [-1, 1].
        resized = F.interpolate(grey.repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear", align_corners=False)
        again = net(resized)  # 299 -> 299 is the identity
    assert features.shape == (1, 2048) and features.dtype == torch.float32
    assert torch.isfinite(features).all() and features.abs().mean() > 1e-3
    assert_close(seen[0], resized * 2 - 1)
    assert_close(features, again)


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), r"got torch.uint8 .*\(divide uint8 images by 255\)"),
        (torch.zeros(1, 2, 8, 8), r"shape \(B, 1 or 3, H, W\) in \[0, 1\], got torch.float32 of shape \(1, 2, 8, 8\)"),
        (torch.full((1, 3, 8, 8), -1.0), r"values in \[0, 1\], got min -1, max -1"),
    ],
)
def test_the_network_refuses_images_it_does_not_take(images, expected):
    with pytest.raises(ValueError, match=expected):
        FIDInception()(images)


# ------------------------------------------------------------------------------------------------
# the weights file: where it comes from, and what it must hold


def _one_paragraph_with_the_fix(message: str) -> None:
    assert "\n" not in message
    for text in (FID_WEIGHTS_NAME, FID_WEIGHTS_URL, "--fid-weights", FID_WEIGHTS_ENV):
        assert text in message


def test_no_weights_file_given_or_a_missing_one(monkeypatch, tmp_path):
    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    with pytest.raises(OptionError, match="No FID weights file was given") as given:
        load_fid_inception()
    _one_paragraph_with_the_fix(str(given.value))
    with pytest.raises(CheckpointError, match=r"nowhere.pth \(given\) does not exist") as missing:
        load_fid_inception(tmp_path / "nowhere.pth")
    _one_paragraph_with_the_fix(str(missing.value))
    monkeypatch.setenv(FID_WEIGHTS_ENV, str(tmp_path / "env.pth"))
    with pytest.raises(CheckpointError, match=f"env.pth \\(from {FID_WEIGHTS_ENV}\\) does not exist"):
        load_fid_inception(fallback=tmp_path / "recipe.pth")
    monkeypatch.delenv(FID_WEIGHTS_ENV)
    with pytest.raises(CheckpointError, match=r"recipe.pth \(from the recipe's train.eval_fid_weights\)"):
        load_fid_inception(fallback=tmp_path / "recipe.pth")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a torch file", r"cannot be read as PyTorch weights"),
        ([torch.zeros(2)], r"holds a list, not a state dict"),
        ({"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000), "head.scale": torch.ones(1)},
         r"is not the FID Inception weights file: 470 tensors missing \(e.g. Conv2d_1a_3x3.conv.weight; .*\), "
         r"1 tensors unexpected \(e.g. head.scale\), 2 tensors of another shape \(e.g. fc.weight is 1000x2048, "
         r"expected 1008x2048; fc.bias is 1000, expected 1008\)"),
    ],
    ids=["not-torch", "a-list", "wrong-tensors"],
)
def test_a_file_that_is_not_the_weights_is_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "wrong.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=expected) as error:
        load_fid_inception(path)
    _one_paragraph_with_the_fix(str(error.value))


def test_batchnorm_counters_may_be_absent():
    """Files differ in BatchNorm's num_batches_tracked; eval mode never reads them."""
    expected = FIDInception().state_dict()
    without = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    assert len(without) < len(expected)
    _check_tensors(without, expected, file=None)  # no error


# ------------------------------------------------------------------------------------------------
# tkit eval --fid


@pytest.fixture(scope="module")
def run(tmp_path_factory, registry, pm, tiny_facades):
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    root = tmp_path_factory.mktemp("fid_runs")
    tiny = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", quick_overrides(tiny_facades, root) + tiny, registry=registry)
    Trainer(recipe, registry=registry, pm=pm, device="cpu").fit()
    return root / "pix2pix_facades"


class ChannelMeans(nn.Module):
    """A cheap stand-in for the Inception: an image's features are its channel means."""

    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def test_evaluate_compares_the_outputs_with_the_targets(run, registry, pm, tmp_path):
    """FID and KID of `evaluate` equal the references on features of the PNGs it wrote: outputs as
    the generated set, targets as the real one, every image of the split once, across batches."""
    from torchvision.io import read_image

    from translate_kit.eval.evaluate import EvalOptions, eval_dataset, evaluate
    from translate_kit.inference import Translator

    translator = Translator.from_checkpoint(run, device="cpu", registry=registry, pm=pm)
    dataset = eval_dataset(translator.recipe, registry, "train")
    report = evaluate(translator, dataset, options=EvalOptions(split="train", batch_size=3), out_dir=tmp_path,
                      checkpoint=str(run), fid_network=ChannelMeans())
    features = {}
    for key in ("output", "target"):
        images = torch.stack([read_image(str(tmp_path / row["images"][key])) for row in report.per_image])
        features[key] = (images.double() / 255).mean(dim=(2, 3)).numpy()
    assert len(features["output"]) == report.images == 8
    assert report.inception["fid"] == pytest.approx(reference_fid(features["output"], features["target"]), rel=1e-6)
    assert report.inception["kid_mean"] == pytest.approx(
        reference_unbiased_mmd2(features["output"], features["target"]), rel=1e-6, abs=1e-12)
    assert report.inception["kid_subset_size"] == 8 and report.inception["weights"] == ""


def test_eval_fid_end_to_end(run, weights, tmp_path, monkeypatch):
    """`tkit eval --fid` with a (random) weights file from the environment: the figures everywhere.
    The slowest test here: FID's trace term is an eigen-decomposition of a 2048 x 2048 matrix."""
    monkeypatch.setenv(FID_WEIGHTS_ENV, str(weights))
    out, report_path = tmp_path / "eval", tmp_path / "r.json"
    args = ["eval", run, "--fid", "--split", "train", "--limit", "2", "--out", out, "--json", report_path]
    result = CliRunner().invoke(make_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    for text in ("fid", "kid_mean", "kid_std", "2 generated vs 2 real images"):
        assert text in result.output
    report = json.loads(report_path.read_text())
    inception = report["inception"]
    assert set(inception) == {"fid", "kid_mean", "kid_std", "generated_images", "real_images", "kid_subsets",
                              "kid_subset_size", "weights", "weights_sha256"}
    assert (inception["generated_images"], inception["real_images"], inception["kid_subset_size"]) == (2, 2, 2)
    assert inception["kid_subsets"] == 100 and inception["weights"] == FID_WEIGHTS_NAME
    assert inception["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert all(isinstance(inception[k], float) and math.isfinite(inception[k]) for k in ("fid", "kid_mean", "kid_std"))
    page = (out / "index.html").read_text()
    assert "FID and KID" in page and "kid_mean" in page


def test_eval_fid_without_weights_is_one_paragraph(run, monkeypatch):
    monkeypatch.delenv(FID_WEIGHTS_ENV, raising=False)
    result = CliRunner().invoke(make_app(), ["eval", str(run), "--fid", "--split", "train", "--no-images"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    message = " ".join(result.output.split())
    assert "No FID weights file was given" in message and FID_WEIGHTS_NAME in message
    assert "Traceback" not in result.output


def _score_in_a_process_group(rank: int, init_file: str, fake, real, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        score = fid_kid(as_images(fake), as_images(real), network=Identity(5), kid_subsets=3)
        out[rank] = (score.fid, score.kid_mean)
    finally:
        dist.destroy_process_group()


def test_every_rank_of_a_process_group_scores_its_own_images_alone(tmp_path):
    """Under torchrun every rank validates the whole split: FID and KID must gather nothing (that
    would count each image twice, and be a collective call other ranks may not make)."""
    import torch.multiprocessing as mp

    real, fake = gaussian(200, [0.0] * 5, [1.0] * 5, seed=3), gaussian(200, [0.3] * 5, [1.2] * 5, seed=4)
    alone = fid_kid(as_images(fake), as_images(real), network=Identity(5), kid_subsets=3)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_score_in_a_process_group, args=(str(tmp_path / "rendezvous"), fake, real, out), nprocs=2)
        scores = dict(out)
    assert scores == {0: (alone.fid, alone.kid_mean), 1: (alone.fid, alone.kid_mean)}
