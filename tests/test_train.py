"""The trainer end to end on tiny images: steps, checkpoints, exact resume, run folder, errors."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import RECIPES, quick_overrides

from translate_kit.errors import CheckpointError, DataError, RecipeError
from translate_kit.recipe import load_recipe
from translate_kit.train.checkpoint import checkpoint_paths, load_checkpoint, newest_checkpoint
from translate_kit.train.optim import allocate_adam_state, linear_decay
from translate_kit.train.trainer import Trainer

TINY_UNET = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]


def make_trainer(registry, pm, root, run_dir, *extra, steps=2, **kwargs):
    overrides = quick_overrides(root, run_dir, steps=steps) + TINY_UNET + list(extra)
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", overrides, registry=registry)
    return Trainer(recipe, registry=registry, pm=pm, device="cpu", **kwargs)


def weights(trainer):
    return {f"{n}.{k}": v.clone() for n, net in trainer.method.nets.items() for k, v in net.state_dict().items()}


def test_two_steps_change_weights_and_keep_losses_finite(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    before = weights(trainer)
    history = trainer.fit()
    after = weights(trainer)
    assert [r["step"] for r in history] == [1, 2]
    assert {"loss_G_GAN", "loss_G_L1", "loss_D_real", "loss_D_fake", "lr", "images_per_s"} <= set(history[0])
    assert all(math.isfinite(v) for r in history for v in r.values())
    for prefix in ("G.", "D."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix) and "weight" in k)


def test_run_folder_has_recipe_checkpoint_samples_page_and_losses(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    trainer.fit()
    run = trainer.run_dir
    assert run == tmp_path / "pix2pix_facades"
    assert load_recipe(run / "recipe.toml", registry=registry).to_dict() == trainer.recipe.to_dict()
    [checkpoint] = checkpoint_paths(run / "checkpoints")
    state = load_checkpoint(checkpoint)  # weights_only=True inside
    assert state["state"]["step"] == 2 and state["recipe"] == trainer.recipe.to_dict()
    assert set(state["nets"]) == {"G", "D"} and set(state["optimizers"]) == {"G", "D"}
    records = [json.loads(line) for line in (run / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    page = (run / "index.html").read_text()
    for name in ("samples/input/1.png", "samples/target/1.png", "samples/epoch_0001/1.png", "<svg"):
        assert name in page
    from torchvision.io import read_image

    output = read_image(str(run / "samples/epoch_0001/1.png"))
    assert output.shape == (3, 32, 32) and output.float().std() > 0


def test_resume_reproduces_the_uninterrupted_run(registry, pm, tiny_facades, tmp_path):
    # 8 images, batch 2: 4 steps per epoch; 6 steps cross an epoch boundary and the lr decay.
    schedule = ["train.epochs=1", "train.decay_epochs=2"]
    straight = make_trainer(registry, pm, tiny_facades, tmp_path / "a", *schedule, steps=6)
    straight.fit()

    first = make_trainer(registry, pm, tiny_facades, tmp_path / "b", *schedule, steps=3)
    first.fit()
    recipe = load_recipe(first.run_dir / "recipe.toml", ["train.max_steps=6"], registry=registry)
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True)
    assert (resumed.state.step, resumed.state.epoch, resumed.state.epoch_step) == (3, 0, 3)
    resumed.fit()

    expected, got = weights(straight), weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    for group in ("G", "D"):
        assert resumed.optimizers[group].param_groups[0]["lr"] == straight.optimizers[group].param_groups[0]["lr"]
    records = [json.loads(line) for line in (first.run_dir / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]


def test_existing_run_folder_is_never_silently_overwritten(registry, pm, tiny_facades, tmp_path):
    make_trainer(registry, pm, tiny_facades, tmp_path).fit()
    with pytest.raises(CheckpointError, match="already exists.*--resume"):
        make_trainer(registry, pm, tiny_facades, tmp_path)
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, overwrite=True)
    assert trainer.state.step == 0 and not (trainer.run_dir / "checkpoints").exists()


def test_resume_without_checkpoint_is_a_clear_error(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(CheckpointError, match="Nothing to resume"):
        make_trainer(registry, pm, tiny_facades, tmp_path, resume=True)


def test_crop_the_unet_cannot_take_is_a_recipe_error(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match=r"crop_size 32 gives network G \(UNetGenerator\) inputs of 32 pixels.*multiples of 64"):
        make_trainer(registry, pm, tiny_facades, tmp_path, "generator.num_downs=6")


def test_missing_data_folder_says_how_to_fix(registry, pm, tmp_path):
    with pytest.raises(DataError, match="does not exist.*data.root"):
        make_trainer(registry, pm, tmp_path / "nowhere", tmp_path)


def test_keep_checkpoints_prunes_old_ones(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(
        registry, pm, tiny_facades, tmp_path, "train.keep_checkpoints=2", "train.checkpoint_every=1",
        "train.epochs=3", "train.decay_epochs=0", steps=0,
    )
    trainer.fit()
    names = [p.name for p in checkpoint_paths(trainer.run_dir / "checkpoints")]
    assert names == ["step_000000008.pt", "step_000000012.pt"]


def test_nonfinite_losses_are_skipped_then_stop_the_run(registry, pm, tiny_facades, tmp_path):
    from translate_kit.errors import TrainingError

    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "train.max_nonfinite_steps=2", steps=4)
    before = weights(trainer)
    real_step = trainer.method.training_step

    def poisoned(batch, ctx):
        batch = dict(batch, B=batch["B"] * float("nan"))
        return real_step(batch, ctx)

    trainer.method.training_step = poisoned
    with pytest.raises(TrainingError, match="2 steps in a row"):
        trainer.fit()
    after = weights(trainer)
    # Neither network stepped on a NaN loss (batch-norm buffers still see the NaN batch: forward
    # passes run before the loss is known).
    learned = [k for k in before if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], after[k]) for k in learned)


def test_a_nonfinite_gradient_with_a_finite_loss_is_skipped_too(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, steps=3)
    first = next(p for p in trainer.method.nets["G"].parameters())
    # The losses stay finite; only one generator gradient element turns into inf.
    first.register_hook(lambda grad: grad.index_put((torch.tensor(0),), torch.tensor(float("inf"))))
    before = weights(trainer)
    history = trainer.fit()
    after = weights(trainer)
    assert all(math.isfinite(r["loss_G_L1"]) for r in history)
    assert trainer.state.nonfinite_total == 3 and history[-1]["nonfinite_total"] == 3
    generator = [k for k in before if k.startswith("G.") and "running" not in k and "num_batches" not in k]
    assert all(torch.equal(before[k], after[k]) for k in generator)  # G never stepped
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("D.") and "weight" in k)


def test_fp16_grad_scaler_skips_nonfinite_steps_without_crashing(registry, pm, tiny_facades, tmp_path):
    from translate_kit.errors import TrainingError

    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "train.precision=fp16", "train.max_nonfinite_steps=2",
                           steps=4)
    assert trainer.scaler is not None
    trainer.fit()  # finite steps: the scaler steps and updates
    real_step = trainer.method.training_step
    trainer.method.training_step = lambda batch, ctx: real_step(dict(batch, B=batch["B"] * float("nan")), ctx)
    trainer.recipe = load_recipe(trainer.run_dir / "recipe.toml", ["train.max_steps=8"], registry=registry)
    with pytest.raises(TrainingError, match="2 steps in a row"):
        trainer.fit()


def test_resume_refuses_a_different_batch_size_or_seed(registry, pm, tiny_facades, tmp_path):
    first = make_trainer(registry, pm, tiny_facades, tmp_path, steps=1)
    first.fit()
    for override in ("train.batch_size=4", "run.seed=5"):
        recipe = load_recipe(first.run_dir / "recipe.toml", [override], registry=registry)
        with pytest.raises(CheckpointError, match="would replay the wrong images"):
            Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True)


def test_linear_decay_matches_the_reference_rule():
    factor = linear_decay(100, 100)
    assert [factor(e) for e in (0, 99)] == [1.0, 1.0]
    assert factor(100) == pytest.approx(1 - 1 / 101) and factor(199) == pytest.approx(1 / 101)


def test_fp32_and_bf16_cpu_autocast_paths(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "train.precision=bf16",
                           "train.memory_format=channels_last")
    history = trainer.fit()
    assert trainer.autocast_dtype == torch.bfloat16 and trainer.channels_last
    assert all(math.isfinite(r["loss_G_L1"]) for r in history)


def test_a_recipe_that_fails_to_build_leaves_no_run_folder(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(RecipeError):
        make_trainer(registry, pm, tiny_facades, tmp_path, "generator.num_downs=6")
    assert not (tmp_path / "pix2pix_facades").exists()
    make_trainer(registry, pm, tiny_facades, tmp_path)  # so the corrected recipe starts without --overwrite


def test_crop_below_the_discriminators_minimum_is_a_recipe_error(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match=r"network D \(PatchDiscriminator\) inputs of 32 pixels, fewer than the 96"):
        make_trainer(registry, pm, tiny_facades, tmp_path, "discriminator.n_layers=5")


def test_gan_mode_must_name_a_gan_loss(registry, pm, tiny_facades, tmp_path):
    with pytest.raises(RecipeError, match=r"key 'gan_mode': loss 'l1' is not an adversarial loss.*Choose one of: (\w+, )*hinge, "
                       r"(\w+, )*lsgan, (\w+, )*vanilla, (\w+, )*wgangp"):
        make_trainer(registry, pm, tiny_facades, tmp_path, "method.gan_mode=l1")
    with pytest.raises(RecipeError, match="unknown key 'target_rea' for loss 'vanilla'"):
        make_trainer(registry, pm, tiny_facades, tmp_path, "method.gan_options={target_rea = 0.9}")
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "method.gan_mode=lsgan",
                           "method.gan_options={target_real = 0.9}")
    assert trainer.method.gan_loss.mode == "lsgan"


@pytest.mark.parametrize("fused", [True, None])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_state_made_before_the_first_step_trains_bit_for_bit_the_same(fused, amsgrad):
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 2, 3))]
    nets.append(copy.deepcopy(nets[0]))
    lazy, eager = (torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.5, 0.999), fused=fused, amsgrad=amsgrad)
                   for n in nets)
    allocate_adam_state(eager)
    assert len(eager.state) == 6 and not lazy.state
    for _ in range(3):
        x = torch.randn(2, 3, 9, 9)
        for net, optimizer in zip(nets, (lazy, eager)):
            net(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values()):
        assert torch.equal(a, b)
    states = [o.state_dict()["state"] for o in (lazy, eager)]
    assert states[0].keys() == states[1].keys()
    for i, entry in states[0].items():
        assert entry.keys() == states[1][i].keys()
        assert all(torch.equal(entry[k], states[1][i][k]) for k in entry)


def test_trainer_makes_the_optimiser_states_before_any_step(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path / "run")
    for optimizer in trainer.optimizers.values():
        params = [p for group in optimizer.param_groups for p in group["params"]]
        assert all(optimizer.state[p]["exp_avg"].shape == p.shape for p in params)
        assert all(float(optimizer.state[p]["step"]) == 0.0 for p in params)


def test_moving_averages_start_from_the_loaded_weights_on_a_resume_that_turns_them_on(registry, pm, tiny_facades,
                                                                                     tmp_path):
    """`--resume --set train.ema_decay=...` on a run that kept none: the averages start from the
    checkpoint's weights, not from the fresh initialisation built before the restore."""
    make_trainer(registry, pm, tiny_facades, tmp_path, steps=1).fit()
    run = tmp_path / "pix2pix_facades"
    _, saved = newest_checkpoint(run / "checkpoints")
    recipe = load_recipe(saved["recipe"], ["train.ema_decay=0.99", "train.max_steps=2"], registry=registry)
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=run, resume=True)
    for key, value in resumed.ema.nets["G"].state_dict().items():
        assert torch.equal(value, saved["nets"]["G"][key]), key
    resumed.fit()
    _, saved = newest_checkpoint(run / "checkpoints")
    assert set(saved["ema"]) == {"G"}


