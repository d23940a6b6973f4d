"""The command line: help, errors as one paragraph with exit 1, train/resume, plugins, recipes, data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import RECIPES, quick_overrides
from typer.testing import CliRunner

from translate_kit.cli import make_app

TINY = ["--set", "generator.name=unet", "--set", "generator.num_downs=5", "--set", "generator.ngf=8",
        "--set", "discriminator.ndf=8"]


@pytest.fixture(scope="module")
def app():
    return make_app(plugin_commands=True)


def invoke(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.output


def sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def test_help_imports_neither_torch_nor_plugins():
    code = (
        "import sys\n"
        "from translate_kit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print(json.dumps(sorted(m for m in ('torch', 'translate_kit_plugins') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", [[], ["train"], ["data"], ["data", "download"], ["data", "synth-facades"],
                                     ["plugins", "list"], ["recipes"], ["recipes", "show"]])
def test_help_everywhere(app, command):
    result, output = invoke(app, *command, "--help")
    assert result.exit_code == 0 and "Usage" in output


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["generator.ngff=4"], "unknown key 'ngff' for generator 'unet'"),
        (["generator.name=unet265"], "Unknown generator 'unet265'"),
        (["train.epochs=lots"], "expected int, got 'lots'"),
        (["data.root=/nonexistent/facades"], "does not exist"),
        (["data.crop_size=48", "data.load_size=48"], "crop_size 48 gives network G (UNetGenerator) inputs of 48 pixels"),
    ],
)
def test_user_errors_are_one_paragraph_exit_1_no_traceback(app, tmp_path, tiny_facades, overrides, expected):
    base = quick_overrides(tiny_facades, tmp_path)
    result, output = invoke(app, "train", RECIPES / "pix2pix_facades.toml", *TINY, *sets(base + overrides))
    assert result.exit_code == 1, output
    assert expected in output and "Error:" in output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception


def test_unreadable_image_is_a_clear_error(app, tmp_path, tiny_facades):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_facades, root)
    (root / "train" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result, output = invoke(app, "train", RECIPES / "pix2pix_facades.toml", *TINY,
                            *sets(quick_overrides(root, tmp_path / "runs")))
    assert result.exit_code == 1 and "Cannot decode image" in output and "3.png" in output


def test_train_then_resume_from_the_command_line(app, tmp_path, tiny_facades):
    overrides = quick_overrides(tiny_facades, tmp_path) + ["train.epochs=1", "train.decay_epochs=1"]
    result, output = invoke(app, "train", "pix2pix_facades", *TINY, *sets(overrides))
    assert result.exit_code == 0, output
    run = tmp_path / "pix2pix_facades"
    assert "Done at step 2" in output and (run / "index.html").is_file()

    result, output = invoke(app, "train", "pix2pix_facades", *TINY, *sets(overrides))
    assert result.exit_code == 1 and "already exists" in output and "--resume" in output

    result, output = invoke(app, "train", "--resume", run, "--set", "train.max_steps=5")
    assert result.exit_code == 0, output
    assert "Resuming" in output and "Done at step 5" in output
    steps = [json.loads(line)["step"] for line in (run / "losses.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    # Not a terminal (CliRunner, like a CI log or nohup): progress as plain lines, not nothing.
    assert "train: 2/5 (40%)" in output and "5/5 (100%)" in output


def test_progress_lines_where_output_is_not_a_terminal():
    """A line when a task starts, one at each stats update (training logs every train.log_every
    steps), else at most every `every` seconds, one when it ends; the time left is estimated from
    the steps done in this process (a resumed run starts part way)."""
    import io
    import time

    from rich.console import Console

    from translate_kit.progress import LineProgress, make_progress

    out = io.StringIO()
    console = Console(file=out, width=300)
    assert isinstance(make_progress(console), LineProgress)
    assert not isinstance(make_progress(Console(file=io.StringIO(), force_terminal=True)), LineProgress)
    with LineProgress(console, every=0.05) as progress:
        task = progress.add_task("train", total=100, completed=50, stats="")
        time.sleep(0.06)
        progress.update(task, description="epoch 2/4", advance=10, stats="G_GAN 0.700")
        progress.advance(task)  # within `every` of the last line: nothing printed
        progress.update(task, advance=1, stats="G_GAN 0.600")  # a log: printed at once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("train: 50/100 (50%), 0:00:00 elapsed") and "left" not in lines[0]
    assert lines[1].startswith("epoch 2/4: 60/100 (60%)") and "left" in lines[1] and lines[1].endswith("G_GAN 0.700")
    assert lines[2].startswith("epoch 2/4: 62/100 (62%)") and lines[2].endswith("G_GAN 0.600")


def test_plugins_list_shows_distributions_and_components(app):
    result, output = invoke(app, "plugins", "list")
    assert result.exit_code == 0
    for text in ("unet", "translate-kit", "generator:unet_256", "discriminator:patchgan_70", "method:pix2pix",
                 "dataset:aligned", "loss:vanilla"):
        assert text in output


def test_recipes_list_and_show(app):
    result, output = invoke(app, "recipes", "list")
    assert result.exit_code == 0 and "pix2pix_facades" in output and "quickstart" in output
    result, output = invoke(app, "recipes", "show", "pix2pix_facades")
    assert result.exit_code == 0 and "lambda_l1 = 100.0" in output
    result, output = invoke(app, "recipes", "show", "pix2pix_facades", "--resolved")
    assert result.exit_code == 0 and "max_steps = 0" in output
    result, output = invoke(app, "recipes", "show", "pix2pix_facade")
    assert result.exit_code == 1 and "Did you mean 'pix2pix_facades'?" in output


def test_console_script_exit_codes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[method\n")
    out = subprocess.run([sys.executable, "-m", "translate_kit", "train", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "is not valid TOML" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "translate_kit", "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 2 and "No such command" in out.stderr


def test_recipes_list_survives_a_malformed_recipe(app, tmp_path, monkeypatch):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "odd.toml").write_text('method = "pix2pix"\n')
    (tmp_path / "recipes" / "latin1.toml").write_bytes(b"# caf\xe9\n")
    monkeypatch.chdir(tmp_path)
    result, output = invoke(app, "recipes", "list")
    assert result.exit_code == 0, output
    assert "odd" in output and "latin1" in output and "invalid TOML" in output
