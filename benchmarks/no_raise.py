"""Should a range test raise the LR at a plateau? The tests that did, and ``max_raise: 1``.

Two parts, nothing trained:

1. Every committed end-to-end run of the range-test policy at the well-set LR (seed CNN + Adam
   1e-3, 30 epochs on 5,000 images), at patience 0 and, for today's default, at patience 3:
   each test's move, from the LRs the tests applied (``range_test_lrs``; the running LR only
   changes at a test), and how many tests raised it.
2. The readings of ``benchmarks/specs/no_raise.yaml``, ``no_raise_low_lr.yaml`` and
   ``no_raise_patience0.yaml`` (each fixed in its file before it ran): the default policy
   against the same with ``max_raise: 1`` (a test never raises the LR unless the plateau is at
   chance), paired final test_acc. The first, at Adam 1e-3: R, its seeds 15 and 19 rerun the
   committed ones exactly; D, the arms end equal on every seed where the default raised
   nothing (they made the same decisions); H1, on the fresh seeds 30-49, ``max_raise: 1`` is
   better if the 95% t interval lies above 0, worse if below, else no difference is shown. The
   second, at Adam 3e-4 (an LR set too low, where a raise may be the rescue), seeds 0-4: D, and
   H: ``max_raise: 1`` costs the rescue if the interval lies below 0. The third, with a test
   at every stall (patience 0), where raises are common, seeds 50-59: better if the interval
   lies above 0, worse if below.

    python -m sweep compare no-raise --reference range_test --out benchmarks/results/no_raise
    python -m sweep compare no-raise-low-lr --reference range_test \
        --out benchmarks/results/no_raise_low_lr
    python -m sweep compare no-raise-patience0 --reference range_test \
        --out benchmarks/results/no_raise_patience0
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

#: Committed range-test arms at Adam 1e-3 (seed CNN, 5,000 images, 30 epochs): (folder, label,
#: the seeds read; None: all). Patience 0 (a test at every stall) ...
PATIENCE0 = (
    ("policy_compare_long", "range_test_on_plateau", None),
    ("ablation_rule_long", "range_test_midpoint", None),
    ("ablation_rule_long", "range_test_steepest", None),
    ("ablation_fallback_long", "range_test_below_divergence", None),
    ("ablation_fallback_long", "range_test_cut", None),
    ("ablation_max_change_long", "range_test_x10", None),
    ("ablation_max_change_long", "range_test_unlimited", None),
    ("rule_decision_fresh", "midpoint_p0", None),
    ("rule_decision_fresh", "steepest_p0", None),
)
#: ... and today's default policy at patience 3, each seed once: 0-24 and 30-49.
DEFAULT_P3 = (
    ("ablation_fallback_patience3_long", "range_test_below_divergence", None),
    ("rule_decision_fresh", "midpoint_p3", None),
    ("confirm_patience3_fresh", "range_test", None),
    ("confirm_patience3_more", "range_test", tuple(str(s) for s in range(15, 25))),
    ("no_raise", "range_test", tuple(str(s) for s in range(30, 50))),
)
START_LR = 1e-3
SWEEP, LOW_SWEEP, P0_SWEEP = "no_raise", "no_raise_low_lr", "no_raise_patience0"
LOW_START_LR = 3e-4
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


def committed_tests(
    results: Path, arms: Sequence[tuple[str, str, tuple[str, ...] | None]]
) -> dict[str, Any]:
    """Tests and raises over the committed runs of ``arms``, and the runs with a raise."""
    runs = tests = raised = first = 0
    runs_with: list[dict[str, Any]] = []
    for folder, label, seeds in arms:
        doc = json.loads((results / folder / "comparison.json").read_text())
        for run in doc["runs"]:
            if run["policy"] != label or (seeds is not None and str(run["seed"]) not in seeds):
                continue
            applied = run["range_test_lrs"]
            n = raises(applied, START_LR)
            runs, tests, raised = runs + 1, tests + len(applied), raised + n
            first += raises(applied[:1], START_LR)
            if n:
                runs_with.append({"sweep": folder, "arm": label, "seed": str(run["seed"])})
    return {
        "runs": runs,
        "tests": tests,
        "raised": raised,
        "raised_at_a_first_test": first,
        "runs_with_a_raise": runs_with,
    }


#: What each sweep's reading, fixed in its spec before it ran, says when the 95% t interval of
#: no_raise - default lies above 0, below 0, or includes 0.
H1_WORDS = (
    "max_raise 1 is better: the default becomes max_raise 1",
    "max_raise 1 is worse",
    "no difference shown: the default stays max_raise null",
)
LOW_LR_WORDS = ("max_raise 1 helps here too", "max_raise 1 costs the rescue", "no difference shown")
PATIENCE0_WORDS = (
    "max_raise 1 is better at patience 0",
    "max_raise 1 is worse at patience 0",
    "no difference shown",
)


def interval_reading(mean: float | None, ci95: float | None, words: tuple[str, str, str]) -> str:
    """``words``' first if the 95% t interval ``mean`` ± ``ci95`` lies above 0, its second if
    below, its third if it includes 0."""
    if mean is None or ci95 is None:
        return "not read: fewer than 2 paired seeds"
    above, below, neither = words
    return above if mean - ci95 > 0 else below if mean + ci95 < 0 else neither


def pairs(runs: Sequence[dict[str, Any]], start_lr: float) -> list[dict[str, Any]]:
    """Per seed both arms ran: final test_acc of each, no_raise - default, the default's
    raises, each arm's applied LRs and whether a plateau was at chance (``not_learning``)."""
    by = {(r["policy"], str(r["seed"])): r for r in runs}
    rows = []
    for seed in sorted({s for _, s in by}, key=int):
        a, b = by.get((DEFAULT, seed)), by.get((NO_RAISE, seed))
        if a is None or b is None:
            continue
        rows.append(
            {
                "seed": seed,
                "default": a["final_test_acc"],
                "no_raise": b["final_test_acc"],
                "diff": b["final_test_acc"] - a["final_test_acc"],
                "default_raises": raises(a["range_test_lrs"], start_lr),
                "default_lrs": a["range_test_lrs"],
                "no_raise_lrs": b["range_test_lrs"],
                "at_chance": bool(a.get("not_learning")) or bool(b.get("not_learning")),
            }
        )
    return rows


