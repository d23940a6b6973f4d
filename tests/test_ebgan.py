"""EBGAN (plugins/ebgan.py): the auto-encoder discriminator, the margin loss and pull-away term,
the energy/logits pairing errors, and pix2pix's unchanged step with the two."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES
from translate_kit_plugins.ebgan import EnergyEmbedding, ebgan_loss, pull_away_term

from translate_kit.build import build_method
from translate_kit.errors import RecipeError
from translate_kit.recipe import load_recipe
from translate_kit.testing import RecordingContext

RECIPE = RECIPES / "ebgan_facades.toml"


def autoencoder_parameters(in_channels: int, ndf: int, n_layers: int, norm: str) -> int:
    """Parameter count of the auto-encoder, written from its description (4x4 kernels; a
    convolution followed by BatchNorm has no bias, BatchNorm has a scale and a shift per channel)."""
    widths = [ndf * min(2**k, 8) for k in range(n_layers)]
    after_norm = 2 if norm == "batch" else 1  # BN's two vectors, or the convolution's own bias
    total = in_channels * widths[0] * 16 + widths[0]  # first convolution: bias, no norm
    for k in range(1, n_layers):
        total += widths[k - 1] * widths[k] * 16 + after_norm * widths[k]  # encoder level k
        total += widths[k] * widths[k - 1] * 16 + after_norm * widths[k - 1]  # its mirror in the decoder
    return total + widths[0] * in_channels * 16 + in_channels  # last transposed convolution, biased


@pytest.mark.parametrize(
    ("in_channels", "ndf", "n_layers", "norm"), [(6, 8, 3, "batch"), (3, 4, 2, "instance"), (6, 2, 5, "none")]
)
def test_autoencoder_shapes_energy_and_parameter_count(registry, in_channels, ndf, n_layers, norm):
    net = registry.create("discriminator", "ebgan_autoencoder", in_channels=in_channels, ndf=ndf, n_layers=n_layers,
                          norm=norm)
    assert sum(p.numel() for p in net.parameters()) == autoencoder_parameters(in_channels, ndf, n_layers, norm)
    side = 2**n_layers
    x = torch.randn(2, in_channels, side, 2 * side)  # not square: the code is 1 x 2
    out = net(x)
    code_channels = ndf * min(2 ** (n_layers - 1), 8)
    assert isinstance(out, EnergyEmbedding)
    assert out.energy.shape == (2,) and out.energy.dtype == torch.float32 and (out.energy >= 0).all()
    assert out.embedding.shape == (2, code_channels * 1 * 2)
    # The energy is the per-sample mean squared reconstruction error of the encoder-decoder.
    reconstruction = net.decoder(net.encoder(x))
    assert reconstruction.shape == x.shape
    torch.testing.assert_close(out.energy, (reconstruction - x).square().mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match=rf"divisible by {side}"):
        net(torch.randn(1, in_channels, side + 1, side))


def test_the_papers_autoencoder_size(registry):
    """n_layers 3, ndf 64 on RGB pairs: (64)4c2s-(128)4c2s-(256)4c2s and its mirror."""
    net = registry.create("discriminator", "ebgan_autoencoder")
    # 6208 + (131072 + 256) + (524288 + 512) + (524288 + 256) + (131072 + 128) + (6144 + 6)
    assert sum(p.numel() for p in net.parameters()) == 1_324_230


def test_pull_away_term_against_hand_values():
    assert pull_away_term(torch.eye(4, 7)).item() == 0.0  # orthogonal embeddings
    identical = torch.tensor([[1.0, 2.0, -1.0]]).repeat(5, 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0], [1.0]])
    assert pull_away_term(identical).item() == pytest.approx(1.0)  # parallel: cos^2 = 1 for every pair
    # e1, e1 + e2, e2: cos^2 of 1/2, 0 and 1/2; each unordered pair counts twice, over 3 * 2 ordered pairs.
    three = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert pull_away_term(three).item() == pytest.approx(2 * (0.5 + 0.0 + 0.5) / 6)
    assert pull_away_term(torch.randn(1, 8)).item() == 0.0  # one sample: no pair
    assert pull_away_term(torch.randn(4, 2, 3, 3)).shape == ()  # codes are flattened
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: pull_away_term(e).double(), (x,))


def test_margin_loss_against_hand_values(registry):
    criterion = registry.create("loss", "ebgan", margin=0.1, pt_weight=0.5)
    energy = torch.tensor([0.01, 0.05, 0.2])
    codes = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # PT = 1/3 (above)
    out = EnergyEmbedding(energy, codes)
    assert criterion(out, True).item() == pytest.approx((0.01 + 0.05 + 0.2) / 3)  # D, real: mean energy
    assert criterion(out, False).item() == pytest.approx((0.09 + 0.05 + 0.0) / 3)  # D, fake: hinge at m
    g = criterion(out, True, for_discriminator=False).item()
    assert g == pytest.approx((0.01 + 0.05 + 0.2) / 3 + 0.5 / 3)  # G: mean energy + lambda_PT * PT
    with pytest.raises(ValueError, match="target_is_real=True"):
        criterion(out, False, for_discriminator=False)
    with pytest.raises(TypeError, match="EnergyEmbedding"):
        criterion(torch.rand(3), True)
    assert criterion.penalty(lambda x: out, torch.zeros(2, 6, 8, 8), torch.zeros(2, 6, 8, 8)).item() == 0.0
    # float64 gradients of D's fake term and G's loss (away from the hinge's kink).
    e = torch.tensor([0.02, 0.3, 0.07], dtype=torch.float64, requires_grad=True)
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    for real, for_d in ((False, True), (True, False)):
        assert torch.autograd.gradcheck(
            lambda e, s: ebgan_loss(EnergyEmbedding(e, s), real, for_d, margin=0.1, pt_weight=0.5).double(), (e, s)
        )


def test_bad_loss_options_are_recipe_errors(registry):
    with pytest.raises(RecipeError, match="margin > 0"):
        registry.create("loss", "ebgan", margin=0.0)
    with pytest.raises(RecipeError, match="unknown key 'lambda_pt'"):
        load_recipe(RECIPE, ["method.gan_options={ lambda_pt = 0.1 }"], registry=registry)


def test_energy_and_logits_do_not_pair(registry):
    """An energy discriminator with a logit loss, and the energy loss with a logit discriminator,
    are refused when the recipe is loaded, naming both sides and what fits."""
    with pytest.raises(RecipeError) as caught:
        load_recipe(RECIPE, ['method.gan_mode="vanilla"', "method.gan_options={}"], registry=registry)
    message = str(caught.value)
    assert "'vanilla'" in message and "'ebgan_autoencoder'" in message and "energy_embedding" in message
    assert "Losses that score energy_embedding: ebgan" in message
    with pytest.raises(RecipeError) as caught:
        load_recipe(RECIPE, ['discriminator.name="patchgan"'], registry=registry)
    message = str(caught.value)
    assert "'ebgan'" in message and "'patchgan'" in message and "outputs logits" in message
    assert "discriminators that 'ebgan' scores: ebgan_autoencoder" in message


def test_pix2pix_step_is_the_ebgan_objective(registry):
    """pix2pix, unchanged: D's loss is half of EBGAN's (real energies + hinge on fake ones) and G's
    is its energy plus lambda_PT * PT plus lambda * L1, with D judging (input, output) pairs."""
    recipe = load_recipe(RECIPE, [
        "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4", "discriminator.n_layers=2",
        "method.gan_options={ margin = 0.5, pt_weight = 0.1 }",
    ], registry=registry)
    method = build_method(recipe, registry)
    torch.manual_seed(1)
    real_a, real_b = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    ctx = RecordingContext()
    torch.manual_seed(2)
    logged = method.training_step({"A": real_a, "B": real_b}, ctx)

    torch.manual_seed(2)  # the same dropout masks: the same fake
    G, D = method.nets["G"], method.nets["D"]
    with torch.no_grad():
        fake_b = G(real_a)
        real_out, fake_out = D(torch.cat([real_a, real_b], 1)), D(torch.cat([real_a, fake_b], 1))
    assert D.in_channels == 6  # the auto-encoder reconstructs the pair
    loss_d = 0.5 * (real_out.energy.mean() + torch.relu(0.5 - fake_out.energy).mean())
    pt = pull_away_term(fake_out.embedding)
    assert 0 < pt.item() < 1
    loss_g = fake_out.energy.mean() + 0.1 * pt + 100.0 * (fake_b - real_b).abs().mean()
    torch.testing.assert_close(ctx.losses["D"], loss_d)
    torch.testing.assert_close(ctx.losses["G"], loss_g)
    torch.testing.assert_close(logged["loss_G_GAN"], fake_out.energy.mean() + 0.1 * pt)
    assert math.isfinite(logged["loss_D_fake"].item())
