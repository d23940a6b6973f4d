"""The component registry: generators, discriminators, losses, datasets, methods (and any kind a
plugin adds) by name.

A plugin marks plain factory functions with `@register_generator()` (or the decorator of another
kind); the marker only tags the function, so importing a plugin module changes no global state.
The plugin manager hands the loaded plugins to `Registry.from_plugin_manager`, which collects the
marked factories, remembers which plugin brought each one, and refuses a name registered twice.

A factory's keyword-only, annotated arguments are its configuration: a recipe table
`{"name": "unet", "ngf": 32}` becomes `unet(ngf=32)` after every key and value has been checked
against the signature. A factory that breaks this rule (an option without a type annotation, an
option that is not keyword-only, `**kwargs`) is refused when its plugin is registered, with a
message naming the plugin and the parameter. A method factory takes one positional-only
parameter, the `Parts` the core passes (its networks are built through it).

Registration may declare more than a name, so that recipes are checked before anything is built:

- a method declares the recipe tables it builds components from and their kinds
  (`tables={"generator": "generator", "encoder": "encoder"}`);
- a discriminator declares what it outputs (`output="logits"`, see `translate_kit.adversarial`);
- an adversarial loss declares which discriminator outputs it scores (`scores=("logits", ...)`);
- any component may declare `tiny` options: a small instance for contract tests
  (`translate_kit.testing`).

An option of any component annotated `Annotated[str, ComponentRef("loss")]` names another
component, and one annotated `Annotated[dict[str, Any] | None, OptionsOf("gan_mode")]` holds that
component's options: both are checked at recipe load like the table's own keys (the options
against the named component's signature, recursively). A `ComponentRef` may also say what the
named component must be: a discriminator that outputs `output`, an adversarial loss that scores
`scores`. An option annotated `Annotated[ComponentBuilder, ComponentRef(...)]` still takes a name
in the recipe, but the factory receives a `ComponentBuilder` for it: calling it builds the named
component with its options, through this registry and its checks. So a discriminator can hold
members of any registered discriminator, and a loss wrap any registered loss, a third party's
included, without importing their factories.

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
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from translate_kit.errors import PluginError, RecipeError, TranslateKitError, UnknownComponentError, did_you_mean
from translate_kit.validation import coerce, describe

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "DEFAULT_METHOD_TABLES",
    "KINDS",
    "ComponentBuilder",
    "ComponentRef",
    "ComponentSpec",
    "Option",
    "OptionsOf",
    "Registration",
    "Registry",
    "collect_marked",
    "register",
    "register_dataset",
    "register_discriminator",
    "register_generator",
    "register_loss",
    "register_method",
    "register_segmenter",
]

# The kinds translate-kit itself uses; a plugin may register components of a kind of its own
# (an "encoder", a "palette") and a method may build them from a recipe table.
KINDS: tuple[str, ...] = ("generator", "discriminator", "loss", "dataset", "method", "segmenter")
MARKER = "__translate_kit__"
# The tables a method builds from when its registration does not say.
DEFAULT_METHOD_TABLES: Mapping[str, str] = {"generator": "generator", "discriminator": "discriminator"}
_CORE_TABLES = ("run", "data", "train", "method")


@dataclass(frozen=True, slots=True)
class ComponentRef:
    """Marks an option (`Annotated[str, ComponentRef("loss")]`) whose value names a component of
    `kind`; the recipe check then looks the name up, with suggestions.

    Annotate the option `Annotated[ComponentBuilder, ComponentRef(...)]` instead of `str` to
    receive a `ComponentBuilder` for the named component (the recipe value is still the name).

    Args:
        kind: the kind of the named component.
        adversarial_for: for an adversarial loss, the recipe table of the discriminator it scores:
            the loss must declare `scores`, and the discriminator's `output` must be one of them.
        output: for a discriminator, the output (`translate_kit.adversarial`) it must declare.
        scores: for a loss, a discriminator output it must declare it scores (an adversarial loss).

    Example:
        >>> ComponentRef("discriminator", output="logits")
        ComponentRef(kind='discriminator', adversarial_for=None, output='logits', scores=None)
    """

    kind: str
    adversarial_for: str | None = None
    output: str | None = None
    scores: str | None = None


@dataclass(frozen=True, slots=True)
class OptionsOf:
    """Marks an option (`Annotated[dict[str, Any] | None, OptionsOf("gan_mode")]`) that holds the
    options of the component another option of the same factory names."""

    option: str


@dataclass(frozen=True, slots=True, eq=False)
class ComponentBuilder:
    """What a factory receives for an option annotated `Annotated[ComponentBuilder, ComponentRef(kind)]`:
    the component the recipe names there, with its options (the factory's `OptionsOf` option),
    ready to build through the registry.

    Each call builds a new component (fresh weights) with the registry's checks; the factory
    passes the options it sets itself (a discriminator's `in_channels`), which the recipe's
    options may repeat only with the same value. A factory never imports another plugin's factory
    this way, so a third party's component serves as well as a first-party one.

    Attributes:
        kind: the named component's kind.
        name: its registry name, as the recipe gives it.
        registry: the registry that builds it.
        options: its options from the recipe, already checked.
        where: where the recipe names it, for messages.
        by: the component that builds it, for messages ("discriminator 'gman'").

    Example:
        >>> from translate_kit.registry import Registry, register_generator
        >>> @register_generator()
        ... def tiny_block(*, width: int = 8, depth: int = 1):
        ...     return ("tiny_block", width, depth)
        >>> registry = Registry()
        >>> registry.add(tiny_block, plugin="doc")
        >>> block = registry.builder("generator", "tiny_block", width=4)
        >>> block(depth=2), block.spec.plugin
        (('tiny_block', 4, 2), 'doc')
    """

    kind: str
    name: str
    registry: Registry = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""
    by: str = "the caller"

    @property
    def spec(self) -> ComponentSpec:
        """The registration of the named component (its plugin, `output`, `scores`, options)."""
        return self.registry.get(self.kind, self.name, where=self.where)

    def __call__(self, **fixed: Any) -> Any:
        """Build the component: `{"name": name, **options}` checked and built by the registry.

        Args:
            fixed: options the calling factory sets; `options` may repeat them only with the same value.

        Raises:
            RecipeError: an option does not fit the component (naming `where`).
            PluginError: an adversarial loss whose factory returned no `AdversarialLoss`.
        """
        from translate_kit.adversarial import AdversarialLoss

        built = self.registry.build(
            self.kind, {"name": self.name, **self.options}, where=self.where, fixed=fixed, fixed_by=self.by
        )
        spec = self.spec
        if spec.scores is not None and not isinstance(built, AdversarialLoss):
            raise PluginError(
                f"Loss {spec.name!r} (plugin {spec.plugin!r}) is registered as an adversarial loss (scores=...), but "
                f"its factory returned a {type(built).__name__} without the AdversarialLoss methods __call__ and "
                "penalty (translate_kit.adversarial)."
            )
        return built


@dataclass(frozen=True, slots=True)
class Option:
    """One configuration key of a component: a keyword-only argument of its factory."""

    name: str
    annotation: Any  # the resolved type annotation (Annotated metadata kept)
    default: Any  # `inspect.Parameter.empty` when the key is required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def ref(self) -> ComponentRef | None:
        """The component this option names, if it is annotated as a `ComponentRef`."""
        return _metadata(self.annotation, ComponentRef)

    @property
    def options_of(self) -> str | None:
        """The option naming the component whose options this one holds (`OptionsOf`)."""
        marker = _metadata(self.annotation, OptionsOf)
        return marker.option if marker is not None else None

    @property
    def builds(self) -> bool:
        """Whether the factory receives a `ComponentBuilder` (or None) for this option's name."""
        base = _bare(self.annotation)
        return base is ComponentBuilder or (
            typing.get_origin(base) in (typing.Union, types.UnionType) and ComponentBuilder in typing.get_args(base)
        )

    @property
    def value_annotation(self) -> Any:
        """What a recipe value is checked against: a name (`str`, or `str | None`) for a builder option."""
        if not self.builds:
            return self.annotation
        return str | None if type(None) in typing.get_args(_bare(self.annotation)) else str

    def describe(self) -> str:
        kind = describe(self.annotation)
        if self.ref is not None:
            kind = f"a {self.ref.kind} name"
        return f"{self.name}: {kind}" + (" (required)" if self.required else f" = {self.default!r}")


def _bare(annotation: Any) -> Any:
    """`annotation` without its `Annotated` metadata."""
    return annotation.__origin__ if typing.get_origin(annotation) is Annotated else annotation


def _metadata(annotation: Any, cls: type) -> Any:
    if typing.get_origin(annotation) is Annotated:
        for item in annotation.__metadata__:
            if isinstance(item, cls):
                return item
    return None


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registration decorator records on a factory (before any registry exists)."""

    kind: str
    name: str
    tables: Mapping[str, str] | None = None
    output: str | None = None
    scores: tuple[str, ...] | None = None
    tiny: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A registered factory, the kind and name it answers to, the plugin that brought it, and what
    its registration declares (see the module docstring)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str = "?"
    options: tuple[Option, ...] = field(default=(), compare=False)
    tables: Mapping[str, str] = field(default_factory=dict, compare=False)  # methods
    output: str | None = None  # discriminators
    scores: tuple[str, ...] | None = None  # adversarial losses
    tiny: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


def register(
    kind: str,
    name: str | None = None,
    *,
    tables: Mapping[str, str] | None = None,
    output: str | None = None,
    scores: Iterable[str] | None = None,
    tiny: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a factory as a component of `kind`, named `name` (default: the function's name).

    The factory is collected when the plugin module that defines it is registered with the plugin
    manager; the decorator itself registers nothing.

    Args:
        kind: "generator", "discriminator", "loss", "dataset", "method", "segmenter", or a kind of
            the plugin's own (a lower-case identifier).
        name: the name recipes select it by.
        tables: methods only: recipe table -> component kind of every component the method builds
            through `Parts` (default `DEFAULT_METHOD_TABLES`).
        output: discriminators only: what the network outputs (`translate_kit.adversarial`;
            default "logits").
        scores: losses only: the discriminator outputs this adversarial loss scores; a loss that
            declares it is an `AdversarialLoss`.
        tiny: options that make a small instance, for contract tests.
    """
    if not kind.isidentifier() or kind != kind.lower():
        raise ValueError(f"Expected a component kind that is a lower-case identifier, got {kind!r}")
    if tables is not None and kind != "method":
        raise ValueError(f"Only methods declare tables; {kind} {name or ''} got tables={dict(tables)!r}")
    if output is not None and kind != "discriminator":
        raise ValueError(f"Only discriminators declare an output; {kind} {name or ''} got output={output!r}")
    if scores is not None and kind != "loss":
        raise ValueError(f"Only losses declare what they score; {kind} {name or ''} got scores={scores!r}")

    def mark(factory: Callable[..., Any]) -> Callable[..., Any]:
        registration = Registration(
            kind,
            name or factory.__name__,
            tables=dict(tables) if tables is not None else None,
            output=output if output is not None else ("logits" if kind == "discriminator" else None),
            scores=tuple(scores) if scores is not None else None,
            tiny=dict(tiny or {}),
        )
        setattr(factory, MARKER, registration)
        return factory

    return mark


register_generator = functools.partial(register, "generator")
register_discriminator = functools.partial(register, "discriminator")
register_loss = functools.partial(register, "loss")
register_dataset = functools.partial(register, "dataset")
register_method = functools.partial(register, "method")
register_segmenter = functools.partial(register, "segmenter")


def _options(factory: Callable[..., Any], registration: Registration, plugin: str) -> tuple[Option, ...]:
    """The factory's options, refusing signatures a recipe could not check."""
    what = f"{registration.kind} {registration.name!r} (plugin {plugin!r}, {factory.__qualname__})"
    try:
        signature = inspect.signature(factory, eval_str=True)
    except NameError as exc:  # an annotation names something the module does not import
        raise PluginError(f"Cannot read the signature of {what}: {exc}.") from None
    options, positional = [], []
    for param in signature.parameters.values():
        if param.kind is param.POSITIONAL_ONLY:
            positional.append(param.name)
        elif param.kind is param.POSITIONAL_OR_KEYWORD:
            raise PluginError(
                f"Option {param.name!r} of {what} must be keyword-only: put `*,` before it in the signature, "
                "so a recipe key can only ever mean that option."
            )
        elif param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PluginError(
                f"{what} takes {'**' if param.kind is param.VAR_KEYWORD else '*'}{param.name}, which accepts "
                "anything unchecked; list the options as keyword-only, annotated parameters instead."
            )
        elif param.annotation is param.empty:
            raise PluginError(
                f"Option {param.name!r} of {what} has no type annotation; recipes are checked against it. "
                f"Annotate it, e.g. `{param.name}: int = ...` or `{param.name}: Literal['a', 'b'] = 'a'`."
            )
        else:
            options.append(Option(param.name, param.annotation, param.default))
    wanted = 1 if registration.kind == "method" else 0
    if len(positional) != wanted:
        rule = "exactly one positional-only parameter, the Parts: `def f(parts: Parts, /, *, ...)`" if wanted else (
            "no positional parameters: only keyword-only options after `*`"
        )
        raise PluginError(f"{what} must take {rule}; it takes {len(positional)}.")
    names = {o.name for o in options}
    for option in options:
        ref, options_of = option.ref, option.options_of
        if options_of is not None and (options_of not in names or _find(options, options_of).ref is None):
            raise PluginError(
                f"Option {option.name!r} of {what} holds the options of {options_of!r}, which is not an option "
                "annotated with ComponentRef."
            )
        if option.builds and ref is None:
            raise PluginError(
                f"Option {option.name!r} of {what} receives a ComponentBuilder but does not say which kind it builds: "
                f"annotate it `Annotated[ComponentBuilder, ComponentRef('discriminator')]` (or the kind it names)."
            )
        if option.builds and not (option.required or option.default is None or isinstance(option.default, str)):
            raise PluginError(
                f"Option {option.name!r} of {what} receives a ComponentBuilder; its default must be what a recipe "
                f"gives, a component name (or None), got {option.default!r}."
            )
        if ref is not None and ref.output is not None and ref.kind != "discriminator":
            raise PluginError(f"Option {option.name!r} of {what} names a {ref.kind}; only a discriminator has an "
                              f"output (ComponentRef output={ref.output!r}).")
        if ref is not None and ref.scores is not None and ref.kind != "loss":
            raise PluginError(f"Option {option.name!r} of {what} names a {ref.kind}; only a loss scores discriminator "
                              f"outputs (ComponentRef scores={ref.scores!r}).")
        tables = registration.tables if registration.tables is not None else DEFAULT_METHOD_TABLES
        if ref is not None and ref.adversarial_for is not None and ref.adversarial_for not in tables:
            raise PluginError(
                f"Option {option.name!r} of {what} scores the discriminator of table [{ref.adversarial_for}], "
                f"which the method does not declare (tables: {', '.join(tables) or 'none'})."
            )
    unknown = [key for key in registration.tiny if key not in names]
    if unknown:
        raise PluginError(f"{what} declares tiny options {unknown} that are not its options ({', '.join(names)}).")
    for table in registration.tables or {}:
        if not table.isidentifier() or table in _CORE_TABLES:
            raise PluginError(f"{what} declares the table [{table}]; a table name is an identifier other than "
                              f"{', '.join(_CORE_TABLES)}.")
    return tuple(options)


def _find(options: Iterable[Option], name: str) -> Option:
    return next(o for o in options if o.name == name)


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
        registration = getattr(factory, MARKER, None)
        if not isinstance(registration, Registration):
            raise PluginError(
                f"Plugin {plugin!r} returned {factory!r}, which is not marked as a component: "
                "decorate it with @register_generator() (or the decorator of its kind)."
            )
        kind, name = registration.kind, registration.name
        specs = self._specs.setdefault(kind, {})
        taken = specs.get(name)
        if taken is not None:
            if taken.factory is factory:
                return
            raise PluginError(
                f"The {kind} name {name!r} is registered twice: by plugin {taken.plugin!r} and by "
                f"plugin {plugin!r}. Rename one of them, or disable a plugin with "
                "TRANSLATE_KIT_DISABLE_PLUGINS=<name>."
            )
        tables = registration.tables if registration.tables is not None else DEFAULT_METHOD_TABLES
        specs[name] = ComponentSpec(
            kind, name, factory, plugin, _options(factory, registration, plugin),
            tables=dict(tables) if kind == "method" else {},
            output=registration.output, scores=registration.scores, tiny=registration.tiny,
        )

    def kinds(self) -> list[str]:
        """Every kind with at least one component, translate-kit's own kinds first."""
        return [k for k in KINDS if self._specs.get(k)] + sorted(k for k in self._specs if k not in KINDS and self._specs[k])

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted names of `kind` matching the shell-style `pattern`."""
        return sorted(fnmatch.filter(self._specs.get(kind, {}), pattern))

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        """Every registered component (of one kind, or all), sorted by kind then name."""
        kinds = [kind] if kind else self.kinds()
        return [self._specs[k][n] for k in kinds for n in sorted(self._specs.get(k, {}))]

    def get(self, kind: str, name: str, *, where: str = "") -> ComponentSpec:
        """The component `name` of `kind`; an `UnknownComponentError` with suggestions otherwise."""
        spec = self._specs.get(kind, {}).get(name)
        if spec is None:
            choices = self.names(kind)
            at = f" ({where})" if where else ""
            raise UnknownComponentError(
                f"Unknown {kind} {name!r}{at}.{did_you_mean(name, choices)} "
                f"Available: {', '.join(choices) or 'none'}. "
                "More come from plugins: `tkit plugins list`."
            )
        return spec

    def check(
        self,
        kind: str,
        table: Mapping[str, Any],
        *,
        where: str,
        fixed: Mapping[str, Any] = {},
        fixed_by: str = "the method",
        complete: bool = True,
    ) -> dict[str, Any]:
        """Validate a recipe table `{"name": ..., **kwargs}`; return the kwargs, coerced.

        An option naming a component (`ComponentRef`) is looked up, and the options an `OptionsOf`
        option holds for it are checked against that component, recursively. The names stay
        names here; `build` turns those of builder options into `ComponentBuilder`s.

        Args:
            kind: the component kind.
            table: the recipe table; `name` selects the component, the other keys are its options.
            where: where the table comes from, for messages (e.g. "recipes/x.toml, [generator]").
            fixed: options the caller sets itself (a method fixes its discriminator's in_channels);
                the table may repeat them only with the same value.
            fixed_by: who sets `fixed`, for messages.
            complete: also require every required option; False where the caller adds options
                later (the options a builder's factory passes when it calls the builder).
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
                    f"{where}, key {key!r}: {kind} {name!r} needs {key} = {value!r} here ({fixed_by} sets it), "
                    f"got {kwargs[key]!r}. Remove the key from the recipe."
                )
            kwargs[key] = value
        for key, value in list(kwargs.items()):
            option = options.get(key)
            if option is None:
                valid = ", ".join(o.describe() for o in spec.options) or "none"
                raise RecipeError(
                    f"{where}: unknown key {key!r} for {kind} {name!r}.{did_you_mean(key, options)} "
                    f"Valid keys: {valid}."
                )
            try:
                kwargs[key] = coerce(value, option.value_annotation)
            except TypeError as exc:
                raise RecipeError(f"{where}, key {key!r} of {kind} {name!r}: {exc}.") from None
            ref = option.ref
            if ref is not None and isinstance(kwargs[key], str):
                self._check_ref(ref, kwargs[key], where=f"{where}, key {key!r}")
        for option in spec.options:  # the options of a named component, once its name is known
            if option.options_of is not None and kwargs.get(option.name) is not None:
                named = options[option.options_of]
                inner = named.ref
                assert inner is not None  # checked at registration
                target = kwargs.get(named.name, named.default)
                if not isinstance(target, str):
                    raise RecipeError(
                        f"{where}, key {option.name!r}: options of a {inner.kind}, but key {named.name!r} names none. "
                        f"Name one, or remove {option.name!r}."
                    )
                inner_where = f"{where}, key {option.name!r} (options of {inner.kind} {target!r})"
                # A builder's factory passes some options when it calls the builder, which checks the whole.
                kwargs[option.name] = self.check(inner.kind, {"name": target, **kwargs[option.name]}, where=inner_where,
                                                 complete=not named.builds)
        missing = [o.name for o in spec.options if o.required and o.name not in kwargs]
        if missing and complete:
            raise RecipeError(f"{where}: {kind} {name!r} needs key(s) {', '.join(missing)}; add them to the table.")
        return kwargs

    def _check_ref(self, ref: ComponentRef, value: str, *, where: str) -> None:
        spec = self.get(ref.kind, value, where=where)
        if ref.adversarial_for is not None and spec.scores is None:
            adversarial = [s.name for s in self.specs(ref.kind) if s.scores is not None]
            raise RecipeError(
                f"{where}: {ref.kind} {value!r} is not an adversarial loss (its registration declares no "
                f"discriminator outputs it scores). Choose one of: {', '.join(adversarial) or 'none'}."
            )
        if ref.output is not None and spec.output != ref.output:
            fitting = [s.name for s in self.specs(ref.kind) if s.output == ref.output]
            raise RecipeError(
                f"{where}: {ref.kind} {value!r} (plugin {spec.plugin!r}) outputs {spec.output}, and this option needs "
                f"one that outputs {ref.output}. Choose one of: {', '.join(fitting) or 'none'}."
            )
        if ref.scores is not None and ref.scores not in (spec.scores or ()):
            fitting = [s.name for s in self.specs(ref.kind) if ref.scores in (s.scores or ())]
            scored = f"scores {', '.join(spec.scores)}" if spec.scores else "is not an adversarial loss"
            raise RecipeError(
                f"{where}: {ref.kind} {value!r} (plugin {spec.plugin!r}) {scored}, and this option needs one that "
                f"scores {ref.scores}. Choose one of: {', '.join(fitting) or 'none'}."
            )

    def check_method_tables(self, components: Mapping[str, Mapping[str, Any]], where: Callable[[str], str]) -> None:
        """Check a recipe's component tables against its method: each table must be one the method
        declares, of the declared kind, and every adversarial loss must score what its
        discriminator outputs.

        Args:
            components: recipe table -> table, `method` included.
            where: table name -> the prefix of messages about it.
        """
        method_table = components["method"]
        self.check("method", method_table, where=where("method"))
        spec = self.get("method", method_table["name"])
        for table, body in components.items():
            if table == "method":
                continue
            if table not in spec.tables:
                declared = ", ".join(f"[{t}]" for t in spec.tables) or "no table"
                raise RecipeError(
                    f"{where(table)}: unknown table.{did_you_mean(table, [*spec.tables, *_CORE_TABLES])} Method "
                    f"{spec.name!r} builds components from {declared}; the core tables are [run], [data] and [train]. "
                    "Remove the table or fix its name."
                )
            self.check(spec.tables[table], body, where=where(table))
        for option in spec.options:
            ref = option.ref
            if ref is None or ref.adversarial_for is None or ref.adversarial_for not in components:
                continue
            loss_name = method_table.get(option.name, option.default)
            d_table = components[ref.adversarial_for]
            loss = self.get(ref.kind, loss_name)
            d = self.get(spec.tables[ref.adversarial_for], d_table.get("name", ""))
            if loss.scores is not None and d.output not in loss.scores:
                fitting_losses = [s.name for s in self.specs(ref.kind) if s.scores and d.output in s.scores]
                fitting_ds = [s.name for s in self.specs(d.kind) if s.output in loss.scores]
                raise RecipeError(
                    f"{where('method')}, key {option.name!r}: loss {loss.name!r} scores discriminator outputs "
                    f"{', '.join(loss.scores)}, but {d.kind} {d.name!r} ({where(ref.adversarial_for)}) outputs "
                    f"{d.output}. Losses that score {d.output}: {', '.join(fitting_losses) or 'none'}; "
                    f"discriminators that {loss.name!r} scores: {', '.join(fitting_ds) or 'none'}."
                )

    def build(
        self,
        kind: str,
        table: Mapping[str, Any],
        *,
        where: str,
        args: tuple[Any, ...] = (),
        fixed: Mapping[str, Any] = {},
        fixed_by: str = "the method",
    ) -> Any:
        """Check `table` (see `check`) and call the factory with `*args` and the options, the
        names of builder options (`ComponentBuilder`) resolved into builders."""
        kwargs = self.check(kind, table, where=where, fixed=fixed, fixed_by=fixed_by)
        spec = self._specs[kind][table["name"]]
        kwargs = self._with_builders(spec, kwargs, where=where)
        try:
            return spec.factory(*args, **kwargs)
        except ValueError as exc:
            # A factory's own range checks ("num_downs must be >= 1") are configuration errors too.
            if isinstance(exc, TranslateKitError):
                raise
            raise RecipeError(f"{where}: {kind} {table['name']!r} rejected its options: {exc}.") from None

    def _with_builders(self, spec: ComponentSpec, kwargs: dict[str, Any], *, where: str) -> dict[str, Any]:
        """`kwargs` (checked) with a `ComponentBuilder` for every builder option's name, defaults included."""
        for option in spec.options:
            if not option.builds:
                continue
            name = kwargs.get(option.name, option.default)
            if name is None:
                kwargs[option.name] = None
                continue
            ref = option.ref
            assert ref is not None  # checked at registration
            if option.name not in kwargs:  # the factory's default must fit as a recipe's name does
                self._check_ref(ref, name, where=f"{where}, key {option.name!r} (its default)")
            holder = next((o for o in spec.options if o.options_of == option.name), None)
            options = kwargs.get(holder.name) if holder is not None else None
            at = f"{where}, key {(holder or option).name!r}"
            kwargs[option.name] = ComponentBuilder(
                ref.kind, name, self, options=dict(options or {}),
                where=f"{at} (options of {ref.kind} {name!r})" if holder is not None else at,
                by=f"{spec.kind} {spec.name!r}",
            )
        return kwargs

    def builder(self, kind: str, name: str, /, **options: Any) -> ComponentBuilder:
        """A `ComponentBuilder` for `name` of `kind` with `options`, checked now: for a builder
        option given from Python (`gman_discriminator(member=registry.builder("discriminator", "patchgan"))`).

        Raises:
            UnknownComponentError: no such component (with suggestions).
            RecipeError: an option it does not take, or a value of the wrong type.
        """
        where = f"{kind} {name!r}"
        self.check(kind, {"name": name, **options}, where=where, complete=False)  # the call may add required ones
        return ComponentBuilder(kind, name, self, options=dict(options), where=where)

    def create(self, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build a component from Python, with the same checks as a recipe table."""
        return self.build(kind, {"name": name, **kwargs}, where=f"{kind} {name!r}", args=args)


def collect_marked(plugin: object) -> Iterable[Callable[..., Any]]:
    """The marked factories defined in a plugin module or object (not those it imports)."""
    module_name = getattr(plugin, "__name__", None)
    for value in list(vars(plugin).values()) if hasattr(plugin, "__dict__") else []:
        if callable(value) and isinstance(getattr(value, MARKER, None), Registration):
            # Re-exported factories belong to the module that defines them.
            if not inspect.ismodule(plugin) or getattr(value, "__module__", None) == module_name:
                yield value
