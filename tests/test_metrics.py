"""Eval metrics against independent NumPy computations, FCN-score on hand-made matrices, label decoding.

The references here are written differently from the library on purpose: PSNR from NumPy means, SSIM
from an explicit 2-D Gaussian window over NumPy sliding windows with two-pass (centred) moments, the
confusion matrix from `np.add.at`, palette decoding from a NumPy distance table.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from translate_kit.data.palette import FACADES_CLASSES, FACADES_PALETTE
from translate_kit.errors import DataError
from translate_kit.eval import (
    FACADES,
    PSNR,
    SSIM,
    ConfusionMatrix,
    Palette,
    PixelMetrics,
    decode_index_image,
    decode_palette,
    encode_palette,
    l1,
    mse,
    psnr,
    ssim,
)

FACADES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "facades"

# Tolerances of the library against the NumPy references. Both compute in float64 from the same input
# values (the library upcasts every input dtype before kornia sees it), so only rounding differs: SSIM's
# one-pass moments E[x^2] - mu^2 (kornia's) against the reference's centred two-pass moments cost a few
# ulps of the variance.
TOL = {
    "l1": {"rtol": 1e-12, "atol": 1e-14},
    "mse": {"rtol": 1e-12, "atol": 1e-14},
    "psnr": {"rtol": 1e-11, "atol": 1e-10},
    "ssim": {"rtol": 1e-9, "atol": 1e-10},
    "closed_form": {"rtol": 1e-12, "atol": 1e-12},
}
INPUT_DTYPES = [torch.float64, torch.float32, torch.float16]


def assert_close(actual, expected, *, rtol: float, atol: float, msg: str = "") -> None:
    """NumPy comparison (torch.testing.assert_close would import torch.distributed: +1.5 s)."""
    actual, expected = (
        x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in (actual, expected)
    )
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=msg)


# --------------------------------------------------------------------------------------------------
# independent references


def np_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(data_range) - 10.0 * np.log10(err)


def np_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Wang et al. SSIM, 'valid' windows only: explicit 2-D window, centred weighted moments."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2.0
    window = np.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))
    window /= window.sum()
    pa = np.lib.stride_tricks.sliding_window_view(a, (size, size), axis=(2, 3))  # (B, C, H', W', s, s)
    pb = np.lib.stride_tricks.sliding_window_view(b, (size, size), axis=(2, 3))
    mu_a = np.einsum("bchwij,ij->bchw", pa, window)
    mu_b = np.einsum("bchwij,ij->bchw", pb, window)
    da = pa - mu_a[..., None, None]
    db = pb - mu_b[..., None, None]
    var_a = np.einsum("bchwij,ij->bchw", da * da, window)
    var_b = np.einsum("bchwij,ij->bchw", db * db, window)
    cov = np.einsum("bchwij,ij->bchw", da * db, window)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.mean(axis=(1, 2, 3))


def np_confusion(pred: np.ndarray, true: np.ndarray, k: int, ignore: int = 255) -> np.ndarray:
    hist = np.zeros((k, k), dtype=np.int64)
    keep = true != ignore
    np.add.at(hist, (true[keep], pred[keep]), 1)
    return hist


def np_nearest(image: np.ndarray, colors: np.ndarray, max_distance: float | None) -> np.ndarray:
    """(3, H, W) uint8 -> nearest colour index by a full distance table; 255 beyond max_distance."""
    pixels = image.reshape(3, -1).T.astype(np.float64)  # (N, 3)
    dist = np.sqrt(((pixels[:, None, :] - colors[None, :, :].astype(np.float64)) ** 2).sum(-1))  # (N, K)
    out = dist.argmin(1)  # first minimum on ties, as documented for the library
    if max_distance is not None:
        out[dist.min(1) > max_distance] = 255
    return out.reshape(image.shape[1:])


def pair(seed: int, shape=(3, 3, 32, 29), dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A target and a noisy, partly structured prediction, both in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g, dtype=torch.float64)
    target = (target + torch.linspace(0, 1, shape[-1], dtype=torch.float64)) / 2  # some structure
    pred = (target + 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return pred.to(dtype), target.to(dtype)


# --------------------------------------------------------------------------------------------------
# per-image metrics


@pytest.mark.parametrize("dtype", INPUT_DTYPES)
def test_pixel_metrics_match_numpy(dtype):
    pred, target = pair(0, dtype=dtype)
    a, b = pred.double().numpy(), target.double().numpy()
    expected = {
        "l1": np.abs(a - b).mean(axis=(1, 2, 3)),
        "mse": ((a - b) ** 2).mean(axis=(1, 2, 3)),
        "psnr": np_psnr(a, b),
        "ssim": np_ssim(a, b),
    }
    got = {"l1": l1(pred, target), "mse": mse(pred, target), "psnr": psnr(pred, target), "ssim": ssim(pred, target)}
    for name, value in got.items():
        assert value.shape == (3,) and value.dtype == torch.float64
        assert_close(value, torch.from_numpy(expected[name]), **TOL[name], msg=name)


@pytest.mark.parametrize(("data_range", "size", "sigma"), [(255.0, 11, 1.5), (1.0, 7, 1.0), (1.0, 3, 0.8)])
def test_ssim_parameters_match_numpy(data_range, size, sigma):
    pred, target = pair(1, shape=(2, 1, 20, 24))
    pred, target = pred * data_range, target * data_range
    got = ssim(pred, target, data_range=data_range, window_size=size, sigma=sigma)
    expected = np_ssim(pred.numpy(), target.numpy(), data_range, size, sigma)
    assert_close(got, torch.from_numpy(expected), **TOL["ssim"])
    assert_close(
        psnr(pred, target, data_range),
        torch.from_numpy(np_psnr(pred.numpy(), target.numpy(), data_range)),
        **TOL["psnr"],
    )


@pytest.mark.parametrize(("data_range", "size"), [(1.0, 11), (255.0, 7)])
def test_ssim_sigma_paths_agree_at_kornias_sigma(data_range, size):
    """sigma 1.5 is `kornia.metrics.ssim` itself; any other sigma is assembled from kornia's Gaussian kernel
    and `filter2d_separable`. The two paths must meet: a sigma one ulp off 1.5 takes the second path and
    must give kornia's score, and both must be the NumPy reference."""
    pred, target = pair(2, shape=(2, 3, 24, 24))
    pred, target = pred * data_range, target * data_range
    at_kornia_sigma = ssim(pred, target, data_range, size, 1.5)
    one_ulp_off = ssim(pred, target, data_range, size, math.nextafter(1.5, 2.0))
    assert_close(one_ulp_off, at_kornia_sigma, rtol=0, atol=1e-13)
    expected = torch.from_numpy(np_ssim(pred.numpy(), target.numpy(), data_range, size, 1.5))
    assert_close(at_kornia_sigma, expected, **TOL["ssim"])


