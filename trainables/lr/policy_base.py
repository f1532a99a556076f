"""The interface every LR policy implements, and the events a policy emits.

The trainer asks :meth:`LRPolicy.lr` before every batch, calls :meth:`LRPolicy.step_batch` after
every optimizer step and :meth:`LRPolicy.end_epoch` after validation. A policy that wants a
range test calls the ``probe`` the trainer hands it (built around
:func:`trainables.lr.range_test.run_range_test`, which restores the training state itself).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from trainables.lr.params import Params
from trainables.lr.range_test import RangeTestResult
from trainables.validation import build, is_int, is_real

RangeProbe = Callable[[float, float, int, str], RangeTestResult]
"""(min_lr, max_lr, num_steps, measure) -> result; built by the trainer around run_range_test."""

EVENT_KINDS = ("range_test", "reduce", "not_learning")


@dataclass(frozen=True)
class PolicyEvent:
    """One LR decision taken at the end of an epoch, with the range-test curve if there was one."""

    epoch: int
    kind: str
    reason: str
    old_lr: float
    new_lr: float
    suggested_lr: float | None = None
    rule: str | None = None
    beta: float | None = None
    measure: str | None = None
    lrs: tuple[float, ...] = ()
    losses: tuple[float, ...] = ()
    stop_reason: str | None = None
    images: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r} (valid: {', '.join(EVENT_KINDS)})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain values: tuples become lists, non-finite floats become None."""
        return {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}


class LRPolicy(ABC):
    """The LR for the next batch, and what to do at the end of an epoch."""

    name: ClassVar[str]

    params_class: ClassVar[type[Params]]

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        params: Params | None = None,
        metric_name: str = "metric",
        metric_mode: str = "min",
        chance_level: float | None = None,
        **fields: Any,
    ) -> None:
        """``params``: the policy's validated params model, used as it is (a trial's); without
        it, ``fields`` are its parameters as keywords, checked here. The trial also gives every
        policy the running LR, the epoch's length and the monitored metric handed to
        :meth:`end_epoch` (its name for events; its mode for a plateau trigger whose ``mode``
        follows the metric); ``chance_level`` is that metric's value for a uniform guess (ln of
        the number of classes for a cross-entropy loss, its inverse for an accuracy; None:
        unknown)."""
        self.base_lr = _positive("base_lr", base_lr)
        self.steps_per_epoch = _int_at_least("steps_per_epoch", steps_per_epoch, 1)
        self.metric_name = metric_name
        self.metric_mode = metric_mode
        self.chance_level = None if chance_level is None else _real("chance_level", chance_level)
        self.params = params if params is not None else build(self.params_class, **fields)
        self.iteration = 0
        self.events: list[PolicyEvent] = []
        self._num_range_tests = 0

    @abstractmethod
    def lr(self) -> float:
        """The LR to use for the next batch."""

    def step_batch(self) -> None:
        """Called after every optimizer step: advances the global iteration counter."""
        self.iteration += 1

    def end_epoch(
        self, epoch: int, metric: float | None, probe: RangeProbe | None = None
    ) -> list[PolicyEvent]:
        """React to the epoch's monitored metric; returns this call's events (also kept)."""
        new_events = self._end_epoch(epoch, metric, probe)
        self.events.extend(new_events)
        return new_events

    def _end_epoch(
        self, epoch: int, metric: float | None, probe: RangeProbe | None
    ) -> list[PolicyEvent]:
        return []

    @property
    def num_range_tests(self) -> int:
        return self._num_range_tests

    def state_dict(self) -> dict[str, Any]:
        """Plain python values only (safe for ``torch.load(weights_only=True)``); no events."""
        return {
            "policy": self.name,
            "iteration": int(self.iteration),
            "num_range_tests": int(self._num_range_tests),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("policy") != self.name:
            raise ValueError(f"state is for policy {state.get('policy')!r}, not {self.name!r}")
        self.iteration = int(state["iteration"])
        self._num_range_tests = int(state["num_range_tests"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr():.4g}, iteration={self.iteration})"


# -- helpers -----------------------------------------------------------------------------------


def fmt(x: float) -> str:
    """Compact number: 3.2e-4, 0.05, 1.5, inf."""
    if not math.isfinite(x) or x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _real(name: str, value: Any) -> float:
    if not is_real(value) or not math.isfinite(value):
        raise ValueError(f"{name} ({value!r}) must be a finite number")
    return float(value)


def _positive(name: str, value: Any) -> float:
    if _real(name, value) <= 0:
        raise ValueError(f"{name} ({value!r}) must be > 0")
    return float(value)


def _int_at_least(name: str, value: Any, low: int) -> int:
    if not is_int(value) or value < low:
        raise ValueError(f"{name} ({value!r}) must be an int >= {low}")
    return int(value)
