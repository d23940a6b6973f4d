"""The pix2pix networks: reference parameter counts, shapes, receptive fields, guards, init, factories."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
import translate_kit_plugins.gan_losses as gan_losses_module
import translate_kit_plugins.patchgan as patchgan_module
import translate_kit_plugins.unet as unet_module
from torch import nn
from translate_kit_plugins.patchgan import (
    PatchDiscriminator,
    PixelDiscriminator,
    patchgan,
    patchgan_16,
    patchgan_70,
    patchgan_286,
    pixelgan,
)
from translate_kit_plugins.unet import UNetGenerator, unet, unet_128, unet_256

from translate_kit.errors import RecipeError
from translate_kit.registry import Registry, collect_marked

PLUGIN_MODULES = [unet_module, patchgan_module, gan_losses_module]
FACTORIES = [f for module in PLUGIN_MODULES for f in collect_marked(module)]


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameter counts of the reference implementation (DESIGN.md section 1).
@pytest.mark.parametrize(
    ("factory", "kwargs", "expected"),
    [
        (unet_256, {}, 54_413_955),
        (unet_128, {}, 41_828_995),
        (unet, {"num_downs": 8}, 54_413_955),
        (patchgan_70, {}, 2_768_705),
        (patchgan, {"n_layers": 3}, 2_768_705),
        (patchgan_16, {}, 139_585),
        (patchgan_286, {}, 11_159_361),
        (pixelgan, {}, 9_024),
        (patchgan_70, {"norm": "instance", "in_channels": 3}, 2_764_737),
    ],
)
def test_reference_parameter_counts(factory, kwargs, expected):
    with torch.device("meta"):  # counts need no memory
        net = factory(**kwargs)
    assert num_params(net) == expected


@pytest.mark.parametrize("num_downs", [3, 5, 6, 7, 8])
def test_unet_dropout_layout_matches_reference(num_downs):
    # Decoder levels from the innermost up: the innermost has none, then the paper's CD512 layers
    # (three for 8 levels, two for 7, none up to 5), then the last four levels without.
    with torch.device("meta"):
        net = unet(num_downs=num_downs)
    has_dropout = [any(isinstance(m, nn.Dropout) for m in up.modules()) for up in net.ups]
    assert has_dropout == [False] + [True] * max(num_downs - 5, 0) + [False] * min(num_downs - 1, 4)
    with torch.device("meta"):
        assert not any(isinstance(m, nn.Dropout) for m in unet(num_downs=num_downs, dropout=0.0).modules())


class _NestedUNet(nn.Module):
    """The reference's recursive formulation: block(x) = cat([x, up(inner(down(x)))]).

    Built around the flat network's own layers, so it checks the flat skip wiring (which encoder
    output meets which decoder output, and in which channel order) against the recursive definition.
    """

    def __init__(self, flat: UNetGenerator, level: int = 0) -> None:
        super().__init__()
        n = len(flat.downs)
        self.outermost = level == 0
        self.down = flat.downs[level]
        self.up = flat.ups[n - 1 - level]
        self.inner = _NestedUNet(flat, level + 1) if level < n - 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.inner(self.down(x)))
        return y if self.outermost else torch.cat([x, y], dim=1)


@pytest.mark.parametrize("num_downs", [1, 2, 3, 5, 6])
def test_unet_equals_recursive_formulation(num_downs):
    torch.manual_seed(0)
    net = unet(num_downs=num_downs, ngf=4).eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(net(x), _NestedUNet(net)(x.clone()))


@pytest.mark.parametrize("num_downs", [1, 2, 3, 4, 5])
def test_tiny_unet_forward_backward(num_downs):
    torch.manual_seed(0)
    net = unet(num_downs=num_downs, ngf=8)
    x = torch.randn(2, 3, 32, 32)
    y = net(x)
    assert y.shape == (2, 3, 32, 32)
    assert torch.isfinite(y).all() and y.abs().max() <= 1
    y.mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_unet_channels_and_size_multiple():
    net = unet(num_downs=4, in_channels=1, out_channels=2, ngf=4, norm="instance")
    assert net.size_multiple == 16
    assert net(torch.randn(1, 1, 16, 48)).shape == (1, 2, 16, 48)
    assert unet_128(ngf=2).size_multiple == 128 and unet_256(ngf=2).size_multiple == 256


@pytest.mark.parametrize("shape", [(1, 3, 33, 32), (1, 3, 32, 48), (1, 1, 32, 32), (3, 32, 32)])
def test_unet_size_guard(shape):
    net = unet(num_downs=5, ngf=4)
    with pytest.raises(ValueError, match="divisible by 32") as info:
        net(torch.randn(shape))
    assert str(tuple(shape)) in str(info.value) and "(B, 3, H, W)" in str(info.value)


@pytest.mark.parametrize(
    "kwargs", [{"num_downs": 0}, {"num_downs": -1}, {"ngf": 0}, {"dropout": 1.0}, {"dropout": -0.1}, {"norm": "group"}]
)
def test_unet_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        unet(**{"num_downs": 3, "ngf": 4, **kwargs})


@pytest.mark.parametrize(
    ("factory", "size", "out"),
    [(patchgan_16, 64, 30), (patchgan_70, 256, 30), (patchgan_70, 64, 6), (patchgan_286, 96, 1), (pixelgan, 20, 20)],
)
def test_discriminator_output_shape(factory, size, out):
    d = factory(ndf=8)
    assert d(torch.randn(2, 6, size, size)).shape == (2, 1, out, out)


def test_discriminator_input_guard():
    d = patchgan_70(ndf=8)
    assert d.min_size == 24
    d(torch.randn(1, 6, 24, 24))
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\) with H, W >= 24, got \(1, 6, 23, 64\)"):
        d(torch.randn(1, 6, 23, 64))
    with pytest.raises(ValueError, match=r"got \(1, 3, 64, 64\)"):
        d(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("n_layers", [0, -2])
def test_patchgan_rejects_bad_depth(n_layers):
    with pytest.raises(ValueError, match="n_layers >= 1"):
        PatchDiscriminator(n_layers=n_layers)


@pytest.mark.parametrize("factory", [patchgan_16, patchgan_70, pixelgan])
def test_discriminator_features(factory):
    torch.manual_seed(0)
    d = factory(ndf=8).eval()
    x = torch.randn(1, 6, 64, 64)
    logits, features = d(x, return_features=True)
    assert len(features) == len(d.blocks) == (d.n_layers + 1 if isinstance(d, PatchDiscriminator) else 2)
    torch.testing.assert_close(logits, d(x))
    torch.testing.assert_close(d.head(features[-1]), logits)
    assert all(f.shape[0] == 1 and f.ndim == 4 for f in features)


def _measured_receptive_field(d: nn.Module, size: int) -> tuple[int, int]:
    """Extent (rows, cols) of the input pixels whose gradient reaches the central output logit."""
    torch.manual_seed(0)
    d = d.double().eval()  # eval: BatchNorm uses running statistics, no cross-talk between pixels
    with torch.no_grad():
        for m in d.modules():
            if isinstance(m, nn.Conv2d):  # positive weights: no cancellation can hide a connection
                fan_in = m.weight[0].numel()
                m.weight.uniform_(0.5 / fan_in, 1.5 / fan_in)
    x = torch.rand(1, d.in_channels, size, size, dtype=torch.float64, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    cols = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
    # The field must lie inside the image, or padding would have clipped the measurement.
    assert rows.min() > 0 and rows.max() < size - 1 and cols.min() > 0 and cols.max() < size - 1
    assert len(rows) == rows.max() - rows.min() + 1  # contiguous
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(
    ("factory", "size", "expected"),
    [(patchgan_16, 64, 16), (patchgan_70, 128, 70), (patchgan_286, 320, 286), (pixelgan, 9, 1)],
)
def test_receptive_field_measured_from_gradients(factory, size, expected):
    d = factory(ndf=8)
    assert _measured_receptive_field(d, size) == (expected, expected)
    assert d.receptive_field == expected


@pytest.mark.parametrize(("n_layers", "expected"), [(2, 34), (4, 142)])
def test_receptive_field_attribute_other_depths(n_layers, expected):
    d = patchgan(n_layers=n_layers, ndf=4)
    assert d.receptive_field == expected == _measured_receptive_field(d, expected + 64)[0]


def test_init_statistics():
    torch.manual_seed(0)
    d = patchgan_70()
    big = d.blocks[3][0].weight  # 512 x 256 x 4 x 4 = 2M weights
    assert big.numel() > 2_000_000
    assert abs(big.mean().item()) < 1e-3 and big.std().item() == pytest.approx(0.02, rel=0.01)
    g = unet(num_downs=5, ngf=16)
    bn = torch.cat([m.weight for m in [*g.modules(), *d.modules()] if isinstance(m, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.005) and bn.std().item() == pytest.approx(0.02, rel=0.2)
    biases = [m.bias for m in [*g.modules(), *d.modules()] if getattr(m, "bias", None) is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
    assert g.ups[-1].conv.bias is not None and g.downs[0].conv.bias is None  # the reference's bias rule


def test_instance_norm_keeps_biases():
    d = patchgan_70(norm="instance", ndf=8)
    assert all(m.bias is not None for m in d.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_factory_signature_is_recipe_ready(factory):
    signature = inspect.signature(factory, eval_str=True)
    for param in signature.parameters.values():
        assert param.kind is param.KEYWORD_ONLY, f"{factory.__name__}({param.name}) must be keyword-only"
        assert param.annotation is not param.empty, f"{factory.__name__}({param.name}) needs an annotation"
        assert param.default is not param.empty, f"{factory.__name__}({param.name}) needs a default"
    assert signature.return_annotation is not signature.empty
    assert inspect.getdoc(factory)
    with torch.device("meta"):
        assert isinstance(factory(), nn.Module)


def test_factories_register_and_type_check():
    registry = Registry()
    for module in PLUGIN_MODULES:
        for factory in collect_marked(module):
            registry.add(factory, plugin=module.__name__)
    assert registry.names("generator") == ["unet", "unet_128", "unet_256"]
    assert registry.names("discriminator") == ["patchgan", "patchgan_16", "patchgan_286", "patchgan_70", "pixelgan"]
    assert registry.names("loss") == ["hinge", "l1", "lsgan", "mse", "vanilla", "wgangp"]
    net = registry.create("generator", "unet", num_downs=3, ngf=4, norm="instance")
    assert isinstance(net, UNetGenerator) and net.size_multiple == 8
    assert isinstance(registry.create("discriminator", "pixelgan", ndf=4), PixelDiscriminator)
    with pytest.raises(RecipeError, match="ngf"):
        registry.create("generator", "unet_256", ngf="64")
    with pytest.raises(RecipeError, match="norm"):
        registry.create("discriminator", "patchgan_70", norm="group")
    with pytest.raises(RecipeError, match="n_layers"):  # the sized variant fixes its depth
        registry.create("discriminator", "patchgan_70", n_layers=5)


def test_unet_output_range_and_dropout_is_random_in_train_mode():
    torch.manual_seed(0)
    net = unet(num_downs=6, ngf=4)
    x = torch.randn(2, 3, 64, 64)
    a, b = net(x), net(x)
    assert not torch.equal(a, b)  # dropout on level 4, the pix2pix noise source
    net.eval()
    assert torch.equal(net(x), net(x))
    assert math.isfinite(a.sum().item())


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=4, stride=2, padding=1),
        dict(kernel_size=3, stride=2, padding=1, output_padding=1),
        dict(kernel_size=3, stride=1, padding=1, dilation=2, bias=False),
        dict(kernel_size=(4, 2), stride=(2, 1), padding=(1, 0)),
    ],
)
def test_small_map_transposed_convolution_is_the_same_function_with_the_same_gradients(options):
    from translate_kit.accel import MatmulConvTranspose2d

    torch.manual_seed(0)
    fast = MatmulConvTranspose2d(6, 5, **options)
    plain = torch.nn.ConvTranspose2d(6, 5, **options)
    plain.load_state_dict(fast.state_dict())  # the same parameters and state-dict keys
    x = torch.randn(2, 6, 3, 4, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_()
    y, y_plain = fast(x), plain(x_plain)
    torch.testing.assert_close(y, y_plain, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(y)
    y.backward(grad)
    y_plain.backward(grad)
    torch.testing.assert_close(x.grad, x_plain.grad, atol=1e-5, rtol=1e-5)
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, dict(plain.named_parameters())[name].grad, atol=1e-5, rtol=1e-5)


def test_small_map_transposed_convolution_leaves_large_maps_to_the_library(monkeypatch):
    from translate_kit.accel import MatmulConvTranspose2d

    conv = MatmulConvTranspose2d(2, 2, 4, stride=2, padding=1)
    calls = []
    real_fold = torch.nn.functional.fold
    monkeypatch.setattr(torch.nn.functional, "fold", lambda *a, **k: calls.append(1) or real_fold(*a, **k))
    conv(torch.randn(1, 2, 16, 16))  # 256 pixels per map > max_map_pixels: the library's kernel
    conv(torch.randn(5, 2, 8, 8))  # 320 pixels over the batch > max_pixels
    assert not calls
    conv(torch.randn(4, 2, 8, 8))
    assert calls


def test_small_map_transposed_convolution_keeps_the_autocast_dtype():
    from translate_kit.accel import MatmulConvTranspose2d

    fast = MatmulConvTranspose2d(4, 3, 4, stride=2, padding=1)
    plain = torch.nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(1, 4, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, expected = fast(x), plain(x)
    assert y.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), expected.float(), atol=0.05, rtol=0.05)


def test_in_place_encoder_activation_changes_neither_outputs_nor_gradients():
    # Each encoder LeakyReLU runs in place on the level above's output, which is that level's skip
    # too (one feature map per level kept once, as in the reference). The decoder reads skips only
    # through its ReLU, so out-of-place activations give the same outputs and gradients.
    torch.manual_seed(0)
    net = unet(num_downs=6, ngf=4)  # training mode: batch statistics and dropout
    plain = copy.deepcopy(net)
    for down in plain.downs:
        if hasattr(down, "act"):
            down.act = nn.LeakyReLU(0.2)
    assert sum(getattr(down, "act", nn.ReLU()).inplace for down in net.downs) == 5
    x = torch.randn(2, 3, 64, 64)
    x_before = x.clone()
    weight = torch.randn(2, 3, 64, 64)
    outputs = []
    for model in (net, plain):
        torch.manual_seed(1)  # the same dropout masks
        y = model(x)
        (y * weight).sum().backward()
        outputs.append(y)
    assert torch.equal(x, x_before)  # the caller's input is never written to
    assert torch.equal(outputs[0], outputs[1])
    for (name, p), q in zip(net.named_parameters(), plain.parameters()):
        assert torch.equal(p.grad, q.grad), name


def test_compiled_inference_runs_only_thin_transposed_convolutions_by_phases(monkeypatch):
    import translate_kit.accel as accel

    calls = []
    by_phases = accel.transposed_conv_by_phases
    monkeypatch.setattr(accel, "transposed_conv_by_phases", lambda *args: calls.append(args[0].shape) or by_phases(*args))
    torch.manual_seed(0)
    thin = accel.MatmulConvTranspose2d(8, 3, 4, stride=2, padding=1)  # 3 * 16 = 48 rows of W^T
    wide = accel.MatmulConvTranspose2d(8, 5, 4, stride=2, padding=1)  # 80 rows: oneDNN's kernel
    x = torch.randn(2, 8, 16, 16)
    for conv in (thin, wide):
        expected = torch.nn.functional.conv_transpose2d(x, conv.weight, conv.bias, stride=2, padding=1)
        compiled = torch.compile(conv, backend="eager", fullgraph=True)  # traced as inductor would see it
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(compiled(x), expected, atol=1e-5, rtol=1e-5)  # training: the library's path
    assert calls == [x.shape]
