"""Real-ESRGAN's degradation pipeline (`plugins/degradations.py`): the drawn parameters follow the
published settings, the kernels are what the formulas say, the output has the LR shape and range,
and a restored RNG state repeats a degradation exactly."""

from __future__ import annotations

import math

import pytest
import torch
import translate_kit_plugins.degradations as degradations
from translate_kit_plugins.degradations import (
    KERNEL_TYPES,
    RESIZE_MODES,
    UPDOWN,
    circular_lowpass_kernels,
    filter2d,
    mixed_kernels,
    realesrgan,
    usm_sharp,
)

from translate_kit.api import RecipeError, Registry, get_plugin_manager

PUBLISHED = {  # train_realesrgan_x4plus.yml and the values Real-ESRGAN's dataset hard-codes
    "scale": 4, "usm_input": True, "kernel_size_range": (7, 21),
    "kernel_prob": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03), "sinc_prob": 0.1, "blur_sigma": (0.2, 3.0),
    "betag_range": (0.5, 4.0), "betap_range": (1.0, 2.0), "resize_prob": (0.2, 0.7, 0.1),
    "resize_range": (0.15, 1.5), "gaussian_noise_prob": 0.5, "noise_range": (1.0, 30.0),
    "poisson_scale_range": (0.05, 3.0), "gray_noise_prob": 0.4, "jpeg_range": (30.0, 95.0),
    "second_blur_prob": 0.8, "kernel_prob2": (0.45, 0.25, 0.12, 0.03, 0.12, 0.03), "sinc_prob2": 0.1,
    "blur_sigma2": (0.2, 1.5), "betag_range2": (0.5, 4.0), "betap_range2": (1.0, 2.0),
    "resize_prob2": (0.3, 0.4, 0.3), "resize_range2": (0.3, 1.2), "gaussian_noise_prob2": 0.5,
    "noise_range2": (1.0, 25.0), "poisson_scale_range2": (0.05, 2.5), "gray_noise_prob2": 0.4,
    "jpeg_range2": (30.0, 95.0), "final_sinc_prob": 0.8,
}
DRAWS = 4000  # images for the per-image statistics
BATCH_DRAWS = 1500  # batches for the per-batch ones


