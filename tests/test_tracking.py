"""MLflowTracker and check_tracking_store against a real MLflow SQLite store in tmp_path.

No Ray cluster: the tests call the callback's hooks directly with :class:`StubTrial`, a tiny
object with the only Trial attributes the tracker reads (trial_id, config, status, last_result,
error_file).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    PNG_SIGNATURE,
    SPEC,
    StubTrial,
    config,
    make_tracker,
    new_store,
    range_event,
    reduce_event,
    result,
)
from mlflow import MlflowClient

from sweep import result_batch, run_values, store
from sweep.plots import plot_range_test
from sweep.run_values import flatten_config
from sweep.store import (
    LR_STEP_METRIC,
    RANGE_TEST_LR_METRIC,
    TAG_ERROR,
    TAG_PARENT_RUN_ID,
    TAG_POLICY,
    TAG_POLICY_LABEL,
    TAG_PREVIOUS_ERROR,
    TAG_ROLE,
    TAG_SEED,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TrackingError,
)
from sweep.store_check import check_tracking_store
from sweep.tracking import MLflowTracker
from trainables import results as R
from trainables.results import downsample


@pytest.fixture
def uri(tmp_path: Path, empty_store: Path) -> str:
    return new_store(empty_store, tmp_path)


def pid(tracker: MLflowTracker) -> str:
    assert tracker.parent_run_id is not None
    return tracker.parent_run_id


def cid(tracker: MLflowTracker, trial_id: str) -> str:
    run_id = tracker.child_run_id(trial_id)
    assert run_id is not None
    return run_id


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def children(client: MlflowClient, tracker: MLflowTracker) -> list[Any]:
    assert tracker.experiment_id is not None
    return client.search_runs(
        [tracker.experiment_id], f"tags.`{TAG_PARENT_RUN_ID}` = '{tracker.parent_run_id}'"
    )


# -- nested structure ----------------------------------------------------------------------------
def test_parent_and_nested_children(uri: str, tmp_path: Path) -> None:
    tracker = make_tracker(uri, lr_trace_max_points=20, spec_path="/x/spec.yaml")
    tracker.setup()
    client = MlflowClient(tracking_uri=uri)
    trials = [
        StubTrial("t_a", config("range_test_on_plateau", 0)),
        StubTrial("t_b", config("constant", 1)),
    ]
    reported: dict[str, list[dict[str, Any]]] = {t.trial_id: [] for t in trials}
    for t in trials:
        t.status = "RUNNING"
        tracker.on_trial_start(iteration=0, trials=trials, trial=t)
    for epoch in (1, 2, 3):
        for t in trials:
            events = (
                [range_event(epoch), reduce_event(epoch)]
                if t.trial_id == "t_a" and epoch == 2
                else None
            )
            extra: dict[str, Any] = {R.TEST_LOSS: 0.9, R.TEST_ACC: 0.71} if epoch == 3 else {}
            res = result(epoch, events=events, **extra)
            reported[t.trial_id].append(res)
            tracker.on_trial_result(iteration=epoch, trials=trials, trial=t, result=res)
    for t in trials:
        t.status = "TERMINATED"
        tracker.on_trial_complete(iteration=4, trials=trials, trial=t)
    tracker.on_experiment_end(trials=trials)

    parent = client.get_run(pid(tracker))
    assert parent.data.tags[TAG_SWEEP] == "demo"
    assert parent.data.tags[TAG_ROLE] == "parent"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["plateau_sweep.version.mlflow"]
    assert parent.data.tags["plateau_sweep.version.python"]
    assert parent.data.tags["plateau_sweep.driver_devices"]
    assert parent.data.tags["plateau_sweep.spec_path"] == "/x/spec.yaml"
    assert parent.data.metrics["trials_finished"] == 2
    assert parent.data.metrics["trials_failed"] == 0
    spec_file = client.download_artifacts(parent.info.run_id, "spec.yaml", str(tmp_path / "dl"))
    assert Path(spec_file).read_text() == SPEC
    # artifacts live next to the db, not in the cwd's ./mlruns
    assert parent.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())

    runs = children(client, tracker)
    assert len(runs) == 2
    assert len(client.search_runs([str(tracker.experiment_id)])) == 3
    by_trial = {r.data.tags[TAG_TRIAL_ID]: r for r in runs}
    assert set(by_trial) == {"t_a", "t_b"}
    for t in trials:
        run = by_trial[t.trial_id]
        tags, params = run.data.tags, run.data.params
        assert tags[TAG_PARENT_RUN_ID] == tracker.parent_run_id
        assert tags[TAG_ROLE] == "child"
        assert tags[TAG_POLICY] == t.config["policy"]
        assert tags[TAG_POLICY_LABEL] == t.config["policy_label"]
        assert tags[TAG_SEED] == str(t.config["seed"])
        assert tags["plateau_sweep.node_id"] == "node-abc"
        assert tags["plateau_sweep.hostname"] == "host-1"
        assert tags["plateau_sweep.device"] == "cpu (2 threads)"
        assert run.info.status == "FINISHED"
        assert params["policy_params.patience"] == "2"
        assert params["policy_params.factor"] == "0.5"
        assert params["lr"] == "0.001"
        assert "api_token" not in params
        assert "s3cr3t" not in json.dumps(params) + json.dumps(tags)
        for key in R.EPOCH_METRICS:
            want = [(r[R.EPOCH], float(r[key])) for r in reported[t.trial_id]]
            assert history(client, run.info.run_id, key) == want, key
        assert history(client, run.info.run_id, R.TEST_ACC) == [(3, 0.71)]
        lr = history(client, run.info.run_id, LR_STEP_METRIC)
        assert 3 <= len(lr) <= 20  # 150 reported points, downsampled
        assert lr[0] == (0, pytest.approx(1e-3))
        assert lr[-1][0] == 149  # each epoch keeps its last point

    # events of t_a, epoch 2: JSON for both, a PNG for the range test
    run_a = by_trial["t_a"].info.run_id
    names = sorted(f.path for f in client.list_artifacts(run_a, "events"))
    assert names == [
        "events/epoch_002_range_test.json",
        "events/epoch_002_range_test.png",
        "events/epoch_002_reduce.json",
    ]
    dl = tmp_path / "events_dl"
    folder = Path(client.download_artifacts(run_a, "events", str(dl)))
    assert json.loads((folder / "epoch_002_range_test.json").read_text()) == range_event(2)
    assert json.loads((folder / "epoch_002_reduce.json").read_text()) == reduce_event(2)
    assert (folder / "epoch_002_range_test.png").read_bytes()[:8] == PNG_SIGNATURE
    assert history(client, run_a, RANGE_TEST_LR_METRIC) == [(2, 3e-3)]
    assert client.list_artifacts(by_trial["t_b"].info.run_id, "events") == []


def test_lr_trace_downsampled_over_the_whole_run(uri: str) -> None:
    tracker = make_tracker(uri, lr_trace_max_points=25)
    tracker.setup()
    trial = StubTrial("t", config(epochs=4), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch in range(1, 7):  # more epochs than configured: the overall cap still holds
        res = result(epoch, steps_per_epoch=400)
        tracker.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=res)
    client = MlflowClient(tracking_uri=uri)
    points = history(client, cid(tracker, "t"), LR_STEP_METRIC)
    assert len(points) == 25
    assert len({s for s, _ in points}) == 25


def test_downsample_and_flatten() -> None:
    assert downsample(list(range(10)), 3) == [0, 4, 9]  # evenly spaced, ends included
    assert downsample(list(range(10)), 1) == [9]
    assert downsample([1, 2], 5) == [1, 2]
    assert downsample([1, 2, 3], 0) == []
    flat = flatten_config(
        {"a": 1, "b": {"c": {"d": True}}, "env": {"X": "1"}, "password": "p", "obj": object()}
    )
    assert flat == {"a": "1", "b.c.d": "True"}


# -- resume ----------------------------------------------------------------------------------
def test_resume_continues_the_same_runs_without_duplicates(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    first = make_tracker(uri)
    first.setup()
    trial = StubTrial("t_1", config(epochs=4), status="RUNNING")
    first.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch in (1, 2):
        res = result(epoch, val_acc=0.1 * epoch)
        first.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=res)
    first.on_experiment_end(trials=[trial])  # interrupted: the trial never ended
    parent_id, child_id = pid(first), cid(first, "t_1")
    assert client.get_run(parent_id).info.status == "KILLED"
    assert client.get_run(child_id).info.status == "KILLED"

    # a new driver process: a new tracker, resume=True, no state from Tune
    second = make_tracker(uri, resume=True)
    second.setup()
    assert second.parent_run_id == parent_id
    assert client.get_run(parent_id).info.status == "RUNNING"
    trial = StubTrial("t_1", config(epochs=4), status="RUNNING")
    second.on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert second.child_run_id("t_1") == child_id
    assert client.get_run(child_id).info.status == "RUNNING"
    # the trial restarts from its epoch-1 checkpoint: epoch 2 comes again (other numbers)
    for epoch in (2, 3, 4):
        res = result(epoch, val_acc=0.5 + 0.1 * epoch)
        second.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=res)
    trial.status = "TERMINATED"
    second.on_trial_complete(iteration=5, trials=[trial], trial=trial)
    second.on_experiment_end(trials=[trial])

    assert history(client, child_id, R.VAL_ACC) == [
        (1, pytest.approx(0.1)),
        (2, pytest.approx(0.2)),  # the first report of epoch 2 stays; no duplicate
        (3, pytest.approx(0.8)),
        (4, pytest.approx(0.9)),
    ]
    steps = [s for s, _ in history(client, child_id, LR_STEP_METRIC)]
    assert len(steps) == len(set(steps))
    assert client.get_run(child_id).info.status == "FINISHED"
    assert client.get_run(parent_id).info.status == "FINISHED"
    assert client.get_run(parent_id).data.tags["plateau_sweep.resumes"] == "1"
    exp = first.experiment_id
    assert exp is not None
    assert len(client.search_runs([exp])) == 2  # one parent, one child


def test_resume_after_a_kill_between_the_metrics_and_the_tags(uri: str) -> None:
    """MLflow's SQL store commits a batch's metrics and its tags in two transactions; a
    driver killed between them leaves epoch 1's metrics without the last_epoch tag. The
    trial then reruns epoch 1 (no checkpoint yet): it is not logged twice."""
    client = MlflowClient(tracking_uri=uri)
    first = make_tracker(uri)
    first.setup()
    trial = StubTrial("t_1", config(epochs=2), status="RUNNING")
    first.on_trial_start(iteration=0, trials=[trial], trial=trial)
    first.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    child_id = cid(first, "t_1")
    client.set_tag(child_id, "plateau_sweep.last_epoch", "0")  # the tag commit never happened
    first.on_experiment_end(trials=[trial])

    second = make_tracker(uri, resume=True)
    second.setup()
    trial = StubTrial("t_1", config(epochs=2), status="RUNNING")
    second.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch in (1, 2):
        second.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=result(epoch))
    assert [s for s, _ in history(client, child_id, R.VAL_ACC)] == [1, 2]
    assert [s for s, _ in history(client, child_id, R.TRAIN_LOSS)] == [1, 2]


def test_final_report_repeating_the_last_epoch(uri: str) -> None:
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch in (1, 2):
        tracker.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=result(epoch))
    final = {**result(2), R.TEST_ACC: 0.7, R.TEST_LOSS: 0.8, R.POLICY_EVENTS: "[1, 2]"}
    tracker.on_trial_result(iteration=3, trials=[trial], trial=trial, result=final)
    tracker.on_trial_result(iteration=4, trials=[trial], trial=trial, result=final)
    client = MlflowClient(tracking_uri=uri)
    run_id = cid(tracker, "t")
    assert history(client, run_id, R.TEST_ACC) == [(2, 0.7)]  # once, at the last epoch
    assert [s for s, _ in history(client, run_id, R.VAL_ACC)] == [1, 2]


def test_restored_epoch_the_driver_never_logged_is_logged_once(uri: str) -> None:
    """A driver can die after a checkpoint was written but before it logged that epoch: the
    first report after the restore carries the restored epoch's metrics."""
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t", config(epochs=4), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    # epoch 2 was checkpointed but never logged; the restored trial reports epoch 3 with it
    carried = {R.RESTORED_METRICS: json.dumps(result(2, val_acc=0.42))}
    tracker.on_trial_result(iteration=2, trials=[trial], trial=trial, result=result(3, **carried))
    # a later restore from epoch 3 carries epoch 3 again: already logged, not again
    carried = {R.RESTORED_METRICS: json.dumps(result(3))}
    tracker.on_trial_result(iteration=3, trials=[trial], trial=trial, result=result(4, **carried))
    client = MlflowClient(tracking_uri=uri)
    run_id = cid(tracker, "t")
    assert [s for s, _ in history(client, run_id, R.VAL_ACC)] == [1, 2, 3, 4]
    assert dict(history(client, run_id, R.VAL_ACC))[2] == pytest.approx(0.42)


