"""GAN losses against hand computations, sign conventions, lists, gradient penalty, gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from translate_kit_plugins.gan_losses import GANLoss, gan_loss, gradient_penalty, hinge, l1, lsgan, vanilla, wgangp

MODES = ["vanilla", "lsgan", "hinge", "wgangp"]
TOL = {"atol": 1e-12, "rtol": 1e-10}  # float64 against closed forms


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.tensor([[-2.5, -0.3], [0.0, 0.4], [1.7, 3.0]], dtype=torch.float64).view(1, 1, 3, 2)


def _hand(
    x: torch.Tensor, real: bool, mode: str, for_d: bool, t_real: float = 1.0, t_fake: float = 0.0
) -> torch.Tensor:
    """The losses written out from their definitions, element by element."""
    values = x.flatten().tolist()
    n = len(values)
    if mode == "vanilla":
        t = t_real if real else t_fake
        sig = [1 / (1 + torch.exp(torch.tensor(-v, dtype=torch.float64))) for v in values]
        return -sum(t * torch.log(s) + (1 - t) * torch.log(1 - s) for s in sig) / n
    if mode == "lsgan":
        t = t_real if real else t_fake
        return torch.tensor(sum((v - t) ** 2 for v in values) / n, dtype=torch.float64)
    if not for_d:
        return torch.tensor(-sum(values) / n, dtype=torch.float64)
    if mode == "hinge":
        return torch.tensor(sum(max(0.0, 1 - v) if real else max(0.0, 1 + v) for v in values) / n, dtype=torch.float64)
    return torch.tensor((-1 if real else 1) * sum(values) / n, dtype=torch.float64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("real", [True, False])
def test_discriminator_loss_matches_hand_computation(logits, mode, real):
    torch.testing.assert_close(gan_loss(logits, real, mode), _hand(logits, real, mode, True), **TOL)
    torch.testing.assert_close(GANLoss(mode)(logits, real), _hand(logits, real, mode, True), **TOL)


@pytest.mark.parametrize("mode", MODES)
def test_generator_loss_matches_hand_computation(logits, mode):
    loss = gan_loss(logits, True, mode, for_discriminator=False)
    torch.testing.assert_close(loss, _hand(logits, True, mode, False), **TOL)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan"])
def test_label_smoothing(logits, mode):
    criterion = {"vanilla": vanilla, "lsgan": lsgan}[mode](target_real=0.9, target_fake=0.1)
    for real in (True, False):
        expected = _hand(logits, real, mode, True, 0.9, 0.1)
        torch.testing.assert_close(criterion(logits, real), expected, **TOL)
    # lsgan: a perfect prediction of the smoothed label costs nothing
    if mode == "lsgan":
        assert criterion(torch.full((1, 1, 2, 2), 0.9), True).item() == pytest.approx(0.0, abs=1e-12)


def test_sign_conventions():
    confident = torch.full((1, 1, 4, 4), 3.0)  # D says "real" with a large margin
    # hinge: no loss beyond the margin for real, 1 + 3 for fake; G is rewarded for high scores
    assert gan_loss(confident, True, "hinge").item() == 0.0
    assert gan_loss(confident, False, "hinge").item() == 4.0
    assert gan_loss(confident, True, "hinge", for_discriminator=False).item() == -3.0
    # wgangp: the critic minimises fake - real, so a high real score lowers its loss
    assert gan_loss(confident, True, "wgangp").item() == -3.0
    assert gan_loss(confident, False, "wgangp").item() == 3.0
    assert gan_loss(confident, True, "wgangp", for_discriminator=False).item() == -3.0
    # vanilla/lsgan: the generator's loss is the "real" label loss, so it falls as D is fooled
    for mode in ("vanilla", "lsgan"):
        fooled = gan_loss(confident, True, mode, for_discriminator=False)
        caught = gan_loss(-confident, True, mode, for_discriminator=False)
        assert fooled < caught
        assert torch.equal(fooled, gan_loss(confident, True, mode))


@pytest.mark.parametrize("mode", ["hinge", "wgangp"])
def test_generator_loss_needs_real_target(mode):
    with pytest.raises(ValueError, match="target_is_real=True"):
        gan_loss(torch.zeros(1, 1, 2, 2), False, mode, for_discriminator=False)


@pytest.mark.parametrize("mode", MODES)
def test_list_of_predictions_is_mean_of_losses(mode):
    torch.manual_seed(0)
    preds = [torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4), torch.randn(2, 1, 2, 2)]
    for real, for_d in [(True, True), (False, True), (True, False)]:
        expected = sum(gan_loss(p, real, mode, for_d) for p in preds) / len(preds)
        torch.testing.assert_close(gan_loss(preds, real, mode, for_d), expected)
        torch.testing.assert_close(GANLoss(mode)(tuple(preds), real, for_d), expected)


def test_bad_mode_and_empty_list():
    with pytest.raises(ValueError, match="one of vanilla, lsgan, hinge, wgangp, got 'wgan'"):
        gan_loss(torch.zeros(1), True, "wgan")
    with pytest.raises(ValueError, match="got 'lsgan2'"):
        GANLoss("lsgan2")
    with pytest.raises(ValueError, match="non-empty list"):
        gan_loss([], True, "vanilla")


def test_factories_and_module_attributes():
    assert [f().mode for f in (vanilla, lsgan, hinge, wgangp)] == MODES
    assert wgangp(gp_weight=5.0).gp_weight == 5.0
    assert "gp_weight=5.0" in repr(wgangp(gp_weight=5.0))
    criterion = l1()
    a, b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.0, 0.0, 1.0])
    assert criterion(a, b).item() == pytest.approx((1 + 2 + 2) / 3)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_penalty_is_zero_without_wgangp(mode):
    real = torch.randn(2, 3, 8, 8)
    penalty = GANLoss(mode).penalty(nn.Conv2d(3, 1, 3), real, real)
    assert penalty.shape == () and penalty.item() == 0.0 and penalty.device == real.device


def _linear_critic(w: torch.Tensor):
    return lambda x: (w * x).flatten(1).sum(dim=1, keepdim=True)


@pytest.mark.parametrize(("scale", "weight"), [(1.0, 10.0), (3.0, 10.0), (0.5, 2.0), (0.0, 1.0)])
def test_gradient_penalty_of_linear_critic(scale, weight):
    # D(x) = <w, x> has gradient w at every interpolate: penalty = weight * (||w|| - 1)^2 exactly.
    torch.manual_seed(0)
    w = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    w = scale * w / w.norm()
    real, fake = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    penalty = gradient_penalty(_linear_critic(w), real, fake, weight)
    assert penalty.item() == pytest.approx(weight * (scale - 1) ** 2, abs=1e-9)
    assert torch.equal(GANLoss("wgangp", gp_weight=weight).penalty(_linear_critic(w), real, fake), penalty)


def test_gradient_penalty_trains_the_critic():
    # d/dw [weight * (||w|| - 1)^2] = 2 * weight * (||w|| - 1) * w / ||w||
    w = torch.full((1, 1, 2, 2), 1.5, dtype=torch.float64, requires_grad=True)  # ||w|| = 3
    real, fake = torch.rand(2, 1, 2, 2, dtype=torch.float64), torch.rand(2, 1, 2, 2, dtype=torch.float64)
    gradient_penalty(_linear_critic(w), real, fake, 10.0).backward()
    torch.testing.assert_close(w.grad, 2 * 10.0 * 2.0 * w.detach() / 3.0)


def test_gradient_penalty_uses_per_sample_interpolates():
    # D(x) = sum(x^2) has gradient 2 x: at x = a real + (1 - a) fake the penalty depends on a,
    # and with a fixed generator it is reproducible and matches the hand computation.
    real, fake = torch.ones(3, 1, 2, 2, dtype=torch.float64), torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    penalty = gradient_penalty(lambda x: (x**2).sum(), real, fake, 1.0, generator=torch.Generator().manual_seed(7))
    alpha = torch.rand(3, 1, 1, 1, generator=torch.Generator().manual_seed(7)).double()
    # ||2 a * ones(4)|| = 4 a
    torch.testing.assert_close(penalty, ((4 * alpha.flatten() - 1) ** 2).mean())
    assert len(set(alpha.flatten().tolist())) == 3  # one weight per sample


def test_gradient_penalty_of_patch_and_multiscale_critics():
    torch.manual_seed(0)
    d = nn.Conv2d(2, 1, 3)
    real, fake = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    single = gradient_penalty(d, real, fake, generator=torch.Generator().manual_seed(0))
    assert single.item() > 0 and single.requires_grad
    double = gradient_penalty(lambda x: [d(x), d(x)], real, fake, generator=torch.Generator().manual_seed(0))
    assert double.item() > single.item()  # two equal scales double the gradient
    with pytest.raises(ValueError, match=r"same shape, got \(2, 2, 8, 8\) and \(1, 2, 8, 8\)"):
        gradient_penalty(d, real, fake[:1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("real", "for_d"), [(True, True), (False, True), (True, False)])
def test_gradcheck(mode, real, for_d):
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gan_loss(t, real, mode, for_d, target_real=0.9), (x,))


def test_gradcheck_gradient_penalty():
    # The penalty trains D through a double backward: check its gradient in D's weights.
    torch.manual_seed(0)
    second = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    real, fake = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)

    def penalty(weight: torch.Tensor) -> torch.Tensor:
        def critic(x: torch.Tensor) -> torch.Tensor:
            return nn.functional.conv2d(torch.tanh(nn.functional.conv2d(x, weight)), second)

        return gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))

    weight = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(penalty, (weight,))


def test_low_precision_predictions_score_in_float32():
    x = torch.randn(1, 1, 8, 8).to(torch.bfloat16)
    for mode in MODES:
        assert gan_loss(x, True, mode).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = nn.Conv2d(3, 1, 3)
        real = torch.randn(2, 3, 8, 8)
        pred = d(real)
        assert pred.dtype == torch.bfloat16
        assert torch.isfinite(GANLoss("vanilla")(pred, True)) and GANLoss("vanilla")(pred, True).dtype == torch.float32
        assert GANLoss("wgangp").penalty(d, real, real.flip(0)).dtype == torch.float32


def test_gradient_penalty_is_finite_at_zero_gradient():
    # A constant critic has zero gradient, where the norm is not differentiable: no NaN may leak into D.
    w = torch.zeros(1, 1, 2, 2, requires_grad=True)
    penalty = gradient_penalty(_linear_critic(w), torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2), 10.0)
    penalty.backward()
    assert penalty.item() == 10.0 and torch.isfinite(w.grad).all()
