"""Plateaus: the detector, with exactly the semantics of
``torch.optim.lr_scheduler.ReduceLROnPlateau``, and the two policies it triggers.

The detector only decides *when* a plateau fires; what to do about it is the policy's: cut the
LR (:class:`ReduceOnPlateauLR`) or run a short range test and jump to its pick
(:class:`RangeTestOnPlateauLR`). Names and the order of the updates follow torch so that the
two can be compared step for step.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainables.lr.params import (
    PlateauParams,
    RangeTestParams,
    ReduceOnPlateauParams,
    TriggerParams,
)
from trainables.lr.policy_base import LRPolicy, PolicyEvent, RangeProbe, fmt
from trainables.lr.range_test import RangeTestResult
from trainables.lr.suggest import analyse_curve, pick
from trainables.validation import build

Trigger = TriggerParams | PlateauParams
"""Any params model that holds a plateau trigger's fields."""
FIRST_LOSS_GATE = 0.3
"""The first-loss calibration replaces a pick at most this many decades above the running LR;
a pick higher up (the curve's sign of an LR far too low) and the fallback stay as they are."""
REDUCE_EPS = 1e-8
"""reduce_on_plateau changes the LR only when old - new > eps (torch's ReduceLROnPlateau)."""


class PlateauDetector:
    """Counts epochs without improvement of a metric; :meth:`step` returns True on a plateau.

    Per step, as torch does it: an improvement sets ``best`` and zeroes the bad-epoch count,
    anything else (including NaN) adds one bad epoch; during cooldown the cooldown counter is
    decremented and bad epochs are ignored; once the bad-epoch count exceeds ``patience`` the
    plateau fires, the count is zeroed and the cooldown starts.
    """

    def __init__(
        self,
        mode: str = "min",
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
    ) -> None:
        # Keywords are checked here, through the params model; from_params trusts a built one.
        self._init(
            build(
                TriggerParams,
                mode=mode,
                patience=patience,
                threshold=threshold,
                threshold_mode=threshold_mode,
                cooldown=cooldown,
            )
        )

    @classmethod
    def from_params(cls, params: Trigger, metric_mode: str = "min") -> PlateauDetector:
        """The detector of a built params model, trusted as it is: a plateau policy's params
        are read in place (``mode: null`` follows ``metric_mode``, the monitored metric's)."""
        detector = cls.__new__(cls)
        detector._init(params, metric_mode)
        return detector

    def _init(self, params: Trigger, metric_mode: str = "min") -> None:
        self.mode = params.mode or ("max" if metric_mode == "max" else "min")
        self.patience = params.patience
        self.threshold = params.threshold
        self.threshold_mode = params.threshold_mode
        self.cooldown = params.cooldown
        self._best = math.inf if self.mode == "min" else -math.inf
        self._num_bad_epochs = 0
        self._cooldown_counter = 0

    # -- state -----------------------------------------------------------------------------------
    @property
    def best(self) -> float:
        """The best metric seen so far (+inf / -inf before the first finite one)."""
        return self._best

    @property
    def num_bad_epochs(self) -> int:
        return self._num_bad_epochs

    @property
    def cooldown_counter(self) -> int:
        return self._cooldown_counter

    @property
    def in_cooldown(self) -> bool:
        return self._cooldown_counter > 0

    # -- logic -----------------------------------------------------------------------------------
    def is_better(self, a: float, best: float) -> bool:
        """Whether ``a`` improves on ``best`` by more than the threshold (never for NaN)."""
        if math.isnan(a):
            return False
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (1.0 + self.threshold)
        return a > best + self.threshold

    def step(self, metric: float) -> bool:
        """Feed one epoch's metric; True when a plateau fires on this epoch."""
        current = float(metric)
        if self.is_better(current, self._best):
            self._best = current
            self._num_bad_epochs = 0
        else:
            self._num_bad_epochs += 1

        if self.in_cooldown:
            self._cooldown_counter -= 1
            self._num_bad_epochs = 0

        if self._num_bad_epochs > self.patience:
            self._cooldown_counter = self.cooldown
            self._num_bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain python values only (the float ``best`` may be +-inf)."""
        return {
            "mode": self.mode,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "best": float(self._best),
            "num_bad_epochs": int(self._num_bad_epochs),
            "cooldown_counter": int(self._cooldown_counter),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the running state; the configuration stays the constructor's.

        A state saved in the other ``mode`` is rejected since its ``best`` would be meaningless.
        """
        missing = [k for k in ("best", "num_bad_epochs", "cooldown_counter") if k not in state]
        if missing:
            raise ValueError(f"plateau detector state is missing {', '.join(missing)}")
        if state.get("mode", self.mode) != self.mode:
            raise ValueError(
                f"plateau detector state has mode {state['mode']!r}, this detector {self.mode!r}"
            )
        self._best = float(state["best"])
        self._num_bad_epochs = int(state["num_bad_epochs"])
        self._cooldown_counter = int(state["cooldown_counter"])

    def __repr__(self) -> str:
        return (
            f"PlateauDetector(mode={self.mode!r}, patience={self.patience}, "
            f"threshold={self.threshold}, threshold_mode={self.threshold_mode!r}, "
            f"cooldown={self.cooldown}, best={self._best}, "
            f"num_bad_epochs={self._num_bad_epochs}, cooldown_counter={self._cooldown_counter})"
        )


