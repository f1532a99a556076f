"""One adapter from pydantic's ``ValidationError`` to the spec's one-line messages:
``<key path>: <problem> (did you mean ...?); <what is valid>``.

The key path is the one a user writes (``policies[1].params.patience``): list indices in
brackets, the tags of discriminated unions (a policy's or a scheduler's name) left out. The
problem is worded from the error type and from the field itself (its bounds, its choices), found
by walking the models along the error's location (:func:`trainables.validation.walk`; the trial's
own command line words its errors with the same walk).
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from trainables.validation import did_you_mean, error_line, format_path, join_path, walk


def spec_error_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first error of ``exc`` (raised validating ``model``) as one line: the spec's own
    error kinds here, every other one worded by :func:`trainables.validation.error_line`."""
    err = exc.errors()[0]
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("unknown_key", "unknown_kind"):
        where = walk(model, err["loc"])
        key = str(ctx["key"])
        valid = tuple(ctx["valid"])
        what = "unknown search kind" if kind == "unknown_kind" else "unknown key"
        hint = did_you_mean(key.rsplit(".", 1)[-1], valid)
        return f"{join_path(where.path, key)}: {what}{hint}; use one of: {', '.join(valid)}"
    if kind == "extra_forbidden":
        where = walk(model, err["loc"])
        if where.policy is not None and where.path[-2:-1] == ["params"]:
            valid = tuple(k for k in where.parent.model_fields if k != "name")
            hint = did_you_mean(str(where.path[-1]), valid)
            return (
                f"{format_path(where.path)}: unknown parameter of policy '{where.policy}'{hint}; "
                f"valid parameters: {', '.join(valid) or 'none'}"
            )
    return error_line(exc, model)
