"""The bad-input matrix, end to end through the command line: every case is a clear one-paragraph
error with exit status 1 (never a traceback), or a documented conversion, or with
`data.on_error = "skip"` a skip that is reported and listed in the run folder."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import RECIPES, make_structured_pair, quick_overrides
from test_data import _raw_png
from torchvision.io import encode_png, write_jpeg, write_png
from typer.testing import CliRunner

from translate_kit.cli import make_app

TINY = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=4", "discriminator.ndf=4",
        "train.batch_size=1", "train.max_steps=1"]
PIX2PIX = RECIPES / "pix2pix_facades.toml"


@pytest.fixture(scope="module")
def app():
    return make_app()


def invoke(app, *args):
    # Wide enough that rich never breaks a long temporary path inside a word.
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "2000"})
    assert "Traceback" not in result.output
    if result.exit_code not in (0, 1):
        raise AssertionError(f"exit {result.exit_code}: {result.output}") from result.exception
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def train(app, root: Path, runs: Path, *extra: str) -> tuple[int, str]:
    overrides = quick_overrides(root, runs) + TINY + list(extra)
    return invoke(app, "train", PIX2PIX, *[x for o in overrides for x in ("--set", o)])


@pytest.fixture
def data(tiny_facades, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(tiny_facades, root)
    return root


def _truncated(path: Path) -> None:
    path.write_bytes(bytes(encode_png(torch.zeros(3, 32, 64, dtype=torch.uint8)))[:40])


BAD_FILES = {
    "truncated": ("bad.png", _truncated, "Cannot decode image"),
    "zero-byte": ("bad.png", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "text named .jpg": ("bad.jpg", lambda p: p.write_text("not an image"), "Cannot decode image"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_unreadable_image_fails_naming_it_or_is_skipped_and_listed(app, data, tmp_path, case):
    name, damage, message = BAD_FILES[case]
    damage(data / "train" / name)
    code, output = train(app, data, tmp_path / "runs")
    assert code == 1 and message in output and name in output

    code, output = train(app, data, tmp_path / "runs", "data.on_error=skip", "run.name=skipping")
    assert code == 0, output
    assert "Skipped 1 unusable item(s)" in output and name in output
    run = tmp_path / "runs" / "skipping"
    listed = (run / "skipped_inputs.txt").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(str(data / "train" / name)) and message in listed[0]
    record = json.loads((run / "losses.jsonl").read_text().splitlines()[-1])
    assert record["data_skipped"] == 1


def test_every_image_unreadable_with_skip_is_an_error(app, tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "data" / "train" / f"{i}.png").write_bytes(b"")
    code, output = train(app, tmp_path / "data", tmp_path / "runs", "data.on_error=skip")
    assert code == 1 and "Every one of the 3 item(s)" in output and "0.png is empty" in output


def test_non_image_files_are_ignored(app, data, tmp_path):
    (data / "train" / "notes.txt").write_text("labels by hand")
    (data / "train" / ".DS_Store").write_bytes(b"\x00\x01")
    (data / "train" / "subfolder").mkdir()
    code, output = train(app, data, tmp_path / "runs")
    assert code == 0, output


def test_gray_rgba_16_bit_and_odd_width_pairs_are_converted(app, tmp_path):
    train_dir = tmp_path / "data" / "train"
    train_dir.mkdir(parents=True)
    photo, labels = make_structured_pair(1, 32)
    pair = torch.cat([photo, labels], dim=2)
    write_png(pair[:1], str(train_dir / "gray.png"))
    rgba = torch.cat([pair, torch.full((1, 32, 64), 255, dtype=torch.uint8)])
    _raw_png(train_dir / "rgba.png", rgba.permute(1, 2, 0).tolist(), bit_depth=8, colour_type=6)
    deep = (pair[:1].to(torch.int32) * 257).squeeze(0)
    _raw_png(train_dir / "deep.png", [[[v] for v in row] for row in deep.tolist()], bit_depth=16, colour_type=0)
    write_png(torch.cat([photo, photo[:, :, :1], labels], dim=2), str(train_dir / "odd.png"))  # width 65
    code, output = train(app, tmp_path / "data", tmp_path / "runs", "train.max_steps=4")
    assert code == 0, output


def test_gray_recipe_converts_rgb_data(app, data, tmp_path):
    code, output = train(app, data, tmp_path / "runs", "data.in_channels=1", "data.out_channels=1")
    assert code == 0, output


def _paired(root: Path, stems_a: list[str], stems_b: list[str]) -> Path:
    for side, stems in (("A", stems_a), ("B", stems_b)):
        (root / "train" / side).mkdir(parents=True)
        for stem in stems:
            photo, labels = make_structured_pair(len(stem), 36)
            write_jpeg(photo if side == "A" else labels, str(root / "train" / side / f"{stem}.jpg"))
    return root


def test_paired_folders_with_missing_partners(app, tmp_path):
    root = _paired(tmp_path / "data", ["1", "2", "3"], ["1", "2", "4"])
    code, output = train(app, root, tmp_path / "runs", "data.dataset=paired")
    assert code == 1 and "2 file(s)" in output and "no partner" in output and 'data.on_error = "skip"' in output
    code, output = train(app, root, tmp_path / "runs", "data.dataset=paired", "data.on_error=skip", "run.name=p")
    assert code == 0 and "Skipped 2 unusable item(s)" in output, output
    listed = (tmp_path / "runs" / "p" / "skipped_inputs.txt").read_text()
    assert "3.jpg" in listed and "4.jpg" in listed


def test_empty_split(app, tmp_path):
    (tmp_path / "data" / "train").mkdir(parents=True)
    code, output = train(app, tmp_path / "data", tmp_path / "runs")
    assert code == 1 and "holds no A|B image pairs" in output and "data" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[method\nname = 'pix2pix'", "is not valid TOML"),
        ("[train]\nepochs = 'lots'\n", "expected int, got 'lots'"),
        ("[method]\nname = 'pix2pics'\n[data]\nroot = 'x'\n", "Unknown method 'pix2pics'"),
        ("[data]\non_error = 'ignore'\n", "on_error"),
    ],
)
def test_bad_recipes(app, tmp_path, text, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    code, output = invoke(app, "train", recipe)
    assert code == 1 and message in output and "bad.toml" in output


@pytest.fixture(scope="module")
def trained(app, tiny_facades, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("bad_input_runs")
    code, output = train(app, tiny_facades, runs)
    assert code == 0, output
    return runs / "pix2pix_facades"


def test_resume_with_another_architecture(app, trained):
    code, output = invoke(app, "train", "--resume", trained, "--set", "generator.ngf=8")
    assert code == 1 and "does not fit the networks" in output


def test_checkpoint_with_weights_of_another_architecture(app, trained, tmp_path):
    checkpoint = torch.load(next((trained / "checkpoints").glob("step_*.pt")), weights_only=True)
    checkpoint["nets"]["G"] = {k: torch.cat([v, v]) if v.ndim else v for k, v in checkpoint["nets"]["G"].items()}
    torch.save(checkpoint, tmp_path / "other.pt")
    code, output = invoke(app, "translate", tmp_path / "other.pt", trained / "samples" / "input", "--out", tmp_path)
    assert code == 1 and "do not fit the networks" in output


class Payload:
    def __reduce__(self):  # what a malicious pickle does: call a function when loaded
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: torch.save({"model.0.weight": torch.zeros(1)}, p), "not a translate-kit checkpoint"),
        (lambda p: p.write_bytes(pickle.dumps(Payload())), "not a translate-kit checkpoint"),
        (lambda p: torch.save({"x": Payload()}, p), "Cannot load"),
        (lambda p: p.write_text("hello"), "not a translate-kit checkpoint"),
        (lambda p: p.write_bytes(b""), "not a translate-kit checkpoint"),
    ],
    ids=["bare state dict", "pickle", "pickled code in a torch file", "text", "empty"],
)
def test_checkpoints_that_are_not_ours(app, trained, tmp_path, capfd, content, message):
    path = tmp_path / "foreign.pt"
    content(path)
    code, output = invoke(app, "translate", path, trained / "samples" / "input", "--out", tmp_path / "out")
    assert code == 1 and message in output and "foreign.pt" in output
    assert "this must never run" not in output + capfd.readouterr().out


def test_every_torch_load_in_the_code_is_weights_only():
    """Safe loading is a property of the source: no `torch.load` call may unpickle code."""
    import ast

    import translate_kit

    package = Path(translate_kit.__file__).parent
    calls = 0
    for file in [*package.rglob("*.py"), *(package.parent / "plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                calls += 1
                flags = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert flags.get("weights_only") == "True", f"{file}:{node.lineno} calls torch.load without weights_only=True"
    assert calls >= 3  # checkpoints, segmenter and VGG weights at least
