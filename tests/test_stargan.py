"""StarGAN: network sizes against an independent count, the losses on hand-computed values, domain
conditioning and the `to` option, recipe errors, and the n_critic schedule across a resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import RECIPES
from torch import nn
from torch.utils.data import default_collate
from translate_kit_plugins.domain_data import domain_folders
from translate_kit_plugins.gan_losses import wgangp
from translate_kit_plugins.stargan import (
    StarGAN,
    StarGANDiscriminator,
    StarGANGenerator,
    domain_classification_loss,
)
from typer.testing import CliRunner

from translate_kit.api import BatchSpec
from translate_kit.build import build_method
from translate_kit.cli import make_app
from translate_kit.errors import RecipeError
from translate_kit.recipe import load_recipe
from translate_kit.testing import RecordingContext, tiny_recipe
from translate_kit.train.trainer import Trainer

RECIPE = RECIPES / "stargan_facades.toml"
DOMAINS = ("photo", "labels", "edges")


@pytest.fixture(scope="module")
def domain_root(tmp_path_factory) -> Path:
    """root/{train,test}/{photo,labels,edges}: two 32-pixel images per domain, a colour per domain."""
    from torchvision.io import write_png

    root = tmp_path_factory.mktemp("stargan_domains")
    g = torch.Generator().manual_seed(1)
    for split in ("train", "test"):
        for k, domain in enumerate(DOMAINS):
            (root / split / domain).mkdir(parents=True)
            for i in range(2):
                image = torch.randint(0, 60, (3, 32, 32), generator=g, dtype=torch.uint8)
                image[k] += 180  # the domain shows in one channel
                write_png(image, str(root / split / domain / f"{i}.png"))
    return root


# ------------------------------------------------------------------------------------------------
# Networks: shapes and parameter counts


def generator_parameters(c_dim: int, d: int, r: int, channels: int = 3) -> int:
    """The StarGAN G's parameters, counted layer by layer from the paper's table (weights without
    biases; affine instance norm: 2 per channel)."""
    count = (channels + c_dim) * d * 7 * 7 + 2 * d  # c7s1-d
    count += d * 2 * d * 4 * 4 + 2 * 2 * d  # d -> 2d, stride 2
    count += 2 * d * 4 * d * 4 * 4 + 2 * 4 * d  # 2d -> 4d, stride 2
    count += r * 2 * (4 * d * 4 * d * 3 * 3 + 2 * 4 * d)  # residual blocks: two 3x3 convs + norms
    count += 4 * d * 2 * d * 4 * 4 + 2 * 2 * d  # 4d -> 2d, transposed
    count += 2 * d * d * 4 * 4 + 2 * d  # 2d -> d, transposed
    return count + d * channels * 7 * 7  # c7s1-3, tanh


def discriminator_parameters(c_dim: int, d: int, r: int, image_size: int, channels: int = 3) -> int:
    """The StarGAN D's parameters: r stride-2 4x4 convs with biases, a 3x3 real/fake head and a
    class head whose kernel is the last map, both without bias."""
    widths = [channels] + [d * 2**i for i in range(r)]
    count = sum(a * b * 16 + b for a, b in zip(widths, widths[1:]))
    last = widths[-1]
    kernel = image_size // 2**r
    return count + last * 1 * 3 * 3 + last * c_dim * kernel * kernel


@pytest.mark.parametrize(("c_dim", "d", "r"), [(5, 64, 6), (3, 8, 2)])
def test_generator_parameter_count_and_shape(c_dim, d, r):
    with torch.device("meta" if d == 64 else "cpu"):  # the paper's size: counted without allocating
        g = StarGANGenerator(c_dim=c_dim, conv_dim=d, repeat_num=r)
    assert sum(p.numel() for p in g.parameters()) == generator_parameters(c_dim, d, r)
    if d == 64:
        assert generator_parameters(c_dim, d, r) == 8_430_528  # what the reference prints for its G
        return
    out = g(torch.rand(2, 3, 20, 28) * 2 - 1, torch.eye(c_dim)[:2])
    assert out.shape == (2, 3, 20, 28) and out.abs().max() <= 1
    with pytest.raises(ValueError, match=r"labels of shape \(2, 3\)"):
        g(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4))


@pytest.mark.parametrize(("c_dim", "d", "r", "size"), [(5, 64, 6, 128), (3, 4, 3, 32)])
def test_discriminator_parameter_count_and_heads(c_dim, d, r, size):
    with torch.device("meta" if d == 64 else "cpu"):
        net = StarGANDiscriminator(c_dim=c_dim, image_size=size, conv_dim=d, repeat_num=r)
    assert sum(p.numel() for p in net.parameters()) == discriminator_parameters(c_dim, d, r, size)
    if d == 64:
        assert discriminator_parameters(c_dim, d, r, size) == 44_762_048  # the reference's D
        return
    x = torch.rand(2, 3, size, size)
    logits, classes = net(x, classify=True)
    assert logits.shape == (2, 1, size // 2**r, size // 2**r) and classes.shape == (2, c_dim)
    assert torch.equal(net(x), logits)  # the plain forward is the real/fake head: what GAN losses score
    with pytest.raises(ValueError, match="multiple of 2\\*\\*repeat_num = 8"):
        StarGANDiscriminator(image_size=36, repeat_num=3)


# ------------------------------------------------------------------------------------------------
# Losses


def test_classification_losses_on_hand_computed_values():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])  # softmax rows (1/4, 3/4), (3/4, 1/4)
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # cross-entropy: -log(1/4) and -log(3/4), averaged over the batch
    expected_ce = (math.log(4.0) + math.log(4.0 / 3.0)) / 2
    assert domain_classification_loss(logits, target, "domain").item() == pytest.approx(expected_ce, rel=1e-6)
    # binary cross-entropy, summed over attributes, averaged over the batch:
    # row 1: -log s(0) - log(1 - s(log 3)) = log 2 + log 4; row 2: -log s(log 3) - log(1 - s(0)) = log 4/3 + log 2
    expected_bce = (math.log(2) + math.log(4) + math.log(4 / 3) + math.log(2)) / 2
    assert domain_classification_loss(logits, target, "attributes").item() == pytest.approx(expected_bce, rel=1e-6)


class ShiftG(nn.Module):
    """G(x, c) = x + c . a: each domain adds its own constant."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([0.1, 0.2, 0.3]))

    def forward(self, x, c):
        return x + (c @ self.a)[:, None, None, None]


