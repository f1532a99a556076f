"""LR policies: formulas, plateau behaviour, fallback/clamping, state round-trips, validation."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from helpers import suggest_lr

from trainables.lr import (
    POLICY_NAMES,
    ConstantLR,
    CyclicalLR,
    LRPolicy,
    PolicyEvent,
    RangeTestOnPlateauLR,
    RangeTestResult,
    ReduceOnPlateauLR,
    analyse_curve,
    lr_ladder,
    make_policy,
    policy_param_names,
    suggest_lr_with_reason,
)
from trainables.lr.params import MIN_RANGE_TEST_STEPS
from trainables.lr.policy_base import fmt
from trainables.lr.range_test_policy import first_loss_lr, pull_toward

# -- fake probes -------------------------------------------------------------------------------


class FakeProbe:
    """Returns a synthetic curve on the requested ladder; records the calls it got."""

    def __init__(self, shape: str = "u", stop_reason: str = "completed") -> None:
        self.shape = shape
        self.stop_reason = stop_reason
        self.calls: list[tuple[float, float, int]] = []

    def __call__(
        self, min_lr: float, max_lr: float, num_steps: int, measure: str = "held_out"
    ) -> RangeTestResult:
        self.calls.append((min_lr, max_lr, num_steps))
        lrs = lr_ladder(min_lr, max_lr, num_steps)
        t = np.linspace(0.0, 1.0, num_steps)
        if self.shape == "u":  # steepest descent at t = 0.4
            losses = 2.0 - np.tanh((t - 0.4) / 0.08) + np.exp(8.0 * (t - 1.0))
        elif self.shape == "flat":
            losses = np.full(num_steps, 1.7)
        else:  # rising
            losses = 1.0 + t**2
        return RangeTestResult(
            lrs=tuple(lrs.tolist()),
            losses=tuple(losses.tolist()),
            stop_reason=self.stop_reason,
            images=num_steps * 8,
            seconds=0.01,
        )


def fixed_probe(lrs: np.ndarray, losses: np.ndarray) -> Callable[[float, float, int], Any]:
    """A probe that ignores the requested range (e.g. to force a suggestion outside it)."""

    def probe(min_lr: float, max_lr: float, num_steps: int, measure: str) -> RangeTestResult:
        return RangeTestResult(tuple(lrs.tolist()), tuple(losses.tolist()), "completed", 0, 0.0)

    return probe


def plateau_now(policy: LRPolicy, probe: Any = None) -> list[PolicyEvent]:
    """Two identical metrics with patience 0 make the plateau fire on the second."""
    assert policy.end_epoch(0, 1.0, probe) == []
    return policy.end_epoch(1, 1.0, probe)


# -- constant / cyclical -----------------------------------------------------------------------


def test_constant() -> None:
    policy = ConstantLR(base_lr=3e-4, steps_per_epoch=10)
    for _ in range(25):
        assert policy.lr() == 3e-4
        policy.step_batch()
    assert policy.end_epoch(0, 1.0) == [] and policy.end_epoch(1, None) == []
    assert policy.iteration == 25 and policy.events == [] and policy.num_range_tests == 0


def lr_at(policy: LRPolicy, iteration: int) -> float:
    policy.iteration = iteration
    return policy.lr()


# base 0.001, max 0.006, half-cycle 10 iterations; values worked out by hand from Smith (2017)
@pytest.mark.parametrize(
    ("mode", "iteration", "expected"),
    [
        ("triangular", 0, 0.001),
        ("triangular", 5, 0.0035),
        ("triangular", 10, 0.006),
        ("triangular", 15, 0.0035),
        ("triangular", 20, 0.001),
        ("triangular", 30, 0.006),
        ("triangular2", 0, 0.001),
        ("triangular2", 5, 0.0035),
        ("triangular2", 10, 0.006),
        ("triangular2", 20, 0.001),
        ("triangular2", 25, 0.00225),
        ("triangular2", 30, 0.0035),
        ("triangular2", 50, 0.00225),
        ("exp_range", 0, 0.001),
        ("exp_range", 5, 0.001 + 0.005 * 0.5 * 0.99**5),
        ("exp_range", 10, 0.001 + 0.005 * 0.99**10),
        ("exp_range", 20, 0.001),
        ("exp_range", 30, 0.001 + 0.005 * 0.99**30),
    ],
)
def test_cyclical_formulas(mode: str, iteration: int, expected: float) -> None:
    by_iters = CyclicalLR(
        base_lr=0.001,
        steps_per_epoch=5,
        max_lr=0.006,
        mode=mode,
        step_size_epochs=None,
        step_size_iters=10,
        gamma=0.99,
    )
    by_epochs = CyclicalLR(
        base_lr=0.001, steps_per_epoch=5, max_lr=0.006, mode=mode, step_size_epochs=2.0, gamma=0.99
    )
    assert lr_at(by_iters, iteration) == pytest.approx(expected, rel=1e-12)
    assert lr_at(by_epochs, iteration) == pytest.approx(expected, rel=1e-12)


def test_cyclical_steps_per_batch_and_ignores_epochs() -> None:
    policy = CyclicalLR(base_lr=0.1, steps_per_epoch=4, max_lr=0.5, step_size_epochs=1.0)
    seen = []
    for epoch in range(2):
        for _ in range(4):
            seen.append(policy.lr())
            policy.step_batch()
        assert policy.end_epoch(epoch, 1.0) == []
    assert seen == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.4, 0.3, 0.2])


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclical_round_trip_mid_cycle(mode: str) -> None:
    def make() -> CyclicalLR:
        return CyclicalLR(
            base_lr=1e-3, steps_per_epoch=7, max_lr=1e-2, mode=mode, step_size_epochs=1.5
        )

    policy = make()
    for _ in range(13):  # half-cycle 10.5: saved on the way down
        policy.step_batch()
    resumed = make()
    resumed.load_state_dict(policy.state_dict())
    fresh = make()
    trace, resumed_trace, fresh_trace = [], [], []
    for _ in range(60):
        trace.append(policy.lr())
        resumed_trace.append(resumed.lr())
        fresh_trace.append(fresh.lr())
        for p in (policy, resumed, fresh):
            p.step_batch()
    assert resumed_trace == trace
    assert fresh_trace != trace


# -- reduce on plateau -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_reduce_on_plateau_matches_torch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kwargs: dict[str, Any] = {
        "mode": str(rng.choice(["min", "max"])),
        "patience": int(rng.integers(0, 4)),
        "cooldown": int(rng.integers(0, 3)),
        "threshold": 1e-3,
        "threshold_mode": str(rng.choice(["rel", "abs"])),
    }
    factor, min_lr = 0.5, 1e-3
    policy = ReduceOnPlateauLR(
        base_lr=0.1, steps_per_epoch=3, factor=factor, min_lr=min_lr, **kwargs
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        factor=factor,
        min_lr=min_lr,
        **kwargs,  # torch's default eps, 1e-8
    )
    metrics = np.round(1.0 + np.cumsum(rng.normal(0.0, 0.02, 80)), 2).tolist()
    reductions = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch, metric in enumerate(metrics):
            events = policy.end_epoch(epoch, metric)
            sched.step(metric)
            assert policy.lr() == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
            reductions += sum(e.new_lr < e.old_lr for e in events)
    assert all(e.kind == "reduce" for e in policy.events)
    assert reductions == sum(e.new_lr < e.old_lr for e in policy.events)


@pytest.mark.parametrize(
    ("base_lr", "factor", "min_lr"),
    [
        (1.5e-8, 0.5, 0.0),  # old - new = 7.5e-9 <= eps: torch keeps the LR
        (2.0e-8, 0.5, 0.0),  # old - new = 1e-8, not > eps: kept
        (2.2e-8, 0.5, 0.0),  # 1.1e-8 > eps: reduced
        (1e-3, 0.5, 1e-3 - 5e-9),  # floored just below the LR: a change of 5e-9, kept
        (1e-3, 0.1, 0.0),
    ],
)
def test_reduce_on_plateau_changes_lr_only_by_more_than_eps(
    base_lr: float, factor: float, min_lr: float
) -> None:
    policy = ReduceOnPlateauLR(
        base_lr=base_lr, steps_per_epoch=1, patience=0, factor=factor, min_lr=min_lr
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, patience=0, factor=factor, min_lr=min_lr
    )
    for epoch in range(4):
        policy.end_epoch(epoch, 1.0)
        sched.step(1.0)
        assert policy.lr() == optimizer.param_groups[0]["lr"], epoch


def test_reduce_event_and_floor() -> None:
    policy = ReduceOnPlateauLR(
        base_lr=0.1, steps_per_epoch=2, patience=0, factor=0.1, min_lr=0.005, metric_name="val_acc"
    )
    (event,) = plateau_now(policy)
    assert (event.kind, event.old_lr, event.new_lr) == ("reduce", 0.1, pytest.approx(0.01))
    assert "plateau: val_acc did not improve for 1 epochs" in event.reason
    assert policy.end_epoch(2, 1.0)[0].new_lr == 0.005  # floored at min_lr
    last = policy.end_epoch(3, 1.0)[0]
    assert last.new_lr == last.old_lr == 0.005 and "unchanged (within 1e-08" in last.reason
    assert policy.num_range_tests == 0 and len(policy.events) == 3


# -- range test on plateau ---------------------------------------------------------------------


def make_rtp(**kwargs: Any) -> RangeTestOnPlateauLR:
    args: dict[str, Any] = {
        "base_lr": 1e-2,
        "steps_per_epoch": 50,
        "patience": 0,
        "cooldown": 0,
        "min_lr": 1e-5,
        "max_lr": 1.0,
        "metric_name": "val_loss",
    }
    args.update(kwargs)
    return RangeTestOnPlateauLR(**args)


def test_range_test_event_uses_suggestion() -> None:
    probe = FakeProbe("u")
    policy = make_rtp(num_steps=60)
    (event,) = plateau_now(policy, probe)
    assert probe.calls == [(1e-5, 1.0, 60)]
    assert event.kind == "range_test" and event.rule == "midpoint"  # the default
    assert event.suggested_lr is not None and policy.lr() == event.new_lr == event.suggested_lr
    assert event.old_lr == 1e-2
    assert len(event.lrs) == 60 and event.images == 480 and event.stop_reason == "completed"
    assert "val_loss did not improve for 1 epochs" in event.reason
    assert "range test suggested" in event.reason and "(midpoint)" in event.reason
    assert policy.num_range_tests == 1 and policy.events == [event]


def test_fallback_when_no_descent() -> None:
    policy = make_rtp(factor=0.1, fallback="cut")
    (event,) = plateau_now(policy, FakeProbe("flat"))
    assert event.suggested_lr is None
    assert event.new_lr == pytest.approx(1e-3) and policy.lr() == event.new_lr
    assert "no suggestion (no usable descent); fell back to lr x 0.1" in event.reason
    assert policy.num_range_tests == 1
    # the default goes below where the loss diverged; a flat curve never did: the LR stays
    (event,) = plateau_now(make_rtp(factor=0.1), FakeProbe("flat"))
    assert event.new_lr == event.old_lr == 1e-2
    assert "fell back to the same lr (the loss never diverged)" in event.reason


def test_fallback_never_lands_where_the_curve_diverged() -> None:
    # the loss rises from the first steps on: x 0.1 of the running LR (1e-3) lies far inside the
    # diverging part, so the LR goes to x 0.1 of where the divergence began instead
    policy = make_rtp(factor=0.1, fallback="cut")
    probe = FakeProbe("rising")
    (event,) = plateau_now(policy, probe)
    curve = analyse_curve(event.lrs, event.losses)
    assert event.suggested_lr is None and curve.diverge_lr is not None
    assert event.new_lr == pytest.approx(max(curve.diverge_lr * 0.1, 1e-5))
    assert event.new_lr < curve.diverge_lr and policy.lr() == event.new_lr
    assert "the loss diverged from" in event.reason


def _no_descent_curve(diverge_at: float | None) -> RangeTestResult:
    """20 steps over 1e-6..1: flat (tiny noise, no descent), blowing up from ``diverge_at``."""
    lrs = lr_ladder(1e-6, 1.0, 20)
    noise = np.random.default_rng(0).normal(0.0, 1e-4, 20)
    losses = 1.5 + noise
    if diverge_at is not None:
        losses = np.where(lrs >= diverge_at, 1.5 * (lrs / diverge_at) ** 0.5 + 0.5, losses)
    return RangeTestResult(tuple(lrs.tolist()), tuple(losses.tolist()), "completed", 0, 0.0)


@pytest.mark.parametrize(
    ("fallback", "diverge_at", "old_lr", "expected", "says"),
    [
        ("cut", None, 1e-3, 1e-4, "fell back to lr x 0.1"),
        ("cut", 1e-1, 1e-3, 1e-4, "fell back to lr x 0.1"),
        ("keep", None, 1e-3, 1e-3, "fell back to the same lr"),
        ("keep", 1e-1, 1e-3, 1e-3, "fell back to the same lr"),
        # 0.1 x where the loss diverged: up from a running LR far below it, down from one near it
        ("below_divergence", 1e-1, 1e-3, "0.1 x diverge", "where the loss began to diverge"),
        ("below_divergence", 3e-3, 1e-3, "0.1 x diverge", "where the loss began to diverge"),
        ("below_divergence", None, 1e-3, 1e-3, "the same lr (the loss never diverged)"),
        # keep, or go up to 0.1 x where the loss diverged -- never down
        ("keep_or_raise", 1e-1, 1e-3, "0.1 x diverge", "where the loss began to diverge"),
        ("keep_or_raise", 3e-3, 1e-3, 1e-3, "fell back to the same lr"),
        ("keep_or_raise", None, 1e-3, 1e-3, "fell back to the same lr"),
        # a running LR inside the diverging part is never kept, whatever the fallback
        ("keep", 1e-4, 1e-3, "0.1 x diverge", "the loss diverged from"),
        ("keep_or_raise", 1e-4, 1e-3, "0.1 x diverge", "the loss diverged from"),
    ],
)
def test_no_descent_fallbacks(
    fallback: str, diverge_at: float | None, old_lr: float, expected: Any, says: str
) -> None:
    result = _no_descent_curve(diverge_at)
    curve = analyse_curve(result.lrs, result.losses)
    assert not curve.ok and (curve.diverge_lr is None) == (diverge_at is None)
    if expected == "0.1 x diverge":
        assert curve.diverge_lr is not None
        expected = 0.1 * curve.diverge_lr
        if says.startswith("where"):
            says = f"{fmt(curve.diverge_lr)}, {says}"
    policy = make_rtp(fallback=fallback, min_lr=1e-6, max_change=None)  # the fallback alone
    decision = policy.decide(result, old_lr)
    assert decision.suggested_lr is None
    assert decision.new_lr == pytest.approx(expected) and says in decision.why


def _u_curve_pick() -> tuple[RangeTestResult, float]:
    """A 20-step U curve over 1e-6..1 and the default rule's pick on it."""
    result = FakeProbe("u")(1e-6, 1.0, 20)
    pick = make_rtp(min_lr=1e-6).decide(result, 1e-3).suggested_lr
    assert pick is not None
    return result, pick


