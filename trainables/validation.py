"""One-line messages for pydantic validation errors: what is wrong with a value, worded from
the error and from the field (its bounds, its choices) -- ``must be >= 6, got 4``.

The LR core, the trial's own command line and the sweep spec all word their errors here.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo


def is_real(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy scalars included)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def build(model: type[BaseModel], **fields: Any) -> Any:
    """``model(**fields)``, or a ValueError of one line: ``<key>: <problem>``."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise ValueError(error_line(exc, model)) from None


def error_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first error of ``model`` as ``<key path>: <problem>`` (nested models followed)."""
    err = exc.errors()[0]
    where = walk(model, err["loc"])
    if err["type"] == "spec":  # our own errors carry their path, relative to the location
        return f"{join_path(where.path, err['ctx']['path'])}: {err['ctx']['problem']}"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tags = union_tags(where.type_)
        path = join_path(where.path, "name")
        if err["type"] == "union_tag_not_found":
            return f"{path}: missing; choose one of: {', '.join(tags)}"
        tag = str((err.get("ctx") or {}).get("tag"))
        return f"{path}: {tag!r} is not known{did_you_mean(tag, tags)}; choose one of: " + (
            ", ".join(tags)
        )
    key = format_path(where.path) or model.__name__
    if err["type"] == "extra_forbidden" and where.path:
        valid = tuple(k for k in where.parent.model_fields if k != "name")
        hint = did_you_mean(str(where.path[-1]), valid)
        return f"{key}: unknown key{hint}; valid keys: {', '.join(valid)}"
    return f"{key}: {problem_of(err, where.field)}"


class Where:
    """Where an error's location leads: the key path a user writes (list indices kept, the
    tags of discriminated unions left out), the model holding the last key, its field."""

    def __init__(self) -> None:
        self.path: list[str | int] = []
        self.parent: type[BaseModel] = BaseModel
        self.field: FieldInfo | None = None
        self.type_: Any = None
        self.policy: str | None = None


def walk(model: type[BaseModel], loc: Sequence[str | int]) -> Where:
    """Follow ``loc`` (a pydantic error's location) through ``model`` and its nested models."""
    where = Where()
    where.parent, where.type_ = model, model
    for el in loc:
        t = strip_type(where.type_)
        if isinstance(el, int):
            where.path.append(el)
            args = [a for a in get_args(t) if a is not Ellipsis]
            where.type_ = args[0] if args else Any
            continue
        tagged = variants(t)
        if tagged and el in tagged:  # a discriminated union's tag: not in the user's path
            where.type_ = tagged[el]
            if "params" in where.type_.model_fields or where.type_.__name__.endswith("Params"):
                where.policy = el if where.policy is None else where.policy
            continue
        where.path.append(el)
        if isinstance(t, type) and issubclass(t, BaseModel) and el in t.model_fields:
            where.parent = t
            where.field = t.model_fields[el]
            where.type_ = where.field.annotation
        else:
            if isinstance(t, type) and issubclass(t, BaseModel):
                where.parent = t
            where.field, where.type_ = None, Any
    return where


def variants(t: Any) -> dict[str, type[BaseModel]]:
    """A union of models discriminated by ``name``: tag -> model."""
    if get_origin(t) not in (typing.Union, types.UnionType):
        return {}
    out = {}
    for arg in get_args(t):
        arg = strip_type(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel) and "name" in arg.model_fields:
            for tag in literals(arg.model_fields["name"].annotation):
                out[tag] = arg
    return out


def union_tags(t: Any) -> tuple[str, ...]:
    """The tags of the discriminated union ``t`` (or of the one it holds)."""
    t = strip_type(t)
    found = variants(t)
    if not found:  # the walk stopped on the field holding the union
        args = get_args(t)
        found = variants(args[0]) if args else {}
    return tuple(found)


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def join_path(path: Sequence[str | int], rest: str) -> str:
    head = format_path(path)
    return f"{head}.{rest}" if head and rest else head or rest


def problem_of(err: Any, field: FieldInfo | None) -> str:
    """The problem of one error on one field, without the path."""
    kind = err["type"]
    got = show(err.get("input"))
    nullable = field is not None and _nullable(field.annotation)
    if kind == "missing":
        return "missing"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"must be a number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {got}"
    if kind in ("string_type", "string_too_short"):
        return f"must be a non-empty string, got {got}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys, got {got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {got}"
    if kind == "too_short":
        return "empty list"
    if kind == "string_pattern_mismatch":
        return f"must be letters, digits, '.', '_' or '-' (it names folders and runs), got {got}"
    if kind == "literal_error":
        choices = literals(field.annotation) if field is not None else ()
        value = str(err.get("input"))
        return f"{got} is not known{did_you_mean(value, choices)}; choose one of: " + ", ".join(
            choices
        )
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        text = f"must be {_bounds(field)}{' or null' if nullable else ''}, got {got}"
        if field is not None and field.description:
            text += f" ({field.description})"
        return text
    return " ".join(str(err.get("msg", kind)).split())


def strip_type(t: Any) -> Any:
    """The type under Annotated / Optional."""
    while get_origin(t) is typing.Annotated:
        t = get_args(t)[0]
    if get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        if len(args) == 1:
            return strip_type(args[0])
    return t


def literals(annotation: Any) -> tuple[str, ...]:
    t = strip_type(annotation)
    if get_origin(t) is Literal:
        return tuple(str(a) for a in get_args(t))
    return ()


def _nullable(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in get_args(
        annotation
    )


def _constraints(field: FieldInfo | None) -> list[Any]:
    """The field's constraint objects, also those inside ``Annotated`` in its type."""
    if field is None:
        return []
    found = list(field.metadata)
    stack = [field.annotation]
    while stack:
        t = stack.pop()
        if get_origin(t) is typing.Annotated:
            args = get_args(t)
            for m in args[1:]:
                found += list(getattr(m, "metadata", [m]))
            stack.append(args[0])
        elif get_origin(t) in (typing.Union, types.UnionType):
            stack += list(get_args(t))
    return found


def _bounds(field: FieldInfo | None) -> str:
    low = high = None
    for m in _constraints(field):
        for attr, side in (("gt", "("), ("ge", "[")):
            if getattr(m, attr, None) is not None:
                low = (side, getattr(m, attr))
        for attr, side in (("lt", ")"), ("le", "]")):
            if getattr(m, attr, None) is not None:
                high = (side, getattr(m, attr))
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {low[1]:g}"
    if high:
        return f"{'<' if high[0] == ')' else '<='} {high[1]:g}"
    return "in range"


def did_you_mean(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 60 else f"{text[:57]}..."
