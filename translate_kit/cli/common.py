"""Shared pieces of the command line: consoles, user-error handling, plugin loading, recipe lookup."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from translate_kit.errors import RecipeError, TranslateKitError, did_you_mean

if TYPE_CHECKING:
    from translate_kit.plugins import PluginManager
    from translate_kit.registry import Registry

__all__ = ["Session", "cli_command", "error_console", "find_recipe", "old_spelling", "recipe_dirs", "session"]

F = TypeVar("F", bound=Callable[..., Any])


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def cli_command(fn: F) -> F:
    """Turn a `TranslateKitError` into one red paragraph and exit status 1, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TranslateKitError as exc:
            # Escape: messages quote recipe tables like [generator], which rich would read as markup.
            error_console().print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def old_spelling(value: Any, old_value: Any, *, new: str, old: str, until: str = "0.2") -> Any:
    """Accept an option's former spelling for one release, with a note.

    Every concept has one option name across commands (`--out` for where results go); a renamed
    option keeps its old name as a hidden option of its own whose value lands here. Giving the old
    name prints a note on stderr; giving both names is a usage error (exit status 2).

    Args:
        value: what the current spelling received (None when not given).
        old_value: what the hidden former spelling received (None when not given).
        new: the current spelling, e.g. "--out".
        old: the former spelling, e.g. "--output".
        until: the release that drops the former spelling.
    """
    if old_value is None:
        return value
    if value is not None:
        raise typer.BadParameter(f"{old} is the former name of {new}; give {new} only.", param_hint=f"'{old}'")
    error_console().print(f"Note: {old} is now {new}; {old} is accepted until translate-kit {until}.")
    return old_value


@dataclass
class Session:
    """The plugin manager and registry of one command, made on first use."""

    plugins_dir: Path | None = None
    _pm: PluginManager | None = None
    _registry: Registry | None = None

    @property
    def pm(self) -> PluginManager:
        if self._pm is None:
            from translate_kit.plugins import get_plugin_manager

            self._pm = get_plugin_manager(plugins_dir=self.plugins_dir)
        return self._pm

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from translate_kit.registry import Registry

            self._registry = Registry.from_plugin_manager(self.pm)
        return self._registry


def session(ctx: typer.Context) -> Session:
    """The `Session` the root callback stored on the context."""
    root = ctx.find_root()
    if not isinstance(root.obj, Session):
        root.obj = Session()
    return root.obj


def recipe_dirs(pm: PluginManager) -> list[tuple[str, Path]]:
    """(origin, folder) of every recipe folder: ./recipes, translate-kit's own, then plugins'."""
    import importlib.util

    candidates: list[tuple[str, Path]] = [("./recipes", Path.cwd() / "recipes")]
    # recipes/ is installed as the data-only namespace package translate_kit_recipes (see
    # pyproject.toml); its search locations are the folders holding the shipped recipes.
    spec = importlib.util.find_spec("translate_kit_recipes")
    for location in spec.submodule_search_locations or () if spec else ():
        candidates.append(("translate-kit", Path(location)))
    for impl in pm.hook.translate_kit_recipe_dirs.get_hookimpls():
        for folder in impl.function() or ():
            candidates.append((impl.plugin_name, Path(folder)))
    seen: set[Path] = set()
    found = []
    for origin, folder in candidates:
        resolved = folder.resolve()
        if resolved.is_dir() and resolved not in seen:
            seen.add(resolved)
            found.append((origin, folder))
    return found


def find_recipe(name_or_path: str, pm: PluginManager) -> Path:
    """A recipe file: an existing path, or a recipe name found in `recipe_dirs`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.stem if path.suffix == ".toml" else name_or_path
    known: dict[str, Path] = {}
    for _, folder in recipe_dirs(pm):
        for file in sorted(folder.glob("*.toml")):
            known.setdefault(file.stem, file)
    if stem in known and path.parent == Path("."):
        return known[stem]
    raise RecipeError(
        f"Recipe {name_or_path!r} is neither a file nor a known recipe name.{did_you_mean(stem, known)} "
        f"Known recipes: {', '.join(sorted(known)) or 'none'} (`tkit recipes list`)."
    )
