"""The TensorBoard logger plugin, checked by reading its event files back."""

from __future__ import annotations

import pytest
from test_train import make_trainer

from translate_kit.recipe import load_recipe
from translate_kit.train.trainer import Trainer

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="the tensorboard extra is not installed"
)


def read_events(run_dir):
    events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def test_scalars_validation_samples_and_recipe_reach_the_event_files(registry, pm, tiny_facades, tmp_path):
    # 8 training images in batches of 2: the fourth step ends the first epoch, which writes samples.
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, "train.eval_every=2", "train.eval_split=test",
                           steps=4)
    history = trainer.fit()
    events = read_events(trainer.run_dir)
    tags = events.Tags()
    assert {"loss/G_GAN", "loss/G_L1", "loss/D_real", "loss/D_fake", "train/lr", "train/images_per_s"} <= set(
        tags["scalars"])
    got = [(e.step, e.value) for e in events.Scalars("loss/G_L1")]
    assert got == [(r["step"], pytest.approx(r["loss_G_L1"], rel=1e-6)) for r in history]
    psnr = [(e.step, e.value) for e in events.Scalars("val/psnr")]
    assert psnr == [(r["step"], pytest.approx(r["psnr"], rel=1e-6)) for r in trainer.validation.records]
    assert set(tags["images"]) == {f"samples/{name}" for name in trainer.sample_names()}
    [image] = events.Images(f"samples/{trainer.sample_names()[0]}")
    assert (image.step, image.width, image.height) == (4, 3 * 32, 32)  # input | output | target
    [text] = events.Tensors("recipe/text_summary")
    assert "lambda_l1" in text.tensor_proto.string_val[0].decode()


def test_a_resumed_run_logs_each_step_once(registry, pm, tiny_facades, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    first = make_trainer(registry, pm, tiny_facades, tmp_path, steps=3)
    first.fit()
    # What a run killed after its checkpoint at step 3 would leave: events of steps 4 and 5.
    with SummaryWriter(str(first.run_dir / "tensorboard")) as crashed:
        for step in (4, 5):
            crashed.add_scalar("loss/G_L1", 999.0, global_step=step)
    recipe = load_recipe(first.run_dir / "recipe.toml", ["train.max_steps=5"], registry=registry)
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True)
    history = resumed.fit()
    logged = [(e.step, e.value) for e in read_events(first.run_dir).Scalars("loss/G_L1")]
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5]
    assert logged[3:] == [(r["step"], pytest.approx(r["loss_G_L1"], rel=1e-6)) for r in history[3:]]
