"""Every registered component and every shipped recipe against the contract checks that
`translate_kit.testing` ships to plugin authors (timm's test_models pattern): a new component or
recipe is tested with no new test code."""

from __future__ import annotations

import pytest
import torch
from conftest import RECIPES

from translate_kit.plugins import get_plugin_manager
from translate_kit.registry import Registry
from translate_kit.testing import (
    _toml,
    check_discriminator,
    check_generator,
    check_loss,
    check_method,
    check_segmenter,
    first_party_plugin_manager,
)

# Collected once at import, from translate-kit's own plugins only (the same set as the tkit_pm fixture).
_REGISTRY = Registry.from_plugin_manager(first_party_plugin_manager())
RECIPE_FILES = sorted(RECIPES.glob("*.toml"))


def names(kind: str) -> list[str]:
    return _REGISTRY.names(kind)


@pytest.mark.parametrize("name", names("generator"))
def test_generator_contract(name, registry, device, dtype):
    check_generator(registry, name, device=device, dtype=dtype)


@pytest.mark.parametrize("name", names("discriminator"))
def test_discriminator_contract(name, registry, device, dtype):
    check_discriminator(registry, name, device=device, dtype=dtype)


@pytest.mark.parametrize("name", names("segmenter"))
def test_segmenter_contract(name, registry, device, dtype):
    check_segmenter(registry, name, device=device, dtype=dtype)


@pytest.mark.parametrize("name", names("loss"))
def test_loss_contract(name, registry, device):
    check_loss(registry, name, device=device)


def stand_ins(path) -> tuple[str, list[str]]:
    """What a recipe's real settings need that the test machine lacks, replaced: its data (the
    tiny facades; super-resolution recipes take the 128-pixel ones as high-resolution images, big
    enough for a discriminator's 96-pixel patches), the run its GAN stage starts from, and VGG19's
    weights file (random weights)."""
    import tomllib

    tables = tomllib.loads(path.read_text())
    data, method = tables["data"], tables["method"]
    fixture, overrides = "tiny_facades", []
    if data.get("dataset") == "sr_images":
        fixture = "tiny_sr_images"
        overrides.append('data.split="train"')
    if data.get("dataset") == "label_maps" and data.get("layout") == "folders":
        fixture = "tiny_label_folders"
    if data.get("dataset") == "domain_folders":
        fixture = "tiny_domain_folders"
    if data.get("dataset") == "celeba_attributes":
        fixture = "tiny_celeba_attributes"
        overrides += ["data.test_images=2", "data.num_workers=0"]  # six rows: four for training; no worker processes
    if data.get("dataset") == "video_frames":  # whole 4-frame clips, one temporal scale (tests/test_vid2vid.py: more)
        fixture = "tiny_video"
        overrides += ["data.clip_length=4", "method.clip_double_every=0", "method.temporal_scales=1"]
    if method.get("init_from"):
        overrides.append('method.init_from=""')
    for key, options in method.items():
        if isinstance(options, dict) and options.get("weights"):
            kept = [f"{k} = {_toml(v)}" for k, v in options.items() if k != "weights"]
            overrides.append(f"method.{key}={{ {', '.join([*kept, 'allow_random = true'])} }}")
    return fixture, overrides