def test_metrics_import_does_not_import_kornia():
    """kornia costs ~0.3 s to import: it is imported when SSIM is first computed, not with the module."""
    code = (
        "import sys, torch\n"
        "import translate_kit.eval.metrics as m\n"
        "assert 'kornia' not in sys.modules, 'imported with the module'\n"
        "m.ssim(torch.zeros(1, 1, 11, 11), torch.zeros(1, 1, 11, 11))\n"
        "assert 'kornia' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_identical_images_give_inf_psnr_and_unit_ssim():
    x, _ = pair(3, shape=(2, 3, 16, 16))
    assert psnr(x, x).tolist() == [math.inf, math.inf]
    assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-15)
    assert_close(ssim(x, x, sigma=1.0), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-15)  # non-kornia sigma
    assert l1(x, x).tolist() == [0.0, 0.0] and mse(x, x).tolist() == [0.0, 0.0]


def test_closed_forms():
    zeros = torch.zeros(1, 3, 12, 12, dtype=torch.float64)
    shifted = torch.full((1, 3, 12, 12), 0.1, dtype=torch.float64)
    assert_close(psnr(zeros, shifted), torch.tensor([20.0], dtype=torch.float64), **TOL["closed_form"])
    assert_close(PSNR()(zeros, shifted), torch.tensor([20.0], dtype=torch.float64), **TOL["closed_form"])
    # flat images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.25, 0.75, 0.01**2
    flat_a = torch.full((1, 1, 11, 11), a, dtype=torch.float64)
    flat_b = torch.full((1, 1, 11, 11), b, dtype=torch.float64)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert_close(SSIM()(flat_a, flat_b), torch.tensor([expected], dtype=torch.float64), **TOL["closed_form"])


