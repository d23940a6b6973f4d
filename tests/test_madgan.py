"""MAD-GAN: the shared-trunk generators, the (k+1)-class loss, recipe errors, diversity and the
generator option; and pix2pix's extension point left pix2pix's numbers as they were."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.madgan import (
    MADGAN,
    MultiClassGANLoss,
    SeparateGenerators,
    madgan_patchgan,
    madgan_unet,
    multiclass_gan_loss,
)
from translate_kit_plugins.pix2pix import Pix2Pix
from translate_kit_plugins.unet import unet

from translate_kit.api import InferenceError, RecipeError, build_method
from translate_kit.inference import Translator
from translate_kit.method import describe_inputs
from translate_kit.recipe import load_recipe
from translate_kit.testing import RecordingContext
from translate_kit.train.trainer import Trainer

TINY = ["generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4", "discriminator.n_layers=2"]


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------------------
# Networks


@pytest.mark.parametrize("heads", [1, 3])
def test_the_heads_share_the_trunk_parameter_count(heads):
    ngf, out = 8, 3
    head = (2 * ngf) * out * 4 * 4 + out  # the outermost ConvTranspose2d(2 ngf, out, 4) and its bias
    trunk = count(unet(num_downs=5, ngf=ngf)) - head  # a U-Net is the trunk and one head
    net = madgan_unet(num_heads=heads, num_downs=5, ngf=ngf)
    assert count(net) == trunk + heads * head
    assert sum(p.numel() for n, p in net.named_parameters() if n.startswith("heads.")) == heads * head


def test_each_head_with_the_trunk_computes_a_unet():
    torch.manual_seed(0)
    net = madgan_unet(num_heads=3, num_downs=5, ngf=8).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    together = net(x, head="all")
    assert together.shape == (6, 3, 32, 32)
    for i in range(3):
        single = unet(num_downs=5, ngf=8).eval()
        state = {k: v for k, v in net.state_dict().items() if not k.startswith("heads.")}
        state.update({f"ups.4.{k[len(f'heads.{i}.'):]}": v for k, v in net.state_dict().items()
                      if k.startswith(f"heads.{i}.")})
        single.load_state_dict(state)  # strict: exactly a U-Net's parameters
        with torch.no_grad():
            expected = single(x)
            assert torch.equal(net(x, head=i), expected)
            assert torch.equal(together[2 * i : 2 * i + 2], expected)
    with pytest.raises(ValueError, match="head 'all' or an int in 0..2, got 3"):
        net(x, head=3)


def test_the_discriminator_gives_k_plus_1_logits_per_patch():
    one, four = madgan_patchgan(num_classes=1, ndf=8), madgan_patchgan(num_classes=4, ndf=8)
    assert count(four) - count(one) == 3 * (8 * 8 * 4 * 4 + 1)  # three more filters on 8·ndf maps, with biases
    assert four(torch.randn(2, 6, 64, 64)).shape == (2, 4, 6, 6)


# ------------------------------------------------------------------------------------------------
# The (k+1)-class loss


def test_the_loss_matches_hand_computed_cross_entropies():
    # One image, k = 2 (classes: generator 0, generator 1, real), two patches.
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    logits = probs.log().T.reshape(1, 3, 1, 2)
    real = -(math.log(0.5) + math.log(0.3)) / 2
    made_by_1 = -(math.log(0.3) + math.log(0.6)) / 2
    made_by_0 = -(math.log(0.2) + math.log(0.1)) / 2
    made_by_any = -(math.log(0.2 + 0.3) + math.log(0.1 + 0.6)) / 2
    assert multiclass_gan_loss(logits, True).item() == pytest.approx(real, abs=1e-6)
    assert multiclass_gan_loss(logits, True, for_discriminator=False).item() == pytest.approx(real, abs=1e-6)
    assert multiclass_gan_loss(logits, False, generator_index=1).item() == pytest.approx(made_by_1, abs=1e-6)
    assert multiclass_gan_loss(logits, False, generator_index=0).item() == pytest.approx(made_by_0, abs=1e-6)
    assert multiclass_gan_loss(logits, False).item() == pytest.approx(made_by_any, abs=1e-6)
    assert multiclass_gan_loss([logits, logits], True).item() == pytest.approx(real, abs=1e-6)
    half = multiclass_gan_loss(logits.half(), True)
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match="generator_index in 0..1, got 2"):
        multiclass_gan_loss(logits, False, generator_index=2)
    with pytest.raises(ValueError, match="needs target_is_real=True"):
        multiclass_gan_loss(logits, False, for_discriminator=False)
    with pytest.raises(ValueError, match=r"\(B, k \+ 1, ...\)"):
        multiclass_gan_loss(torch.zeros(2, 1, 3, 3), True)


def test_the_loss_gradient_matches_finite_differences():
    logits = torch.randn(2, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    for kwargs in ({"target_is_real": True}, {"target_is_real": False, "generator_index": 2},
                   {"target_is_real": False}):
        assert torch.autograd.gradcheck(lambda x, kw=kwargs: multiclass_gan_loss(x, **kw), (logits,))


class FixedD(nn.Module):
    """A discriminator that gives `real` for a batch of 2 pairs and `fake` for the stacked fakes."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        super().__init__()
        self.real, self.fake = real, fake

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.real if pairs.shape[0] == self.real.shape[0] else self.fake


