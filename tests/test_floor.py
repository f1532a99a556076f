"""benchmarks/floor.py: the floored range test's checks and the reading fixed before its sweep,
on made-up runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import floor as F


@pytest.mark.parametrize(
    ("applied", "deeper", "above"),
    [
        ([], 0, 0),
        ([3e-4], 0, 0),  # the floor itself: x 0.3 from 1e-3
        ([1e-4], 1, 0),  # x 0.1: deeper
        ([3e-4, 9e-5], 0, 0),  # x 0.3 twice
        ([3e-4, 3e-5, 9e-6], 1, 0),  # x 0.3, x 0.1, x 0.3
        ([1e-3], 0, 1),  # kept: the floor broken
        ([3e-4, 2e-4], 0, 1),  # x 0.67: above the floor
    ],
)
def test_counts_each_tests_cut_against_the_floor(
    applied: list[float], deeper: int, above: int
) -> None:
    assert F.deeper_cuts(applied) == deeper
    assert F.above_floor(applied) == above


def _runs(floor: dict[str, tuple[float, list[float]]], reduce: dict[str, float]) -> list[Any]:
    runs: list[dict[str, Any]] = [
        {"policy": F.FLOOR, "seed": s, "final_test_acc": acc, "range_test_lrs": lrs}
        for s, (acc, lrs) in floor.items()
    ]
    runs += [
        {"policy": F.REDUCE, "seed": s, "final_test_acc": acc, "range_test_lrs": []}
        for s, acc in reduce.items()
    ]
    return runs


LONG = [
    {"policy": F.DEFAULT, "seed": s, "final_test_acc": 0.73, "range_test_lrs": [1e-3]}
    for s in F.LONG_REDUCE
]


def test_reading_where_the_floor_is_the_fixed_cut_and_r_holds() -> None:
    floor = {s: (acc, [3e-4, 9e-5]) for s, acc in F.LONG_REDUCE.items()}
    floor["112"] = (0.7450, [3e-4, 3e-5])  # one deeper cut, and a better end
    read = F.reading(_runs(floor, F.LONG_REDUCE), LONG)
    assert read["D_failures"] == [] and read["M_failures"] == [] and read["R_holds"]
    assert read["deeper_cuts"] == 1 and read["tests"] == 10
    assert read["H1"]["n"] == 5 and read["H1"]["better"] == 1
    assert read["H1"]["reading"] == "no difference shown"
    assert read["H2"]["n"] == 5  # R held: the floor is paired with data10k_long's range test


def test_reading_flags_d_and_m_and_skips_h2_when_r_fails() -> None:
    reduce = dict(F.LONG_REDUCE, **{"113": 0.7400})  # not data10k_long's run: R fails
    floor = {s: (acc + 0.01, [3e-4]) for s, acc in reduce.items()}  # no deeper cut, yet unequal
    floor["114"] = (0.75, [1e-3])  # a test kept the LR: M
    read = F.reading(_runs(floor, reduce), LONG)
    assert read["D_failures"] == ["110", "111", "112", "113", "114"]
    assert read["M_failures"] == ["114"]
    assert not read["R_holds"] and "H2" not in read
    assert read["H1"]["reading"] == "the floored range test is better"
