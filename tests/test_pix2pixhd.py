"""pix2pixHD: multiscale D, feature matching, VGG loss, global/local generators, the method end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import RECIPES, quick_overrides
from translate_kit_plugins.pix2pixhd import (
    FeatureMatchingLoss,
    GlobalGenerator,
    LocalEnhancer,
    MultiscaleDiscriminator,
    feature_matching_loss,
    global_generator,
    local_enhancer,
    multiscale,
)
from translate_kit_plugins.vgg import LAYER_WEIGHTS, SLICE_ENDS, VGGPerceptualLoss, vgg19

from translate_kit.errors import RecipeError
from translate_kit.recipe import load_recipe
from translate_kit.train.trainer import Trainer

RECIPE = RECIPES / "pix2pixhd_facades.toml"
TINY = [
    "generator.ngf=8",
    "generator.n_downsampling=2",
    "generator.n_blocks=1",
    "discriminator.ndf=8",
]


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- multiscale discriminator ----------------------------------------------------------------


@pytest.mark.parametrize(("size", "n_layers", "num_d"), [(32, 1, 3), (48, 2, 2), (64, 1, 1), (100, 3, 3), (37, 1, 2)])
def test_multiscale_gives_one_patch_map_and_features_per_scale(size, n_layers, num_d):
    ndf = 4
    d = multiscale(ndf=ndf, n_layers=n_layers, num_d=num_d)
    x = torch.randn(2, 6, size, size)
    logits, features = d(x, return_features=True)
    assert len(logits) == len(features) == num_d
    for k in range(num_d):
        scale = math.ceil(size / 2**k)  # AvgPool2d(3, 2, 1) maps s to ceil(s / 2)
        side = scale // 2**n_layers - 2  # n_layers stride-2 4x4 convs, then two stride-1 4x4 convs (padding 1)
        assert logits[k].shape == (2, 1, side, side)
        assert len(features[k]) == n_layers + 1
        widths = [ndf * min(2**j, 8) for j in range(n_layers + 1)]
        assert [f.shape[1] for f in features[k]] == widths
        assert features[k][-1].shape[-1] == side + 1
    plain = d(x)
    assert all(torch.equal(a, b) for a, b in zip(plain, logits))


def test_multiscale_scales_are_average_pooled_copies():
    d = multiscale(ndf=4, n_layers=1, num_d=2)
    x = torch.randn(1, 6, 32, 32)
    half = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    assert torch.allclose(d(x)[1], d.scales[1](half))
    assert n_params(d) == 2 * n_params(d.scales[0])


@pytest.mark.parametrize(("n_layers", "num_d", "minimum"), [(3, 3, 93), (1, 3, 21), (2, 2, 23), (3, 1, 24)])
def test_multiscale_min_size_is_exact(n_layers, num_d, minimum):
    d = multiscale(ndf=2, n_layers=n_layers, num_d=num_d)
    assert d.min_size == minimum
    assert all(p.shape[-1] >= 1 for p in d(torch.randn(1, 6, minimum, minimum)))
    with pytest.raises(ValueError, match=rf"Expected input of shape \(B, 6, H, W\) with H, W >= {minimum}"):
        d(torch.randn(1, 6, minimum - 1, minimum - 1))
    with pytest.raises(ValueError, match="B, 6, H, W"):
        d(torch.randn(1, 3, minimum, minimum))


def test_multiscale_default_matches_three_instance_norm_patchgans():
    with torch.device("meta"):
        d = multiscale()
    assert isinstance(d, MultiscaleDiscriminator) and d.num_d == 3 and d.receptive_field == 70
    assert n_params(d) == 3 * 2_767_809  # PatchGAN 70 with InstanceNorm: convs keep their bias
    with pytest.raises(ValueError, match="num_d >= 1"):
        multiscale(num_d=0)


# --- feature matching --------------------------------------------------------------------------


def test_feature_matching_is_zero_for_equal_and_positive_for_different_features():
    d = multiscale(ndf=4, n_layers=1, num_d=2)
    x = torch.randn(1, 6, 32, 32)
    _, real = d(x, return_features=True)
    _, same = d(x.clone(), return_features=True)
    _, other = d(x + 0.5 * torch.randn_like(x), return_features=True)
    assert feature_matching_loss(real, same).item() == 0.0
    assert feature_matching_loss(real, other).item() > 0.0
    assert FeatureMatchingLoss()(real, other) == feature_matching_loss(real, other)


def test_feature_matching_equals_the_reference_weighting_by_hand():
    # Two scales of two layers: weight 4 / 2 (layers) / 2 (scales) = 1 per term.
    real = [[torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 1, 1)], [torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)]]
    fake = [
        [torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[1.0]], [[-3.0]]]])],
        [torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 3.0)],
    ]
    fake = [[f.requires_grad_(True) for f in scale] for scale in fake]
    real = [[r.requires_grad_(True) for r in scale] for scale in real]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(2.5 + 2.0 + 0.5 + 2.0)
    loss.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None  # real features are detached
    # One scale of three layers: 4 / 3 per term.
    one = feature_matching_loss([[torch.zeros(2)] * 3], [[torch.ones(2)] * 3])
    assert one.item() == pytest.approx(4.0)


def test_feature_matching_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="number of scales"):
        feature_matching_loss([[torch.zeros(1)]], [])
    with pytest.raises(ValueError, match="number of layers"):
        feature_matching_loss([[torch.zeros(1)]], [[torch.zeros(1), torch.zeros(1)]])
    with pytest.raises(ValueError, match="same shape"):
        feature_matching_loss([[torch.zeros(1)]], [[torch.zeros(2)]])


# --- VGG perceptual loss ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg() -> VGGPerceptualLoss:
    torch.manual_seed(0)
    return vgg19(allow_random=True)


def test_vgg_loss_is_zero_for_equal_and_positive_for_different_images(vgg):
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert vgg(x, x.clone()).item() == 0.0
    assert vgg(x, (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)).item() > 0.0
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training


def test_vgg_loss_weights_the_layers_as_pix2pixhd(vgg):
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    layers = torch.nn.Sequential(*[m for block in vgg.slices for m in block])
    assert len(layers) == SLICE_ENDS[-1] == 30
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def relus(img):
        h, out = ((img + 1) / 2 - mean) / std, []
        for i, layer in enumerate(layers):
            h = layer(h)
            if i + 1 in SLICE_ENDS:
                out.append(h)
        return out

    assert [type(layers[i - 1]).__name__ for i in SLICE_ENDS] == ["ReLU"] * 5  # relu1_1 ... relu5_1
    assert LAYER_WEIGHTS == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    expected = sum(w * (a - b).abs().mean() for w, a, b in zip(LAYER_WEIGHTS, relus(x), relus(y)))
    assert vgg(x, y).item() == pytest.approx(expected.item(), rel=1e-5)

    x.requires_grad_(True)
    y.requires_grad_(True)
    vgg(x, y).backward()
    assert x.grad is not None and y.grad is None  # the target is detached


def test_vgg_needs_a_weights_file(tmp_path, registry):
    with pytest.raises(RecipeError, match="VGG19 weights file needed.*vgg19-dcbb9e9d.pth.*allow_random = true"):
        vgg19()
    with pytest.raises(RecipeError, match="VGG19 weights file needed"):
        registry.create("loss", "vgg19")
    with pytest.raises(RecipeError, match="does not exist"):
        vgg19(weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_text("<html>not a checkpoint</html>")
    with pytest.raises(RecipeError, match="Cannot read VGG19 weights"):
        vgg19(weights=str(tmp_path / "junk.pth"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(RecipeError, match="not a torchvision vgg19 state dict"):
        vgg19(weights=str(tmp_path / "other.pth"))


def test_vgg_loads_the_features_of_a_torchvision_state_dict(tmp_path, vgg):
    layers = [m for block in vgg.slices for m in block]
    state = {f"features.{i}.{k}": v.clone() + 1 for i, m in enumerate(layers) for k, v in m.state_dict().items()}
    state["features.30.weight"] = torch.zeros(1)  # relu5_1 is the last layer used; the rest is ignored
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = vgg19(weights=str(tmp_path / "vgg19.pth"))
    assert torch.equal(loaded.slices[0][0].weight, state["features.0.weight"])
    assert torch.equal(loaded.slices[4][-2].bias, state["features.28.bias"])


# --- generators ------------------------------------------------------------------------------


def test_global_generator_shapes_and_size_guards():
    g = global_generator(ngf=4, n_downsampling=3, n_blocks=2)
    assert isinstance(g, GlobalGenerator) and (g.size_multiple, g.min_size) == (8, 16)
    y = g(torch.randn(2, 3, 16, 24))
    assert y.shape == (2, 3, 16, 24) and y.abs().max() <= 1
    assert g.features(torch.randn(1, 3, 16, 16)).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match=r"divisible by 8 and >= 16, got \(1, 3, 20, 24\)"):
        g(torch.randn(1, 3, 20, 24))
    with pytest.raises(ValueError, match="divisible by 8 and >= 16"):
        g(torch.randn(1, 3, 8, 8))  # a 1x1 bottleneck cannot be reflection-padded
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        g(torch.randn(1, 1, 16, 16))


def test_global_generator_parameter_count():
    with torch.device("meta"):
        g = global_generator()  # ngf 64, n_downsampling 4, 9 blocks: the paper's G1
        g1_in_g2 = local_enhancer()
    assert n_params(g) == 182_443_267
    assert n_params(g1_in_g2) == 182_701_827  # G1 without its c7s1-3 head, plus G2


def test_local_enhancer_shapes_guards_and_frozen_global():
    g = local_enhancer(ngf=4, global_ngf=8, global_n_downsampling=2, global_n_blocks=1, n_local_blocks=1)
    assert isinstance(g, LocalEnhancer) and (g.size_multiple, g.min_size) == (8, 16)
    x = torch.randn(2, 3, 32, 16)
    assert g(x).shape == (2, 3, 32, 16)
    # The global part sees the half-size input and feeds its last feature map to the enhancer.
    half = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    expected = g.back(g.front(x) + g.global_generator.features(half))
    assert torch.allclose(g(x), expected)
    with pytest.raises(ValueError, match="divisible by 8"):
        g(torch.randn(1, 3, 20, 16))
    with pytest.raises(ValueError, match="ngf to be 2 \\* ngf = 8, got 16"):
        local_enhancer(ngf=4, global_ngf=16)
    frozen_g = local_enhancer(ngf=4, global_ngf=8, global_n_downsampling=2, global_n_blocks=1, train_global=False)
    assert not any(p.requires_grad for p in frozen_g.global_generator.parameters())
    assert all(p.requires_grad for p in frozen_g.back.parameters())
    g1 = global_generator(ngf=8, n_downsampling=2, n_blocks=1)
    frozen_g.load_global_weights(g1.state_dict())
    assert torch.equal(frozen_g.global_generator.front[1].weight, g1.front[1].weight)


# --- the method ------------------------------------------------------------------------------


def state(trainer):
    return {f"{n}.{k}": v.clone() for n, net in trainer.method.nets.items() for k, v in net.state_dict().items()}


def train(registry, pm, root, run_dir, *extra):
    recipe = load_recipe(RECIPE, quick_overrides(root, run_dir) + TINY + list(extra), registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    before = state(trainer)
    history = trainer.fit()
    return trainer, before, state(trainer), history


def test_recipe_has_the_papers_settings(registry):
    recipe = load_recipe(RECIPE, registry=registry)
    assert (recipe.data.load_size, recipe.data.crop_size, recipe.train.batch_size) == (286, 256, 1)
    assert (recipe.train.epochs, recipe.train.decay_epochs, recipe.train.lr, recipe.train.betas) == (
        100, 100, 2e-4, (0.5, 0.999)
    )
    method = recipe.components["method"]
    assert (method["gan_mode"], method["lambda_fm"], method["lambda_vgg"]) == ("lsgan", 10.0, 0.0)
    assert recipe.components["generator"]["n_downsampling"] == 4
    assert recipe.components["discriminator"]["num_d"] == 3


def test_pix2pixhd_trains_two_steps_and_changes_both_networks(registry, pm, tiny_facades, tmp_path):
    trainer, before, after, history = train(registry, pm, tiny_facades, tmp_path)
    assert [r["step"] for r in history] == [1, 2]
    assert {"loss_G_GAN", "loss_G_FM", "loss_D_real", "loss_D_fake"} <= set(history[0])
    assert "loss_G_VGG" not in history[0] and "loss_G_L1" not in history[0]
    assert all(math.isfinite(v) for r in history for v in r.values())
    assert history[0]["loss_G_FM"] > 0
    assert isinstance(trainer.method.nets["D"], MultiscaleDiscriminator)
    for prefix in ("G.", "D."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "weight" in k)


def test_pix2pixhd_with_vgg_l1_and_a_frozen_global_generator(registry, pm, tiny_facades, tmp_path):
    _, before, after, history = _train_local(registry, pm, tiny_facades, tmp_path)
    assert {"loss_G_VGG", "loss_G_L1"} <= set(history[0])
    assert all(math.isfinite(v) for r in history for v in r.values())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("G.global_generator.") for k in changed)  # G1 frozen: coarse-to-fine phase 1
    assert any(k.startswith("G.back.") for k in changed)


def _train_local(registry, pm, root, run_dir):
    recipe = load_recipe(RECIPE, registry=registry).to_dict()
    recipe["generator"] = {
        "name": "local_enhancer", "ngf": 4, "global_ngf": 8, "global_n_downsampling": 2, "global_n_blocks": 1,
        "n_local_blocks": 1, "train_global": False,
    }
    recipe["discriminator"]["ndf"] = 8
    recipe["method"].update(lambda_vgg=10.0, vgg_options={"allow_random": True}, lambda_l1=1.0)
    recipe = load_recipe(recipe, quick_overrides(root, run_dir), registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    before = state(trainer)
    history = trainer.fit()
    return trainer, before, state(trainer), history


def test_vgg_without_weights_is_a_recipe_error_before_training(registry, pm, tiny_facades, tmp_path):
    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path) + TINY + ["method.lambda_vgg=10.0"],
                         registry=registry)
    with pytest.raises(RecipeError, match="VGG19 weights file needed"):
        Trainer(recipe, registry=registry, pm=pm, device="cpu")
