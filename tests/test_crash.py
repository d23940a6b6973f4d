"""Crash safety with real processes: `kill -9` of `tkit train` at several moments, including in the
middle of a checkpoint write, always leaves a checkpoint that loads and a run that resumes; SIGTERM
stops cleanly with a resumable checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import RECIPES

from translate_kit.train.checkpoint import checkpoint_paths, load_checkpoint, newest_checkpoint, prune_checkpoints

TINY = [
    "generator.name=unet", "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4", "data.load_size=36", "data.crop_size=32",
    "train.batch_size=1", "train.epochs=1000", "train.decay_epochs=0", "train.checkpoint_every=1",
    "train.sample_every=1000", "train.num_samples=1", "train.log_every=1",
]


def tkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "translate_kit", *args]


def sets(overrides: list[str]) -> list[str]:
    return [part for value in overrides for part in ("--set", value)]


def wait_for(predicate, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"tkit train exited early ({process.returncode}): {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the run to make progress")
        time.sleep(0.01)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_kill_9_at_several_moments_always_leaves_a_resumable_run(tiny_facades, tmp_path):
    run = tmp_path / "runs" / "crash"
    checkpoints = run / "checkpoints"
    overrides = [f'data.root="{tiny_facades.as_posix()}"', f'run.dir="{(tmp_path / "runs").as_posix()}"',
                 "run.name=crash", *TINY]
    first = start(tkit("train", str(RECIPES / "pix2pix_facades.toml"), *sets(overrides)), tmp_path)
    last_step = -1
    # With 8 images per epoch and a checkpoint every epoch the process writes a checkpoint every
    # few hundredths of a second: kills after these delays land in steps and in writes alike.
    for round_, delay in enumerate([0.0, 0.23, 0.05]):
        process = first if round_ == 0 else start(tkit("train", "--resume", str(run)), tmp_path)
        target = len(checkpoint_paths(checkpoints)) + 1 if round_ == 0 else None

        def progressed() -> bool:
            found = checkpoint_paths(checkpoints)
            if target is not None:
                return len(found) >= target
            return bool(found) and int(found[-1].stem.split("_")[1]) > last_step

        wait_for(progressed, process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

        found = newest_checkpoint(checkpoints)
        assert found is not None, f"round {round_}: no loadable checkpoint after kill -9"
        path, state = found
        for other in checkpoint_paths(checkpoints):  # every checkpoint left behind is whole
            load_checkpoint(other)
        step = state["state"]["step"]
        assert step > last_step, f"round {round_}: the resumed run made no progress ({step} <= {last_step})"
        last_step = step

    # After the last kill the run still finishes from where it was.
    final = subprocess.run(tkit("train", "--resume", str(run), *sets([f"train.max_steps={last_step + 3}"])),
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    newest = checkpoint_paths(checkpoints)[-1]
    assert load_checkpoint(newest)["state"]["step"] == last_step + 3
    assert not list(checkpoints.glob(".*.tmp")), "temporary files of killed writes are cleaned up"
    assert len(checkpoint_paths(checkpoints)) <= 3  # train.keep_checkpoints


HALF_WRITE = textwrap.dedent(
    """
    import io, sys, time, torch
    from translate_kit.train import checkpoint

    real_save = torch.save

    def half_save(obj, handle, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        print("half written", flush=True)
        time.sleep(120)  # killed here, half-way through the file

    torch.save = half_save
    checkpoint.atomic_save({"format": checkpoint.FORMAT, "version": 1, "weights": torch.ones(500_000)}, sys.argv[1])
    """
)


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_file(tmp_path):
    folder = tmp_path / "checkpoints"
    target = folder / "step_000000002.pt"
    previous = folder / "step_000000001.pt"
    from translate_kit.train.checkpoint import FORMAT, atomic_save

    atomic_save({"format": FORMAT, "version": 1, "weights": torch.zeros(3)}, previous)
    atomic_save({"format": FORMAT, "version": 1, "weights": torch.full((3,), 7.0)}, target)
    process = subprocess.Popen([sys.executable, "-c", HALF_WRITE, str(target)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "half written"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    leftovers = list(folder.glob(".*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the half-written file
    assert checkpoint_paths(folder) == [previous, target]  # the temporary file is never taken for a checkpoint
    path, state = newest_checkpoint(folder)
    assert path == target and torch.equal(state["weights"], torch.full((3,), 7.0))  # the old contents, whole
    prune_checkpoints(folder, keep=3)
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "zero"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    from translate_kit.train.checkpoint import FORMAT, atomic_save

    old, new = tmp_path / "step_000000001.pt", tmp_path / "step_000000002.pt"
    atomic_save({"format": FORMAT, "version": 1, "step": 1}, old)
    atomic_save({"format": FORMAT, "version": 1, "step": 2}, new)
    data = new.read_bytes()
    new.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"")
    path, state = newest_checkpoint(tmp_path)
    assert path == old and state["step"] == 1


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_facades, tmp_path):
    overrides = [f'data.root="{tiny_facades.as_posix()}"', f'run.dir="{(tmp_path / "runs").as_posix()}"',
                 "run.name=term", *TINY, "train.checkpoint_every=1000"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    process = subprocess.Popen(tkit("train", str(RECIPES / "pix2pix_facades.toml"), *sets(overrides)), cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # wait until training has begun
        lines.append(line)
        if line.startswith("Training"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    output = "".join(lines) + process.stdout.read()
    assert process.wait(timeout=60) == 130, output
    assert "tkit train --resume" in output and "Traceback" not in output
    checkpoint = newest_checkpoint(tmp_path / "runs" / "term" / "checkpoints")
    assert checkpoint is not None and checkpoint[1]["state"]["step"] > 0


def test_pruning_after_a_fallback_keeps_the_new_checkpoint_and_sets_the_unreadable_one_aside(tmp_path):
    from translate_kit.train.checkpoint import FORMAT, atomic_save

    good, corrupt = tmp_path / "step_000001000.pt", tmp_path / "step_000002000.pt"
    atomic_save({"format": FORMAT, "version": 1, "step": 1000}, good)
    corrupt.write_bytes(b"damaged")
    path, _ = newest_checkpoint(tmp_path)
    assert path == good  # the resume falls back ...
    new = tmp_path / "step_000001500.pt"
    atomic_save({"format": FORMAT, "version": 1, "step": 1500}, new)  # ... and writes its next checkpoint
    prune_checkpoints(tmp_path, keep=1, newest=new)
    assert checkpoint_paths(tmp_path) == [new]
    assert (tmp_path / "step_000002000.pt.unreadable").read_bytes() == b"damaged"  # kept for inspection
