"""The checkpoint and export formats: one writer and one reader for each, used by training,
inference, `tkit export` and `tkit convert`.

A checkpoint is one `torch.save` file holding plain containers and tensors only, so it loads with
`torch.load(weights_only=True)` (no pickled code runs). It carries the resolved recipe, so the
architecture travels with the weights. Its keys (`checkpoint_dict`):

    format, version, translate_kit_version   what the file is
    recipe                                   the resolved recipe, as plain tables
    nets                                     network name -> state dict
    ema                                      translate network -> state dict of its moving average
    method_state                             the method's `extra_state()`
    state                                    step, epoch, epoch_step, counters (the resume point)
    optimizers, schedulers, scaler, rng, history, ranks, replica_fingerprints   training only

An export (`tkit export --format safetensors`) holds the translate networks' weights in a
`.safetensors` file (keys `"<net>.<key>"`) and a JSON description beside it. `read_model` reads a
checkpoint file, the newest good checkpoint of a run folder, or an export, into one `SavedModel`.

Writes go to a temporary file in the same folder, are flushed to disk, and then renamed over the
target: a crash (even `kill -9`) during a write leaves the previous file intact, and so does a
full disk, which is reported as a `CheckpointError` naming the folder and the space needed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from translate_kit import __version__
from translate_kit.errors import CheckpointError

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT",
    "SavedModel",
    "atomic_save",
    "check_resume",
    "checkpoint_dict",
    "checkpoint_paths",
    "description_path",
    "is_export",
    "load_checkpoint",
    "load_export",
    "newest_checkpoint",
    "prune_checkpoints",
    "read_model",
    "rng_state",
    "set_rng_state",
    "to_cpu",
    "write_export",
]

FORMAT = "translate-kit/checkpoint"
VERSION = 1
EXPORT_FORMAT = "translate-kit/export"
EXPORT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dict(
    recipe: Mapping[str, Any],
    nets: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    ema: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    method_state: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A checkpoint's contents (see the module docstring); `training` adds the keys a resume needs."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "translate_kit_version": __version__,
        "recipe": dict(recipe),
        "nets": {name: dict(sd) for name, sd in nets.items()},
        "ema": {name: dict(sd) for name, sd in (ema or {}).items()},
        "method_state": dict(method_state or {}),
        "state": dict(state or {}),
        **(training or {}),
    }


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _out_of_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    # torch.save reports a failed write of its zip archive as a RuntimeError from C++
    # ("[enforce fail at inline_container.cc] ... file write failed"), without the errno.
    return isinstance(exc, RuntimeError) and "write failed" in str(exc)


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save(obj, path)` so that `path` is always either the old file or the complete new one.

    Raises:
        CheckpointError: the write failed (a full disk, no permission); the temporary file is
            removed and the previous file at `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise CheckpointError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _out_of_space(exc):
            free = shutil.disk_usage(path.parent).free
            raise CheckpointError(
                f"Cannot write {path}: the disk is full. {path.parent} has {free / 2**20:.0f} MiB free and the "
                f"file needs about {_tensor_bytes(obj) / 2**20:.0f} MiB. The previous file is intact; free some "
                "space (or delete old runs) and try again."
            ) from None
        if isinstance(exc, OSError):
            raise CheckpointError(f"Cannot write {path}: {exc.strerror or exc}.") from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a translate-kit checkpoint safely (`weights_only=True`).

    Raises:
        CheckpointError: the file is missing, unreadable, or not a translate-kit checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or foreign files
        # Not torch's own text: for files it cannot unpickle safely it suggests weights_only=False,
        # which would run arbitrary code from the file.
        raise CheckpointError(
            f"Cannot load {path} as a translate-kit checkpoint ({type(exc).__name__}). The file is corrupt, truncated, or "
            "was not written by translate-kit (a bare state dict, such as the reference pix2pix code saves, is "
            "not a translate-kit checkpoint)."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a translate-kit checkpoint (no '{FORMAT}' marker). Pass a file from a run's "
            "checkpoints/ folder."
        )
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer translate-kit (format {state['version']}); upgrade.")
    return state


def checkpoint_paths(folder: Path) -> list[Path]:
    """`step_*.pt` files in `folder`, oldest (fewest steps) first."""
    if not Path(folder).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def newest_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that loads, with its contents; older ones are tried when the
    newest is unreadable (a disk that filled up, a file damaged after the write)."""
    errors = []
    for path in reversed(checkpoint_paths(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
    if errors:
        raise CheckpointError(f"No checkpoint in {folder} loads: {errors[0]}")
    return None


def prune_checkpoints(folder: Path, keep: int, newest: Path | None = None) -> None:
    """Delete all but the `keep` newest checkpoints in `folder`, and temporary files that a write
    killed before its rename left behind (only one process writes a run's checkpoints, and it
    calls this after its own write has completed).

    `newest` is the checkpoint just written. Files with more steps than it can only be ones that
    did not load when the run resumed (it resumes from the newest that loads): they are renamed
    to `*.pt.unreadable`, kept for inspection but never taken for a checkpoint again, so that
    they cannot push the good ones out of the `keep` newest.
    """
    paths = checkpoint_paths(folder)
    if newest is not None and Path(newest) in paths:
        for stale in paths[paths.index(Path(newest)) + 1 :]:
            stale.replace(stale.with_name(stale.name + ".unreadable"))
        paths = paths[: paths.index(Path(newest)) + 1]
    for path in paths[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
    for stale in Path(folder).glob(".step_*.pt.*.tmp"):
        stale.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# Reading a model for inference


@dataclass
class SavedModel:
    """What inference needs from a checkpoint or an export.

    Attributes:
        path: the file read.
        recipe: the resolved recipe, as plain tables.
        nets: network name -> state dict (an export holds the translate networks only).
        ema: translate network -> state dict of its moving average (empty without EMA).
        method_state: the method's extra state.
        step: optimisation steps of the weights, when known.
        averaged: `nets` themselves are moving averages (an export of an averaged model).
    """

    path: Path
    recipe: dict[str, Any]
    nets: dict[str, dict[str, torch.Tensor]]
    ema: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    method_state: dict[str, Any] = field(default_factory=dict)
    step: int | None = None
    averaged: bool = False


def read_model(path: Path) -> SavedModel:
    """Read a checkpoint file, the newest checkpoint of a run folder that loads (in
    `path/checkpoints` or `path` itself), or a safetensors export (see `is_export`).

    Raises:
        CheckpointError: nothing loadable at `path`, or a file without a recipe or weights.
    """
    path = Path(path)
    if is_export(path):
        return load_export(path)
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            if checkpoint_paths(folder):
                found = newest_checkpoint(folder)
                assert found is not None
                file, ckpt = found
                break
        else:
            raise CheckpointError(
                f"{path} is a folder but holds no checkpoint (looked for step_*.pt in {path / 'checkpoints'} and "
                f"in {path}); pass a run folder of `tkit train` or one of its checkpoint files."
            )
    else:
        if not path.exists():
            raise CheckpointError(f"Checkpoint {path} does not exist; pass a checkpoint file or a run folder.")
        if not zipfile.is_zipfile(path):  # torch.save writes zip archives; say so before torch's long story
            raise CheckpointError(
                f"{path} is not a translate-kit checkpoint: it is not a torch.save archive (the file is corrupt, "
                "truncated, or of another format). Pass a file from a run's checkpoints/ folder, or the run folder."
            )
        file, ckpt = path, load_checkpoint(path)
    if not isinstance(ckpt.get("recipe"), dict) or not isinstance(ckpt.get("nets"), dict):
        raise CheckpointError(f"{file} has no recipe or no network weights; it is not a usable checkpoint.")
    return SavedModel(
        path=file,
        recipe=ckpt["recipe"],
        nets=ckpt["nets"],
        ema=ckpt.get("ema") or {},
        method_state=ckpt.get("method_state") or {},
        step=(ckpt.get("state") or {}).get("step"),
    )


# ------------------------------------------------------------------------------------------------
# Exports


def description_path(weights: Path) -> Path:
    """The JSON beside an export: `model.safetensors` -> `model.safetensors.json` (one per format,
    so a safetensors and an ONNX export of the same name do not overwrite each other's)."""
    return weights.with_name(weights.name + ".json")


def write_description(description: Mapping[str, Any], path: Path) -> None:
    """Write an export's JSON description atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(description), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def export_description(recipe: Mapping[str, Any], nets: list[str], weights_format: str, **fields: Any) -> dict[str, Any]:
    """The fields every export description has; `fields` adds the rest (input, source, step)."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "translate_kit_version": __version__,
        "weights_format": weights_format,
        "nets": nets,
        "recipe": dict(recipe),
        **fields,
    }


def write_export(nets: Mapping[str, Mapping[str, torch.Tensor]], output: Path, description: Mapping[str, Any]) -> None:
    """Write a safetensors export: the networks' weights (keys `"<net>.<key>"`) and the description."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {f"{name}.{key}": value.detach().cpu().contiguous() for name, sd in nets.items() for key, value in sd.items()}
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"format": EXPORT_FORMAT})
    except SafetensorError as exc:  # its I/O errors (a full disk, no permission) are not OSErrors
        raise OSError(str(exc)) from None
    tmp.replace(output)
    write_description(description, description_path(output))


def is_export(path: Path) -> bool:
    """Whether `path` names an export: its `.safetensors` or `.json` file, or a folder holding
    `model.safetensors.json` (what `tkit export` writes by default)."""
    path = Path(path)
    if path.is_dir():
        return (path / "model.safetensors.json").is_file()
    return path.suffix in (".safetensors", ".json")


def load_export(path: Path) -> SavedModel:
    """Read a safetensors export.

    Raises:
        CheckpointError: a missing file, a JSON that is not an export description, an ONNX export
            (which translate-kit runs through onnxruntime, not this loader), or weights that do
            not load.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    json_path = path if path.suffix == ".json" else description_path(path)
    if not json_path.is_file():
        raise CheckpointError(
            f"{path} looks like an export, but its description {json_path} is missing; `tkit export` writes "
            "both files side by side. Export again, or pass a training checkpoint."
        )
    try:
        description = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Cannot read the export description {json_path}: {exc}.") from None
    if not isinstance(description, dict) or description.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{json_path} is not a translate-kit export description (no '{EXPORT_FORMAT}' marker)."
        )
    version = description.get("version", 0)
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise CheckpointError(f"{json_path} was written by a newer translate-kit; upgrade.")
    if description.get("weights_format") != "safetensors":
        raise CheckpointError(
            f"{json_path} describes an {description.get('weights_format')} export; translate-kit translates "
            "with training checkpoints or safetensors exports (run the ONNX file with onnxruntime)."
        )
    weights = json_path.with_suffix("")  # model.safetensors.json -> model.safetensors
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        flat = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"Cannot load the weights {weights}: {exc}. The file is missing or damaged.") from None
    nets: dict[str, dict[str, torch.Tensor]] = {name: {} for name in description.get("nets", [])}
    for key, tensor in flat.items():
        net, _, rest = key.partition(".")
        if net not in nets:
            raise CheckpointError(f"{weights} holds weights of network {net!r}, which its description does not list.")
        nets[net][rest] = tensor
    if not isinstance(description.get("recipe"), dict):
        raise CheckpointError(f"{json_path} has no recipe; it is not a usable export description.")
    return SavedModel(path=weights, recipe=description["recipe"], nets=nets, step=description.get("step"),
                      averaged=bool(description.get("averaged_weights", False)))


