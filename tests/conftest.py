"""Shared fixtures: translate-kit's own test kit (`translate_kit.testing`: device, dtype,
plugin manager, registry, tiny facades, quick overrides), plus the project's own helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

pytest_plugins = ["translate_kit.testing"]
pytest.register_assert_rewrite("translate_kit.testing")  # its checks' asserts explain themselves

from translate_kit.testing import quick_overrides  # noqa: E402, F401 - re-exported for the tests

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
def pm(tkit_pm):
    """translate-kit's own plugins only: an unrelated installed plugin cannot change the results."""
    return tkit_pm


@pytest.fixture(scope="session")
def registry(tkit_registry):
    return tkit_registry


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
