"""Shared fixtures: plugin manager, registry, tiny image folders, quick recipe overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
FACADES = ROOT.parent / "shared" / "data" / "facades"

# Keep the suite fast and deterministic on 2 cores.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pm():
    from translate_kit.plugins import get_plugin_manager

    return get_plugin_manager(disabled=[])


@pytest.fixture(scope="session")
def registry(pm):
    from translate_kit.registry import Registry

    return Registry.from_plugin_manager(pm)


def make_structured_pair(seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (photo, labels) uint8 pair with blocky structure, so a network has something to learn."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(3, size, size, dtype=torch.uint8)
    labels[2] = 200
    for _ in range(4):
        y, x = torch.randint(0, size - 4, (2,), generator=g).tolist()
        h, w = torch.randint(3, size // 2, (2,), generator=g).tolist()
        colour = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.int64).to(torch.uint8)
        labels[:, y : y + h, x : x + w] = colour
    photo = (255 - labels.float() * 0.7 + torch.rand(3, size, size, generator=g) * 30).clamp(0, 255).to(torch.uint8)
    return photo, labels


def write_aligned(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """Write `count` A|B PNG files of `size`x`size` halves into `folder` (pix2pix layout)."""
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo, labels = make_structured_pair(seed + i, size)
        write_png(torch.cat([photo, labels], dim=2), str(folder / f"{i + 1}.png"))
    return folder


@pytest.fixture(scope="session")
def tiny_facades(tmp_path_factory) -> Path:
    """Synthetic facades in the pix2pix layout (photo | label map in the facades palette), 32x32
    halves: train/ 8 pairs, val/ 1, test/ 1."""
    from translate_kit.data.synth import write_synth_facades

    root = tmp_path_factory.mktemp("tiny_facades")
    write_synth_facades(root, count=10, size=32, seed=7)
    return root


def quick_overrides(root: Path, run_dir: Path, *, steps: int = 2) -> list[str]:
    """--set overrides that shrink any pix2pix-style recipe to a few steps on 32x32 images."""
    return [
        f'data.root="{root.as_posix()}"',
        f'run.dir="{run_dir.as_posix()}"',
        "data.load_size=36",
        "data.crop_size=32",
        "train.batch_size=2",
        f"train.max_steps={steps}",
        "train.log_every=1",
        "train.num_samples=2",
    ]
