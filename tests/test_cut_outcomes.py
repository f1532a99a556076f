"""benchmarks/cut_outcomes.py: outcomes after the reference arm's first cut, on synthetic runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cut_outcomes

REPO = Path(__file__).resolve().parents[1]


def _run(lrs: list[float], val_loss: list[float], test_loss: float, test_acc: float) -> dict:
    return {
        "lr": dict(enumerate(lrs, 1)),
        "val_loss": dict(enumerate(val_loss, 1)),
        "test_loss": {len(lrs): test_loss},
        "test_acc": {len(lrs): test_acc},
    }


@pytest.mark.parametrize(
    ("lr", "cut"),
    [([1, 1, 0.3, 0.3], 3), ([1, 1, 1], None), ([1, 0.1, 0.01], 2), ([], None)],
)
def test_first_change_is_the_first_epoch_at_another_lr(lr: list[float], cut: int | None) -> None:
    assert cut_outcomes.first_change(dict(enumerate(lr, 1))) == cut


def test_arms_are_read_at_the_reference_cut_and_paired_seed_by_seed() -> None:
    # the reference cuts at epoch 2 in seed 1 and at epoch 3 in seed 2; the deep arm's loss
    # is lower two epochs on, its accuracy is not higher
    ref = {
        "1": _run([1, 0.3, 0.3, 0.3, 0.3], [2.0, 1.9, 1.8, 1.7, 1.6], 1.5, 0.60),
        "2": _run([1, 1, 0.3, 0.3, 0.3], [2.0, 1.9, 1.8, 1.7, 1.6], 1.5, 0.62),
    }
    deep = {
        "1": _run([1, 0.04, 0.04, 0.04, 0.04], [2.0, 1.8, 1.6, 1.5, 1.5], 1.4, 0.59),
        "2": _run([1, 1, 0.04, 0.04, 0.04], [2.0, 1.9, 1.7, 1.6, 1.5], 1.45, 0.62),
        "3": _run([1, 1, 1, 1, 1], [2.0] * 5, 2.0, 0.5),  # a seed the reference did not run
    }
    got = cut_outcomes.compare({"ref": ref, "deep": deep}, "ref")
    assert got["seeds"] == ["1", "2"] and got["cuts"] == {"1": 2, "2": 3}
    row = got["arms"]["deep"]
    # seed 1 at epoch 4: 1.5 vs 1.7; seed 2 at epoch 5: 1.5 vs 1.6
    assert row["val_loss_after_cut"]["diff"] == pytest.approx(-0.15)
    assert row["val_loss_after_cut"]["lower"] == 2
    assert row["final_val_loss"]["diff"] == pytest.approx(-0.1)
    assert row["test_loss"]["diff"] == pytest.approx(-0.075)
    assert row["test_acc"]["diff"] == pytest.approx(-0.005)
    assert row["test_acc"]["lower"] == 1 and row["test_acc"]["n"] == 2
    assert got["arms"]["ref"]["test_acc"]["diff"] == pytest.approx(0.0)


def test_a_run_too_short_after_the_cut_has_no_loss_there() -> None:
    run = _run([1, 1, 1, 0.3], [2.0, 1.9, 1.8, 1.7], 1.5, 0.6)
    assert cut_outcomes.outcomes(run, 4)["val_loss_after_cut"] is None
    assert cut_outcomes.outcomes(run, None)["final_val_loss"] == 1.7


def test_an_arm_without_its_label_is_a_one_line_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    script = REPO / "benchmarks" / "cut_outcomes.py"
    proc = subprocess.run(
        [sys.executable, str(script), "plateau-cut", "x:y", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "arm 'plateau-cut': give EXPERIMENT:LABEL" in proc.stderr
    assert not out.exists()
