"""benchmarks/no_raise.py: counting raises, and the reading fixed before its sweep, on made-up
runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import no_raise as NR


@pytest.mark.parametrize(
    ("applied", "expected"),
    [
        ([], 0),
        ([4.8e-4, 1e-3], 1),  # a cut, then back up to the start
        ([1.44e-3], 1),  # a raise at the first test
        ([4.8e-4, 4.8e-4, 2.3e-4], 0),  # kept, then cut: no raise
        ([1e-3], 0),  # kept at the start LR
        ([1.6e-4, 4.8e-4, 2.3e-4, 1.4e-4, 1.6e-4], 2),
    ],
)
def test_raises_counts_tests_that_moved_the_lr_up(applied: list[float], expected: int) -> None:
    assert NR.raises(applied, 1e-3) == expected


@pytest.mark.parametrize(
    ("mean", "ci95", "words", "reading"),
    [
        (0.004, 0.003, NR.H1_WORDS, "max_raise 1 is better: the default becomes max_raise 1"),
        (0.004, 0.004, NR.H1_WORDS, "no difference shown: the default stays max_raise null"),
        (-0.004, 0.003, NR.H1_WORDS, "max_raise 1 is worse"),
        (0.0, 0.0, NR.H1_WORDS, "no difference shown: the default stays max_raise null"),
        (None, None, NR.H1_WORDS, "not read: fewer than 2 paired seeds"),
        (-0.01, 0.005, NR.LOW_LR_WORDS, "max_raise 1 costs the rescue"),
        (0.01, 0.005, NR.LOW_LR_WORDS, "max_raise 1 helps here too"),
        (-0.01, 0.02, NR.LOW_LR_WORDS, "no difference shown"),
        (0.01, 0.005, NR.PATIENCE0_WORDS, "max_raise 1 is better at patience 0"),
        (-0.01, 0.005, NR.PATIENCE0_WORDS, "max_raise 1 is worse at patience 0"),
        (0.01, 0.01, NR.PATIENCE0_WORDS, "no difference shown"),  # touches 0
    ],
)
def test_interval_reading(
    mean: float | None, ci95: float | None, words: tuple[str, str, str], reading: str
) -> None:
    assert NR.interval_reading(mean, ci95, words) == reading


def _run(policy: str, seed: int, acc: float, lrs: list[float]) -> dict[str, Any]:
    return {"policy": policy, "seed": str(seed), "final_test_acc": acc, "range_test_lrs": lrs}


def test_the_reading_of_a_made_up_sweep() -> None:
    runs = [
        _run(NR.DEFAULT, 15, 0.6475, [4.8e-4, 1e-3]),  # the committed values: R holds
        _run(NR.NO_RAISE, 15, 0.66, [4.8e-4, 4.8e-4]),
        _run(NR.DEFAULT, 19, 0.6379, [1.44e-3]),
        _run(NR.NO_RAISE, 19, 0.65, [1e-3]),
        _run(NR.DEFAULT, 30, 0.65, [4.8e-4]),  # no raise: the arms must end equal
        _run(NR.NO_RAISE, 30, 0.65, [4.8e-4]),
        _run(NR.DEFAULT, 31, 0.64, [4.8e-4, 7e-4]),  # a raise: max_raise 1 +2 points
        _run(NR.NO_RAISE, 31, 0.66, [4.8e-4, 4.8e-4]),
        _run(NR.DEFAULT, 32, 0.66, []),  # no raise, yet the arms differ: a determinism failure
        _run(NR.NO_RAISE, 32, 0.661, []),
    ]
    read = NR.reading(runs)
    assert read["R_reproduced"] is True
    assert read["D_determinism_failures"] == ["32"]
    h1 = read["H1"]
    assert h1["seeds"] == ["30", "31", "32"]  # the origin seeds are left out of H1
    assert h1["n"] == 3 and h1["better"] == 2 and h1["worse"] == 0
    assert h1["mean"] == pytest.approx((0 + 0.02 + 0.001) / 3)
    assert h1["raised_on"] == ["31"] and h1["mean_where_raised"] == pytest.approx(0.02)
    assert read["origin"]["raised_on"] == ["15", "19"] and read["origin"]["better"] == 2
    runs[0] = _run(NR.DEFAULT, 15, 0.6476, [4.8e-4, 1e-3])  # off by 1e-4: not reproduced
    assert NR.reading(runs)["R_reproduced"] is False


def test_the_low_lr_reading_counts_raises_from_its_own_start_lr() -> None:
    runs = [
        _run(NR.DEFAULT, 0, 0.60, [1e-3]),  # up from 3e-4: a raise (from 1e-3 it would not be)
        _run(NR.NO_RAISE, 0, 0.58, [3e-4]),
        _run(NR.DEFAULT, 1, 0.61, [1e-4]),
        _run(NR.NO_RAISE, 1, 0.61, [1e-4]),
    ]
    read = NR.low_lr(runs)
    assert read["H"]["raised_on"] == ["0"] and read["D_determinism_failures"] == []
    assert read["H"]["mean"] == pytest.approx(-0.01)


def test_committed_runs_count_their_raises() -> None:
    p0 = NR.committed_tests(NR.C.RESULTS_DIR, NR.PATIENCE0)
    p3 = NR.committed_tests(NR.C.RESULTS_DIR, NR.DEFAULT_P3)
    assert 0 < p0["raised"] < p0["tests"] and p3["runs"] == 45  # seeds 0-24 and 30-49, once
    assert [r["seed"] for r in p3["runs_with_a_raise"]] == ["15", "19"]
    assert p3["raised_at_a_first_test"] == 1  # seed 19: 1e-3 -> 1.44e-3 at its only test


def test_the_committed_sweeps_read_as_documented() -> None:
    """The figures README and docs/performance.md 6b quote, from the committed comparisons."""
    runs = {
        name: json.loads((NR.C.RESULTS_DIR / name / "comparison.json").read_text())["runs"]
        for name in (NR.SWEEP, NR.LOW_SWEEP, NR.P0_SWEEP)
    }
    first = NR.reading(runs[NR.SWEEP])
    assert first["R_reproduced"] and first["D_determinism_failures"] == []
    assert first["H1"]["n"] == 20 and first["H1"]["raises"] == 0 and first["H1"]["mean"] == 0
    assert NR.low_lr(runs[NR.LOW_SWEEP])["H"]["raises"] == 0
    p0 = NR.patience0(runs[NR.P0_SWEEP])["H"]
    assert (p0["raises"], p0["default_tests"], p0["better"], p0["worse"]) == (13, 60, 3, 6)
    assert round(100 * p0["mean"], 2) == -0.51 and p0["reading"] == "no difference shown"
