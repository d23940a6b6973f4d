"""Every docstring example in the core and the first-party plugins runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import translate_kit_plugins

import translate_kit

SKIP = {"translate_kit.__main__"}  # running it would start the CLI


def modules():
    for package in (translate_kit, translate_kit_plugins):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if info.name not in SKIP:
                yield info.name


@pytest.mark.parametrize("name", sorted(modules()))
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
