"""Rules of the code base, checked on its source: the core knows no plugin, plugins use the
documented surface, no import cycle, and factories a recipe cannot check are refused."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
import torch
from conftest import ROOT
from torch import nn

from translate_kit.errors import PluginError, RecipeError
from translate_kit.method import Method
from translate_kit.registry import (
    ComponentRef,
    Registry,
    register_discriminator,
    register_generator,
    register_loss,
    register_method,
)

CORE = ROOT / "translate_kit"
PLUGINS = ROOT / "plugins"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import the file runs, module-level or inside functions (not
    those under `if TYPE_CHECKING:`, which only a type checker follows)."""
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.append((module, [a.name for a in node.names], node.lineno))
    return found


def test_no_import_cycle_in_the_core():
    modules = {_module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, imported, _ in _imports(path):
            for candidate in [module, *(f"{module}.{n}" for n in imported)]:
                if candidate in modules and candidate != name:
                    targets.add(candidate)
        graph[name] = targets

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return [*trail, start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
        return None

    # The package's __init__ files re-export nothing heavy, and translate_kit.api sits on top:
    # a cycle through them would still be a cycle, so none is exempt.
    cycles = [c for m in sorted(graph) if (c := cycle_from(m))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:3])


def test_the_core_imports_no_plugin_and_names_none():
    """translate_kit/ knows no first-party plugin: no import of one, no network called "G", no
    file a plugin writes, no method the contract does not declare."""
    offences = []
    for path in CORE.rglob("*.py"):
        for module, _, line in _imports(path):
            if module.startswith("translate_kit_plugins"):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
        text = path.read_text(encoding="utf-8")
        for pattern in (r"""["']G["']""", r"""["']D["']""", r"losses\.jsonl", r"\.segment\(", r"\.decode\(",
                        r"""startswith\(["']G"""):
            for match in re.finditer(pattern, text):
                offences.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1} {match.group()}")
    assert not offences, "\n".join(offences)


def test_plugins_import_only_the_api_and_public_names():
    """First-party plugins use `translate_kit.api` (what a third party uses) and each other's
    public names (`__all__`), never the core's internals or another plugin's private names."""
    offences = []
    for path in sorted(PLUGINS.glob("*.py")):
        for module, imported, line in _imports(path):
            where = f"plugins/{path.name}:{line}"
            if module.startswith("translate_kit.") and module not in ("translate_kit.api",):
                offences.append(f"{where} imports {module}")
            elif module == "translate_kit" and imported != ["api"]:
                offences.append(f"{where} imports {imported} from translate_kit")
            elif module.startswith("translate_kit_plugins."):
                other = PLUGINS / f"{module.split('.', 1)[1]}.py"
                public = _all(other)
                private = [n for n in imported if n not in public]
                if private:
                    offences.append(f"{where} imports {private} from {module}, not in its __all__")
    assert not offences, "\n".join(offences)


def _all(path: Path) -> set[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def test_the_api_exports_what_it_lists():
    import translate_kit.api as api

    assert all(hasattr(api, name) for name in api.__all__)


def test_the_trainer_reads_on_few_screens():
    lines = len((CORE / "train" / "trainer.py").read_text(encoding="utf-8").splitlines())
    assert lines <= 450, f"train/trainer.py has {lines} lines; move what is not the loop to its own module"


# ------------------------------------------------------------------------------------------------
# Registration: what a recipe could not check is refused, naming the plugin and the parameter


@register_generator()
def no_annotation(*, width=8):  # type: ignore[no-untyped-def]
    return width


@register_generator()
def positional(width: int = 8) -> int:
    return width


@register_generator()
def open_ended(*, width: int = 8, **options: Any) -> int:
    return width


@register_method()
def no_parts(*, scale: float = 1.0) -> None:
    return None


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (no_annotation, r"Option 'width' of generator 'no_annotation' \(plugin 'mine', .*\) has no type annotation"),
        (positional, r"Option 'width' of generator 'positional' \(plugin 'mine'.* must be keyword-only"),
        (open_ended, r"generator 'open_ended' \(plugin 'mine'.* takes \*\*options, which accepts anything unchecked"),
        (no_parts, r"method 'no_parts' \(plugin 'mine'.* must take exactly one positional-only parameter, the Parts"),
    ],
)
def test_factories_a_recipe_cannot_check_are_refused(factory, expected):
    with pytest.raises(PluginError, match=expected):
        Registry().add(factory, plugin="mine")