@dataclass(frozen=True)
class RangeTestDecision:
    """What :meth:`RangeTestOnPlateauLR.decide` made of one curve."""

    suggested_lr: float | None  # the rule's raw pick (None: no suggestion)
    new_lr: float  # the LR applied: the pick or the fallback, clamped
    beta: float  # the smoothing the decision used
    why: str


class _PlateauPolicy(LRPolicy):
    """Shared plumbing: a PlateauDetector on the monitored metric and a current LR. The
    detector's ``mode: null`` follows the metric's mode."""

    params: PlateauParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector = PlateauDetector.from_params(self.params, self.metric_mode)
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
            f"epochs (best {fmt(self.detector.best)})"
        )
        at_chance = self._at_chance(metric)
        events = [self._on_plateau(epoch, plateau, probe, at_chance)]
        if at_chance:
            events.append(self._not_learning(epoch, plateau, metric))
        return events

    @abstractmethod
    def _on_plateau(
        self, epoch: int, plateau: str, probe: RangeProbe | None, at_chance: bool
    ) -> PolicyEvent:
        """The LR decision at a plateau; ``at_chance``: the metric is no better than chance."""

    def _at_chance(self, metric: float) -> bool:
        margin = self.params.chance_margin
        if margin is None or self.chance_level is None:
            return False
        return at_chance(metric, self.chance_level, self.metric_mode, margin)

    def _not_learning(self, epoch: int, plateau: str, metric: float) -> PolicyEvent:
        """The warning beside a plateau at chance; the LR is whatever the policy just chose.

        Neither the metric nor a range test's curve tells a network killed by an LR far too
        high (nothing rescues it: restart lower) from one held at chance by an LR far too low
        (a range test raises it): docs/performance.md 6b."""
        return PolicyEvent(
            epoch=epoch,
            kind="not_learning",
            reason=f"{plateau}; {self.metric_name} {fmt(metric)} is no better than chance"
            f" ({fmt(self.chance_level or 0.0)}): the run is not learning; its lr is far too"
            " high (a dead network: restart with a lower one) or far too low",
            old_lr=self._lr,
            new_lr=self._lr,
        )

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

    def _on_plateau(
        self, epoch: int, plateau: str, probe: RangeProbe | None, at_chance: bool
    ) -> PolicyEvent:
        old = self._lr
        new = max(old * self.factor, self.min_lr)
        if old - new > REDUCE_EPS:
            self._lr = new
            action = f"lr {fmt(old)} -> {fmt(new)} (x {self.factor:g}, floor {fmt(self.min_lr)})"
        else:
            new = old
            action = f"lr {fmt(old)} unchanged (within {REDUCE_EPS:g} of min_lr {fmt(self.min_lr)})"
        return PolicyEvent(
            epoch=epoch, kind="reduce", reason=f"{plateau}; {action}", old_lr=old, new_lr=new
        )


