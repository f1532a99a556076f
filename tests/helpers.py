"""Helpers the tests share: the tiny CIFAR fixture's format, stand-ins for Tune's trials and
their results, sweep specs, driver processes in their own session, and reading back what a
sweep left (Tune's trial folders and state, the MLflow runs)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from trainables import results as R
from trainables.checkpoint import CheckpointError, load_state
from trainables.cifar_files import LABEL_NAMES as CIFAR_LABEL_NAMES

REPO = Path(__file__).resolve().parents[1]
CIFAR = Path(
    os.environ.get(
        "PLATEAU_SWEEP_CIFAR", str(REPO.parent / "shared" / "data" / "cifar-10-batches-py")
    )
)
if not CIFAR.is_dir():
    CIFAR = Path("/work/shared/data/cifar-10-batches-py")
_skip_without_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"no CIFAR-10 at {CIFAR}")


def needs_cifar(test: Any) -> Any:
    """Marks a test that reads the real CIFAR-10 (``realdata``); skipped when it is absent."""
    return pytest.mark.realdata(_skip_without_cifar(test))


SMOKE = yaml.safe_load((REPO / "sweep" / "specs" / "smoke.yaml").read_text())


# ---------------------------------------------------------------------------------------------
# Helpers: specs, driver processes, process-group cleanup
# ---------------------------------------------------------------------------------------------
def write_spec(folder: Path, **changes: Any) -> Path:
    raw = copy.deepcopy(SMOKE)
    raw.update(changes)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def sweep_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(REPO), **extra}
    env.pop("PLATEAU_SWEEP_DATA_DIR", None)
    env.pop("RAY_ADDRESS", None)
    return env


def run_args(spec: Path, work: Path) -> list[str]:
    return [
        "run",
        "--spec",
        str(spec),
        "--data-dir",
        str(CIFAR),
        "--tracking-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--storage-path",
        str(work / "results"),
    ]


def start_driver(work: Path, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
    """`python -m sweep ...` in its own session: the driver and every Ray process it starts
    share that session id, so the test can find and kill exactly them."""
    out = (work / f"{log}.out").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *args],
        cwd=work,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3]: session id
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, timeout: float = 60.0) -> None:
    """SIGKILL every process of a driver's session (driver, raylet, GCS, workers) and wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    raise AssertionError(f"processes of session {sid} still alive: {session_pids(sid)}")


@contextlib.contextmanager
def driver(work: Path, args: list[str], env: dict[str, str], log: str) -> Iterator[Any]:
    proc = start_driver(work, args, env, log)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        kill_session(proc.pid)  # whatever Ray left behind after the driver went


def output(work: Path, log: str) -> str:
    return (work / f"{log}.out").read_text(errors="replace")


def wait_for(what: str, check: Callable[[], Any], proc: subprocess.Popen, log: Path) -> Any:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) before {what}: " + tail(log))
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: " + tail(log))


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no output)"


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.glob("*") if (p / "params.json").is_file())


def params(trial_dir: Path) -> dict[str, Any]:
    return json.loads((trial_dir / "params.json").read_text())