@pytest.fixture
def one_thread():
    """Sampling is many tiny ops, which extra threads only slow down on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def drawn():
    return realesrgan().sample_parameters(DRAWS, torch.Generator().manual_seed(0))


def _frequency_ok(hits: torch.Tensor, p: float, k: float = 4.5) -> bool:
    n = hits.numel()
    return abs(hits.float().mean().item() - p) <= k * math.sqrt(p * (1 - p) / n) + 1e-9


def _between(values: torch.Tensor, lo: float, hi: float) -> bool:
    return bool(((values >= lo - 1e-6) & (values <= hi + 1e-6)).all())


# ------------------------------------------------------------------------------------------------
# The options and the drawn parameters


def test_the_factory_defaults_are_the_published_settings():
    registry = Registry()
    registry.add(realesrgan, plugin="degradations")
    spec = registry.get("degradation", "realesrgan")
    assert {o.name: o.default for o in spec.options} == PUBLISHED


@pytest.mark.parametrize("stage", ["1", "2"])
def test_every_drawn_parameter_lies_in_its_published_range(drawn, stage):
    suffix = "" if stage == "1" else "2"
    blur, noise = f"blur{stage}", f"noise{stage}"
    sizes = drawn[f"{blur}_size"]
    assert bool((sizes % 2 == 1).all()) and _between(sizes, 7, 21)
    assert set(sizes.tolist()) == set(range(7, 22, 2))
    assert _between(drawn[f"{blur}_sigma_x"], *PUBLISHED[f"blur_sigma{suffix}"])
    assert _between(drawn[f"{blur}_sigma_y"], *PUBLISHED[f"blur_sigma{suffix}"])
    assert _between(drawn[f"{blur}_theta"], -math.pi, math.pi)
    types, beta = drawn[f"{blur}_type"], drawn[f"{blur}_beta"]
    assert _between(beta[(types == 2) | (types == 3)], *PUBLISHED[f"betag_range{suffix}"])
    assert _between(beta[(types == 4) | (types == 5)], *PUBLISHED[f"betap_range{suffix}"])
    assert bool((beta[types < 2] == 1).all())
    iso = types % 2 == 0
    assert torch.equal(drawn[f"{blur}_sigma_y"][iso], drawn[f"{blur}_sigma_x"][iso])
    omega = drawn[f"{blur}_omega"]
    assert _between(omega[sizes < 13], math.pi / 3, math.pi) and _between(omega[sizes >= 13], math.pi / 5, math.pi)
    assert omega[sizes >= 13].min() < math.pi / 3  # the wider range is used for large kernels
    assert _between(drawn[f"{noise}_sigma"], *PUBLISHED[f"noise_range{suffix}"])
    assert _between(drawn[f"{noise}_poisson_scale"], *PUBLISHED[f"poisson_scale_range{suffix}"])
    assert _between(drawn[f"jpeg{stage}_quality"], *PUBLISHED[f"jpeg_range{suffix}"])
    assert _between(drawn["final_omega"], math.pi / 3, math.pi)
    assert _between(drawn["final_size"], 7, 21) and bool((drawn["final_size"] % 2 == 1).all())


def test_the_beta_of_a_shaped_kernel_is_below_or_above_one_half_of_the_time(drawn):
    types, beta = drawn["blur1_type"], drawn["blur1_beta"]
    generalised = beta[(types == 2) | (types == 3)]
    assert _frequency_ok(generalised < 1, 0.5)
    plateau = beta[(types == 4) | (types == 5)]
    assert _frequency_ok(plateau == 1, 0.5)  # U(1, 1) half of the time, as the reference


@pytest.mark.parametrize("stage", ["1", "2"])
def test_per_image_choices_match_their_probabilities(drawn, stage):
    suffix = "" if stage == "1" else "2"
    types = drawn[f"blur{stage}_type"]
    for index, p in enumerate(PUBLISHED[f"kernel_prob{suffix}"]):
        assert _frequency_ok(types == index, p), (KERNEL_TYPES[index], (types == index).float().mean())
    assert _frequency_ok(drawn[f"blur{stage}_sinc"], PUBLISHED[f"sinc_prob{suffix}"])
    assert _frequency_ok(drawn[f"noise{stage}_gaussian"], PUBLISHED[f"gaussian_noise_prob{suffix}"])
    assert _frequency_ok(drawn[f"noise{stage}_gray"], PUBLISHED[f"gray_noise_prob{suffix}"])
    assert _frequency_ok(drawn["blur2_apply"], PUBLISHED["second_blur_prob"])
    assert _frequency_ok(drawn["final_sinc"], PUBLISHED["final_sinc_prob"])
    for size in range(7, 22, 2):
        assert _frequency_ok(drawn[f"blur{stage}_size"] == size, 1 / 8)


def test_per_batch_choices_match_their_probabilities(one_thread):
    degrade = realesrgan()
    generator = torch.Generator().manual_seed(1)
    keys = ("resize1_updown", "resize1_scale", "resize1_mode", "resize2_updown", "resize2_scale", "resize2_mode",
            "final_order", "final_mode")
    draws = [degrade.sample_parameters(1, generator) for _ in range(BATCH_DRAWS)]
    got = {key: torch.stack([d[key] for d in draws]) for key in keys}
    for stage, suffix in (("1", ""), ("2", "2")):
        updown, scale = got[f"resize{stage}_updown"], got[f"resize{stage}_scale"]
        for index, p in enumerate(PUBLISHED[f"resize_prob{suffix}"]):
            assert _frequency_ok(updown == index, p), (UPDOWN[index], (updown == index).float().mean())
        lo, hi = PUBLISHED[f"resize_range{suffix}"]
        assert _between(scale[updown == 0], 1, hi) and _between(scale[updown == 1], lo, 1)
        assert bool((scale[updown == 2] == 1).all())
        assert scale[updown == 0].max() > 1 + 0.9 * (hi - 1) and scale[updown == 1].min() < lo + 0.1 * (1 - lo)
        for index in range(len(RESIZE_MODES)):
            assert _frequency_ok(got[f"resize{stage}_mode"] == index, 1 / 3)
    assert _frequency_ok(got["final_order"] == 0, 0.5)
    for index in range(len(RESIZE_MODES)):
        assert _frequency_ok(got["final_mode"] == index, 1 / 3)


def test_sampling_with_a_generator_repeats_and_leaves_the_global_generator_alone():
    degrade = realesrgan()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = degrade.sample_parameters(3, torch.Generator().manual_seed(9))
    again = degrade.sample_parameters(3, torch.Generator().manual_seed(9))
    assert torch.equal(torch.get_rng_state(), before)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


# ------------------------------------------------------------------------------------------------
# Kernels


@pytest.mark.parametrize("key", ["blur1_kernel", "blur2_kernel", "final_kernel"])
def test_kernels_sum_to_one_and_are_odd_sized(drawn, key):
    kernels = drawn[key][:500]
    sizes = drawn["final_size" if key == "final_kernel" else key.replace("kernel", "size")][:500]
    assert kernels.shape == (500, 21, 21)
    torch.testing.assert_close(kernels.sum(dim=(-2, -1)), torch.ones(500), atol=1e-5, rtol=0)
    ax = torch.arange(21) - 10
    radius = (sizes // 2).view(-1, 1, 1)
    outside = (ax.abs().view(1, 1, 21) > radius) | (ax.abs().view(1, 21, 1) > radius)
    if key == "final_kernel":  # a unit pulse where no sinc filter is drawn
        pulse = ~drawn["final_sinc"][:500]
        assert bool((kernels[pulse][:, 10, 10] == 1).all()) and bool((kernels[pulse].abs().sum((-2, -1)) == 1).all())
        outside = outside & ~pulse.view(-1, 1, 1)
    assert bool((kernels[outside] == 0).all())
    assert bool((kernels[:, 10, 10] > 0).all())
    # Every kernel is point-symmetric, so correlation and convolution agree.
    torch.testing.assert_close(kernels, kernels.flip(-1, -2), atol=1e-6, rtol=0)


def test_gaussian_kernels_follow_the_formula():
    ax = torch.arange(21, dtype=torch.float64) - 10
    sizes = torch.tensor([21, 9])
    sigma_x, sigma_y = torch.tensor([2.0, 1.5]), torch.tensor([0.7, 3.0])
    zero = torch.zeros(2)
    iso = mixed_kernels(torch.tensor([0, 0]), sizes, sigma_x, sigma_y, zero, torch.ones(2))
    aniso = mixed_kernels(torch.tensor([1, 1]), sizes, sigma_x, sigma_y, zero, torch.ones(2))
    for i, (k, sx, sy) in enumerate(zip(sizes.tolist(), sigma_x.tolist(), sigma_y.tolist())):
        inside = (ax.abs() <= k // 2).double()
        gx, gy_iso, gy = (torch.exp(-ax**2 / (2 * s**2)) * inside for s in (sx, sx, sy))
        expect_iso = torch.outer(gy_iso, gx)
        expect_aniso = torch.outer(gy, gx)  # sigma_x along the columns (x), sigma_y along the rows
        torch.testing.assert_close(iso[i].double(), expect_iso / expect_iso.sum(), atol=1e-7, rtol=0)
        torch.testing.assert_close(aniso[i].double(), expect_aniso / expect_aniso.sum(), atol=1e-7, rtol=0)
    # A quarter turn swaps the axes.
    turned = mixed_kernels(torch.tensor([1]), torch.tensor([21]), torch.tensor([2.5]), torch.tensor([0.6]),
                           torch.tensor([math.pi / 2]), torch.ones(1))
    plain = mixed_kernels(torch.tensor([1]), torch.tensor([21]), torch.tensor([0.6]), torch.tensor([2.5]),
                          torch.zeros(1), torch.ones(1))
    torch.testing.assert_close(turned, plain, atol=1e-6, rtol=0)


def test_generalised_and_plateau_kernels_follow_the_formula():
    ax = torch.arange(21, dtype=torch.float64) - 10
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    q = (x**2 + y**2) / 1.5**2
    sizes, sigma = torch.tensor([21]), torch.tensor([1.5])
    generalised = mixed_kernels(torch.tensor([2]), sizes, sigma, sigma, torch.zeros(1), torch.tensor([2.5]))
    expect = torch.exp(-0.5 * q**2.5)
    torch.testing.assert_close(generalised[0].double(), expect / expect.sum(), atol=1e-7, rtol=0)
    plateau = mixed_kernels(torch.tensor([4]), sizes, sigma, sigma, torch.zeros(1), torch.tensor([1.5]))
    expect = 1 / (1 + q**1.5)
    torch.testing.assert_close(plateau[0].double(), expect / expect.sum(), atol=1e-7, rtol=0)
    # beta = 1 makes the generalised Gaussian a Gaussian.
    torch.testing.assert_close(mixed_kernels(torch.tensor([2]), sizes, sigma, sigma, torch.zeros(1), torch.ones(1)),
                               mixed_kernels(torch.tensor([0]), sizes, sigma, sigma, torch.zeros(1), torch.ones(1)))


def test_the_sinc_kernel_is_the_circular_lowpass_formula():
    kernel = circular_lowpass_kernels(torch.tensor([math.pi / 4]), torch.tensor([21]))[0].double()
    w = math.pi / 4
    # h(r) = w J1(w r) / (2 pi r), h(0) = w^2 / (4 pi); J1(w r) at r = 4 is J1(pi) = 0.28461534...
    ratio = kernel[10, 14] / kernel[10, 10]
    expect = (w * 0.2846153432 / (2 * math.pi * 4)) / (w**2 / (4 * math.pi))
    assert abs(ratio.item() - expect) < 1e-6
    assert kernel.min() < 0  # side lobes
    torch.testing.assert_close(kernel, kernel.T)
    j1 = torch.special.bessel_j1(torch.tensor(1.0, dtype=torch.float64)).item()
    assert j1 == pytest.approx(0.4400505857, abs=1e-9)


def test_each_image_of_a_batch_gets_its_own_kernel():
    degrade = realesrgan()
    params = degrade.sample_parameters(6, torch.Generator().manual_seed(3))
    kernels = params["blur1_kernel"]
    assert all(not torch.equal(kernels[i], kernels[j]) for i in range(6) for j in range(i + 1, 6))
    impulses = torch.zeros(6, 3, 31, 31)
    impulses[:, :, 15, 15] = 1
    response = filter2d(impulses, kernels)
    for i in range(6):
        for c in range(3):  # a correlation returns the flipped kernel, which is the kernel
            torch.testing.assert_close(response[i, c, 5:26, 5:26], kernels[i].flip(-1, -2), atol=1e-6, rtol=0)


def test_filter2d_pads_by_reflection_also_on_images_smaller_than_the_kernel():
    images = torch.rand(2, 3, 6, 5)
    box = torch.full((2, 21, 21), 1 / 441)
    out = filter2d(images, box)
    assert out.shape == images.shape and torch.isfinite(out).all()
    flat = torch.full((1, 3, 6, 5), 0.3)
    torch.testing.assert_close(filter2d(flat, box[:1]), flat)
    small = torch.rand(1, 1, 12, 12)
    pulse = torch.zeros(1, 3, 3)
    pulse[0, 1, 1] = 1
    torch.testing.assert_close(filter2d(small, pulse), small)


# ------------------------------------------------------------------------------------------------
# The pipeline


@pytest.mark.parametrize("scale", [4, 2])
def test_output_is_the_low_resolution_batch_on_8_bit_levels(scale):
    degrade = realesrgan(scale=scale)
    torch.manual_seed(11)
    hr = torch.rand(4, 3, 64, 64)
    for _ in range(3):
        lr = degrade(hr)
        assert lr.shape == (4, 3, 64 // scale, 64 // scale) and lr.dtype == hr.dtype
        assert lr.min() >= 0 and lr.max() <= 1
        torch.testing.assert_close(lr * 255, (lr * 255).round(), atol=1e-4, rtol=0)
    assert len(list(degrade.parameters())) == 0


def test_other_sizes_dtypes_and_one_channel():
    degrade = realesrgan(scale=4)
    torch.manual_seed(2)
    assert degrade(torch.rand(2, 1, 37, 50)).shape == (2, 1, 9, 12)
    half = degrade(torch.rand(2, 3, 32, 32).to(torch.bfloat16))
    assert half.dtype == torch.bfloat16 and half.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        degrade(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="at least 4x4"):
        degrade(torch.rand(1, 3, 3, 32))


def test_the_same_rng_state_gives_the_same_degradation():
    """A run that restores torch's RNG state (as a checkpoint does) resumes bit for bit."""
    degrade = realesrgan(scale=4)
    hr = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(123)
    first = degrade(hr)
    state = torch.get_rng_state()
    second = degrade(hr)
    torch.set_rng_state(state)
    resumed = degrade(hr)
    assert torch.equal(second, resumed)
    torch.manual_seed(123)
    assert torch.equal(degrade(hr), first)
    assert not torch.equal(first, second)
    # Through a generator: the same output, and the global generator untouched.
    before = torch.get_rng_state()
    a = degrade(hr, generator=torch.Generator().manual_seed(4))
    b = degrade(hr, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), before)


