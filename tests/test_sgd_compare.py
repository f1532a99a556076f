"""benchmarks/specs/sgd_compare.yaml: the committed comparison is what the README's SGD rows say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def paired(folder: str) -> dict[str, dict]:
    doc = json.loads((RESULTS / folder / "comparison.json").read_text())
    return {p["policy"]: p["final_test_acc"] for p in doc["paired"]}


@pytest.mark.parametrize(
    ("folder", "policy", "mean", "low", "high", "better", "reading"),
    [  # README, "Does re-finding the LR help?", the SGD rows; the reading fixed in the spec
        ("sgd_compare", "range_test", 1.99, 0.60, 3.39, 5, "a difference"),
        ("sgd_compare_vs_reduce", "range_test", -0.22, -0.94, 0.51, 2, "no difference shown"),
    ],
)
def test_the_sgd_rows_are_the_committed_comparison(
    folder: str, policy: str, mean: float, low: float, high: float, better: int, reading: str
) -> None:
    p = paired(folder)[policy]
    m, ci = 100 * p["mean"], 100 * p["ci95"]
    assert (round(m, 2), round(m - ci, 2), round(m + ci, 2)) == (mean, low, high)
    assert p["n"] == 6 and p["better"] == better and p["diffs"].count(0.0) == 1  # seed 104
    assert ("a difference" if m - ci > 0 or m + ci < 0 else "no difference shown") == reading
