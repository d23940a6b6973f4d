"""GMAN (plugins/gman.py): the softmax weighting, the ensemble discriminator, the wrapped loss, the
pairing errors, pix2pix's unchanged step with the two, and a third party's discriminator and loss
as gman's member and base (built by name through the registry)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES
from torch import nn
from translate_kit_plugins.gan_losses import gan_loss, gradient_penalty
from translate_kit_plugins.gman import GMANLoss, gman_discriminator, gman_loss, softmax_weighted_mean

from translate_kit.build import build_method
from translate_kit.errors import RecipeError, UnknownComponentError
from translate_kit.hookspecs import hookimpl
from translate_kit.recipe import load_recipe
from translate_kit.registry import Registry, register_discriminator, register_loss
from translate_kit.testing import RecordingContext, first_party_plugin_manager

RECIPE = RECIPES / "gman_facades.toml"


def patchgan_parameters(in_channels: int, ndf: int, n_layers: int) -> int:
    """A BatchNorm PatchGAN's parameter count from its description: 4x4 convolutions, widths
    ndf * min(2^k, 8), a biased first and last convolution, BN (2 vectors) instead of the others' bias."""
    widths = [ndf * min(2**k, 8) for k in range(n_layers + 1)]
    total = in_channels * widths[0] * 16 + widths[0]
    total += sum(widths[k - 1] * widths[k] * 16 + 2 * widths[k] for k in range(1, n_layers + 1))
    return total + widths[-1] * 16 + 1


def test_softmax_weighted_mean_against_hand_values():
    losses = [0.3, 1.2, 0.7]
    x = torch.tensor(losses, dtype=torch.float64)
    assert softmax_weighted_mean(x, 0.0).item() == pytest.approx(sum(losses) / 3)  # GMAN-0: the mean
    for lam in (1.0, 2.5):
        weights = [math.exp(lam * v) for v in losses]
        expected = sum(w * v for w, v in zip(weights, losses)) / sum(weights)
        assert softmax_weighted_mean(x, lam).item() == pytest.approx(expected)
    assert softmax_weighted_mean(x, 200.0).item() == pytest.approx(max(losses), abs=1e-12)  # tends to the max
    # The gradient of F = sum_i w_i L_i: w_i (1 + lam (L_i - F)) through the weights, w_i without.
    lam = 1.5
    weights = torch.softmax(lam * x, dim=0)
    mean = (weights * x).sum()
    for detach, expected in ((False, weights * (1 + lam * (x - mean))), (True, weights)):
        y = x.clone().requires_grad_(True)
        softmax_weighted_mean(y, lam, detach_weights=detach).backward()
        torch.testing.assert_close(y.grad, expected)
    with pytest.raises(ValueError, match="non-empty vector"):
        softmax_weighted_mean(torch.zeros(0), 1.0)


def test_loss_sums_members_for_d_and_weights_them_for_g(registry):
    """lsgan members: against "real", member i's loss is (c_i - 1)^2 for a constant logit map c_i."""
    constants = [0.5, -1.0, 2.0]
    prediction = [torch.full((2, 1, 3, 3), c) for c in constants]
    per_member = [(c - 1) ** 2 for c in constants]  # 0.25, 4, 1
    for lam in (0.0, 1.0):
        criterion = registry.create("loss", "gman", base="lsgan", lam=lam)
        assert criterion(prediction, True).item() == pytest.approx(sum(per_member))  # D: the sum
        weights = [math.exp(lam * v) for v in per_member]
        g = criterion(prediction, True, for_discriminator=False).item()
        assert g == pytest.approx(sum(w * v for w, v in zip(weights, per_member)) / sum(weights))
    assert registry.create("loss", "gman", base="lsgan", lam=0.0)(prediction, True, False).item() == pytest.approx(
        sum(per_member) / 3
    )  # lam 0: the plain mean
    harsh = registry.create("loss", "gman", base="lsgan", lam=50.0)
    assert harsh(prediction, True, False).item() == pytest.approx(4.0, rel=1e-6)  # large lam: the harshest member
    fake = [c * -1 for c in prediction]
    expected_fake = sum(gan_loss(p, False, "vanilla").item() for p in fake)
    assert registry.create("loss", "gman")(fake, False).item() == pytest.approx(expected_fake)  # vanilla base
    with pytest.raises(TypeError, match="list of member predictions"):
        harsh(prediction[0], True)


