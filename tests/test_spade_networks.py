"""SPADE networks (plugins/spade.py): parameter counts against an independent count of the
reference layout (NVlabs/SPADE, models/networks/{generator,architecture,normalization,encoder,
discriminator}.py), spectral norm where the reference has it, output shapes, SPADE's modulation by
hand, the encoder and the discriminator's features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from translate_kit_plugins.pix2pixhd import feature_matching_loss
from translate_kit_plugins.spade import (
    SPADE,
    ConvEncoder,
    SPADEGenerator,
    reparameterize,
    spade_encoder,
    spade_generator,
    spade_multiscale,
)

# --- an independent count of the reference's parameters, from its layer list -----------------------

UPS = {"normal": 5, "more": 6, "most": 7}


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def spade_params(c, s, k, hidden):
    """mlp_shared (s -> hidden), mlp_gamma and mlp_beta (hidden -> c); the norm has no parameters."""
    return conv(s, hidden, k) + 2 * conv(hidden, c, k)


def block_params(fin, fout, s, k, hidden):
    mid = min(fin, fout)
    n = conv(fin, mid, 3) + conv(mid, fout, 3) + spade_params(fin, s, k, hidden) + spade_params(mid, s, k, hidden)
    if fin != fout:  # learned shortcut: SPADE + 1x1 convolution without bias
        n += conv(fin, fout, 1, bias=False) + spade_params(fin, s, k, hidden)
    return n


def generator_params(s, ngf, up="normal", vae=False, crop=256, aspect=1.0, z_dim=256, k=3, hidden=128):
    # head_0, G_middle_0, G_middle_1, up_0 .. up_3 (and up_4 for "most"), in units of ngf
    widths = [16, 16, 16, 16, 8, 4, 2, 1] + ([0.5] if up == "most" else [])
    n = sum(block_params(int(a * ngf), int(b * ngf), s, k, hidden) for a, b in zip(widths, widths[1:]))
    sw = crop // 2 ** UPS[up]
    sh = round(sw / aspect)
    cells = 16 * ngf * sh * sw
    n += z_dim * cells + cells if vae else conv(s, 16 * ngf, 3)  # fc
    return n + conv(int(widths[-1] * ngf), 3, 3)  # conv_img


def discriminator_params(cin, ndf=64, n_layers=4, num_d=2):
    n, width = conv(cin, ndf, 4), ndf
    for _ in range(1, n_layers):  # spectral conv without bias + instance norm (no parameters)
        n, width = n + conv(width, min(2 * width, 512), 4, bias=False), min(2 * width, 512)
    return num_d * (n + conv(width, 1, 4))


def encoder_params(ndf=64, z_dim=256, cin=3):
    widths = [cin, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 8 * ndf, 8 * ndf]
    convs = sum(conv(a, b, 3, bias=False) for a, b in zip(widths, widths[1:]))
    return convs + 2 * (8 * ndf * 4 * 4 * z_dim + z_dim)


def count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    ("semantic_nc", "ngf", "up", "vae", "crop", "aspect"),
    [(5, 2, "normal", False, 256, 1.0), (4, 4, "more", False, 512, 2.0), (3, 2, "most", False, 256, 1.0),
     (6, 2, "normal", True, 256, 1.0), (6, 2, "more", True, 512, 2.0)],
)
def test_generator_parameter_count_matches_the_reference_layout(semantic_nc, ngf, up, vae, crop, aspect):
    net = spade_generator(in_channels=semantic_nc, ngf=ngf, num_upsampling_layers=up, use_vae=vae, crop_size=crop,
                          aspect_ratio=aspect)
    assert count(net) == generator_params(semantic_nc, ngf, up, vae, crop, aspect)


def test_spade_kernel_and_hidden_width_follow_the_reference_count():
    net = spade_generator(in_channels=4, ngf=2, spade_kernel=5, spade_hidden=8)
    assert count(net) == generator_params(4, 2, k=5, hidden=8)


# The paper's settings (docs/semantic-synthesis.md): semantic_nc = label_nc + don't-care + instance.
PAPER = {
    "cityscapes": ({"in_channels": 36, "num_upsampling_layers": "more", "crop_size": 512, "aspect_ratio": 2.0},
                   93_048_003),
    "ade20k": ({"in_channels": 151}, 96_492_483),
    "coco_stuff": ({"in_channels": 184}, 97_480_899),
    "ade20k_vae": ({"in_channels": 151, "use_vae": True}, 111_942_595),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_settings_parameter_counts(name):
    options, expected = PAPER[name]
    with torch.device("meta"):
        net = spade_generator(**options)
    assert count(net) == expected == generator_params(
        options["in_channels"], 64, options.get("num_upsampling_layers", "normal"), options.get("use_vae", False),
        options.get("crop_size", 256), options.get("aspect_ratio", 1.0))


def test_discriminator_and_encoder_counts_match_the_reference_layout():
    with torch.device("meta"):
        assert count(spade_multiscale(in_channels=36 + 3)) == discriminator_params(39) == 5_601_410
        assert count(spade_encoder()) == encoder_params() == 10_463_424
    assert count(spade_multiscale(in_channels=7, ndf=4, n_layers=3, num_d=3)) == discriminator_params(7, 4, 3, 3)
    assert count(spade_encoder(ndf=2, z_dim=8)) == encoder_params(2, 8)


# --- spectral norm where the reference has it -------------------------------------------------------


def spectral(net):
    return {name for name, m in net.named_modules() if parametrize.is_parametrized(m, "weight")}


@pytest.mark.parametrize("up", ["normal", "most"])
def test_spectral_norm_on_the_residual_blocks_only(up):
    net = spade_generator(in_channels=3, ngf=2, spade_hidden=8, num_upsampling_layers=up)
    blocks = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"] + (["up_4"] if up == "most" else [])
    learned = [b for b in blocks if b.startswith("up_")]  # the width changes: learned shortcut
    expected = {f"{b}.conv_{i}" for b in blocks for i in (0, 1)} | {f"{b}.conv_s" for b in learned}
    assert spectral(net) == expected  # not fc, conv_img nor SPADE's convolutions
    keys = net.state_dict().keys()
    assert {"up_0.conv_s.parametrizations.weight.original", "up_0.conv_s.parametrizations.weight.0._u",
            "up_0.conv_s.parametrizations.weight.0._v", "head_0.norm_0.mlp_shared.0.weight"} <= keys
    assert "up_0.conv_s.bias" not in keys and "head_0.conv_s.weight" not in keys
    assert spectral(spade_generator(in_channels=3, ngf=2, spade_hidden=8, spectral=False)) == set()


def test_spectral_norm_in_the_discriminator_and_encoder():
    d = spade_multiscale(in_channels=7, ndf=4, n_layers=4, num_d=2)
    assert spectral(d) == {f"scales.{k}.blocks.{j}.0" for k in range(2) for j in (1, 2, 3)}  # not the first, not head
    e = spade_encoder(ndf=2, input_size=128)
    assert spectral(e) == {f"layers.{k}.0" for k in range(6)}
    assert spectral(spade_multiscale(in_channels=7, ndf=4, spectral=False)) == set()


# --- shapes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("up", "size"), [("normal", (32, 32)), ("normal", (64, 32)), ("more", (64, 64)),
                                          ("most", (128, 128))])
def test_generator_output_shapes(up, size):
    torch.manual_seed(0)
    net = spade_generator(in_channels=4, ngf=2, spade_hidden=8, num_upsampling_layers=up)
    seg = torch.rand(2, 4, *size)
    y = net(seg)
    assert tuple(y.shape) == (2, 3, *size)
    assert y.abs().max() < 1
    assert net.size_multiple == 2 ** UPS[up]


def test_vae_mode_takes_z_and_fixes_the_size():
    torch.manual_seed(0)
    net = spade_generator(in_channels=4, ngf=2, spade_hidden=8, use_vae=True, z_dim=8, crop_size=64,
                          aspect_ratio=2.0).eval()
    assert net.latent_size == (1, 2) and net.image_size == (32, 64)
    seg = torch.rand(2, 4, 32, 64)
    z = torch.randn(2, 8)
    assert tuple(net(seg, z).shape) == (2, 3, 32, 64)
    assert torch.equal(net(seg, z), net(seg, z))
    assert not torch.allclose(net(seg, z), net(seg, -z))
    assert tuple(net(seg).shape) == (2, 3, 32, 64)  # z drawn from N(0, I)
    with pytest.raises(ValueError, match=r"\(B, 4, 32, 64\) in VAE mode"):
        net(torch.rand(2, 4, 64, 64), z)
    with pytest.raises(ValueError, match=r"Expected z of shape \(2, 8\)"):
        net(seg, torch.randn(2, 7))


def test_generator_input_errors():
    net = spade_generator(in_channels=4, ngf=2, spade_hidden=8)
    with pytest.raises(ValueError, match=r"Expected a label map of shape \(B, 4, H, W\) with H, W divisible by 32"):
        net(torch.rand(1, 4, 48, 32))
    with pytest.raises(ValueError, match=r"got \(1, 3, 32, 32\)"):
        net(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="use_vae is false"):
        net(torch.rand(1, 4, 32, 32), torch.randn(1, 256))
    with pytest.raises(ValueError, match="num_upsampling_layers 'normal', 'more' or 'most'"):
        SPADEGenerator(4, num_upsampling_layers="lots")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop_size >= 64"):
        SPADEGenerator(4, num_upsampling_layers="more", crop_size=32)


def test_instance_norm_needs_a_start_of_more_than_one_pixel(registry):
    net = registry.create("generator", "spade_generator", in_channels=3, ngf=2, spade_hidden=8, norm="instance")
    assert (net.size_multiple, net.min_size) == (32, 64)
    assert tuple(net(torch.rand(1, 3, 64, 32)).shape) == (1, 3, 64, 32)  # a 2x1 start trains
    with pytest.raises(ValueError, match="more than one pixel with instance norm"):
        SPADEGenerator(3, norm="instance", use_vae=True, crop_size=32)


def test_without_vae_the_start_follows_the_input_as_the_reference_does_at_its_crop():
    """The reference downsamples the map to (sh, sw) of its crop; here (H, W) / 2^num_up: the same at the crop."""
    torch.manual_seed(0)
    net = spade_generator(in_channels=3, ngf=2, spade_hidden=8, crop_size=64, aspect_ratio=2.0).eval()
    seg = torch.rand(1, 3, 32, 64)
    start = F.interpolate(seg, size=net.latent_size, mode="nearest")
    assert torch.equal(net.fc(start), net.fc(F.interpolate(seg, size=(32 // 32, 64 // 32))))


# --- SPADE by hand ---------------------------------------------------------------------------------


def test_spade_modulation_by_hand():
    torch.manual_seed(0)
    norm = SPADE(2, 3, norm="instance", kernel_size=1, hidden=4)
    x = torch.randn(1, 2, 4, 4)
    seg = torch.tensor([[0, 1], [2, 0]])
    seg = F.one_hot(seg, 3).permute(2, 0, 1).float()[None]  # (1, 3, 2, 2)
    # by hand: nearest x2 repeats each label pixel 2x2; 1x1 convolutions are matrix products per pixel
    up = seg.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[0].reshape(3, 16)
    w1, b1 = norm.mlp_shared[0].weight[:, :, 0, 0], norm.mlp_shared[0].bias
    hidden = torch.relu(w1 @ up + b1[:, None])
    gamma = norm.mlp_gamma.weight[:, :, 0, 0] @ hidden + norm.mlp_gamma.bias[:, None]
    beta = norm.mlp_beta.weight[:, :, 0, 0] @ hidden + norm.mlp_beta.bias[:, None]
    flat = x[0].reshape(2, 16)
    normalised = (flat - flat.mean(1, keepdim=True)) / torch.sqrt(flat.var(1, unbiased=False, keepdim=True) + 1e-5)
    expected = (normalised * (1 + gamma) + beta).reshape(1, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(norm(x, seg), expected, rtol=1e-5, atol=1e-5)
        g, b = norm.modulation(seg, (4, 4))
        torch.testing.assert_close(g.reshape(2, 16), gamma)
        torch.testing.assert_close(b.reshape(2, 16), beta)


def test_spade_batch_norm_has_no_affine_parameters_but_running_statistics():
    norm = SPADE(4, 3)
    assert norm.param_free_norm.weight is None and norm.param_free_norm.running_mean is not None
    assert isinstance(SPADE(4, 3, norm="instance").param_free_norm, torch.nn.InstanceNorm2d)
    with pytest.raises(ValueError, match="odd kernel_size"):
        SPADE(4, 3, kernel_size=2)


# --- encoder and discriminator ---------------------------------------------------------------------


def test_encoder_shapes_and_reparameterisation(registry):
    torch.manual_seed(0)
    enc = registry.create("encoder", "spade_encoder", ndf=2, z_dim=16, input_size=128)
    assert isinstance(enc, ConvEncoder)
    mu, logvar = enc(torch.rand(3, 3, 40, 56) * 2 - 1)  # resized to 128 x 128 first
    assert mu.shape == logvar.shape == (3, 16)
    z, mu2, _ = enc.sample(torch.rand(3, 3, 128, 128))
    assert z.shape == mu2.shape == (3, 16)
    assert tuple(reparameterize(mu, logvar).shape) == (3, 16)
    assert torch.equal(reparameterize(mu, torch.full_like(logvar, -1e4)), mu)  # no variance: the mean
    with pytest.raises(ValueError, match="multiple of 64 and >= 128"):
        ConvEncoder(input_size=64)
    with pytest.raises(ValueError, match=r"Expected images of shape \(B, 3, H, W\)"):
        enc(torch.rand(1, 1, 64, 64))


def test_discriminator_features_for_feature_matching():
    torch.manual_seed(0)
    d = spade_multiscale(in_channels=7, ndf=4, n_layers=4, num_d=2)
    x = torch.rand(2, 7, 64, 64)
    logits, features = d(x, return_features=True)
    assert [tuple(t.shape) for t in logits] == [tuple(t.shape) for t in d(x)] == [(2, 1, 11, 11), (2, 1, 7, 7)]
    assert [len(f) for f in features] == [4, 4]
    assert [f.shape[1] for f in features[0]] == [4, 8, 16, 32]
    # The reference's FM weight is lambda / num_D per layer; pix2pixHD's 4 / n_features * 1 / num_d equals it here.
    fake = [[f + 1 for f in scale] for scale in features]  # every L1 distance 1
    reference = sum(1.0 / 2 for scale in features for _ in scale)  # sum over scales and layers of L1 / num_D
    assert torch.isclose(feature_matching_loss(features, fake), torch.tensor(reference))
    with pytest.raises(ValueError, match=r"H, W >= 3"):
        d(torch.rand(1, 7, 2, 2))
