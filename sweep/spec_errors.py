"""One adapter from pydantic's ``ValidationError`` to the spec's one-line messages:
``<key path>: <problem> (did you mean ...?); <what is valid>``.

The key path is the one a user writes (``policies[1].params.patience``): list indices in
brackets, the tags of discriminated unions (a policy's or a scheduler's name) left out. The
problem is worded from the error type and from the field itself (its bounds, its choices), found
by walking the models along the error's location.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from trainables.validation import did_you_mean, literals, problem_of, strip_type


def spec_error_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first error of ``exc`` (raised validating ``model``) as one line."""
    err = exc.errors()[0]
    where = _walk(model, err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "spec":  # our own errors carry their path (relative to the location)
        return f"{_join(where.path, ctx['path'])}: {ctx['problem']}"
    if kind in ("unknown_key", "unknown_kind"):
        key = str(ctx["key"])
        valid = tuple(ctx["valid"])
        last = key.rsplit(".", 1)[-1]
        what = "unknown search kind" if kind == "unknown_kind" else "unknown key"
        hint = did_you_mean(last, valid)
        return f"{_join(where.path, key)}: {what}{hint}; use one of: {', '.join(valid)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = _tags(where.type_)
        path = _join(where.path, "name")
        if kind == "union_tag_not_found":
            return f"{path}: missing; choose one of: {', '.join(tags)}"
        tag = str(ctx.get("tag"))
        return (
            f"{path}: {tag!r} is not known{did_you_mean(tag, tags)}; choose one of: "
            + ", ".join(tags)
        )
    if kind == "extra_forbidden":
        key = str(where.path[-1])
        path = _format(where.path)
        valid = tuple(k for k in where.parent.model_fields if k != "name")
        hint = did_you_mean(key, valid)
        if where.policy is not None and where.path[-2:-1] == ["params"]:
            return (
                f"{path}: unknown parameter of policy '{where.policy}'{hint}; "
                f"valid parameters: {', '.join(valid) or 'none'}"
            )
        return f"{path}: unknown key{hint}; valid keys: {', '.join(valid)}"
    return f"{_format(where.path)}: {problem_of(err, where.field)}"


# -- walking the models along an error's location ------------------------------------------------
class _Where:
    def __init__(self) -> None:
        self.path: list[str | int] = []
        self.parent: type[BaseModel] = BaseModel
        self.field: FieldInfo | None = None
        self.type_: Any = None
        self.policy: str | None = None


def _walk(model: type[BaseModel], loc: Sequence[str | int]) -> _Where:
    where = _Where()
    where.parent, where.type_ = model, model
    for el in loc:
        t = strip_type(where.type_)
        if isinstance(el, int):
            where.path.append(el)
            args = [a for a in get_args(t) if a is not Ellipsis]
            where.type_ = args[0] if args else Any
            continue
        variants = _variants(t)
        if variants and el in variants:  # a discriminated union's tag: not in the user's path
            where.type_ = variants[el]
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


def _variants(t: Any) -> dict[str, type[BaseModel]]:
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


def _tags(t: Any) -> tuple[str, ...]:
    t = strip_type(t)
    found = _variants(t)
    if not found:  # the walk stopped on the field holding the union
        args = get_args(t)
        found = _variants(args[0]) if args else {}
    return tuple(found)


# -- text ----------------------------------------------------------------------------------------
def _format(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(path: Sequence[str | int], rest: str) -> str:
    head = _format(path)
    return f"{head}.{rest}" if head and rest else head or rest
