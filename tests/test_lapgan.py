"""LAPGAN: the Laplacian pyramid (shapes, exact round trip), the coarse-to-fine generator (finest =
upsampled coarse + band, exactly), the per-level networks and losses, and recipe errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPES, quick_overrides
from translate_kit_plugins.gan_losses import vanilla
from translate_kit_plugins.lapgan import (
    LAPGAN,
    LaplacianGenerator,
    LevelDiscriminators,
    downsample,
    gaussian_pyramid,
    laplacian_pyramid,
    reconstruct,
    upsample,
)
from translate_kit_plugins.patchgan import patchgan
from translate_kit_plugins.pix2pix import Pix2Pix
from translate_kit_plugins.unet import unet

from translate_kit.api import RecipeError, build_method
from translate_kit.build import check_sizes
from translate_kit.recipe import load_recipe
from translate_kit.testing import RecordingContext

# U-Nets of 3 levels (no dropout) and 16-pixel PatchGANs: every level of a 32-pixel crop fits.
TINY = ["generator.num_downs=3", "generator.ngf=4", "discriminator.ndf=4", "discriminator.n_layers=1"]


def make_method(levels: int = 3) -> LAPGAN:
    torch.manual_seed(0)
    generators = [unet(num_downs=3, ngf=4)] + [unet(num_downs=3, ngf=4, in_channels=6) for _ in range(levels - 1)]
    discriminators = [patchgan(in_channels=6, ndf=4, n_layers=1) for _ in range(levels)]
    return LAPGAN(LaplacianGenerator(generators), LevelDiscriminators(discriminators), vanilla(), lambda_l1=100.0,
                  conditional=True)


# ------------------------------------------------------------------------------------------------
# The pyramid


def test_pyramid_shapes():
    x = torch.rand(2, 3, 32, 48)
    assert [tuple(t.shape) for t in gaussian_pyramid(x, 3)] == [(2, 3, 8, 12), (2, 3, 16, 24), (2, 3, 32, 48)]
    coarse, bands = laplacian_pyramid(x, 3)
    assert tuple(coarse.shape) == (2, 3, 8, 12)
    assert [tuple(b.shape) for b in bands] == [(2, 3, 16, 24), (2, 3, 32, 48)]
    assert gaussian_pyramid(x, 1) == [x] and laplacian_pyramid(x, 1)[1] == []
    assert downsample(x)[0, 0, 0, 0].item() == pytest.approx(x[0, 0, :2, :2].mean().item(), abs=1e-7)  # 2x2 means
    assert tuple(gaussian_pyramid(x, 5)[0].shape) == (2, 3, 2, 3)
    with pytest.raises(ValueError, match=r"H, W even, got \(2, 3, 2, 3\)"):
        gaussian_pyramid(x, 6)  # 48 is 3 x 2^4: no sixth level
    with pytest.raises(ValueError, match="levels >= 1, got 0"):
        gaussian_pyramid(x, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decomposition_and_reconstruction_are_exact(dtype):
    # 8-bit images scaled by a power of two: every average and bilinear weight (1/4, 3/4) is exact.
    x = (torch.randint(0, 256, (2, 3, 32, 32)) - 128).to(dtype) / 128
    coarse, bands = laplacian_pyramid(x, 3)
    assert torch.equal(reconstruct(coarse, bands), x)
    assert torch.equal(upsample(downsample(x)) + bands[-1], x)  # the finest band is what the blur loses
    y = torch.randn(2, 3, 32, 32, dtype=dtype)  # any values: up to rounding
    assert torch.allclose(reconstruct(*laplacian_pyramid(y, 4)), y, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# Networks


def test_finest_output_is_the_upsampled_coarser_image_plus_the_band_exactly():
    method = make_method().eval()
    G = method.nets["G"]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        chained = G(x)
        assert [tuple(t.shape[-2:]) for t in chained.images] == [(8, 8), (16, 16), (32, 32)]
        assert [tuple(b.shape[-2:]) for b in chained.bands] == [(16, 16), (32, 32)]
        for level in (1, 2):
            assert torch.equal(chained.images[level], upsample(chained.images[level - 1]) + chained.bands[level - 1])
        # The band is the level's own generator on (the input at its scale, the upsampled coarser image).
        inputs = gaussian_pyramid(x, 3)
        expected = G.levels[2](torch.cat([inputs[2], upsample(chained.images[1])], dim=1))
        assert torch.equal(chained.bands[-1], expected)
        assert torch.equal(chained.images[0], G.levels[0](inputs[0]))
        # Training: each finer level refines the real coarser image instead.
        target = torch.rand(2, 3, 32, 32) * 2 - 1
        taught = method.generate(x, target)
        real = gaussian_pyramid(target, 3)
        for level in (1, 2):
            assert torch.equal(taught.images[level], upsample(real[level - 1]) + taught.bands[level - 1])
        assert torch.equal(method.translate(x), chained.images[-1].clamp(-1, 1))
    with pytest.raises(ValueError, match="Expected 2 teacher images"):
        G(x, teacher=[x])


def test_sizes_are_declared_in_full_size_pixels():
    G = make_method().nets["G"]
    # Each U-Net takes multiples of 8 at its own level: 32, 16 and 8 full-size pixels.
    assert (G.size_multiple, G.min_size) == (32, 32)
    D = make_method(2).nets["D"]
    assert (D.size_multiple, D.min_size) == (2, 12)  # a 16-pixel PatchGAN needs 6 pixels at half size


def test_the_step_sums_pix2pixs_losses_over_levels():
    method = make_method()
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    ctx = RecordingContext()
    logged = method.training_step({"A": a, "B": b}, ctx)
    assert LAPGAN.training_step is Pix2Pix.training_step  # a subclass, not a copy

    G, D = method.nets["G"], method.nets["D"]
    inputs, targets = gaussian_pyramid(a, 3), gaussian_pyramid(b, 3)
    images = G(a, teacher=targets[:-1]).images  # no dropout in 3-level U-Nets: the same images again
    loss_d = loss_g = 0.0
    for level in range(3):
        d = D.levels[level]
        real = d(torch.cat([inputs[level], targets[level]], 1))
        fake = d(torch.cat([inputs[level], images[level].detach()], 1))
        loss_d += 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                         + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        fooled = d(torch.cat([inputs[level], images[level]], 1))
        loss_g += F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        loss_g += 100.0 * (images[level] - targets[level]).abs().mean()
    assert torch.allclose(ctx.losses["D"], loss_d, rtol=1e-6, atol=0)
    assert torch.allclose(ctx.losses["G"], loss_g, rtol=1e-6, atol=0)
    assert set(logged) == {"loss_G_GAN", "loss_G_L1", "loss_D_real", "loss_D_fake"}


def test_each_level_gets_only_its_own_gradient():
    """Joint training is L independent pix2pix trainings: level l's loss reaches no other level."""
    method = make_method()
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fake = method.generate(a, b)
    G = method.nets["G"]
    inputs, targets = gaussian_pyramid(a, 3), gaussian_pyramid(b, 3)
    level_1 = Pix2Pix.reconstruction_loss(method, fake.images[1], targets[1])
    level_1 = level_1 + Pix2Pix.generator_adversarial_loss(
        method, lambda pairs: method.nets["D"](pairs, level=1), inputs[1], fake.images[1])
    level_1.backward()
    reached = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters()) for g in G.levels]
    assert reached == [False, True, False]


