"""ResNet generator (CycleGAN): exact reference parameter counts, shapes, guards, use in a recipe."""

from __future__ import annotations

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.resnet import ResidualBlock, resnet


@pytest.mark.parametrize(("name", "count"), [("resnet_9blocks", 11_378_179), ("resnet_6blocks", 7_837_699)])
def test_parameter_counts_equal_the_reference(registry, name, count):
    net = registry.create("generator", name)
    assert sum(p.numel() for p in net.parameters()) == count


def test_counts_follow_the_block_count(registry):
    nine = sum(p.numel() for p in registry.create("generator", "resnet", n_blocks=9).parameters())
    six = sum(p.numel() for p in registry.create("generator", "resnet", n_blocks=6).parameters())
    # Each residual block at 4*ngf = 256 channels: two 3x3 convolutions with bias (instance norm).
    assert nine - six == 3 * 2 * (256 * 256 * 9 + 256)


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_shapes_and_range(norm):
    torch.manual_seed(0)
    net = resnet(ngf=8, n_blocks=2, norm=norm, in_channels=1, out_channels=3)
    y = net(torch.randn(2, 1, 36, 20))
    assert y.shape == (2, 3, 36, 20) and y.abs().max() < 1 and torch.isfinite(y).all()


def test_size_guard_names_the_multiple():
    with pytest.raises(ValueError, match=r"divisible by 4, got \(1, 3, 30, 32\)"):
        resnet(ngf=4, n_blocks=1)(torch.zeros(1, 3, 30, 32))


def test_residual_block_is_the_identity_when_its_body_is_zero():
    block = ResidualBlock(4, "none", 0.0)
    for module in block.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(block(x), x)


def test_dropout_option_and_bad_values(registry):
    net = resnet(ngf=4, n_blocks=1, dropout=0.5)
    assert any(isinstance(m, nn.Dropout) for m in net.modules())
    from translate_kit.errors import RecipeError

    with pytest.raises(RecipeError, match="n_blocks"):
        registry.create("generator", "resnet", n_blocks=-1)


def test_pix2pix_trains_with_a_resnet_generator(registry, pm, tiny_facades, tmp_path):
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    overrides = quick_overrides(tiny_facades, tmp_path) + [
        "generator.name=resnet", "generator.n_blocks=2", "generator.ngf=8", "generator.norm=instance",
        "discriminator.ndf=8",
    ]
    # The recipe's U-Net keys (dropout = 0.5 is shared) must still validate against the new generator.
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", overrides, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    history = trainer.fit()
    assert trainer.state.step == 2 and all(r["loss_G_L1"] > 0 for r in history)