def test_ssim_symmetric_bounded_and_decreasing_with_noise():
    g = torch.Generator().manual_seed(4)
    target = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64)
    noise = torch.randn(1, 3, 32, 32, generator=g, dtype=torch.float64)
    scores = [ssim((target + s * noise).clamp(0, 1), target).item() for s in (0.0, 0.05, 0.1, 0.3)]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0)
    p, t = pair(5)
    assert_close(ssim(p, t), ssim(t, p), rtol=0, atol=1e-15)
    assert bool(((ssim(p, t) <= 1) & (ssim(p, t) >= -1)).all())


@pytest.mark.parametrize(
    ("pred", "target", "kwargs", "error", "message"),
    [
        (torch.zeros(3, 16, 16), torch.zeros(3, 16, 16), {}, ValueError, r"expected pred of shape \(B, C, H, W\)"),
        (torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15), {}, ValueError, "same shape"),
        (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), torch.zeros(1, 3, 16, 16), {}, TypeError, "divide uint8"),
        (torch.full((1, 3, 16, 16), -0.5), torch.zeros(1, 3, 16, 16), {}, ValueError, r"\(x \+ 1\) / 2"),
        (torch.full((1, 3, 16, 16), 1.5), torch.zeros(1, 3, 16, 16), {}, ValueError, r"in \[0, 1\], got min 1.5"),
        (torch.full((1, 3, 16, 16), math.nan), torch.zeros(1, 3, 16, 16), {}, ValueError, "got min nan"),
        (torch.zeros(1, 3, 8, 16), torch.zeros(1, 3, 8, 16), {}, ValueError, "at least 11x11"),
        (torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), {"window_size": 4}, ValueError, "positive odd"),
        (torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), {"data_range": 0}, ValueError, "data_range"),
    ],
)
def test_metric_input_guards(pred, target, kwargs, error, message):
    with pytest.raises(error, match=f"(?i){message}"):
        ssim(pred, target, **kwargs)


# --------------------------------------------------------------------------------------------------
# streaming accumulator


def test_pixel_metrics_accumulates_batches():
    batches = [pair(10 + i, shape=(b, 3, 16, 20)) for i, b in enumerate((2, 3, 1))]
    metrics = PixelMetrics()
    names = [f"{i}.jpg" for i in range(6)]
    start = 0
    for pred, target in batches:
        values = metrics.update(pred, target, names=names[start : start + pred.shape[0]])
        assert set(values) == {"l1", "mse", "psnr", "ssim"} and values["ssim"].shape == (pred.shape[0],)
        start += pred.shape[0]
    all_pred = torch.cat([p for p, _ in batches]).numpy()
    all_target = torch.cat([t for _, t in batches]).numpy()
    expected = {
        "l1": np.abs(all_pred - all_target).mean(axis=(1, 2, 3)),
        "mse": ((all_pred - all_target) ** 2).mean(axis=(1, 2, 3)),
        "psnr": np_psnr(all_pred, all_target),
        "ssim": np_ssim(all_pred, all_target),
    }
    assert metrics.count == 6
    result = metrics.compute()
    for name in ("l1", "mse", "psnr", "ssim"):
        assert result[name] == pytest.approx(expected[name].mean(), rel=1e-9)
        assert [row[name] for row in metrics.per_image] == pytest.approx(list(expected[name]), rel=1e-9)
    assert [row["name"] for row in metrics.per_image] == names
    json.dumps(metrics.per_image)  # page-ready


def test_pixel_metrics_merge_equals_single_pass_and_guards():
    (p1, t1), (p2, t2) = pair(20, shape=(2, 3, 12, 12)), pair(21, shape=(3, 3, 12, 12))
    single, first, second = PixelMetrics(), PixelMetrics(), PixelMetrics()
    single.update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    first.update(p1, t1)
    second.update(p2, t2)
    assert first.merge(second).compute() == pytest.approx(single.compute(), rel=1e-12)
    assert first.count == single.count == 5
    for row, ref in zip(first.per_image, single.per_image):
        assert row == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="same data_range"):
        first.merge(PixelMetrics(data_range=255.0))
    with pytest.raises(ValueError, match="at least one image"):
        PixelMetrics().compute()
    with pytest.raises(ValueError, match="2 names"):
        PixelMetrics().update(p1, t1, names=["only-one"])
    first.reset()
    assert first.count == 0


