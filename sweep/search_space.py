"""A sweep spec's search space: the trial keys it may vary, how, and each value checked.

``search_space: {lr: {loguniform: [1e-4, 1e-2]}, batch_size: {grid: [50, 100]}, num_samples: 2}``
becomes :class:`SearchSpec` (one :class:`SearchDim` per key) and then Tune's domains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from trainables.config import TrialConfig
from trainables.lr.params import keyed_error as fail

#: TrialConfig fields a search space may vary. The policy, its parameters and the seed are the
#: sweep's own axes; the data fields are fixed because the driver splits the data once.
SEARCHABLE = (
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "optimizer",
    "batch_size",
    "epochs",
    "model",
    "augment",
)
SEARCH_KINDS = ("grid", "choice", "loguniform", "uniform")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SearchDim(_Closed):
    key: str
    kind: Literal["grid", "choice", "loguniform", "uniform"]
    values: tuple[Any, ...]  # the list for grid/choice, (lo, hi) for the distributions

    def domain(self) -> Any:
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        return tune.uniform(*self.values)

    @property
    def finite(self) -> tuple[Any, ...]:
        """The values to check a trial with: all of a list, both ends of a range."""
        return self.values


class SearchSpec(_Closed):
    dims: tuple[SearchDim, ...] = ()
    num_samples: int = Field(1, ge=1)

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.dims if d.kind == "grid")

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        """``{lr: {loguniform: [lo, hi]}, num_samples: 2}`` -> dims and num_samples."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping) or "dims" in raw:
            return raw
        dims = []
        for key, value in raw.items():
            if key == "num_samples":
                continue
            if key not in SEARCHABLE:
                if key in TrialConfig.model_fields:
                    raise fail(
                        str(key),
                        f"'{key}' cannot be searched (policies, seeds and data are the sweep's "
                        f"own axes); searchable keys: {', '.join(SEARCHABLE)}",
                    )
                raise PydanticCustomError(
                    "unknown_key", "{key}", {"key": key, "valid": (*SEARCHABLE, "num_samples")}
                )
            if not isinstance(value, Mapping) or len(value) != 1:
                raise fail(str(key), f"must have exactly one of {', '.join(SEARCH_KINDS)}")
            kind, values = next(iter(value.items()))
            dims.append(_search_dim(str(key), kind, values))
        return {"dims": tuple(dims), "num_samples": raw.get("num_samples", 1)}


def _search_dim(key: str, kind: Any, values: Any) -> SearchDim:
    path = f"{key}.{kind}"
    if kind not in SEARCH_KINDS:
        raise PydanticCustomError(
            "unknown_kind", "{key}", {"key": f"{key}.{kind}", "valid": SEARCH_KINDS}
        )
    if not isinstance(values, list):
        raise fail(path, f"must be a list, got {values!r}")
    if kind in ("grid", "choice"):
        if not values:
            raise fail(path, "empty list expands to zero trials; give >= 1 value")
        return SearchDim(key=key, kind=kind, values=tuple(values))
    if len(values) != 2:
        raise fail(path, f"must be [low, high], got {values!r}")
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise fail(f"{path}[{j}]", f"must be a number, got {v!r}")
    lo, hi = float(values[0]), float(values[1])
    if not lo < hi:
        raise fail(path, f"low must be < high, got {values!r}")
    if kind == "loguniform" and lo <= 0:
        raise fail(path, f"low must be > 0 for a log scale, got {lo:g}")
    return SearchDim(key=key, kind=kind, values=(lo, hi))


def search_value(key: str, value: Any, where: str) -> Any:
    """One value a search dimension can give, checked as the trial field it sets."""
    field = TrialConfig.model_fields[key]
    try:
        form: Any = Annotated[field.annotation, field]
        adapter: TypeAdapter[Any] = TypeAdapter(form, config=_Closed.model_config)
        return adapter.validate_python(value)
    except ValidationError as exc:
        from trainables.validation import problem_of

        raise fail(where, problem_of(exc.errors()[0], field)) from None
