"""How often a sweep's range tests declined, and whether a declined curve had a real descent.

The target "at most 5% of tests whose curve has a real descent return no suggestion" was
measured on the oracle's states (docs/range_test_oracle.md, "Targets"); this reads it end to
end, from a finished sweep's logged range tests (the curves in each trial run's MLflow
events). Per range-test arm: the tests, the declines (no suggestion), the curves with a real
descent (the oracle benchmark's ``real_descent``: before the diverging part the raw loss falls
more than 1% below the window's start and more than 5x the descent's noise) and the declines
among them. Nothing is trained.

    .venv/bin/python benchmarks/declines.py sgd-compare sgd-patience0 \
        --tracking-uri sqlite:////tmp/sgd/mlflow.db        # ~5 s
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import _common as C
from _oracle_analysis import real_descent


def range_tests(tracking_uri: str, sweep: str) -> dict[str, list[dict[str, Any]]]:
    """Per arm (policy label): one entry per logged range test of its finished trials."""
    from sweep.readback import policy_of, range_test_events, seed_of
    from trainables.lr import analyse_curve

    client, runs = C.finished_sweep(tracking_uri, sweep)
    arms: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for event in range_test_events(client, run.info.run_id):
            losses = tuple(math.nan if v is None else float(v) for v in event["losses"])
            curve = analyse_curve(tuple(event["lrs"]), losses)
            arms.setdefault(policy_of(run), []).append(
                {
                    "seed": seed_of(run),
                    "epoch": event["epoch"],
                    "declined": event.get("suggested_lr") is None,
                    "real_descent": real_descent(curve),
                    "reason": curve.reason,
                }
            )
    return arms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", metavar="SWEEP", help="finished sweeps' names")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    per_sweep: dict[str, dict[str, Any]] = {}
    for sweep in args.sweeps:
        for arm, tests in sorted(range_tests(args.tracking_uri, sweep).items()):
            real = [t for t in tests if t["real_descent"]]
            counts = {
                "tests": len(tests),
                "declined": sum(t["declined"] for t in tests),
                "real_descents": len(real),
                "declined_real_descents": sum(t["declined"] for t in real),
            }
            per_sweep.setdefault(sweep, {})[arm] = {**counts, "tests_detail": tests}
            print(
                f"{sweep} / {arm}: {counts['tests']} range tests, {counts['declined']} declined; "
                f"{counts['real_descents']} with a real descent, "
                f"{counts['declined_real_descents']} of them declined"
            )
    payload = {"seconds": round(time.perf_counter() - t0, 2), "sweeps": per_sweep}
    name = "declines_" + "_".join(s.replace("-", "_") for s in args.sweeps)
    C.write_result(name, payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