def test_loss_gradients_in_float64(registry):
    criterion = registry.create("loss", "gman", base="vanilla", lam=1.0)
    logits = tuple(torch.randn(2, 1, 1, 2, dtype=torch.float64, requires_grad=True) for _ in range(3))
    for real, for_d in ((True, True), (False, True), (True, False)):
        assert torch.autograd.gradcheck(lambda *xs: criterion(list(xs), real, for_d), logits)


def test_members_are_independent_and_each_gets_gradients(registry):
    d = registry.create("discriminator", "gman", in_channels=6, num_d=3, member_options={"ndf": 4, "n_layers": 2})
    assert len(d.members) == 3
    assert sum(p.numel() for p in d.parameters()) == 3 * patchgan_parameters(6, 4, 2)
    assert (d.size_multiple, d.min_size) == (1, 12)  # a 2-layer PatchGAN's: 3 * 2^2 pixels at least
    first = [m.blocks[0][0].weight for m in d.members]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])  # own initialisation
    criterion = registry.create("loss", "gman")
    real, fake = torch.randn(2, 6, 16, 16), torch.randn(2, 6, 16, 16, requires_grad=True)
    loss_d = 0.5 * (criterion(d(real), True) + criterion(d(fake.detach()), False))
    loss_d.backward()
    for i, member in enumerate(d.members):
        grads = [p.grad for p in member.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), f"member {i} got no gradient"
        assert any(g.abs().sum() > 0 for g in grads), f"member {i} got a zero gradient"
    # Each member's gradient is that of its own loss alone: the sum couples nothing.
    member = d.members[1]
    own = 0.5 * (gan_loss(member(real), True, "vanilla") + gan_loss(member(fake.detach()), False, "vanilla"))
    (expected,) = torch.autograd.grad(own, member.head.weight)
    torch.testing.assert_close(member.head.weight.grad, expected)
    criterion(d(fake), True, for_discriminator=False).backward()  # G's side reaches the input through them all
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_penalty_is_the_members_sum(registry):
    d = registry.create("discriminator", "gman", in_channels=3, num_d=2, member_options={"ndf": 4, "n_layers": 1})
    real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    wgangp = registry.create("loss", "gman", base="wgangp", base_options={"gp_weight": 5.0})
    torch.manual_seed(3)
    penalty = wgangp.penalty(d, real, fake)
    torch.manual_seed(3)  # the same interpolation weights, drawn member by member
    expected = sum(gradient_penalty(m, real, fake, 5.0) for m in d.members)
    torch.testing.assert_close(penalty, expected)

    def never(x: torch.Tensor) -> list[torch.Tensor]:
        raise AssertionError("a loss without a penalty called the discriminator")

    assert registry.create("loss", "gman", base="hinge").penalty(never, real, fake).item() == 0.0


def test_wrong_pairings_and_options_are_recipe_errors(registry):
    with pytest.raises(RecipeError, match="loss 'vanilla' scores .* 'gman' .* outputs ensemble_logits"):
        load_recipe(RECIPE, ['method.gan_mode="vanilla"', "method.gan_options={}"], registry=registry)
    with pytest.raises(RecipeError, match="loss 'gman' scores discriminator outputs ensemble_logits, but discriminator"
                                          " 'patchgan'"):
        load_recipe(RECIPES / "pix2pix_facades.toml", ['method.gan_mode="gman"'], registry=registry)
    with pytest.raises(UnknownComponentError, match="Did you mean 'patchgan'"):
        load_recipe(RECIPE, ['discriminator.member="patchgann"'], registry=registry)
    with pytest.raises(RecipeError, match="unknown key 'n_layer' for discriminator 'patchgan'"):
        load_recipe(RECIPE, ["discriminator.member_options={ n_layer = 3 }"], registry=registry)
    with pytest.raises(RecipeError, match="unknown key 'gp_weight' for loss 'vanilla'"):
        load_recipe(RECIPE, ["method.gan_options={ base_options = { gp_weight = 1.0 } }"], registry=registry)
    # Kinds that do not fit are refused at load: the member must output logits, the base score them.
    with pytest.raises(RecipeError, match=r"\[method\], key 'gan_options' \(options of loss 'gman'\), key 'base': "
                                          r"loss 'l1' \(plugin 'gan_losses'\) is not an adversarial loss, and this "
                                          r"option needs one that scores logits. Choose one of: hinge, lsgan, vanilla, "
                                          r"wgangp."):
        load_recipe(RECIPE, ['method.gan_options={ base = "l1" }'], registry=registry)
    with pytest.raises(RecipeError, match=r"\[discriminator\], key 'member': discriminator 'ebgan_autoencoder' "
                                          r"\(plugin 'ebgan'\) outputs energy_embedding, and this option needs one "
                                          r"that outputs logits. Choose one of: .*patchgan, patchgan_16"):
        load_recipe(RECIPE, ['discriminator.member="ebgan_autoencoder"'], registry=registry)
    with pytest.raises(RecipeError, match="loss 'l1' .* is not an adversarial loss"):
        registry.create("loss", "gman", base="l1")
    # gman sets every member's in_channels; the member's options may only repeat it.
    with pytest.raises(RecipeError, match=r"key 'member_options' \(options of discriminator 'patchgan'\), key "
                                          r"'in_channels': discriminator 'patchgan' needs in_channels = 6 here "
                                          r"\(discriminator 'gman' sets it\), got 3"):
        registry.create("discriminator", "gman", member_options={"in_channels": 3})
    repeated = registry.create("discriminator", "gman", num_d=1, member_options={"in_channels": 6, "ndf": 2})
    assert len(repeated.members) == 1 and repeated.members[0].in_channels == 6
    with pytest.raises(RecipeError, match="num_d >= 1"):
        registry.create("discriminator", "gman", num_d=0)