def test_the_methods_losses_are_the_mean_over_the_k_plus_1_groups():
    torch.manual_seed(0)
    k, batch = 2, 2
    real_logits, fake_logits = torch.randn(batch, k + 1, 2, 2), torch.randn(k * batch, k + 1, 2, 2)
    method = MADGAN(madgan_unet(num_heads=k, num_downs=5, ngf=8), FixedD(real_logits, fake_logits),
                    MultiClassGANLoss(), lambda_l1=100.0, conditional=True)
    a, b = torch.rand(batch, 3, 32, 32) * 2 - 1, torch.rand(batch, 3, 32, 32) * 2 - 1
    fake = method.generate(a, b)
    assert fake.shape == (k * batch, 3, 32, 32)

    def ce(logits: torch.Tensor, cls: int) -> float:  # mean over images and patches of -log softmax
        return -torch.log_softmax(logits.double(), dim=1)[:, cls].mean().item()

    loss_d, logged = method.discriminator_loss(method.nets["D"], a, b, fake, RecordingContext())
    by_hand = (ce(real_logits, k) + ce(fake_logits[:batch], 0) + ce(fake_logits[batch:], 1)) / (k + 1)
    assert loss_d.item() == pytest.approx(by_hand, abs=1e-6)
    assert logged["loss_D_fake"].item() == pytest.approx((ce(fake_logits[:batch], 0) + ce(fake_logits[batch:], 1)) / 2,
                                                         abs=1e-6)
    loss_g = method.generator_adversarial_loss(method.nets["D"], a, fake)
    assert loss_g.item() == pytest.approx(ce(fake_logits, k), abs=1e-6)
    l1 = (fake[:batch] - b).abs().mean() / 2 + (fake[batch:] - b).abs().mean() / 2
    assert method.reconstruction_loss(fake, b).item() == pytest.approx(l1.item(), abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Recipes


def recipe(registry, root, run_dir, *extra, steps=2):
    return load_recipe(RECIPES / "madgan_facades.toml", quick_overrides(root, run_dir, steps=steps) + TINY + list(extra),
                       registry=registry)


def test_a_real_fake_discriminator_or_loss_is_a_recipe_error(registry, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match="loss 'madgan_ce' scores discriminator outputs multiclass_logits, but "
                                          "discriminator 'patchgan'"):
        recipe(registry, tiny_facades, tmp_path, 'discriminator.name="patchgan"')
    with pytest.raises(RecipeError, match="loss 'vanilla' scores discriminator outputs logits"):
        recipe(registry, tiny_facades, tmp_path, 'method.gan_mode="vanilla"')
    loaded = recipe(registry, tiny_facades, tmp_path, 'method.gan_mode="vanilla"', 'discriminator.name="patchgan"')
    with pytest.raises(RecipeError, match='needs a loss that scores multiclass_logits.*method.gan_mode = "madgan_ce"'):
        build_method(loaded, registry)


def test_num_generators_sets_the_heads_and_a_contradiction_is_a_recipe_error(registry, tiny_facades, tmp_path):
    method = build_method(recipe(registry, tiny_facades, tmp_path, "method.num_generators=4"), registry)
    assert method.num_generators == method.nets["G"].num_heads == 4
    assert method.nets["D"].head.out_channels == 5
    with pytest.raises(RecipeError, match="needs num_heads = 4 here"):
        build_method(recipe(registry, tiny_facades, tmp_path, "method.num_generators=4", "generator.num_heads=2"),
                     registry)


def test_any_other_generator_is_built_k_times_unshared(registry, tiny_facades, tmp_path):
    method = build_method(recipe(registry, tiny_facades, tmp_path, 'generator.name="unet"'), registry)
    generators = method.nets["G"]
    assert isinstance(generators, SeparateGenerators) and generators.num_heads == 3
    assert count(generators) == 3 * count(unet(num_downs=5, ngf=4))
    assert generators(torch.zeros(1, 3, 32, 32), head="all").shape == (3, 3, 32, 32)


# ------------------------------------------------------------------------------------------------
# Training and inference


@pytest.fixture(scope="module")
def trained(registry, pm, tiny_facades, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("madgan")
    trainer = Trainer(recipe(registry, tiny_facades, run_dir, steps=2), registry=registry, pm=pm, device="cpu")
    history = trainer.fit()
    assert {"loss_G_GAN", "loss_G_L1", "loss_D_real", "loss_D_fake"} <= set(history[-1])
    assert all(math.isfinite(v) for r in history for v in r.values())
    # pix2pix's test time (batch statistics): after 2 steps the running statistics are still
    # their initial values, which shrink every output towards grey.
    return Translator.from_checkpoint(trainer.run_dir, device="cpu", registry=registry, mode="paper", seed=0)


def test_the_generators_give_different_outputs_and_samples_map_to_them(trained):
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    chosen = [trained.bind(options={"generator": str(i)})(image) for i in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):  # measurably different: more than 3 grey levels on average
            assert (chosen[i].float() - chosen[j].float()).abs().mean() > 3.0
    samples = trained.translate_samples([image], samples=3)[0]  # seed 0: sample s is generator s
    assert all(torch.equal(s, c) for s, c in zip(samples, chosen))
    trained.seed = 4  # seed 4 + s: generators 1, 2, 0
    assert all(torch.equal(s, chosen[(4 + i) % 3]) for i, s in enumerate(trained.translate_samples([image], 3)[0]))
    trained.seed = 0


def test_the_generator_option_is_declared_checked_and_ends_multimodality(trained):
    spec = describe_inputs(trained.method, channels=3)
    assert spec.multimodal and set(spec.options) == {"generator"} and spec.options["generator"].type is int
    bound = trained.bind(options={"generator": "2"})
    assert bound.method.generator_choice == 2 and trained.method.generator_choice is None
    assert not bound.spec.multimodal
    with pytest.raises(InferenceError, match="this model has 3 generators, numbered 0..2"):
        trained.bind(options={"generator": "3"})
    with pytest.raises(InferenceError, match="expected an int"):
        trained.bind(options={"generator": "first"})


def test_madgan_is_pix2pixs_loop_with_its_own_extension_methods():
    """A subclass, not a copy: the step is Pix2Pix's, the four extension methods MAD-GAN's."""
    hooks = ("generate", "discriminator_loss", "generator_adversarial_loss", "reconstruction_loss")
    assert MADGAN.training_step is Pix2Pix.training_step
    assert all(getattr(MADGAN, name) is not getattr(Pix2Pix, name) for name in hooks)


@pytest.mark.parametrize("conditional", [True, False])
def test_pix2pixs_step_is_still_the_papers_objective_bit_for_bit(conditional):
    """The split into extension methods changed no number: the losses equal pix2pix's objective
    written out here, torch.equal (U-Net with 5 levels: no dropout, so nothing random)."""
    from translate_kit_plugins.gan_losses import vanilla
    from translate_kit_plugins.patchgan import patchgan

    torch.manual_seed(0)
    method = Pix2Pix(unet(num_downs=5, ngf=8), patchgan(in_channels=6 if conditional else 3, ndf=8, n_layers=2),
                     vanilla(), lambda_l1=100.0, conditional=conditional)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    ctx = RecordingContext()
    logged = method.training_step({"A": a, "B": b}, ctx)
    assert list(logged) == ["loss_G_GAN", "loss_G_L1", "loss_D_real", "loss_D_fake"]

    G, D = method.nets["G"], method.nets["D"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def pair(y):
        return torch.cat([a, y], dim=1) if conditional else y

    fake = G(a)
    real_score, fake_score = D(pair(b)), D(pair(fake.detach()))
    loss_d = 0.5 * (bce(real_score, torch.ones_like(real_score)) + bce(fake_score, torch.zeros_like(fake_score)))
    g_score = D(pair(fake))
    loss_g = bce(g_score, torch.ones_like(g_score)) + 100.0 * (fake - b).abs().mean()
    assert torch.equal(ctx.losses["D"], loss_d + 0.0) and torch.equal(ctx.losses["G"], loss_g)
