"""Which recorded range tests the not_learning warning would have flagged.

A plateau policy warns (``trainables.lr.plateau.at_chance``, the policy's ``chance_margin``)
on a plateau where the monitored metric is no better than chance: ln 10 for CIFAR-10's
cross-entropy, 0.1 for accuracy. This replays the check on every range test a sweep logged to
an MLflow store (each range-test run's ``range_test_lr`` marks the epochs it tested, and the
monitored metric of that epoch is read back) and counts, per sweep, the tests it flags.
Nothing is trained. A sweep whose runs learn should have none flagged; a sweep of dead
networks (``benchmarks/specs/misset_adam_high.yaml``) all of them.

    .venv/bin/python benchmarks/not_learning.py --tracking-uri sqlite:///mlflow.db   # ~10 s
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import _common as C

from sweep.store import RANGE_TEST_LR_METRIC, ROLE_CHILD, TAG_ROLE
from trainables.cifar_files import NUM_CLASSES
from trainables.config import MONITORS
from trainables.lr.params import RangeTestParams
from trainables.lr.plateau import at_chance, chance_level

MARGIN = RangeTestParams().chance_margin


def replay(tracking_uri: str, margin: float) -> list[dict[str, Any]]:
    """Per sweep: its range tests, how many are flagged, and the monitored metric's range at
    the tested epochs."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    tested: dict[str, list[float]] = defaultdict(list)
    flagged: dict[str, int] = defaultdict(int)
    for exp in client.search_experiments():
        runs = client.search_runs(
            [exp.experiment_id],
            f"tags.`{TAG_ROLE}` = '{ROLE_CHILD}' and params.policy = 'range_test_on_plateau'",
            max_results=5000,
        )
        for run in runs:
            tests = client.get_metric_history(run.info.run_id, RANGE_TEST_LR_METRIC)
            if not tests:
                continue
            monitor = run.data.params.get("monitor", "val_loss")
            chance = chance_level(MONITORS[monitor], NUM_CLASSES)
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, monitor)}
            for test in tests:
                value = history.get(test.step)
                if value is None:
                    continue
                tested[exp.name].append(value)
                flagged[exp.name] += at_chance(value, chance, MONITORS[monitor], margin)
    return [
        {
            "sweep": name,
            "range_tests": len(values),
            "flagged": flagged[name],
            "metric_at_tests": [min(values), max(values)],
        }
        for name, values in sorted(tested.items())
    ]


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db", help="the MLflow store")
    args = parser.parse_args()
    assert MARGIN is not None
    t0 = time.perf_counter()
    rows = replay(args.tracking_uri, MARGIN)
    print(f"chance_margin {MARGIN:g} (ln {NUM_CLASSES} for a loss, 1/{NUM_CLASSES} for accuracy)")
    print(f"{'sweep':42s} {'tests':>5s} {'flagged':>7s}  monitored metric at the tests")
    for row in rows:
        low, high = row["metric_at_tests"]
        print(
            f"{row['sweep']:42s} {row['range_tests']:5d} {row['flagged']:7d}"
            f"  {low:.3f} .. {high:.3f}"
        )
    payload = {"seconds": time.perf_counter() - t0, "chance_margin": MARGIN, "sweeps": rows}
    C.write_result("not_learning", payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
