"""Learning-rate policies behind one small interface, plus the by-name factory the sweep uses.

The trainer asks :meth:`LRPolicy.lr` before every batch, calls :meth:`LRPolicy.step_batch` after
every optimizer step and :meth:`LRPolicy.end_epoch` after validation. A policy that wants a
range test calls the ``probe`` the trainer hands it (built around
:func:`trainables.lr.range_test.run_range_test`, which restores the training state itself).
"""

from __future__ import annotations

import difflib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any, ClassVar

from trainables.lr.plateau import PlateauDetector
from trainables.lr.range_test import RangeTestResult
from trainables.lr.suggest import (
    BETA_RANGE,
    SUGGESTION_RULES,
    analyse_curve,
    min_steps_to_suggest,
    pick,
)

RangeProbe = Callable[[float, float, int], RangeTestResult]
"""(min_lr, max_lr, num_steps) -> result; built by the trainer around run_range_test."""

EVENT_KINDS = ("range_test", "reduce")
CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")
RANGE_TEST_MEASURES = ("held_out", "train_batch")
"""What a range test records per LR: the loss on one fixed held-out batch after the step
(default, low noise), or the loss of the batch trained on (the classic finder)."""
MIN_RANGE_TEST_STEPS = min_steps_to_suggest()
"""The shortest range test that can give a suggestion at all (num_steps, min_steps)."""
REDUCE_EPS = 1e-8
"""reduce_on_plateau changes the LR only when old - new > eps (torch's ReduceLROnPlateau)."""

# The valid ranges of the range-test parameters live in these constants (and BETA_RANGE,
# SUGGESTION_RULES in trainables.lr.suggest); the checks and their messages are built from them.


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

    def __init__(self, *, base_lr: float, steps_per_epoch: int) -> None:
        super().__init__(base_lr=base_lr, steps_per_epoch=steps_per_epoch)

    def lr(self) -> float:
        return self.base_lr


class CyclicalLR(LRPolicy):
    """Smith (2017) cyclical LR on the global iteration, between ``base_lr`` and ``max_lr``.

    Give exactly one of ``step_size_epochs`` (half-cycle in epochs) and ``step_size_iters``.
    """

    name = "cyclical"

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        max_lr: float,
        mode: str = "triangular",
        step_size_epochs: float | None = 2.0,
        step_size_iters: int | None = None,
        gamma: float = 0.99994,
    ) -> None:
        super().__init__(base_lr=base_lr, steps_per_epoch=steps_per_epoch)
        self.max_lr = _positive("max_lr", max_lr)
        if self.base_lr >= self.max_lr:
            raise ValueError(f"base_lr ({base_lr}) must be < max_lr ({max_lr})")
        self.mode = _one_of("mode", mode, CYCLICAL_MODES)
        if (step_size_epochs is None) == (step_size_iters is None):
            raise ValueError(
                "give exactly one of step_size_epochs and step_size_iters "
                f"(got step_size_epochs={step_size_epochs!r}, step_size_iters={step_size_iters!r};"
                " set step_size_epochs=None to use step_size_iters)"
            )
        if step_size_iters is not None:
            self.step_size = float(_int_at_least("step_size_iters", step_size_iters, 1))
        else:
            epochs = _positive("step_size_epochs", step_size_epochs)
            self.step_size = epochs * self.steps_per_epoch
        self.gamma = _real("gamma", gamma)
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma ({gamma!r}) must be in (0, 1]")

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
    """Shared plumbing: a PlateauDetector on the monitored metric and a current LR."""

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        mode: str,
        patience: int,
        threshold: float,
        threshold_mode: str,
        cooldown: int,
        metric_name: str,
    ) -> None:
        super().__init__(base_lr=base_lr, steps_per_epoch=steps_per_epoch)
        self.detector = PlateauDetector(
            mode=mode,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
        )
        if not isinstance(metric_name, str) or not metric_name:
            raise ValueError(f"metric_name ({metric_name!r}) must be a non-empty string")
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

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        metric_name: str = "metric",
    ) -> None:
        super().__init__(
            base_lr=base_lr,
            steps_per_epoch=steps_per_epoch,
            mode=mode,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            metric_name=metric_name,
        )
        self.factor = _unit_open("factor", factor)
        self.min_lr = _non_negative("min_lr", min_lr)

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

    def __init__(
        self,
        *,
        base_lr: float,
        steps_per_epoch: int,
        mode: str = "min",
        patience: int = 3,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 2,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        num_steps: int | None = None,
        epoch_fraction: float = 0.1,
        min_steps: int = 20,
        rule: str = "midpoint",
        factor: float = 0.1,
        beta: float | None = None,
        measure: str = "held_out",
        metric_name: str = "metric",
    ) -> None:
        super().__init__(
            base_lr=base_lr,
            steps_per_epoch=steps_per_epoch,
            mode=mode,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            metric_name=metric_name,
        )
        self.measure = _one_of("measure", measure, RANGE_TEST_MEASURES)
        self.min_lr = _positive("min_lr", min_lr)
        self.max_lr = _positive("max_lr", max_lr)
        if self.min_lr >= self.max_lr:
            raise ValueError(f"min_lr ({min_lr}) must be < max_lr ({max_lr})")
        self.num_steps = None if num_steps is None else _test_steps("num_steps", num_steps)
        self.epoch_fraction = _positive("epoch_fraction", epoch_fraction)
        self.min_steps = _test_steps("min_steps", min_steps)
        self.rule = _one_of("rule", rule, SUGGESTION_RULES)
        self.factor = _unit_open("factor", factor)
        self.beta = None if beta is None else _beta(beta)

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
        result = probe(self.min_lr, self.max_lr, n)
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
POLICY_NAMES = ("constant", "cyclical", "reduce_on_plateau", "range_test_on_plateau")
assert tuple(_POLICIES) == POLICY_NAMES
_TRIAL_ARGS = ("base_lr", "steps_per_epoch")


