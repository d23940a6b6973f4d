"""CycleGAN: the image pool, the cycle and identity losses, unpaired datasets, training and exact resume."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch
from conftest import RECIPES, quick_overrides
from torch import nn
from translate_kit_plugins.cyclegan import CycleGAN, ImagePool
from translate_kit_plugins.folder_datasets import aligned, aligned_unpaired, unaligned
from translate_kit_plugins.gan_losses import lsgan

from translate_kit.errors import RecipeError
from translate_kit.recipe import TrainConfig, load_recipe
from translate_kit.train.checkpoint import checkpoint_paths, load_checkpoint
from translate_kit.train.trainer import Trainer

RECIPE = RECIPES / "cyclegan_facades.toml"
TINY = ["generator.name=resnet", "generator.n_blocks=1", "generator.ngf=8", "discriminator.ndf=8"]


# ------------------------------------------------------------------------------------------------
# Image pool


def marked(values: list[float]) -> torch.Tensor:
    """A batch of (1, 2, 2) images, image k filled with values[k]."""
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()


def test_pool_returns_new_images_until_full_then_stores_them():
    pool = ImagePool(3)
    out = pool.query(marked([1.0, 2.0]))
    assert torch.equal(out, marked([1.0, 2.0])) and len(pool) == 2
    out = pool.query(marked([3.0]))
    assert torch.equal(out, marked([3.0])) and len(pool) == 3
    assert torch.equal(pool.state(), marked([1.0, 2.0, 3.0]))


def test_pool_of_size_zero_passes_the_batch_through():
    pool = ImagePool(0)
    batch = marked([1.0, 2.0])
    assert pool.query(batch) is batch and len(pool) == 0 and pool.state().numel() == 0
    with pytest.raises(ValueError, match="pool size >= 0"):
        ImagePool(-1)


def test_full_pool_returns_a_stored_image_half_the_time():
    torch.manual_seed(0)
    size, draws = 50, 4000
    pool = ImagePool(size)
    pool.query(marked([float(k) for k in range(size)]))  # stored values 0..49
    stored_returned = 0
    for t in range(draws):
        new = 1000.0 + t  # values never seen before
        out = pool.query(marked([new]))
        value = out.flatten()[0].item()
        if value != new:
            stored_returned += 1
            assert new in {img.flatten()[0].item() for img in pool.state()}  # it took the returned one's place
        assert len(pool) == size
    # Binomial(4000, 0.5): sd = 0.0079 of the fraction; 0.03 is about 4 sd.
    assert abs(stored_returned / draws - 0.5) < 0.03


def test_pool_equals_the_sequential_list_pool_draw_for_draw():
    """The device pool's `torch.where` choices against the plain per-image list algorithm, fed the
    same two draws per image (a uniform number, then a slot), across the fill and a batch whose
    images can pick the same slot."""
    size = 3
    batches = [torch.randn(2, 1, 2, 2), torch.randn(4, 1, 2, 2), torch.randn(5, 1, 2, 2)]
    torch.manual_seed(3)
    pool = ImagePool(size)
    got = [pool.query(batch) for batch in batches]
    torch.manual_seed(3)
    stored: list[torch.Tensor] = []
    for batch, out in zip(batches, got, strict=True):
        expected = []
        for image in batch:
            draw, slot = torch.rand(()), int(torch.randint(0, size, (1,))[0])
            if len(stored) < size:
                stored.append(image)
                expected.append(image)
            elif draw < 0.5:
                expected.append(stored[slot])
                stored[slot] = image
            else:
                expected.append(image)
        assert torch.equal(out, torch.stack(expected))
    assert torch.equal(pool.state(), torch.stack(stored))


def test_pool_state_round_trips_and_draws_from_the_global_rng():
    torch.manual_seed(1)
    pool = ImagePool(4)
    pool.query(torch.randn(4, 3, 2, 2))
    copy = ImagePool(4)
    copy.load_state(pool.state())
    batch = torch.randn(6, 3, 2, 2)
    rng = torch.get_rng_state()
    first = pool.query(batch)
    torch.set_rng_state(rng)
    assert torch.equal(copy.query(batch), first)
    assert torch.equal(copy.state(), pool.state())
    empty = ImagePool(4)
    empty.load_state(ImagePool(4).state())
    assert len(empty) == 0


# ------------------------------------------------------------------------------------------------
# Losses on constructed generators


class AddConstant(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c


class RecordingContext:
    step, epoch = 0, 0

    def __init__(self) -> None:
        self.updates: list[str] = []

    def autocast(self):
        return contextlib.nullcontext()

    def update(self, group: str, loss: torch.Tensor) -> bool:
        assert loss.requires_grad
        self.updates.append(group)
        return True


def make_method(c_a: float, c_b: float, **options) -> CycleGAN:
    return CycleGAN(AddConstant(c_a), AddConstant(c_b), nn.Conv2d(3, 1, 1), nn.Conv2d(3, 1, 1), lsgan(), **options)


def run_step(method: CycleGAN) -> tuple[dict[str, torch.Tensor], list[str]]:
    torch.manual_seed(0)
    batch = {"A": torch.rand(2, 3, 8, 8) * 2 - 1, "B": torch.rand(2, 3, 8, 8) * 2 - 1}
    ctx = RecordingContext()
    return method.training_step(batch, ctx), ctx.updates


def test_identity_generators_have_zero_cycle_and_identity_losses():
    losses, updates = run_step(make_method(0.0, 0.0))
    assert updates == ["G", "D"]  # the reference's order: generators first
    for key in ("loss_cycle_A", "loss_cycle_B", "loss_idt_A", "loss_idt_B"):
        assert losses[key].item() == 0.0
    assert set(losses) == {"loss_G_A", "loss_G_B", "loss_cycle_A", "loss_cycle_B", "loss_idt_A", "loss_idt_B",
                           "loss_D_A", "loss_D_B"}
    assert all(math.isfinite(v.item()) and not v.requires_grad for v in losses.values())


def test_constant_shift_gives_the_known_cycle_and_identity_losses():
    c = 0.1
    losses, _ = run_step(make_method(c, c, lambda_a=10.0, lambda_b=5.0, lambda_identity=0.5))
    assert losses["loss_cycle_A"].item() == pytest.approx(10.0 * 2 * c)  # |G_B(G_A(a)) - a| = 2c
    assert losses["loss_cycle_B"].item() == pytest.approx(5.0 * 2 * c)
    assert losses["loss_idt_A"].item() == pytest.approx(0.5 * 5.0 * c)  # lambda_idt * lambda_B * |G_A(b) - b|
    assert losses["loss_idt_B"].item() == pytest.approx(0.5 * 10.0 * c)  # lambda_idt * lambda_A * |G_B(a) - a|


def test_inverse_shifts_close_the_cycle_but_not_the_identity():
    losses, _ = run_step(make_method(0.25, -0.25, lambda_identity=0.0))
    assert losses["loss_cycle_A"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_cycle_B"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_idt_A"].item() == losses["loss_idt_B"].item() == 0.0  # identity switched off
    losses, _ = run_step(make_method(0.25, -0.25))
    assert losses["loss_idt_A"].item() == pytest.approx(0.5 * 10.0 * 0.25)


def test_translate_is_g_a():
    method = make_method(0.5, -3.0)
    x = torch.zeros(1, 3, 4, 4)
    assert torch.allclose(method.translate(x), x + 0.5)


# ------------------------------------------------------------------------------------------------
# Unpaired datasets


def write_constant_images(folder, values: list[int], size: int = 4):
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    for k, value in enumerate(values):
        write_png(torch.full((3, size, size), value, dtype=torch.uint8), str(folder / f"{k + 1}.png"))


def value(image: torch.Tensor) -> int:
    return int(image[0, 0, 0])


@pytest.mark.parametrize("layout", ["trainA", "train/A"])
def test_unaligned_pairs_every_a_with_an_independent_b(tmp_path, layout):
    a_values, b_values = [10, 20, 30, 40, 50], [100, 110, 120]
    joint = layout == "trainA"
    write_constant_images(tmp_path / ("trainA" if joint else "train/A"), a_values)
    write_constant_images(tmp_path / ("trainB" if joint else "train/B"), b_values)
    data = unaligned(root=str(tmp_path), seed=3)
    assert len(data) == 5  # the larger domain
    items = [data[i] for i in range(len(data))]
    assert [value(item["A"]) for item in items] == a_values
    assert [item["name"] for item in items] == ["1", "2", "3", "4", "5"]
    bs = [value(item["B"]) for item in items]
    assert sorted(bs[:3]) == b_values and bs[3:] == bs[:2]  # a permutation of B, wrapping around
    again = unaligned(root=str(tmp_path), seed=3)
    assert [value(again[i]["B"]) for i in range(5)] == bs  # no global RNG: the same for the same seed
    others = {tuple(value(unaligned(root=str(tmp_path), seed=s)[i]["B"]) for i in range(3)) for s in range(10)}
    assert len(others) > 1  # the seed decides the pairing
    with pytest.raises(IndexError):
        data[5]


def test_unaligned_length_follows_the_larger_domain_b(tmp_path):
    write_constant_images(tmp_path / "A", [1, 2])
    write_constant_images(tmp_path / "B", [5, 6, 7, 8])
    data = unaligned(root=str(tmp_path), split="")
    assert len(data) == 4
    assert [value(data[i]["A"]) for i in range(4)] == [1, 2, 1, 2]
    assert sorted(value(data[i]["B"]) for i in range(4)) == [5, 6, 7, 8]


def test_aligned_unpaired_gives_every_photo_another_files_labels(tiny_facades):
    paired = aligned(root=str(tiny_facades))
    data = aligned_unpaired(root=str(tiny_facades), seed=0)
    n = len(paired)
    assert len(data) == n == 8
    own_b = [paired[i]["B"] for i in range(n)]
    partners = []
    for i in range(n):
        item = data[i]
        assert torch.equal(item["A"], paired[i]["A"]) and item["name"] == paired[i]["name"]
        [j] = [j for j in range(n) if torch.equal(item["B"], own_b[j])]
        partners.append(j)
    assert all(j != i for i, j in enumerate(partners))  # no pair survives
    assert sorted(partners) == list(range(n))  # every label map is used once
    assert data.partner == aligned_unpaired(root=str(tiny_facades), seed=0).partner
    assert data.partner != aligned_unpaired(root=str(tiny_facades), seed=1).partner


# ------------------------------------------------------------------------------------------------
# Recipe, training and resume


def make_trainer(registry, pm, root, run_dir, *extra, steps=2, **kwargs):
    overrides = quick_overrides(root, run_dir, steps=steps) + TINY + list(extra)
    recipe = load_recipe(RECIPE, overrides, registry=registry)
    return Trainer(recipe, registry=registry, pm=pm, device="cpu", **kwargs)


def weights(trainer):
    return {f"{n}.{k}": v.clone() for n, net in trainer.method.nets.items() for k, v in net.state_dict().items()}


def test_recipe_has_the_papers_settings_and_networks(registry, pm, tmp_path):
    recipe = load_recipe(RECIPE, registry=registry)
    assert recipe.train == TrainConfig(
        epochs=100, decay_epochs=100, batch_size=1, lr=2e-4, betas=(0.5, 0.999), log_every=100, checkpoint_every=5
    )
    assert (recipe.data.load_size, recipe.data.crop_size, recipe.data.dataset) == (286, 256, "aligned_unpaired")
    assert recipe.components["method"] == {
        "name": "cyclegan", "lambda_a": 10.0, "lambda_b": 10.0, "lambda_identity": 0.5, "pool_size": 50,
        "gan_mode": "lsgan",
    }
    from translate_kit.build import build_method

    method = build_method(recipe, registry)
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in method.nets.items()}
    assert counts == {"G_A": 11_378_179, "G_B": 11_378_179, "D_A": 2_764_737, "D_B": 2_764_737}  # DESIGN.md §1


def test_identity_loss_needs_equal_channels(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match="identity loss needs as many input as output channels"):
        make_trainer(registry, pm, tiny_facades, tmp_path, "data.out_channels=1")


def test_different_channel_counts_swap_for_g_b(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "data.out_channels=1", "method.lambda_identity=0.0")
    assert trainer.method.nets["D_A"].in_channels == 1 and trainer.method.nets["D_B"].in_channels == 3


def test_two_steps_change_all_four_networks(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    before = weights(trainer)
    history = trainer.fit()
    after = weights(trainer)
    assert [r["step"] for r in history] == [1, 2]
    assert {"loss_G_A", "loss_G_B", "loss_cycle_A", "loss_cycle_B", "loss_idt_A", "loss_idt_B", "loss_D_A",
            "loss_D_B"} <= set(history[0])
    assert all(math.isfinite(v) for r in history for v in r.values())
    for prefix in ("G_A.", "G_B.", "D_A.", "D_B."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "weight" in k)
    assert len(trainer.method.fake_a_pool) == len(trainer.method.fake_b_pool) == 4  # 2 steps x batch 2


def test_resume_with_the_pool_reproduces_the_uninterrupted_run(registry, pm, tiny_facades, tmp_path):
    # 8 images, batch 2: 4 steps per epoch; a pool of 3 is full after step 2, so steps 4-6 draw from it.
    extra = ["train.epochs=1", "train.decay_epochs=2", "method.pool_size=3"]
    straight = make_trainer(registry, pm, tiny_facades, tmp_path / "a", *extra, steps=6)
    straight.fit()

    first = make_trainer(registry, pm, tiny_facades, tmp_path / "b", *extra, steps=3)
    first.fit()
    recipe = load_recipe(first.run_dir / "recipe.toml", ["train.max_steps=6"], registry=registry)
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True)
    assert resumed.state.step == 3 and len(resumed.method.fake_b_pool) == 3
    resumed.fit()

    expected, got = weights(straight), weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    for pool in ("fake_A_pool", "fake_B_pool"):
        assert torch.equal(straight.method.extra_state()[pool], resumed.method.extra_state()[pool]), pool


def test_extra_state_round_trips_through_a_weights_only_checkpoint(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "method.pool_size=3")
    trainer.fit()
    [path] = checkpoint_paths(trainer.run_dir / "checkpoints")
    state = load_checkpoint(path)  # weights_only=True inside
    pools = state["method_state"]
    assert set(pools) == {"fake_A_pool", "fake_B_pool"}
    assert pools["fake_B_pool"].shape == (3, 3, 32, 32)
    assert torch.equal(pools["fake_B_pool"], trainer.method.extra_state()["fake_B_pool"])

    fresh = make_method(0.0, 0.0, pool_size=3)
    buffer = io.BytesIO()
    torch.save(trainer.method.extra_state(), buffer)
    buffer.seek(0)
    fresh.load_extra_state(torch.load(buffer, weights_only=True))
    for key, value in trainer.method.extra_state().items():
        assert torch.equal(fresh.extra_state()[key], value), key
