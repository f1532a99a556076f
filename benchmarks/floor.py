"""Does the range test add anything on top of a fixed cut? The reading of data10k_floor.yaml.

The range test floored at the fixed cut's x 0.3 (``max_raise: 0.3``: every test cuts at least
that deep, the pick only chooses a deeper cut) against reduce_on_plateau x 0.3, on the
40-epoch 10,000-image runs, seeds 110-114; nothing trained here. Its reading, fixed in the spec
before the sweep ran: H1, floor - reduce, paired final test_acc, a difference only where the
95% t interval excludes 0; D, the arms end equal on every seed where no floored test cut below
x 0.3; M, every applied LR is at most 0.3 x the LR before its test; R, the reduce arm ends on
each seed with data10k_long's final test_acc; only if R holds, H2, floor - data10k_long's
default range-test arm.

    python -m sweep compare data10k-floor --reference reduce_on_plateau \
        --out benchmarks/results/data10k_floor
    .venv/bin/python benchmarks/floor.py      # < 1 s
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import _common as C
from no_raise import interval_reading, moves, pts

from sweep.stats import Paired

SWEEP, LONG = "data10k_floor", "data10k_long"
FLOOR, REDUCE, DEFAULT = "range_test_floor", "reduce_on_plateau", "range_test"
START_LR, FLOOR_FACTOR = 1e-3, 0.3
#: data10k_long's reduce arm, final test_acc by seed (R).
LONG_REDUCE = {"110": 0.7383, "111": 0.7389, "112": 0.7398, "113": 0.7419, "114": 0.7432}
WORDS = (
    "the floored range test is better",
    "the floored range test is worse",
    "no difference shown",
)


def deeper_cuts(applied: Sequence[float], rel: float = 1e-9) -> int:
    """Tests that applied an LR below FLOOR_FACTOR x the LR before them."""
    return sum(new < old * FLOOR_FACTOR * (1 - rel) for old, new in moves(applied, START_LR))


def above_floor(applied: Sequence[float], rel: float = 1e-9) -> int:
    """Tests that applied an LR above FLOOR_FACTOR x the LR before them (M: none)."""
    return sum(new > old * FLOOR_FACTOR * (1 + rel) for old, new in moves(applied, START_LR))


def by_arm(runs: Sequence[dict[str, Any]], arm: str) -> dict[str, dict[str, Any]]:
    return {str(r["seed"]): r for r in runs if r["policy"] == arm}


def paired(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """a - b in final test_acc over their shared seeds, read by the spec's rule."""
    seeds = sorted(set(a) & set(b), key=int)
    p = Paired.of([(a[s]["final_test_acc"], b[s]["final_test_acc"]) for s in seeds])
    return {
        "seeds": seeds,
        "n": p.n,
        "mean": p.mean,
        "ci95": p.ci95,
        "better": p.better,
        "worse": sum(d < 0 for d in p.diffs),
        "diffs": list(p.diffs),
        "reading": interval_reading(p.mean, p.ci95, WORDS),
    }


def reading(runs: Sequence[dict[str, Any]], long_runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """H1, D, M, R and (if R) H2 from the two sweeps' ``comparison.json`` runs."""
    floor, reduce = by_arm(runs, FLOOR), by_arm(runs, REDUCE)
    rows = [
        {
            "seed": s,
            "floor": floor[s]["final_test_acc"],
            "reduce": reduce[s]["final_test_acc"],
            "floor_lrs": floor[s]["range_test_lrs"],
            "deeper_cuts": deeper_cuts(floor[s]["range_test_lrs"]),
            "above_floor": above_floor(floor[s]["range_test_lrs"]),
            "at_chance": bool(floor[s].get("not_learning")),
        }
        for s in sorted(set(floor) & set(reduce), key=int)
    ]
    d_failures = [r["seed"] for r in rows if r["deeper_cuts"] == 0 and r["floor"] != r["reduce"]]
    m_failures = [r["seed"] for r in rows if r["above_floor"] and not r["at_chance"]]
    r_holds = len(reduce) == len(LONG_REDUCE) and all(
        reduce.get(s, {}).get("final_test_acc") == acc for s, acc in LONG_REDUCE.items()
    )
    out: dict[str, Any] = {
        "rows": rows,
        "H1": paired(floor, reduce),
        "D_failures": d_failures,
        "M_failures": m_failures,
        "R_holds": r_holds,
        "tests": sum(len(r["floor_lrs"]) for r in rows),
        "deeper_cuts": sum(r["deeper_cuts"] for r in rows),
    }
    if r_holds:
        out["H2"] = paired(floor, by_arm(long_runs, DEFAULT))
    return out


def show(h: dict[str, Any], name: str) -> None:
    if h["ci95"] is None:
        print(f"{name}: {h['reading']}")
        return
    lo, hi = h["mean"] - h["ci95"], h["mean"] + h["ci95"]
    print(
        f"{name}: {pts(h['mean'])} pts [{pts(lo)}, {pts(hi)}], better {h['better']}, worse"
        f" {h['worse']} of {h['n']}: {h['reading']}"
    )


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    path = C.RESULTS_DIR / SWEEP / "comparison.json"
    if not path.exists():
        print(f"{path} is missing: run benchmarks/specs/data10k_floor.yaml and `sweep compare`")
        return 1
    runs = json.loads(path.read_text())["runs"]
    long_runs = json.loads((C.RESULTS_DIR / LONG / "comparison.json").read_text())["runs"]
    read = reading(runs, long_runs)
    for r in read["rows"]:
        lrs = ", ".join(f"{x:.3g}" for x in r["floor_lrs"])
        print(
            f"  seed {r['seed']}: floor {r['floor']:.4f} (LRs {lrs}; {r['deeper_cuts']} deeper"
            f" than x 0.3), reduce {r['reduce']:.4f}, {pts(r['floor'] - r['reduce'])} pts"
        )
    print(f"D (arms equal where no test cut deeper): failures {read['D_failures']}")
    print(f"M (no applied LR above x 0.3): failures {read['M_failures']}")
    print(f"R (the reduce arm reruns data10k_long's exactly): {read['R_holds']}")
    show(read["H1"], "H1, floor - reduce")
    if "H2" in read:
        show(read["H2"], "H2, floor - data10k_long's range test")
    else:
        print("H2: not read (R failed)")
    read["seconds"] = time.perf_counter() - t0
    C.write_result("data10k_floor", read, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
