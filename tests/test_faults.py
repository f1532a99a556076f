"""Faults a long sweep must survive (issue 6), with real processes where the fault needs them.

1. a trial's worker is SIGKILLed mid-run -> Ray retries it from its last checkpoint, the final
   metrics equal an uninterrupted in-process run (exact on CPU), one child run, FINISHED;
   (the same sweep also checks 3b, the loopback-only Ray and the no-secrets-in-MLflow rule)
2. the driver (`python -m sweep run`, its whole process group) is SIGKILLed -> `--resume`
   finishes every trial, the finished one is not re-run, no duplicate runs, parent FINISHED;
3. a range test hitting a non-finite loss is stopped and undone; a non-finite loss in normal
   training fails that trial (FAILED, with the reason) while the sweep goes on;
4. an unusable MLflow store fails `run` fast with one line naming the URI; a transient
   logging error is retried;
5. a corrupt or truncated checkpoint is a clear error naming the file, also through Tune;
6. an unwritable storage path is refused before the sweep starts.
Plus the security checks: hostile pickles (data batch, state.pt) never execute.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml

from trainables import results as R
from trainables.checkpoint import CheckpointError, load_state, save_state

REPO = Path(__file__).resolve().parents[1]
CIFAR = Path(
    os.environ.get(
        "PLATEAU_SWEEP_CIFAR", str(REPO.parent / "shared" / "data" / "cifar-10-batches-py")
    )
)
if not CIFAR.is_dir():
    CIFAR = Path("/work/shared/data/cifar-10-batches-py")
needs_cifar = pytest.mark.skipif(not CIFAR.is_dir(), reason=f"no CIFAR-10 at {CIFAR}")
FAKE_TOKEN = "sk-test-0123456789abcdef"
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


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short RAY_TMPDIR (Ray's socket paths have a length limit), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="rf", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


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

    from sweep.tracking import children_filter, parent_filter, search_all_runs

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


# ---------------------------------------------------------------------------------------------
# Fault 1 (+3b, loopback, secrets): SIGKILL a trial's worker mid-run
# ---------------------------------------------------------------------------------------------
FAULT1_EPOCHS = 5  # room to catch the trial mid-run on a loaded machine
FAULT1_DATA = {"train_subset": 800, "val_subset": 200, "test_subset": 200}


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.slow
@needs_cifar
def test_killed_worker_is_retried_exactly_and_a_nan_trial_fails(
    tmp_path: Path, ray_tmp: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    spec = write_spec(
        tmp_path,
        name="fault1",
        data={**SMOKE["data"], **FAULT1_DATA},
        optimizer={"name": "sgd", "lr": 0.01, "momentum": 0.9},
        epochs=FAULT1_EPOCHS,
        batch_size=32,
        policies=[{"name": "constant"}],
        # lr 1e4 diverges in epoch 1: that trial must end FAILED, the other one FINISHED.
        search_space={"lr": {"grid": [0.01, 10000.0]}},
        max_failures=1,
        max_concurrent_trials=2,
        checkpoint_num_to_keep=2,
    )
    env = sweep_env(ray_tmp, PLATEAU_SWEEP_FAKE_TOKEN=FAKE_TOKEN)
    log = work / "run.out"
    experiment = work / "results" / "fault1"
    with driver(work, run_args(spec, work), env, "run") as proc:

        def good_trial_checkpointed() -> tuple[Path, int] | None:
            for d in trial_dirs(experiment):
                rows = results(d)
                if params(d).get("lr") == 0.01 and rows and any(d.glob("checkpoint_*")):
                    if rows[-1][R.EPOCH] < FAULT1_EPOCHS - 1:  # time left to kill it mid-run
                        return d, int(rows[-1][R.PID])
                    raise AssertionError(f"trial too fast to interrupt: {rows[-1][R.EPOCH]}")
            return None

        trial_dir, worker = wait_for("the first checkpoint", good_trial_checkpointed, proc, log)
        # Ray started here (no --address) listens on loopback only.
        addresses = listening_addresses(proc.pid)
        assert addresses and set(addresses) <= LOOPBACK_HEX, addresses
        cmdline = Path(f"/proc/{worker}/cmdline").read_bytes()
        assert b"ray::" in cmdline, cmdline  # a Ray worker of this sweep
        os.kill(worker, signal.SIGKILL)
        killed_after = results(trial_dir)[-1][R.EPOCH]
        proc.wait(timeout=400)
    text = output(work, "run")
    assert proc.returncode == 1, text[-4000:]  # 1: a trial errored (the lr 1e4 one)
    assert "--host 127.0.0.1" in text  # the UI command printed is bound to loopback

    parent, kids = mlflow_runs(work)
    assert parent.info.status == "FINISHED"
    assert len(kids) == 2, [k.data.tags for k in kids]  # one per trial: continued, no duplicate
    by_lr = {k.data.params["lr"]: k for k in kids}
    good, bad = by_lr["0.01"], by_lr["10000.0"]

    # Fault 1: retried from the checkpoint, same child run, FINISHED, exactly the clean numbers.
    assert good.info.status == "FINISHED"
    assert good.data.tags["plateau_sweep.failures"] == "1"
    assert "plateau_sweep.previous_error" in good.data.tags
    assert good.data.tags["plateau_sweep.pid"] != str(worker)  # a new worker
    rows = results(trial_dir)
    epochs = [r[R.EPOCH] for r in rows]
    assert epochs[-1] == FAULT1_EPOCHS and killed_after in epochs
    clean = clean_run(json.loads((trial_dir / "params.json").read_text()))
    for key in (R.TRAIN_LOSS, R.VAL_LOSS, R.VAL_ACC, R.LR, R.IMAGES_SEEN):
        logged = metric_history(work, good.info.run_id, key)
        assert logged == {m[R.EPOCH]: m[key] for m in clean}, key
    assert metric_history(work, good.info.run_id, R.TEST_ACC) == {
        FAULT1_EPOCHS: clean[-1][R.TEST_ACC]
    }

    # Fault 3b: the diverging trial is FAILED with the reason, not a NaN run reported finished.
    assert bad.info.status == "FAILED"
    assert "non-finite training loss" in bad.data.tags["plateau_sweep.error"]

    # Security: no environment value (the fake token included) in any param or tag.
    secrets = {
        v for k, v in env.items() if len(v) > 8 and k not in _PUBLIC_ENV and os.sep not in v
    } | {FAKE_TOKEN}
    for run in (parent, *kids):
        for value in (*run.data.params.values(), *run.data.tags.values()):
            assert FAKE_TOKEN not in value
            assert value not in secrets, value


#: Environment variables whose values are public facts (paths, host names) that may legitimately
#: equal a tag such as the driver host; everything else (and any value without a path separator)
#: must never show up in MLflow.
_PUBLIC_ENV = {"HOSTNAME", "HOST", "NAME", "LANG", "LC_ALL", "TERM", "SHELL", "USER", "LOGNAME"}


def clean_run(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The same trial, uninterrupted, in this process, with the worker's thread count."""
    from trainables.config import TrialConfig
    from trainables.data import load_splits
    from trainables.device import select_device
    from trainables.loop import train

    config = {k: v for k, v in config.items() if k != "policy_label"}
    cfg = TrialConfig.from_dict(config)
    splits = load_splits(
        CIFAR,
        val_fraction=cfg.val_fraction,
        split_seed=cfg.split_seed,
        train_subset=cfg.train_subset,
        val_subset=cfg.val_subset,
        test_subset=cfg.test_subset,
    )
    threads = torch.get_num_threads()
    try:
        reports: list[dict[str, Any]] = []

        class Keep:
            def restore(self) -> None:
                return None

            def report(self, metrics: dict[str, Any], state: Any) -> None:
                reports.append(metrics)

        train(cfg, splits, Keep(), select_device("cpu", gpus_assigned=0, cpus_assigned=1))
        return reports
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Fault 2: SIGKILL the driver, then --resume
# ---------------------------------------------------------------------------------------------
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


