"""benchmarks/level_rule.py: a rule on the range-test curve's level (its first loss).

The fit is checked on synthetic states whose oracle is an exact function of the level, the
guards and readings table by table, and the committed result against the committed caches.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import level_rule
from _oracle_analysis import HORIZONS


def _loaded(a: float, b: float, levels: tuple[float, ...], gap: float = 0.2) -> list:
    """One setup of both optimizers whose half-epoch oracle lies ``gap`` below the 2-epoch
    one, their mean exactly a + b * level; each state's default pick at 0.3 x the running LR."""
    rows, states = [], {}
    for opt in level_rule.OPTIMIZERS:
        for i, lvl in enumerate(levels):
            mean = a + b * lvl
            sid = f"{opt}-{i}"
            rows.append(
                {
                    "state": sid,
                    "optimizer": opt,
                    "running_lr": 1e-3,
                    "applied": 3e-4,
                    "oracle": {"half": mean - gap / 2, "2ep": mean + gap / 2},
                }
            )
            states[sid] = {"range_tests": {"held_out_default": {"losses": [lvl, lvl - 0.01]}}}
    return [({level_rule.DEFAULT: rows}, {"states": states})]


def test_the_fit_recovers_an_exact_line_through_the_mean_of_both_horizons() -> None:
    loaded = _loaded(-1.1, 0.45, (0.9, 1.3, 1.8))
    for opt, (slope, intercept) in level_rule.fit(loaded, "both").items():
        assert (slope, intercept) == (pytest.approx(0.45), pytest.approx(-1.1)), opt
    # the 2-epoch fit sits gap / 2 higher; the applied LR's correction is the rest of the way
    assert level_rule.fit(loaded, "2ep")["adam"] == pytest.approx([0.45, -1.0])
    corr = level_rule.fit(loaded, "both", level_rule.applied_offset)["sgd"]
    assert corr == pytest.approx([0.45, -1.1 - math.log10(0.3)])


def test_a_state_without_an_oracle_at_one_horizon_is_left_out_of_the_fit() -> None:
    loaded = _loaded(-1.0, 0.5, (1.0, 1.5, 2.0))
    loaded[0][0][level_rule.DEFAULT][0]["oracle"]["half"] = None  # adam at level 1.0
    loaded[0][0][level_rule.DEFAULT][0]["oracle"]["2ep"] = 99.0  # would pull the line away
    assert level_rule.fit(loaded, "both")["adam"] == pytest.approx([0.5, -1.0])


@pytest.mark.parametrize(
    ("lr", "smoothed_min", "diverge", "want"),
    [
        (3e-4, 1e-3, 3e-3, 3e-4),  # nothing binds
        (2e-3, 1e-3, 3e-3, 1e-3),  # never past the smoothed minimum
        (2e-3, None, None, 2e-3),  # a curve without one keeps the rule's LR
        (5e-5, None, None, 1e-4),  # within a factor 10 of the running LR
        (5e-2, None, None, 1e-2),
        (5e-3, None, 2e-3, 2e-4),  # in the diverging part: x 0.1 of where it diverged
    ],
)
def test_guarded_applies_the_rule_as_the_policy_would(
    lr: float, smoothed_min: float | None, diverge: float | None, want: float
) -> None:
    row = {"running_lr": 1e-3, "smoothed_min_lr": smoothed_min, "diverge_lr": diverge}
    assert level_rule.guarded(row, lr) == pytest.approx(want)


def _scores(median: tuple[float, float], bias: tuple[float, float], **kw: Any) -> dict:
    worse = kw.get("worse", (0.0, 0.1))
    p90 = kw.get("p90", (0.5, 0.5))
    return {"no_suggestion": kw.get("none", 0.0)} | {
        h: {
            "median_abs_decades": m,
            "p90_abs_decades": p,
            "median_signed_decades": b,
            "worse_than_running": w,
        }
        for h, m, b, w, p in zip(HORIZONS, median, bias, worse, p90, strict=True)
    }


