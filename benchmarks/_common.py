"""Shared helpers of the benchmark scripts: machine info, timing, medians, JSON results.

Every benchmark measures its ratio side by side in one run (A and B interleaved, repeated,
medians taken), because the machine may be shared with other work: a ratio against numbers
from another run would measure the neighbours, not the code.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DATA_ENV = "PLATEAU_SWEEP_DATA_DIR"
#: The real CIFAR-10 beside the checkout (read-only), as the test suite finds it.
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar-10-batches-py"

if str(REPO) not in sys.path:  # `python benchmarks/x.py` puts benchmarks/ first, not the repo
    sys.path.insert(0, str(REPO))


def default_data_dir() -> str | None:
    """--data-dir default: $PLATEAU_SWEEP_DATA_DIR, else ../shared/data/cifar-10-batches-py."""
    env = os.environ.get(DATA_ENV)
    if env:
        return env
    return str(SHARED_CIFAR) if SHARED_CIFAR.is_dir() else None


def base_parser(description: str, *, quick: bool = True) -> argparse.ArgumentParser:
    """--data-dir and --out; --quick (a short sanity run) for the scripts that have one."""
    parser = argparse.ArgumentParser(description=description)
    if quick:
        parser.add_argument("--quick", action="store_true", help="a <1 min sanity run (noisy)")
    parser.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help=f"CIFAR-10 batches (default: ${DATA_ENV} or {SHARED_CIFAR})",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="result JSON (default: benchmarks/results/<name>.json)",
    )
    return parser


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """CPU count and model, torch/ray/mlflow versions, device, date, load average."""
    import torch

    info: dict[str, Any] = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "loadavg_at_end": _loadavg(),
        "git_commit": _git_commit(),
    }
    for dist in ("torchvision", "ray", "mlflow"):
        try:  # the installed version, without importing the (slow to import) package
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    return info


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and all values (rounded) of a list of measurements."""
    vals = [float(v) for v in values]
    return {
        "median": round(median(vals), 6),
        "min": round(min(vals), 6),
        "max": round(max(vals), 6),
        "n": len(vals),
        "values": [round(v, 6) for v in vals],
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call, on the perf_counter clock."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleave(
    variants: dict[str, Callable[[], float]], repeats: int, *, log: bool = True
) -> dict[str, list[float]]:
    """Call every variant once per round, ``repeats`` rounds (A, B, A, B, ...).

    Each variant returns its own measurement (e.g. images/s); the lists are in round order.
    The order inside a round alternates direction each round (A B, B A, ...), so a drift of
    the machine's load hits both sides alike.
    """
    out: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            value = variants[name]()
            out[name].append(value)
            if log:
                shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
                print(f"  round {r + 1}/{repeats} {name}: {shown}", flush=True)
    return out


def finished_sweep(tracking_uri: str, sweep: str) -> tuple[Any, list[Any]]:
    """(MLflow client, the sweep's finished trial runs); a sweep that cannot be read, or has
    unfinished trials (pairing fewer seeds without a word would hide them), exits in one line."""
    from sweep.readback import CompareError, client_for, finished_runs

    client = client_for(tracking_uri)
    try:
        _, _, runs, unfinished = finished_runs(client, tracking_uri, sweep, None)
    except CompareError as exc:
        raise SystemExit(f"error: {exc}") from None
    if unfinished:
        raise SystemExit(f"error: {sweep!r} has unfinished trials ({unfinished}); let it finish")
    return client, runs