def test_a_trainer_that_never_trains_gives_its_lock_back(registry, pm, tiny_facades, tmp_path):
    first = make_trainer(registry, pm, tiny_facades, tmp_path)
    first.close()
    make_trainer(registry, pm, tiny_facades, tmp_path, overwrite=True).fit()  # the same folder, the same process


def test_the_run_page_draws_each_loss_on_its_own_axes(tmp_path):
    """One chart per loss, each on its own scale (a GAN loss near 0.7 and a perceptual loss near
    1e-7 stay readable), with tick labels for the value and the step, and the latest value."""
    import xml.etree.ElementTree as ET

    from translate_kit.pages import write_run_page

    history = [{"step": s, "loss_G_GAN": 0.7 + 0.01 * (s % 3), "loss_G_perceptual": 1e-7 * s} for s in range(10, 60, 10)]
    history.append({"step": 60, "images_per_s": 5.0})  # not a loss: not drawn
    page = write_run_page(tmp_path, title="t", summary={}, rows=[], recipe_text="", history=history).read_text()
    charts = [ET.fromstring(svg + "</svg>") for svg in page.split("</svg>")[:-1] if "<svg" in svg
              for svg in [svg[svg.index("<svg"):]]]
    assert len(charts) == 2
    texts = [[t.text for t in chart.iter("{http://www.w3.org/2000/svg}text")] for chart in charts]
    assert texts[0][:2] == ["G_GAN", "last 0.72"] and texts[1][:2] == ["G_perceptual", "last 5e-06"]
    assert {"0.7", "0.71", "0.72"} <= set(texts[0]) and {"1e-06", "3e-06", "5e-06"} <= set(texts[1])
    assert {"10", "30", "50", "step"} <= set(texts[0])
    lines = [{p.get("class"): p.get("points") for p in chart.iter("{http://www.w3.org/2000/svg}polyline")}
             for chart in charts]
    assert all(set(line) == {"raw", "smooth"} for line in lines)
    assert lines[0]["raw"] != lines[0]["smooth"]  # a wavy loss is smoothed


def test_the_run_page_draws_validation_scores_in_their_own_section(tmp_path):
    from translate_kit.pages import write_run_page

    validation = [{"step": 10, "epoch": 0, "psnr": 20.0, "ssim": 0.5}, {"step": 20, "epoch": 1, "psnr": 21.5, "ssim": 0.6}]
    page = write_run_page(tmp_path, title="t", summary={}, rows=[], recipe_text="", validation=validation).read_text()
    section = page[page.index("<h2>Validation</h2>"):]
    assert section.count("<svg") == 2 and "last 21.5" in section and "last 0.6" in section
    assert "<h2>Losses</h2>" not in page  # no training records: no empty section