# ------------------------------------------------------------------------------------------------
# Recipes


def recipe(registry, root, run_dir, *extra):
    return load_recipe(RECIPES / "lapgan_facades.toml", quick_overrides(root, run_dir) + TINY + list(extra),
                       registry=registry)


def test_the_factory_builds_a_generator_and_a_discriminator_per_level(registry, tiny_facades, tmp_path):
    method = build_method(recipe(registry, tiny_facades, tmp_path, "method.levels=2"), registry)
    G, D = method.nets["G"], method.nets["D"]
    assert [g.in_channels for g in G.levels] == [3, 6]  # finer levels also see the upsampled coarser image
    assert [d.in_channels for d in D.levels] == [6, 6]
    assert method.roles == {"G": "translate", "D": "adversary"}


def test_bad_levels_and_crops_are_recipe_errors(registry, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match="method 'lapgan' rejected its options: Expected levels >= 1, got 0"):
        build_method(recipe(registry, tiny_facades, tmp_path, "method.levels=0"), registry)
    loaded = recipe(registry, tiny_facades, tmp_path, "method.levels=4")  # 8-multiple U-Nets at 1/8: 64 pixels
    with pytest.raises(RecipeError, match="crop_size 32 gives network G .* multiples of 64"):
        check_sizes(build_method(loaded, registry), loaded)
