"""Faults a long sweep must survive, with real processes where the fault needs them.

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
import json
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from helpers import (
    CIFAR,
    LOOPBACK_HEX,
    SMOKE,
    KeepReports,
    assert_refused,
    checkpoint_epoch,
    cli,
    driver,
    listening_addresses,
    listing,
    metric_history,
    mlflow_runs,
    needs_cifar,
    new_store,
    output,
    plant_orphaned_staging,
    results,
    run_args,
    session_pids,
    sweep_env,
    wait_for,
    write_spec,
)

from trainables import results as R
from trainables import staging
from trainables.checkpoint import CheckpointError, load_state, save_state
from trainables.tune_entry import PRUNED

FAKE_TOKEN = "sk-test-0123456789abcdef"


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
        checkpoint_num_to_keep=3,
    )
    # The trials' own temporary directory, holding what a trial killed on this node before left.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    orphan = plant_orphaned_staging(tmp)
    env = sweep_env(ray_tmp, PLATEAU_SWEEP_FAKE_TOKEN=FAKE_TOKEN, TMPDIR=str(tmp))
    log = work / "run.out"
    experiment = work / "results" / "fault1"
    with driver(work, run_args(spec, work), env, "run") as proc:

        def good_trial_checkpointed_twice() -> tuple[Path, int] | None:
            # Read from the checkpoints the trial writes at once (Tune's result files reach
            # the folder only when the driver syncs them).
            for d in experiment.glob("*lr=0.01*"):
                done = [
                    e for c in complete_checkpoints(d) if (e := checkpoint_epoch(c)) is not None
                ]
                if len(done) < 2:
                    continue
                if max(done) >= FAULT1_EPOCHS - 1:  # no time left to kill it mid-run
                    raise AssertionError(f"trial too fast to interrupt: epoch {max(done)}")
                workers = trial_workers(proc.pid)  # the lr 1e4 trial has failed by now
                if len(workers) == 1:
                    return d, workers[0]
            return None

        trial_dir, worker = wait_for("two checkpoints", good_trial_checkpointed_twice, proc, log)
        # Ray started here (no --address) listens on loopback only.
        addresses = listening_addresses(proc.pid)
        assert addresses and set(addresses) <= LOOPBACK_HEX, addresses
        os.kill(worker, signal.SIGKILL)
        # Fault 5 on top: the newest complete checkpoint is truncated before the retry reads it.
        damaged = complete_checkpoints(trial_dir)[-1] / "state.pt"
        damaged.write_bytes(damaged.read_bytes()[:100])
        proc.wait(timeout=400)
    text = output(work, "run")
    assert proc.returncode == 1, text[-4000:]  # 1: a trial errored (the lr 1e4 one)
    assert "python -m sweep ui fault1" in text  # the UI command printed (sweep ui: 127.0.0.1)

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
    assert results(trial_dir)[-1][R.EPOCH] == FAULT1_EPOCHS
    clean = clean_run(json.loads((trial_dir / "params.json").read_text()))
    for key in (R.TRAIN_LOSS, R.VAL_LOSS, R.VAL_ACC, R.LR, R.IMAGES_SEEN):
        logged = metric_history(work, good.info.run_id, key)
        assert logged == {m[R.EPOCH]: m[key] for m in clean}, key
        # each epoch once, although some were computed twice (the fallback re-ran them)
        assert len(raw_history(work, good.info.run_id, key)) == FAULT1_EPOCHS, key
    assert metric_history(work, good.info.run_id, R.TEST_ACC) == {
        FAULT1_EPOCHS: clean[-1][R.TEST_ACC]
    }
    # The damaged checkpoint was skipped, the older one restored, and the run says so.
    fallback = good.data.tags["plateau_sweep.checkpoint_fallback"]
    assert damaged.parent.name in fallback and "restored checkpoint_" in fallback, fallback
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    events = [f.path for f in client.list_artifacts(good.info.run_id, "events")]
    assert any("checkpoint_fallback" in p for p in events), events
    # pruned once a newer checkpoint was written: emptied and marked, the folder kept
    assert [p.name for p in damaged.parent.iterdir()] == [PRUNED]

    # Fault 3b: the diverging trial is FAILED with the reason, not a NaN run reported finished,
    # and only once: a non-finite loss would come back on every retry.
    assert bad.info.status == "FAILED"
    assert "non-finite training loss" in bad.data.tags["plateau_sweep.error"]
    assert bad.data.tags["plateau_sweep.failures"] == "1"
    assert "plateau_sweep.previous_error" not in bad.data.tags
    assert "failed, not retried (it would fail the same way)" in text
    # No checkpoint stayed behind on the node: the orphan and whatever the killed worker was
    # staging were removed by a trial's start, every other trial's folder at the trial's end.
    assert not orphan.exists()
    assert not list(tmp.glob(f"{staging.PREFIX}*")), sorted(tmp.iterdir())
    # The recovered kill is one line, not a traceback; the full text is in the run's tags.
    assert "retrying from its last checkpoint (failure 1 of at most 1)" in text
    assert "Traceback" not in text
    assert "plateau_sweep.previous_error_detail" in good.data.tags

    # Security: no environment value (the fake token included) in any param or tag.
    secrets = {
        v for k, v in env.items() if len(v) > 8 and k not in _PUBLIC_ENV and os.sep not in v
    } | {FAKE_TOKEN}
    for run in (parent, *kids):
        for value in (*run.data.params.values(), *run.data.tags.values()):
            assert FAKE_TOKEN not in value
            assert value not in secrets, value


def trial_workers(sid: int) -> list[int]:
    """Live Ray actors of the session that run a trial."""
    found = []
    for pid in session_pids(sid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmdline.startswith(b"ray::ImplicitFunc"):
                found.append(pid)
    return found


def complete_checkpoints(trial_dir: Path) -> list[Path]:
    """The trial's checkpoint folders with a state file, oldest first."""
    return sorted(p.parent for p in trial_dir.glob("checkpoint_*/state.pt"))


