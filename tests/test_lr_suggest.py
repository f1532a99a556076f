"""suggest_lr / smooth_losses on synthetic curves with known answers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from helpers import suggest_lr

from trainables.lr import (
    SUGGESTION_RULES,
    batch_noise,
    smooth_losses,
    suggest_lr_with_reason,
)

LRS = np.geomspace(1e-6, 1.0, 121)  # log10 step 0.05; LRS[60] == 1e-3
LOG10 = np.log10(LRS)
# a clean "U" in log-lr: steepest descent exactly at lr 1e-3, then a blow-up near lr 0.3
U = 1.5 - np.tanh((LOG10 + 3.0) / 0.5) + np.exp(4.0 * (LOG10 + 0.5))
RAW: dict[str, Any] = {"beta": 0.0, "skip_start": 0.0, "skip_end": 0}  # no smoothing, whole curve


def piecewise_curve() -> np.ndarray:
    """Flat, a short decreasing blip (5..9), flat, the long descent 20..80 with its steepest step
    into index 45, then rising. Known: steepest 45, minimum 80, valley 49 (fastai's rule: the
    longest decreasing subsequence runs from 19 to 80, and 19 + 60/3 + 60/6 = 49)."""
    loss = np.full(100, 2.0)
    loss[5:10] = 2.0 - 0.01 * np.arange(5)
    level = 2.0
    for i in range(21, 81):
        drop = {45: 0.2, 46: 0.1}.get(i, 0.01)
        level -= drop
        loss[i] = level
    loss[81:] = level + 0.05 * np.arange(1, 20) ** 1.5
    return loss


PIECEWISE_LRS = np.geomspace(1e-5, 10.0, 100)


# -- smoothing ---------------------------------------------------------------------------------


def test_first_smoothed_point_is_first_loss_exactly() -> None:
    rng = np.random.default_rng(0)
    firsts = [3.7, 0.1234567, 2.302585092994046, *rng.uniform(0.0, 10.0, 200).tolist()]
    for first in firsts:  # (1-beta)*x / (1-beta) alone is off by an ulp for many x
        assert smooth_losses([first, 1.0, 5.0])[0] == first
        assert smooth_losses([first, 1.0], beta=0.9)[0] == first


def test_bias_correction_keeps_a_constant_curve_constant() -> None:
    smoothed = smooth_losses([2.5] * 50, beta=0.98)
    np.testing.assert_allclose(smoothed, 2.5, rtol=1e-12)


def test_smoothing_formula() -> None:
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.5, 3.0, 30)
    beta = 0.9
    avg, expected = 0.0, []
    for i, x in enumerate(losses):
        avg = beta * avg + (1 - beta) * x
        expected.append(avg / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(smooth_losses(losses, beta), expected, rtol=1e-12)
    np.testing.assert_array_equal(smooth_losses(losses, 0.0), losses)


# -- known answers -----------------------------------------------------------------------------


def test_clean_u_steepest_is_known_point() -> None:
    assert suggest_lr(LRS, U, "steepest", **RAW) == pytest.approx(1e-3, rel=1e-9)


def test_clean_u_default_smoothing_has_no_lag() -> None:
    # defect 4: a causal EMA (beta 0.98) put the steepest point of this curve at 3.0-3.8e-3,
    # +0.5 decade; the zero-lag kernel leaves it where it is
    assert suggest_lr(LRS, U, "steepest") == pytest.approx(1e-3, rel=1e-9)
    for beta in (0.5, 0.8, 0.9):
        s = suggest_lr(LRS, U, "steepest", beta=beta)
        assert s is not None and abs(math.log10(s / 1e-3)) <= 0.15, (beta, s)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("steepest", PIECEWISE_LRS[45]),
        ("midpoint", math.sqrt(PIECEWISE_LRS[45] * PIECEWISE_LRS[80])),
        ("valley", PIECEWISE_LRS[49]),
        ("minimum_div10", PIECEWISE_LRS[80] / 10),
    ],
)
def test_each_rule_on_piecewise_curve(rule: str, expected: float) -> None:
    assert suggest_lr(PIECEWISE_LRS, piecewise_curve(), rule, **RAW) == pytest.approx(
        expected, rel=1e-12
    )


def test_rules_differ() -> None:
    answers = {
        rule: suggest_lr(PIECEWISE_LRS, piecewise_curve(), rule, **RAW) for rule in SUGGESTION_RULES
    }
    assert len(set(answers.values())) == len(SUGGESTION_RULES)


def test_skip_window_is_respected() -> None:
    # the steepest point (index 45) is excluded when skip_start covers it
    s = suggest_lr(
        PIECEWISE_LRS, piecewise_curve(), "steepest", beta=0.0, skip_start=0.5, skip_end=0
    )
    assert s is not None and s >= PIECEWISE_LRS[50]
    # minimum (index 80) excluded by skip_end: the minimum of the window is its last point
    s = suggest_lr(
        PIECEWISE_LRS, piecewise_curve(), "minimum_div10", beta=0.0, skip_start=0.0, skip_end=30
    )
    assert s == pytest.approx(PIECEWISE_LRS[69] / 10, rel=1e-12)


@pytest.mark.parametrize(
    ("rule", "noise", "factor"),
    [("steepest", 0.02, 1.5), ("minimum_div10", 0.02, 1.5), ("valley", 0.01, 5.0)],
)
def test_noisy_u_stays_close_to_clean_answer(rule: str, noise: float, factor: float) -> None:
    clean = suggest_lr(LRS, U, rule)
    assert clean is not None
    for seed in range(20):
        rng = np.random.default_rng(seed)
        noisy = suggest_lr(LRS, U + rng.normal(0.0, noise, U.shape), rule)
        assert noisy is not None, seed
        assert clean / factor <= noisy <= clean * factor, (seed, noisy, clean)


# -- no suggestion -----------------------------------------------------------------------------


def test_flat_curve_gives_none() -> None:
    assert suggest_lr(LRS, np.full_like(LRS, 2.3)) is None
    rng = np.random.default_rng(1)
    jitter = 2.3 + rng.normal(0.0, 1e-4, LRS.shape)  # tiny dips are not a usable descent
    for rule in SUGGESTION_RULES:
        assert suggest_lr(LRS, jitter, rule) is None
    value, reason = suggest_lr_with_reason(LRS, jitter)
    assert value is None and reason == "no usable descent"


def test_all_rising_curve_gives_none() -> None:
    rising = 1.0 + np.exp(LOG10)
    for rule in SUGGESTION_RULES:
        assert suggest_lr(LRS, rising, rule) is None


def test_min_rel_drop_threshold() -> None:
    shallow = 2.0 - 0.004 * (LOG10 + 6.0) / 6.0  # 0.2 % total descent
    assert suggest_lr(LRS, shallow, **RAW) is None
    assert suggest_lr(LRS, shallow, min_rel_drop=0.001, **RAW) is not None


def test_too_few_points_gives_none() -> None:
    lrs, losses = LRS[:5], U[:5]
    value, reason = suggest_lr_with_reason(lrs, losses)  # window [1:5] -> 4 points
    assert value is None and "too few" in reason
    assert suggest_lr(lrs, 3.0 - np.arange(5.0), **RAW) is not None


# -- non-finite points -------------------------------------------------------------------------


@pytest.mark.parametrize("tail_value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("rule", SUGGESTION_RULES)
def test_non_finite_tail_is_dropped_first(tail_value: float, rule: str) -> None:
    cut = 100  # the curve without its tail
    tail_lrs = np.geomspace(LRS[cut] * 1.2, 50.0, 6)
    lrs = np.concatenate([LRS[:cut], tail_lrs])
    losses = np.concatenate([U[:cut], np.full(6, tail_value)])
    expected = suggest_lr(LRS[:cut], U[:cut], rule)
    assert expected is not None
    assert suggest_lr(lrs, losses, rule) == expected


@pytest.mark.parametrize("rule", SUGGESTION_RULES)
def test_mid_curve_bad_points_are_ignored(rule: str) -> None:
    lrs, losses = LRS.copy(), U.copy()
    losses[30] = math.nan
    losses[70] = math.inf
    lrs[50] = math.nan
    keep = np.ones(len(LRS), dtype=bool)
    keep[[30, 50, 70]] = False
    expected = suggest_lr(LRS[keep], U[keep], rule)
    assert expected is not None
    assert suggest_lr(lrs, losses, rule) == expected


def test_non_positive_lrs_are_dropped() -> None:
    lrs = np.concatenate([[0.0, -1.0], LRS])
    losses = np.concatenate([[9.0, 9.0], U])
    assert suggest_lr(lrs, losses) == suggest_lr(LRS, U)


def test_accepts_tuples() -> None:
    assert suggest_lr(tuple(LRS.tolist()), tuple(U.tolist())) == suggest_lr(LRS, U)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"rule": "steep"}, "'steep'"),
        ({"beta": 1.0}, "beta (1.0)"),
        ({"beta": -0.1}, "beta (-0.1)"),
        ({"skip_start": 1.0}, "skip_start (1.0)"),
        ({"skip_start": -0.5}, "skip_start (-0.5)"),
        ({"skip_end": -1}, "skip_end (-1)"),
        ({"skip_end": 1.5}, "skip_end (1.5)"),
        ({"min_rel_drop": -0.01}, "min_rel_drop (-0.01)"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(ValueError) as info:
        suggest_lr(LRS, U, **kwargs)
    assert bad in str(info.value)


def test_rejects_length_mismatch_and_unsorted_lrs() -> None:
    with pytest.raises(ValueError, match=r"lrs \(121 points\) and losses \(120\)"):
        suggest_lr(LRS, U[:-1])
    with pytest.raises(ValueError, match="strictly increasing"):
        suggest_lr(LRS[::-1], U)


def test_smooth_rejects_bad_beta() -> None:
    with pytest.raises(ValueError, match=r"beta \(1.5\)"):
        smooth_losses([1.0, 2.0], beta=1.5)


# -- noise guard -------------------------------------------------------------------------------

# A real 20-step range test of seed_cnn/Adam after 4 epochs on 4,000 CIFAR-10 images (batch 50,
# lr 1e-6 -> 1): flat within the batch noise until it blows up. Without the noise guard
# "steepest" picked 4.3e-6 here -- an LR 250x below the one training was using.
LATE_LRS = np.geomspace(1e-6, 1.0, 20)[:18]
LATE_LOSSES = [1.50, 1.41, 1.55, 1.29, 1.54, 1.68, 1.53, 1.53, 1.43, 1.76, 1.45, 1.85, 1.87,
               2.06, 1.83, 4.01, 2.77, 610.15]  # fmt: skip


def test_batch_noise_estimates_the_noise_and_ignores_trends() -> None:
    rng = np.random.default_rng(3)
    estimates = [batch_noise(rng.normal(2.0, 0.1, 40)) for _ in range(200)]
    assert 0.08 < float(np.median(estimates)) < 0.12
    assert batch_noise(np.linspace(2.3, 1.0, 40)) == pytest.approx(0.0, abs=1e-12)
    assert batch_noise([1.0, 2.0]) == 0.0


def test_descent_within_the_noise_gives_no_suggestion() -> None:
    for rule in SUGGESTION_RULES:
        value, reason = suggest_lr_with_reason(LATE_LRS, LATE_LOSSES, rule)
        assert value is None, rule
        assert reason == "no usable descent" or "noise" in reason, reason
    # without smoothing and without the guard the same curve "descends" at the lowest LRs
    bare = suggest_lr(LATE_LRS, LATE_LOSSES, "steepest", beta=0.0, noise_factor=0.0)
    assert bare is not None and bare < 1e-4


def test_real_descent_well_above_the_noise_is_kept() -> None:
    lrs = np.geomspace(1e-6, 1.0, 40)
    log10 = np.log10(lrs)
    clean = 2.3 - 0.8 * (1 + np.tanh((log10 + 3.0) / 0.6)) / 2 + np.exp(3.0 * (log10 + 0.3))
    for seed in range(10):
        noisy = clean + np.random.default_rng(seed).normal(0.0, 0.1, lrs.shape)
        value = suggest_lr(lrs, noisy, "steepest")
        assert value is not None and 1e-5 < value < 1e-1, (seed, value)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "1"])
def test_noise_factor_must_be_non_negative(bad: Any) -> None:
    with pytest.raises(ValueError, match="noise_factor"):
        suggest_lr(LRS, U, noise_factor=bad)