def _quiet(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameters of a degradation reduced to its noise: no blur, no resize, mild JPEG."""
    p = {k: v.clone() for k, v in params.items()}
    b = p["blur1_kernel"].shape[0]
    pulse = torch.zeros(b, 21, 21)
    pulse[:, 10, 10] = 1
    p["blur1_kernel"], p["blur1_size"] = pulse, torch.full((b,), 1)
    p["blur2_apply"][:] = False
    p["resize1_updown"] = torch.tensor(2)
    p["resize2_updown"], p["resize2_scale"], p["resize2_mode"] = torch.tensor(2), torch.tensor(1.0), torch.tensor(1)
    p["final_sinc"][:] = False
    p["final_kernel"] = pulse.clone()
    p["jpeg1_quality"][:] = 95
    p["jpeg2_quality"][:] = 95
    return p


@pytest.mark.parametrize("gaussian", [True, False])
def test_grey_noise_is_shared_by_the_channels_and_colour_noise_is_not(gaussian):
    degrade = realesrgan(scale=1, usm_input=False)
    grey_image = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)).expand(4, 3, 32, 32) * 0.6 + 0.2
    params = _quiet(degrade.sample_parameters(4, torch.Generator().manual_seed(2)))
    for stage in ("noise1", "noise2"):
        params[f"{stage}_gaussian"][:] = gaussian
        params[f"{stage}_sigma"][:] = 20
        params[f"{stage}_poisson_scale"][:] = 2
        params[f"{stage}_gray"] = torch.tensor([True, True, False, False])
    out = degrade.apply(grey_image, params, torch.Generator().manual_seed(3))
    spread = (out.amax(1) - out.amin(1)).flatten(1).amax(1)
    assert bool((spread[:2] <= 2 / 255).all()), spread  # equal up to the codec's rounding
    assert bool((spread[2:] > 10 / 255).all()), spread
    assert (out - grey_image).abs().mean() > 2 / 255  # there is noise


def test_the_degradation_lowers_detail():
    degrade = realesrgan(scale=2)
    torch.manual_seed(0)
    ax = torch.arange(64.0)
    stripes = ((ax.view(1, -1) // 2) % 2).expand(64, 64)  # 2-pixel stripes: gone after blur + downscale
    hr = stripes.expand(4, 3, 64, 64).contiguous()
    lr = degrade(hr)
    assert lr.std() < 0.8 * hr.std()


# ------------------------------------------------------------------------------------------------
# Unsharp masking


def test_usm_sharp_keeps_the_range_and_sharpens_an_edge():
    ax = torch.arange(64.0)
    edge = torch.sigmoid((ax - 32) / 3).view(1, 1, 1, 64).expand(2, 3, 64, 64).contiguous() * 0.8 + 0.1
    sharp = usm_sharp(edge)
    assert sharp.shape == edge.shape and sharp.min() >= 0 and sharp.max() <= 1
    gradient = lambda x: x.diff(dim=-1).abs().amax()  # noqa: E731
    assert gradient(sharp) > 1.1 * gradient(edge)  # weight 0.5, through the soft mask
    assert sharp.amin() < edge.amin() - 0.003  # the unsharp mask's undershoot next to the edge
    flat = torch.full((1, 3, 40, 40), 0.4)
    torch.testing.assert_close(usm_sharp(flat), flat)  # nothing to sharpen, nothing changed
    noisy = torch.rand(2, 3, 16, 16)  # smaller than the 51 x 51 kernel: reflected repeatedly
    out = usm_sharp(noisy)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    assert "usm_sharp" in degradations.__all__


def test_usm_sharp_blurs_with_opencvs_gaussian_for_the_size():
    """radius 50 is made odd (51, as Real-ESRGAN does) and sigma = 0.3 ((51 - 1) / 2 - 1) + 0.8 = 8."""
    image = torch.zeros(1, 1, 101, 101)
    image[0, 0, 50, 50] = 1.0
    residual_threshold = 1e9  # no pixel passes the threshold: the output is the image
    torch.testing.assert_close(usm_sharp(image, threshold=residual_threshold), image)
    g = degradations._gaussian_1d(51, torch.float64, torch.device("cpu"))
    ax = torch.arange(51, dtype=torch.float64) - 25
    expect = torch.exp(-ax**2 / (2 * 8.0**2))
    torch.testing.assert_close(g, expect / expect.sum())


# ------------------------------------------------------------------------------------------------
# Registration


def test_the_component_builds_through_a_registry_with_its_tiny_options():
    registry = Registry()
    registry.add(realesrgan, plugin="degradations")
    spec = registry.get("degradation", "realesrgan")
    degrade = registry.create("degradation", "realesrgan", **spec.tiny)
    torch.manual_seed(0)
    assert degrade(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32 // degrade.scale, 32 // degrade.scale)
    table = {"name": "realesrgan", "scale": 2, "jpeg_range": [50, 90]}
    built = registry.build("degradation", table, where="[degradation]")
    assert built.settings.first.jpeg_range == (50.0, 90.0)
    with pytest.raises(RecipeError, match="resize_range"):
        registry.build("degradation", {"name": "realesrgan", "resize_range": [1.2, 1.5]}, where="[degradation]")
    with pytest.raises(RecipeError, match="kernel_size_range"):
        registry.build("degradation", {"name": "realesrgan", "kernel_size_range": [6, 21]}, where="[degradation]")


def test_the_plugin_module_registers_the_degradation_kind():
    pm = get_plugin_manager(autoload=False, plugins=[degradations], disabled=[])
    registry = Registry.from_plugin_manager(pm)
    assert registry.names("degradation") == ["realesrgan"]
    assert "degradation" in registry.kinds()