def test_factories_called_from_python_need_builders(registry):
    """Outside a recipe, the factories take builders (`registry.builder`), and check their kinds too."""
    with pytest.raises(TypeError, match=r"builds its members through the registry, got member='patchgan'"):
        gman_discriminator(member="patchgan")
    with pytest.raises(TypeError, match=r"builds its base loss through the registry, got base='vanilla'"):
        gman_loss(base="vanilla")
    with pytest.raises(ValueError, match="members must output logits, got discriminator 'ebgan_autoencoder', which "
                                         "outputs energy_embedding"):
        gman_discriminator(member=registry.builder("discriminator", "ebgan_autoencoder"))
    with pytest.raises(ValueError, match="base must be an adversarial loss that scores logits, got loss 'l1'"):
        gman_loss(base=registry.builder("loss", "l1"))
    d = gman_discriminator(in_channels=3, num_d=2, member=registry.builder("discriminator", "pixelgan", ndf=2))
    # Two 1x1 PixelGANs (batch norm): conv 3->2 with bias, conv 2->4 without, BN's 2 x 4, head 4->1 without bias.
    assert sum(p.numel() for p in d.parameters()) == 2 * ((3 * 2 + 2) + 2 * 4 + 2 * 4 + 4)
    assert gman_loss(base=registry.builder("loss", "wgangp", gp_weight=3.0)).base.gp_weight == 3.0


def test_pix2pix_step_is_the_gman_objective(registry):
    """pix2pix, unchanged: D's loss is half of each member's real + fake loss, summed over members;
    G's adversarial term is the softmax(lam * L_i)-weighted mean of its losses against them."""
    recipe = load_recipe(RECIPE, [
        "generator.num_downs=5", "generator.ngf=4", "discriminator.num_d=3",
        "discriminator.member_options={ ndf = 4, n_layers = 2 }", "method.gan_options={ lam = 2.0 }",
    ], registry=registry)
    method = build_method(recipe, registry)
    torch.manual_seed(1)
    real_a, real_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    ctx = RecordingContext()
    torch.manual_seed(2)
    logged = method.training_step({"A": real_a, "B": real_b}, ctx)

    torch.manual_seed(2)  # the same dropout masks: the same fake
    G, D = method.nets["G"], method.nets["D"]
    with torch.no_grad():
        fake_b = G(real_a)
        real_pair, fake_pair = torch.cat([real_a, real_b], 1), torch.cat([real_a, fake_b], 1)
        loss_d = sum(0.5 * (gan_loss(m(real_pair), True, "vanilla") + gan_loss(m(fake_pair), False, "vanilla"))
                     for m in D.members)
        g_losses = [gan_loss(m(fake_pair), True, "vanilla", False).item() for m in D.members]
    weights = [math.exp(2.0 * v) for v in g_losses]
    gan_term = sum(w * v for w, v in zip(weights, g_losses)) / sum(weights)
    torch.testing.assert_close(ctx.losses["D"], loss_d)
    assert logged["loss_G_GAN"].item() == pytest.approx(gan_term, rel=1e-5)
    assert ctx.losses["G"].item() == pytest.approx(gan_term + 100.0 * (fake_b - real_b).abs().mean().item(), rel=1e-5)
    assert isinstance(method.gan_loss, GMANLoss) and method.gan_loss.lam == 2.0


# ------------------------------------------------------------------------------------------------
# A third party's discriminator and loss as gman's member and base: built by name, never imported.