def test_checkpoint_fallback_becomes_a_tag_and_an_event(uri: str, tmp_path: Path) -> None:
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    note = {"restored": "checkpoint_000001", "skipped": {"checkpoint_000002": "truncated"}}
    res = result(3, **{R.CHECKPOINT_FALLBACK: json.dumps(note)})
    tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=res)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(cid(tracker, "t"))
    tag = run.data.tags["plateau_sweep.checkpoint_fallback"]
    assert tag == "restored checkpoint_000001; skipped checkpoint_000002 (damaged)"
    [artifact] = [
        f.path
        for f in client.list_artifacts(run.info.run_id, "events")
        if "checkpoint_fallback" in f.path
    ]
    downloaded = client.download_artifacts(run.info.run_id, artifact, str(tmp_path))
    event = json.loads(Path(downloaded).read_text())
    assert event == {"kind": "checkpoint_fallback", **note}


def test_a_plateau_at_chance_becomes_a_tag_and_an_event(uri: str) -> None:
    from trainables.lr import make_policy

    policy = make_policy(
        "reduce_on_plateau",
        {"patience": 0},
        base_lr=1e-2,
        steps_per_epoch=5,
        metric_name="val_loss",
        chance_level=math.log(10),
    )
    events = policy.end_epoch(1, 2.31) + policy.end_epoch(2, 2.31)
    assert [e.kind for e in events] == ["reduce", "not_learning"]
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    res = result(2, events=[e.to_dict() for e in events])
    tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=res)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(cid(tracker, "t"))
    assert run.data.tags["plateau_sweep.not_learning"] == (
        "epoch 2: val_loss 2.31 is no better than chance (2.3): the run is not learning; its lr"
        " is far too high (a dead network: restart with a lower one) or far too low"
    )
    names = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "events")}
    assert names == {"epoch_002_reduce.json", "epoch_002_not_learning.json"}
    # a later epoch without a warning leaves the tag as it was
    tracker.on_trial_result(iteration=2, trials=[trial], trial=trial, result=result(3))
    assert "plateau_sweep.not_learning" in client.get_run(run.info.run_id).data.tags