@pytest.mark.parametrize(
    ("max_change", "old_over_pick", "expected_over_pick", "says"),
    [
        (None, 1e-3, 1.0, None),  # no limit: the pick, 3 decades up
        (10.0, 1e-3, 1e-2, "kept within a factor 10 of"),  # up by 10 at most
        (10.0, 1e3, 1e2, "kept within a factor 10 of"),  # down by 10 at most
        (10.0, 0.2, 1.0, None),  # within the limit: the pick
        (100.0, 1e-3, 1e-1, "kept within a factor 100 of"),
    ],
)
def test_max_change_limits_one_tests_move(
    max_change: float | None, old_over_pick: float, expected_over_pick: float, says: str | None
) -> None:
    result, pick = _u_curve_pick()
    old = pick * old_over_pick
    decision = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=max_change).decide(result, old)
    assert decision.suggested_lr == pytest.approx(pick)  # the raw pick is reported unchanged
    assert decision.new_lr == pytest.approx(pick * expected_over_pick)
    assert (says is None) == ("kept within" not in decision.why)
    if says is not None:
        assert f"{says} {fmt(old)}" in decision.why


@pytest.mark.parametrize(
    ("max_raise", "old_over_pick", "at_chance", "expected_over_pick", "says"),
    [
        (None, 1e-1, False, 1.0, None),  # off: the pick, a decade up
        (1.0, 1e-1, False, 1e-1, "not raised at a plateau (max_raise 1)"),  # kept
        (2.0, 1e-1, False, 2e-1, "raised at most x 2 at a plateau (max_raise)"),
        (1.0, 10.0, False, 1.0, None),  # a cut is never limited by it
        (1.0, 1e-1, True, 1.0, None),  # at chance: the raise a too-low LR needs
        (1.0, 1.0, False, 1.0, None),  # the pick is the running LR: nothing to limit
        # below 1, a floor under the cut: the pick only chooses a deeper one
        (0.3, 1e-1, False, 3e-2, "cut to x 0.3 at a plateau (max_raise 0.3"),
        (0.3, 1.0, False, 0.3, "cut to x 0.3 at a plateau (max_raise 0.3"),  # would keep
        (0.3, 2.0, False, 0.6, "cut to x 0.3 at a plateau (max_raise 0.3"),  # x 0.5 cut
        (0.3, 10.0, False, 1.0, None),  # a x 0.1 cut is deeper: the pick stands
        (0.3, 1e-1, True, 1.0, None),  # at chance: the raise a too-low LR needs
    ],
)
def test_max_raise_limits_a_raise_unless_at_chance(
    max_raise: float | None,
    old_over_pick: float,
    at_chance: bool,
    expected_over_pick: float,
    says: str | None,
) -> None:
    result, pick = _u_curve_pick()
    old = pick * old_over_pick
    policy = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=None, max_raise=max_raise)
    decision = policy.decide(result, old, at_chance=at_chance)
    assert decision.suggested_lr == pytest.approx(pick)  # the raw pick is reported unchanged
    assert decision.new_lr == pytest.approx(pick * expected_over_pick)
    assert (says is None) == ("at a plateau" not in decision.why)
    if says is not None:
        assert says in decision.why


