"""Validation while training (`train.eval_every`): scores, best.pt, the page, the log, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import RECIPES, quick_overrides
from test_fid import weights as weights  # noqa: F401  (a fixture)
from test_train import TINY_UNET
from test_train import make_trainer as train_make_trainer
from test_train import weights as trained_weights

from translate_kit.errors import DataError, RecipeError
from translate_kit.eval.evaluate import EvalOptions, eval_dataset, evaluate
from translate_kit.inference import Translator
from translate_kit.recipe import load_recipe
from translate_kit.train.checkpoint import load_checkpoint
from translate_kit.train.trainer import Trainer

VALIDATE = ["train.eval_every=2", "train.eval_split=test", "train.best_metric=l1"]


def make_trainer(registry, pm, root, run_dir, *extra, steps=6, **kwargs):
    overrides = quick_overrides(root, run_dir, steps=steps) + TINY_UNET + VALIDATE + list(extra)
    recipe = load_recipe(RECIPES / "pix2pix_facades.toml", overrides, registry=registry)
    return Trainer(recipe, registry=registry, pm=pm, device="cpu", **kwargs)


def test_validation_scores_the_split_keeps_the_best_and_draws_it(registry, pm, tiny_facades, tmp_path):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    trainer.fit()
    records = trainer.validation.records
    assert [r["step"] for r in records] == [2, 4, 6]
    assert {"l1", "mse", "psnr", "ssim", "epoch"} <= set(records[0])

    # The scores are `tkit eval`'s: the same split scored from the final checkpoint.
    translator = Translator.from_checkpoint(trainer.run_dir, device="cpu", registry=registry)
    dataset = eval_dataset(translator.recipe, registry, "test")
    report = evaluate(translator, dataset, options=EvalOptions(split="test", write_images=False), out_dir=None,
                      checkpoint="final")
    for key in ("l1", "psnr", "ssim"):
        assert records[-1][key] == pytest.approx(report.pixel[key], rel=1e-6)

    best = min(records, key=lambda r: r["l1"])
    assert trainer.validation.best == {"step": best["step"], "value": best["l1"]}
    saved = load_checkpoint(trainer.run_dir / "best.pt")
    assert saved["state"]["step"] == best["step"] and saved["validation"]["value"] == best["l1"]
    assert "optimizers" not in saved  # the weights only
    Translator.from_checkpoint(trainer.run_dir / "best.pt", device="cpu", registry=registry)  # loads as any checkpoint

    logged = [json.loads(line) for line in (trainer.run_dir / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [2, 4, 6] and logged[-1]["l1"] == records[-1]["l1"]
    page = (trainer.run_dir / "index.html").read_text()
    assert "<h2>Validation</h2>" in page and page[page.index("<h2>Validation</h2>"):].count("<svg") >= 4


def test_resume_keeps_the_scores_and_the_best_and_stays_exact(registry, pm, tiny_facades, tmp_path):
    straight = make_trainer(registry, pm, tiny_facades, tmp_path / "a")
    straight.fit()
    first = make_trainer(registry, pm, tiny_facades, tmp_path / "b", steps=4)
    first.fit()
    recipe = load_recipe(first.run_dir / "recipe.toml", ["train.max_steps=6"], registry=registry)
    resumed = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True)
    assert [r["step"] for r in resumed.validation.records] == [2, 4] and resumed.validation.best is not None
    resumed.fit()
    assert resumed.validation.records == straight.validation.records
    assert resumed.validation.best == straight.validation.best
    expected, got = trained_weights(straight), trained_weights(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)  # validating moved no random stream
    plain = train_make_trainer(registry, pm, tiny_facades, tmp_path / "c", steps=6)
    plain.fit()
    assert plain.validation is None and all(torch.equal(expected[k], v) for k, v in trained_weights(plain).items())
    logged = [json.loads(line)["step"] for line in (resumed.run_dir / "validation.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 6]


@pytest.mark.parametrize(
    ("overrides", "error", "words"),
    [
        (["train.best_metric=fid"], RecipeError, "train.eval_fid_weights"),
        (["train.best_metric=fcn_class_iou"], RecipeError, "train.eval_segmenter"),
        (["train.best_metric=sharpness"], RecipeError, 'train.best_mode = "max"'),
        (["train.eval_split=holdout"], DataError, "holdout"),
    ],
)
def test_validation_settings_that_cannot_work_are_refused_before_training(
    registry, pm, tiny_facades, tmp_path, overrides, error, words
):
    with pytest.raises(error, match=words):
        make_trainer(registry, pm, tiny_facades, tmp_path, *overrides)


def test_validation_with_fid_keeps_the_lowest(registry, pm, tiny_facades, tmp_path, weights):
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path, f'train.eval_fid_weights="{weights.as_posix()}"',
                           "train.eval_split=train", "train.eval_images=4", "train.best_metric=fid", steps=2)
    trainer.fit()
    [record] = trainer.validation.records
    assert {"fid", "kid_mean", "kid_std"} <= set(record) and record["fid"] > 0
    assert trainer.validation.direction == "min" and trainer.validation.best == {"step": 2, "value": record["fid"]}


def test_fid_validation_of_a_single_image_is_refused(registry, pm, tiny_facades, tmp_path, weights):
    with pytest.raises(DataError, match="at least 2 images"):
        make_trainer(registry, pm, tiny_facades, tmp_path, f'train.eval_fid_weights="{weights.as_posix()}"')


def test_a_best_that_no_longer_applies_is_started_afresh_on_resume(registry, pm, tiny_facades, tmp_path):
    import os

    run = make_trainer(registry, pm, tiny_facades, tmp_path, "train.checkpoint_every=1")  # at steps 4 and 6
    run.fit()
    checkpoints = run.run_dir / "checkpoints"
    os.remove(checkpoints / "step_000000006.pt")  # as if killed after step 6: it resumes from step 4

    def resumed(*overrides):
        recipe = load_recipe(run.run_dir / "recipe.toml", list(overrides), registry=registry)
        trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=run.run_dir, resume=True)
        trainer.close()
        return trainer.validation

    # best.pt holds step 6 or earlier; written at step 6, it no longer holds the best the checkpoint knows.
    saved = load_checkpoint(run.run_dir / "best.pt")
    saved["state"]["step"] = 6
    torch.save(saved, run.run_dir / "best.pt")
    assert resumed().best is None and [r["step"] for r in resumed().records] == [2, 4]
    saved["state"]["step"] = 2
    torch.save(saved, run.run_dir / "best.pt")
    kept = resumed().best
    assert kept is not None and kept["step"] <= 4
    assert resumed("train.best_metric=psnr").best is None  # scored by another metric
