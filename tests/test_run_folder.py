"""Run-folder safety under concurrency and full disks: a second trainer on a locked folder stops
with the holder's PID; a checkpoint that does not fit on the disk is one error paragraph, the
previous checkpoint stays intact, no temporary file is left, and the run resumes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch
from conftest import RECIPES, quick_overrides

from translate_kit.errors import CheckpointError, RunFolderError
from translate_kit.train.checkpoint import atomic_save, checkpoint_paths, load_checkpoint
from translate_kit.train.run_folder import LOCK_NAME, RunFolder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks")


def tkit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "TRANSLATE_KIT_DISABLE_PLUGINS": ""}
    return subprocess.run([sys.executable, "-m", "translate_kit", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_a_second_process_on_a_locked_run_folder_stops_with_the_holders_pid(tiny_facades, tmp_path):
    holder = RunFolder(tmp_path / "quickstart")
    holder.claim(resume=False, overwrite=False)  # this process trains there (it holds the lock)
    overrides = [*quick_overrides(tiny_facades, tmp_path), "generator.num_downs=5"]
    args = ["train", str(RECIPES / "quickstart.toml"), *[x for o in overrides for x in ("--set", o)], "--device", "cpu"]
    result = tkit(*args)
    assert result.returncode == 1, result.stderr
    message = " ".join(result.stderr.split())
    assert f"Run folder {tmp_path / 'quickstart'} is in use: another training process (PID {os.getpid()})" in message
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "quickstart").iterdir()) == [LOCK_NAME]  # nothing written

    holder.release()  # the holder ends: the folder is free again
    assert tkit(*args).returncode == 0


def test_the_lock_goes_with_its_process(tmp_path):
    """The kernel releases the lock of a process that dies, whatever kills it."""
    code = ("import sys, os; from translate_kit.train.run_folder import RunFolder; "
            "RunFolder(sys.argv[1]).claim(resume=False, overwrite=False); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], check=True, timeout=60)
    RunFolder(tmp_path / "run").claim(resume=True, overwrite=False)  # free again


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_run_resumes(tiny_facades, tmp_path, monkeypatch, capsys):
    import translate_kit.train.checkpoint as checkpoint
    from translate_kit.cli import main

    real_save = torch.save
    calls = []

    def save_until_full(obj, handle, *args, **kwargs):  # the second checkpoint meets a full disk
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_full)
    overrides = [*quick_overrides(tiny_facades, tmp_path, steps=0), "generator.num_downs=5", "train.batch_size=4",
                 "train.epochs=2",
                 "train.decay_epochs=0", "train.max_steps=0", "train.checkpoint_every=1"]  # 8 images: 2 steps an epoch, a checkpoint each
    args = ["train", str(RECIPES / "quickstart.toml"), *[x for o in overrides for x in ("--set", o)], "--device", "cpu"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    run = tmp_path / "quickstart"
    assert f"Cannot write {run / 'checkpoints' / 'step_000000004.pt'}: the disk is full." in err
    assert "MiB free and the file needs about" in err and "The previous file is intact" in err
    assert f"tkit train --resume {run}" in err and "Traceback" not in err
    assert [p.name for p in checkpoint_paths(run / "checkpoints")] == ["step_000000002.pt"]
    assert load_checkpoint(run / "checkpoints" / "step_000000002.pt")["state"]["step"] == 2
    assert not list((run / "checkpoints").glob(".*.tmp"))

    monkeypatch.setattr(checkpoint.torch, "save", real_save)  # space freed
    with pytest.raises(SystemExit) as stop:
        main(["train", "--resume", str(run), "--device", "cpu"])
    assert stop.value.code in (0, None)
    assert [p.name for p in checkpoint_paths(run / "checkpoints")][-1] == "step_000000004.pt"


def test_an_oserror_from_the_disk_is_a_checkpoint_error(tmp_path, monkeypatch):
    import translate_kit.train.checkpoint as checkpoint

    target = tmp_path / "step.pt"
    atomic_save({"v": torch.ones(2)}, target)

    def no_space(obj, handle, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", no_space)
    with pytest.raises(CheckpointError, match=r"the disk is full\. .* has \d+ MiB free"):
        atomic_save({"v": torch.zeros(2)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["step.pt"]


def test_a_folder_that_is_not_a_run_is_never_claimed(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not a translate-kit run"):
        RunFolder(tmp_path).claim(resume=False, overwrite=True)
    assert (tmp_path / "notes.txt").exists() and not (tmp_path / LOCK_NAME).exists()


def test_a_run_trained_with_a_relative_data_root_evaluates_translates_and_resumes_from_elsewhere(
    tiny_facades, tmp_path, monkeypatch
):
    """The quickstart's `data.root = "data/synth_facades"` is relative to where training started; the
    run keeps it absolute (and the text as given), so later commands work from any directory."""
    import shutil

    from typer.testing import CliRunner

    from translate_kit.cli import make_app

    def tkit_in(folder, *args: str):  # noqa: ANN202
        monkeypatch.chdir(folder)
        return CliRunner().invoke(make_app(), [*args, "--device", "cpu"])

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    shutil.copytree(tiny_facades, project / "data" / "facades")
    elsewhere.mkdir()
    overrides = [*quick_overrides(project / "data" / "facades", project / "runs"), 'data.root="data/facades"',
                 'run.dir="runs"', "generator.num_downs=5"]
    train = tkit_in(project, "train", str(RECIPES / "quickstart.toml"), *[x for o in overrides for x in ("--set", o)])
    assert train.exit_code == 0, train.output
    run = project / "runs" / "quickstart"
    header = (run / "recipe.toml").read_text()
    assert f"# data.root as given: 'data/facades', from {project}" in header
    assert f'root = "{project / "data" / "facades"}"' in header

    evaluated = tkit_in(elsewhere, "eval", str(run), "--limit", "2", "--no-images")
    assert evaluated.exit_code == 0 and "psnr" in evaluated.output, evaluated.output
    translated = tkit_in(elsewhere, "translate", str(run), str(project / "data" / "facades" / "test"), "--out", "out")
    assert translated.exit_code == 0 and any((elsewhere / "out").iterdir()), translated.output
    resumed = tkit_in(elsewhere, "train", "--resume", str(run), "--set", "train.max_steps=3")
    assert resumed.exit_code == 0, resumed.output
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt"))[-1] == "step_000000003.pt"
    assert not (elsewhere / "runs").exists()
