"""benchmarks/spike_fix.py: the reading fixed before its sweeps ran, and the reading before the
fix loaded from git (it must differ from today's on the curve that motivated the fix)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_lr_suggest_curves import SGD_LOW_LOSSES, SPIKE_LRS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import spike_fix as SF

from sweep.stats import Paired
from trainables.lr import suggest_lr_with_reason


@pytest.mark.parametrize(
    ("diffs", "expected"),
    [
        ([-0.01, -0.02, -0.015, -0.012], "worse: revert the fix"),
        ([0.0, 0.0, 0.01, -0.01, 0.0], "no difference shown: the fix stays"),
        ([0.01, 0.02, 0.015, 0.012], "better: the fix stays"),
        ([0.01], "not enough seeds"),
    ],
)
def test_reading(diffs: list[float], expected: str) -> None:
    assert SF.reading(Paired.of([(d, 0.0) for d in diffs])) == expected


def test_the_reading_before_the_fix_is_the_one_that_missed_the_descent() -> None:
    root = Path(__file__).resolve().parents[1]
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{SF.BEFORE}^{{commit}}"], cwd=root, capture_output=True
    )
    if found.returncode != 0:
        pytest.skip(f"commit {SF.BEFORE} is not in this clone (a shallow one?)")
    before = SF.before_reading()
    assert before.suggest_lr_with_reason(SPIKE_LRS, SGD_LOW_LOSSES, SF.RULE) == (
        None,
        "no usable descent",
    )
    pick, reason = suggest_lr_with_reason(SPIKE_LRS, SGD_LOW_LOSSES, SF.RULE)
    assert reason == "ok" and pick is not None


def test_the_committed_sweeps_read_as_documented() -> None:
    """The figures docs/performance.md 6b and the oracle docs quote, from spike_fix.json."""
    doc = json.loads((SF.C.RESULTS_DIR / "spike_fix.json").read_text())
    assert doc["paired"]["n"] == 10 and doc["paired"]["diffs"] == [0.0] * 10
    assert doc["reading"] == "no difference shown: the fix stays"
    for side in ("before", "after"):
        assert doc["replay"][side] == {"tests": 15, "read_differently": 0, "not_own": 0}


def test_the_committed_patience0_sweeps_read_as_documented() -> None:
    """README's footnote and docs/performance.md 6b: at patience 0, 1 of 25 tests moved."""
    doc = json.loads((SF.C.RESULTS_DIR / "spike_fix_patience0.json").read_text())
    assert doc["paired"]["n"] == 5 and doc["paired"]["diffs"].count(0.0) == 4
    assert round(100 * doc["paired"]["mean"], 2) == -0.03
    assert doc["reading"] == "no difference shown: the fix stays"
    for side in ("before", "after"):
        assert doc["replay"][side] == {"tests": 25, "read_differently": 1, "not_own": 0}


def test_the_committed_default_sweeps_read_as_documented() -> None:
    """docs/performance.md 6b: in the default sweep's arm, seeds 90-99, nothing moved."""
    doc = json.loads((SF.C.RESULTS_DIR / "spike_fix_default.json").read_text())
    assert doc["paired"]["n"] == 10 and doc["paired"]["diffs"] == [0.0] * 10
    assert doc["reading"] == "no difference shown: the fix stays"
    for side in ("before", "after"):
        assert doc["replay"][side] == {"tests": 14, "read_differently": 0, "not_own": 0}