@pytest.mark.parametrize(
    ("median", "bias", "worse", "want"),
    [
        ((0.2, 0.2), (0.0, 0.1), (0.0, 0.2), (True, True, True)),  # every bound is inclusive
        ((0.21, 0.1), (0.0, -0.11), (0.0, 0.21), (False, False, False)),
        ((0.1, 0.21), (0.5, 0.0), (0.9, 0.0), (False, True, True)),  # half-epoch bias: no target
    ],
)
def test_meets_reads_the_picks_three_targets(
    median: tuple[float, float],
    bias: tuple[float, float],
    worse: tuple[float, float],
    want: tuple[bool, bool, bool],
) -> None:
    got = level_rule.meets(_scores(median, bias, worse=worse))
    assert tuple(got.values()) == want
    assert level_rule.holds_out_of_sample(_scores(median, bias)) is want[0]


def test_closer_than_names_every_measure_it_loses_and_counts_a_tie_as_closer() -> None:
    ours = _scores((0.17, 0.19), (0.06, -0.15))
    assert all(level_rule.closer_than(ours, ours).values())
    theirs = _scores((0.22, 0.31), (-0.05, -0.20), none=0.0, p90=(0.76, 0.40))
    lost = [k for k, ok in level_rule.closer_than(ours, theirs).items() if not ok]
    assert lost == ["bias half", "p90 2ep"]
    assert not level_rule.closer_than(_scores((0.1, 0.1), (0, 0), none=0.2), theirs)["none"]


def test_the_committed_result_is_what_the_committed_caches_give() -> None:
    committed = json.loads((level_rule.C.RESULTS_DIR / "level_rule.json").read_text())
    design = level_rule.load(level_rule.CALIBRATION)
    rules, fits = level_rule.level_rules(design)
    for name, per_opt in committed["fits"].items():
        for opt, coef in per_opt.items():
            assert fits[name][opt] == pytest.approx(coef), (name, opt)
    noise = level_rule.committed_loss_noise(level_rule.C.RESULTS_DIR)
    assert noise is not None
    for label in ("held out (72)", "LR set badly (48)"):
        loaded = level_rule.load(level_rule.POPULATIONS_READ[label])
        got, _ = level_rule.read(label, loaded, rules, noise)
        want = committed["populations"][label]
        for name in ("level", level_rule.DEFAULT):
            for h in HORIZONS:
                for key in ("median_abs_decades", "median_signed_decades", "worse_than_running"):
                    assert got["scores"][name][h][key] == pytest.approx(
                        want["scores"][name][h][key]
                    ), (label, name, h, key)
        assert len([r for rows, _ in loaded for r in rows[level_rule.DEFAULT]]) == int(
            label.split("(")[1].rstrip(")")
        )


@pytest.mark.parametrize(
    ("gated", "default", "want"),
    [
        ((0.37, 0.08), (0.37, 0.08), True),  # as good on both counts
        ((0.38, 0.08), (0.37, 0.25), False),  # farther from the oracle
        ((0.20, 0.17), (0.37, 0.08), False),  # worse than keeping the LR more often
    ],
)
def test_gated_holds_reads_median_and_worse_count_at_two_epochs(
    gated: tuple[float, float], default: tuple[float, float], want: bool
) -> None:
    def s(median: float, worse: float) -> dict:
        return {"2ep": {"applied_median_abs_decades": median, "worse_than_running": worse}}

    assert level_rule.gated_holds(s(*gated), s(*default)) is want


def test_gated_keeps_the_default_only_where_the_shape_says_raise() -> None:
    rules, _ = level_rule.level_rules(_loaded(-1.1, 0.45, (0.9, 1.3, 1.8)))
    entry = {"range_tests": {"held_out_default": {"losses": [1.0]}}}
    raised = {"optimizer": "adam", "running_lr": 1e-4, "applied": 1e-3}  # +1 decade
    kept = {"optimizer": "adam", "running_lr": 1e-3, "applied": 1.5e-3}  # +0.18: level
    assert rules["gated"](raised, entry) == pytest.approx(1e-3)
    assert rules["gated"](kept, entry) == pytest.approx(1e-3 * 10 ** (-1.1 + 0.45))