def test_max_raise_says_why_once_when_max_change_would_also_bind() -> None:
    result, pick = _u_curve_pick()
    policy = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=10.0, max_raise=1.0)
    decision = policy.decide(result, pick / 1e3)  # the pick is 1,000 x the running LR
    assert decision.new_lr == pytest.approx(pick / 1e3)
    assert "not raised at a plateau" in decision.why and "kept within" not in decision.why
    wider = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=10.0, max_raise=100.0)
    decision = wider.decide(result, pick / 1e3)  # max_raise 100 lets max_change bind
    assert decision.new_lr == pytest.approx(pick / 1e2)
    assert "raised at most x 100" in decision.why and "kept within a factor 10" in decision.why


def test_max_raise_limits_the_fallback_too() -> None:
    # no descent; the loss diverged from ~1e-1, so below_divergence falls back to ~1e-2, a raise
    # from 1e-3 that max_raise 1 refuses
    result = _no_descent_curve(1e-1)
    free = make_rtp(min_lr=1e-6, max_change=None).decide(result, 1e-3)
    assert free.suggested_lr is None and free.new_lr > 1e-3
    kept = make_rtp(min_lr=1e-6, max_change=None, max_raise=1.0).decide(result, 1e-3)
    assert kept.new_lr == pytest.approx(1e-3) and "not raised" in kept.why
    cut = make_rtp(min_lr=1e-6, max_change=None, max_raise=0.3).decide(result, 1e-3)
    assert cut.new_lr == pytest.approx(3e-4) and "cut to x 0.3 at a plateau" in cut.why


