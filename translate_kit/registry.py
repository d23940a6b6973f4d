"""The component registry: generators, discriminators, losses, datasets and methods by name.

A plugin marks plain factory functions with `@register_generator()` (or the other kinds); the
marker only tags the function, so importing a plugin module changes no global state. The plugin
manager hands the loaded plugins to `Registry.from_plugin_manager`, which collects the marked
factories, remembers which plugin brought each one, and refuses a name registered twice.

A factory's keyword arguments are its configuration: a recipe table `{"name": "unet", "ngf": 32}`
becomes `unet(ngf=32)` after every key and value has been checked against the signature.
Positional-only parameters (before `/`) are not configuration: the core passes them (a method
receives the `Parts` it builds its networks from).

Example:
    >>> from translate_kit.registry import Registry, register_generator
    >>> @register_generator()
    ... def tiny(*, width: int = 8):
    ...     return ("tiny", width)
    >>> registry = Registry()
    >>> registry.add(tiny, plugin="doc")
    >>> registry.build("generator", {"name": "tiny", "width": 4}, where="[generator]")
    ('tiny', 4)
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from translate_kit.errors import PluginError, RecipeError, TranslateKitError, UnknownComponentError, did_you_mean
from translate_kit.validation import coerce, describe

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "KINDS",
    "ComponentSpec",
    "Kind",
    "Option",
    "Registry",
    "register",
    "register_dataset",
    "register_discriminator",
    "register_generator",
    "register_loss",
    "register_method",
    "register_segmenter",
]

Kind = Literal["generator", "discriminator", "loss", "dataset", "method", "segmenter"]
KINDS: tuple[str, ...] = get_args(Kind)
MARKER = "__translate_kit__"


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration key of a component: a keyword argument of its factory."""

    name: str
    annotation: Any  # resolved type annotation, `inspect.Parameter.empty` when absent
    default: Any  # `inspect.Parameter.empty` when the key is required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        kind = "any value" if self.annotation is inspect.Parameter.empty else describe(self.annotation)
        return f"{self.name}: {kind}" + (" (required)" if self.required else f" = {self.default!r}")


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A registered factory, the kind and name it answers to, and the plugin that brought it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str = "?"
    options: tuple[Option, ...] = field(default=(), compare=False)