def policy_param_names(name: str) -> tuple[str, ...]:
    """The parameters a spec may set for policy ``name`` (base_lr/steps_per_epoch come from the
    trial)."""
    cls = _policy_class(name)
    return tuple(
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _TRIAL_ARGS
    )


def make_policy(
    name: str, params: Mapping[str, Any], *, base_lr: float, steps_per_epoch: int
) -> LRPolicy:
    """Build policy ``name`` from spec parameters; unknown names/parameters raise ValueError."""
    cls = _policy_class(name)
    valid = policy_param_names(name)
    for key in params:
        if key in _TRIAL_ARGS:
            raise ValueError(
                f"parameter {key!r} for policy {name!r} comes from the trial, not the policy params"
            )
        if key not in valid:
            raise ValueError(
                f"unknown parameter {key!r} for policy {name!r} "
                f"(valid: {', '.join(valid) or 'none'}){_did_you_mean(str(key), valid)}"
            )
    kwargs = dict(params)
    if cls is CyclicalLR and "step_size_iters" in kwargs and "step_size_epochs" not in kwargs:
        kwargs["step_size_epochs"] = None  # giving the iterations replaces the default epochs
    return cls(base_lr=base_lr, steps_per_epoch=steps_per_epoch, **kwargs)


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
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"{name} ({value!r}) must be a finite number")
    return float(value)


def _positive(name: str, value: Any) -> float:
    if _real(name, value) <= 0:
        raise ValueError(f"{name} ({value!r}) must be > 0")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    if _real(name, value) < 0:
        raise ValueError(f"{name} ({value!r}) must be >= 0")
    return float(value)


def _unit_open(name: str, value: Any) -> float:
    if not 0.0 < _real(name, value) < 1.0:
        raise ValueError(f"{name} ({value!r}) must be in (0, 1)")
    return float(value)


def _test_steps(name: str, value: Any) -> int:
    if not _is_int(value) or value < MIN_RANGE_TEST_STEPS:
        raise ValueError(
            f"{name} ({value!r}) must be an int >= {MIN_RANGE_TEST_STEPS}: a shorter range test "
            "can never suggest an LR"
        )
    return int(value)


def _beta(value: Any) -> float:
    low, high = BETA_RANGE
    if not _is_real(value) or not low <= value < high:
        raise ValueError(
            f"beta ({value!r}) must be a number in [{low:g}, {high:g}) or null (auto: fitted "
            "to the test's length and noise)"
        )
    return float(value)


def _int_at_least(name: str, value: Any, low: int) -> int:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} ({value!r}) must be an int >= {low}")
    return int(value)


def _one_of(name: str, value: Any, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {name} {value!r} (valid: {', '.join(valid)})")
    return str(value)


def _is_real(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy scalars included)."""
    return isinstance(value, Integral) and not isinstance(value, bool)
