"""Should a range test raise the LR at a plateau? The tests that did, and ``max_raise: 1``.

Two parts, nothing trained:

1. Every committed end-to-end run of the range-test policy at the well-set LR (seed CNN + Adam
   1e-3, 30 epochs on 5,000 images): each test's move, from the LRs the tests applied
   (``range_test_lrs``; the running LR only changes at a test), and how many tests raised it.
2. The reading of ``benchmarks/specs/no_raise.yaml`` (fixed in that file before it ran): the
   default policy against the same with ``max_raise: 1`` (a test never raises the LR unless the
   plateau is at chance), paired final test_acc. R: its seeds 15 and 19 rerun the committed
   ones exactly; D: the arms end equal on every seed where the default raised nothing (they
   made the same decisions); H1, on the fresh seeds 30-49: ``max_raise: 1`` is better if the
   95% t interval lies above 0, worse if below, else no difference is shown.

    python -m sweep compare no-raise --reference range_test --out benchmarks/results/no_raise
    .venv/bin/python benchmarks/no_raise.py      # < 1 s
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as C

from sweep.stats import Paired

#: Committed sweeps of the range-test policy at Adam 1e-3 (seed CNN, 5,000 images, 30 epochs):
#: folder -> the labels of their range-test arms.
WELL_SET = {
    "policy_compare_long": ("range_test_on_plateau",),
    "ablation_rule_long": ("range_test_midpoint", "range_test_steepest"),
    "ablation_fallback_long": ("range_test_below_divergence", "range_test_cut"),
    "ablation_max_change_long": ("range_test_x10", "range_test_unlimited"),
    "ablation_patience3_long": ("range_test_on_plateau",),
    "ablation_fallback_patience3_long": ("range_test_below_divergence", "range_test_cut"),
    "rule_decision_fresh": ("midpoint_p0", "midpoint_p3", "steepest_p0", "steepest_p3"),
    "confirm_patience3_fresh": ("range_test",),
    "confirm_patience3_more": ("range_test",),
}
START_LR = 1e-3
SWEEP = "no_raise"
DEFAULT, NO_RAISE = "range_test", "range_test_no_raise"
#: The seeds the question came from (their committed runs, and the rerun that must match them).
ORIGIN = {"15": 0.6475, "19": 0.6379}
FRESH = tuple(str(s) for s in range(30, 50))


def moves(applied: Sequence[float], start_lr: float) -> list[tuple[float, float]]:
    """(old LR, new LR) of each test, from the LRs the tests applied in order."""
    out, old = [], start_lr
    for new in applied:
        out.append((old, float(new)))
        old = float(new)
    return out


def raises(applied: Sequence[float], start_lr: float, rel: float = 1e-9) -> int:
    """How many tests raised the LR (new above old by more than ``rel``)."""
    return sum(new > old * (1 + rel) for old, new in moves(applied, start_lr))


def committed_tests(results: Path) -> dict[str, Any]:
    """Tests and raises over every committed well-set range-test run, and the runs with one."""
    tests = raised = first = 0
    runs_with: list[dict[str, Any]] = []
    for folder, labels in WELL_SET.items():
        doc = json.loads((results / folder / "comparison.json").read_text())
        for run in doc["runs"]:
            if (run.get("label") or run["policy"]) not in labels:
                continue
            applied = run["range_test_lrs"]
            n = raises(applied, START_LR)
            tests, raised = tests + len(applied), raised + n
            first += raises(applied[:1], START_LR)
            if n:
                runs_with.append({"sweep": folder, "arm": run["policy"], "seed": run["seed"]})
    return {
        "tests": tests,
        "raised": raised,
        "raised_at_a_first_test": first,
        "runs_with_a_raise": runs_with,
    }


def h1_reading(mean: float | None, ci95: float | None) -> str:
    """H1, fixed before the sweep ran: from the 95% t interval of no_raise - default."""
    if mean is None or ci95 is None:
        return "not read: fewer than 2 paired seeds"
    if mean - ci95 > 0:
        return "max_raise 1 is better: the default becomes max_raise 1"
    if mean + ci95 < 0:
        return "max_raise 1 is worse"
    return "no difference shown: the default stays max_raise null"


def reading(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """R, D and H1 of the no_raise sweep from its runs (``comparison.json``'s ``runs``)."""
    by = {(r["policy"], str(r["seed"])): r for r in runs}
    seeds = sorted({s for _, s in by}, key=int)
    rows = []
    for seed in seeds:
        a, b = by.get((DEFAULT, seed)), by.get((NO_RAISE, seed))
        if a is None or b is None:
            continue
        n = raises(a["range_test_lrs"], START_LR)
        rows.append(
            {
                "seed": seed,
                "default": a["final_test_acc"],
                "no_raise": b["final_test_acc"],
                "diff": b["final_test_acc"] - a["final_test_acc"],
                "default_raises": n,
                "default_lrs": a["range_test_lrs"],
                "no_raise_lrs": b["range_test_lrs"],
            }
        )
    origin = [r for r in rows if r["seed"] in ORIGIN]
    reproduced = len(origin) == len(ORIGIN) and all(
        r["default"] == ORIGIN[r["seed"]] for r in origin
    )
    same = [
        r["seed"]
        for r in rows
        if r["default_raises"] == 0 and (r["diff"] != 0 or r["default_lrs"] != r["no_raise_lrs"])
    ]
    fresh = [r for r in rows if r["seed"] in FRESH]
    paired = Paired.of([(r["no_raise"], r["default"]) for r in fresh])
    raised = [r for r in fresh if r["default_raises"]]
    on_raised = Paired.of([(r["no_raise"], r["default"]) for r in raised]) if raised else None
    return {
        "rows": rows,
        "R_reproduced": reproduced,
        "D_determinism_failures": same,
        "H1": {
            "seeds": [r["seed"] for r in fresh],
            "n": paired.n,
            "mean": paired.mean,
            "ci95": paired.ci95,
            "better": paired.better,
            "worse": sum(d < 0 for d in paired.diffs),
            "reading": h1_reading(paired.mean, paired.ci95),
        },
        "seeds_where_the_default_raised": {
            "seeds": [r["seed"] for r in raised],
            "mean": on_raised.mean if on_raised else None,
            "better": on_raised.better if on_raised else 0,
        },
    }


def pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    committed = committed_tests(C.RESULTS_DIR)
    print(
        f"committed well-set runs: {committed['raised']} of {committed['tests']} tests raised the"
        f" LR ({committed['raised_at_a_first_test']} at a run's first test, the rest at a later"
        f" one), in {len(committed['runs_with_a_raise'])} runs"
    )
    payload: dict[str, Any] = {"committed": committed}
    path = C.RESULTS_DIR / SWEEP / "comparison.json"
    if path.exists():
        read = reading(json.loads(path.read_text())["runs"])
        for r in read["rows"]:
            print(
                f"seed {r['seed']:>2}: default {r['default']:.4f} ({r['default_raises']} raises),"
                f" max_raise 1 {r['no_raise']:.4f}, {pts(r['diff'])} pts"
            )
        h1, on = read["H1"], read["seeds_where_the_default_raised"]
        print(f"R (seeds 15, 19 rerun exactly): {read['R_reproduced']}")
        print(f"D (arms equal where nothing was raised): failures {read['D_determinism_failures']}")
        print(
            f"H1, seeds 30-49: max_raise 1 - default {pts(h1['mean'])} pts"
            f" [{pts(h1['mean'] - h1['ci95'])}, {pts(h1['mean'] + h1['ci95'])}],"
            f" better {h1['better']}, worse {h1['worse']} of {h1['n']}: {h1['reading']}"
        )
        if on["seeds"]:
            print(
                f"  the default raised on seeds {', '.join(on['seeds'])}: there max_raise 1"
                f" {pts(on['mean'])} pts, better on {on['better']}"
            )
        payload["sweep"] = read
    else:
        print(f"{path} is missing: run the sweep and `sweep compare` first (this file's docstring)")
    payload["seconds"] = time.perf_counter() - t0
    C.write_result("no_raise", payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
