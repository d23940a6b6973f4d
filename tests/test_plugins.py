"""Plugins: entry-point discovery (first- and third-party), blocking, every hook, start-up checks."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
from conftest import ROOT, quick_overrides

from translate_kit import hookspecs
from translate_kit.errors import PluginError
from translate_kit.hookspecs import hookimpl
from translate_kit.plugins import get_plugin_manager, plugin_infos
from translate_kit.registry import Registry

EXAMPLE_SRC = ROOT / "examples" / "tkit-example-plugin" / "src"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("translate_kit_"))


def install_fake_distribution(site: Path, name: str, version: str, entry_points: str) -> None:
    """What `pip install` leaves behind for importlib.metadata: a .dist-info folder on sys.path."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def example_plugin(tmp_path, monkeypatch):
    """The example third-party plugin, 'installed' as its own distribution with its entry point."""
    site = tmp_path / "site"
    install_fake_distribution(site, "tkit-example-plugin", "0.1.0", "[translate_kit]\nexample = tkit_example_plugin\n")
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("tkit_example_plugin", None)


def test_first_party_plugins_come_through_the_entry_point_group(pm):
    infos = {info.name: info for info in plugin_infos(pm)}
    for name in ("unet", "patchgan", "gan_losses", "pix2pix", "folder_datasets", "jsonl_log"):
        assert infos[name].distribution == "translate-kit"
        assert infos[name].module == f"translate_kit_plugins.{name}"


def test_third_party_plugin_is_found_through_its_entry_point(example_plugin):
    pm = get_plugin_manager(disabled=[])
    assert pm.distributions["example"] == ("tkit-example-plugin", "0.1.0")
    registry = Registry.from_plugin_manager(pm)
    spec = registry.get("generator", "residual_cnn")
    assert spec.plugin == "example"
    import torch

    net = registry.create("generator", "residual_cnn", width=8, depth=1)
    assert net(torch.zeros(1, 3, 20, 28)).shape == (1, 3, 20, 28)


def test_an_installed_plugin_may_also_be_named_by_a_test(example_plugin):
    """The documented way to test an installed plugin: name its module on top of the autoloaded
    entry points; it is registered once, not refused as registered twice."""
    import tkit_example_plugin

    pm = get_plugin_manager(plugins=[tkit_example_plugin], disabled=[])
    assert pm.get_plugin("example") is tkit_example_plugin
    assert Registry.from_plugin_manager(pm).get("generator", "residual_cnn").plugin == "example"


def test_the_example_plugins_own_tests_pass_with_it_pip_installed(tmp_path):
    """What docs/plugins.md tells a plugin author to write (the example's tests/), run for real:
    the example plugin pip-installed (into a folder of its own, not this environment), then its
    tests with translate-kit's test kit, in a fresh process."""
    import os
    import shutil
    import subprocess

    example = tmp_path / "tkit-example-plugin"  # a copy: building writes build/ beside the sources
    shutil.copytree(ROOT / "examples" / "tkit-example-plugin", example)
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), str(example)], capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(site), "TRANSLATE_KIT_DISABLE_PLUGINS": ""}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(example / "tests"),
         "-c", os.devnull, str(example / "tests")], capture_output=True, text=True, env=env, timeout=600,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "3 passed" in tests.stdout


def test_the_documented_plugin_test_is_the_example_plugins_test():
    """docs/plugins.md shows the example's test file verbatim, so the documented test is run."""
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    example = ROOT / "examples" / "tkit-example-plugin" / "tests"
    for name in ("conftest.py", "test_example_plugin.py"):
        assert (example / name).read_text(encoding="utf-8") in docs, f"docs/plugins.md does not show tests/{name}"


def test_disabled_plugins_are_not_even_imported(example_plugin, monkeypatch):
    monkeypatch.setenv("TRANSLATE_KIT_DISABLE_PLUGINS", "example, jsonl_log")
    pm = get_plugin_manager()
    assert pm.get_plugin("example") is None and pm.get_plugin("jsonl_log") is None
    assert "tkit_example_plugin" not in sys.modules
    assert "residual_cnn" not in Registry.from_plugin_manager(pm).names("generator")


def test_broken_plugin_names_its_entry_point_and_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_fake_distribution(site, "broken-plugin", "9.9", "[translate_kit]\nbroken = no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    message = str(info.value)
    assert "'broken'" in message and "broken-plugin 9.9" in message and "TRANSLATE_KIT_DISABLE_PLUGINS=broken" in message


def test_misspelt_hook_fails_at_start_up():
    class Typo:
        @hookimpl
        def translate_kit_train_logg(self, step):
            pass

    with pytest.raises(PluginError, match="translate_kit_train_logg"):
        get_plugin_manager(autoload=False, plugins=[Typo()])


def test_plugins_dir_modules_are_plugins(tmp_path):
    import pickle

    (tmp_path / "my_gen.py").write_text(
        "from translate_kit.registry import register_generator\n"
        "@register_generator()\n"
        "def my_gen(*, size: int = 1):\n"
        "    return size\n"
    )
    pm = get_plugin_manager(autoload=False, plugins_dir=tmp_path)
    spec = Registry.from_plugin_manager(pm).get("generator", "my_gen")
    assert spec.plugin == "my_gen"
    assert pickle.loads(pickle.dumps(spec.factory)) is spec.factory  # DataLoader workers may need this
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="broken.py failed to import: RuntimeError: boom"):
        get_plugin_manager(autoload=False, plugins_dir=tmp_path)
    assert "translate_kit_plugins_dir.broken" not in sys.modules


