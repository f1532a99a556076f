"""benchmarks/specs/data10k_compare.yaml and data10k_long.yaml: the committed comparisons are
what the README's 10,000-image rows say, with the verdict each spec's reading gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def paired(folder: str) -> dict[str, dict]:
    doc = json.loads((RESULTS / folder / "comparison.json").read_text())
    return {p["policy"]: p["final_test_acc"] for p in doc["paired"]}


# README, "Does re-finding the LR help?", the 10,000-image rows, in its order, and the verdict
# of the reading fixed in each spec: a difference only where the 95% interval excludes 0
ROWS = [
    ("data10k_compare", "+0.32 | -0.57 .. +1.21 | 1 / 5 (4 ties)", "none shown"),
    ("data10k_compare_vs_reduce", "-0.52 | -1.74 .. +0.69 | 0 / 5 (3 ties)", "none shown"),
    ("data10k_long", "+0.79 | -0.30 .. +1.87 | 5 / 5", "none shown"),
    ("data10k_long_vs_reduce", "**-1.03** | -1.84 .. -0.22 | 0 / 5", "worse"),
]


@pytest.mark.parametrize(("folder", "text", "verdict"), ROWS)
def test_the_rows_are_the_committed_comparison(folder: str, text: str, verdict: str) -> None:
    p = paired(folder)["range_test"]
    m, ci = 100 * p["mean"], 100 * p["ci95"]
    ties = p["diffs"].count(0.0)
    delta = f"{m:+.2f}" if verdict == "none shown" else f"**{m:+.2f}**"
    shown = f"{delta} | {m - ci:+.2f} .. {m + ci:+.2f} | {p['better']} / {p['n']}"
    assert shown + (f" ({ties} ties)" if ties else "") == text
    shown_verdict = "none shown" if m - ci < 0 < m + ci else ("better" if m > 0 else "worse")
    assert shown_verdict == verdict


def test_the_readme_quotes_them() -> None:
    rows = [
        line for line in (REPO / "README.md").read_text().splitlines() if "| 10,000 images" in line
    ]
    assert len(rows) == len(ROWS)
    for (_, text, _), row in zip(ROWS, rows, strict=True):
        assert row.endswith(f"| {text} |"), row


def test_three_seeds_never_stalled() -> None:
    """Seeds 110, 112, 114: the three arms are one run (the docs say so)."""
    for folder in ("data10k_compare", "data10k_compare_vs_reduce"):
        doc = json.loads((RESULTS / folder / "comparison.json").read_text())
        for p in doc["paired"]:
            by_seed = dict(zip(p["seeds"], p["final_test_acc"]["diffs"], strict=True))
            assert [by_seed[s] for s in ("110", "112", "114")] == [0.0, 0.0, 0.0], folder
            assert by_seed["113"] != 0.0, folder  # both cut there


def test_the_long_runs_stalled_and_tested() -> None:
    """At 40 epochs every run stalled: each range-test run tested 2 to 4 times (15 in all), the
    fixed cut beat the constant LR in every seed, and no pair is a tie."""
    doc = json.loads((RESULTS / "data10k_long" / "comparison.json").read_text())
    tests = [r["range_tests"] for r in doc["runs"] if r["policy"] == "range_test"]
    assert sorted(tests) == [2, 3, 3, 3, 4]
    p = paired("data10k_long")
    assert p["reduce_on_plateau"]["better"] == 5
    assert 0.0 not in p["range_test"]["diffs"] + p["reduce_on_plateau"]["diffs"]
