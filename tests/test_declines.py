"""benchmarks/declines.py: the committed end-to-end counts of declined range tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FILES = ["declines_sgd.json", "declines_data10k.json", "declines_spike_fix.json"]


def arms() -> list[tuple[str, str, dict]]:
    out = []
    for name in FILES:
        doc = json.loads((RESULTS / name).read_text())
        for sweep, by_arm in doc["sweeps"].items():
            out.extend((sweep, arm, counts) for arm, counts in by_arm.items())
    return out


@pytest.mark.parametrize(("sweep", "arm", "counts"), arms(), ids=lambda v: str(v)[:24])
def test_the_counts_are_the_detail(sweep: str, arm: str, counts: dict) -> None:
    detail = counts["tests_detail"]
    real = [t for t in detail if t["real_descent"]]
    assert counts["tests"] == len(detail) > 0
    assert counts["declined"] == sum(t["declined"] for t in detail)
    assert counts["real_descents"] == len(real)
    assert counts["declined_real_descents"] == sum(t["declined"] for t in real)
    # a declined test is one the reading found no usable descent in
    assert all(t["reason"] == "no usable descent" for t in detail if t["declined"]), sweep


def test_no_real_descent_was_declined_end_to_end() -> None:
    """The figures docs/does_it_help.md quotes: 92 tests over six sweeps, 71 real descents,
    none declined; 18 declines, all of curves without one."""
    rows = arms()
    assert len(rows) == 6
    total = {k: sum(c[k] for _, _, c in rows) for k in ("tests", "declined", "real_descents")}
    assert total == {"tests": 92, "declined": 18, "real_descents": 71}
    assert sum(c["declined_real_descents"] for _, _, c in rows) == 0