def raw_history(work: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    """Every (step, value) logged for ``key``, duplicates included."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


#: Environment variables whose values are public facts (paths, host names) that may legitimately
#: equal a tag such as the driver host; everything else (and any value without a path separator)
#: must never show up in MLflow.
_PUBLIC_ENV = {"HOSTNAME", "HOST", "NAME", "LANG", "LC_ALL", "TERM", "SHELL", "USER", "LOGNAME"}


def clean_run(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The same trial, uninterrupted, in this process, with the worker's thread count."""
    from trainables.config import TrialConfig
    from trainables.data import load_options
    from trainables.device import select_device
    from trainables.loop import train

    cfg = TrialConfig.model_validate(config)  # the trial's params.json, as Tune wrote it
    splits = load_options(cfg.data.model_copy(update={"dir": str(CIFAR)}))
    threads = torch.get_num_threads()
    try:
        keep = KeepReports()
        train(cfg, splits, keep, select_device("cpu", gpus_assigned=0, cpus_assigned=1))
        return keep.reports
    finally:
        torch.set_num_threads(threads)


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
    cfg = TrialConfig.model_validate(
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
            "epochs": 3,
            "batch_size": 32,
            "seed": 5,
        }
    )
    keep = KeepReports()
    threads = torch.get_num_threads()
    try:
        train(cfg, splits, keep, select_device("cpu", gpus_assigned=0, cpus_assigned=1))
    finally:
        torch.set_num_threads(threads)
    reports, states = keep.reports, keep.states
    events = [e for m in reports for e in json.loads(m[R.POLICY_EVENTS])]
    tests = [e for e in events if e["kind"] == "range_test"]
    assert tests, events
    assert tests[0]["stop_reason"] == "non_finite"
    assert "non-finite loss at lr" in tests[0]["reason"], tests[0]["reason"]
    assert tests[0]["losses"][-1] is None  # the NaN/inf step, recorded as missing
    assert math.isfinite(tests[0]["new_lr"]) and tests[0]["new_lr"] < 1e30
    # Training went on after the blown-up test, with finite weights and losses.
    assert [m[R.EPOCH] for m in reports] == [1, 2, 3]
    assert all(math.isfinite(m[R.TRAIN_LOSS]) and math.isfinite(m[R.VAL_LOSS]) for m in reports)
    for tensor in states[-1]["model"].values():
        assert torch.isfinite(tensor.float()).all()


# ---------------------------------------------------------------------------------------------
# Fault 4: the MLflow store
# ---------------------------------------------------------------------------------------------
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


def test_transient_logging_error_is_retried(tmp_path: Path, empty_store: Path) -> None:
    """One failing MlflowClient call inside a hook: retried, the run completes, nothing lost."""
    from mlflow import MlflowClient

    from sweep.tracking import MLflowTracker

    uri = new_store(empty_store, tmp_path)
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