def write_result(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    """Write ``payload`` (plus machine info) to benchmarks/results/<name>.json (or ``out``)."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "machine": machine_info(), "argv": sys.argv[1:], **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"{'MET' if ok else 'MISSED'} (target {sign} {target:g})"


def met(value: float, target: float, higher_is_better: bool = True) -> bool:
    return value >= target if higher_is_better else value <= target


# -- running `python -m sweep run` and reading what it logged ----------------------------------
def sweep_spec(
    name: str,
    *,
    train: int,
    val: int,
    test: int,
    epochs: int,
    seeds: int | list[int] = 1,
    max_concurrent: int = 1,
    cpu: float = 1,
    gpu: float = 0,
    model: str = "seed_cnn",
    batch_size: int = 50,
    policy: str = "constant",
) -> dict[str, Any]:
    """A sweep spec (as a dict) of identical trials: one policy arm x ``seeds``."""
    return {
        "name": name,
        "data": {
            "dir": None,
            "train_subset": train,
            "val_subset": val,
            "test_subset": test,
            "val_fraction": 0.2,
            "split_seed": 0,
        },
        "model": model,
        "optimizer": {"name": "adam", "lr": 0.001},
        "epochs": epochs,
        "batch_size": batch_size,
        "monitor": "val_loss",
        "policies": [{"name": policy}],
        "seeds": seeds,
        "resources": {"cpu": cpu, "gpu": gpu},
        "max_concurrent_trials": max_concurrent,
        "scheduler": {"name": "fifo"},
        "max_failures": 0,
        "checkpoint_num_to_keep": 2,
        "storage_path": "./ray_results",
        "mlflow": {"tracking_uri": "sqlite:///mlflow.db", "experiment": None},
        "target_val_acc": 0.1,
    }


def run_sweep_cli(
    spec: dict[str, Any], workdir: Path, data_dir: str | None, *, timeout: float = 1800
) -> dict[str, Any]:
    """Run ``python -m sweep run`` on ``spec`` in ``workdir`` (db and Ray results there).

    Returns wall-clock start/end (``time.time()``), exit code, the db URI and the log path.
    """
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    name = spec["name"]
    spec_path = workdir / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    db = workdir / "mlflow.db"
    uri = f"sqlite:///{db}"
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "run",
        "--spec",
        str(spec_path),
        "--tracking-uri",
        uri,
        "--storage-path",
        str(workdir / "ray_results"),
        "--name",
        name,
    ]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("RAY_DEDUP_LOGS", "0")
    log_path = workdir / f"{name}.log"
    t0 = time.time()
    with log_path.open("w") as log:
        proc = subprocess.run(
            cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
        )
    t1 = time.time()
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"sweep {name} exited {proc.returncode}; log tail:\n" + "\n".join(tail))
    return {
        "start": t0,
        "end": t1,
        "wall_s": t1 - t0,
        "tracking_uri": uri,
        "storage": str(workdir / "ray_results" / name),
        "log": str(log_path),
        "command": " ".join(cmd),
    }


def mlflow_children(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """The sweep's child runs: run id, start/end (s), per-epoch report timestamps (s) and
    the in-trial epoch_time_s, ordered by epoch."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise RuntimeError(f"no MLflow experiment {experiment!r} in {tracking_uri}")
    runs = client.search_runs(
        [exp.experiment_id], "tags.`plateau_sweep.role` = 'child'", max_results=1000
    )
    out = []
    for run in runs:
        hist = client.get_metric_history(run.info.run_id, "epoch_time_s")
        hist = sorted(hist, key=lambda m: m.step)
        out.append(
            {
                "run_id": run.info.run_id,
                "start": run.info.start_time / 1000.0,
                "end": (run.info.end_time or 0) / 1000.0,
                "epochs": [m.step for m in hist],
                "report_ts": [m.timestamp / 1000.0 for m in hist],
                "epoch_time_s": [m.value for m in hist],
            }
        )
    return out


def tune_results(storage: str) -> list[list[dict[str, Any]]]:
    """Every trial's result.json rows (Tune's own per-report records) under ``storage``."""
    rows = []
    for path in sorted(Path(storage).glob("*/result.json")):
        trial = []
        for line in path.read_text().splitlines():
            if line.strip():
                trial.append(json.loads(line))
        rows.append(trial)
    return rows
