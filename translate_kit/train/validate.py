"""Validation while training: score a held-out split every `train.eval_every` steps and keep the
weights with the best score so far as `best.pt`.

The split is translated and scored exactly as `tkit eval` does (`translate_kit.eval.evaluate`):
eval mode, the method's own batch preparation and scoring protocol, the moving averages of the
weights when the run keeps them. The per-pixel metrics are always there; `train.eval_segmenter`
adds the FCN-score and `train.eval_fid_weights` FID and KID. Images are decoded once, when the
run starts, and kept in memory (validation splits are small; `train.eval_images` caps them).

Validation never moves the training's random streams, so a resumed run is still exact. With
several processes every rank validates the whole split (the networks' plain modules, no
collective calls), so no rank waits for another in the next step; rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from translate_kit.errors import DataError, RecipeError
from translate_kit.method import Method, private_rng, unwrap
from translate_kit.recipe import Recipe
from translate_kit.registry import Registry
from translate_kit.train import checkpoint as ckpt

__all__ = ["BEST_FILE", "Validation", "better_direction"]

BEST_FILE = "best.pt"
# Which way each score improves; a metric not listed needs train.best_mode "max" or "min".
_HIGHER_IS_BETTER = ("psnr", "ssim", "fcn_pixel_accuracy", "fcn_class_accuracy", "fcn_class_iou")
_LOWER_IS_BETTER = ("l1", "mse", "fid", "kid_mean")


def better_direction(metric: str, mode: str) -> str:
    """"max" or "min": which way `metric` improves ("auto" looks it up).

    Example:
        >>> better_direction("psnr", "auto"), better_direction("fid", "auto"), better_direction("mine", "min")
        ('max', 'min', 'min')
    """
    if mode != "auto":
        return mode
    if metric in _HIGHER_IS_BETTER:
        return "max"
    if metric in _LOWER_IS_BETTER:
        return "min"
    raise RecipeError(
        f"train.best_metric = {metric!r} has no known direction; set train.best_mode = \"max\" (higher is better) "
        f"or \"min\". Known metrics: {', '.join(_HIGHER_IS_BETTER + _LOWER_IS_BETTER)}."
    )


def _plain_view(method: Method) -> Method:
    """A shallow copy of `method` whose networks are the plain modules inside DDP / compile
    wrappers: the same weights, but a forward pass that calls no other process."""
    view = copy.copy(method)
    view._modules = dict(method._modules)  # the copy's own module table: `nets` is replaced below
    view.nets = nn.ModuleDict({name: unwrap(net) for name, net in method.nets.items()})
    return view


class Validation:
    """Every `train.eval_every` steps: scores on `train.eval_split`, the best so far, `best.pt`.

    Args:
        recipe: the run's recipe ([train] holds the validation settings).
        registry: the components (the dataset, and the segmenter's networks).
        method: the method being trained (for its scoring protocol).
        device: the training device.
        run_dir: the run folder, where `best.pt` goes.

    Raises:
        RecipeError / DataError: the split, the segmenter, the FID weights or the metric does not fit.
    """

    def __init__(self, recipe: Recipe, registry: Registry, method: Method, device: torch.device,
                 run_dir: Path) -> None:
        from translate_kit.eval.evaluate import eval_dataset

        train = recipe.train
        self.recipe, self.device, self.every = recipe, device, train.eval_every
        self.best_file = Path(run_dir) / BEST_FILE
        self.metric, self.direction = train.best_metric, better_direction(train.best_metric, train.best_mode)
        dataset = eval_dataset(recipe, registry, train.eval_split, resize=method.eval_protocol().resize)
        count = min(train.eval_images or len(dataset), len(dataset))
        if count == 0:
            raise DataError(f"The {train.eval_split} split holds no image, so train.eval_every cannot validate.")
        self.items = [dataset[i] for i in range(count)]  # decoded once
        self.segmenter = None
        if train.eval_segmenter:
            from translate_kit.inference import Translator

            self.segmenter = Translator.from_checkpoint(Path(train.eval_segmenter), device=str(device),
                                                        registry=registry)
        self.fid = None
        if train.eval_fid_weights:
            from translate_kit.eval.fid import load_fid_inception

            if count < 2:
                raise DataError(f"FID and KID need at least 2 images; validation scores {count} of the "
                                f"{train.eval_split} split (train.eval_images).")
            self.fid = load_fid_inception(Path(train.eval_fid_weights), device=device)
        known = ["l1", "mse", "psnr", "ssim"]
        known += ["fcn_pixel_accuracy", "fcn_class_accuracy", "fcn_class_iou"] if self.segmenter else []
        known += ["fid", "kid_mean", "kid_std"] if self.fid else []
        if self.metric not in known:
            raise RecipeError(
                f"train.best_metric = {self.metric!r} is not among this run's validation scores ({', '.join(known)}); "
                "choose one of them (FCN scores need train.eval_segmenter, FID and KID train.eval_fid_weights)."
            )
        self.records: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None  # {"step", "value"}

    def due(self, step: int) -> bool:
        return step % self.every == 0

    @torch.no_grad()
    def run(self, method: Method, *, step: int, epoch: int, ema: Any | None) -> tuple[dict[str, float], bool]:
        """Score the split with the current weights (the averages, when kept); return the record
        (`step`, `epoch` and the scores) and whether it is the best so far."""
        from translate_kit.eval.evaluate import INCEPTION_KEYS, EvalOptions, evaluate
        from translate_kit.inference import Translator

        averaged = ema.applied(method) if ema is not None else contextlib.nullcontext()
        train = self.recipe.train
        options = EvalOptions(split=train.eval_split, batch_size=train.batch_size, write_images=False)
        with private_rng(self.device), averaged:
            translator = Translator(_plain_view(method), self.recipe, device=self.device, mode="eval")
            report = evaluate(translator, self.items, options=options, out_dir=None, checkpoint=f"step {step}",
                              segmenter=self.segmenter, fid_network=self.fid)
        record: dict[str, float] = {"step": step, "epoch": epoch, **report.pixel}
        if report.fcn:
            scores = report.fcn["generated"]
            record.update(fcn_pixel_accuracy=scores["pixel_accuracy"], fcn_class_accuracy=scores["mean_class_accuracy"],
                          fcn_class_iou=scores["mean_iou"])
        record.update({key: report.inception[key] for key in INCEPTION_KEYS if key in report.inception})
        self.records.append(record)
        value = record[self.metric]
        best = self.best is None or (
            math.isfinite(value) and (value > self.best["value"] if self.direction == "max" else value < self.best["value"])
        )
        if best and math.isfinite(value):
            self.best = {"step": step, "value": value}
        return record, bool(best and math.isfinite(value))

    def save_best(self, method: Method, *, ema: Any | None, state: Mapping[str, Any]) -> Path:
        """Write the current weights as `best.pt` in the run folder (atomically): a checkpoint
        without the optimisers, which `tkit translate`, `tkit eval` and `tkit export` take like
        any other."""
        nets = {name: unwrap(net).state_dict() for name, net in method.nets.items()}
        saved = ckpt.checkpoint_dict(self.recipe.to_dict(), nets, ema=ema.state_dict() if ema is not None else None,
                                     method_state=method.extra_state(), state=state)
        saved["validation"] = {"metric": self.metric, **(self.best or {})}
        ckpt.atomic_save(saved, self.best_file)
        return self.best_file

    def state_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records], "best": dict(self.best) if self.best else None,
                "metric": self.metric}

    def load_state_dict(self, state: Mapping[str, Any] | None, *, step: int) -> None:
        """The scores up to `step` (those of an interrupted run's later steps are scored again),
        and the best of them, unless it no longer applies: scored by another `best_metric` (a
        `--set` on resume), or its `best.pt` overwritten by the interrupted run after `step` (the
        weights it names are gone; the next validation starts the best afresh)."""
        state = state or {}
        self.records = [dict(r) for r in state.get("records", []) if r.get("step", 0) <= step]
        best = state.get("best")
        self.best = dict(best) if best and best.get("step", 0) <= step and state.get("metric") == self.metric else None
        if self.best is not None and self.best_file.is_file():
            written = (ckpt.load_checkpoint(self.best_file).get("state") or {}).get("step", 0)
            if written > step:
                self.best = None

    def summary(self, record: Mapping[str, float]) -> str:
        """One line for the console: the scores, then the best so far."""
        scores = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("step", "epoch"))
        best = f"; best {self.metric} {self.best['value']:.4g} at step {self.best['step']:.0f}" if self.best else ""
        return f"validation at step {record['step']:.0f} ({len(self.items)} {self.recipe.train.eval_split} images): {scores}{best}"