class FakeStorage:
    """What TuneReporter reads of Ray's StorageContext: a filesystem and the trial's folder."""

    def __init__(self, trial_dir: Path) -> None:
        import pyarrow.fs

        self.storage_filesystem = pyarrow.fs.LocalFileSystem()
        self.trial_fs_path = str(trial_dir)
        self.current_checkpoint_index = 0


def checkpoints(trial_dir: Path, epochs: list[int]) -> list[Path]:
    folders = []
    for i, epoch in enumerate(epochs):
        folder = trial_dir / f"checkpoint_{i:06d}"
        folder.mkdir(parents=True)
        save_state({**_state(), "counters": {"epoch": epoch}}, folder)
        folders.append(folder)
    return folders


def reporter_on(
    trial_dir: Path, monkeypatch: pytest.MonkeyPatch, keep: int | None = None
) -> tuple[Any, FakeStorage]:
    from ray import tune

    from trainables import tune_entry

    storage = FakeStorage(trial_dir)
    reporter = tune_entry.TuneReporter(keep=keep)
    monkeypatch.setattr(tune_entry.TuneReporter, "_storage", lambda self: storage)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    return reporter, storage


def test_restore_takes_the_newest_checkpoint_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune's saved state may lag behind (driver crash): the folder, not Tune, says which is
    newest, and new checkpoints are numbered after it."""
    checkpoints(tmp_path, [1, 2, 3])
    reporter, storage = reporter_on(tmp_path, monkeypatch)
    state = reporter.restore()
    assert state is not None and state["counters"]["epoch"] == 3
    assert storage.current_checkpoint_index == 3
    assert not reporter.skipped


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_restore_falls_back_past_a_damaged_newest_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    folders = checkpoints(tmp_path, [1, 2, 3])
    newest = folders[-1] / "state.pt"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:100])
    else:  # a folder whose copy never finished
        newest.unlink()
    reporter, _ = reporter_on(tmp_path, monkeypatch, keep=2)
    state = reporter.restore()
    assert state is not None and state["counters"]["epoch"] == 2
    # The next report carries the fallback for the driver to record.
    sent: list[dict[str, Any]] = []
    from ray import tune

    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: sent.append(metrics))
    reporter.report({R.EPOCH: 3}, None)
    note = json.loads(sent[0][R.CHECKPOINT_FALLBACK])
    assert note["restored"] == "checkpoint_000001"
    assert list(note["skipped"]) == ["checkpoint_000002"]
    assert str(folders[-1]) in note["skipped"]["checkpoint_000002"]
    reporter.report({R.EPOCH: 4}, None)
    assert R.CHECKPOINT_FALLBACK not in sent[1]  # once


def test_restore_fails_naming_every_checkpoint_when_none_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = checkpoints(tmp_path, [1, 2])
    for folder in folders:
        (folder / "state.pt").write_bytes(b"\0junk" * 99)
    reporter, _ = reporter_on(tmp_path, monkeypatch)
    with pytest.raises(CheckpointError) as info:
        reporter.restore()
    message = str(info.value)
    assert "no checkpoint of this trial loads (2 tried)" in message
    for folder in folders:
        assert str(folder / "state.pt") in message


def test_restore_refuses_a_fresh_start_when_tune_knows_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import tune

    reporter, _ = reporter_on(tmp_path, monkeypatch)
    assert reporter.restore() is None  # nothing known, nothing on disk: a fresh start
    gone = tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000004"))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: gone)
    with pytest.raises(CheckpointError, match="checkpoint_000004 is gone"):
        reporter.restore()


def test_trial_prunes_its_own_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """keep=2: after each checkpoint only the two newest stay (Tune itself deletes none)."""
    from ray import tune

    reporter, storage = reporter_on(tmp_path, monkeypatch, keep=2)

    def persist(metrics: dict[str, Any], checkpoint: Any = None) -> None:
        folder = tmp_path / f"checkpoint_{storage.current_checkpoint_index:06d}"
        folder.mkdir()
        (folder / "state.pt").write_bytes(Path(checkpoint.path, "state.pt").read_bytes())
        storage.current_checkpoint_index += 1

    monkeypatch.setattr(tune, "report", persist)
    for epoch in range(1, 5):
        reporter.report({R.EPOCH: epoch}, {"counters": {"epoch": epoch}})
    from trainables import tune_entry

    listed = tune_entry.list_checkpoints(storage.storage_filesystem, str(tmp_path))
    assert [c.name for c in listed] == ["checkpoint_000003", "checkpoint_000002"]
    # the pruned ones are emptied, not removed: Tune's saved state may still name them
    for name in ("checkpoint_000000", "checkpoint_000001"):
        assert [p.name for p in (tmp_path / name).iterdir()] == [tune_entry.PRUNED]


def test_restore_from_a_pruned_checkpoint_that_tune_still_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver killed between a prune and Tune's next state save: Tune restores the trial
    from a checkpoint the trial already pruned. Its folder must still exist (Ray refuses a
    missing one), and the restore takes the newest checkpoint that is really there."""
    from ray import tune

    from trainables import tune_entry

    folders = checkpoints(tmp_path, [1, 2, 3])
    reporter, _ = reporter_on(tmp_path, monkeypatch, keep=2)
    reporter._prune()
    oldest = folders[0]
    assert oldest.is_dir() and [p.name for p in oldest.iterdir()] == [tune_entry.PRUNED]
    named = tune.Checkpoint.from_directory(str(oldest))
    monkeypatch.setattr(tune, "get_checkpoint", lambda: named)
    state = reporter.restore()
    assert state is not None and state["counters"]["epoch"] == 3
    assert not reporter.skipped