def test_no_retry_notice_is_not_an_epoch(uri: str) -> None:
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    notice = {R.EPOCH: 1, R.VAL_ACC: math.nan, R.NO_RETRY: "non-finite training loss"}
    tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=notice)
    client = MlflowClient(tracking_uri=uri)
    assert history(client, cid(tracker, "t"), R.VAL_ACC) == []


def test_state_roundtrip_and_pickle(uri: str) -> None:
    first = make_tracker(uri)
    first.setup()
    trial = StubTrial("t_1", config(), status="RUNNING")
    first.on_trial_start(iteration=0, trials=[trial], trial=trial)
    first.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    state = first.get_state()
    assert state is not None
    state = pickle.loads(pickle.dumps(state))
    first.on_trial_result(iteration=2, trials=[trial], trial=trial, result=result(2))

    # Tune's restore: set_state before setup, resume flag not even needed
    second = make_tracker(uri)
    second.set_state(state)
    second.setup()
    assert second.parent_run_id == first.parent_run_id
    assert second.child_run_id("t_1") == first.child_run_id("t_1")
    # the state says epoch 1, the store says epoch 2: the store wins, epoch 2 is not duplicated
    second.on_trial_result(iteration=2, trials=[trial], trial=trial, result=result(2))
    second.on_trial_result(iteration=3, trials=[trial], trial=trial, result=result(3))
    client = MlflowClient(tracking_uri=uri)
    assert [s for s, _ in history(client, cid(first, "t_1"), R.VAL_ACC)] == [1, 2, 3]

    # Tune pickles its RunConfig (callbacks included); an unpickled copy resumes the parent
    clone = pickle.loads(pickle.dumps(first))
    assert clone.parent_run_id is None
    clone.setup()
    assert clone.parent_run_id == first.parent_run_id
    clone.on_trial_start(iteration=0, trials=[trial], trial=trial)
    assert clone.child_run_id("t_1") == first.child_run_id("t_1")

    other = make_tracker(uri, sweep_name="other")
    other.set_state(state)  # a different sweep's state is ignored
    other.setup()
    assert other.parent_run_id != first.parent_run_id