def register(kind: str, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a factory as a component of `kind`, named `name` (default: the function's name).

    The factory is collected when the plugin module that defines it is registered with the plugin
    manager; the decorator itself registers nothing.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown component kind {kind!r}; expected one of {', '.join(KINDS)}")

    def mark(factory: Callable[..., Any]) -> Callable[..., Any]:
        setattr(factory, MARKER, (kind, name or factory.__name__))
        return factory

    return mark


register_generator = functools.partial(register, "generator")
register_discriminator = functools.partial(register, "discriminator")
register_loss = functools.partial(register, "loss")
register_dataset = functools.partial(register, "dataset")
register_method = functools.partial(register, "method")
register_segmenter = functools.partial(register, "segmenter")


def _options(factory: Callable[..., Any]) -> tuple[Option, ...]:
    try:
        signature = inspect.signature(factory, eval_str=True)
    except NameError as exc:  # an annotation names something the module does not import
        raise PluginError(f"Cannot read the signature of {factory.__qualname__}: {exc}") from None
    options = []
    for param in signature.parameters.values():
        if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            options.append(Option(param.name, param.annotation, param.default))
    return tuple(options)


def _accepts_any_keyword(factory: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())


class Registry:
    """Components by kind and name, each remembering the plugin that registered it."""

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, ComponentSpec]] = {kind: {} for kind in KINDS}

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> Registry:
        """Collect the marked factories of every registered plugin, and those its hook returns."""
        registry = cls()
        for plugin_name, plugin in pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            for factory in collect_marked(plugin):
                registry.add(factory, plugin=plugin_name)
        for impl in pm.hook.translate_kit_register_components.get_hookimpls():
            for factory in impl.function() or ():
                registry.add(factory, plugin=impl.plugin_name)
        return registry

    def add(self, factory: Callable[..., Any], *, plugin: str) -> None:
        """Add one marked factory; a name already taken is a `PluginError` naming both plugins."""
        marker = getattr(factory, MARKER, None)
        if marker is None:
            raise PluginError(
                f"Plugin {plugin!r} returned {factory!r}, which is not marked as a component: "
                "decorate it with @register_generator() (or the decorator of its kind)."
            )
        kind, name = marker
        taken = self._specs[kind].get(name)
        if taken is not None:
            if taken.factory is factory:
                return
            raise PluginError(
                f"The {kind} name {name!r} is registered twice: by plugin {taken.plugin!r} and by "
                f"plugin {plugin!r}. Rename one of them, or disable a plugin with "
                "TRANSLATE_KIT_DISABLE_PLUGINS=<name>."
            )
        self._specs[kind][name] = ComponentSpec(kind, name, factory, plugin, _options(factory))

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted names of `kind` matching the shell-style `pattern`."""
        return sorted(fnmatch.filter(self._specs[kind], pattern))

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """Every registered component (of one kind, or all), sorted by kind then name."""
        kinds = [kind] if kind else list(KINDS)
        return [self._specs[k][n] for k in kinds for n in sorted(self._specs[k])]

    def get(self, kind: str, name: str, *, where: str = "") -> ComponentSpec:
        """The component `name` of `kind`; an `UnknownComponentError` with suggestions otherwise."""
        spec = self._specs[kind].get(name)
        if spec is None:
            choices = self.names(kind)
            at = f" ({where})" if where else ""
            raise UnknownComponentError(
                f"Unknown {kind} {name!r}{at}.{did_you_mean(name, choices)} "
                f"Available: {', '.join(choices) or 'none'}. "
                "More come from plugins: `tkit plugins list`."
            )
        return spec

    def check(self, kind: str, table: Mapping[str, Any], *, where: str, fixed: Mapping[str, Any] = {}) -> dict[str, Any]:
        """Validate a recipe table `{"name": ..., **kwargs}`; return the kwargs, coerced.

        Args:
            kind: the component kind.
            table: the recipe table; `name` selects the component, the other keys are its options.
            where: where the table comes from, for messages (e.g. "recipes/x.toml, [generator]").
            fixed: options the caller sets itself (a method fixes its discriminator's in_channels);
                the table may repeat them only with the same value.
        """
        if "name" not in table:
            raise RecipeError(f"{where}: missing key 'name'. Choose one of: {', '.join(self.names(kind))}.")
        name = table["name"]
        if not isinstance(name, str):
            raise RecipeError(f"{where}, key 'name': expected a string, got {name!r}.")
        spec = self.get(kind, name, where=f"{where}, name")
        options = {o.name: o for o in spec.options}
        kwargs = {k: v for k, v in table.items() if k != "name"}
        for key, value in fixed.items():
            if key in kwargs and kwargs[key] != value:
                raise RecipeError(
                    f"{where}, key {key!r}: {kind} {name!r} needs {key} = {value!r} here (the method sets it), "
                    f"got {kwargs[key]!r}. Remove the key from the recipe."
                )
            kwargs[key] = value
        open_ended = _accepts_any_keyword(spec.factory)
        for key, value in list(kwargs.items()):
            option = options.get(key)
            if option is None:
                if open_ended:
                    continue
                valid = ", ".join(o.describe() for o in spec.options) or "none"
                raise RecipeError(
                    f"{where}: unknown key {key!r} for {kind} {name!r}.{did_you_mean(key, options)} "
                    f"Valid keys: {valid}."
                )
            if option.annotation is inspect.Parameter.empty:
                continue
            try:
                kwargs[key] = coerce(value, option.annotation)
            except TypeError as exc:
                raise RecipeError(f"{where}, key {key!r} of {kind} {name!r}: {exc}.") from None
        missing = [o.name for o in spec.options if o.required and o.name not in kwargs]
        if missing:
            raise RecipeError(f"{where}: {kind} {name!r} needs key(s) {', '.join(missing)}; add them to the table.")
        return kwargs

    def build(
        self,
        kind: str,
        table: Mapping[str, Any],
        *,
        where: str,
        args: tuple[Any, ...] = (),
        fixed: Mapping[str, Any] = {},
    ) -> Any:
        """Check `table` (see `check`) and call the factory with `*args` and the options."""
        kwargs = self.check(kind, table, where=where, fixed=fixed)
        try:
            return self._specs[kind][table["name"]].factory(*args, **kwargs)
        except ValueError as exc:
            # A factory's own range checks ("num_downs must be >= 1") are configuration errors too.
            if isinstance(exc, TranslateKitError):
                raise
            raise RecipeError(f"{where}: {kind} {table['name']!r} rejected its options: {exc}.") from None

    def create(self, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build a component from Python, with the same checks as a recipe table."""
        return self.build(kind, {"name": name, **kwargs}, where=f"{kind} {name!r}", args=args)


def collect_marked(plugin: object) -> Iterable[Callable[..., Any]]:
    """The marked factories defined in a plugin module or object (not those it imports)."""
    module_name = getattr(plugin, "__name__", None)
    for value in list(vars(plugin).values()) if hasattr(plugin, "__dict__") else []:
        if callable(value) and getattr(value, MARKER, None) is not None:
            # Re-exported factories belong to the module that defines them.
            if not inspect.ismodule(plugin) or getattr(value, "__module__", None) == module_name:
                yield value
