"""How many results per second one Tune driver takes in.

Every trial reports once per epoch and the one driver process handles every report: Tune's
own bookkeeping, the trial checkpoint it registers, and the MLflow tracker callback. This
script measures that rate with trials that do no training at all -- each reports, as fast as
Tune lets it, results shaped like the trainable's (``scaling.fake_result``: the metrics, a
100-point ``lr_trace``) -- so the figure is the driver's ceiling, not the trials' speed.

Three variants, run in turn on one local Ray instance (2 rounds, interleaved):

* ``report``: ``tune.report(metrics)`` only.
* ``report+checkpoint``: each result also carries a checkpoint (a directory with one file of
  ``--checkpoint-mib`` MiB, the size of a seed_cnn + Adam state; ``num_to_keep=2`` as in the
  specs), which Tune persists into the experiment's storage.
* ``report+checkpoint+mlflow``: the above plus ``sweep.tracking.MLflowTracker`` writing every
  result into a SQLite store, i.e. what ``python -m sweep run`` does for each epoch.

Rate = results received by the driver / (last result - first result), timed by a driver-side
callback. On this 2-core machine the trial processes share the cores with the driver, so the
figures are a lower bound for a driver on its own head node.

    .venv/bin/python benchmarks/tune_rate.py            # ~2-3 min
    .venv/bin/python benchmarks/tune_rate.py --quick    # < 1 min
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C
from scaling import fake_result

VARIANTS = ("report", "report+checkpoint", "report+checkpoint+mlflow")


def fast_trial(config: dict[str, Any]) -> None:
    """A trial that only reports: ``config["results"]`` results, no training."""
    from ray import tune

    blob = os.urandom(int(config["checkpoint_mib"] * 2**20)) if config["checkpoint"] else b""
    for epoch in range(1, int(config["results"]) + 1):
        metrics = fake_result(epoch, int(config["seed"]), steps=80, with_event=False)
        metrics.pop("training_iteration")  # Tune sets it
        if not config["checkpoint"]:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "state.bin").write_bytes(blob)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def run_variant(
    variant: str, *, trials: int, results: int, mib: float, work: Path
) -> dict[str, Any]:
    from ray import tune

    from sweep.tracking import MLflowTracker

    class Meter(tune.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: Any) -> None:
            self.times.append(time.perf_counter())

    meter = Meter()
    folder = work / f"{variant.replace('+', '_')}-{time.time_ns()}"
    callbacks: list[Any] = []
    if variant.endswith("mlflow"):
        tracker = MLflowTracker(
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            experiment_name="tune-rate",
            sweep_name="tune-rate",
            spec_text="name: tune-rate\n",
        )
        folder.mkdir(parents=True)
        tracker.setup()
        callbacks.append(tracker)
    callbacks.append(meter)  # after the tracker: its time includes the MLflow write
    tuner = tune.Tuner(
        fast_trial,
        param_space={
            "seed": tune.grid_search(list(range(trials))),
            "results": results,
            "checkpoint": variant != "report",
            "checkpoint_mib": mib,
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=trials, reuse_actors=False),
        run_config=tune.RunConfig(
            name="tune-rate",
            storage_path=str(folder / "ray_results"),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            verbose=0,
        ),
    )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"{variant}: {len(errors)} trials failed: {errors[0]}")
    got = len(meter.times)
    if got != trials * results:
        raise RuntimeError(f"{variant}: the driver saw {got} results, expected {trials * results}")
    window = meter.times[-1] - meter.times[0]
    shutil.rmtree(folder, ignore_errors=True)
    return {"results": got, "window_s": round(window, 3), "results_per_s": (got - 1) / window}


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="concurrent trials")
    parser.add_argument("--results", type=int, default=None, help="results per trial")
    parser.add_argument("--checkpoint-mib", type=float, default=10.0)
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 8)
    results = args.results or (20 if args.quick else 60)
    rounds = 1 if args.quick else 2
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray

    work = Path(tempfile.mkdtemp(prefix="plateau-bench-tune-rate-"))
    # logical CPUs: one per trial, so all of them run at once (they do no work)
    ray.init(num_cpus=trials, include_dashboard=False, log_to_driver=False)
    print(
        f"{trials} concurrent trials x {results} results each, checkpoints of "
        f"{args.checkpoint_mib:g} MiB, {rounds} rounds",
        flush=True,
    )
    try:
        runs = C.interleave(
            {
                v: (
                    lambda v=v: run_variant(
                        v, trials=trials, results=results, mib=args.checkpoint_mib, work=work
                    )["results_per_s"]
                )
                for v in VARIANTS
            },
            rounds,
        )
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    rates = {v: round(C.median(x), 1) for v, x in runs.items()}
    for v in VARIANTS:
        print(f"{v}: {rates[v]:,.1f} results/s at the driver", flush=True)
    C.write_result(
        "tune_rate",
        {
            "measures": "results/s one Tune driver takes in (the scaling bound)",
            "quick": args.quick,
            "settings": {
                "trials": trials,
                "results_per_trial": results,
                "checkpoint_mib": args.checkpoint_mib,
                "rounds": rounds,
                "result": "scaling.fake_result (trainable metrics, 100-point lr_trace)",
            },
            "results_per_s": rates,
            "runs": {v: C.summary(x) for v, x in runs.items()},
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
