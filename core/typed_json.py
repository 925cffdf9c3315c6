"""Typed JSON messages: frozen dataclasses to JSON values and back, with every field checked against its type.

Shared by the GUI ↔ node protocol (core/protocol.py) and the data plane's control messages (core/wire/control.py).
Standard library only. A decoder never trusts its input:

- `parse_object` refuses what `json.loads` would choke on in odd ways (nesting deeper than `MAX_DEPTH`, integers
  longer than `MAX_INT_DIGITS`, NaN and infinities) with a `TypedJsonError`, never a RecursionError or a bare
  ValueError from deep inside the parser;
- `build(cls, data)` converts each known field (list → tuple, str → enum, int → float, nested dataclasses) and
  ignores unknown fields, so a newer peer may add fields; a missing required field or a wrong type is an error
  naming the field's path (``open.next.addrs[2]``). Dataclasses check their own ranges in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from typing import Any, Union

MAX_DEPTH = 32  # nesting of arrays and objects; messages here are a few levels deep
MAX_INT_DIGITS = 40  # a longer integer literal is refused before Python parses it


class TypedJsonError(ValueError):
    """A JSON text or value that does not fit the expected message; the text says what is wrong and where."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise TypedJsonError(message)


# ---- text ---------------------------------------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise TypedJsonError(f"{name} is not allowed in this JSON")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise TypedJsonError(f"an integer of {len(text)} digits is too long")
    return int(text)


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (a linear scan, before the recursive parser runs)."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_object(text: str | bytes, *, max_chars: int) -> dict[str, Any]:
    """The JSON object in `text`. Raises TypedJsonError for anything else (too long, too deep, not an object)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TypedJsonError(f"not UTF-8 text: {exc}") from None
    check(len(text) <= max_chars, f"too long ({len(text)} characters, at most {max_chars})")
    check(_depth(text) <= MAX_DEPTH, f"nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise TypedJsonError(f"not JSON ({exc.msg} at column {exc.colno}): {preview(text)}") from None
    except (ValueError, RecursionError) as exc:  # TypedJsonError from the hooks is a ValueError too
        raise TypedJsonError(str(exc) if isinstance(exc, TypedJsonError) else f"not usable JSON: {exc}") from None
    check(isinstance(data, dict), f"a message must be a JSON object, got {type(data).__name__}: {preview(text)}")
    return data


def dumps(data: dict[str, Any]) -> str:
    """Compact, ASCII-only JSON (a line never holds a raw newline). NaN and infinities are refused."""
    try:
        return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except ValueError as exc:
        raise TypedJsonError(str(exc)) from None


def preview(text: str, limit_chars: int = 80) -> str:
    return text if len(text) <= limit_chars else text[: limit_chars - 1] + "…"


# ---- values -------------------------------------------------------------------------------------------------------
def to_json(value: Any) -> Any:
    """A dataclass (and what it holds: enums, tuples, dicts) as plain JSON values."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def is_json_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, list):
        return all(is_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_value(v) for k, v in value.items())
    return False


_SCALAR_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def convert(value: Any, annotation: Any, where: str) -> Any:
    """Check one JSON value against a field's type and convert it (list -> tuple, str -> enum, int -> float)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        check(value is not None, f"{where} must not be null")
        return convert(value, inner, where)
    if annotation is Any:
        check(is_json_value(value), f"{where} must be a JSON value")
        return value
    if annotation in _SCALAR_NAMES:
        ok = isinstance(value, annotation) and (annotation is bool or not isinstance(value, bool))
        check(ok, f"{where} must be {_SCALAR_NAMES[annotation]}, got {preview(repr(value))}")
        return value
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        check(ok and math.isfinite(value), f"{where} must be a finite number, got {preview(repr(value))}")
        return float(value)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        allowed = [m.value for m in annotation]
        check(value in allowed, f"{where} must be one of {allowed}, got {preview(repr(value))}")
        return annotation(value)
    if origin is tuple:
        check(isinstance(value, list), f"{where} must be a list, got {type(value).__name__}")
        (item_type, _ellipsis) = typing.get_args(annotation)
        return tuple(convert(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        check(isinstance(value, dict), f"{where} must be an object, got {type(value).__name__}")
        check(is_json_value(value), f"{where} must hold JSON values under string keys")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        check(isinstance(value, dict), f"{where} must be an object, got {type(value).__name__}")
        return build(annotation, value, where)
    raise TypeError(f"field type {annotation!r} is not supported")  # a bug in a message class, not bad input


def build(cls: type, data: dict[str, Any], where: str) -> Any:
    """An instance of the dataclass `cls` from a JSON object; unknown fields are ignored."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = convert(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypedJsonError(f"{where}: missing field {f.name!r}")
    try:
        return cls(**kwargs)
    except TypedJsonError as exc:
        raise type(exc)(f"{where}: {exc}") from None
