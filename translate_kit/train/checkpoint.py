"""Checkpoints: atomic writes, safe loads, and finding the newest good one in a run folder.

A checkpoint is one `torch.save` file holding plain containers and tensors only, so it loads with
`torch.load(weights_only=True)` (no pickled code runs). It carries the resolved recipe, so the
architecture travels with the weights.

Writes go to a temporary file in the same folder, are flushed to disk, and then renamed over the
target: a crash (even `kill -9`) during a write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from translate_kit.errors import CheckpointError

__all__ = ["FORMAT", "atomic_save", "checkpoint_paths", "load_checkpoint", "newest_checkpoint", "prune_checkpoints"]

FORMAT = "translate-kit/checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def atomic_save(obj: Any, path: Path) -> None:
    """`torch.save(obj, path)` so that `path` is always either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
