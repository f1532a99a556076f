"""Per-epoch overhead of a trial run through the sweep against a bare loop.

The same model (seed_cnn), data (the default spec's subsets: 4,000 train / 1,000 val images,
split seed 0), batch size (50), optimizer (Adam 1e-3), augmentation and epochs, both on one CPU
thread, both in fresh processes:

(a) bare: a plain PyTorch loop in its own process -- the project's tensor pipeline
    (``BatchPipeline``: shuffle, crop/flip, normalise), forward, loss, backward, step, the same
    train loss/accuracy sums, then the same evaluation of the validation split (batches of
    500); the test split after the last epoch. No Ray, no checkpoints, no MLflow.
(b) sweep: ``python -m sweep run`` with a spec of one trial (constant policy, 1 CPU, max
    concurrency 1): Ray Tune, a checkpoint every epoch (``tune.report`` with a checkpoint
    folder), MLflow logging by the driver's tracker into a SQLite store.

Per-epoch time is the wall time between consecutive epoch reports: for (b) the MLflow metric
timestamps the driver's tracker writes when it receives each epoch's result (so the trial's
checkpoint save, ``tune.report``, the trip to the driver and the MLflow write are all in);
for (a) the time between consecutive epoch ends. Epochs 2..E-1 are used (epoch 1 has no
previous report; the last one also evaluates the test split). The in-trial ``epoch_time_s``
(training + validation only) and Tune's ``time_this_iter_s`` are reported beside it.

Start-up (process launch to the start of epoch 1: imports, data, Ray start, trial scheduling)
and tear-down (last report to exit: comparison, Ray shutdown) are reported separately.

(a) and (b) alternate (a, b, b, a, ...); medians over all steady epochs of all runs.
Target: (b)/(a) <= 1.05.

    .venv/bin/python benchmarks/overhead.py            # ~4-5 min
    .venv/bin/python benchmarks/overhead.py --quick    # ~1 min sanity run (Ray start-up)
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

TARGET = 1.05


def bare_child(params: dict[str, Any], result_path: str, launched: float) -> int:
    """(a): the bare loop, in this (fresh) process; writes epoch-end wall times as JSON."""
    import torch
    import torch.nn.functional as F

    from trainables.augment import BatchPipeline
    from trainables.data import load_splits
    from trainables.device import select_device
    from trainables.models import build_model

    setup = select_device("cpu", cpus_assigned=1)  # what a 1-CPU trial gets: 1 thread
    splits = load_splits(
        params["data_dir"],
        val_fraction=0.2,
        split_seed=0,
        train_subset=params["train"],
        val_subset=params["val"],
        test_subset=params["test"],
    )
    torch.manual_seed(0)
    cl = setup.channels_last
    bs = params["batch_size"]
    model = build_model("seed_cnn")
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_pipe = BatchPipeline(
        splits.train_x, splits.train_y, batch_size=bs, augment=True, channels_last=cl
    )
    eval_bs = max(bs, 500)
    val_pipe = BatchPipeline(
        splits.val_x,
        splits.val_y,
        batch_size=min(eval_bs, len(splits.val_y)),
        augment=False,
        channels_last=cl,
    )
    test_pipe = BatchPipeline(
        splits.test_x,
        splits.test_y,
        batch_size=min(eval_bs, len(splits.test_y)),
        augment=False,
        channels_last=cl,
    )

    @torch.inference_mode()
    def evaluate(pipe: BatchPipeline) -> tuple[float, float]:
        model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in pipe.sequential():
            out = model(x)
            loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
            n += len(y)
        return loss_sum / n, correct / n

    first_start = time.time()
    ends: list[float] = []
    durations: list[float] = []
    for epoch in range(1, params["epochs"] + 1):
        start = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(epoch)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        for x, y in train_pipe.epoch(gen, drop_last=True):
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * y.numel()
            correct += (out.argmax(1) == y).sum()
        evaluate(val_pipe)
        durations.append(time.perf_counter() - start)
        if epoch == params["epochs"]:
            evaluate(test_pipe)
        ends.append(time.time())
    Path(result_path).write_text(
        json.dumps(
            {
                "launched": launched,
                "first_epoch_start": first_start,
                "epoch_ends": ends,
                "epoch_durations": durations,
                "threads": torch.get_num_threads(),
                "channels_last": cl,
            }
        )
    )
    return 0


def run_bare(params: dict[str, Any], workdir: Path, index: int) -> dict[str, Any]:
    out = workdir / f"bare_{index}.json"
    t0 = time.time()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--bare-child",
        json.dumps(params),
        "--bare-result",
        str(out),
        "--launched",
        repr(t0),
    ]
    subprocess.run(cmd, check=True, cwd=workdir)
    t1 = time.time()
    data = json.loads(out.read_text())
    ends = data["epoch_ends"]
    steady = [b - a for a, b in itertools.pairwise(ends)][:-1]  # epochs 2..E-1
    return {
        "wall_s": t1 - t0,
        "startup_s": data["first_epoch_start"] - t0,
        "teardown_s": t1 - ends[-1],
        "steady_epoch_s": steady,
        "epoch_durations_s": data["epoch_durations"],
        "threads": data["threads"],
        "channels_last": data["channels_last"],
    }


def run_sweep(params: dict[str, Any], workdir: Path, index: int) -> dict[str, Any]:
    name = f"overhead-{index}"
    spec = C.sweep_spec(
        name,
        train=params["train"],
        val=params["val"],
        test=params["test"],
        epochs=params["epochs"],
        seeds=[0],
        max_concurrent=1,
        cpu=1,
        batch_size=params["batch_size"],
        policy="constant",
    )
    run = C.run_sweep_cli(spec, workdir / name, params["data_dir"])
    (child,) = C.mlflow_children(run["tracking_uri"], name)
    ts = child["report_ts"]
    steady = [b - a for a, b in itertools.pairwise(ts)][:-1]  # epochs 2..E-1
    tune_rows = C.tune_results(run["storage"])
    iter_s = [r.get("time_this_iter_s") for r in tune_rows[0]] if tune_rows else []
    in_trial = child["epoch_time_s"]
    return {
        "wall_s": run["wall_s"],
        # launch -> estimated start of epoch 1 (first report minus the epoch itself)
        "startup_s": ts[0] - run["start"] - in_trial[0],
        "teardown_s": run["end"] - ts[-1],
        "steady_epoch_s": steady,
        "in_trial_epoch_time_s": in_trial[1:-1],
        "tune_time_this_iter_s": [v for v in iter_s[1:-1] if v is not None],
        "command": run["command"],
    }


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="(a, b) pairs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train", type=int, default=None)
    parser.add_argument("--val", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--reanalyze", default=None, help="recompute the summary from an earlier result JSON"
    )
    parser.add_argument("--bare-child", default=None, help=argparse_hidden())
    parser.add_argument("--bare-result", default=None, help=argparse_hidden())
    parser.add_argument("--launched", type=float, default=None, help=argparse_hidden())
    args = parser.parse_args()
    if args.bare_child:
        return bare_child(json.loads(args.bare_child), args.bare_result, args.launched)
    if args.reanalyze:
        old = json.loads(Path(args.reanalyze).read_text())
        settings = dict(old["settings"])
        reps = settings.pop("repeats")
        for key in ("threads", "policy"):
            settings.pop(key, None)
        analyze(old["runs"]["bare"], old["runs"]["sweep"], settings, reps, old["quick"], args.out)
        return 0

    params = {
        "data_dir": args.data_dir,
        "train": args.train or (600 if args.quick else 4000),
        "val": args.val or (300 if args.quick else 1000),
        "test": 200,
        "epochs": args.epochs or (3 if args.quick else 6),
        "batch_size": 50,
    }
    repeats = args.repeats or (1 if args.quick else 2)
    if params["epochs"] < 3:
        parser.error("--epochs must be >= 3 (epochs 2..E-1 are the steady ones)")
    workdir = Path(tempfile.mkdtemp(prefix="plateau-bench-overhead-"))
    print(
        f"seed_cnn, {params['train']} train / {params['val']} val images, batch 50, "
        f"{params['epochs']} epochs, 1 CPU; {repeats} (a, b) pairs; work folder {workdir}",
        flush=True,
    )
    bare: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    try:
        for r in range(repeats):
            order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
            for side in order:
                if side == "a":
                    res = run_bare(params, workdir, r)
                    bare.append(res)
                else:
                    res = run_sweep(params, workdir, r)
                    sweep.append(res)
                print(
                    f"  pair {r + 1}/{repeats} ({side}) {'bare ' if side == 'a' else 'sweep'}: "
                    f"steady epochs {[round(v, 2) for v in res['steady_epoch_s']]} s, start-up "
                    f"{res['startup_s']:.1f} s, tear-down {res['teardown_s']:.1f} s, "
                    f"wall {res['wall_s']:.1f} s",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    analyze(bare, sweep, params, repeats, args.quick, args.out)
    return 0


def analyze(
    bare: list[dict[str, Any]],
    sweep: list[dict[str, Any]],
    params: dict[str, Any],
    repeats: int,
    quick: bool,
    out: str | None,
) -> None:
    a = [v for run in bare for v in run["steady_epoch_s"]]
    b = [v for run in sweep for v in run["steady_epoch_s"]]
    b_in = [v for run in sweep for v in run["in_trial_epoch_time_s"]]
    b_tune = [v for run in sweep for v in run["tune_time_this_iter_s"]]
    ratio = C.median(b) / C.median(a)
    # Per-epoch cost outside the training code, measured within each sweep run epoch by epoch
    # (report interval minus the trial's own epoch_time_s): checkpoint save and upload,
    # tune.report, the trip to the driver, the MLflow write. Load drift cancels out of it.
    framework = [
        iv - ep
        for run in sweep
        for iv, ep in zip(run["steady_epoch_s"], run["in_trial_epoch_time_s"], strict=True)
    ]
    fw = C.median(framework)
    ratio_fw = 1.0 + fw / C.median(b_in)
    pair_ratios = [
        C.median(s["steady_epoch_s"]) / C.median(p["steady_epoch_s"])
        for p, s in zip(bare, sweep, strict=True)
    ]
    print(
        f"per-epoch (wall between consecutive epoch reports, epochs 2..{params['epochs'] - 1}): "
        f"bare {C.median(a):.3f} s, sweep {C.median(b):.3f} s -> (b)/(a) = {ratio:.3f} "
        f"{C.verdict(ratio, TARGET, False)}",
        flush=True,
    )
    print(
        f"  sweep in-trial epoch_time_s {C.median(b_in):.3f} s (train + val only), Tune "
        f"time_this_iter_s {C.median(b_tune) if b_tune else float('nan'):.3f} s",
        flush=True,
    )
    print(
        f"  framework cost per epoch (report interval - in-trial epoch_time_s, same epochs): "
        f"{fw * 1e3:.0f} ms = {fw / C.median(b_in) * 100:.2f}% of the trial's epoch -> "
        f"(b)/(a) from it = {ratio_fw:.3f} {C.verdict(ratio_fw, TARGET, False)}",
        flush=True,
    )
    su_a = C.median([r["startup_s"] for r in bare])
    su_b = C.median([r["startup_s"] for r in sweep])
    td_a = C.median([r["teardown_s"] for r in bare])
    td_b = C.median([r["teardown_s"] for r in sweep])
    print(
        f"one-off: start-up bare {su_a:.1f} s, sweep {su_b:.1f} s; tear-down bare {td_a:.1f} s, "
        f"sweep {td_b:.1f} s",
        flush=True,
    )
    C.write_result(
        "overhead",
        {
            "measures": "trainable overhead, sweep trial vs bare loop",
            "quick": quick,
            "settings": {**params, "repeats": repeats, "threads": 1, "policy": "constant"},
            "per_epoch_method": "wall time between consecutive epoch reports (MLflow metric "
            "timestamps written by the driver's tracker on each result for the sweep; "
            "consecutive epoch ends for the bare loop), epochs 2..E-1",
            "per_epoch_s": {
                "bare": C.summary(a),
                "sweep": C.summary(b),
                "sweep_in_trial_epoch_time_s": C.summary(b_in),
                "sweep_tune_time_this_iter_s": C.summary(b_tune) if b_tune else None,
            },
            "ratio": round(ratio, 4),
            "ratio_per_pair": [round(v, 4) for v in pair_ratios],
            "ratio_in_trial_vs_bare": round(C.median(b_in) / C.median(a), 4),
            "framework_s_per_epoch": C.summary(framework),
            "ratio_from_framework_cost": round(ratio_fw, 4),
            "startup_s": {"bare": round(su_a, 2), "sweep": round(su_b, 2)},
            "teardown_s": {"bare": round(td_a, 2), "sweep": round(td_b, 2)},
            "runs": {"bare": bare, "sweep": sweep},
            "target": TARGET,
            "met": C.met(ratio, TARGET, False),
            "met_from_framework_cost": C.met(ratio_fw, TARGET, False),
        },
        out,
    )


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