def test_max_raise_reads_the_plateau_at_chance_from_the_metric() -> None:
    """Through end_epoch: the same curve is raised at chance (val loss 2.30 of ln 10 = 2.303)
    and kept at a learning plateau (val loss 1.2)."""
    for metric, raised in ((2.30, True), (1.2, False)):
        policy = make_rtp(
            base_lr=1e-5,
            min_lr=1e-6,
            max_lr=1.0,
            max_change=None,
            max_raise=1.0,
            chance_level=math.log(10),
        )
        assert policy.end_epoch(0, metric, probe=FakeProbe("u")) == []
        events = policy.end_epoch(1, metric, probe=FakeProbe("u"))
        test = next(e for e in events if e.kind == "range_test")
        assert (test.new_lr > 1e-5) == raised, (metric, test.reason)
        assert ("not_learning" in [e.kind for e in events]) == raised


def test_max_change_never_overrides_the_bounds_or_the_divergence_guard() -> None:
    # the running LR (1e-3) lies where the curve diverged (from ~1e-4): keeping it within x 10
    # would still train in the diverging part, so the LR goes to 0.1 x the divergence LR
    result = _no_descent_curve(1e-4)
    curve = analyse_curve(result.lrs, result.losses)
    assert curve.diverge_lr is not None
    decision = make_rtp(fallback="keep", max_change=10.0, min_lr=1e-6).decide(result, 1e-3)
    assert decision.new_lr == pytest.approx(0.1 * curve.diverge_lr)
    assert decision.new_lr < 1e-4  # more than the limit's x 10 below the running LR
    # max_lr still clamps what the limit allows
    u_result, pick = _u_curve_pick()
    policy = make_rtp(min_lr=1e-9, max_lr=pick / 10, max_change=10.0)
    assert policy.decide(u_result, pick / 100).new_lr == pytest.approx(pick / 10)


@pytest.mark.parametrize(
    ("anchor", "pull", "old_over_pick", "expected_over_pick"),
    [
        (None, 0.25, 10.0, 1.0),  # off: the pick
        (0.3, 0.25, 5.0, 1.5),  # the anchor (0.3 x old) is 0.18 decade up: stop there
        (0.3, 0.25, 100.0, 10**0.25),  # the anchor is 1.5 decades up: move 0.25 of them
        (0.3, 0.25, 1.0, 10**-0.25),  # the anchor is 0.52 decade down: move 0.25 down
        (0.3, 0.5, 1.0, 10**-0.5),
        (0.3, 0.5, 1 / 0.3, 1.0),  # the pick is the anchor: unchanged
        (1.0, 2.0, 10.0, 10.0),  # anchor x 1 is the running LR itself
    ],
)
def test_anchor_moves_the_pick_toward_a_cut_of_the_running_lr(
    anchor: float | None, pull: float, old_over_pick: float, expected_over_pick: float
) -> None:
    result, pick = _u_curve_pick()
    old = pick * old_over_pick
    policy = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=None, anchor=anchor, pull=pull)
    decision = policy.decide(result, old)
    assert decision.suggested_lr == pytest.approx(pick)  # the raw pick is reported unchanged
    assert decision.new_lr == pytest.approx(pick * expected_over_pick)
    assert ("toward" in decision.why) == (anchor is not None)


