"""`tkit export`: safetensors weights that `tkit translate` accepts, and ONNX graphs that match PyTorch."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import RECIPES, quick_overrides
from typer.testing import CliRunner

from translate_kit.cli import make_app
from translate_kit.errors import CheckpointError, ExportError
from translate_kit.export import export_model
from translate_kit.inference import Translator
from translate_kit.recipe import load_recipe
from translate_kit.train.checkpoint import EXPORT_FORMAT, load_export
from translate_kit.train.trainer import Trainer

TINY = ["generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8"]


def train(registry, pm, root, out, recipe="pix2pix_facades.toml", extra=()):
    recipe = load_recipe(RECIPES / recipe, quick_overrides(root, out) + list(extra), registry=registry)
    trainer = Trainer(recipe, registry=registry, pm=pm, device="cpu")
    trainer.fit()
    return trainer.run_dir


@pytest.fixture(scope="module")
def run(registry, pm, tiny_facades, tmp_path_factory):
    return train(registry, pm, tiny_facades, tmp_path_factory.mktemp("export_runs"), extra=TINY)


def images(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_safetensors_export_holds_only_the_generator_and_translates_identically(run, registry, tmp_path):
    written = export_model(run, tmp_path / "m.safetensors", registry=registry)
    assert [p.name for p in written] == ["m.safetensors", "m.safetensors.json"]
    description = json.loads(written[1].read_text())
    assert description["format"] == EXPORT_FORMAT and description["nets"] == ["G"]
    assert description["input"]["channels"] == 3 and description["input"]["size_multiple"] == 32
    loaded = load_export(written[0])
    original = Translator.from_checkpoint(run, device="cpu", registry=registry)
    assert set(loaded.nets) == {"G"}
    assert loaded.nets["G"].keys() == original.method.nets["G"].state_dict().keys()
    # The export is a fraction of the checkpoint: no discriminator, no optimiser state.
    checkpoint = next((run / "checkpoints").glob("step_*.pt"))
    assert written[0].stat().st_size < checkpoint.stat().st_size / 2

    batch = images(0, (2, 3, 45, 70))
    expected = original(batch)
    for path in (written[0], written[1]):  # either file of the pair names the export
        exported = Translator.from_checkpoint(path, device="cpu", registry=registry)
        assert torch.equal(exported(batch), expected)
        assert exported.step == original.step


def test_export_folder_and_cli_round_trip(run, tmp_path):
    app = make_app()
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "exp" / "model.safetensors")])
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output
    source = tmp_path / "in"
    source.mkdir()
    from torchvision.io import write_png

    write_png(images(1, (3, 40, 50)), str(source / "a.png"))
    result = CliRunner().invoke(app, ["translate", str(tmp_path / "exp"), str(source), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "a.png").is_file()


def test_bad_exports_are_clear_errors(run, registry, tmp_path):
    with pytest.raises(ExportError, match="should end in .safetensors"):
        export_model(run, tmp_path / "m.bin", registry=registry)
    written = export_model(run, tmp_path / "m.safetensors", registry=registry)
    written[0].write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="Cannot load the weights"):
        Translator.from_checkpoint(written[0], device="cpu", registry=registry)
    written[1].write_text("{}")
    with pytest.raises(CheckpointError, match="not a translate-kit export"):
        Translator.from_checkpoint(written[1], device="cpu", registry=registry)
    written[1].unlink()
    with pytest.raises(CheckpointError, match="description .* is missing"):
        Translator.from_checkpoint(written[0], device="cpu", registry=registry)
    result = CliRunner().invoke(make_app(), ["export", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output


def test_cyclegan_export_holds_g_a_only(registry, pm, tiny_facades, tmp_path):
    run = train(registry, pm, tiny_facades, tmp_path, "cyclegan_facades.toml",
                ["generator.name=resnet", "generator.n_blocks=1", "generator.ngf=4", "discriminator.ndf=4", "method.pool_size=2"])
    written = export_model(run, tmp_path / "c.safetensors", registry=registry)
    assert json.loads(written[1].read_text())["nets"] == ["G_A"]
    batch = images(2, (1, 3, 32, 32))
    exported = Translator.from_checkpoint(written[0], device="cpu", registry=registry)
    assert torch.equal(exported(batch), Translator.from_checkpoint(run, device="cpu", registry=registry)(batch))


def test_onnx_export_matches_pytorch_with_dynamic_sizes(run, registry, tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the optional extra translate-kit[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="checking the graph needs onnxruntime (translate-kit[onnx])")
    written = export_model(run, tmp_path / "m.onnx", fmt="onnx", registry=registry)
    assert json.loads(written[1].read_text())["weights_format"] == "onnx"
    session = ort.InferenceSession(str(written[0]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    translator = Translator.from_checkpoint(run, device="cpu", registry=registry)
    generator = translator.method.nets["G"].eval()
    for seed, shape in enumerate([(1, 3, 32, 32), (3, 3, 64, 96), (2, 3, 160, 32)]):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        (y,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            expected = generator(x)
        torch.testing.assert_close(torch.from_numpy(y), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(CheckpointError, match="onnx export"):
        Translator.from_checkpoint(written[1], device="cpu", registry=registry)


def test_both_formats_side_by_side_and_a_static_graph(run, registry, tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the optional extra translate-kit[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="checking the graph needs onnxruntime (translate-kit[onnx])")
    safetensors = export_model(run, tmp_path / "model.safetensors", registry=registry)
    onnx = export_model(run, tmp_path / "model.onnx", fmt="onnx", registry=registry, dynamic=False, example_size=32)
    assert safetensors[1] != onnx[1]  # each format keeps its own description
    assert Translator.from_checkpoint(tmp_path, device="cpu", registry=registry).step is not None  # the folder
    shape = json.loads(onnx[1].read_text())["input"]["shape"]
    assert shape == [1, 3, 32, 32]
    session = ort.InferenceSession(str(onnx[0]), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"images": torch.zeros(shape).numpy()})
    assert list(y.shape) == shape


def test_an_unwritable_output_is_a_clear_error(run, registry, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="Cannot write"):
        export_model(run, blocker / "m.safetensors", registry=registry)