class RangeTestOnPlateauLR(_PlateauPolicy):
    """On a plateau, run a short LR range test from a snapshot and jump to the suggested LR.

    With no suggestion (no usable descent in the curve) the ``fallback`` decides:
    ``below_divergence`` (default) goes to ``factor`` x the LR where the curve began to diverge
    (keeps the LR when it never diverged), ``cut`` multiplies the LR by ``factor``, ``keep``
    keeps it, ``keep_or_raise`` keeps it unless ``factor`` x the divergence LR is higher.
    ``anchor`` (None: off) moves the pick ``pull`` decades toward ``anchor`` x the old LR, never
    past it: a small disagreement with the cut a plateau usually wants is ignored, a large one
    is kept. ``first_loss_intercept`` / ``first_loss_slope`` (None: off) replace a pick at most
    FIRST_LOSS_GATE decade above the old LR by the old LR x 10^(intercept + slope x the curve's
    first loss), below the curve's smoothed minimum: a per-optimizer calibration of how deep a
    plateau's cut should go as training progresses (``benchmarks/level_rule.py``).
    ``max_change`` (None: no limit) keeps the new LR within that factor of the old one, either
    way; ``max_raise`` (None: off) keeps it at most that factor above the old one (1: never
    raise), except at a plateau at chance, where a run held by an LR far too low needs the
    raise. The new LR is then clamped to ``[min_lr, max_lr]``; the detector's cooldown
    then applies.
    ``beta=None`` fits the smoothing to the test's length and noise (``suggest.auto_beta``). The
    default rule, ``midpoint`` (halfway, in log LR, between the steepest point and the smoothed
    minimum), won the end-to-end test on fresh seeds; ``steepest`` was closer to the oracle's
    best LR but lost final accuracy (docs/performance.md 6b).
    :meth:`decide` is the whole decision, a function of the recorded curve.
    """

    name = "range_test_on_plateau"
    params_class = RangeTestParams
    params: RangeTestParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.params
        self.measure, self.rule, self.factor, self.beta = p.measure, p.rule, p.factor, p.beta
        self.fallback, self.max_change, self.max_raise = p.fallback, p.max_change, p.max_raise
        self.anchor, self.pull = p.anchor, p.pull
        self.first_loss_fit = (
            None
            if p.first_loss_intercept is None or p.first_loss_slope is None
            else (p.first_loss_intercept, p.first_loss_slope)
        )
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

    def decide(
        self, result: RangeTestResult, old_lr: float, *, at_chance: bool = False
    ) -> RangeTestDecision:
        """The LR to continue with after the range test ``result``, from ``old_lr``.

        The rule's pick (moved toward ``anchor`` x ``old_lr`` when set; replaced by the
        first-loss calibration's LR, below the smoothed minimum, when that is set and the pick
        lies at most FIRST_LOSS_GATE decade above ``old_lr``) when the curve has a usable
        descent, else the fallback's LR; kept within ``max_change`` of ``old_lr``, at
        most ``max_raise`` x ``old_lr`` unless ``at_chance`` (the plateau's metric is no better
        than chance), clamped to ``[min_lr, max_lr]``, and never inside
        the curve's diverging part (that guard wins over the limit). A pure function of
        the curve and the policy's settings (benchmarks call it on recorded curves).
        """
        curve = analyse_curve(result.lrs, result.losses, beta=self.beta)
        suggested: float | None = None
        if curve.ok:
            target = suggested = pick(curve, self.rule)
            decision = f"range test suggested {fmt(target)} ({self.rule})"
            first = result.losses[0]
            if (
                self.first_loss_fit is not None
                and math.isfinite(first)
                and target <= old_lr * 10**FIRST_LOSS_GATE
            ):
                moved = first_loss_lr(old_lr, first, *self.first_loss_fit)
                target = min(moved, float(curve.lrs[curve.minimum]))
                decision += (
                    f", set to {fmt(target)} by the curve's first loss"
                    f" ({first:.3f}; first_loss_intercept, first_loss_slope)"
                )
            elif self.anchor is not None:
                target = pull_toward(target, old_lr * self.anchor, self.pull)
                decision += (
                    f", moved to {fmt(target)} (at most {self.pull:g} decade toward"
                    f" {self.anchor:g} x {fmt(old_lr)})"
                )
        else:
            target, how = self._fallback(old_lr, curve.diverge_lr)
            decision = f"no suggestion ({curve.reason}); fell back to {how}"
        new = target
        if self.max_raise is not None and not at_chance and new > old_lr * self.max_raise:
            new = old_lr * self.max_raise  # before max_change: the tighter bound says why
            decision += (
                ", not raised at a plateau (max_raise 1)"
                if self.max_raise == 1
                else f", raised at most x {self.max_raise:g} at a plateau (max_raise)"
            )
        if self.max_change is not None:
            low, high = old_lr / self.max_change, old_lr * self.max_change
            limited, new = new, min(max(new, low), high)
            if new != limited:
                decision += f", kept within a factor {self.max_change:g} of {fmt(old_lr)}"
        limited, new = new, min(max(new, self.min_lr), self.max_lr)
        if new != limited:
            decision += f", clamped to [{fmt(self.min_lr)}, {fmt(self.max_lr)}]"
        if curve.diverge_lr is not None and new >= curve.diverge_lr:
            new = max(curve.diverge_lr * self.factor, self.min_lr)
            decision += (
                f"; the loss diverged from {fmt(curve.diverge_lr)} on, so lr x {self.factor:g}"
                " of that"
            )
        return RangeTestDecision(suggested, new, curve.beta, decision)

    def _fallback(self, old_lr: float, diverge_lr: float | None) -> tuple[float, str]:
        """(LR, how it was chosen) when the curve gives no suggestion."""
        if self.fallback == "cut":
            return old_lr * self.factor, f"lr x {self.factor:g}"
        if self.fallback == "keep":
            return old_lr, "the same lr"
        if diverge_lr is None:  # below_divergence or keep_or_raise: nothing to go below
            return old_lr, "the same lr (the loss never diverged)"
        below = diverge_lr * self.factor
        if self.fallback == "keep_or_raise" and below <= old_lr:
            return old_lr, "the same lr"
        return below, f"{self.factor:g} x {fmt(diverge_lr)}, where the loss began to diverge"

    def _on_plateau(
        self, epoch: int, plateau: str, probe: RangeProbe | None, at_chance: bool
    ) -> PolicyEvent:
        assert probe is not None  # checked before the detector stepped
        n = self.probe_steps()
        result = probe(self.min_lr, self.max_lr, n, self.measure)
        if not isinstance(result, RangeTestResult):
            raise TypeError(f"the range-test probe returned {type(result).__name__}, not a result")
        old = self._lr
        decision = self.decide(result, old, at_chance=at_chance)
        suggested, new = decision.suggested_lr, decision.new_lr
        self._lr = new
        self._num_range_tests += 1
        return PolicyEvent(
            epoch=epoch,
            kind="range_test",
            reason=f"{plateau}; {_describe_curve(result, n)}; {decision.why}; "
            f"lr {fmt(old)} -> {fmt(new)}",
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


def chance_level(mode: str, num_classes: int) -> float:
    """A metric's value for a uniform guess over ``num_classes`` classes: ln of it for a metric
    minimised (a cross-entropy loss), its inverse for one maximised (an accuracy)."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode ({mode!r}) must be 'min' or 'max'")
    if num_classes < 2:
        raise ValueError(f"num_classes ({num_classes!r}) must be >= 2")
    return math.log(num_classes) if mode == "min" else 1.0 / num_classes


def at_chance(metric: float, chance: float, mode: str, margin: float) -> bool:
    """Whether ``metric`` is no better than a uniform guess: within ``margin`` of the way from
    the ``chance`` value to a perfect score (0 for a metric minimised, a loss; 1 for one
    maximised, an accuracy), or worse. NaN is not judged (False).

    For CIFAR-10's cross-entropy, chance is ln 10 = 2.303 and the default margin 0.02 flags
    a loss of 2.257 or more; for accuracy, chance is 0.1 and the margin flags 0.118 or less.
    A network that died in its first epochs (every output the same) sits there, and so does
    an untrained one whose LR is far too low.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode ({mode!r}) must be 'min' or 'max'")
    if not 0 <= margin < 1:
        raise ValueError(f"margin ({margin!r}) must be in [0, 1)")
    if math.isnan(metric):
        return False
    if mode == "min":
        return metric >= chance * (1 - margin)
    return metric <= chance + margin * (1 - chance)


def first_loss_lr(old_lr: float, first_loss: float, intercept: float, slope: float) -> float:
    """``old_lr`` moved by ``intercept + slope * first_loss`` decades (``first_loss``: the range
    test's loss at its lowest LR, where a step changes nothing: the loss at the state)."""
    return old_lr * 10 ** (intercept + slope * first_loss)


def pull_toward(lr: float, anchor: float, decades: float) -> float:
    """``lr`` moved ``decades`` (in log10) toward ``anchor``, stopping at ``anchor``."""
    gap = math.log10(anchor / lr)
    return lr * 10 ** math.copysign(min(abs(gap), decades), gap)


def _describe_curve(result: RangeTestResult, planned: int) -> str:
    steps = f"{len(result.lrs)}/{planned} steps, {result.images} images, {result.seconds:.1f} s"
    last = fmt(result.lrs[-1]) if result.lrs else "?"
    if result.stop_reason == "completed":
        return f"range test ran {steps}"
    if result.stop_reason == "non_finite":
        return f"range test stopped: non-finite loss at lr {last} ({steps})"
    if result.stop_reason == "diverged":
        return f"range test stopped: loss diverged at lr {last} ({steps})"
    return f"range test stopped: {result.stop_reason.replace('_', ' ')} ({steps})"