@pytest.mark.parametrize(
    ("lr", "anchor", "decades", "expected"),
    [
        (1e-3, 1e-2, 0.25, 10**-2.75),
        (1e-3, 1e-4, 0.5, 10**-3.5),
        (1e-3, 2e-3, 0.5, 2e-3),  # never past the anchor
        (1e-3, 1e-3, 0.5, 1e-3),
    ],
)
def test_pull_toward(lr: float, anchor: float, decades: float, expected: float) -> None:
    assert pull_toward(lr, anchor, decades) == pytest.approx(expected)


def test_anchor_never_overrides_the_limit_or_the_divergence_guard() -> None:
    result, pick = _u_curve_pick()
    # the anchor pulls 0.5 decade up, then max_change (x 2) still bounds the move
    policy = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=2.0, anchor=1.0, pull=0.5)
    assert policy.decide(result, pick * 1e3).new_lr == pytest.approx(pick * 1e3 / 2)
    # a descent, then a blow-up far above the start: an anchor inside the diverging part is
    # never reached, the guard cuts below where the loss began to diverge
    t = np.linspace(0.0, 1.0, 20)
    losses = 2.0 - np.tanh((t - 0.4) / 0.08) + 6.0 * np.exp(12.0 * (t - 0.65))
    blowup = fixed_probe(lr_ladder(1e-6, 1.0, 20), losses)(1e-6, 1.0, 20, "held_out")
    curve = analyse_curve(blowup.lrs, blowup.losses)
    assert curve.ok and curve.diverge_lr is not None
    old = curve.diverge_lr * 3
    policy = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=None, anchor=1.0, pull=2.0)
    decision = policy.decide(blowup, old)
    assert decision.suggested_lr is not None and decision.suggested_lr < curve.diverge_lr
    assert decision.new_lr == pytest.approx(curve.diverge_lr * 0.1)


@pytest.mark.parametrize(
    ("old_over_pick", "first_loss", "expected_over_old", "says"),
    [
        (1.0, 1.0, 10 ** (-1.1 + 0.45), True),  # the pick keeps the LR: the fit sets the cut
        (2.0, 2.0, 10 ** (-1.1 + 0.9), True),  # a pick 0.3 decade below the old LR
        (1 / 1.9, 1.0, 10 ** (-1.1 + 0.45), True),  # +0.28 decade: within the gate
        (1 / 10.0, 1.0, 10.0, False),  # +1 decade: the curve says the LR is far too low
        (1.0, math.nan, 1.0, False),  # no first loss: the pick
    ],
)
def test_the_first_loss_fit_replaces_a_pick_within_the_gate(
    old_over_pick: float, first_loss: float, expected_over_old: float, says: bool
) -> None:
    result, pick = _u_curve_pick()
    result = dataclasses.replace(result, losses=(first_loss, *result.losses[1:]))
    old = pick * old_over_pick
    fit = {"first_loss_intercept": -1.1, "first_loss_slope": 0.45}
    decision = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=None, **fit).decide(result, old)
    assert decision.suggested_lr == pytest.approx(pick)  # the raw pick is reported unchanged
    assert decision.new_lr == pytest.approx(old * expected_over_old)
    assert ("by the curve's first loss" in decision.why) is says


def test_the_first_loss_fit_stays_below_the_smoothed_minimum_and_leaves_a_decline_alone() -> None:
    result, pick = _u_curve_pick()
    curve = analyse_curve(result.lrs, result.losses)
    smoothed_min = float(curve.lrs[curve.minimum])
    # a fit that would raise the LR 2.5 decades: bounded by where the smoothed loss bottoms out
    policy = make_rtp(
        min_lr=1e-9,
        max_lr=1e3,
        max_change=None,
        first_loss_intercept=2.5,
        first_loss_slope=0.0,
    )
    assert policy.decide(result, pick).new_lr == pytest.approx(smoothed_min)
    # no descent: the fallback decides, as without the fit
    flat = _no_descent_curve(1e-1)
    with_fit = policy.decide(flat, 1e-3)
    without = make_rtp(min_lr=1e-9, max_lr=1e3, max_change=None).decide(flat, 1e-3)
    assert with_fit.suggested_lr is None
    assert with_fit.new_lr == pytest.approx(without.new_lr)


@pytest.mark.parametrize(
    ("old", "first", "intercept", "slope", "expected"),
    [(1e-3, 1.0, -1.0, 0.5, 10**-3.5), (0.02, 2.0, -1.23, 0.42, 0.02 * 10**-0.39)],
)
def test_first_loss_lr(
    old: float, first: float, intercept: float, slope: float, expected: float
) -> None:
    assert first_loss_lr(old, first, intercept, slope) == pytest.approx(expected)


def test_event_carries_the_smoothing_and_the_measure() -> None:
    (event,) = plateau_now(make_rtp(num_steps=40), FakeProbe("u"))
    assert event.measure == "held_out"
    assert event.beta == analyse_curve(event.lrs, event.losses).beta  # the automatic beta
    (event,) = plateau_now(make_rtp(num_steps=40, beta=0.3, measure="train_batch"), FakeProbe())
    assert (event.beta, event.measure) == (0.3, "train_batch")
    assert event.to_dict()["beta"] == 0.3 and event.to_dict()["measure"] == "train_batch"