# ------------------------------------------------------------------------------------------------
# The adversarial contract: a loss and a discriminator that do not fit are a recipe error


@register_discriminator(output="energy")
def energy_critic(*, in_channels: int = 6) -> object:
    """An auto-encoder discriminator whose output is a reconstruction energy (EBGAN-like)."""
    return None


@register_method(tables={"discriminator": "discriminator"})
def energy_gan(parts: Any, /, *, gan_mode: Annotated[str, ComponentRef("loss", adversarial_for="discriminator")]
               = "vanilla") -> None:
    return None


def test_a_loss_that_cannot_score_the_discriminator_is_refused_at_load(registry, tmp_path):
    from translate_kit.recipe import load_recipe

    local = Registry()
    for spec in registry.specs():
        local.add(spec.factory, plugin=spec.plugin)
    local.add(energy_critic, plugin="ebgan")
    local.add(energy_gan, plugin="ebgan")
    recipe = {"data": {"root": "x"}, "method": {"name": "energy_gan"}, "discriminator": {"name": "energy_critic"}}
    with pytest.raises(RecipeError, match=(
        r"key 'gan_mode': loss 'vanilla' scores discriminator outputs logits, multiscale_logits, but discriminator "
        r"'energy_critic' \(<recipe>, \[discriminator\]\) outputs energy. Losses that score energy: none; "
        r"discriminators that 'vanilla' scores: (\w+, )*multiscale, (\w+, )*patchgan")):
        load_recipe(recipe, registry=local)
    recipe["discriminator"] = {"name": "patchgan"}
    load_recipe(recipe, registry=local)  # a logit map: fits


def test_loss_options_in_a_method_table_are_checked_at_load(tmp_path):
    """`tkit recipes show` checks the recipe: a misspelt gan_options key fails there, not at training."""
    from typer.testing import CliRunner

    from translate_kit.cli import make_app

    text = (ROOT / "recipes" / "pix2pix_facades.toml").read_text()
    mistaken = tmp_path / "mistaken.toml"
    mistaken.write_text(text.replace("[generator]", "gan_options = { target_rael = 0.9 }\n\n[generator]"))
    assert "target_rael" in mistaken.read_text()
    result = CliRunner().invoke(make_app(), ["recipes", "show", str(mistaken)])
    assert result.exit_code == 1
    assert "unknown key 'target_rael' for loss 'vanilla'. Did you mean 'target_real'?" in " ".join(result.output.split())


class Halfway(Method):
    roles = {"G": "translate"}

    def __init__(self) -> None:
        super().__init__()
        net = nn.Conv2d(3, 3, 1)
        net.size_multiple = 4  # no min_size
        self.nets = nn.ModuleDict({"G": net})

    def optimizer_groups(self) -> dict[str, list[str]]:
        return {"G": ["G"]}


@register_method(tables={})
def halfway(parts: Any, /) -> Halfway:
    return Halfway()


def test_a_network_declaring_half_of_its_size_constraint_is_refused(registry):
    """`SizeConstrained` needs both attributes; one alone would silently go unchecked."""
    from translate_kit.build import build_method
    from translate_kit.recipe import load_recipe

    local = Registry()
    for spec in registry.specs():
        local.add(spec.factory, plugin=spec.plugin)
    local.add(halfway, plugin="mine")
    recipe = load_recipe({"data": {"root": "x"}, "method": {"name": "halfway"}}, registry=local)
    with pytest.raises(PluginError, match="Network G of method 'halfway' \\(Conv2d\\) declares size_multiple but not min_size"):
        build_method(recipe, local)


@register_discriminator(output="energy")
def reconstruction_critic(*, in_channels: int = 6) -> object:
    """An energy critic (for the loss below)."""
    return None


class Margin(nn.Module):
    """EBGAN's margin loss on energies: real energies down, fake ones up to the margin."""

    def forward(self, energy: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if not for_discriminator or target_is_real:
            return energy.mean()
        return torch.relu(1.0 - energy).mean()

    def penalty(self, discriminator: Any, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real.new_zeros(())


@register_loss(scores=("energy",))
def margin() -> Margin:
    """EBGAN's margin loss."""
    return Margin()


def test_the_loss_contract_check_follows_what_a_loss_declares_it_scores():
    """An adversarial loss that scores energies only passes `check_loss` on energies."""
    from translate_kit.testing import check_loss

    local = Registry()
    local.add(margin, plugin="ebgan")
    check_loss(local, "margin")