def results(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            out.append(json.loads(line))
    return out


def mlflow_runs(work: Path) -> tuple[Any, list[Any]]:
    """(the parent run, its child runs) of the only sweep in work/mlflow.db."""
    from mlflow import MlflowClient

    from sweep.store import children_filter, parent_filter, search_all_runs

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    parents = search_all_runs(client, ids, parent_filter())
    assert len(parents) == 1, [p.info.run_id for p in parents]
    kids = search_all_runs(client, ids, children_filter(parents[0].info.run_id))
    return parents[0], kids


def metric_history(work: Path, run_id: str, key: str) -> dict[int, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    out: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        if m.step not in out or m.timestamp >= out[m.step][0]:
            out[m.step] = (m.timestamp, m.value)
    return {step: v for step, (_, v) in sorted(out.items())}


def listening_addresses(sid: int) -> list[str]:
    """The local addresses of every listening TCP socket owned by a process of the session."""
    inodes: set[str] = set()
    for pid in session_pids(sid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    found.append(cols[1].split(":")[0])
    return found


#: 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp{,6} write them
LOOPBACK_HEX = {
    "0100007F",
    "00000000000000000000000001000000",
    "0000000000000000FFFF00000100007F",
}


def tune_states(experiment: Path) -> dict[str, str]:
    """trial id -> status in Tune's latest experiment checkpoint (what --resume restores)."""
    # Newest by the timestamp in the name, as Ray picks it: at the end of a resumed run Ray
    # copies its driver artifacts back, so the older file's mtime can be the newer one.
    files = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except (json.JSONDecodeError, OSError):  # being rewritten
        return {}
    out = {}
    for trial_json, _meta in state.get("trial_data", []):
        trial = json.loads(trial_json)
        out[str(trial["trial_id"])] = str(trial["status"])
    return out


def cli(
    work: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m sweep ARGS`` in ``work``; were Ray to start there, its session folder would
    land in ``work/ray_tmp`` (a "nothing created" check sees it) unless ``env`` says otherwise."""
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args],
        cwd=work,
        env=sweep_env(work / "ray_tmp", **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "sweep '" not in proc.stdout  # the sweep banner: no trial started
    return lines[0]


# -- the CIFAR-10 batch format, for tiny fixtures -------------------------------------------------
TINY_PER_BATCH = 20
TINY_BATCHES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
LABEL_NAMES = list(CIFAR_LABEL_NAMES)  # a list, as in the real batches.meta


def write_pickle(path: Path, obj: Any) -> None:
    """Pickle ``obj`` in protocol 2, as the CIFAR-10 batches are."""
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def tiny_batch(name: str, rng: np.random.Generator, n: int = TINY_PER_BATCH) -> dict[str, Any]:
    """One batch dict in the standard format: uint8 (n, 3072) channel-major data, int labels."""
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {
        "batch_label": f"{name} of tiny fixture",
        "labels": labels,
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"{name}_{i}_{LABEL_NAMES[lab]}.png" for i, lab in enumerate(labels)],
    }


# -- stand-ins for Tune trials and their results (the MLflow tracker and compare use them) ------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SPEC = "name: demo\npolicies: [constant]\n"


@dataclass
class StubTrial:
    """The Trial attributes MLflowTracker uses; nothing else."""

    trial_id: str
    config: dict[str, Any]
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)
    error_file: str | None = None


def config(policy: str = "range_test_on_plateau", seed: int = 0, epochs: int = 3) -> dict:
    return {
        "model": "seed_cnn",
        "optimizer": "adam",
        "lr": 1e-3,
        "epochs": epochs,
        "seed": seed,
        "policy": policy,
        "policy_params": {"patience": 2, "factor": 0.5},
        "policy_label": f"{policy}-label",
        "api_token": "s3cr3t",  # never logged
    }


def range_event(epoch: int, new_lr: float = 3e-3) -> dict[str, Any]:
    lrs = [1e-5 * (1.5**i) for i in range(30)]
    losses: list[float | None] = [2.0 - 0.03 * i for i in range(25)]
    losses += [3.0, 5.0, 9.0, None, None]
    return {
        "epoch": epoch,
        "kind": "range_test",
        "reason": "plateau",
        "old_lr": 1e-3,
        "new_lr": new_lr,
        "suggested_lr": new_lr * 1.2,
        "rule": "steepest",
        "lrs": lrs,
        "losses": losses,
        "stop_reason": "diverged",
        "images": 1500,
        "seconds": 1.25,
    }


def reduce_event(epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "kind": "reduce",
        "reason": "plateau",
        "old_lr": 1e-3,
        "new_lr": 5e-4,
        "suggested_lr": None,
        "rule": "factor",
        "lrs": [],
        "losses": [],
        "stop_reason": None,
        "images": 0,
        "seconds": 0.0,
    }


def result(
    epoch: int,
    *,
    val_acc: float | None = None,
    events: list[dict[str, Any]] | None = None,
    steps_per_epoch: int = 50,
    **extra: Any,
) -> dict[str, Any]:
    base = (epoch - 1) * steps_per_epoch
    trace = [[base + i, 1e-3 * (1 + 0.01 * i)] for i in range(steps_per_epoch)]
    out: dict[str, Any] = {
        R.EPOCH: epoch,
        R.TRAIN_LOSS: 2.0 / epoch,
        R.TRAIN_ACC: 0.1 * epoch,
        R.VAL_LOSS: 2.1 / epoch,
        R.VAL_ACC: val_acc if val_acc is not None else 0.2 * epoch,
        R.LR: 1e-3,
        R.IMAGES_SEEN: 1000 * epoch,
        R.RANGE_TEST_IMAGES: 0,
        R.RANGE_TESTS: 0,
        R.EPOCH_TIME_S: 1.5,
        R.POLICY_EVENTS: json.dumps(events or []),
        R.LR_TRACE: json.dumps(trace),
        R.POLICY: "x",
        R.NODE_ID: "node-abc",
        R.HOSTNAME: "host-1",
        R.DEVICE: "cpu (2 threads)",
        R.PID: 1234,
        "training_iteration": epoch,
    }
    out.update(extra)
    return out


def make_tracker(uri: str, **kwargs: Any) -> Any:
    """An MLflowTracker on ``uri`` with quick retries (sweep 'demo', experiment 'exp-demo')."""
    from sweep.tracking import MLflowTracker

    kwargs.setdefault("retry_delay_s", 0.001)
    return MLflowTracker(
        tracking_uri=uri,
        experiment_name=kwargs.pop("experiment_name", "exp-demo"),
        sweep_name=kwargs.pop("sweep_name", "demo"),
        spec_text=SPEC,
        **kwargs,
    )


def suggest_lr(lrs: Any, losses: Any, rule: str = "steepest", **kwargs: Any) -> float | None:
    """The pick alone of ``suggest_lr_with_reason`` (the tests read many picks)."""
    from trainables.lr import suggest_lr_with_reason

    return suggest_lr_with_reason(lrs, losses, rule, **kwargs)[0]


class KeepReports:
    """A trial reporter that keeps what ``trainables.loop.train`` reports, in order."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.states: list[Any] = []

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, Any], state: Any) -> None:
        self.reports.append(metrics)
        self.states.append(state)


_CHECKPOINT_EPOCH: dict[tuple[Path, float], int | None] = {}


def checkpoint_epoch(checkpoint: Path) -> int | None:
    """The epoch a checkpoint folder holds; None while it is being written or copied in (or
    damaged). Cached per state file version: polling loops call it often."""
    state = checkpoint / "state.pt"
    try:
        key = (checkpoint, state.stat().st_mtime)
    except OSError:
        return None
    if key not in _CHECKPOINT_EPOCH:
        try:
            _CHECKPOINT_EPOCH[key] = int(load_state(checkpoint)["counters"]["epoch"])
        except (CheckpointError, KeyError, OSError):
            return None
    return _CHECKPOINT_EPOCH[key]


@dataclass(frozen=True)
class SmokeSweep:
    """A finished ``python -m sweep run --smoke-test``: the folder it ran in and what it said."""

    folder: Path
    proc: subprocess.CompletedProcess[str]


#: How a new user runs it: MLflow in the working folder's default store, results there too.
SMOKE_ARGS = ("run", "--smoke-test", "--data-dir", str(CIFAR), "--storage-path", "ray_results")
#: A short RAY_TMPDIR: Ray's socket names have a length limit.
SMOKE_ENV = {"RAY_TMPDIR": "/tmp"}


def plant_orphaned_staging(root: Path) -> Path:
    """What a trial process killed during a report leaves in its temporary directory: a staging
    folder (see ``trainables.staging``) whose lock nobody holds, with a checkpoint in it."""
    from trainables import staging

    folder = root / f"{staging.PREFIX}999999-orphaned"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "checkpoint" / "state.pt").write_bytes(b"\0" * 4096)
    (folder / staging.LOCK).touch()
    return folder


def new_store(template: Path, folder: Path) -> str:
    """A new, empty MLflow SQLite store ``folder/mlflow.db``, copied from ``template`` (the
    session's ``empty_store``); its URI. MLflow takes about 2 s of schema migrations to create
    one, the copy milliseconds, and the copy is the very file MLflow made."""
    import sqlite3

    db = folder / "mlflow.db"
    with (
        contextlib.closing(sqlite3.connect(template)) as src,
        contextlib.closing(sqlite3.connect(db)) as dst,
    ):
        src.backup(dst)
    return f"sqlite:///{db}"
