"""Packaging: the wheel builds without a build-backend warning and ships what the tools read.

setuptools announced that the `license = { text = ... }` table stops working on 2027-02-18; a
warning from the backend today is a broken `make demo` on a fresh machine tomorrow, so any
warning fails this test. The wheel is built from a copy of the sources, so the test writes no
`build/` or `*.egg-info` into the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "translate_kit", "plugins", "recipes")


def test_wheel_builds_without_backend_warnings_and_ships_licence_page_and_recipes(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--verbose", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    warnings = [line for line in output.splitlines() if "Warning" in line or "deprecat" in line.lower()]
    assert not warnings, "\n".join(warnings)

    (wheel,) = (tmp_path / "dist").glob("translate_kit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for page_file in ("index.html", "app.js", "style.css"):  # `tkit serve` reads them as package data
        assert f"translate_kit/serve/static/{page_file}" in names
    shipped = {Path(n).name for n in names if n.startswith("translate_kit_recipes/")}
    assert {p.name for p in (ROOT / "recipes").glob("*.toml")} <= shipped