class ToyCritic(nn.Module):
    """A logit discriminator: 1x1 convolution to `width`, ReLU, 1x1 to one channel, 2x2 average pooling."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.ReLU(), nn.Conv2d(width, 1, 1), nn.AvgPool2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_discriminator("toy_critic", tiny={"width": 2})
def toy_critic(*, in_channels: int = 6, width: int = 4) -> ToyCritic:
    """A third party's logit discriminator."""
    return ToyCritic(in_channels, width)


class ToyMarginLoss(nn.Module):
    """A hinge loss with its own margin m: D pays mean(relu(m - x)) on real, mean(relu(m + x)) on fake;
    G pays mean(-x)."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if not for_discriminator:
            return -prediction.mean()
        return torch.relu(self.margin - prediction if target_is_real else self.margin + prediction).mean()

    def penalty(self, discriminator: object, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real.new_zeros(())


@register_loss("toy_margin", scores=("logits",))
def toy_margin(*, margin: float = 1.0) -> ToyMarginLoss:
    """A third party's adversarial loss on logits."""
    return ToyMarginLoss(margin)


class ThirdParty:
    """A plugin, as a third party ships one: its components come from the registration hook."""

    @staticmethod
    @hookimpl
    def translate_kit_register_components() -> list[object]:
        return [toy_critic, toy_margin]


@pytest.fixture(scope="module")
def third_party() -> Registry:
    return Registry.from_plugin_manager(first_party_plugin_manager(plugins=[ThirdParty()]))


TOY = ['discriminator.member="toy_critic"', "discriminator.member_options={ width = 3 }", "discriminator.num_d=2",
       'method.gan_options={ base = "toy_margin", base_options = { margin = 0.5 }, lam = 0.0 }',
       "generator.num_downs=5", "generator.ngf=4"]


def test_a_third_party_member_and_base(third_party):
    method = build_method(load_recipe(RECIPE, TOY, registry=third_party), third_party)
    d, criterion = method.nets["D"], method.gan_loss
    assert [type(m) for m in d.members] == [ToyCritic, ToyCritic]
    assert sum(p.numel() for p in d.parameters()) == 2 * (6 * 3 + 3 + 3 * 1 + 1)  # in_channels 6, set by gman
    assert not torch.equal(d.members[0].body[0].weight, d.members[1].body[0].weight)  # each its own initialisation
    assert (d.size_multiple, d.min_size) == (1, 0)  # a member that declares no size constraint
    outputs = d(torch.randn(2, 6, 8, 8))
    assert [tuple(o.shape) for o in outputs] == [(2, 1, 4, 4)] * 2
    assert isinstance(criterion.base, ToyMarginLoss) and criterion.base.margin == 0.5 and criterion.lam == 0.0
    # By hand: constant logits 0.2 and -1.0; margin 0.5; lam 0 (the mean) for G.
    prediction = [torch.full((2, 1, 4, 4), 0.2), torch.full((2, 1, 4, 4), -1.0)]
    assert criterion(prediction, True).item() == pytest.approx(0.3 + 1.5)  # D, real: relu(0.5 - c), summed
    assert criterion(prediction, False).item() == pytest.approx(0.7 + 0.0)  # D, fake: relu(0.5 + c), summed
    assert criterion(prediction, True, for_discriminator=False).item() == pytest.approx((-0.2 + 1.0) / 2)


def test_a_third_party_member_and_base_are_checked_at_load(third_party):
    with pytest.raises(UnknownComponentError, match="Unknown discriminator 'toy_critc' .*Did you mean 'toy_critic'"):
        load_recipe(RECIPE, [*TOY, 'discriminator.member="toy_critc"'], registry=third_party)
    with pytest.raises(RecipeError, match=r"key 'member_options' \(options of discriminator 'toy_critic'\): unknown "
                                          r"key 'widht' for discriminator 'toy_critic'. Did you mean 'width'?"):
        load_recipe(RECIPE, [*TOY, "discriminator.member_options={ widht = 3 }"], registry=third_party)
    with pytest.raises(RecipeError, match=r"key 'base_options' \(options of loss 'toy_margin'\): unknown key 'margn' "
                                          r"for loss 'toy_margin'. Did you mean 'margin'?"):
        load_recipe(RECIPE, [*TOY, 'method.gan_options={ base = "toy_margin", base_options = { margn = 1.0 } }'],
                    registry=third_party)
    with pytest.raises(RecipeError, match=r"key 'width' of discriminator 'toy_critic': expected int, got 'three'"):
        load_recipe(RECIPE, [*TOY, 'discriminator.member_options={ width = "three" }'], registry=third_party)
