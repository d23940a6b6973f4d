"""Super-resolution networks (plugins/sr_networks.py): published parameter counts, shapes at every
scale, size guards, BasicSR-compatible state-dict keys, residual structure, finiteness and backward."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from translate_kit_plugins.sr_networks import (
    MSRResNet,
    ResidualDenseBlock,
    RRDBNet,
    UNetDiscriminatorSN,
    msrresnet,
    rrdbnet,
    srresnet,
    unet_discriminator_sn,
    vgg_discriminator,
)

from translate_kit.api import SizeConstrained, Upscaling
from translate_kit.errors import RecipeError


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- published sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("srresnet", {}, 1_549_462),  # 64 features, 16 blocks, x4; biased convs, one PReLU slope each
        ("msrresnet", {}, 1_517_571),  # BasicSR's MSRResNet x4
        ("rrdbnet", {}, 16_697_987),  # ESRGAN's RRDBNet x4 (23 RRDBs, growth 32)
    ],
)
def test_generator_parameter_counts(registry, name, options, expected):
    assert count(registry.create("generator", name, **options)) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [({"input_size": 128}, 14_499_401), ({"input_size": 256}, 21_055_049)],  # BasicSR's two sizes
)
def test_vgg_discriminator_parameter_counts(registry, options, expected):
    assert count(registry.create("discriminator", "vgg_discriminator", **options)) == expected


def test_unet_discriminator_parameter_count_and_spectral_norm_keys(registry):
    d = registry.create("discriminator", "unet_discriminator_sn")
    assert count(d) == 4_376_897
    # Spectral norm adds two buffers per normalised convolution and keeps the weight as weight_orig:
    # the keys are Real-ESRGAN's, so its discriminator checkpoints load unchanged.
    keys = list(d.state_dict())
    expected = ["conv0.weight", "conv0.bias"]
    for k in range(1, 9):
        expected += [f"conv{k}.weight_orig", f"conv{k}.weight_u", f"conv{k}.weight_v"]
    expected += ["conv9.weight", "conv9.bias"]
    assert keys == expected
    assert sorted(n for n, _ in d.named_parameters()) == sorted(k for k in expected if not k.endswith(("_u", "_v")))


def test_rrdbnet_scales_change_only_the_first_convolution():
    # x2 / x1 pixel-unshuffle the input by 2 / 4: conv_first sees 4x / 16x the channels.
    x4 = count(rrdbnet(n_blocks=0))
    assert count(rrdbnet(n_blocks=0, scale=2)) - x4 == 64 * 9 * (12 - 3)
    assert count(rrdbnet(n_blocks=0, scale=1)) - x4 == 64 * 9 * (48 - 3)


# --- state-dict keys --------------------------------------------------------------------------


def test_rrdbnet_keys_are_basicsr_names():
    keys = set(rrdbnet(nf=8, n_blocks=2, growth=4).state_dict())
    expected = {f"{m}.{p}" for m in ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")
                for p in ("weight", "bias")}
    expected |= {f"body.{n}.rdb{r}.conv{c}.{p}" for n in range(2) for r in (1, 2, 3) for c in range(1, 6)
                 for p in ("weight", "bias")}
    assert keys == expected


@pytest.mark.parametrize(("scale", "upconvs"), [(4, {"upconv1", "upconv2"}), (3, {"upconv1"}), (2, {"upconv1"})])
def test_msrresnet_keys_are_basicsr_names(scale, upconvs):
    keys = set(msrresnet(nf=8, n_blocks=2, scale=scale).state_dict())
    expected = {f"{m}.{p}" for m in ("conv_first", "conv_hr", "conv_last", *upconvs) for p in ("weight", "bias")}
    expected |= {f"body.{n}.conv{c}.{p}" for n in range(2) for c in (1, 2) for p in ("weight", "bias")}
    assert keys == expected


def test_vgg_discriminator_keys_are_basicsr_names():
    keys = {k.rsplit(".", 1)[0] for k in vgg_discriminator(nf=2).state_dict()}
    expected = {"conv0_0", "conv0_1", "bn0_1", "linear1", "linear2"}
    expected |= {f"{kind}{k}_{j}" for k in range(1, 5) for kind in ("conv", "bn") for j in (0, 1)}
    assert keys == expected
    # 256 adds a sixth stage (conv5_*, bn5_*), as BasicSR's 256 variant.
    assert {"conv5_0", "bn5_1"} <= {k.rsplit(".", 1)[0] for k in vgg_discriminator(nf=2, input_size=256).state_dict()}


def test_unet_discriminator_state_dict_round_trip():
    torch.manual_seed(0)
    a, b = unet_discriminator_sn(nf=4), unet_discriminator_sn(nf=4)
    x = torch.randn(1, 3, 16, 16)
    a(x)  # a training forward moves the power iteration's vectors
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


# --- shapes, geometry, guards -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "scale"),
    [(srresnet, 2), (srresnet, 4), (msrresnet, 2), (msrresnet, 3), (msrresnet, 4),
     (rrdbnet, 1), (rrdbnet, 2), (rrdbnet, 4)],
)
def test_output_shapes_and_declared_geometry(factory, scale):
    options = {"nf": 8, "n_blocks": 1} | ({"growth": 4} if factory is rrdbnet else {})
    net = factory(scale=scale, in_channels=3, out_channels=3, **options)
    assert isinstance(net, Upscaling) and isinstance(net, SizeConstrained)
    assert net.scale == scale
    multiple = 4 // scale if factory is rrdbnet else 1
    assert net.size_multiple == net.min_size == multiple
    y = net(torch.rand(2, 3, 16, 24) * 2 - 1)
    assert y.shape == (2, 3, 16 * scale, 24 * scale) and torch.isfinite(y).all()


def test_channel_counts_are_options():
    assert srresnet(nf=8, n_blocks=1, in_channels=1, out_channels=4)(torch.randn(1, 1, 8, 8)).shape == (1, 4, 32, 32)
    assert rrdbnet(nf=8, n_blocks=1, growth=4, in_channels=4, out_channels=1, scale=2)(
        torch.randn(1, 4, 8, 8)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize(("scale", "multiple"), [(2, 2), (1, 4)])
def test_rrdbnet_pixel_unshuffles_its_input(scale, multiple):
    net = rrdbnet(nf=8, n_blocks=1, growth=4, scale=scale)
    assert net.conv_first.in_channels == 3 * multiple**2
    seen = []
    net.conv_first.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = torch.randn(1, 3, 8, 12)
    net(x)
    # BasicSR's order: channel c, row offset i, column offset j -> c * r^2 + i * r + j.
    r = multiple
    expected = x.view(1, 3, 8 // r, r, 12 // r, r).permute(0, 1, 3, 5, 2, 4).reshape(1, 3 * r * r, 8 // r, 12 // r)
    assert torch.equal(seen[0], expected)
    with pytest.raises(ValueError, match=rf"divisible by {multiple}, got \(1, 3, {8 + multiple // 2}, 8\)"):
        net(torch.randn(1, 3, 8 + multiple // 2, 8))


@pytest.mark.parametrize("factory", [srresnet, msrresnet, rrdbnet])
def test_generators_refuse_wrong_channels(factory):
    net = factory(nf=8, n_blocks=1)
    with pytest.raises(ValueError, match=r"Expected input of shape \(B, 3, H, W\).*got \(1, 1, 8, 8\)"):
        net(torch.randn(1, 1, 8, 8))


def test_bad_option_values():
    with pytest.raises(ValueError, match="Expected scale in 2, 4, got 3"):
        srresnet(scale=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected scale in 1, 2, 4, got 3"):
        rrdbnet(scale=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nf=0"):
        msrresnet(nf=0)
    with pytest.raises(ValueError, match="out_channels == in_channels"):
        MSRResNet(in_channels=1, out_channels=3)
    with pytest.raises(ValueError, match="n_blocks >= 0"):
        RRDBNet(n_blocks=-1)
    with pytest.raises(ValueError, match="Expected input_size in 96, 128, 192, 256, got 64"):
        vgg_discriminator(input_size=64)  # type: ignore[arg-type]


def test_recipes_are_checked_against_the_literal_scales(registry):
    with pytest.raises(RecipeError, match="scale"):
        registry.create("generator", "srresnet", scale=3)
    with pytest.raises(RecipeError, match="input_size"):
        registry.create("discriminator", "vgg_discriminator", input_size=64)


@pytest.mark.parametrize("size", [96, 128, 192, 256])
def test_vgg_discriminator_takes_its_one_size(size):
    d = vgg_discriminator(nf=2, input_size=size)
    assert d.size_multiple == d.min_size == size
    assert d(torch.randn(2, 3, size, size)).shape == (2, 1)
    with pytest.raises(ValueError, match=re.escape(f"Expected input of shape (B, 3, {size}, {size})")):
        d(torch.randn(2, 3, 2 * size, 2 * size))  # a multiple of size_multiple, but not its size
    with pytest.raises(ValueError, match=r"got \(2, 3, 64, 64\)"):
        d(torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("skip_connection", [True, False])
def test_unet_discriminator_gives_a_logit_map_at_the_input_size(skip_connection):
    d = unet_discriminator_sn(nf=4, skip_connection=skip_connection)
    assert d.size_multiple == d.min_size == 8
    assert d(torch.randn(2, 3, 16, 24)).shape == (2, 1, 16, 24)
    with pytest.raises(ValueError, match=r"divisible by 8, got \(2, 3, 12, 16\)"):
        d(torch.randn(2, 3, 12, 16))


# --- structure and initialisation -------------------------------------------------------------


def test_msrresnet_adds_the_bilinear_upsampling_and_is_unbounded():
    net = msrresnet(nf=8, n_blocks=1, scale=3)
    nn.init.zeros_(net.conv_last.weight)
    nn.init.zeros_(net.conv_last.bias)
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.allclose(net(x), F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False))
    nn.init.constant_(net.conv_last.bias, 0.5)  # no tanh, no clamp: the output leaves [-1, 1]
    assert torch.allclose(net(torch.ones(1, 3, 8, 8)), torch.full((1, 3, 24, 24), 1.5))


def test_dense_block_scales_its_residual_by_0_2():
    block = ResidualDenseBlock(8, 4)
    x = torch.randn(1, 8, 6, 6)
    nn.init.zeros_(block.conv5.weight)
    assert torch.equal(block(x), x)
    nn.init.constant_(block.conv5.bias, 1.0)
    assert torch.allclose(block(x), x + 0.2)


def test_basicsr_initialisation_of_the_residual_branches():
    torch.manual_seed(0)
    rdb = ResidualDenseBlock(64, 32)  # conv1: fan in 64 * 9
    std = 0.1 * (2 / (64 * 9)) ** 0.5
    assert abs(rdb.conv1.weight.std().item() / std - 1) < 0.05 and not rdb.conv1.bias.any()
    net = msrresnet(n_blocks=1)
    assert abs(net.body[0].conv1.weight.std().item() / std - 1) < 0.05 and not net.body[0].conv2.bias.any()


# --- finiteness and backward at tiny sizes --------------------------------------------------


@pytest.mark.parametrize(
    ("net", "x"),
    [
        (srresnet(nf=8, n_blocks=1), torch.rand(2, 3, 16, 16) * 2 - 1),
        (msrresnet(nf=8, n_blocks=1, scale=3), torch.rand(2, 3, 16, 16) * 2 - 1),
        (rrdbnet(nf=8, n_blocks=1, growth=4, scale=2), torch.rand(2, 3, 16, 16) * 2 - 1),
        (vgg_discriminator(nf=2, input_size=96), torch.rand(2, 3, 96, 96) * 2 - 1),
        (UNetDiscriminatorSN(nf=4), torch.rand(2, 3, 32, 32) * 2 - 1),
    ],
    ids=["srresnet", "msrresnet", "rrdbnet", "vgg_discriminator", "unet_discriminator_sn"],
)
def test_finite_forward_and_backward_reach_every_parameter(net, x):
    y = net.train()(x)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