def determinism_failures(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Seeds where the default raised nothing, yet the arms did not end equal (D)."""
    return [
        r["seed"]
        for r in rows
        if r["default_raises"] == 0 and (r["diff"] != 0 or r["default_lrs"] != r["no_raise_lrs"])
    ]


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """no_raise - default over ``rows``, and over the seeds where the default raised."""
    paired = Paired.of([(r["no_raise"], r["default"]) for r in rows])
    raised = [r for r in rows if r["default_raises"]]
    on_raised = Paired.of([(r["no_raise"], r["default"]) for r in raised])
    return {
        "seeds": [r["seed"] for r in rows],
        "n": paired.n,
        "mean": paired.mean,
        "ci95": paired.ci95,
        "better": paired.better,
        "worse": sum(d < 0 for d in paired.diffs),
        "raised_on": [r["seed"] for r in raised],
        "raises": sum(r["default_raises"] for r in rows),
        "mean_where_raised": on_raised.mean,
        "better_where_raised": on_raised.better,
        "default_tests": sum(len(r["default_lrs"]) for r in rows),
    }


def reading(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """R, D and H1 of the no_raise sweep from its runs (``comparison.json``'s ``runs``)."""
    rows = pairs(runs, START_LR)
    origin = [r for r in rows if r["seed"] in ORIGIN]
    reproduced = len(origin) == len(ORIGIN) and all(
        r["default"] == ORIGIN[r["seed"]] for r in origin
    )
    h1 = summary([r for r in rows if r["seed"] in FRESH])
    h1["reading"] = interval_reading(h1["mean"], h1["ci95"], H1_WORDS)
    return {
        "rows": rows,
        "R_reproduced": reproduced,
        "origin": summary(origin),
        "D_determinism_failures": determinism_failures(rows),
        "H1": h1,
    }


def sweep_reading(
    runs: Sequence[dict[str, Any]], start_lr: float, words: tuple[str, str, str]
) -> dict[str, Any]:
    """D and H of a sweep read over all its seeds (no_raise_low_lr, no_raise_patience0)."""
    rows = pairs(runs, start_lr)
    h = summary(rows)
    h["reading"] = interval_reading(h["mean"], h["ci95"], words)
    return {"rows": rows, "D_determinism_failures": determinism_failures(rows), "H": h}


def low_lr(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """no_raise_low_lr.yaml (Adam 3e-4, seeds 0-4)."""
    return sweep_reading(runs, LOW_START_LR, LOW_LR_WORDS)


def patience0(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """no_raise_patience0.yaml (a test at every stall, seeds 50-59)."""
    return sweep_reading(runs, START_LR, PATIENCE0_WORDS)


def pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f}"


def interval(h: dict[str, Any]) -> str:
    """``mean [lo, hi]`` in points, from a :func:`summary`."""
    if h["ci95"] is None:
        return f"{pts(h['mean'])} pts"
    return f"{pts(h['mean'])} pts [{pts(h['mean'] - h['ci95'])}, {pts(h['mean'] + h['ci95'])}]"


def show(name: str, read: dict[str, Any], key: str) -> None:
    for r in read["rows"]:
        chance = ", at chance" if r["at_chance"] else ""
        print(
            f"  seed {r['seed']:>2}: default {r['default']:.4f} ({r['default_raises']} raises"
            f"{chance}), max_raise 1 {r['no_raise']:.4f}, {pts(r['diff'])} pts"
        )
    h = read[key]
    print(f"  D (arms equal where nothing was raised): failures {read['D_determinism_failures']}")
    print(
        f"  {key}, {name}: max_raise 1 - default {interval(h)}, better {h['better']}, worse"
        f" {h['worse']} of {h['n']}: {h['reading']}"
    )
    print(
        f"  the default raised {h['raises']} times, on seeds {', '.join(h['raised_on']) or '-'};"
        f" there max_raise 1 {pts(h['mean_where_raised'])} pts, better on"
        f" {h['better_where_raised']}"
    )


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    committed = {}
    for name, arms in (("patience 0", PATIENCE0), ("patience 3, default", DEFAULT_P3)):
        c = committed[name] = committed_tests(C.RESULTS_DIR, arms)
        print(
            f"committed runs at Adam 1e-3, {name}: {c['raised']} of {c['tests']} tests raised the"
            f" LR ({c['raised_at_a_first_test']} at a run's first test), in"
            f" {len(c['runs_with_a_raise'])} of {c['runs']} runs"
        )
    payload: dict[str, Any] = {"committed": committed}
    for folder, read_it, key, name in (
        (SWEEP, reading, "H1", "Adam 1e-3, seeds 30-49"),
        (LOW_SWEEP, low_lr, "H", "Adam 3e-4, seeds 0-4"),
        (P0_SWEEP, patience0, "H", "patience 0, seeds 50-59"),
    ):
        path = C.RESULTS_DIR / folder / "comparison.json"
        if not path.exists():
            print(f"{path} is missing: run its sweep and `sweep compare` (benchmarks/specs/)")
            continue
        read = read_it(json.loads(path.read_text())["runs"])
        print(f"{folder}:")
        if "R_reproduced" in read:
            o = read["origin"]
            print(
                f"  R (seeds 15, 19 rerun the committed runs exactly): {read['R_reproduced']};"
                f" there max_raise 1 - default {interval(o)}"
            )
        show(name, read, key)
        payload[folder] = read
    payload["seconds"] = time.perf_counter() - t0
    C.write_result("no_raise", payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
