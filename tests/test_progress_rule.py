"""benchmarks/progress_rule.py and benchmarks/noise_scale.py: what the oracle's best LR follows.

The progress rule's fit and scores are checked on synthetic states whose oracle is an exact
function of the epoch, and on the committed caches against the committed result; the noise
scale's two-batch-size estimator on synthetic gradients of known mean and covariance.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import noise_scale
import progress_rule
from _oracle_analysis import HORIZONS


def _state(opt: str, epoch: int, oracle: float, pick: float | None) -> dict:
    return {
        "optimizer": opt,
        "epoch": epoch,
        "running_lr": 1e-3,
        "train": progress_rule.DESIGN_TRAIN,
        "pick": None if pick is None else 1e-3 * 10**pick,
        "oracle": {h: oracle for h in HORIZONS},
    }


def _exact(a: float, b: float, epochs: tuple[int, ...], picks: dict[int, float | None]) -> list:
    """States of both optimizers whose oracle is a + b log10(epoch) exactly."""
    return [
        _state(opt, e, a + b * math.log10(e), picks.get(e, -0.5))
        for opt in progress_rule.OPTIMIZERS
        for e in epochs
    ]


def test_calibrate_recovers_an_exact_power_law_and_its_median_cut() -> None:
    fit = progress_rule.calibrate(_exact(0.1, -0.7, (2, 5, 10), {}))
    for opt in progress_rule.OPTIMIZERS:
        for h in HORIZONS:
            f = fit[opt][h]
            assert f["intercept"] == pytest.approx(0.1)
            assert f["slope"] == pytest.approx(-0.7)
            assert f["cut"] == pytest.approx(0.1 - 0.7 * math.log10(5))  # the median state
            assert f["states"] == 3


@pytest.mark.parametrize(
    ("picks", "mid_n", "mid_median", "mid_bias"),
    [
        # the pick sits at -0.5 whatever the epoch: errors -0.39, -0.11, +0.10 decade
        ({}, 6, 0.111, -0.111),
        # a declined curve counts in no figure of the rule that declined, only in its n
        ({10: None}, 4, 0.25, -0.25),
    ],
)
def test_scores_the_progress_rule_exactly_and_the_pick_by_its_errors(
    picks: dict[int, float | None], mid_n: int, mid_median: float, mid_bias: float
) -> None:
    rows = _exact(0.1, -0.7, (2, 5, 10), picks)
    got = progress_rule.scores(rows, progress_rule.calibrate(_exact(0.1, -0.7, (2, 5, 10), {})))
    assert got["states"] == 6
    for h in HORIZONS:
        assert got[h]["progress"]["median_abs"] == pytest.approx(0.0, abs=1e-9)
        assert got[h]["progress"]["n"] == 6
        # a fixed cut is off by the oracle's own spread around its median (epoch 5's)
        assert got[h]["fixed cut"]["median_abs"] == pytest.approx(0.7 * math.log10(2))
        mid = got[h]["midpoint"]
        assert mid["n"] == mid_n
        assert mid["median_abs"] == pytest.approx(mid_median, abs=0.01)
        assert mid["bias"] == pytest.approx(mid_bias, abs=0.01)
        assert got[h]["epoch_rho"] == {"adam": pytest.approx(-1.0), "sgd": pytest.approx(-1.0)}


def test_progress_in_steps_reads_a_larger_data_set_at_more_steps_per_epoch() -> None:
    fit = progress_rule.calibrate(_exact(0.1, -0.7, (2, 5, 10), {}))
    row = _state("adam", 5, 0.0, -0.5) | {"train": 2 * progress_rule.DESIGN_TRAIN}
    got = progress_rule.predictions(row, fit, "2ep")
    assert got["progress"] == pytest.approx(0.1 - 0.7 * math.log10(5))
    assert got["progress in steps"] == pytest.approx(0.1 - 0.7 * math.log10(10))
    assert got["midpoint"] == pytest.approx(-0.5)


def test_the_committed_result_is_what_the_committed_caches_give() -> None:
    committed = json.loads((progress_rule.C.RESULTS_DIR / "progress_rule.json").read_text())
    design = progress_rule.rows_of(progress_rule.CALIBRATION)
    assert len(design) == 24
    fit = progress_rule.calibrate(design)
    for opt in progress_rule.OPTIMIZERS:
        for h in HORIZONS:
            assert fit[opt][h] == pytest.approx(committed["fit"][opt][h])
    sizes = [len(progress_rule.rows_of(s)) for s in progress_rule.VALIDATION.values()]
    assert sizes == [36, 12, 12, 12]
    assert [len(progress_rule.rows_of(s)) for s in progress_rule.PLATEAU.values()] == [10, 12]
    for label, setups in (progress_rule.VALIDATION | progress_rule.PLATEAU).items():
        got = progress_rule.scores(progress_rule.rows_of(setups), fit)
        assert got["horizon_gap"] == pytest.approx(committed["populations"][label]["horizon_gap"])
        if label in progress_rule.PLATEAU:  # the reading fixed before they were trained
            assert progress_rule.extends(got) is committed["populations"][label]["extends"]
        for h in HORIZONS:
            for m in progress_rule.METHODS:
                want = committed["populations"][label][h][m]
                assert got[h][m]["median_abs"] == pytest.approx(want["median_abs"])
                assert got[h][m]["bias"] == pytest.approx(want["bias"])


@pytest.mark.parametrize(
    ("grad_sq", "sigma", "dims", "b"),
    [
        (1.0, 0.5, 400, 10),  # B_simple = 400 * 0.25 / 1 = 100
        (4.0, 0.2, 900, 50),  # 9
        (0.25, 1.0, 100, 5),  # 400: noise far above signal
    ],
)
def test_two_batch_estimate_recovers_the_gradient_and_its_noise(
    grad_sq: float, sigma: float, dims: int, b: int
) -> None:
    rng = np.random.default_rng(0)
    g = np.full(dims, math.sqrt(grad_sq / dims))
    k = 400
    # k batches of b per-example gradients g + N(0, sigma^2 I): tr(Sigma) = dims * sigma^2
    batches = g + rng.normal(0.0, sigma, size=(k, b, dims)).mean(axis=1)
    small_sq = float(np.mean(np.sum(batches**2, axis=1)))
    mean = batches.mean(axis=0)
    got = noise_scale.two_batch_estimate(small_sq, float(mean @ mean), b, k * b)
    trace = dims * sigma**2
    assert got["trace"] == pytest.approx(trace, rel=0.05)
    assert got["grad_sq"] == pytest.approx(grad_sq, rel=0.15)
    assert got["b_simple"] == pytest.approx(trace / grad_sq, rel=0.2)


@pytest.mark.parametrize(("small", "big"), [(50, 50), (0, 100), (100, 50)])
def test_two_batch_estimate_names_batch_sizes_it_cannot_use(small: int, big: int) -> None:
    with pytest.raises(ValueError, match=f"got {small} and {big}"):
        noise_scale.two_batch_estimate(1.0, 0.5, small, big)


def _result(median: tuple[float, float], closer: tuple[int, int], answered: int) -> dict:
    return {
        h: {"progress": {"median_abs": m}, "progress_closer": [c, answered]}
        for h, m, c in zip(HORIZONS, median, closer, strict=True)
    }


@pytest.mark.parametrize(
    ("median", "closer", "answered", "verdict"),
    [
        ((0.15, 0.2), (7, 7), 12, True),  # 0.2 itself is within
        ((0.15, 0.21), (7, 7), 12, False),  # one horizon past 0.2
        ((0.1, 0.1), (6, 7), 12, False),  # closer in exactly half is not more than half
        ((0.1, 0.1), (7, 7), 12, True),
        ((0.1, 0.1), (0, 0), 0, False),  # no state answered: nothing to be closer than
    ],
)
def test_the_plateau_reading_needs_both_horizons_within_and_a_majority_closer(
    median: tuple[float, float], closer: tuple[int, int], answered: int, verdict: bool
) -> None:
    assert progress_rule.extends(_result(median, closer, answered)) is verdict


@pytest.mark.parametrize(
    ("oracles", "median", "signed", "beyond", "halfway"),
    [
        # half minus 2 epochs: +0.5, -0.1, +0.3 -> gaps 0.5, 0.1, 0.3
        ([(-1.0, -1.5), (-0.3, -0.2), (-0.6, -0.9)], 0.3, 0.3, 1, 0.15),
        # a gap of exactly twice the target still leaves one LR within it of both
        ([(0.0, -0.4), (0.0, -0.4)], 0.4, 0.4, 0, 0.2),
        # a state without an oracle at one horizon has no gap
        ([(0.0, None), (-0.2, -0.7)], 0.5, 0.5, 1, 0.25),
    ],
)
def test_horizon_gap_bounds_any_one_lr_per_state(
    oracles: list[tuple[float, float | None]],
    median: float,
    signed: float,
    beyond: int,
    halfway: float,
) -> None:
    rows = [{"oracle": {"half": half, "2ep": two}} for half, two in oracles]
    got = progress_rule.horizon_gap(rows)
    assert got["states"] == sum(two is not None for _, two in oracles)
    assert got["median"] == pytest.approx(median)
    assert got["median_half_minus_2ep"] == pytest.approx(signed)
    assert got["beyond_one_lr"] == beyond
    assert got["halfway_median_abs"] == pytest.approx(halfway)