def test_pixel_metrics_identical_split_reports_inf_psnr():
    metrics = PixelMetrics()
    x, _ = pair(22, shape=(2, 3, 12, 12))
    metrics.update(x, x)
    result = metrics.compute()
    assert result["psnr"] == math.inf and result["ssim"] == pytest.approx(1.0) and result["l1"] == 0.0


# --------------------------------------------------------------------------------------------------
# FCN-score


def test_fcn_score_hand_made_matrix():
    """4 classes: 0 and 1 in both, 2 only predicted, 3 in neither (excluded as by nanmean)."""
    true = torch.tensor([[0, 0, 0, 1, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 1, 1, 2]])
    cm = ConfusionMatrix(4, class_names=["a", "b", "c", "d"])
    cm.update(pred, true)
    assert cm.hist.tolist() == [[2, 1, 0, 0], [0, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    score = cm.compute()
    assert score.pixel_accuracy == pytest.approx(4 / 6)
    assert score.mean_class_accuracy == pytest.approx(2 / 3)  # mean of 2/3, 2/3; classes 2 and 3 are NaN
    assert score.mean_iou == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # class 2 counts with IoU 0; class 3 excluded
    c = score.per_class
    assert [x.name for x in c] == ["a", "b", "c", "d"] and score.pixels == 6
    assert math.isnan(c[2].accuracy) and c[2].iou == 0.0 and (c[2].gt_pixels, c[2].pred_pixels) == (0, 1)
    assert math.isnan(c[3].accuracy) and math.isnan(c[3].iou) and (c[3].gt_pixels, c[3].pred_pixels) == (0, 0)
    assert (c[0].accuracy, c[0].iou, c[0].gt_pixels, c[0].pred_pixels) == pytest.approx((2 / 3, 2 / 3, 3, 2))
    assert set(score.to_dict()) == {"pixel_accuracy", "mean_class_accuracy", "mean_iou", "per_class", "pixels"}


def test_fcn_score_class_only_in_ground_truth_and_perfect():
    cm = ConfusionMatrix(3)
    cm.hist = torch.tensor([[5, 0, 0], [0, 3, 0], [2, 0, 0]])  # class 2 never predicted
    score = cm.compute()
    assert score.pixel_accuracy == pytest.approx(8 / 10)
    assert score.mean_class_accuracy == pytest.approx((1 + 1 + 0) / 3)
    assert score.mean_iou == pytest.approx((5 / 7 + 1 + 0) / 3)
    perfect = ConfusionMatrix(3)
    perfect.update(torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0, 1], [1, 0]]))
    s = perfect.compute()
    assert (s.pixel_accuracy, s.mean_class_accuracy, s.mean_iou) == (1.0, 1.0, 1.0)  # class 2 excluded


def test_confusion_matrix_matches_brute_force_and_merge():
    g = np.random.default_rng(0)
    k = 6
    true = g.integers(0, k, size=(4, 17, 13))
    true[g.random(true.shape) < 0.2] = 255
    pred = g.integers(0, k, size=(4, 17, 13))
    single = ConfusionMatrix(k)
    single.update(torch.from_numpy(pred), torch.from_numpy(true).to(torch.uint8))
    expected = np_confusion(pred, true, k)
    assert single.hist.tolist() == expected.tolist()
    assert single.pixels == int((true != 255).sum())
    parts = [ConfusionMatrix(k) for _ in range(4)]
    for i, part in enumerate(parts):
        part.update(torch.from_numpy(pred[i]), torch.from_numpy(true[i]))
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert torch.equal(merged.hist, single.hist)
    assert merged.pixels == single.pixels and merged.compute().mean_iou == single.compute().mean_iou
    # reference formulas written with numpy nanmean
    diag = np.diag(expected).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = (
            diag.sum() / expected.sum(),
            np.nanmean(diag / expected.sum(1)),
            np.nanmean(diag / (expected.sum(1) + expected.sum(0) - diag)),
        )
    score = single.compute()
    assert (score.pixel_accuracy, score.mean_class_accuracy, score.mean_iou) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize(
    ("pred", "true", "error", "message"),
    [
        (torch.tensor([[0, 1]]), torch.tensor([[0, 7]]), ValueError, r"true_labels in 0..2 .*got values \[7\]"),
        (torch.tensor([[0, 9]]), torch.tensor([[0, 1]]), ValueError, r"pred_labels in 0..2 .*got values \[9\]"),
        (torch.tensor([[0.0, 1.0]]), torch.tensor([[0, 1]]), TypeError, "integer tensor"),
        (torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1]]), ValueError, "same shape"),
    ],
)
def test_confusion_matrix_guards(pred, true, error, message):
    with pytest.raises(error, match=message):
        ConfusionMatrix(3).update(pred, true)


