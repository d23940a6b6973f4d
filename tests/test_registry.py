"""Registry: markers, provenance, duplicates, suggestions, signature checks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest

from translate_kit.errors import PluginError, RecipeError, UnknownComponentError
from translate_kit.plugins import get_plugin_manager
from translate_kit.registry import (
    ComponentBuilder,
    ComponentRef,
    OptionsOf,
    Registry,
    register,
    register_discriminator,
    register_generator,
    register_loss,
)


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


# ------------------------------------------------------------------------------------------------
# A component built from another: builder options


@register_generator("toy_stack")
def toy_stack(
    *,
    depth: int = 2,
    block: Annotated[ComponentBuilder, ComponentRef("generator")] = "toy_generator",
    block_options: Annotated[dict[str, Any] | None, OptionsOf("block")] = None,
) -> list[Any]:
    """`depth` blocks of the generator `block` names, each with scale = its position (the stack sets it)."""
    return [block(scale=float(i)) for i in range(depth)]


@register_generator("toy_maybe")
def toy_maybe(
    *,
    extra: Annotated[ComponentBuilder | None, ComponentRef("generator")] = None,
    extra_options: Annotated[dict[str, Any] | None, OptionsOf("extra")] = None,
) -> Any:
    """An optional component: built only when the recipe names one."""
    return None if extra is None else extra()


def builder_registry() -> Registry:
    registry = make_registry()
    registry.add(toy_stack, plugin="stacks")
    registry.add(toy_maybe, plugin="stacks")
    return registry


def test_a_builder_option_builds_the_named_component_with_its_options():
    registry = builder_registry()
    built = registry.build("generator", {"name": "toy_stack", "block_options": {"width": 3, "sizes": [5, 6]}},
                           where="r.toml, [generator]")
    assert built == [{"width": 3, "scale": s, "norm": "batch", "sizes": (5, 6)} for s in (0.0, 1.0)]
    # The default name is resolved too, and a built component may hold builders of its own.
    assert registry.create("generator", "toy_stack", depth=1) == [{"width": 8, "scale": 0.0, "norm": "batch",
                                                                   "sizes": (1, 2)}]
    nested = registry.create("generator", "toy_maybe", extra="toy_stack",
                             extra_options={"depth": 3, "block_options": {"width": 1}})
    assert [(b["width"], b["scale"]) for b in nested] == [(1, 0.0), (1, 1.0), (1, 2.0)]
    assert registry.create("generator", "toy_maybe") is None
    assert registry.create("generator", "toy_maybe", extra="toy_required", extra_options={"depth": 4}) == 4


def test_the_factory_receives_a_typed_builder():
    received = {}

    @register_generator("toy_probe")
    def toy_probe(*, inner: Annotated[ComponentBuilder, ComponentRef("generator")] = "toy_generator",
                  inner_options: Annotated[dict[str, Any] | None, OptionsOf("inner")] = None) -> None:
        received["inner"] = inner

    registry = builder_registry()
    registry.add(toy_probe, plugin="probe")
    registry.build("generator", {"name": "toy_probe", "inner_options": {"width": 3}}, where="r.toml, [g]")
    inner = received["inner"]
    assert isinstance(inner, ComponentBuilder)
    assert (inner.kind, inner.name, dict(inner.options), inner.spec.plugin) == ("generator", "toy_generator",
                                                                              {"width": 3}, "tests")
    assert inner.where == "r.toml, [g], key 'inner_options' (options of generator 'toy_generator')"
    assert inner(scale=2) == {"width": 3, "scale": 2.0, "norm": "batch", "sizes": (1, 2)}  # checked and coerced
    assert inner() is not inner()  # a new component per call
    option = registry.get("generator", "toy_probe").option("inner")
    assert option.builds and option.value_annotation is str
    assert option.describe() == "inner: a generator name = 'toy_generator'"


@pytest.mark.parametrize(
    ("table", "error", "expected"),
    [
        ({"block": "toy_generatr"}, UnknownComponentError,
         "Unknown generator 'toy_generatr' (r.toml, [generator], key 'block'). Did you mean 'toy_generator'?"),
        ({"block": 3}, RecipeError, "key 'block' of generator 'toy_stack': expected str, got 3 (int)"),
        ({"block_options": {"widht": 2}}, RecipeError,
         "r.toml, [generator], key 'block_options' (options of generator 'toy_generator'): unknown key 'widht' for "
         "generator 'toy_generator'. Did you mean 'width'?"),
        ({"block": "toy_stack", "block_options": {"block_options": {"norm": "group"}}}, RecipeError,
         "key 'block_options' (options of generator 'toy_generator'), key 'norm' of generator 'toy_generator': "
         "expected one of 'batch', 'none', got 'group'"),
        ({"block_options": {"scale": 3.0}}, RecipeError,
         "key 'block_options' (options of generator 'toy_generator'), key 'scale': generator 'toy_generator' needs "
         "scale = 0.0 here (generator 'toy_stack' sets it), got 3.0. Remove the key from the recipe."),
    ],
)
def test_builder_options_are_checked_like_the_table(table, error, expected):
    """Names and nested options fail at `check` (recipe load); what the building factory sets, and
    the required keys it leaves to the recipe, fail when it calls the builder, naming the key."""
    registry = builder_registry()
    with pytest.raises(error) as info:
        registry.build("generator", {"name": "toy_stack", **table}, where="r.toml, [generator]")
    assert expected in str(info.value)
    if "sets it" not in expected:  # this one needs the value the factory passes
        with pytest.raises(error):
            registry.check("generator", {"name": "toy_stack", **table}, where="r.toml, [generator]")


def test_optional_builder_options_without_a_name_are_refused():
    with pytest.raises(RecipeError, match=r"key 'extra_options': options of a generator, but key 'extra' names none"):
        builder_registry().check("generator", {"name": "toy_maybe", "extra_options": {"width": 1}}, where="w")


def test_required_keys_of_a_built_component_are_checked_when_it_is_built():
    """The building factory may pass required keys itself, so only its call can tell they are missing."""
    registry = builder_registry()
    registry.check("generator", {"name": "toy_maybe", "extra": "toy_required"}, where="r.toml, [generator]")
    with pytest.raises(RecipeError, match=r"r.toml, \[generator\], key 'extra_options' \(options of generator "
                                          r"'toy_required'\): generator 'toy_required' needs key\(s\) depth; add them"):
        registry.build("generator", {"name": "toy_maybe", "extra": "toy_required"}, where="r.toml, [generator]")


@register_discriminator("toy_logit_critic")
def toy_logit_critic() -> str:
    return "logit critic"

@register_discriminator("toy_energy_critic", output="energy")
def toy_energy_critic() -> str:
    return "energy critic"

class Scorer:
    def __call__(self, prediction: Any, target_is_real: bool, for_discriminator: bool = True) -> Any:
        return prediction

    def penalty(self, discriminator: Any, real: Any, fake: Any) -> Any:
        return 0

@register_loss("toy_scorer", scores=("logits",))
def toy_scorer() -> Scorer:
    return Scorer()

@register_loss("toy_broken_scorer", scores=("logits",))
def toy_broken_scorer() -> object:
    return object()  # neither callable nor with a penalty

@register("ensemble")
def toy_ensemble(*, critic: Annotated[ComponentBuilder, ComponentRef("discriminator", output="logits")]
                 = "toy_logit_critic",
                 loss: Annotated[ComponentBuilder, ComponentRef("loss", scores="logits")] = "toy_scorer") -> Any:
    return critic(), loss()

def test_a_ref_may_require_an_output_or_what_a_loss_scores():
    registry = make_registry()
    for factory in (toy_logit_critic, toy_energy_critic, toy_scorer, toy_broken_scorer, toy_ensemble, toy_loss_plain):
        registry.add(factory, plugin="mine")
    critic, loss = registry.create("ensemble", "toy_ensemble")
    assert critic == "logit critic" and isinstance(loss, Scorer)
    with pytest.raises(RecipeError, match=r"key 'critic': discriminator 'toy_energy_critic' \(plugin 'mine'\) outputs "
                                          r"energy, and this option needs one that outputs logits. Choose one of: "
                                          r"toy_logit_critic."):
        registry.create("ensemble", "toy_ensemble", critic="toy_energy_critic")
    with pytest.raises(RecipeError, match=r"key 'loss': loss 'toy_loss_plain' \(plugin 'mine'\) is not an adversarial "
                                          r"loss, and this option needs one that scores logits. Choose one of: "
                                          r"toy_broken_scorer, toy_scorer."):
        registry.create("ensemble", "toy_ensemble", loss="toy_loss_plain")
    with pytest.raises(PluginError, match=r"Loss 'toy_broken_scorer' \(plugin 'mine'\) is registered as an adversarial "
                                          r"loss .* returned a object without the AdversarialLoss methods"):
        registry.create("ensemble", "toy_ensemble", loss="toy_broken_scorer")


@register_loss("toy_loss_plain")
def toy_loss_plain() -> str:
    """A loss that is not adversarial."""
    return "plain"


def test_a_builder_from_python_is_checked_when_made():
    registry = builder_registry()
    with pytest.raises(RecipeError, match="unknown key 'widht' for generator 'toy_generator'"):
        registry.builder("generator", "toy_generator", widht=3)
    with pytest.raises(UnknownComponentError, match="Did you mean 'toy_generator'"):
        registry.builder("generator", "toy_generatr")
    needs_depth = registry.builder("generator", "toy_required")  # the call may give the required keys
    assert needs_depth(depth=5) == 5
    with pytest.raises(RecipeError, match="generator 'toy_required' needs key\\(s\\) depth"):
        needs_depth()
    assert toy_stack(depth=1, block=registry.builder("generator", "toy_generator", width=2))[0]["width"] == 2


@register_generator("bad_unmarked_builder")
def bad_unmarked_builder(*, inner: ComponentBuilder = "toy_generator") -> None:  # type: ignore[assignment]
    return None


@register_generator("bad_builder_default")
def bad_builder_default(*, inner: Annotated[ComponentBuilder, ComponentRef("generator")] = 3) -> None:  # type: ignore[assignment]
    return None


@register_generator("bad_ref_output")
def bad_ref_output(*, inner: Annotated[str, ComponentRef("loss", output="logits")] = "l1") -> None:
    return None


@register_generator("bad_ref_scores")
def bad_ref_scores(*, inner: Annotated[str, ComponentRef("generator", scores="logits")] = "unet") -> None:
    return None


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (bad_unmarked_builder, r"Option 'inner' of generator 'bad_unmarked_builder' \(plugin 'mine', .*\) receives a "
                               r"ComponentBuilder but does not say which kind it builds"),
        (bad_builder_default, r"receives a ComponentBuilder; its default must be what a recipe gives, a component "
                              r"name \(or None\), got 3"),
        (bad_ref_output, r"names a loss; only a discriminator has an output"),
        (bad_ref_scores, r"names a generator; only a loss scores discriminator outputs"),
    ],
)
def test_builder_options_a_recipe_cannot_check_are_refused(factory, expected):
    with pytest.raises(PluginError, match=expected):
        Registry().add(factory, plugin="mine")
