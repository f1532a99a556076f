"""benchmarks/accuracy_cost.py: applied LRs read in validation accuracy, on synthetic grids."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import accuracy_cost as AC
from _oracle_analysis import ACC, DIVERGED_ACC, HORIZONS, LOSS, lr_key, oracle_offset

REPO = Path(__file__).resolve().parents[1]
#: A real held-out range test (oracle_test, adam seed 4 after epoch 2, running LR 1e-3): it
#: descends to about 3e-4 and diverges past 3e-3.
LOSSES = [1.6825, 1.6824, 1.6819, 1.6807, 1.6779, 1.6711, 1.6543, 1.6217, 1.5785, 1.5942,
          1.7751, 1.6877, 2.8721, 3.4031, 10.4223, 2.3448, 26.3729, 28903.2]  # fmt: skip


def grid(loss_vertex: float, acc_vertex: float, diverge_at: float | None = None) -> dict:
    """Grid points every 0.125 decade over [-2, +1]: the loss lowest at ``loss_vertex``, the
    accuracy highest at ``acc_vertex``; from ``diverge_at`` on, diverged (None, None)."""
    points = {}
    for i in range(-16, 9):
        x = i * 0.125
        if diverge_at is not None and x >= diverge_at - 1e-9:
            value: list[float | None] = [None, None]
        else:
            value = [1.0 + (x - loss_vertex) ** 2, 0.6 - 0.05 * (x - acc_vertex) ** 2]
        points[lr_key(x)] = {"lr": 10**x, "half": value, "2ep": list(value)}
    return points


def state(streams: list[tuple[float, float]]) -> dict:
    lrs = [1e-6 * (1e6 ** (k / 19)) for k in range(len(LOSSES))]
    return {
        "optimizer": "adam",
        "seed": 0,
        "epoch": 2,
        "running_lr": 1e-3,
        "oracle": {str(k): grid(lv, av) for k, (lv, av) in enumerate(streams)},
        "range_tests": {
            AC.PROBE: {"num_steps": 20, "lrs": lrs, "losses": LOSSES, "stop_reason": "diverged"}
        },
    }


def test_accuracy_is_read_between_grid_points_and_a_diverged_point_is_chance() -> None:
    points = grid(-0.5, -0.5, diverge_at=0.5)
    assert AC.acc_at(points, "2ep", -0.5) == pytest.approx(0.6)
    between = AC.acc_at(points, "2ep", -0.4375)  # halfway from -0.5 to -0.375
    assert between == pytest.approx((0.6 + 0.6 - 0.05 * 0.125**2) / 2)
    assert AC.acc_at(points, "2ep", 0.5) == pytest.approx(DIVERGED_ACC)
    # halfway to a diverged point: halfway to chance (the loss there is inf)
    assert AC.acc_at(points, "2ep", 0.4375) == pytest.approx((0.6 - 0.05 * 0.875**2 + 0.1) / 2)


@pytest.mark.parametrize(("loss_vertex", "acc_vertex"), [(-0.6, -0.2), (-1.1, -1.3), (0.1, 0.1)])
def test_the_accuracy_oracle_is_the_accuracy_vertex_not_the_loss_one(
    loss_vertex: float, acc_vertex: float
) -> None:
    points = grid(loss_vertex, acc_vertex)
    for h in HORIZONS:
        assert oracle_offset(points, h, LOSS) == pytest.approx(loss_vertex, abs=1e-9)
        assert oracle_offset(points, h, ACC) == pytest.approx(acc_vertex, abs=1e-9)


def test_the_other_streams_oracle_leaves_stream_0_out() -> None:
    entry = state([(-0.9, -0.9), (-0.5, -0.3), (-0.3, -0.1)])
    assert AC.other_stream_oracle(entry, "2ep", LOSS) == pytest.approx(-0.4)
    assert AC.other_stream_oracle(entry, "2ep", ACC) == pytest.approx(-0.2)
    assert AC.mean_oracle(entry, "2ep", LOSS) == pytest.approx(-1.7 / 3)
    assert AC.other_stream_oracle(state([(-0.9, -0.9)]), "2ep", LOSS) is None


def test_scores_pair_each_rule_with_keeping_the_lr_and_with_the_oracle() -> None:
    # two states whose best LR, by loss and by accuracy, is a cut of 0.5 decade
    doc = {"states": {f"adam-s{k}-e2": state([(-0.5, -0.5)] * 2) for k in range(2)}}
    table = AC.state_table([doc])
    assert set(table) == {*AC.SHOWN, *AC.ORACLES}
    scores = AC.score_population(table)
    for h in HORIZONS:
        keep = scores["baseline_keep_lr"][h]
        assert keep["vs_keep"]["mean_points"] == pytest.approx(0.0)
        # keeping the LR: 0.5 decade above both oracles, 0.05 * 0.5**2 = 1.25 points lower
        assert keep["vs_loss_oracle"]["mean_points"] == pytest.approx(-1.25)
        assert keep["vs_loss_oracle"]["worse_in"] == 2
        assert keep["from_loss_oracle"]["median_signed_decades"] == pytest.approx(0.5)
        # the default minus keeping the LR, state by state, is its gain over keeping the LR
        assert (
            scores["baseline_keep_lr"][h]["default_minus_this"]
            == scores["ours_midpoint"][h]["vs_keep"]
        )
        oracle = scores["oracle_loss_other_streams"][h]
        assert oracle["vs_keep"]["mean_points"] == pytest.approx(1.25)
        assert oracle["vs_keep"]["better_in"] == 2
        cut = scores["baseline_lr_x0.3"][h]  # x 0.3 is -0.52 decade: 0.023 below the best
        assert cut["from_acc_oracle"]["median_signed_decades"] == pytest.approx(
            math.log10(0.3) + 0.5, abs=1e-9
        )
        # our default read the real curve: its pick lies below where it diverges
        ours = table["ours_midpoint"][0]["applied"][h]
        assert ours is not None and ours < math.log10(3e-3 / 1e-3)


def test_oracle_facts_measure_the_two_oracles_apart_and_between_streams() -> None:
    doc = {"states": {"adam-s0-e2": state([(-0.5, -0.2), (-0.7, -0.6)])}}
    facts = AC.oracle_facts([doc])["2ep"]
    assert facts["acc_minus_loss_oracle_median_decades"] == pytest.approx(-0.4 + 0.6)
    assert facts["loss_oracle_stream_move_median_decades"] == pytest.approx(0.2)
    assert facts["acc_oracle_stream_move_median_decades"] == pytest.approx(0.4)


def test_the_script_reads_the_committed_curves(tmp_path: Path) -> None:
    """On the cached oracle curves in benchmarks/results: every population is read, and the
    loss oracle of other streams is level with itself and better than keeping the LR."""
    out = tmp_path / "cost.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "accuracy_cost.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert set(doc["populations"]) == set(AC.POPULATIONS)
    assert out.with_suffix(".png").is_file()
    well = doc["populations"]["well-set (seed_cnn, 4k)"]
    assert well["states"] == 60
    oracle = well["rules"]["oracle_loss_other_streams"]["2ep"]
    assert oracle["vs_loss_oracle"]["mean_points"] == pytest.approx(0.0)
    assert oracle["vs_keep"]["mean_points"] > 0


def test_horizon_gaps_compare_the_two_horizons_by_loss_and_by_accuracy() -> None:
    # by loss the half-epoch oracle lies 0.5 decade above the 2-epoch one, by accuracy 0.1
    entry = state([(-1.0, -0.5)] * 2)
    for points in entry["oracle"].values():
        half = grid(-0.5, -0.4)
        for key, point in points.items():
            point["half"] = half[key]["half"]
    gaps = AC.horizon_gaps([{"states": {"adam-s0-e2": entry}}])
    assert gaps["loss"]["half_minus_2ep_median_decades"] == pytest.approx(0.5)
    assert gaps["acc"]["half_minus_2ep_median_decades"] == pytest.approx(0.1)
    assert gaps["acc"]["states"] == 1


@pytest.mark.parametrize(
    ("above", "by_loss", "by_acc", "holds"),
    [
        (0.46, 0.51, 0.08, True),  # the first ten plateau states
        (0.19, 0.51, 0.08, False),  # the accuracy oracle not far enough above
        (0.46, 0.29, 0.08, False),  # the horizons close by loss too
        (0.46, 0.51, -0.21, False),  # the horizons apart by accuracy too
        (None, 0.51, 0.08, False),  # no state with both oracles
    ],
)
def test_the_plateau_reading_fixed_before_the_fresh_states(
    above: float | None, by_loss: float, by_acc: float, holds: bool
) -> None:
    facts = {
        "2ep": {"acc_minus_loss_oracle_median_decades": above},
        "horizons": {
            "loss": {"half_minus_2ep_median_decades": by_loss},
            "acc": {"half_minus_2ep_median_decades": by_acc},
        },
    }
    assert AC.plateau_reading(facts)["holds"] is holds