def test_confusion_matrix_construction_guards_and_ignored_prediction():
    with pytest.raises(ValueError, match="outside the class indices"):
        ConfusionMatrix(300)
    with pytest.raises(ValueError, match="same num_classes"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="counted pixels"):
        ConfusionMatrix(3).compute()
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 99]]), torch.tensor([[0, 255]]))  # a prediction under an ignored pixel is skipped
    assert cm.pixels == 1


# --------------------------------------------------------------------------------------------------
# label maps


def test_facades_palette_matches_data_palette():
    assert FACADES.names == FACADES_CLASSES and FACADES.colors == FACADES_PALETTE
    assert FACADES.ids == tuple(range(1, 13)) and len(FACADES) == 12
    assert FACADES.color_table().shape == (12, 3)
    with pytest.raises(ValueError, match="one colour per class"):
        Palette(("a", "b"), ((0, 0, 0),))
    with pytest.raises(ValueError, match="distinct colours"):
        Palette(("a", "b"), ((0, 0, 0), (0, 0, 0)))
    with pytest.raises(ValueError, match="values 0..255"):
        Palette(("a",), ((0, 0, 256),))


def test_exact_palette_colours_decode_exactly():
    indices = torch.arange(12).repeat_interleave(3).view(4, 9)
    image = FACADES.color_table()[indices].permute(2, 0, 1)
    for max_distance in (None, 0, 50):
        assert torch.equal(decode_palette(image, FACADES, max_distance), indices)
    batch = torch.stack([image, image.flip(-1)])
    assert torch.equal(decode_palette(batch, FACADES, 0), torch.stack([indices, indices.flip(-1)]))


def blurred_edge_image(seed: int, a: int, b: int, width: int = 40, height: int = 6, noise: int = 4) -> np.ndarray:
    """Class a on the left, b on the right, a JPEG-like blend across 6 columns, and +-noise everywhere."""
    colors = np.array(FACADES_PALETTE, dtype=np.float64)
    alpha = np.clip((np.arange(width) - (width / 2 - 3)) / 6.0, 0, 1)  # 0 ... 0, ramp over 6 px, 1 ... 1
    row = (1 - alpha)[:, None] * colors[a] + alpha[:, None] * colors[b]  # (W, 3)
    image = np.repeat(row.T[:, None, :], height, axis=1)  # (3, H, W)
    rng = np.random.default_rng(seed)
    image = image + rng.integers(-noise, noise + 1, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("a", "b"), [(1, 9), (2, 6), (0, 11), (4, 7)])
@pytest.mark.parametrize("max_distance", [None, 20.0, 50.0])
def test_blurred_edges_decode_to_nearest_or_ignored(a, b, max_distance):
    image = blurred_edge_image(a * 31 + b, a, b)
    decoded = decode_palette(torch.from_numpy(image), FACADES, max_distance)
    expected = np_nearest(image, np.array(FACADES_PALETTE), max_distance)
    assert decoded.dtype == torch.int64 and decoded.tolist() == expected.tolist()
    # inside the regions (away from the 6-px ramp) the class is exact despite the noise
    assert (decoded[:, :15] == a).all() and (decoded[:, -15:] == b).all()
    if max_distance == 20.0:
        assert (decoded[:, 17:23] == 255).any()  # mid-ramp blends are beyond the threshold


def test_decode_palette_threshold_is_inclusive_and_guards():
    # (0, 48, 255) + (3, 4, 0) is exactly 5 from 'facade'
    image = torch.tensor([3, 52, 255], dtype=torch.uint8).view(3, 1, 1)
    assert decode_palette(image, FACADES, 5.0).item() == 1
    assert decode_palette(image, FACADES, 4.99).item() == 255
    assert decode_palette(image, FACADES, 4.99, ignore_index=-1).item() == -1
    with pytest.raises(TypeError, match="uint8"):
        decode_palette(image.float(), FACADES)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        decode_palette(torch.zeros(1, 4, 4, dtype=torch.uint8), FACADES)
    with pytest.raises(ValueError, match="max_distance"):
        decode_palette(image, FACADES, -1)
    with pytest.raises(ValueError, match="outside the class indices"):
        decode_palette(image, FACADES, ignore_index=3)