def to_cpu(value: Any) -> Any:
    """`value` with every tensor in it (nested dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random streams: torch's CPU generator, Python's, and `device`'s on CUDA."""
    import random

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` returned."""
    import random

    torch.set_rng_state(state["torch"])
    # A round trip through a checkpoint turns the inner tuple of Python's state into a list.
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_resume(ckpt: Mapping[str, Any], recipe: Any, *, where: str, dataset_size: int, world_size: int) -> list[str]:
    """Refuse a resume that would replay the wrong images; return warnings for one that goes on
    differently from the interrupted run.

    Raises:
        CheckpointError: the recipe's batch size or seed differ from the checkpoint's (the resume
            point is "batches of this epoch's permutation done", which both fix).
    """
    for table, key, now in (("train", "batch_size", recipe.train.batch_size), ("run", "seed", recipe.run.seed)):
        saved = ckpt["recipe"].get(table, {}).get(key)
        if saved is not None and saved != now:
            raise CheckpointError(
                f"{where} was trained with {table}.{key} = {saved!r}; resuming with {now!r} would replay the wrong "
                f"images. Resume without --set {table}.{key}, or start a new run."
            )
    warnings = []
    saved_size = ckpt["state"].get("dataset_size")
    if saved_size is not None and saved_size != dataset_size:  # images added or repaired: allowed
        warnings.append(
            f"The dataset has {dataset_size} usable images; the checkpoint was written with {saved_size}. Training "
            "continues, but not in the order the interrupted run would have taken."
        )
    saved_world = ckpt["state"].get("world_size", 1)
    if saved_world != world_size:
        warnings.append(
            f"{where} was written by {saved_world} process(es) and this run has {world_size}: it goes on at the same "
            "step with the same global batches, but not bit-identically, since each process draws its own dropout "
            "and jitter."
        )
    return warnings
