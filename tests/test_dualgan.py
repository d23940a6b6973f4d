"""DualGAN: the Wasserstein losses and recovery terms by hand, the n_critic schedule, weight clipping
after the critic's optimiser step, the recipe with its RMSProp and two trained steps.

Exact resume and translation of the shipped recipe are checked by tests/test_contracts.py."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.dualgan import DualGAN, clip_parameters, critic_loss, generator_adversarial_loss

from translate_kit.build import build_method
from translate_kit.errors import RecipeError
from translate_kit.recipe import load_recipe
from translate_kit.testing import RecordingContext
from translate_kit.train.optim import optimizer_settings
from translate_kit.train.trainer import Trainer

RECIPE = RECIPES / "dualgan_facades.toml"
TINY = ["generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]
LOSS_KEYS = {"loss_G_A", "loss_G_B", "loss_recon_U", "loss_recon_V", "loss_D_A", "loss_D_B"}


# ------------------------------------------------------------------------------------------------
# Networks: the registry's pix2pix U-Net and 70x70 PatchGAN, counted here layer by layer


def unet_parameters(num_downs: int, ngf: int, c_in: int, c_out: int) -> int:
    """pix2pix's U-Net with batch norm: no conv bias but on the last transposed convolution."""
    w = [ngf * min(2**i, 8) for i in range(num_downs)]
    count = 16 * c_in * w[0]  # outermost encoder conv
    count += sum(16 * w[i - 1] * w[i] + (2 * w[i] if i < num_downs - 1 else 0) for i in range(1, num_downs))
    count += 16 * w[-1] * w[-2] + 2 * w[-2]  # innermost decoder level: no skip in
    count += sum(16 * 2 * w[i] * w[i - 1] + 2 * w[i - 1] for i in range(1, num_downs - 1))  # skip doubles the input
    return count + 16 * 2 * w[0] * c_out + c_out  # outermost: biased, no norm


def patchgan_parameters(c_in: int, ndf: int) -> int:
    """70x70 PatchGAN with batch norm: a biased first conv, three normed convs, a biased head."""
    w = [ndf, 2 * ndf, 4 * ndf, 8 * ndf]
    return 16 * c_in * w[0] + w[0] + sum(16 * a * b + 2 * b for a, b in zip(w, w[1:])) + 16 * w[-1] + 1


def test_recipe_networks_are_the_papers_u_nets_and_patchgans(registry):
    recipe = load_recipe(RECIPE, ["data.out_channels=1"], registry=registry)
    with torch.device("meta"):  # shapes only: 110 M parameters need no memory or initialisation
        method = build_method(recipe, registry)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in method.nets.items()}
    assert counts == {
        "G_A": unet_parameters(8, 64, 3, 1),
        "G_B": unet_parameters(8, 64, 1, 3),
        "D_A": patchgan_parameters(1, 64),  # judges V (B) images
        "D_B": patchgan_parameters(3, 64),
    }
    assert unet_parameters(8, 64, 3, 3) == 54_413_955  # the count pix2pix's reference gives (plugins/unet.py)


def test_networks_shapes_on_small_images(registry):
    method = build_method(load_recipe(RECIPE, TINY, registry=registry), registry)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert method.nets["G_A"](x).shape == method.nets["G_B"](x).shape == (2, 3, 32, 32)
    assert method.nets["D_A"](x).shape == (2, 1, 2, 2)  # 32 / 8 - 2 patches a side
    assert method.geometry().size_multiple == 32 and method.translate_nets == ("G_A",)


# ------------------------------------------------------------------------------------------------
# Losses on constructed networks