@pytest.mark.ray
@pytest.mark.realdata
@pytest.mark.slow
@needs_cifar
def test_killed_driver_resumes_without_rerun_or_duplicates(tmp_path: Path, ray_tmp: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    spec = write_spec(
        tmp_path,
        name="fault2",
        data={**SMOKE["data"], "train_subset": 400},
        epochs=3,
        batch_size=32,
        seeds=[0, 1],
        policies=[{"name": "constant"}],
        max_concurrent_trials=1,
        max_failures=1,
    )
    args = run_args(spec, work)
    env = sweep_env(ray_tmp)
    experiment = work / "results" / "fault2"
    log = work / "run.out"
    with driver(work, args, env, "run") as proc:

        def one_done_one_checkpointed() -> bool:
            states = tune_states(experiment)
            done = [t for t, s in states.items() if s == "TERMINATED"]
            started = [d for d in trial_dirs(experiment) if any(d.glob("checkpoint_*"))]
            return len(done) == 1 and len(started) == 2

        wait_for("one trial finished, the other checkpointed", one_done_one_checkpointed, proc, log)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray, all at once
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    states = tune_states(experiment)
    finished_id = next(t for t, s in states.items() if s == "TERMINATED")
    finished_dir = next(d for d in trial_dirs(experiment) if finished_id in d.name)
    frozen = {p: p.read_bytes() for p in finished_dir.rglob("*") if p.is_file()}
    _, kids = mlflow_runs(work)
    assert len(kids) == 2 and "RUNNING" in {k.info.status for k in kids}  # left as it died

    with driver(work, [*args, "--resume"], env, "resume") as proc2:
        proc2.wait(timeout=400)
    assert proc2.returncode == 0, output(work, "resume")[-4000:]
    assert set(tune_states(experiment).values()) == {"TERMINATED"}
    # The finished trial was not run again: its results and checkpoints are byte-identical.
    assert {p: p.read_bytes() for p in finished_dir.rglob("*") if p.is_file()} == frozen
    parent, kids = mlflow_runs(work)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["plateau_sweep.resumes"] == "1"
    assert len(kids) == 2  # the same two child runs, continued
    assert {k.info.status for k in kids} == {"FINISHED"}
    for kid in kids:
        assert sorted(metric_history(work, kid.info.run_id, R.VAL_ACC)) == [1, 2, 3]
        assert list(metric_history(work, kid.info.run_id, R.TEST_ACC)) == [3]


# ---------------------------------------------------------------------------------------------
# Fault 3: non-finite losses
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_range_test_blowing_up_is_stopped_and_undone() -> None:
    from trainables.config import TrialConfig
    from trainables.data import load_splits
    from trainables.device import select_device
    from trainables.loop import train

    splits = load_splits(CIFAR, train_subset=320, val_subset=100, test_subset=100)
    cfg = TrialConfig.from_dict(
        {
            "policy": "range_test_on_plateau",
            # 6 steps of 1e-4, 6e12, 4e29, ...: the loss goes from finite straight to NaN/inf.
            "policy_params": {
                "patience": 0,
                "cooldown": 0,
                "threshold": 0.5,
                "min_lr": 1e-4,
                "max_lr": 1e80,
                "num_steps": 6,
            },
            "optimizer": "sgd",
            "lr": 0.01,
            "epochs": 2,
            "batch_size": 32,
            "seed": 5,
        }
    )
    reports: list[dict[str, Any]] = []
    states: list[Any] = []

    class Keep:
        def restore(self) -> None:
            return None

        def report(self, metrics: dict[str, Any], state: Any) -> None:
            reports.append(metrics)
            states.append(state)

    threads = torch.get_num_threads()
    try:
        train(cfg, splits, Keep(), select_device("cpu", gpus_assigned=0, cpus_assigned=1))
    finally:
        torch.set_num_threads(threads)
    events = [e for m in reports for e in json.loads(m[R.POLICY_EVENTS])]
    tests = [e for e in events if e["kind"] == "range_test"]
    assert tests, events
    assert tests[0]["stop_reason"] == "non_finite"
    assert "non-finite loss at lr" in tests[0]["reason"], tests[0]["reason"]
    assert tests[0]["losses"][-1] is None  # the NaN/inf step, recorded as missing
    assert math.isfinite(tests[0]["new_lr"]) and tests[0]["new_lr"] < 1e30
    # Training went on after the blown-up test, with finite weights and losses.
    assert [m[R.EPOCH] for m in reports] == [1, 2]
    assert all(math.isfinite(m[R.TRAIN_LOSS]) and math.isfinite(m[R.VAL_LOSS]) for m in reports)
    for tensor in states[-1]["model"].values():
        assert torch.isfinite(tensor.float()).all()


# ---------------------------------------------------------------------------------------------
# Fault 4: the MLflow store
# ---------------------------------------------------------------------------------------------
def cli(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    ray_tmp = work / "ray_tmp"  # were Ray to start, its folder would appear here
    return subprocess.run(
        [sys.executable, "-m", "sweep", *args],
        cwd=work,
        env=sweep_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=180,
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


@contextlib.contextmanager
def locked_db(path: Path) -> Iterator[None]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STORE_CASES: list[tuple[str, Callable[[Path], str], tuple[str, ...]]] = [
    (
        "db-under-a-file",  # ENOTDIR: works as root too, unlike chmod
        lambda tmp: (tmp / "afile").write_text("x") and f"sqlite:///{tmp / 'afile' / 'm.db'}",
        ("afile", "is not a folder"),
    ),
    (
        "unreachable-server",
        lambda tmp: f"http://127.0.0.1:{_closed_port()}",
        ("http://127.0.0.1:", "unreachable"),
    ),
    (
        "not-a-database",
        lambda tmp: (tmp / "junk.db").write_bytes(b"x" * 4096) and f"sqlite:///{tmp / 'junk.db'}",
        ("junk.db", "cannot open"),
    ),
    ("file-store", lambda tmp: "./mlruns", ("mlruns", "sqlite")),
]


@needs_cifar
@pytest.mark.parametrize(
    ("make", "fragments"), [c[1:] for c in STORE_CASES], ids=[c[0] for c in STORE_CASES]
)
def test_unusable_store_fails_before_any_trial(
    tmp_path: Path, make: Callable[[Path], str], fragments: tuple[str, ...]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    uri = make(tmp_path)
    proc = cli(work, "run", "--smoke-test", "--data-dir", str(CIFAR), "--tracking-uri", uri)
    line = assert_refused(proc, "tracking store", *fragments)
    assert uri.split("://")[-1].split(":")[0] in line  # names the URI
    assert listing(work) == set()  # no Ray session, results folder or mlflow.db


@needs_cifar
def test_locked_sqlite_store_fails_before_any_trial(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    db = tmp_path / "locked.db"
    uri = f"sqlite:///{db}"
    with locked_db(db):
        proc = cli(work, "run", "--smoke-test", "--data-dir", str(CIFAR), "--tracking-uri", uri)
    assert_refused(proc, f"tracking store {uri}", "locked")
    assert listing(work) == set()


def test_transient_logging_error_is_retried(tmp_path: Path) -> None:
    """One failing MlflowClient call inside a hook: retried, the run completes, nothing lost."""
    from mlflow import MlflowClient

    from sweep.tracking import MLflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(
        tracking_uri=uri,
        experiment_name="e",
        sweep_name="s",
        spec_text="name: s\n",
        retry_delay_s=0.001,
    )
    tracker.setup()

    class Trial:
        trial_id = "t1"
        config: ClassVar[dict[str, Any]] = {"policy": "constant", "seed": 0, "epochs": 1}
        status = "RUNNING"
        error_file = None

    trial = Trial()
    tracker.on_trial_start(0, [trial], trial)
    real = tracker.client.log_batch
    failures: list[str] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append("once")
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kwargs)

    tracker.client.log_batch = flaky  # type: ignore[method-assign]
    metrics = {R.EPOCH: 1, R.VAL_ACC: 0.25, R.TEST_ACC: 0.2, "training_iteration": 1}
    tracker.on_trial_result(0, [trial], trial, metrics)
    tracker.on_trial_complete(0, [trial], trial)
    trial.status = "TERMINATED"
    tracker.on_experiment_end([trial])
    assert failures == ["once"]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.child_run_id("t1") or "")
    assert run.info.status == "FINISHED"
    assert run.data.metrics[R.VAL_ACC] == 0.25 and run.data.metrics[R.TEST_ACC] == 0.2


# ---------------------------------------------------------------------------------------------
# Fault 5: corrupt or truncated checkpoints
# ---------------------------------------------------------------------------------------------
def _state() -> dict[str, Any]:
    return {"model": {"w": torch.ones(64, 64)}, "counters": {"epoch": 2}}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_names_the_file(tmp_path: Path, damage: str) -> None:
    path = save_state(_state(), tmp_path)
    raw = path.read_bytes()
    path.write_bytes(
        {"truncated": raw[: len(raw) // 2], "garbage": b"\0junk" * 99, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError) as info:
        load_state(tmp_path)
    assert str(path) in str(info.value) and "corrupt or truncated" in str(info.value)


def test_tune_restore_from_a_corrupt_checkpoint_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TuneReporter.restore (what a retried/resumed trial calls first) on the newest of two
    checkpoints, damaged: a CheckpointError naming it and the older one Ray keeps -- never a
    fresh start."""
    from ray import tune

    from trainables import tune_entry

    trial_dir = tmp_path / "trial"
    older, newest = trial_dir / "checkpoint_000000", trial_dir / "checkpoint_000001"
    for d in (older, newest):
        d.mkdir(parents=True)
        save_state(_state(), d)
    state_file = newest / "state.pt"
    state_file.write_bytes(state_file.read_bytes()[:100])
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(newest))
    with pytest.raises(CheckpointError) as info:
        tune_entry.TuneReporter().restore()
    message = str(info.value)
    assert str(state_file) in message and "corrupt or truncated" in message
    assert "checkpoint_000000" in message and "older" in message


# ---------------------------------------------------------------------------------------------
# Fault 6: storage path
# ---------------------------------------------------------------------------------------------
@needs_cifar
def test_unwritable_storage_path_is_refused_before_start(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "afile").write_text("x")
    storage = tmp_path / "afile" / "results"
    proc = cli(
        work, "run", "--smoke-test", "--data-dir", str(CIFAR), "--storage-path", str(storage)
    )
    assert_refused(proc, f"storage path {storage}", "is a file, not a folder")
    assert listing(work) == set()


# ---------------------------------------------------------------------------------------------
# Security: hostile pickles never run
# ---------------------------------------------------------------------------------------------
class Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_hostile_state_pt_does_not_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"format": 1, "model": Hostile(marker)}, folder / "state.pt")
    # The payload is live: a plain torch.load(weights_only=False) would run it.
    torch.load(folder / "state.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match=r"state\.pt"):
        load_state(folder)
    assert not marker.exists()


def test_hostile_data_batch_does_not_execute(tiny_cifar_dir: Path, tmp_path: Path) -> None:
    from trainables.data import DataError, load_cifar10

    marker = tmp_path / "pwned"
    with (tiny_cifar_dir / "data_batch_2").open("wb") as fh:
        pickle.dump(Hostile(marker), fh, protocol=2)
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10(tiny_cifar_dir)
    assert not marker.exists()


def test_run_binds_a_local_ray_to_loopback(tmp_path: Path) -> None:
    """What `run` (without --address) sets before Ray starts, and the UI command it prints.
    (In a child process: the setting is process-wide. Fault 1 checks the real sockets.)"""
    code = (
        "import os\n"
        "from sweep.cli import bind_ray_to_loopback, ui_command\n"
        "bind_ray_to_loopback()\n"
        "import ray._private.ray_constants as c\n"
        "import ray._private.services as s\n"
        "print(os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'], c.ENABLE_RAY_CLUSTER,\n"
        "      s.get_node_ip_address(), ui_command('sqlite:////x/m.db'))\n"
    )
    env = sweep_env(tmp_path)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    flag, enabled, node_ip, *ui = proc.stdout.split()
    assert (flag, enabled, node_ip) == ("0", "False", "127.0.0.1")
    assert "--host 127.0.0.1" in " ".join(ui)
