"""Log training scalars as JSON lines in the run folder (`losses.jsonl`), one record per log step,
and validation scores (`train.eval_every`) likewise in `validation.jsonl`.

A logger is an ordinary plugin listening to the run events; disable it with
TRANSLATE_KIT_DISABLE_PLUGINS=jsonl_log. On resume, records past the checkpoint's step (written by
the interrupted run after its last checkpoint) are dropped, since those steps are trained again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translate_kit.api import hookimpl

if TYPE_CHECKING:
    from translate_kit.api import Trainer

__all__ = ["FILENAME", "VALIDATION_FILENAME"]

FILENAME = "losses.jsonl"
VALIDATION_FILENAME = "validation.jsonl"


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; keep the record valid and say what happened.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


@hookimpl
def translate_kit_run_start(trainer: Trainer) -> None:
    for path in (trainer.run_dir / FILENAME, trainer.run_dir / VALIDATION_FILENAME):
        if not path.exists():
            continue
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a torn last line from a crash
                continue
            if record.get("step", 0) <= trainer.state.step:
                kept.append(line)
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")


def _append(path: Path, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
    record = {"step": step, "epoch": epoch, **{k: _clean(v) for k, v in scalars.items()}}
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


@hookimpl
def translate_kit_train_log(trainer: Trainer, step: int, epoch: int, scalars: Mapping[str, float]) -> None:
    _append(trainer.run_dir / FILENAME, step, epoch, scalars)


@hookimpl
def translate_kit_validation(trainer: Trainer, step: int, epoch: int, scores: Mapping[str, float]) -> None:
    _append(trainer.run_dir / VALIDATION_FILENAME, step, epoch, scores)