# ---------------------------------------------------------------------------------------------
# Fault 6: storage path
# ---------------------------------------------------------------------------------------------
@needs_cifar
@pytest.mark.parametrize("case", ["under-a-file", "proc"])
def test_unwritable_storage_path_is_refused_before_start(tmp_path: Path, case: str) -> None:
    """Checked by writing a probe file: /proc passes os.access but takes no file."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "afile").write_text("x")
    storage, why = {
        "under-a-file": (tmp_path / "afile" / "results", "is a file, not a folder"),
        "proc": (Path("/proc/ray_results"), "cannot write to /proc"),
    }[case]
    proc = cli(
        work, "run", "--smoke-test", "--data-dir", str(CIFAR), "--storage-path", str(storage)
    )
    assert_refused(proc, f"storage path {storage}", why)
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
    from trainables.cifar_files import DataError, load_cifar10

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
        "from sweep.ray_start import bind_ray_to_loopback\n"
        "from sweep.ui import server_command\n"
        "bind_ray_to_loopback()\n"
        "import ray._private.ray_constants as c\n"
        "import ray._private.services as s\n"
        "print(os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'], c.ENABLE_RAY_CLUSTER,\n"
        "      s.get_node_ip_address(), *server_command('sqlite:////x/m.db', 5000))\n"
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


@pytest.mark.parametrize("before", ["absent", "world-readable", "private"])
def test_local_ray_auth_token_is_private(tmp_path: Path, before: str) -> None:
    from sweep.ray_start import private_auth_token

    environ: dict[str, str] = {}
    token = tmp_path / ".ray" / "auth_token"
    if before != "absent":
        token.parent.mkdir()
        token.write_text("abc123")
        token.chmod(0o644 if before == "world-readable" else 0o600)
    private_auth_token(token, environ)
    assert token.stat().st_mode & 0o777 == 0o600
    if before == "absent":
        assert len(token.read_text()) == 64  # a fresh random token
    else:
        assert token.read_text() == "abc123"  # an existing token is kept
    assert environ == {"RAY_AUTH_MODE": "token"}


def test_auth_mode_set_by_the_user_is_left_alone(tmp_path: Path) -> None:
    from sweep.ray_start import private_auth_token

    environ = {"RAY_AUTH_MODE": "disabled"}
    private_auth_token(tmp_path / ".ray" / "auth_token", environ)
    assert not (tmp_path / ".ray").exists()
    assert environ == {"RAY_AUTH_MODE": "disabled"}


def test_non_finite_loss_error_keeps_its_epoch_through_pickling() -> None:
    """Ray pickles a trial's exception back to the driver; a required keyword argument would
    turn it into a TypeError there (and hide the real reason)."""
    from trainables.loop import NonFiniteLossError

    exc = pickle.loads(pickle.dumps(NonFiniteLossError("non-finite training loss", epoch=3)))
    assert isinstance(exc, NonFiniteLossError)
    assert (str(exc), exc.epoch) == ("non-finite training loss", 3)