class MeanD(nn.Module):
    """D(x) = mean over channels (one logit per pixel); its classes: the mean of each channel."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x, classify=False):
        logits = x.mean(dim=1, keepdim=True)
        return (logits, x.mean(dim=(2, 3))) if classify else logits


def test_a_step_computes_the_papers_losses_and_updates_g_every_n_critic_steps():
    method = StarGAN(ShiftG(), MeanD(), wgangp(gp_weight=0.0), domains=DOMAINS, n_critic=3)
    values = torch.tensor([[0.5, -0.2, 0.1], [0.0, 0.4, -0.3], [-0.6, 0.2, 0.3]])  # image b: channel values
    real = values[:, :, None, None].expand(3, 3, 4, 4).clone()
    org = torch.eye(3)
    torch.manual_seed(5)
    trg = org[torch.randperm(3)]  # the draw the step makes after the same seed
    torch.manual_seed(5)
    ctx = RecordingContext(step=3, require_grad=False)  # 3 % n_critic == 0: a G step
    scalars = method.training_step({"A": real, "domain": org}, ctx)
    assert ctx.groups == ["D", "G"]

    a = torch.tensor([0.1, 0.2, 0.3])
    shift = trg @ a  # what G adds to each image
    # D: -mean D(real) + mean D(fake) + CE(channel means of real, original domain)
    assert scalars["loss_D_real"].item() == pytest.approx(-values.mean().item(), abs=1e-6)
    assert scalars["loss_D_fake"].item() == pytest.approx((values.mean(1) + shift).mean().item(), abs=1e-6)
    ce_real = -torch.log_softmax(values, 1)[torch.arange(3), torch.arange(3)].mean()
    assert scalars["loss_D_cls"].item() == pytest.approx(ce_real.item(), abs=1e-6)
    # G: -mean D(fake) + 10 * |G(G(x, trg), org) - x| + CE(classes of the fakes, target domain)
    fake_means = values + shift[:, None]
    ce_fake = -torch.log_softmax(fake_means, 1)[torch.arange(3), trg.argmax(1)].mean()
    rec = (shift + org @ a).abs().mean()  # hand: (0.1 + 0.2 + 0.3) * 2 / 3 = 0.4 whatever the permutation
    assert rec.item() == pytest.approx(0.4)
    assert scalars["loss_G_fake"].item() == pytest.approx(-fake_means.mean().item(), abs=1e-6)
    assert scalars["loss_G_cls"].item() == pytest.approx(ce_fake.item(), abs=1e-6)
    assert scalars["loss_G_rec"].item() == pytest.approx(0.4, abs=1e-6)
    assert ctx.updates[1][1].item() == pytest.approx((-fake_means.mean() + 10 * rec + ce_fake).item(), abs=1e-5)

    ctx = RecordingContext(step=4, require_grad=False)  # a D-only step: G's last losses are logged again
    again = method.training_step({"A": real, "domain": org}, ctx)
    assert ctx.groups == ["D"]
    assert again["loss_G_rec"].item() == pytest.approx(0.4, abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Conditioning and the `to` option


def test_the_target_domain_changes_the_output(registry):
    torch.manual_seed(0)
    g = StarGANGenerator(c_dim=3, conv_dim=8, repeat_num=1)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    outs = [g(x, torch.eye(3)[k : k + 1]) for k in range(3)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    assert torch.equal(g(x, torch.eye(3)[:1]), outs[0])

    recipe = load_recipe(RECIPE, ["generator.conv_dim=8", "generator.repeat_num=1", "discriminator.conv_dim=4"],
                         registry=registry)
    method = build_method(recipe, registry).eval()
    spec = method.input_spec(_image_spec())
    assert spec.options["to"].choices == DOMAINS and spec.options["to"].default == "photo"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        photo, labels = method.translate(x), method.with_options(to="labels").translate(x)
    assert not torch.allclose(photo, labels)
    assert method.target == (1.0, 0.0, 0.0)  # with_options left the original alone
    with pytest.raises(ValueError, match="Did you mean 'labels'"):
        method.with_options(to="label")


def _image_spec():
    from translate_kit.api import InputSpec

    return InputSpec()


def test_attribute_targets_name_the_attributes_that_are_set():
    method = StarGAN(ShiftG(), MeanD(), wgangp(), domains=("Black_Hair", "Blond_Hair", "Young"),
                     label_mode="attributes", default_to="Blond_Hair")
    assert method.target == (0.0, 1.0, 0.0)
    assert method.with_options(to="Black_Hair, Young").target == (1.0, 0.0, 1.0)
    assert method.with_options(to="none").target == (0.0, 0.0, 0.0)
    assert method.input_spec(_image_spec()).options["to"].choices == ()  # a list: the method checks it
    with pytest.raises(ValueError, match="unknown attribute 'Blonde_Hair'"):
        method.with_options(to="Blonde_Hair")
    single = StarGAN(ShiftG(), MeanD(), wgangp(), domains=DOMAINS)
    with pytest.raises(ValueError, match="expected one domain"):
        single.with_options(to="photo,labels")


# ------------------------------------------------------------------------------------------------
# Recipe mistakes


def test_a_c_dim_that_is_not_the_number_of_domains_is_a_recipe_error(registry):
    recipe = load_recipe(RECIPE, ["generator.c_dim=4"], registry=registry)
    with pytest.raises(RecipeError, match=r"\[generator\], key 'c_dim'.*needs c_dim = 3.*number of \[method\] domains"):
        build_method(recipe, registry)


def _batch(root: Path, domains: list[str]) -> dict:
    dataset = domain_folders(root=str(root), domains=domains)
    return default_collate([dataset[i] for i in range(2)])


def test_labels_that_do_not_fit_the_methods_domains_are_recipe_errors(registry, domain_root):
    method = StarGAN(ShiftG(), MeanD(), wgangp(), domains=("photo", "labels"))
    spec = BatchSpec(torch.device("cpu"), crop_size=32, flip=False, train=False)
    with pytest.raises(RecipeError, match=r"labels 3 domain\(s\) \(photo, labels, edges\).*lists 2"):
        method.prepare_batch(_batch(domain_root, list(DOMAINS)), spec)
    with pytest.raises(RecipeError, match="same order"):  # the same count, another order
        method.prepare_batch(_batch(domain_root, ["labels", "photo"]), spec)
    prepared = method.prepare_batch(_batch(domain_root, ["photo", "labels"]), spec)
    assert prepared["A"].shape == (2, 3, 32, 32) and prepared["B"] is prepared["A"]
    assert prepared["domain"].tolist() == [[1.0, 0.0], [0.0, 1.0]]  # items alternate between domains
    with pytest.raises(RecipeError, match="no 'domain' entry.*domain_folders"):
        method.prepare_batch({"A": torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "name": ["a", "b"]}, spec)
    multi = {"A": torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "domain": torch.tensor([[1.0, 1.0], [0.0, 1.0]])}
    with pytest.raises(RecipeError, match='label_mode = "attributes"'):
        method.prepare_batch(multi, spec)


def test_a_crop_that_is_not_the_discriminators_image_size_is_a_recipe_error(domain_root):
    method = StarGAN(ShiftG(), StarGANDiscriminator(c_dim=2, image_size=64, conv_dim=4, repeat_num=3), wgangp(),
                     domains=("photo", "labels"))
    spec = BatchSpec(torch.device("cpu"), crop_size=32, flip=True, train=True)
    with pytest.raises(RecipeError, match="image_size = 32"):
        method.prepare_batch(_batch(domain_root, ["photo", "labels"]), spec)


# ------------------------------------------------------------------------------------------------
# Training: the schedule across a resume, and translating to a named domain


def _adam_steps(trainer: Trainer, group: str) -> int:
    optimizer = trainer.optimizers[group]
    first = next(p for g in optimizer.param_groups for p in g["params"])
    return int(optimizer.state[first]["step"])


def test_n_critic_is_exact_across_a_resume_and_translate_takes_the_target(registry, pm, tmp_path, domain_root):
    overrides = ["method.n_critic=2", "train.max_steps=3"]
    straight_recipe = tiny_recipe(RECIPE, registry, data_root=domain_root, run_dir=tmp_path / "straight",
                                  steps=3, overrides=overrides)
    straight = Trainer(straight_recipe, registry=registry, pm=pm, device="cpu")
    straight.fit()
    # 3 steps: D at every step; G at steps 0 and 2
    assert (_adam_steps(straight, "D"), _adam_steps(straight, "G")) == (3, 2)

    first = tiny_recipe(RECIPE, registry, data_root=domain_root, run_dir=tmp_path / "resumed", steps=1,
                        overrides=[*overrides, "train.max_steps=1"])
    Trainer(first, registry=registry, pm=pm, device="cpu").fit()
    resumed = Trainer(load_recipe(first.to_dict(), ["train.max_steps=3"], registry=registry), registry=registry, pm=pm,
                      device="cpu", run_dir=Path(first.run.dir) / first.run.name, resume=True)
    assert (_adam_steps(resumed, "D"), _adam_steps(resumed, "G")) == (1, 1)  # step 0 restored
    resumed.fit()  # step 1: D only; step 2: D and G
    assert (_adam_steps(resumed, "D"), _adam_steps(resumed, "G")) == (3, 2)
    for name, net in straight.method.nets.items():
        for (key, a), b in zip(net.state_dict().items(), resumed.method.nets[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{key} differs after the resume"
    assert torch.equal(straight.method.last_g_losses, resumed.method.last_g_losses)

    # `tkit translate RUN IN --option to=...`: a label map rendered as a photo, and as an edge map
    run = straight.run_dir
    image = domain_root / "test" / "labels" / "0.png"
    runner = CliRunner()
    outputs = {}
    for to in ("photo", "edges"):
        result = runner.invoke(make_app(), ["translate", str(run), str(image), "-o", str(tmp_path / to), "--option",
                                            f"to={to}", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs[to] = (tmp_path / to / "0.png").read_bytes()
    assert outputs["photo"] != outputs["edges"]
    bad = runner.invoke(make_app(), ["translate", str(run), str(image), "-o", str(tmp_path / "x"), "--option",
                                     "to=sketch", "--device", "cpu"])
    assert bad.exit_code == 1 and "to=sketch: expected one of photo, labels, edges" in bad.output
