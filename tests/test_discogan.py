"""DiscoGAN: the networks against a layer-by-layer count and their shapes, the GAN and reconstruction
losses by hand, the recipe's settings and two trained steps.

Exact resume and translation of the shipped recipe are checked by tests/test_contracts.py."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.discogan import DiscoGAN, discogan_discriminator, discogan_generator
from translate_kit_plugins.gan_losses import lsgan, vanilla

from translate_kit.build import build_method
from translate_kit.errors import RecipeError, TranslateKitError
from translate_kit.recipe import load_recipe
from translate_kit.testing import RecordingContext
from translate_kit.train.optim import optimizer_settings
from translate_kit.train.trainer import Trainer

RECIPE = RECIPES / "discogan_facades.toml"
TINY = ["generator.ngf=8", "discriminator.ndf=8", "discriminator.n_layers=3"]
LOSS_KEYS = {"loss_GAN_A", "loss_GAN_B", "loss_const_A", "loss_const_B", "loss_D_A", "loss_D_B"}


# ------------------------------------------------------------------------------------------------
# Networks


def widths(base: int, layers: int) -> list[int]:
    return [base * min(2**k, 8) for k in range(layers)]


def generator_parameters(c_in: int, c_out: int, ngf: int, n_downs: int, norm: str) -> int:
    """4x4 convolutions down, transposed ones up; with batch norm no layer is biased, else all are."""
    w = widths(ngf, n_downs)
    biased, normed = norm != "batch", norm == "batch"
    convs = [(c_in, w[0])] + list(zip(w, w[1:])) + [(b, a) for a, b in reversed(list(zip(w, w[1:])))] + [(w[0], c_out)]
    count = sum(16 * a * b + (b if biased else 0) for a, b in convs)
    norm_channels = sum(w[1:]) + sum(w[:-1])  # every layer but the first and the last
    return count + (2 * norm_channels if normed else 0)


def discriminator_parameters(c_in: int, ndf: int, n_layers: int, norm: str) -> int:
    w = widths(ndf, n_layers)
    biased, normed = norm != "batch", norm == "batch"
    convs = [(c_in, w[0])] + list(zip(w, w[1:])) + [(w[-1], 1)]
    return sum(16 * a * b + (b if biased else 0) for a, b in convs) + (2 * sum(w[1:]) if normed else 0)


@pytest.mark.parametrize("ngf, n_downs, norm", [(64, 4, "batch"), (8, 5, "batch"), (8, 4, "instance"), (4, 6, "none")])
def test_generator_parameter_count(ngf, n_downs, norm):
    with torch.device("meta"):
        net = discogan_generator(in_channels=3, out_channels=1, ngf=ngf, n_downs=n_downs, norm=norm)
    assert sum(p.numel() for p in net.parameters()) == generator_parameters(3, 1, ngf, n_downs, norm)


@pytest.mark.parametrize("ndf, n_layers, norm", [(64, 4, "batch"), (8, 3, "batch"), (8, 5, "instance")])
def test_discriminator_parameter_count(ndf, n_layers, norm):
    with torch.device("meta"):
        net = discogan_discriminator(in_channels=1, ndf=ndf, n_layers=n_layers, norm=norm)
    assert sum(p.numel() for p in net.parameters()) == discriminator_parameters(1, ndf, n_layers, norm)


def test_reference_sizes():
    # The reference's 64-pixel networks (github.com/SKTBrain/DiscoGAN, discogan/model.py), counted by
    # hand: convs 3-64-128-256-512 and back, batch norm on the six middle layers, no biases.
    convs = 16 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 512)
    assert generator_parameters(3, 3, 64, 4, "batch") == 2 * convs + 2 * (128 + 256 + 512) + 2 * (256 + 128 + 64)
    assert discriminator_parameters(3, 64, 4, "batch") == convs + 2 * (128 + 256 + 512) + 16 * 512


def test_shapes():
    g = discogan_generator(ngf=4, out_channels=1)
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    y = g(x)
    assert y.shape == (2, 1, 64, 96) and y.abs().max() <= 1  # tanh
    assert g.encoder(x).shape == (2, 32, 4, 6)  # 4 halvings, 8 x ngf at the bottleneck
    d = discogan_discriminator(ndf=4)
    assert d(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 1, 1)  # one logit per 64-pixel image
    assert d(torch.zeros(2, 3, 128, 128)).shape == (2, 1, 5, 5)  # 128 / 16 - 3
    with pytest.raises(ValueError, match=r"H, W divisible by 16, got \(1, 3, 40, 40\)"):
        g(torch.zeros(1, 3, 40, 40))
    with pytest.raises(ValueError, match=r"H, W >= 64, got \(1, 3, 48, 48\)"):
        d(torch.zeros(1, 3, 48, 48))


# ------------------------------------------------------------------------------------------------
# Losses on constructed networks


class AddConstant(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c


def linear_discriminator(weight: float, bias: float) -> nn.Conv2d:
    """Logit(x) = weight * (x_R + x_G + x_B) + bias at every pixel."""
    d = nn.Conv2d(3, 1, 1)
    nn.init.constant_(d.weight, weight)
    nn.init.constant_(d.bias, bias)
    return d


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_step_losses_match_the_hand_computation():
    # a = 0.2 and b = -0.4 everywhere; G_AB adds 0.1, G_BA adds 0.3; three channels.
    method = DiscoGAN(AddConstant(0.1), AddConstant(0.3), linear_discriminator(1.0, 0.5),
                      linear_discriminator(-2.0, 0.0), vanilla(), lambda_const=2.0)
    batch = {"A": torch.full((2, 3, 4, 4), 0.2), "B": torch.full((2, 3, 4, 4), -0.4)}
    losses = method.training_step(batch, ctx := RecordingContext())
    assert ctx.groups == ["D", "G"]
    fake_b, fake_a = 0.3, -0.1
    logit_a = lambda x: 3 * x + 0.5  # noqa: E731 - D_A
    logit_b = lambda x: -6 * x  # noqa: E731 - D_B
    # L_D = -log sigmoid(D(real)) - log(1 - sigmoid(D(fake))) = softplus(-real) + softplus(fake)
    assert losses["loss_D_A"].item() == pytest.approx(softplus(-logit_a(0.2)) + softplus(logit_a(fake_a)))
    assert losses["loss_D_B"].item() == pytest.approx(softplus(-logit_b(-0.4)) + softplus(logit_b(fake_b)))
    # L_GAN_B = -log sigmoid(D_B(G_AB(a))), L_GAN_A = -log sigmoid(D_A(G_BA(b)))
    assert losses["loss_GAN_B"].item() == pytest.approx(softplus(-logit_b(fake_b)))
    assert losses["loss_GAN_A"].item() == pytest.approx(softplus(-logit_a(fake_a)))
    # L_CONST_A = MSE(G_BA(G_AB(a)), a) = 0.4^2, weighted by lambda_const
    assert losses["loss_const_A"].item() == pytest.approx(2.0 * 0.4**2)
    assert losses["loss_const_B"].item() == pytest.approx(2.0 * 0.4**2)
    assert set(losses) == LOSS_KEYS and not any(v.requires_grad for v in losses.values())


def test_gan_mode_is_the_registered_loss():
    method = DiscoGAN(AddConstant(0.0), AddConstant(0.0), linear_discriminator(0.0, 0.25),
                      linear_discriminator(0.0, 0.25), lsgan())
    batch = {"A": torch.zeros(1, 3, 2, 2), "B": torch.zeros(1, 3, 2, 2)}
    losses = method.training_step(batch, RecordingContext())
    assert losses["loss_D_A"].item() == pytest.approx((0.25 - 1) ** 2 + 0.25**2)  # LSGAN: real to 1, fake to 0
    assert losses["loss_GAN_A"].item() == pytest.approx((0.25 - 1) ** 2)
    assert losses["loss_const_A"].item() == 0.0  # identity generators reconstruct exactly


def test_translate_is_g_ab():
    method = DiscoGAN(AddConstant(0.5), AddConstant(-3.0), nn.Conv2d(3, 1, 1), nn.Conv2d(3, 1, 1), vanilla())
    x = torch.zeros(1, 3, 4, 4)
    assert torch.allclose(method.translate(x), x + 0.5) and method.translate_nets == ("G_AB",)


# ------------------------------------------------------------------------------------------------
# Recipe and training


def test_recipe_has_the_reference_settings(registry):
    recipe = load_recipe(RECIPE, registry=registry)
    assert recipe.components["method"] == {"name": "discogan", "lambda_const": 1.0, "gan_mode": "vanilla"}
    assert (recipe.data.load_size, recipe.data.crop_size, recipe.train.batch_size) == (64, 64, 64)
    with torch.device("meta"):
        method = build_method(recipe, registry)
    assert {n: sum(p.numel() for p in net.parameters()) for n, net in method.nets.items()} == {
        "G_AB": 5_513_856, "G_BA": 5_513_856, "D_A": 2_765_568, "D_B": 2_765_568}
    for settings in optimizer_settings(method, recipe.train).values():
        assert (settings.lr, settings.betas, settings.weight_decay) == (2e-4, (0.5, 0.999), 1e-5)


def test_bad_values_are_recipe_errors(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match="lambda_const >= 0"):
        build_method(load_recipe(RECIPE, [*TINY, "method.lambda_const=-1.0"], registry=registry), registry)
    # The discriminator needs 4 x 2^n_layers pixels: a 32-pixel crop with n_layers 4 is refused up front.
    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path) + ["generator.ngf=8", "discriminator.ndf=8"],
                         registry=registry)
    with pytest.raises(TranslateKitError, match="crop_size"):
        Trainer(recipe, registry=registry, pm=pm, device="cpu")


def test_two_steps_change_all_four_networks(registry, pm, tiny_facades, tmp_path):
    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path) + TINY, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in trainer.method.nets.items()}
    history = trainer.fit()
    assert [r["step"] for r in history] == [1, 2] and LOSS_KEYS <= set(history[0])
    assert all(math.isfinite(v) for r in history for v in r.values())
    for name, net in trainer.method.nets.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
