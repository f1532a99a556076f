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
    """The first error of ``model`` (nested models followed) as ``<key.path>: <problem>``."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "spec":  # our own errors carry their path, relative to the location
        return f"{'.'.join([*loc, err['ctx']['path']])}: {err['ctx']['problem']}"
    key = ".".join(loc) or model.__name__
    parent, field = _walk(model, loc)
    if err["type"] == "extra_forbidden" and parent is not None:
        valid = tuple(k for k in parent.model_fields if k != "name")
        hint = did_you_mean(loc[-1], valid)
        return f"{key}: unknown key{hint}; valid keys: {', '.join(valid)}"
    return f"{key}: {problem_of(err, field)}"


def _walk(model: type[BaseModel], loc: Sequence[str]) -> tuple[type[BaseModel] | None, Any]:
    """The model holding the last key of ``loc`` and that key's field (None where unknown).
    A discriminated union's tag in ``loc`` selects the member whose ``name`` it is."""
    parent: type[BaseModel] | None = model
    field: FieldInfo | None = None
    i = 0
    while i < len(loc):
        if parent is None:
            return None, None
        field = parent.model_fields.get(loc[i])
        i += 1
        if i == len(loc) or field is None:
            break
        inner = strip_type(field.annotation)
        members = [m for m in get_args(inner) if isinstance(m, type) and issubclass(m, BaseModel)]
        tagged = [
            m
            for m in members
            if "name" in m.model_fields and loc[i] in literals(m.model_fields["name"].annotation)
        ]
        if tagged:
            parent, i = tagged[0], i + 1
            if i == len(loc):
                return parent, None
        else:
            parent = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return parent, field


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
