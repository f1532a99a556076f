"""Sweep scaling with concurrent trials, and the driver's MLflow write rate.

Part 1 -- N identical short trials (constant policy, seed_cnn, 1 CPU each; the seeds differ,
the work does not) run through ``python -m sweep run`` with ``max_concurrent_trials`` 1 and 2,
alternating (1, 2, 2, 1, ...). Throughput is trials/hour over the sweep window (the first
trial's MLflow child run start to the last one's end: trial scheduling, worker start-up,
training, checkpoints and reporting, but not Ray's own start or the final comparison) and, for
reference, over the whole command. Target: concurrency 2 >= 1.8x concurrency 1.

Part 2 -- how many results per second the driver-side ``sweep.tracking.MLflowTracker`` can
write into a SQLite store: ``on_trial_result`` called directly with realistic epoch results
(the trainable's metrics, a 100-point lr_trace, no policy events) for K stub trials in turn;
and, separately, results that carry a range-test event (JSON + PNG plot artifacts).

    .venv/bin/python benchmarks/scaling.py            # ~5 min
    .venv/bin/python benchmarks/scaling.py --quick    # ~1-2 min sanity run (Ray start-up)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import _common as C

TARGET = 1.8


# -- part 1 ------------------------------------------------------------------------------------
def run_concurrency(
    params: dict[str, Any], concurrency: int, workdir: Path, index: int
) -> dict[str, Any]:
    name = f"scaling-c{concurrency}-{index}"
    spec = C.sweep_spec(
        name,
        train=params["train"],
        val=params["val"],
        test=params["test"],
        epochs=params["epochs"],
        seeds=params["trials"],
        max_concurrent=concurrency,
        cpu=1,
        policy="constant",
    )
    run = C.run_sweep_cli(spec, workdir / name, params["data_dir"])
    children = C.mlflow_children(run["tracking_uri"], name)
    if len(children) != params["trials"]:
        raise RuntimeError(f"{name}: {len(children)} child runs, expected {params['trials']}")
    window = max(c["end"] for c in children) - min(c["start"] for c in children)
    epoch_s = [v for c in children for v in c["epoch_time_s"]]
    return {
        "concurrency": concurrency,
        "window_s": window,
        "wall_s": run["wall_s"],
        "trials_per_hour_window": params["trials"] * 3600 / window,
        "trials_per_hour_wall": params["trials"] * 3600 / run["wall_s"],
        "median_in_trial_epoch_s": C.median(epoch_s),
        "command": run["command"],
    }


# -- part 2 ------------------------------------------------------------------------------------
def fake_result(epoch: int, trial: int, *, steps: int, with_event: bool) -> dict[str, Any]:
    trace = [[(epoch - 1) * steps + i * steps // 100, 1e-3] for i in range(100)]
    events: list[dict[str, Any]] = []
    if with_event:
        lrs = [1e-6 * (1e6 ** (i / 79)) for i in range(80)]
        losses = [2.3 - 0.5 * i / 80 + (0.02 * i if i > 60 else 0) for i in range(80)]
        events.append(
            {
                "epoch": epoch,
                "kind": "range_test",
                "reason": "plateau (benchmark)",
                "old_lr": 1e-3,
                "new_lr": 2e-3,
                "suggested_lr": 2e-3,
                "rule": "steepest",
                "lrs": lrs,
                "losses": losses,
                "stop_reason": "completed",
                "images": 4000,
                "seconds": 5.0,
            }
        )
    return {
        "epoch": epoch,
        "training_iteration": epoch,
        "train_loss": 1.5,
        "train_acc": 0.45,
        "val_loss": 1.4,
        "val_acc": 0.5,
        "lr": 1e-3,
        "images_seen": epoch * steps * 50,
        "range_test_images": 0,
        "range_tests": len(events),
        "epoch_time_s": 6.0,
        "policy_events": json.dumps(events),
        "lr_trace": json.dumps(trace),
        "policy": "constant",
        "seed": trial,
        "node_id": "node",
        "hostname": "host",
        "pid": 1000 + trial,
        "device": "cpu (1 threads)",
    }


def tracker_rate(
    workdir: Path, *, results: int, trials: int, with_event: bool, label: str
) -> dict[str, Any]:
    from sweep.tracking import MLflowTracker

    folder = workdir / f"tracker-{label}"
    folder.mkdir(parents=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = MLflowTracker(
        tracking_uri=uri,
        experiment_name=f"bench-{label}",
        sweep_name=f"bench-{label}",
        spec_text="name: bench\n",
    )
    tracker.setup()
    stubs = [
        SimpleNamespace(
            trial_id=f"t{i:04d}",
            config={
                "policy": "constant",
                "policy_label": "constant",
                "seed": i,
                "epochs": 1000,
                "lr": 1e-3,
                "batch_size": 50,
                "model": "seed_cnn",
            },
            status="RUNNING",
        )
        for i in range(trials)
    ]
    for t in stubs:
        tracker.on_trial_start(0, stubs, t)
    payloads = [
        (
            stubs[k % trials],
            fake_result(k // trials + 1, k % trials, steps=80, with_event=with_event),
        )
        for k in range(results)
    ]
    start = time.perf_counter()
    for i, (trial, result) in enumerate(payloads):
        tracker.on_trial_result(i, stubs, trial, result)
    seconds = time.perf_counter() - start
    # check that the writes landed (a dropped write would inflate the rate)
    logged = 0
    for t in stubs:
        run_id = tracker.child_run_id(t.trial_id)
        assert run_id is not None
        logged += len(tracker.client.get_metric_history(run_id, "val_acc"))
    tracker.on_experiment_end(stubs)
    if logged != results:
        raise RuntimeError(f"tracker {label}: {logged} of {results} results were logged")
    return {"results": results, "seconds": seconds, "results_per_s": results / seconds}


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="(c1, c2) pairs")
    parser.add_argument("--trials", type=int, default=None, help="N trials per sweep")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--tracker-results", type=int, default=None)
    parser.add_argument("--skip-sweeps", action="store_true", help="part 2 only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    params = {
        "data_dir": args.data_dir,
        "trials": args.trials or (2 if args.quick else 4),
        "epochs": args.epochs or (1 if args.quick else 2),
        "train": args.train or (500 if args.quick else 2000),
        "val": 200 if args.quick else 500,
        "test": 200,
    }
    repeats = args.repeats or (1 if args.quick else 2)
    n_results = args.tracker_results or (60 if args.quick else 300)
    workdir = Path(tempfile.mkdtemp(prefix="plateau-bench-scaling-"))
    payload: dict[str, Any] = {
        "measures": "sweep scaling and MLflow tracker write rate",
        "quick": args.quick,
        "settings": {**params, "repeats": repeats, "cpu_per_trial": 1, "policy": "constant"},
    }
    try:
        if not args.skip_sweeps:
            print(
                f"{params['trials']} identical trials x {params['epochs']} epochs x "
                f"{params['train']} images, 1 CPU each; concurrency 1 vs 2, {repeats} pairs; "
                f"work folder {workdir}",
                flush=True,
            )
            runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for r in range(repeats):
                for conc in (1, 2) if r % 2 == 0 else (2, 1):
                    res = run_concurrency(params, conc, workdir, r)
                    runs[conc].append(res)
                    print(
                        f"  pair {r + 1}/{repeats} concurrency {conc}: window "
                        f"{res['window_s']:.1f} s ({res['trials_per_hour_window']:.0f} trials/h),"
                        f" whole command {res['wall_s']:.1f} s, in-trial epoch "
                        f"{res['median_in_trial_epoch_s']:.2f} s",
                        flush=True,
                    )
            tph = {c: C.median([x["trials_per_hour_window"] for x in v]) for c, v in runs.items()}
            tph_wall = {
                c: C.median([x["trials_per_hour_wall"] for x in v]) for c, v in runs.items()
            }
            ratio = tph[2] / tph[1]
            # What the CPUs allowed: with 2 at a time each trial's epoch slows down by
            # epoch(c2)/epoch(c1); 2 x epoch(c1)/epoch(c2) is the best concurrency 2 can do.
            ep = {c: C.median([x["median_in_trial_epoch_s"] for x in v]) for c, v in runs.items()}
            ceiling = 2 * ep[1] / ep[2]
            ratio_wall = tph_wall[2] / tph_wall[1]
            print(
                f"trials/hour (sweep window): concurrency 1 {tph[1]:.0f}, concurrency 2 "
                f"{tph[2]:.0f} -> {ratio:.2f}x {C.verdict(ratio, TARGET)}; whole command: "
                f"{tph_wall[1]:.0f} vs {tph_wall[2]:.0f} -> {ratio_wall:.2f}x",
                flush=True,
            )
            print(
                f"  in-trial epoch: {ep[1]:.2f} s alone, {ep[2]:.2f} s two at a time -> the "
                f"CPUs allowed at most {ceiling:.2f}x",
                flush=True,
            )
            payload["sweeps"] = {
                "method": "python -m sweep run (Ray Tune, MLflow tracker, per-epoch checkpoints)",
                "trials_per_hour_window": {str(c): round(v, 1) for c, v in tph.items()},
                "trials_per_hour_whole_command": {str(c): round(v, 1) for c, v in tph_wall.items()},
                "ratio_window": round(ratio, 3),
                "ratio_whole_command": round(ratio_wall, 3),
                "median_in_trial_epoch_s": {str(c): round(v, 3) for c, v in ep.items()},
                "compute_ceiling_ratio": round(ceiling, 3),
                "runs": {str(c): v for c, v in runs.items()},
                "target": TARGET,
                "met": C.met(ratio, TARGET),
            }

        print(f"MLflow tracker: {n_results} on_trial_result calls, 8 trials, SQLite", flush=True)
        plain = [
            tracker_rate(workdir, results=n_results, trials=8, with_event=False, label=f"p{i}")
            for i in range(1 if args.quick else 3)
        ]
        n_ev = max(10, n_results // 10)
        event = [
            tracker_rate(workdir, results=n_ev, trials=8, with_event=True, label=f"e{i}")
            for i in range(1 if args.quick else 2)
        ]
        rate = C.median([x["results_per_s"] for x in plain])
        rate_ev = C.median([x["results_per_s"] for x in event])
        print(
            f"tracker: {rate:.1f} results/s (epoch results), {rate_ev:.1f} results/s (with a "
            f"range-test event: JSON + PNG artifacts)",
            flush=True,
        )
        payload["tracker"] = {
            "method": "MLflowTracker.on_trial_result called directly, SQLite store in a temp "
            "folder, 8 stub trials in turn; results carry the trainable's metrics and a "
            "100-point lr_trace",
            "results_per_s": round(rate, 2),
            "results_per_s_with_range_test_event": round(rate_ev, 2),
            "runs": {"plain": plain, "with_event": event},
        }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    C.write_result("scaling", payload, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