class AddConstant(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c


def linear_critic(weight: float, bias: float) -> nn.Conv2d:
    """D(x) = weight * (x_R + x_G + x_B) + bias at every pixel."""
    d = nn.Conv2d(3, 1, 1)
    nn.init.constant_(d.weight, weight)
    nn.init.constant_(d.bias, bias)
    return d


def constant_batch(u: float, v: float) -> dict[str, torch.Tensor]:
    return {"A": torch.full((2, 3, 4, 4), u), "B": torch.full((2, 3, 4, 4), v)}


def make_method(**options) -> DualGAN:
    # G_A adds 0.1, G_B adds 0.05; D_A(x) = 0.005 * sum_c x_c + 0.001, D_B(x) = -0.002 * sum_c x_c + 0.003,
    # all inside the clipping bound 0.01, so clipping leaves them as they are.
    return DualGAN(AddConstant(0.1), AddConstant(0.05), linear_critic(0.005, 0.001), linear_critic(-0.002, 0.003),
                   **options)


def test_wasserstein_losses_by_hand():
    assert critic_loss(torch.tensor([[0.5, 1.5]]), torch.tensor([-1.0, 0.0, 4.0])).item() == pytest.approx(1.0 - 1.0)
    assert critic_loss(torch.tensor([2.0]), torch.tensor([-1.0])).item() == -3.0
    assert generator_adversarial_loss(torch.tensor([0.25, -0.75])).item() == 0.25
    assert critic_loss(torch.ones(2, dtype=torch.bfloat16), torch.zeros(2)).dtype == torch.float32


def test_step_losses_match_the_hand_computation():
    method = make_method(lambda_u=1000.0, lambda_v=500.0, n_critic=1)
    losses = method.training_step(constant_batch(0.2, -0.4), ctx := RecordingContext())
    assert ctx.groups == ["D", "G"]  # Algorithm 1: critics first
    # u = 0.2, v = -0.4; G_A(u) = 0.3, G_B(v) = -0.35; three channels.
    assert losses["loss_D_A"].item() == pytest.approx((0.015 * 0.3 + 0.001) - (0.015 * -0.4 + 0.001))
    assert losses["loss_D_B"].item() == pytest.approx((-0.006 * -0.35 + 0.003) - (-0.006 * 0.2 + 0.003))
    assert losses["loss_G_A"].item() == pytest.approx(-(0.015 * 0.3 + 0.001))
    assert losses["loss_G_B"].item() == pytest.approx(-(-0.006 * -0.35 + 0.003))
    # Recovery: G_B(G_A(u)) = u + 0.15 and G_A(G_B(v)) = v + 0.15, in L1.
    assert losses["loss_recon_U"].item() == pytest.approx(1000.0 * 0.15)
    assert losses["loss_recon_V"].item() == pytest.approx(500.0 * 0.15)
    assert set(losses) == LOSS_KEYS and not any(v.requires_grad for v in losses.values())


def test_inverse_generators_recover_exactly():
    method = DualGAN(AddConstant(0.25), AddConstant(-0.25), linear_critic(0.0, 0.0), linear_critic(0.0, 0.0))
    losses = method.training_step(constant_batch(0.1, 0.3), RecordingContext(step=1))
    assert losses["loss_recon_U"].item() == pytest.approx(0.0, abs=1e-4)
    assert losses["loss_recon_V"].item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("n_critic, expected", [(1, [1, 1, 1, 1]), (2, [0, 1, 0, 1]), (3, [0, 0, 1, 0])])
def test_generators_update_after_every_n_critic_critic_updates(n_critic, expected):
    method = make_method(n_critic=n_critic)
    got = []
    for step in range(4):
        ctx = RecordingContext(step)
        losses = method.training_step(constant_batch(0.2, -0.4), ctx)
        assert ctx.groups[0] == "D" and set(losses) == LOSS_KEYS  # the same scalars every step
        got.append(int(ctx.groups == ["D", "G"]))
    assert got == expected


# ------------------------------------------------------------------------------------------------
# Weight clipping: right after the critic's optimiser step, before the generators' update


class SteppingContext(RecordingContext):
    """Backward and a large SGD step per group, recording the critics' largest weight when G updates."""

    def __init__(self, method: DualGAN, step: int = 1) -> None:
        super().__init__(step)
        self.method = method
        groups = method.optimizer_groups()
        self.optimizers = {g: torch.optim.SGD([p for n in names for p in method.nets[n].parameters()], lr=100.0)
                           for g, names in groups.items()}
        self.critic_max_at_g: float | None = None

    def critic_max(self) -> float:
        return max(p.abs().max().item() for n in ("D_A", "D_B") for p in self.method.nets[n].parameters())

    def update(self, group: str, loss: torch.Tensor) -> bool:
        super().update(group, loss)
        loss.backward()
        self.optimizers[group].step()
        self.optimizers[group].zero_grad(set_to_none=True)
        if group == "D":
            self.critic_max_after_d_step = self.critic_max()  # before the method clips
        else:
            self.critic_max_at_g = self.critic_max()
        self.method.after_update(group)  # as the trainer's StepRunner does after every step
        return True


def test_critics_are_clipped_after_their_step_and_before_the_generator_step():
    method = make_method(clip=0.01, n_critic=2)
    ctx = SteppingContext(method, step=1)
    method.training_step(constant_batch(0.2, -0.4), ctx)
    assert ctx.groups == ["D", "G"]
    assert ctx.critic_max_after_d_step > 0.01  # the step itself left the bound ...
    assert ctx.critic_max_at_g == pytest.approx(0.01)  # ... and the generators already saw clipped critics
    assert ctx.critic_max() == pytest.approx(0.01)


def test_clip_parameters_bounds_parameters_and_leaves_buffers():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    net[1].running_mean.fill_(5.0)
    clip_parameters([net], 0.05)
    assert all(p.abs().max() <= 0.05 for p in net.parameters())
    assert torch.all(net[1].weight == 0.05)  # batch norm scales start at 1: clipped too, as in WGAN
    assert torch.all(net[1].running_mean == 5.0)


def test_translate_is_g_a():
    method = make_method()
    x = torch.zeros(1, 3, 4, 4)
    assert torch.allclose(method.translate(x), x + 0.1)


# ------------------------------------------------------------------------------------------------
# Recipe and training


def test_recipe_has_the_papers_settings(registry):
    recipe = load_recipe(RECIPE, registry=registry)
    assert recipe.components["method"] == {"name": "dualgan", "lambda_u": 1000.0, "lambda_v": 1000.0, "n_critic": 2,
                                           "clip": 0.01}
    assert (recipe.train.batch_size, recipe.data.crop_size, recipe.data.dataset) == (1, 256, "aligned_unpaired")
    method = build_method(load_recipe(RECIPE, TINY, registry=registry), registry)
    for settings in optimizer_settings(method, recipe.train).values():
        chosen = (settings.optimizer, settings.lr, settings.alpha, settings.weight_decay)
        assert chosen == ("rmsprop", 5e-5, 0.9, 0.0)


@pytest.mark.parametrize("override, message", [
    ("method.n_critic=0", "n_critic >= 1"),
    ("method.clip=0.0", "clip > 0"),
    ("method.lambda_u=-1.0", "lambda_u and method.lambda_v >= 0"),
])
def test_bad_method_values_are_recipe_errors(registry, override, message):
    with pytest.raises(RecipeError, match=message):
        build_method(load_recipe(RECIPE, [*TINY, override], registry=registry), registry)


def test_two_steps_change_all_four_networks_and_keep_the_critics_clipped(registry, pm, tiny_facades, tmp_path):
    recipe = load_recipe(RECIPE, quick_overrides(tiny_facades, tmp_path) + TINY, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    for optimizer in trainer.optimizers.values():
        assert isinstance(optimizer, torch.optim.RMSprop) and optimizer.defaults["alpha"] == 0.9
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in trainer.method.nets.items()}
    history = trainer.fit()
    assert [r["step"] for r in history] == [1, 2] and LOSS_KEYS <= set(history[0])
    assert all(math.isfinite(v) for r in history for v in r.values())
    for name, net in trainer.method.nets.items():  # n_critic 2: D steps twice, G once (at the second step)
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
    for name in ("D_A", "D_B"):
        params = list(trainer.method.nets[name].parameters())
        assert all(p.abs().max() <= 0.01 for p in params), name
        assert any(p.abs().max() == 0.01 for p in params), name  # the bound is active, not vacuous
