"""The range test's policy: on a plateau, a short LR range test from a snapshot, and the LR to
continue with read from its curve (:meth:`RangeTestOnPlateauLR.decide`, a pure function of the
curve and the policy's settings), with its fallbacks, limits and optional corrections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainables.lr.params import RangeTestParams
from trainables.lr.plateau import PlateauPolicy
from trainables.lr.policy_base import PolicyEvent, RangeProbe, fmt
from trainables.lr.range_test import RangeTestResult
from trainables.lr.suggest import analyse_curve, pick

FIRST_LOSS_GATE = 0.3
"""The first-loss calibration replaces a pick at most this many decades above the running LR;
a pick higher up (the curve's sign of an LR far too low) and the fallback stay as they are."""


@dataclass(frozen=True)
class RangeTestDecision:
    """What :meth:`RangeTestOnPlateauLR.decide` made of one curve."""

    suggested_lr: float | None  # the rule's raw pick (None: no suggestion)
    new_lr: float  # the LR applied: the pick or the fallback, clamped
    beta: float  # the smoothing the decision used
    why: str


class RangeTestOnPlateauLR(PlateauPolicy):
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
    raise; below 1, e.g. 0.3, every test cuts at least that deep and the pick only chooses a
    deeper cut), except at a plateau at chance, where a run held by an LR far too low needs the
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
                if self.max_raise > 1
                else f", cut to x {self.max_raise:g} at a plateau (max_raise {self.max_raise:g}:"
                " every test cuts at least that deep)"
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