def test_hook_translate_kit_register_components():
    from translate_kit.registry import register_generator

    @register_generator("made_at_run_time")
    def factory(*, width: int = 2):
        return width

    class Dynamic:
        @hookimpl
        def translate_kit_register_components(self):
            return [factory]

    registry = Registry.from_plugin_manager(get_plugin_manager(autoload=False, plugins=[Dynamic()]))
    assert registry.create("generator", "made_at_run_time", width=5) == 5


def test_hook_translate_kit_recipe_dirs(example_plugin):
    from translate_kit.cli.common import find_recipe, recipe_dirs

    pm = get_plugin_manager(disabled=[])
    assert ("example", EXAMPLE_SRC / "tkit_example_plugin" / "recipes") in recipe_dirs(pm)
    assert find_recipe("example_residual", pm).name == "example_residual.toml"


def test_hook_translate_kit_add_commands(example_plugin, capsys):
    from translate_kit.cli import main

    with pytest.raises(SystemExit) as info:
        main(["example-info"])
    assert info.value.code == 0
    assert "generator residual_cnn" in capsys.readouterr().out


DATA_PLUGIN = """
import typer
from translate_kit.api import hookimpl

@hookimpl
def translate_kit_add_data_commands(data):
    @data.command("make-toy")
    def make_toy(count: int = 2):
        \"\"\"Write a toy dataset.\"\"\"
        typer.echo(f"made {count} toys")
"""


def test_hook_translate_kit_add_data_commands(tmp_path, capsys):
    """A plugin adds `tkit data NAME` beside the built-in data commands, listed in `tkit data --help`
    and `tkit plugins list`; a built-in data command does not load plugins."""
    from translate_kit.cli import _wants_plugin_commands, main

    (tmp_path / "toy_data.py").write_text(DATA_PLUGIN)
    for args, shown in ((["data", "make-toy", "--count", "3"], "made 3 toys"), (["data", "--help"], "make-toy"),
                        (["plugins", "list"], "data make-toy")):
        with pytest.raises(SystemExit) as info:
            main(["--plugins-dir", str(tmp_path), *args])
        assert info.value.code == 0
        assert shown in capsys.readouterr().out
    assert not _wants_plugin_commands(["data", "download"]) and not _wants_plugin_commands(["train"])
    assert _wants_plugin_commands(["data"]) and _wants_plugin_commands(["data", "make-toy"])


class Recorder:
    """Records every run event with its arguments."""

    def __init__(self):
        self.events = []

    @hookimpl
    def translate_kit_run_start(self, trainer):
        self.events.append(("run_start", trainer.state.step))

    @hookimpl
    def translate_kit_train_log(self, trainer, step, epoch, scalars):
        self.events.append(("train_log", step, epoch, sorted(k for k in scalars if k.startswith("loss"))))

    @hookimpl
    def translate_kit_validation(self, trainer, step, epoch, scores):
        self.events.append(("validation", step, epoch, sorted(scores), trainer.validation.best["step"]))

    @hookimpl
    def translate_kit_epoch_end(self, trainer, epoch, scalars):
        self.events.append(("epoch_end", epoch, sorted(scalars)))

    @hookimpl
    def translate_kit_checkpoint_saved(self, trainer, path, step):
        self.events.append(("checkpoint_saved", path.name, step, path.is_file()))

    @hookimpl
    def translate_kit_run_end(self, trainer, status):
        self.events.append(("run_end", status))


def test_hook_run_events_in_order(registry, tiny_facades, tmp_path):
    """translate_kit_run_start, translate_kit_train_log, translate_kit_validation,
    translate_kit_epoch_end, translate_kit_checkpoint_saved and translate_kit_run_end, with their
    arguments."""
    from translate_kit.recipe import load_recipe
    from translate_kit.train.trainer import Trainer

    recorder = Recorder()
    pm = get_plugin_manager(autoload=False, plugins=[recorder])
    overrides = quick_overrides(tiny_facades, tmp_path, steps=0) + [
        "generator.name=unet", "generator.num_downs=5", "generator.ngf=8", "discriminator.ndf=8",
        "train.epochs=1", "train.decay_epochs=0", "train.log_every=2", "train.checkpoint_every=1",
        "train.eval_every=4", "train.eval_split=test",
    ]
    recipe = load_recipe(ROOT / "recipes" / "pix2pix_facades.toml", overrides, registry=registry)
    Trainer(recipe, registry=registry, pm=pm, device="cpu").fit()
    losses = ["loss_D_fake", "loss_D_real", "loss_G_GAN", "loss_G_L1"]
    assert recorder.events == [
        ("run_start", 0),
        ("train_log", 2, 0, losses),
        ("train_log", 4, 0, losses),
        ("validation", 4, 0, ["epoch", "l1", "mse", "psnr", "ssim", "step"], 4),
        ("epoch_end", 0, losses),
        ("checkpoint_saved", "step_000000004.pt", 4, True),
        ("run_end", "completed"),
    ]


def test_every_hook_is_tested_and_documented():
    tests = Path(__file__).read_text()
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert hook in tests, f"{hook} has no test here"
        assert hook in docs, f"{hook} is not documented in docs/plugins.md"


def test_every_hookspec_is_typed_and_documented():
    for hook in HOOKS:
        fn = getattr(hookspecs, hook)
        assert inspect.getdoc(fn), hook
        assert all(p.annotation is not inspect.Parameter.empty for p in inspect.signature(fn).parameters.values())
