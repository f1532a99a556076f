"""The lone-spike fix of the curve reading, end to end: ``benchmarks/specs/spike_fix*.yaml``.

Two sweeps of one of those specs on one machine (spike_fix.yaml: seeds 80-89; with
``--patience0`` spike_fix_patience0.yaml, with ``--default-sweep`` spike_fix_default.yaml):
``<name>-before`` with the reading before the fix (commit ``BEFORE``, first on PYTHONPATH)
and ``<name>-after`` with it (the names in ``SPECS``). This
pairs their final test accuracy seed by seed and applies the reading fixed in the spec before
they ran (the fix is reverted if the 95% t interval of mean test_acc(after) - test_acc(before)
lies below 0). It also replays every range test each sweep logged through both readings: how
many they answer differently, and that each sweep's logged picks are its own reading's (so the
"before" sweep really ran the old code). Nothing is trained here.

    .venv/bin/python benchmarks/spike_fix.py --tracking-uri sqlite:////tmp/spike/mlflow.db
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import _common as C

from sweep.stats import Paired
from trainables.lr import suggest_lr_with_reason

BEFORE = "8813530"
"""The last commit with the reading before the fix (2878594)."""
#: Per spec, its two sweeps' names and its result file.
SPECS = {
    "patience3": ({"before": "spike-fix-before", "after": "spike-fix-after"}, "spike_fix"),
    "patience0": (
        {"before": "spike-fix-p0-before", "after": "spike-fix-p0-after"},
        "spike_fix_patience0",
    ),
    "default": (
        {"before": "spike-fix-default-before", "after": "spike-fix-default-after"},
        "spike_fix_default",
    ),
}
RULE = "midpoint"


def before_reading() -> ModuleType:
    """``trainables/lr/suggest.py`` as it was at ``BEFORE``, loaded from git."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:trainables/lr/suggest.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    ).stdout
    spec = importlib.util.spec_from_loader("suggest_before_spike_fix", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{BEFORE}:trainables/lr/suggest.py", "exec"), module.__dict__)
    return module


def sweep_runs(tracking_uri: str, sweep: str) -> dict[int, dict[str, Any]]:
    """Per seed: final test_acc and every range test (its curve and logged pick)."""
    from sweep.readback import range_test_events, seed_of

    client, runs = C.finished_sweep(tracking_uri, sweep)
    out: dict[int, dict[str, Any]] = {}
    for run in runs:
        tag = seed_of(run)
        if tag is None:
            raise SystemExit(f"error: a run of {sweep!r} has no seed tag: not a sweep's trial")
        seed = int(tag)
        if seed in out:
            raise SystemExit(f"error: {sweep!r} ran seed {seed} twice; it has one arm")
        tests = [
            {
                "epoch": event["epoch"],
                "lrs": event["lrs"],
                "losses": event["losses"],
                "logged_pick": event.get("suggested_lr"),
                "new_lr": event.get("new_lr"),
            }
            for event in range_test_events(client, run.info.run_id)
        ]
        if "test_acc" not in run.data.metrics:
            raise SystemExit(f"error: {sweep!r} seed {seed} has no test_acc; let it finish")
        out[seed] = {"test_acc": run.data.metrics["test_acc"], "tests": tests}
    return out


def reading(paired: Paired) -> str:
    """The reading fixed in the spec before the sweeps ran."""
    if paired.mean is None or paired.ci95 is None:
        return "not enough seeds"
    if paired.mean + paired.ci95 < 0:
        return "worse: revert the fix"
    if paired.mean - paired.ci95 > 0:
        return "better: the fix stays"
    return "no difference shown: the fix stays"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--out", default=None)
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--patience0", action="store_true", help="the sweeps of spike_fix_patience0.yaml"
    )
    which.add_argument(
        "--default-sweep", action="store_true", help="the sweeps of spike_fix_default.yaml"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    key = "patience0" if args.patience0 else "default" if args.default_sweep else "patience3"
    names, result_name = SPECS[key]
    old = before_reading()
    sweeps = {k: sweep_runs(args.tracking_uri, name) for k, name in names.items()}
    seeds = sorted(set(sweeps["before"]) & set(sweeps["after"]))
    pairs = [(sweeps["after"][s]["test_acc"], sweeps["before"][s]["test_acc"]) for s in seeds]
    paired = Paired.of(pairs)
    replay: dict[str, dict[str, Any]] = {}
    for label, runs in sweeps.items():
        tests = [t for r in runs.values() for t in r["tests"]]
        differ = own_mismatch = 0
        for t in tests:
            a, _ = old.suggest_lr_with_reason(t["lrs"], t["losses"], RULE)
            b, _ = suggest_lr_with_reason(t["lrs"], t["losses"], RULE)
            differ += a != b
            own_mismatch += (a if label == "before" else b) != t["logged_pick"]
        replay[label] = {"tests": len(tests), "read_differently": differ, "not_own": own_mismatch}
    per_seed = [
        {
            "seed": s,
            "before": sweeps["before"][s]["test_acc"],
            "after": sweeps["after"][s]["test_acc"],
            "tests_before": len(sweeps["before"][s]["tests"]),
            "tests_after": len(sweeps["after"][s]["tests"]),
        }
        for s in seeds
    ]
    verdict = reading(paired)
    print(f"seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}), paired test_acc(after) - test_acc(before)")
    print(f"  D = {paired.format('+.4f')}, after better in {paired.better_text} ({verdict})")
    print(f"  identical seeds: {sum(d == 0 for d in paired.diffs)} of {paired.n}")
    for label, r in replay.items():
        print(
            f"  {label}: {r['tests']} range tests, {r['read_differently']} read differently by "
            f"the two readings, {r['not_own']} logged picks not its own reading's"
        )
    payload = {
        "seconds": round(time.perf_counter() - t0, 2),
        "before_commit": BEFORE,
        "sweeps": names,
        "paired": {
            "n": paired.n,
            "mean": paired.mean,
            "ci95": paired.ci95,
            "better": paired.better,
            "diffs": list(paired.diffs),
        },
        "reading": verdict,
        "replay": replay,
        "per_seed": per_seed,
    }
    C.write_result(result_name, payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
