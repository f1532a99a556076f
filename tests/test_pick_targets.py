"""benchmarks/pick_targets.py: the targets plot reads the figures the oracle docs quote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import pick_targets as PT


@pytest.mark.parametrize(
    ("population", "rule", "half", "two", "bias"),
    [  # docs/range_test_oracle.md, "Targets": the table's figures
        ("well-set, all held out (108)", "ours_midpoint", 0.27, 0.29, 0.09),
        ("well-set, all held out (108)", "level on a pick, declines none", 0.14, 0.16, -0.08),
        ("well-set, all held out (108)", "fastai_steep", 0.23, 0.33, -0.22),
        ("LR set badly, all (72)", "ours_midpoint", 0.45, 0.48, -0.06),
        ("seed_cnn, first plateau (10)", "ours_midpoint", 0.88, 1.31, 1.31),
        ("seed_cnn, first plateau, fresh (12)", "ours_midpoint", 0.68, 0.80, 0.80),
    ],
)
def test_the_plotted_figures_are_the_documented_ones(
    population: str, rule: str, half: float, two: float, bias: float
) -> None:
    figs = PT.figures(json.loads(PT.SOURCE.read_text()))
    f = figs[population][rule]
    assert (round(f["half"], 2), round(f["2ep"], 2), round(f["bias_2ep"], 2)) == (half, two, bias)
    for h in ("half", "2ep"):
        lo, hi = f[f"{h}_ci95"]
        assert lo <= f[h] <= hi


def test_the_script_writes_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "targets.png"
    monkeypatch.setattr(sys, "argv", ["pick_targets.py", "--out", str(out)])
    assert PT.main() == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