def test_encode_decode_round_trip():
    g = torch.Generator().manual_seed(7)
    indices = torch.randint(0, 12, (2, 9, 11), generator=g)
    indices[0, 0, :4] = 255
    rgb = encode_palette(indices, FACADES)
    assert rgb.dtype == torch.uint8 and rgb.shape == (2, 3, 9, 11)
    assert rgb[0, :, 0, 0].tolist() == [0, 0, 0]  # ignored -> ignore_color
    assert rgb[1, :, 3, 5].tolist() == list(FACADES_PALETTE[indices[1, 3, 5]])
    assert torch.equal(decode_palette(rgb, FACADES, max_distance=0), indices)
    assert encode_palette(indices[0], FACADES).shape == (3, 9, 11)
    with pytest.raises(ValueError, match=r"got values \[12\]"):
        encode_palette(torch.tensor([[12]]), FACADES)


def test_decode_index_image():
    image = torch.tensor([[[0, 1, 2], [255, 2, 0]]], dtype=torch.uint8)  # (1, 2, 3)
    assert decode_index_image(image, 3).tolist() == [[0, 1, 2], [255, 2, 0]]
    assert decode_index_image(image.unsqueeze(0), 3).shape == (1, 2, 3)
    # 0 as "unknown": ignored wins over being a class index
    assert decode_index_image(image, 3, ignore_values=(0, 255)).tolist() == [[255, 1, 2], [255, 2, 255]]
    bad = torch.tensor([[[0, 37, 40, 255]]], dtype=torch.uint8)
    with pytest.raises(DataError, match=r"Label value 37 in labels/3.png is not a class: expected 0..2.*37, 40"):
        decode_index_image(bad, 3, source="labels/3.png")
    with pytest.raises(DataError, match="255"):
        decode_index_image(image, 3, ignore_values=())
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        decode_index_image(torch.zeros(3, 2, 2, dtype=torch.uint8), 3)


# --------------------------------------------------------------------------------------------------
# real data and accelerators


@pytest.mark.skipif(not FACADES_DIR.is_dir(), reason=f"facades data not found at {FACADES_DIR}")
def test_real_facades_label_map_decodes():
    """Label half of a real test image: 87.1 % of pixels lie within 60 of a palette colour (JPEG-blurred
    edges are the rest; over the whole test split the mean is 83.9 % at 40, 86.5 % at 50, 89.0 % at 60)."""
    from translate_kit.data.io import read_image

    labels = read_image(FACADES_DIR / "test" / "1.jpg")[:, :, 256:]
    decoded = decode_palette(labels, FACADES, max_distance=60)
    assert decoded.shape == (256, 256)
    coverage = (decoded != 255).double().mean().item()
    assert coverage > 0.85, coverage
    counts = torch.bincount(decoded[decoded != 255], minlength=12)
    assert FACADES.names[int(counts.argmax())] in {"facade", "background", "window"}
    # a looser threshold only adds pixels, and every snapped pixel keeps its nearest class
    loose = decode_palette(labels, FACADES, max_distance=None)
    assert torch.equal(loose[decoded != 255], decoded[decoded != 255])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    pred, target = pair(30, shape=(2, 3, 32, 32), dtype=torch.float32)
    for fn in (l1, mse, psnr, ssim):
        assert_close(fn(pred.cuda(), target.cuda()).cpu(), fn(pred, target), **TOL["ssim"])
    labels = torch.randint(0, 4, (2, 16, 16))
    cpu, gpu = ConfusionMatrix(4), ConfusionMatrix(4)
    cpu.update(labels.flip(-1), labels)
    gpu.update(labels.flip(-1).cuda(), labels.cuda())
    assert torch.equal(cpu.hist, gpu.hist)
    image = torch.from_numpy(blurred_edge_image(0, 1, 9))
    assert torch.equal(decode_palette(image.cuda(), FACADES, 30).cpu(), decode_palette(image, FACADES, 30))
    assert torch.equal(encode_palette(labels.cuda(), FACADES).cpu(), encode_palette(labels, FACADES))
