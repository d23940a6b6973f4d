"""Registry: markers, provenance, duplicates, suggestions, signature checks."""

from __future__ import annotations

from typing import Literal

import pytest

from translate_kit.errors import PluginError, RecipeError, UnknownComponentError
from translate_kit.plugins import get_plugin_manager
from translate_kit.registry import Registry, register_generator, register_loss


@register_generator()
def toy_generator(*, width: int = 8, scale: float = 1.0, norm: Literal["batch", "none"] = "batch",
                  sizes: tuple[int, int] = (1, 2)):
    """A toy generator for registry tests."""
    return {"width": width, "scale": scale, "norm": norm, "sizes": sizes}


@register_generator("toy_required")
def _needs_depth(*, depth: int):
    return depth


def make_registry() -> Registry:
    registry = Registry()
    registry.add(toy_generator, plugin="tests")
    registry.add(_needs_depth, plugin="tests")
    return registry


def test_marker_registers_nothing_by_itself():
    assert Registry().names("generator") == []


def test_build_checks_and_coerces_types():
    registry = make_registry()
    built = registry.build("generator", {"name": "toy_generator", "width": 4, "scale": 2, "sizes": [3, 4]}, where="t")
    assert built == {"width": 4, "scale": 2.0, "norm": "batch", "sizes": (3, 4)}
    assert isinstance(built["scale"], float)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"name": "toy_generator", "widht": 4}, "unknown key 'widht' for generator 'toy_generator'. Did you mean 'width'?"),
        ({"name": "toy_generator", "width": "4"}, "expected int, got '4' (str)"),
        ({"name": "toy_generator", "width": True}, "expected int, got True (bool)"),
        ({"name": "toy_generator", "norm": "group"}, "expected one of 'batch', 'none', got 'group'"),
        ({"name": "toy_generator", "sizes": [1]}, "expected an array of 2 values"),
        ({"name": "toy_required"}, "needs key(s) depth"),
        ({"width": 3}, "missing key 'name'"),
    ],
)
def test_bad_tables_are_recipe_errors(table, expected):
    with pytest.raises(RecipeError) as info:
        make_registry().build("generator", table, where="recipe.toml, [generator]")
    assert expected in str(info.value)
    assert "recipe.toml, [generator]" in str(info.value)


def test_unknown_name_suggests_and_lists():
    with pytest.raises(UnknownComponentError) as info:
        make_registry().get("generator", "toy_generatr", where="r.toml, [generator], name")
    message = str(info.value)
    assert "Unknown generator 'toy_generatr' (r.toml, [generator], name). Did you mean 'toy_generator'?" in message
    assert "Available: toy_generator, toy_required." in message
    assert "tkit plugins list" in message


def test_valid_keys_are_listed_with_types():
    with pytest.raises(RecipeError) as info:
        make_registry().build("generator", {"name": "toy_generator", "zzz": 1}, where="w")
    assert "Valid keys: width: int = 8, scale: float = 1.0" in str(info.value)


def test_duplicate_name_names_both_plugins():
    @register_generator("toy_generator")
    def other():
        return None

    registry = make_registry()
    with pytest.raises(PluginError) as info:
        registry.add(other, plugin="third_party")
    assert "'tests'" in str(info.value) and "'third_party'" in str(info.value)


def test_unmarked_factory_is_refused():
    with pytest.raises(PluginError, match="not marked"):
        Registry().add(lambda: None, plugin="p")


def test_names_match_patterns(registry):
    assert registry.names("generator", "unet*") == ["unet", "unet_128", "unet_256"]
    assert "patchgan_70" in registry.names("discriminator")


def test_first_party_components_come_from_their_plugins(registry):
    assert registry.get("generator", "unet").plugin == "unet"
    assert registry.get("method", "pix2pix").plugin == "pix2pix"
    assert registry.get("dataset", "aligned").plugin == "folder_datasets"
    assert set(registry.names("loss")) >= {"vanilla", "lsgan", "hinge", "wgangp", "l1"}


def test_hook_registered_components_and_duplicates_across_plugins():
    from translate_kit.hookspecs import hookimpl

    @register_loss("toy_loss")
    def toy_loss():
        return None

    class Dynamic:
        @staticmethod
        @hookimpl
        def translate_kit_register_components():
            return [toy_loss]

    pm = get_plugin_manager(autoload=False, plugins=[Dynamic()])
    registry = Registry.from_plugin_manager(pm)
    assert registry.names("loss") == ["toy_loss"]

    class Clash:
        @staticmethod
        @hookimpl
        def translate_kit_register_components():
            @register_loss("toy_loss")
            def impostor():
                return None

            return [impostor]

    pm = get_plugin_manager(autoload=False, plugins=[Dynamic(), Clash()])
    with pytest.raises(PluginError, match="registered twice"):
        Registry.from_plugin_manager(pm)


def test_every_registered_factory_is_configurable_from_toml(registry):
    """Every option of every component has a type annotation a recipe value can be checked against."""
    import inspect

    for spec in registry.specs():
        for option in spec.options:
            assert option.annotation is not inspect.Parameter.empty, f"{spec.kind} {spec.name}: {option.name}"


def test_factory_range_errors_become_recipe_errors(registry):
    with pytest.raises(RecipeError, match=r"\[generator\]: generator 'unet' rejected its options: .*num_downs"):
        registry.build("generator", {"name": "unet", "num_downs": 0}, where="r.toml, [generator]")
