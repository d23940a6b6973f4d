"""The run folder: who may write it, what it holds, and the sample page.

    runs/<name>/
        .lock               held (an OS file lock) by the one process training here; holds its PID
        recipe.toml         the resolved recipe, data.root made absolute (see `absolute_data_root`)
        checkpoints/        step_*.pt (see checkpoint.py)
        samples/            input/, target/ and epoch_NNNN/ sample images
        skipped_inputs.txt  what data.on_error = "skip" left out
        index.html          the run page: samples over the epochs, loss curves, the recipe

`RunFolder.claim` refuses what would lose work (an existing run without --resume or --overwrite,
a folder that is not a run) and takes the lock, so a second `tkit train` on the same folder stops
at once with the holder's PID instead of interleaving checkpoints. The kernel releases the lock
when the process ends, however it ends, so a crashed run never leaves the folder locked.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from translate_kit.errors import CheckpointError, RunFolderError
from translate_kit.pages import SampleRow, save_png, write_run_page

if TYPE_CHECKING:
    from translate_kit.recipe import Recipe

__all__ = ["LOCK_NAME", "RunFolder", "absolute_data_root"]

LOCK_NAME = ".lock"


def absolute_data_root(recipe: Recipe) -> tuple[Recipe, str]:
    """The recipe with a relative `data.root` made absolute, and a note of what was given.

    A run trained with `root = "data/facades"` from one folder must still find its data when
    `tkit eval RUN`, `tkit translate` or `tkit train --resume RUN` run from another: the checkpoint
    and recipe.toml carry the recipe, so they carry the absolute path. The path is made absolute
    against the working directory, as the dataset would read it, with `~` expanded; symbolic links
    are kept as they are (a linked dataset folder keeps the name the user gave it).

    Returns:
        The recipe (the same object when there is nothing to change), and a TOML comment line with
        the root as given ("" when unchanged), for recipe.toml's header.
    """
    given = recipe.data.options.get("root")
    if not isinstance(given, str) or not given:
        return recipe, ""
    absolute = os.path.abspath(os.path.expanduser(given))
    if absolute == given:
        return recipe, ""
    data = dataclasses.replace(recipe.data, options={**recipe.data.options, "root": absolute})
    return dataclasses.replace(recipe, data=data), f"# data.root as given: {given!r}, from {os.getcwd()}\n"


class RunFolder:
    """One run's folder (see the module docstring).

    Args:
        path: the folder (`<run.dir>/<run.name>`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self._lock: IO[str] | None = None
        self._created = False

    def is_run(self) -> bool:
        """Whether the folder holds a translate-kit run (a recipe.toml or checkpoints/)."""
        return (self.path / "recipe.toml").exists() or self.checkpoints.exists()

    def claim(self, *, resume: bool, overwrite: bool, lock: bool = True) -> None:
        """Check that training here loses no work, then (with `lock`; under torchrun rank 0 alone
        writes the folder and locks it) create the folder and lock it for this process.

        Raises:
            RunFolderError: another process holds the lock; or, without `resume`, the folder is
                an existing run and `overwrite` is off, or is not a run at all (never deleted).
        """
        entries = [p for p in self.path.iterdir() if p.name != LOCK_NAME] if self.path.is_dir() else []
        if not resume and entries:
            if not overwrite:
                hint = f"resume it with `tkit train --resume {self.path}`, or " if self.is_run() else ""
                raise RunFolderError(
                    f"Run folder {self.path} already exists and is not empty; {hint}start over with --overwrite, "
                    "or choose another run name with --set run.name=NAME."
                )
            if not self.is_run():
                raise RunFolderError(
                    f"Run folder {self.path} exists but is not a translate-kit run (no recipe.toml or checkpoints/); "
                    "refusing to delete it. Choose another run.name or run.dir."
                )
        if not lock:
            return
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"Cannot create the run folder {self.path}: {exc.strerror or exc}.") from None
        self._take_lock()

    def hold(self, *, lock: bool = True) -> None:
        """Take the lock again if this object gave it back (a second `fit` of one trainer)."""
        if lock and self._lock is None:
            self._take_lock()

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks; the folder checks above still apply
            return
        handle = open(self.path / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"Run folder {self.path} is in use: another training process (PID {holder}) holds its lock "
                f"({self.path / LOCK_NAME}). Wait for it to finish or stop it (Ctrl-C, or `kill {holder}` saves a "
                "checkpoint), or train under another name with --set run.name=NAME."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        """Give the lock back (the process's end does the same)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def abandon(self) -> None:
        """Release the lock and, if `claim` created the folder and nothing else was written, remove
        it: a run that failed before it started leaves nothing behind."""
        self.release()
        if self._created and self.path.is_dir() and {p.name for p in self.path.iterdir()} <= {LOCK_NAME}:
            shutil.rmtree(self.path, ignore_errors=True)

    def prepare(self, *, fresh: bool, recipe_text: str, skipped: Sequence[tuple[str, str]]) -> None:
        """Empty the folder of a run being started over (`fresh`), then write the resolved recipe
        and the list of skipped inputs."""
        if fresh:
            for entry in self.path.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        tmp = self.path / ".recipe.toml.tmp"
        tmp.write_text(recipe_text, encoding="utf-8")
        tmp.replace(self.path / "recipe.toml")  # on resume, --set overrides are recorded too
        listed = self.path / "skipped_inputs.txt"
        if skipped:
            listed.write_text("".join(f"{name}\t{reason}\n" for name, reason in skipped), encoding="utf-8")
        else:  # a resumed run whose data is whole again
            listed.unlink(missing_ok=True)

    def save_samples(
        self, epoch: int, names: Sequence[str], inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> None:
        """Write one epoch's outputs, and the inputs and targets the first time."""
        for i, name in enumerate(names):
            save_png(outputs[i].float(), self.samples / f"epoch_{epoch:04d}" / f"{name}.png")
            for image, folder in ((inputs[i], "input"), (targets[i], "target")):
                path = self.samples / folder / f"{name}.png"
                if not path.exists():
                    save_png(image.float(), path)

    def write_page(
        self,
        names: Sequence[str],
        *,
        title: str,
        summary: Mapping[str, str],
        history: Sequence[Mapping[str, Any]],
        recipe_text: str,
        validation: Sequence[Mapping[str, Any]] = (),
    ) -> Path:
        """Refresh `index.html` from the sample images on disk, the logged `history` and the
        `validation` scores."""
        epochs = sorted(int(p.name.split("_")[1]) for p in self.samples.glob("epoch_*") if p.is_dir())
        shown = _spread(epochs, 10)
        rows = [
            SampleRow(name, f"samples/input/{name}.png", f"samples/target/{name}.png",
                      [(e, f"samples/epoch_{e:04d}/{name}.png") for e in shown])
            for name in names
        ]
        return write_run_page(self.path, title=title, summary=summary, rows=rows, history=history,
                              recipe_text=recipe_text, validation=validation)


def _spread(values: list[int], count: int) -> list[int]:
    """Up to `count` values spread evenly over `values`, always keeping the last."""
    if len(values) <= count:
        return values
    picks = {values[round(i * (len(values) - 1) / (count - 1))] for i in range(count)}
    return sorted(picks)


def no_checkpoint_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"Nothing to resume in {path}: it holds no checkpoint. Start the run afresh with "
        "`tkit train RECIPE` (add --overwrite to replace the folder)."
    )