def test_error_recover_and_finish(uri: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=uri)
    tracker = make_tracker(uri)
    tracker.setup()
    err = tmp_path / "error.txt"
    err.write_text(
        "Failure # 1 (occurred at 2025-01-01)\nTraceback (most recent call last):\n"
        '  File "x.py", line 1\nRuntimeError: CUDA out of memory\n'
    )
    trial = StubTrial("t_err", config(), status="RUNNING", error_file=str(err))
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    run_id = cid(tracker, "t_err")

    trial.status = "ERROR"
    tracker.on_trial_error(iteration=2, trials=[trial], trial=trial)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[TAG_ERROR] == "RuntimeError: CUDA out of memory"
    assert "Traceback" in run.data.tags["plateau_sweep.error_detail"]

    trial.status = "RUNNING"
    tracker.on_trial_recover(iteration=3, trials=[trial], trial=trial)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert TAG_ERROR not in run.data.tags
    assert run.data.tags[TAG_PREVIOUS_ERROR] == "RuntimeError: CUDA out of memory"
    # restarted from the epoch-1 checkpoint: epoch 1 again, then 2
    tracker.on_trial_result(iteration=4, trials=[trial], trial=trial, result=result(1))
    tracker.on_trial_result(iteration=5, trials=[trial], trial=trial, result=result(2))
    trial.status = "TERMINATED"
    tracker.on_trial_complete(iteration=6, trials=[trial], trial=trial)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [s for s, _ in history(client, run_id, R.VAL_ACC)] == [1, 2]

    # a second trial fails for good; the sweep still completes: parent FINISHED with counts
    bad = StubTrial("t_bad", config(seed=1), status="RUNNING")
    bad.error_msg = "ValueError: boom"  # type: ignore[attr-defined]
    tracker.on_trial_start(iteration=7, trials=[trial, bad], trial=bad)
    bad.status = "ERROR"
    tracker.on_trial_error(iteration=8, trials=[trial, bad], trial=bad)
    tracker.on_experiment_end(trials=[trial, bad])
    parent = client.get_run(pid(tracker))
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_finished"] == 1
    assert parent.data.metrics["trials_failed"] == 1
    assert parent.data.tags["plateau_sweep.trials_failed"] == "1"
    bad_run = client.get_run(cid(tracker, "t_bad"))
    assert bad_run.info.status == "FAILED"
    assert bad_run.data.tags[TAG_ERROR] == "ValueError: boom"


