"""BicycleGAN: the networks' layouts and parameter counts, the step's losses and update order,
multimodal sampling, the style path and refused settings. Training a few steps, exact resume and
translate of the shipped recipe run in tests/test_contracts.py."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.bicyclegan import (
    BicycleGAN,
    bicyclegan_multiscale,
    bicyclegan_unet,
    conv_encoder,
    latent_loss,
    resnet_encoder,
)
from translate_kit_plugins.gan_losses import lsgan
from translate_kit_plugins.spade import kl_divergence

from translate_kit.api import to_unit_range
from translate_kit.inference import Translator
from translate_kit.method import describe_inputs
from translate_kit.recipe import load_recipe
from translate_kit.train.trainer import Trainer

TINY = ["generator.num_downs=5", "generator.ngf=4", "encoder.nef=4", "discriminator.ndf=8",
        "discriminator.n_layers=2"]


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    """Parameters of a biased k x k (transposed) convolution."""
    return k * k * cin * cout + cout


# --- independent parameter counts, from the reference's layer tables -----------------------------


def unet_params(*, cin: int, cout: int, nz: int, levels: int, ngf: int, where_add: str) -> int:
    """G_Unet_add_input / G_Unet_add_all with instance norm (no affine), every conv biased."""
    widths = [ngf * min(2**i, 8) for i in range(levels)]
    total = 0
    for i, w in enumerate(widths):
        image = cin if i == 0 else widths[i - 1]
        total += conv(image + (nz if i == 0 or where_add == "all" else 0), w, 4)  # down
        up_in = w if i == levels - 1 else 2 * w  # the innermost reads no concatenation
        total += conv(up_in, cout if i == 0 else widths[i - 1], 4)  # up
    return total


def resnet_encoder_params(*, cin: int, nz: int, nef: int, n_blocks: int) -> int:
    total = conv(cin, nef, 4)
    for n in range(1, n_blocks):
        a, b = nef * min(4, n), nef * min(4, n + 1)
        total += conv(a, a, 3) + conv(a, b, 3) + conv(a, b, 1)  # two 3x3 and the 1x1 shortcut
    return total + 2 * (b * nz + nz)  # fc (mu) and fc_var (logvar)


def conv_encoder_params(*, cin: int, nz: int, nef: int, n_layers: int) -> int:
    widths = [nef * min(2**n, 4) for n in range(n_layers)]
    total = conv(cin, nef, 4) + sum(conv(widths[n - 1], widths[n], 4) for n in range(1, n_layers))
    return total + 2 * (widths[-1] * nz + nz)


def patchgan_params(*, cin: int, ndf: int, n_layers: int) -> int:
    widths = [ndf * min(2**k, 8) for k in range(n_layers + 1)]
    return conv(cin, ndf, 4) + sum(conv(widths[k - 1], widths[k], 4) for k in range(1, n_layers + 1)) + conv(
        widths[-1], 1, 4)


def test_reference_parameter_counts_follow_from_the_layer_tables():
    """The formulas above give the counts the reference code's networks have (ngf = nef = ndf = 64,
    instance norm, 3 -> 3 channels, nz 8), which the built networks then match at other sizes."""
    assert unet_params(cin=3, cout=3, nz=8, levels=8, ngf=64, where_add="all") == 54_794_627
    assert unet_params(cin=3, cout=3, nz=8, levels=7, ngf=64, where_add="all") == 42_145_155
    assert unet_params(cin=3, cout=3, nz=8, levels=8, ngf=64, where_add="input") == 54_417_795
    assert unet_params(cin=3, cout=3, nz=8, levels=7, ngf=64, where_add="input") == 41_833_859
    assert resnet_encoder_params(cin=3, nz=8, nef=64, n_blocks=5) == 2_590_032
    assert resnet_encoder_params(cin=3, nz=8, nef=64, n_blocks=4) == 1_344_080
    assert conv_encoder_params(cin=3, nz=8, nef=64, n_layers=5) == 2_760_656
    assert conv_encoder_params(cin=3, nz=8, nef=64, n_layers=4) == 1_711_824
    assert patchgan_params(cin=3, ndf=64, n_layers=3) + patchgan_params(cin=3, ndf=32, n_layers=3) == 3_458_978


@pytest.mark.parametrize("where_add", ["input", "all"])
@pytest.mark.parametrize(("levels", "cin", "nz"), [(8, 3, 8), (7, 1, 8), (5, 3, 2)])
def test_generator_layout_and_parameter_count(where_add, levels, cin, nz):
    g = bicyclegan_unet(in_channels=cin, out_channels=3, nz=nz, num_downs=levels, ngf=4, where_add=where_add)
    assert count(g) == unet_params(cin=cin, cout=3, nz=nz, levels=levels, ngf=4, where_add=where_add)
    takes_z = [down.conv.in_channels - (cin if i == 0 else g.downs[i - 1].conv.out_channels)
               for i, down in enumerate(g.downs)]
    assert takes_z == ([nz] * levels if where_add == "all" else [nz] + [0] * (levels - 1))
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == max(levels - 5, 0)  # the reference's CD512 levels
    if levels > 5:
        return  # 256 and 128 px forward passes cost more than they show: the 32-px net reaches 1x1 too
    side = 2**levels
    x, z = torch.rand(2, cin, side, side) * 2 - 1, torch.randn(2, nz)
    with torch.no_grad():
        y = g.eval()(x, z)
        assert y.shape == (2, 3, side, side) and y.abs().max() < 1
        assert not torch.equal(y, g(x, torch.randn(2, nz)))  # z reaches the output


def test_generator_rejects_wrong_inputs():
    g = bicyclegan_unet(num_downs=5, ngf=2, nz=8)
    with pytest.raises(ValueError, match=r"divisible by 32, got \(1, 3, 40, 32\)"):
        g(torch.zeros(1, 3, 40, 32), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"Expected z of shape \(1, 8\), got \(1, 4\)"):
        g(torch.zeros(1, 3, 32, 32), torch.zeros(1, 4))


@pytest.mark.parametrize(("kind", "depth"), [("resnet", 5), ("resnet", 4), ("conv", 5), ("conv", 4)])
def test_encoder_shapes_and_parameter_count(kind, depth):
    # Instance statistics need 2x2 maps: the resnet's last block reads 2^depth / 2^(depth-1) = 2
    # pixels; the conv encoder's last normalised map is 2^depth times smaller than the input.
    if kind == "resnet":
        e = resnet_encoder(in_channels=3, nz=8, nef=8, n_blocks=depth)
        expected, least = resnet_encoder_params(cin=3, nz=8, nef=8, n_blocks=depth), 2**depth
    else:
        e = conv_encoder(in_channels=3, nz=8, nef=8, n_layers=depth)
        expected, least = conv_encoder_params(cin=3, nz=8, nef=8, n_layers=depth), 2 ** (depth + 1)
    assert count(e) == expected and e.min_size == least
    mu, logvar = e(torch.rand(3, 3, least, 80))  # any size from min_size up: the final map is averaged
    assert mu.shape == logvar.shape == (3, 8) and not torch.equal(mu, logvar)
    with pytest.raises(ValueError, match=rf"H, W >= {least}"):
        e(torch.rand(1, 3, least - 1, 80))


def test_discriminator_halves_its_width_at_the_coarser_scale():
    d = bicyclegan_multiscale(in_channels=3, ndf=16, n_layers=3, num_d=2)
    assert [s.blocks[0][0].out_channels for s in d.scales] == [16, 8]
    assert count(d) == patchgan_params(cin=3, ndf=16, n_layers=3) + patchgan_params(cin=3, ndf=8, n_layers=3)
    assert [tuple(p.shape) for p in d(torch.rand(2, 3, 64, 48))] == [(2, 1, 6, 4), (2, 1, 2, 1)]
    assert d.min_size == 47  # the half-resolution scale must still see 24 pixels


# --- the losses and the step ----------------------------------------------------------------------


def test_kl_and_latent_losses_by_hand():
    mu, logvar = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, math.log(2.0)]])
    # -0.5 * ((1 + 0 - 1 - 1) + (1 + ln 2 - 4 - 2)) = 3 - ln(2) / 2
    assert kl_divergence(mu, logvar).item() == pytest.approx(3 - math.log(2) / 2)
    assert latent_loss(torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])).item() == (
        pytest.approx((0.5 + 2.0 + 1.0 + 0.0) / 4))
    with pytest.raises(ValueError, match="same shape"):
        latent_loss(torch.zeros(1, 8), torch.zeros(1, 4))


class ConstantG(nn.Module):
    """G(a, z) = w everywhere, plus z's mean so that the latent loss has a path to w."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.25))

    def forward(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(a) + self.w + 0 * z.mean()


class ConstantE(nn.Module):
    """E(b) = (mu, logvar) = (m + mean(b) * k, l), with k = 0 unless a test sets it."""

    def __init__(self, nz: int) -> None:
        super().__init__()
        self.nz = nz
        self.m, self.k, self.l = (nn.Parameter(torch.tensor(v)) for v in (1.0, 0.0, 0.0))

    def forward(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ones = torch.ones(b.shape[0], self.nz)
        return ones * self.m + b.mean((1, 2, 3))[:, None] * self.k, ones * self.l


class ConstantD(nn.Module):
    """Two 'scales' of constant logits c0, c1 (plus 0 * input, so gradients reach the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.zeros(x.shape[0], 1, 2, 2) + self.c[k] + 0 * x.mean() for k in range(2)]


class RecordingContext:
    """A StepContext that records each update's group, loss and which networks get a non-zero
    gradient from it, and steps nothing."""

    step, epoch = 0, 0

    def __init__(self, method: BicycleGAN) -> None:
        self.method, self.updates = method, []

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()

    def update(self, group: str, loss: torch.Tensor) -> bool:
        params = {name: list(self.method.nets[name].parameters()) for name in ("G", "E", "D", "D2")}
        flat = [p for ps in params.values() for p in ps]
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
        reached, start = {}, 0
        for name, ps in params.items():
            reached[name] = any(g is not None and bool(g.any()) for g in grads[start : start + len(ps)])
            start += len(ps)
        self.updates.append((group, loss.item(), reached))
        return True


def stub_method(nz: int = 2, **weights: float) -> BicycleGAN:
    published = {"lambda_l1": 10.0, "lambda_gan": 1.0, "lambda_gan2": 1.0, "lambda_z": 0.5, "lambda_kl": 0.01}
    return BicycleGAN(ConstantG(), ConstantE(nz), ConstantD(), ConstantD(), lsgan(), nz=nz,
                      conditional_d=False, **{**published, **weights})


def test_the_step_weighs_the_published_losses_in_the_published_order():
    method = stub_method()
    batch = {"A": torch.zeros(2, 3, 4, 4), "B": torch.ones(2, 3, 4, 4)}
    ctx = RecordingContext(method)
    torch.manual_seed(3)
    logged = method.training_step(batch, ctx)
    torch.manual_seed(3)  # the step's draws, in its order: eps of the reparameterisation, then z_random
    torch.randn(1, 2)
    z_random = torch.randn(1, 2)

    gan = (0.5 - 1) ** 2 + (-0.5 - 1) ** 2  # LSGAN "real" on each scale, summed over the two: 2.5
    l1 = 1 - 0.25  # |G - B| with G = 0.25, B = 1
    kl = -0.5 * 2 * (1 + 0 - 1**2 - math.exp(0))  # mu 1, logvar 0 on both codes: 1.0
    z_l1 = (z_random - 1.0).abs().mean().item()  # E(G(A, z_random)) = m = 1
    assert [u[0] for u in ctx.updates] == ["G", "D", "D2"]
    assert ctx.updates[0][1] == pytest.approx(gan + gan + 10 * l1 + 0.01 * kl + 0.5 * z_l1, rel=1e-6)
    d_real, d_fake = gan, 0.5**2 + 0.5**2  # LSGAN "fake" on each scale: 0.5
    assert ctx.updates[1][1] == pytest.approx(d_real + d_fake) and ctx.updates[2][1] == pytest.approx(d_real + d_fake)
    expected = {"loss_G_GAN": gan, "loss_G_GAN2": gan, "loss_G_L1": l1, "loss_kl": kl, "loss_z_L1": z_l1,
                "loss_D_real": d_real, "loss_D_fake": d_fake, "loss_D2_real": d_real, "loss_D2_fake": d_fake}
    assert {k: pytest.approx(v, rel=1e-6) for k, v in expected.items()} == {k: v.item() for k, v in logged.items()}
    # G's update reaches G and E (not the frozen Ds); each D's reaches that D alone.
    assert ctx.updates[0][2] == {"G": True, "E": True, "D": False, "D2": False}
    assert ctx.updates[1][2] == {"G": False, "E": False, "D": True, "D2": False}
    assert ctx.updates[2][2] == {"G": False, "E": False, "D": False, "D2": True}


def test_the_latent_regression_trains_g_alone():
    method = stub_method(lambda_l1=0.0, lambda_gan=0.0, lambda_gan2=0.0, lambda_kl=0.0)
    method.nets["E"].k.data.fill_(1.0)  # mu depends on the image, so the latent loss has a path through G
    ctx = RecordingContext(method)
    method.training_step({"A": torch.zeros(2, 3, 4, 4), "B": torch.ones(2, 3, 4, 4)}, ctx)
    group, loss, reached = ctx.updates[0]
    assert group == "G" and loss > 0 and reached == {"G": True, "E": False, "D": False, "D2": False}


def test_a_conditional_d_sees_input_and_output(registry):
    from translate_kit.build import build_method

    recipe = load_recipe(RECIPES / "bicyclegan_facades.toml", [*TINY, "method.conditional_d=true"], registry=registry)
    method = build_method(recipe, registry)
    assert [method.nets[d].in_channels for d in ("D", "D2")] == [6, 6]
    ctx = RecordingContext(method)
    method.training_step({"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}, ctx)
    assert [u[0] for u in ctx.updates] == ["G", "D", "D2"] and all(math.isfinite(u[1]) for u in ctx.updates)


def test_the_batch_must_split_in_two_halves():
    from translate_kit.errors import TrainingError

    with pytest.raises(TrainingError, match="even train.batch_size of at least 2; got batches of 3"):
        stub_method().training_step({"A": torch.zeros(3, 3, 4, 4), "B": torch.zeros(3, 3, 4, 4)},
                                    RecordingContext(stub_method()))


# --- training and multimodal inference ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(registry, pm, tmp_path_factory):
    from translate_kit.data.synth import write_synth_facades

    root = tmp_path_factory.mktemp("bicyclegan_facades")
    write_synth_facades(root, count=6, size=32, seed=11)
    # 20 x the paper's rate: two steps then move the outputs well away from the near-constant grey of
    # the initialisation (Xavier, gain 0.02), so that what z changes shows in 8-bit images.
    overrides = quick_overrides(root, tmp_path_factory.mktemp("bicyclegan_runs"), steps=2) + TINY + [
        "train.lr=4e-3", "data.load_size=32", "train.num_samples=1"]
    recipe = load_recipe(RECIPES / "bicyclegan_facades.toml", overrides, registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    history = trainer.fit()
    assert {"loss_G_GAN", "loss_G_GAN2", "loss_G_L1", "loss_kl", "loss_z_L1", "loss_D_real", "loss_D2_fake"} <= set(
        history[-1])
    assert all(math.isfinite(v) for r in history for v in r.values())
    return Translator.from_checkpoint(trainer.run_dir, device="cpu", registry=registry, seed=5)


def test_z_samples_differ_and_a_seed_repeats_them(trained):
    spec = describe_inputs(trained.method, channels=3)
    assert spec.multimodal and spec.style_image and spec.modes[0] == "eval"  # the reference tests in eval mode
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    [samples] = trained.translate_samples([image], samples=3)
    [again] = trained.translate_samples([image], samples=3)
    assert all(torch.equal(a, b) for a, b in zip(samples, again))  # seed + s, every time
    pairs = [(0, 1), (0, 2), (1, 2)]
    gaps = [(samples[i].float() - samples[j].float()).abs().mean().item() for i, j in pairs]
    assert min(gaps) > 0.5, f"samples of different z differ by only {gaps} grey levels on average"


def test_a_style_photo_gives_the_code_its_encoder_reads(trained):
    method = trained.method
    x = to_unit_range(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8))
    photos = torch.rand(2, 1, 3, 64, 48) * 2 - 1  # any size: resized to the input's
    styled = [method.with_style(p) for p in photos]
    assert styled[0].nets is method.nets
    with torch.no_grad():
        torch.manual_seed(0)
        first = styled[0].translate(x)
        torch.manual_seed(1)
        assert torch.equal(styled[0].translate(x), first)  # the code is the photo's mean: no draw
        resized = torch.nn.functional.interpolate(photos[0], size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.equal(first, method.nets["G"](x, method.nets["E"](resized)[0]))
        assert not torch.equal(first, styled[1].translate(x))
    bound = trained.bind(style=torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8))
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert bound(image).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="one style image"):
        method.with_style(photos[:, 0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.nz=0"], "nz >= 1"),
        (["method.lambda_z=-1"], "lambda_z = -1"),
        (["encoder.nz=4"], "nz"),
        (['generator.where_add="middle"'], "where_add"),
    ],
)
def test_settings_that_cannot_work_are_refused(registry, overrides, message):
    from translate_kit.build import build_method
    from translate_kit.errors import TranslateKitError

    with pytest.raises(TranslateKitError, match=message):
        build_method(load_recipe(RECIPES / "bicyclegan_facades.toml", TINY + overrides, registry=registry), registry)


def test_a_recipe_without_an_encoder_is_refused(registry):
    from translate_kit.build import build_method
    from translate_kit.errors import RecipeError

    tables = load_recipe(RECIPES / "bicyclegan_facades.toml", TINY, registry=registry).to_dict()
    tables.pop("encoder")
    with pytest.raises(RecipeError, match=r"needs a \[encoder\] table"):
        build_method(load_recipe(tables, registry=registry), registry)
