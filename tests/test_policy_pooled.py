"""benchmarks/policy_pooled.py: the level reading and the rerun check, on made-up pools."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import policy_pooled as PP


@pytest.mark.parametrize(
    ("mean", "ci95", "reading"),
    [
        (-0.0016, 0.0030, "level within 0.5 points"),  # -0.46 .. +0.14
        (0.0, 0.0049, "level within 0.5 points"),
        (0.0, 0.0050, "no difference shown, and not shown level to 0.5 points"),  # touches 0.5
        (-0.0016, 0.0041, "no difference shown, and not shown level to 0.5 points"),
        (0.0030, 0.0020, "different: the policy higher"),  # +0.10 .. +0.50
        (-0.0090, 0.0050, "different: the policy lower"),
    ],
)
def test_the_level_reading(mean: float, ci95: float, reading: str) -> None:
    assert PP.level_reading({"final_test_acc": {"mean": mean, "ci95": ci95}}) == reading


def _comparison(folder: Path, runs: list[tuple[str, int, float]]) -> None:
    folder.mkdir(parents=True)
    doc = {
        "runs": [
            {"policy": p, "seed": s, "final_test_acc": v, "best_val_acc": v} for p, s, v in runs
        ]
    }
    (folder / "comparison.json").write_text(json.dumps(doc))


def test_an_arm_takes_only_its_seeds_and_a_rerun_must_match_exactly(tmp_path: Path) -> None:
    _comparison(tmp_path / "old", [("a", 14, 0.658), ("a", 13, 0.663)])
    _comparison(tmp_path / "new", [("a", 14, 0.658), ("a", 15, 0.66), ("b", 14, 0.6575)])
    got = PP.arm_values(tmp_path, (PP.Arm("new", "a", (15,)), PP.Arm("old", "a")), "final_test_acc")
    assert got == {"15": 0.66, "14": 0.658, "13": 0.663}  # seed 14 of "new" left out, no clash
    with pytest.raises(ValueError, match="already pooled"):
        PP.arm_values(tmp_path, (PP.Arm("new", "a"), PP.Arm("old", "a")), "final_test_acc")
    reruns = ((PP.Arm("new", "a", (14,)), PP.Arm("old", "a", (14,))),)
    _comparison(tmp_path / "old2", [("a", 14, 0.6581)])
    off = ((PP.Arm("new", "a", (14,)), PP.Arm("old2", "a", (14,))),)
    for pairs, equal in ((reruns, True), (off, False)):
        rows = PP.reproduction(tmp_path, pairs)
        assert [r["equal"] for r in rows] == [equal, equal]  # both metrics, seed 14