def test_resumed_failed_trial_runs_again(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    first = make_tracker(uri)
    first.setup()
    trial = StubTrial("t_1", config(), status="RUNNING")
    trial.error_msg = "OSError: disk"  # type: ignore[attr-defined]
    first.on_trial_start(iteration=0, trials=[trial], trial=trial)
    first.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    trial.status = "ERROR"
    first.on_trial_error(iteration=2, trials=[trial], trial=trial)
    first.on_experiment_end(trials=[trial])
    run_id = cid(first, "t_1")
    assert client.get_run(run_id).info.status == "FAILED"

    second = make_tracker(uri, resume=True)
    second.setup()
    trial = StubTrial("t_1", config(), status="RUNNING")
    second.on_trial_start(iteration=0, trials=[trial], trial=trial)
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"
    assert TAG_ERROR not in run.data.tags
    assert run.data.tags[TAG_PREVIOUS_ERROR] == "OSError: disk"
    second.on_trial_result(iteration=2, trials=[trial], trial=trial, result=result(2))
    trial.status = "TERMINATED"
    second.on_trial_complete(iteration=3, trials=[trial], trial=trial)
    assert client.get_run(run_id).info.status == "FINISHED"


def test_close_parent_on_driver_error(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t_1", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    tracker.close_parent("FAILED", reason="KeyError: 'x'\n  more")
    parent = client.get_run(pid(tracker))
    assert parent.info.status == "FAILED"
    assert parent.data.tags[TAG_ERROR] == "KeyError: 'x' more"
    assert client.get_run(cid(tracker, "t_1")).info.status == "KILLED"
    with pytest.raises(ValueError, match="status"):
        tracker.close_parent("RUNNING")


# -- transient errors ----------------------------------------------------------------------------
def test_transient_lock_is_retried(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t_1", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    real = tracker.client.log_batch
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kwargs)

    sleeps: list[float] = []
    monkeypatch.setattr(store.time, "sleep", sleeps.append)
    monkeypatch.setattr(tracker.client, "log_batch", flaky)
    tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    assert calls["n"] == 3
    assert sleeps == [0.001, 0.002]  # doubling backoff
    client = MlflowClient(tracking_uri=uri)
    assert history(client, cid(tracker, "t_1"), R.VAL_ACC) == [(1, pytest.approx(0.2))]


def test_persistent_errors_are_dropped_not_raised(
    uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t_1", config(), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    real = tracker.client.log_batch
    monkeypatch.setattr(store.time, "sleep", lambda s: None)

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(tracker.client, "log_batch", locked)
    with caplog.at_level(logging.WARNING, logger="sweep.tracking"):
        tracker.on_trial_result(iteration=1, trials=[trial], trial=trial, result=result(1))
    assert any("dropped" in r.message and "locked" in r.message for r in caplog.records)
    # the store comes back: the next epoch is logged, the dropped one can still come later
    monkeypatch.setattr(tracker.client, "log_batch", real)
    tracker.on_trial_result(iteration=2, trials=[trial], trial=trial, result=result(2))
    client = MlflowClient(tracking_uri=uri)
    assert [s for s, _ in history(client, cid(tracker, "t_1"), R.VAL_ACC)] == [2]
    trial.status = "TERMINATED"
    tracker.on_trial_complete(iteration=3, trials=[trial], trial=trial)
    assert client.get_run(cid(tracker, "t_1")).info.status == "FINISHED"


def test_setup_failure_raises_tracking_error(tmp_path: Path) -> None:
    bad = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = make_tracker(bad, experiment_name="x", max_tries=1)

    class Boom:
        def get_experiment_by_name(self, name: str) -> None:
            raise RuntimeError("no store")

    tracker._client = Boom()  # type: ignore[assignment]
    with pytest.raises(TrackingError, match="parent run"):
        tracker.setup()


# -- check_tracking_store ----------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_check_store_accepts_new_and_existing_db(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    check_tracking_store(uri)
    assert _snapshot(tmp_path) == set()  # nothing created, not even the db
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the db
    check_tracking_store(uri)


def _case_missing_dir(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path}/nope/deeper/mlflow.db", "does not exist"


def _case_file_as_dir(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "afile").write_text("x")
    return f"sqlite:///{tmp_path}/afile/mlflow.db", "not a folder"


def _case_db_is_dir(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "mlflow.db").mkdir()
    return f"sqlite:///{tmp_path}/mlflow.db", "is a folder"


def _case_readonly_dir(tmp_path: Path) -> tuple[str, str]:
    if os.geteuid() == 0:  # root writes through chmod; /proc/self is not writable even for root
        return "sqlite:////proc/self/mlflow.db", "not writable"
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return f"sqlite:///{folder}/mlflow.db", "not writable"


def _case_not_a_db(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "mlflow.db").write_bytes(b"this is not sqlite" * 100)
    return f"sqlite:///{tmp_path}/mlflow.db", "not a database"


def _case_http(tmp_path: Path) -> tuple[str, str]:
    return f"http://127.0.0.1:{_closed_port()}", "unreachable"


def _case_file_store(tmp_path: Path) -> tuple[str, str]:
    return "file:./mlruns", "sqlite:///"


def _case_plain_path(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "mlruns"), "sqlite:///"


def _case_memory(tmp_path: Path) -> tuple[str, str]:
    return "sqlite:///:memory:", "in-memory"


@pytest.mark.parametrize(
    "case",
    [
        _case_missing_dir,
        _case_file_as_dir,
        _case_db_is_dir,
        _case_readonly_dir,
        _case_not_a_db,
        _case_http,
        _case_file_store,
        _case_plain_path,
        _case_memory,
    ],
    ids=lambda f: f.__name__.removeprefix("_case_"),
)
def test_check_store_refuses(case: Any, tmp_path: Path) -> None:
    uri, cause = case(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(TrackingError) as info:
        check_tracking_store(uri)
    message = str(info.value)
    assert uri in message
    assert cause in message
    assert "\n" not in message
    assert _snapshot(tmp_path) == before  # nothing created


def test_check_store_locked_db(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES (1)")
    try:
        uri = f"sqlite:///{db}"
        with pytest.raises(TrackingError, match="locked") as info:
            check_tracking_store(uri)
        assert uri in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    check_tracking_store(f"sqlite:///{db}")  # free again


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files anyway")
def test_check_store_readonly_db_file(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    sqlite3.connect(db).close()
    db.chmod(0o444)
    with pytest.raises(TrackingError, match="read-only"):
        check_tracking_store(f"sqlite:///{db}")


# -- range-test plot -----------------------------------------------------------------------------
def test_range_test_plot_is_a_png(tmp_path: Path) -> None:
    path = plot_range_test(range_event(3), tmp_path / "sub" / "rt.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    empty = plot_range_test({"lrs": [], "losses": [], "epoch": 1}, tmp_path / "empty.png")
    assert empty.read_bytes()[:8] == PNG_SIGNATURE


# -- one real Tune run ---------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_real_tune_run(uri: str, tmp_path: Path) -> None:
    """The real Trial objects, the pickled RunConfig and Tune's hook arguments work."""
    ray = pytest.importorskip("ray")
    from ray import tune

    reports = [
        {
            k: v
            for k, v in result(
                e, events=[range_event(2)] if e == 2 else [], steps_per_epoch=10
            ).items()
            if k != "training_iteration"
        }
        for e in (1, 2, 3)
    ]

    def trainable(cfg: dict[str, Any]) -> None:  # nested: shipped to workers by value
        from ray import tune

        for report in reports:
            if cfg["seed"] == 1 and report["epoch"] == 2:
                raise RuntimeError("boom at epoch 2")
            tune.report(report)

    tracker = make_tracker(uri)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={**config(epochs=3), "seed": tune.grid_search([0, 1])},
            run_config=tune.RunConfig(
                storage_path=str(tmp_path / "ray"), name="smoke", callbacks=[tracker], verbose=0
            ),
        )
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    assert grid.num_errors == 1
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(pid(tracker))
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_finished"] == 1
    assert parent.data.metrics["trials_failed"] == 1
    runs = {r.data.tags[TAG_SEED]: r for r in children(client, tracker)}
    ok, bad = runs["0"], runs["1"]
    assert ok.info.status == "FINISHED"
    assert [s for s, _ in history(client, ok.info.run_id, R.VAL_ACC)] == [1, 2, 3]
    assert {f.path for f in client.list_artifacts(ok.info.run_id, "events")} == {
        "events/epoch_002_range_test.json",
        "events/epoch_002_range_test.png",
    }
    assert bad.info.status == "FAILED"
    assert bad.data.tags[TAG_ERROR] == "RuntimeError: boom at epoch 2"


# -- what the MLflow runs table shows ----------------------------------------------------------
def test_experiment_kind_run_names_and_best_val_acc(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(tracking_uri=uri)
    # The first driver predates best_val_acc: it logs under another name.
    monkeypatch.setattr(result_batch, "BEST_VAL_ACC_METRIC", "not_best_val_acc")
    first = make_tracker(uri, name_keys=("lr", "missing"))
    first.setup()
    trial = StubTrial("t_1", config("constant", seed=3, epochs=4), status="RUNNING")
    first.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch, acc in ((1, 0.3), (2, 0.2)):
        res = result(epoch, val_acc=acc)
        first.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=res)
    first.on_experiment_end(trials=[trial])
    monkeypatch.undo()

    second = make_tracker(uri, resume=True, name_keys=("lr",))
    second.setup()
    second.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch, acc in ((3, 0.25), (4, 0.4)):
        res = result(epoch, val_acc=acc)
        second.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=res)
    second.on_experiment_end(trials=[trial])

    exp = client.get_experiment_by_name("exp-demo")
    assert exp.tags[store.TAG_EXPERIMENT_KIND] == store.EXPERIMENT_KIND_TRAINING
    run = client.get_run(cid(second, "t_1"))
    assert run.info.run_name == "constant-label · seed 3 · lr 0.001"
    # the running max over all four epochs, the first driver's epochs included
    assert history(client, run.info.run_id, store.BEST_VAL_ACC_METRIC) == [
        (3, pytest.approx(0.3)),
        (4, pytest.approx(0.4)),
    ]
    assert run.data.metrics[store.BEST_VAL_ACC_METRIC] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("tags", "config", "keys", "name"),
    [
        (
            {TAG_POLICY_LABEL: "rt", TAG_POLICY: "range_test_on_plateau", TAG_SEED: "0"},
            {},
            (),
            "rt · seed 0",
        ),
        (
            {TAG_POLICY: "constant", TAG_SEED: "1"},
            {"lr": 0.0031415},
            ("lr",),
            "constant · seed 1 · lr 0.00314",
        ),
        ({TAG_POLICY: "constant"}, {"batch_size": 64}, ("batch_size",), "constant · batch_size 64"),
        ({}, {}, (), "trial t_9"),
    ],
)
def test_child_run_name(
    tags: dict[str, str], config: dict[str, Any], keys: tuple[str, ...], name: str
) -> None:
    assert run_values.child_run_name(tags, config, keys, "t_9") == name
