"""Learning-rate policies behind one small interface, plus the by-name factory the sweep uses.

The trainer asks :meth:`LRPolicy.lr` before every batch, calls :meth:`LRPolicy.step_batch` after
every optimizer step and :meth:`LRPolicy.end_epoch` after validation. A policy that wants a
range test calls the ``probe`` the trainer hands it (built around
:func:`trainables.lr.range_test.run_range_test`, which restores the training state itself).
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from trainables.lr.params import (
    PARAMS,
    POLICY_NAMES,
    ConstantParams,
    CyclicalParams,
    Params,
    RangeTestParams,
    ReduceOnPlateauParams,
    param_names,
)
from trainables.lr.plateau import PlateauDetector
from trainables.lr.range_test import RangeTestResult
from trainables.lr.suggest import analyse_curve, pick
from trainables.validation import build, is_int, is_real

RangeProbe = Callable[[float, float, int, str], RangeTestResult]
"""(min_lr, max_lr, num_steps, measure) -> result; built by the trainer around run_range_test."""

EVENT_KINDS = ("range_test", "reduce")
REDUCE_EPS = 1e-8
"""reduce_on_plateau changes the LR only when old - new > eps (torch's ReduceLROnPlateau)."""


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


@dataclass(frozen=True)
class RangeTestDecision:
    """What :meth:`RangeTestOnPlateauLR.decide` made of one curve."""

    suggested_lr: float | None  # the rule's raw pick (None: no suggestion)
    new_lr: float  # the LR applied: the pick or the fallback, clamped
    beta: float  # the smoothing the decision used
    why: str


class LRPolicy(ABC):
    """The LR for the next batch, and what to do at the end of an epoch."""

    name: ClassVar[str]

    def __init__(self, *, base_lr: float, steps_per_epoch: int) -> None:
        self.base_lr = _positive("base_lr", base_lr)
        self.steps_per_epoch = _int_at_least("steps_per_epoch", steps_per_epoch, 1)
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


class ConstantLR(LRPolicy):
    """``base_lr`` throughout."""

    name = "constant"

    def __init__(
        self, *, base_lr: float, steps_per_epoch: int, params: ConstantParams | None = None
    ) -> None:
        super().__init__(base_lr=base_lr, steps_per_epoch=steps_per_epoch)
        self.params = params or ConstantParams()

    def lr(self) -> float:
        return self.base_lr


class CyclicalLR(LRPolicy):
    """Smith (2017) cyclical LR on the global iteration, between ``base_lr`` and ``max_lr``.

    Parameters: a :class:`CyclicalParams`, or its fields as keywords (validated here).
    """

    name = "cyclical"

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        params: CyclicalParams | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(base_lr=base_lr, steps_per_epoch=steps_per_epoch)
        if params is None:  # built from keywords: this is where they are checked
            params = build(CyclicalParams, **fields)
            if self.base_lr >= params.max_lr:
                raise ValueError(f"base_lr ({base_lr}) must be < max_lr ({params.max_lr})")
        self.params = params
        self.max_lr = params.max_lr
        self.mode = params.mode
        self.gamma = params.gamma
        if params.step_size_iters is not None:
            self.step_size = float(params.step_size_iters)
        else:
            self.step_size = float(params.step_size_epochs or 0.0) * self.steps_per_epoch

    def lr(self) -> float:
        it, ss = self.iteration, self.step_size
        cycle = math.floor(1 + it / (2 * ss))
        x = abs(it / ss - 2 * cycle + 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / 2.0 ** (cycle - 1)
        else:
            scale = self.gamma**it
        return self.base_lr + (self.max_lr - self.base_lr) * max(0.0, 1.0 - x) * scale


class _PlateauPolicy(LRPolicy):
    """Shared plumbing: a PlateauDetector on the monitored metric and a current LR.

    ``metric_name`` names the monitored metric in events; ``metric_mode`` is the detector's
    mode when the params leave it to the metric (``mode: null``).
    """

    params_class: ClassVar[type[ReduceOnPlateauParams] | type[RangeTestParams]]

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        params: ReduceOnPlateauParams | RangeTestParams | None = None,
        metric_name: str = "metric",
        metric_mode: str = "min",
        **fields: Any,
    ) -> None:
        super().__init__(base_lr=base_lr, steps_per_epoch=steps_per_epoch)
        if params is None:  # built from keywords: this is where they are checked
            params = build(self.params_class, **fields)
        self.params = params
        self.detector = PlateauDetector.from_params(params, metric_mode)
        self.metric_name = metric_name
        self._lr = self.base_lr
        self.num_plateaus = 0

    def lr(self) -> float:
        return self._lr

    def _check_probe(self, probe: RangeProbe | None) -> None:
        """Hook: raise if this policy cannot work with ``probe``."""

    def _end_epoch(
        self, epoch: int, metric: float | None, probe: RangeProbe | None
    ) -> list[PolicyEvent]:
        if metric is None:
            raise ValueError(
                f"policy {self.name!r} needs the monitored metric ({self.metric_name}) "
                f"at the end of every epoch, got None at epoch {epoch}"
            )
        self._check_probe(probe)
        if not self.detector.step(metric):
            return []
        self.num_plateaus += 1
        plateau = (
            f"plateau: {self.metric_name} did not improve for {self.detector.patience + 1} "
            f"epochs (best {_fmt(self.detector.best)})"
        )
        return [self._on_plateau(epoch, plateau, probe)]

    @abstractmethod
    def _on_plateau(self, epoch: int, plateau: str, probe: RangeProbe | None) -> PolicyEvent: ...

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "lr": float(self._lr),
            "num_plateaus": int(self.num_plateaus),
            "detector": self.detector.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.detector.load_state_dict(state["detector"])
        self._lr = float(state["lr"])
        self.num_plateaus = int(state["num_plateaus"])


class ReduceOnPlateauLR(_PlateauPolicy):
    """``torch.optim.lr_scheduler.ReduceLROnPlateau``: on a plateau, lr = max(lr*factor, min_lr)."""

    name = "reduce_on_plateau"
    params_class = ReduceOnPlateauParams

    @property
    def factor(self) -> float:
        return self.params.factor

    @property
    def min_lr(self) -> float:
        return self.params.min_lr

    def _on_plateau(self, epoch: int, plateau: str, probe: RangeProbe | None) -> PolicyEvent:
        old = self._lr
        new = max(old * self.factor, self.min_lr)
        if old - new > REDUCE_EPS:
            self._lr = new
            action = f"lr {_fmt(old)} -> {_fmt(new)} (x {self.factor:g}, floor {_fmt(self.min_lr)})"
        else:
            new = old
            action = (
                f"lr {_fmt(old)} unchanged (within {REDUCE_EPS:g} of min_lr {_fmt(self.min_lr)})"
            )
        return PolicyEvent(
            epoch=epoch, kind="reduce", reason=f"{plateau}; {action}", old_lr=old, new_lr=new
        )


class RangeTestOnPlateauLR(_PlateauPolicy):
    """On a plateau, run a short LR range test from a snapshot and jump to the suggested LR.

    With no suggestion (no usable descent in the curve) the LR is multiplied by ``factor``.
    The new LR is clamped to ``[min_lr, max_lr]``; the detector's cooldown then applies.
    ``beta=None`` fits the smoothing to the test's length and noise (``suggest.auto_beta``). The
    default rule, ``midpoint``, is the one ``benchmarks/oracle.py`` found closest to the best
    LR for the next 2 epochs (``steepest`` is the greedy one-step optimum: biased low).
    :meth:`decide` is the whole decision, a function of the recorded curve.
    """

    name = "range_test_on_plateau"
    params_class = RangeTestParams
    params: RangeTestParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.params
        self.measure, self.rule, self.factor, self.beta = p.measure, p.rule, p.factor, p.beta
        self.min_lr, self.max_lr, self.num_steps = p.min_lr, p.max_lr, p.num_steps
        self.epoch_fraction, self.min_steps = p.epoch_fraction, p.min_steps

    def probe_steps(self) -> int:
        """How many steps a range test takes with this policy's settings."""
        if self.num_steps is not None:
            return self.num_steps
        return max(self.min_steps, math.ceil(self.epoch_fraction * self.steps_per_epoch))

    def _check_probe(self, probe: RangeProbe | None) -> None:
        if probe is None:
            raise ValueError(
                f"policy {self.name!r} needs a range-test probe: pass "
                "end_epoch(epoch, metric, probe=...) built around run_range_test"
            )

    def decide(self, result: RangeTestResult, old_lr: float) -> RangeTestDecision:
        """The LR to continue with after the range test ``result``, from ``old_lr``.

        The rule's pick when the curve has a usable descent, else ``old_lr x factor``; clamped
        to ``[min_lr, max_lr]`` and never inside the curve's diverging part. A pure function of
        the curve and the policy's settings (benchmarks call it on recorded curves).
        """
        curve = analyse_curve(result.lrs, result.losses, beta=self.beta)
        suggested: float | None = None
        if curve.ok:
            target = suggested = pick(curve, self.rule)
            decision = f"range test suggested {_fmt(target)} ({self.rule})"
        else:
            target = old_lr * self.factor
            decision = f"no suggestion ({curve.reason}); fell back to lr x {self.factor:g}"
        new = min(max(target, self.min_lr), self.max_lr)
        if new != target:
            decision += f", clamped to [{_fmt(self.min_lr)}, {_fmt(self.max_lr)}]"
        if curve.diverge_lr is not None and new >= curve.diverge_lr:
            new = max(curve.diverge_lr * self.factor, self.min_lr)
            decision += (
                f"; the loss diverged from {_fmt(curve.diverge_lr)} on, so lr x {self.factor:g}"
                " of that"
            )
        return RangeTestDecision(suggested, new, curve.beta, decision)

    def _on_plateau(self, epoch: int, plateau: str, probe: RangeProbe | None) -> PolicyEvent:
        assert probe is not None  # checked before the detector stepped
        n = self.probe_steps()
        result = probe(self.min_lr, self.max_lr, n, self.measure)
        if not isinstance(result, RangeTestResult):
            raise TypeError(f"the range-test probe returned {type(result).__name__}, not a result")
        old = self._lr
        decision = self.decide(result, old)
        suggested, new = decision.suggested_lr, decision.new_lr
        self._lr = new
        self._num_range_tests += 1
        return PolicyEvent(
            epoch=epoch,
            kind="range_test",
            reason=f"{plateau}; {_describe_curve(result, n)}; {decision.why}; "
            f"lr {_fmt(old)} -> {_fmt(new)}",
            old_lr=old,
            new_lr=new,
            suggested_lr=suggested,
            rule=self.rule,
            beta=decision.beta,
            measure=self.measure,
            lrs=tuple(float(v) for v in result.lrs),
            losses=tuple(float(v) for v in result.losses),
            stop_reason=result.stop_reason,
            images=int(result.images),
            seconds=float(result.seconds),
        )


# -- factory -----------------------------------------------------------------------------------

_POLICIES: dict[str, type[LRPolicy]] = {
    cls.name: cls for cls in (ConstantLR, CyclicalLR, ReduceOnPlateauLR, RangeTestOnPlateauLR)
}
assert tuple(_POLICIES) == POLICY_NAMES
_TRIAL_ARGS = ("base_lr", "steps_per_epoch")


def policy_param_names(name: str) -> tuple[str, ...]:
    """The parameters a spec may set for policy ``name`` (base_lr/steps_per_epoch come from the
    trial)."""
    _policy_class(name)
    return param_names(name)


def make_policy(
    name: str,
    params: Mapping[str, Any] | Params,
    *,
    base_lr: float,
    steps_per_epoch: int,
    metric_name: str = "metric",
    metric_mode: str = "min",
) -> LRPolicy:
    """Build policy ``name`` from a validated params model (as the trial does: nothing is checked
    again) or from plain parameters (validated here; unknown names/parameters raise ValueError).
    """
    cls = _policy_class(name)
    if isinstance(params, Params):
        model = params
    else:
        valid = policy_param_names(name)
        for key in params:
            if key in _TRIAL_ARGS:
                raise ValueError(
                    f"parameter {key!r} for policy {name!r} comes from the trial, "
                    "not the policy params"
                )
            if key not in valid:
                raise ValueError(
                    f"unknown parameter {key!r} for policy {name!r} "
                    f"(valid: {', '.join(valid) or 'none'}){_did_you_mean(str(key), valid)}"
                )
        model = build(PARAMS[name], **params)
        if isinstance(model, CyclicalParams) and base_lr >= model.max_lr:
            raise ValueError(f"base_lr ({base_lr}) must be < max_lr ({model.max_lr})")
    common: dict[str, Any] = {"base_lr": base_lr, "steps_per_epoch": steps_per_epoch}
    if issubclass(cls, _PlateauPolicy):
        common.update(metric_name=metric_name, metric_mode=metric_mode)
    return cls(params=model, **common)  # type: ignore[call-arg]


def _policy_class(name: str) -> type[LRPolicy]:
    if name not in _POLICIES:
        raise ValueError(
            f"unknown policy {name!r} (valid: {', '.join(POLICY_NAMES)})"
            f"{_did_you_mean(str(name), POLICY_NAMES)}"
        )
    return _POLICIES[name]


# -- helpers -----------------------------------------------------------------------------------


def _describe_curve(result: RangeTestResult, planned: int) -> str:
    steps = f"{len(result.lrs)}/{planned} steps, {result.images} images, {result.seconds:.1f} s"
    last = _fmt(result.lrs[-1]) if result.lrs else "?"
    if result.stop_reason == "completed":
        return f"range test ran {steps}"
    if result.stop_reason == "non_finite":
        return f"range test stopped: non-finite loss at lr {last} ({steps})"
    if result.stop_reason == "diverged":
        return f"range test stopped: loss diverged at lr {last} ({steps})"
    return f"range test stopped: {result.stop_reason.replace('_', ' ')} ({steps})"


def _fmt(x: float) -> str:
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


def _did_you_mean(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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