@pytest.mark.parametrize(("pick", "want"), [(5e-4, 1e-3), (None, 2e-3)])
def test_guarded_on_a_pick_only_leaves_a_declined_curve_unbounded_by_its_minimum(
    pick: float | None, want: float
) -> None:
    row = {"running_lr": 1e-3, "smoothed_min_lr": 1e-3, "diverge_lr": None, "pick": pick}
    assert level_rule.guarded(row, 2e-3, on_pick_only=True) == pytest.approx(want)
    assert level_rule.guarded(row, 2e-3) == pytest.approx(1e-3)  # the benchmark's first guard


def test_level_on_a_pick_is_level_within_the_gate_and_the_default_elsewhere() -> None:
    """``level on a pick`` (the policy's decide() with ``level``'s fit as its first-loss
    calibration) on every cached curve it is read on, against the rule spelled out from the
    benchmark's own pieces: ``level`` guarded as the policy guards a pick where the default
    picks at most FIRST_LOSS_GATE decade above the running LR, the default's applied LR
    elsewhere; and the benchmark's guard leaves the policy's LR as it is."""
    from trainables.lr.range_test_policy import FIRST_LOSS_GATE

    design = level_rule.load(level_rule.CALIBRATION)
    rules, _ = level_rule.level_rules(design)
    counts = {"level": 0, "default": 0}
    for label in ("held out (72)", "LR set badly (48)"):
        for rows, doc in level_rule.load(level_rule.POPULATIONS_READ[label]):
            for r in rows[level_rule.DEFAULT]:
                entry = doc["states"][r["state"]]
                got = rules[level_rule.ON_A_PICK](r, entry)
                gated_in = (
                    r["pick"] is not None and r["pick"] <= r["running_lr"] * 10**FIRST_LOSS_GATE
                )
                if gated_in:
                    want = level_rule.guarded(r, rules["level"](r, entry), on_pick_only=True)
                else:
                    want = r["applied"]
                counts["level" if gated_in else "default"] += 1
                assert got == pytest.approx(want, rel=1e-9), (label, r["state"])
                assert level_rule.guarded(r, got, on_pick_only=True) == pytest.approx(got)
    assert counts["level"] + counts["default"] == 72 + 48
    assert min(counts.values()) >= 20  # both branches are exercised


@pytest.mark.parametrize(
    ("median", "bias", "want"),
    [
        ((0.2, 0.2), (0.0, 0.1), True),  # both bounds inclusive
        ((0.14, 0.11), (0.01, -0.103), False),  # the 2-epoch bias just outside
        ((0.21, 0.11), (0.0, 0.0), False),  # the half-epoch median just outside
        ((0.1, 0.1), (0.5, -0.1), True),  # the half-epoch bias has no target
    ],
)
def test_holds_as_default_asks_the_median_and_the_two_epoch_bias(
    median: tuple[float, float], bias: tuple[float, float], want: bool
) -> None:
    assert level_rule.holds_as_default(_scores(median, bias)) is want


def test_declines_none_scores_the_calibration_as_the_default_is_scored() -> None:
    """``level on a pick, declines none``: no pick exactly where the default rule declines the
    curve, the same applied LR as ``level on a pick`` everywhere."""
    design = level_rule.load(level_rule.CALIBRATION)
    rules, _ = level_rule.level_rules(design)
    loaded = level_rule.load(level_rule.POPULATIONS_READ["held out (72)"])
    rows = level_rule.rule_rows(loaded, rules)
    default, old, new = (
        rows[k] for k in (level_rule.DEFAULT, level_rule.ON_A_PICK, level_rule.ON_A_PICK_NONE)
    )
    declined = 0
    for d, a, b in zip(default, old, new, strict=True):
        assert d["state"] == a["state"] == b["state"]
        assert (b["pick"] is None) is (d["pick"] is None)
        assert a["pick"] is not None  # the old score counts the fallback as a pick
        assert b["applied"] == a["applied"]
        declined += d["pick"] is None
    assert declined >= 5  # the difference is exercised