def test_shortest_range_test_can_suggest_and_one_step_less_cannot() -> None:
    n = MIN_RANGE_TEST_STEPS
    lrs = lr_ladder(1e-5, 1.0, n)
    descent = np.linspace(2.0, 1.0, n)  # a clean descent over the whole ladder
    assert suggest_lr(lrs, descent) is not None
    value, reason = suggest_lr_with_reason(lrs[1:], descent[1:])
    assert value is None and "too few" in reason
    RangeTestOnPlateauLR(base_lr=1e-3, steps_per_epoch=10, num_steps=n, min_steps=n)
    for key in ("num_steps", "min_steps"):
        with pytest.raises(ValueError) as info:
            RangeTestOnPlateauLR(base_lr=1e-3, steps_per_epoch=10, **{key: n - 1})
        assert f"{key}: must be >= {n}" in str(info.value) and f"got {n - 1}" in str(info.value)
        assert "can never suggest" in str(info.value)


def test_stop_reason_is_described() -> None:
    (event,) = plateau_now(make_rtp(num_steps=30), FakeProbe("u", stop_reason="non_finite"))
    assert event.stop_reason == "non_finite"
    assert "range test stopped: non-finite loss at lr 1" in event.reason
    (event,) = plateau_now(make_rtp(num_steps=30), FakeProbe("u", stop_reason="diverged"))
    assert "loss diverged at lr" in event.reason


def test_new_lr_is_clamped_to_range() -> None:
    low_lrs = np.geomspace(1e-9, 1e-7, 40)  # every suggestion would be below min_lr
    t = np.linspace(0.0, 1.0, 40)
    losses = 2.0 - np.tanh((t - 0.5) / 0.1)
    policy = make_rtp(min_lr=1e-5, max_change=None)
    (event,) = plateau_now(policy, fixed_probe(low_lrs, losses))
    assert event.suggested_lr is not None and event.suggested_lr < 1e-7
    assert event.new_lr == policy.lr() == 1e-5
    assert "clamped to [1e-5, 1]" in event.reason

    high = make_rtp(base_lr=50.0, max_lr=1.0)  # fallback 50 x 0.1 = 5 > max_lr
    (event,) = plateau_now(high, FakeProbe("flat"))
    assert event.new_lr == high.lr() == 1.0
    low = make_rtp(base_lr=2e-5, min_lr=1e-5, fallback="cut")  # fallback 2e-6 < min_lr
    (event,) = plateau_now(low, FakeProbe("rising"))
    assert event.new_lr == low.lr() == 1e-5


def test_probe_steps_from_epoch_fraction() -> None:
    probe = FakeProbe("u")
    plateau_now(make_rtp(steps_per_epoch=1000, epoch_fraction=0.05, min_steps=20), probe)
    plateau_now(make_rtp(steps_per_epoch=100, epoch_fraction=0.05, min_steps=20), probe)
    plateau_now(make_rtp(steps_per_epoch=1001, epoch_fraction=0.1, num_steps=33), probe)
    plateau_now(make_rtp(steps_per_epoch=999, epoch_fraction=0.1), probe)
    assert [n for _, _, n in probe.calls] == [50, 20, 33, 100]


def test_cooldown_applies_after_range_test() -> None:
    probe = FakeProbe("u")
    policy = make_rtp(patience=0, cooldown=2)
    fired = [bool(policy.end_epoch(e, 1.0, probe)) for e in range(8)]
    assert fired == [False, True, False, False, True, False, False, True]
    assert policy.num_range_tests == 3 and len(probe.calls) == 3


def test_missing_probe_or_metric_is_an_error() -> None:
    policy = make_rtp()
    with pytest.raises(ValueError, match="needs a range-test probe"):
        policy.end_epoch(0, 1.0)
    with pytest.raises(ValueError, match="needs the monitored metric"):
        policy.end_epoch(0, None, FakeProbe())
    with pytest.raises(ValueError, match="needs the monitored metric"):
        ReduceOnPlateauLR(base_lr=0.1, steps_per_epoch=1).end_epoch(0, None)


def test_event_to_dict_is_json_safe() -> None:
    event = PolicyEvent(
        epoch=3,
        kind="range_test",
        reason="r",
        old_lr=0.1,
        new_lr=0.01,
        suggested_lr=None,
        rule="steepest",
        lrs=(1e-3, 1e-2, 1e-1),
        losses=(2.0, math.nan, math.inf),
        stop_reason="non_finite",
        images=96,
        seconds=0.5,
    )
    d = event.to_dict()
    assert d["losses"] == [2.0, None, None] and d["lrs"] == [1e-3, 1e-2, 1e-1]
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    with pytest.raises(ValueError, match="'grow'"):
        PolicyEvent(epoch=0, kind="grow", reason="", old_lr=1.0, new_lr=1.0)


# -- every policy: state round-trip ------------------------------------------------------------

POLICY_FACTORIES: dict[str, Callable[[], LRPolicy]] = {
    "constant": lambda: ConstantLR(base_lr=0.01, steps_per_epoch=4),
    "cyclical": lambda: CyclicalLR(
        base_lr=0.001, steps_per_epoch=4, max_lr=0.01, mode="triangular2", step_size_epochs=1.5
    ),
    "reduce_on_plateau": lambda: ReduceOnPlateauLR(
        base_lr=0.1, steps_per_epoch=4, patience=1, cooldown=2, factor=0.5, min_lr=1e-4
    ),
    "range_test_on_plateau": lambda: RangeTestOnPlateauLR(
        base_lr=0.1,
        steps_per_epoch=4,
        patience=1,
        cooldown=2,
        min_lr=1e-4,
        max_lr=1.0,
        min_steps=25,
    ),
}
# improves, plateaus (fires at 3), cooldown 4-5, improves, plateaus again ...
METRICS = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.8, 0.85, 0.84, 0.86, 0.7, 0.75, 0.74, 0.73, 0.72]


