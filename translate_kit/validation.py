"""Check recipe values against type annotations.

Recipes come from TOML, which knows strings, integers, floats, booleans, arrays and tables. A
component's keyword arguments and the core config dataclasses are annotated with ordinary Python
types; `coerce(value, annotation)` checks a TOML value against such an annotation and returns it in
the annotated shape (an array becomes a tuple where a tuple is expected, an int a float where a float
is expected). It raises `TypeError` with "expected X, got Y"; callers add the file, table and key.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

__all__ = ["coerce", "describe"]

_NONE = type(None)


def describe(annotation: Any) -> str:
    """A short human name for a type annotation: `int`, `float or None`, `one of 'a', 'b'`.

    Example:
        >>> describe(typing.Optional[int])
        'int or None'
    """
    if annotation is Any or annotation is typing.Any:
        return "any value"
    if typing.get_origin(annotation) is Annotated:  # metadata (a ComponentRef, ...) is for the registry
        return describe(annotation.__origin__)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("None" if a is _NONE else describe(a) for a in args)
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"an array of {len(args)} values ({', '.join(describe(a) for a in args)})"
        inner = describe(args[0]) if args else "values"
        return f"an array of {inner}"
    if origin is dict or annotation is dict:
        return "a table"
    return getattr(annotation, "__name__", str(annotation))


def _type_name(value: Any) -> str:
    return type(value).__name__


def coerce(value: Any, annotation: Any) -> Any:
    """Return `value` checked against `annotation`, converted where TOML cannot say it exactly.

    Args:
        value: a value parsed from TOML.
        annotation: a resolved type annotation (no strings).

    Raises:
        TypeError: the value does not fit; the message reads "expected X, got V (type)".

    Example:
        >>> coerce([0.5, 0.999], tuple[float, float])
        (0.5, 0.999)
        >>> coerce(2, float)
        2.0
    """
    if annotation is Any or annotation is typing.Any or annotation is object:
        return value
    if typing.get_origin(annotation) is Annotated:
        return coerce(value, annotation.__origin__)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        # Compare types too: TOML's `true` must not match a Literal[1].
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise TypeError(f"expected {describe(annotation)}, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return coerce(value, arg)
            except TypeError:
                continue
        raise TypeError(f"expected {describe(annotation)}, got {value!r} ({_type_name(value)})")
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected {describe(annotation)}, got {value!r} ({_type_name(value)})")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise TypeError(f"expected {describe(annotation)}, got {len(value)} values: {list(value)!r}")
            items = [coerce(v, a) for v, a in zip(value, args)]
        else:
            items = [coerce(v, args[0]) for v in value] if args else list(value)
        return tuple(items) if (origin or annotation) is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table, got {value!r} ({_type_name(value)})")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        try:  # e.g. pathlib.Path from a TOML string
            if isinstance(value, str):
                return annotation(value)
        except Exception:  # noqa: BLE001 - any failure means "does not fit"
            pass
    else:
        return value  # an annotation we cannot check (a TypeVar, a Protocol): accept
    raise TypeError(f"expected {describe(annotation)}, got {value!r} ({_type_name(value)})")
