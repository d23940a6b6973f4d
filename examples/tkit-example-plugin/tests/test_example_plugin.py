"""The example plugin's own tests, written with translate-kit's test kit, as a plugin author would.

Run them with the plugin installed beside translate-kit:

    pip install ./examples/tkit-example-plugin
    python -m pytest examples/tkit-example-plugin/tests          # --device cuda on a GPU
"""

from pathlib import Path

import pytest

import tkit_example_plugin
from translate_kit.registry import Registry
from translate_kit.testing import check_generator, check_method, first_party_plugin_manager

RECIPE = Path(tkit_example_plugin.__file__).parent / "recipes" / "example_residual.toml"


@pytest.fixture(scope="module")
def pm():
    # translate-kit's own plugins and this distribution's, found through its entry point as
    # installed; no other installed plugin can change the results.
    return first_party_plugin_manager("tkit-example-plugin")


@pytest.fixture(scope="module")
def registry(pm):
    return Registry.from_plugin_manager(pm)


def test_found_through_its_entry_point(pm, registry):
    assert pm.distributions["example"][0] == "tkit-example-plugin"
    assert registry.get("generator", "residual_cnn").plugin == "example"


def test_the_generator_meets_the_contract(registry, device, dtype):
    check_generator(registry, "residual_cnn", device=device, dtype=dtype)


def test_the_recipe_trains_resumes_and_translates(pm, registry, tiny_facades, tmp_path, device):
    check_method(RECIPE, registry, pm, data_root=tiny_facades, tmp_path=tmp_path, device=device)
    assert (tmp_path / "straight" / "example_residual" / "losses.csv").is_file()  # the plugin's logger ran