def run_epochs(
    policy: LRPolicy, epochs: list[tuple[int, float]], probe: Any
) -> tuple[list[float], list[dict[str, Any]]]:
    """Drive a policy like the trainer does; returns the per-batch lrs and the events."""
    lrs: list[float] = []
    events: list[dict[str, Any]] = []
    for epoch, metric in epochs:
        for _ in range(policy.steps_per_epoch):
            lrs.append(policy.lr())
            policy.step_batch()
        events += [
            {k: v for k, v in e.to_dict().items() if k != "seconds"}
            for e in policy.end_epoch(epoch, metric, probe)
        ]
    return lrs, events


def assert_plain(value: Any, path: str = "state") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{path}: key {k!r}"
            assert_plain(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{path}[{i}]")
    else:
        assert value is None or type(value) in (int, float, str, bool), f"{path}: {type(value)}"


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_state_round_trip_continues_identically(name: str) -> None:
    make = POLICY_FACTORIES[name]
    epochs = list(enumerate(METRICS))
    policy = make()
    _, head_events = run_epochs(policy, epochs[:5], FakeProbe())
    if isinstance(policy, ReduceOnPlateauLR | RangeTestOnPlateauLR):
        assert head_events and policy.detector.in_cooldown  # saved mid-cooldown
    state = policy.state_dict()
    assert_plain(state)

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.state_dict() == state
    assert resumed.lr() == policy.lr() and resumed.num_range_tests == policy.num_range_tests

    tail = run_epochs(policy, epochs[5:], FakeProbe())
    assert run_epochs(resumed, epochs[5:], FakeProbe()) == tail
    # the resumed state matters: a fresh instance on the same tail behaves differently
    if name != "constant":
        assert run_epochs(make(), epochs[5:], FakeProbe()) != tail
    if name in ("reduce_on_plateau", "range_test_on_plateau"):
        assert len(tail[1]) == 2  # the continuation saw plateaus too


def test_load_state_rejects_other_policy() -> None:
    state = ConstantLR(base_lr=0.1, steps_per_epoch=1).state_dict()
    with pytest.raises(ValueError, match="state is for policy 'constant', not 'cyclical'"):
        POLICY_FACTORIES["cyclical"]().load_state_dict(state)


# -- factory -----------------------------------------------------------------------------------


def test_policy_names_and_params() -> None:
    assert POLICY_NAMES == ("constant", "cyclical", "reduce_on_plateau", "range_test_on_plateau")
    assert policy_param_names("constant") == ()
    assert policy_param_names("cyclical") == (
        "max_lr",
        "mode",
        "step_size_epochs",
        "step_size_iters",
        "gamma",
    )
    assert {
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lr",
    } <= set(policy_param_names("reduce_on_plateau"))
    rtp = set(policy_param_names("range_test_on_plateau"))
    assert {"num_steps", "epoch_fraction", "min_steps", "rule", "max_lr", "beta"} <= rtp
    assert not rtp & {"base_lr", "steps_per_epoch"}


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_make_policy_builds_each(name: str) -> None:
    params: dict[str, Any] = {"max_lr": 0.1} if name == "cyclical" else {}
    policy = make_policy(name, params, base_lr=0.01, steps_per_epoch=10)
    assert policy.name == name and policy.lr() == 0.01


def test_make_policy_passes_params() -> None:
    policy = make_policy(
        "reduce_on_plateau", {"patience": 0, "factor": 0.5}, base_lr=0.2, steps_per_epoch=3
    )
    assert isinstance(policy, ReduceOnPlateauLR)
    assert plateau_now(policy)[0].new_lr == pytest.approx(0.1)
    # step_size_iters alone replaces the default step_size_epochs
    cyc = make_policy(
        "cyclical", {"max_lr": 0.006, "step_size_iters": 10}, base_lr=0.001, steps_per_epoch=3
    )
    assert lr_at(cyc, 10) == pytest.approx(0.006)


def test_make_policy_unknown_name_and_param() -> None:
    with pytest.raises(ValueError) as info:
        make_policy("cyclic", {}, base_lr=0.1, steps_per_epoch=1)
    assert "unknown policy 'cyclic'" in str(info.value)
    assert all(n in str(info.value) for n in POLICY_NAMES)
    with pytest.raises(ValueError) as info:
        make_policy("reduce_on_plateau", {"patiense": 3}, base_lr=0.1, steps_per_epoch=1)
    message = str(info.value)
    assert message.startswith(
        "unknown parameter 'patiense' for policy 'reduce_on_plateau' (did you mean 'patience'?); "
        "valid: mode, threshold"
    )
    with pytest.raises(ValueError, match=r"'base_lr'.*comes from the trial"):
        make_policy("constant", {"base_lr": 0.1}, base_lr=0.1, steps_per_epoch=1)
    with pytest.raises(ValueError, match=r"unknown parameter 'max_lr' for policy 'constant'"):
        make_policy("constant", {"max_lr": 1.0}, base_lr=0.1, steps_per_epoch=1)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "bad"),
    [
        ("constant", {}, None),  # baseline: base_lr below is the culprit
        ("cyclical", {"max_lr": 0.001}, "base_lr (0.01) must be < max_lr (0.001)"),
        ("cyclical", {"max_lr": 0.1, "mode": "sine"}, "mode: 'sine' is not known"),
        ("cyclical", {"max_lr": 0.1, "step_size_iters": 5, "step_size_epochs": 2.0}, "exactly one"),
        ("cyclical", {"max_lr": 0.1, "step_size_epochs": None}, "exactly one"),
        (
            "cyclical",
            {"max_lr": 0.1, "step_size_epochs": 0.0},
            "step_size_epochs: must be > 0 or null, got 0.0",
        ),
        (
            "cyclical",
            {"max_lr": 0.1, "step_size_epochs": None, "step_size_iters": 0},
            "step_size_iters: must be >= 1 or null, got 0",
        ),
        ("cyclical", {"max_lr": 0.1, "gamma": 1.5}, "gamma: must be in (0, 1], got 1.5"),
        ("cyclical", {"max_lr": 0.1, "gamma": 0.0}, "gamma: must be in (0, 1], got 0.0"),
        ("reduce_on_plateau", {"patience": -1}, "patience: must be >= 0, got -1"),
        (
            "reduce_on_plateau",
            {"mode": "maximum"},
            "mode: 'maximum' is not known (did you mean 'max'?)",
        ),
        ("reduce_on_plateau", {"threshold_mode": "pct"}, "threshold_mode: 'pct' is not known"),
        ("reduce_on_plateau", {"factor": 1.0}, "factor: must be in (0, 1), got 1.0"),
        ("reduce_on_plateau", {"factor": 0.0}, "factor: must be in (0, 1), got 0.0"),
        ("reduce_on_plateau", {"factor": -0.5}, "factor: must be in (0, 1), got -0.5"),
        ("reduce_on_plateau", {"min_lr": -1e-3}, "min_lr: must be >= 0, got -0.001"),
        ("reduce_on_plateau", {"cooldown": -1}, "cooldown: must be >= 0, got -1"),
        ("reduce_on_plateau", {"threshold": -1.0}, "threshold: must be >= 0, got -1.0"),
        (
            "reduce_on_plateau",
            {"metric_name": ""},
            "unknown parameter 'metric_name' for policy 'reduce_on_plateau'; valid: mode",
        ),
        (
            "range_test_on_plateau",
            {"min_lr": 0.1, "max_lr": 0.01},
            "min_lr: must be < max_lr (0.01), got 0.1",
        ),
        ("range_test_on_plateau", {"min_lr": 0.0}, "min_lr: must be > 0, got 0.0"),
        ("range_test_on_plateau", {"patience": -2}, "patience: must be >= 0, got -2"),
        ("range_test_on_plateau", {"patience": 2.5}, "patience: must be an integer, got 2.5"),
        ("range_test_on_plateau", {"mode": "up"}, "mode: 'up' is not known"),
        (
            "range_test_on_plateau",
            {"rule": "fastest"},
            "rule: 'fastest' is not known (did you mean 'steepest'?)",
        ),
        ("range_test_on_plateau", {"factor": 1.5}, "factor: must be in (0, 1), got 1.5"),
        ("range_test_on_plateau", {"num_steps": 1}, "num_steps: must be >= 6 or null, got 1"),
        ("range_test_on_plateau", {"num_steps": 5}, "num_steps: must be >= 6 or null, got 5"),
        ("range_test_on_plateau", {"num_steps": 8.0}, "num_steps: must be an integer, got 8.0"),
        ("range_test_on_plateau", {"min_steps": 0}, "min_steps: must be >= 6, got 0"),
        ("range_test_on_plateau", {"epoch_fraction": 0.0}, "epoch_fraction: must be > 0, got 0.0"),
        ("range_test_on_plateau", {"beta": 1.0}, "beta: must be in [0, 1) or null, got 1.0"),
        ("range_test_on_plateau", {"beta": -0.1}, "beta: must be in [0, 1) or null, got -0.1"),
        ("range_test_on_plateau", {"beta": "auto"}, "beta: must be a number, got 'auto'"),
        ("range_test_on_plateau", {"rule": None}, "rule: null is not known"),
        ("range_test_on_plateau", {"max_lr": "1"}, "max_lr: must be a number, got '1'"),
        (
            "range_test_on_plateau",
            {"first_loss_slope": 0.45},
            "first_loss_slope: give both first_loss_intercept and first_loss_slope, or neither",
        ),
        (
            "range_test_on_plateau",
            {"first_loss_intercept": -1.1},
            "first_loss_slope: give both first_loss_intercept and first_loss_slope, or neither",
        ),
        (
            "range_test_on_plateau",
            {"first_loss_intercept": -1.1, "first_loss_slope": 0.45, "measure": "train_batch"},
            "first_loss_slope: needs measure: held_out (the calibration's), got 'train_batch'",
        ),
        (
            "range_test_on_plateau",
            {"first_loss_intercept": -1.1, "first_loss_slope": 0.45, "anchor": 0.3},
            "anchor: set anchor or first_loss_slope, not both",
        ),
        (
            "range_test_on_plateau",
            {"first_loss_intercept": -4.0, "first_loss_slope": 0.45},
            "first_loss_intercept: must be in [-3, 3] or null, got -4.0",
        ),
    ],
)
def test_constructors_reject_bad_values(name: str, params: dict[str, Any], bad: str | None) -> None:
    if bad is None:
        with pytest.raises(ValueError, match=r"base_lr \(0.0\)"):
            make_policy(name, params, base_lr=0.0, steps_per_epoch=1)
        with pytest.raises(ValueError, match=r"steps_per_epoch \(0\)"):
            make_policy(name, params, base_lr=0.1, steps_per_epoch=0)
        return
    with pytest.raises(ValueError) as info:
        make_policy(name, params, base_lr=0.01, steps_per_epoch=10)
    assert bad in str(info.value)