@pytest.fixture(scope="session")
def tiny_label_folders(tmp_path_factory):
    """root/train/{labels,images,instances}: four 40-pixel index maps (ids below 12, so any label_nc
    from 12 up takes them) with their photos and 8-bit instance maps (one instance per class), as
    label_maps' folders layout reads them; recipes without `instances_dir` ignore the instances."""
    from torchvision.io import write_png

    from translate_kit.data.synth import render_facade
    from translate_kit.eval.labels import FACADES, decode_palette

    root = tmp_path_factory.mktemp("tiny_label_folders")
    for folder in ("labels", "images", "instances"):
        (root / "train" / folder).mkdir(parents=True)
    for i in range(4):
        photo, colours = render_facade(i, 40)
        ids = decode_palette(colours, FACADES).to(torch.uint8)[None]
        write_png(ids, str(root / "train" / "labels" / f"{i}.png"))
        write_png(photo, str(root / "train" / "images" / f"{i}.png"))
        write_png(ids * 16 + 1, str(root / "train" / "instances" / f"{i}.png"))
    return root


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory):
    """root/train/{A,B,flow}: two synthetic facades sequences of five 32-pixel frames with their flow,
    the video_frames layout."""
    from translate_kit_plugins.video_data import write_synth_video

    root = tmp_path_factory.mktemp("tiny_video")
    write_synth_video(root, sequences={"train": 2}, frames=5, size=32, source="synthetic", seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_domain_folders(tmp_path_factory):
    """root/train/{photo,labels,edges}: two 36-pixel images per domain, the multi-domain recipes' folders."""
    from torchvision.io import write_png

    root = tmp_path_factory.mktemp("tiny_domain_folders")
    generator = torch.Generator().manual_seed(0)
    for domain in ("photo", "labels", "edges"):
        (root / "train" / domain).mkdir(parents=True)
        for i in range(2):
            write_png(torch.randint(0, 256, (3, 36, 36), dtype=torch.uint8, generator=generator),
                      str(root / "train" / domain / f"{i}.png"))
    return root


@pytest.fixture(scope="session")
def tiny_celeba_attributes(tmp_path_factory):
    """root/list_attr_celeba.txt and root/images/: six 178x218 faces (random pixels) with seven attributes,
    the paper's five among them, as celeba_attributes reads CelebA."""
    from torchvision.io import write_png

    root = tmp_path_factory.mktemp("tiny_celeba_attributes")
    (root / "images").mkdir()
    names = ["Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Smiling", "Young"]
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(6):
        write_png(torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8, generator=generator),
                  str(root / "images" / f"{i:06d}.png"))
        values = [1 if (i + k) % 3 == 0 else -1 for k in range(len(names))]
        rows.append(f"{i:06d}.png " + " ".join(f"{v:2d}" for v in values))
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(rows)), " ".join(names), *rows]) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_sr_images(tmp_path_factory):
    from translate_kit.data.synth import write_synth_facades

    root = tmp_path_factory.mktemp("tiny_sr_images")
    write_synth_facades(root, count=6, size=128, seed=3)
    return root


@pytest.mark.parametrize("path", RECIPE_FILES, ids=[p.stem for p in RECIPE_FILES])
def test_recipe_contract(path, registry, pm, tmp_path, device, request):
    fixture, overrides = stand_ins(path)
    check_method(path, registry, pm, data_root=request.getfixturevalue(fixture), tmp_path=tmp_path, device=device,
                 overrides=overrides)


def test_every_method_has_a_recipe(registry):
    """A method is checked through a recipe that uses it; one without a shipped recipe goes untested."""
    import tomllib

    used = {tomllib.loads(p.read_text())["method"]["name"] for p in RECIPE_FILES}
    assert set(registry.names("method")) <= used


def test_the_suite_sees_translate_kits_own_plugins_only(tmp_path, monkeypatch):
    """An unrelated installed plugin (here: a fake distribution on sys.path) does not reach the
    suite's plugin manager, while an ordinary one does load it."""
    (tmp_path / "stray_plugin.py").write_text(
        "from translate_kit.api import register_generator\n\n"
        "@register_generator()\ndef stray(*, in_channels: int = 3, out_channels: int = 3) -> object:\n"
        "    '''A plugin the suite must not see.'''\n    return None\n"
    )
    info = tmp_path / "stray_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stray-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[translate_kit]\nstray = stray_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "stray" in Registry.from_plugin_manager(get_plugin_manager(disabled=[])).names("generator")
    assert "stray" not in Registry.from_plugin_manager(first_party_plugin_manager()).names("generator")
