"""Regression tests for bugs fixed in sweep/: each runs in-process, in seconds.

(a) a driver error or Ctrl-C ends the parent run FAILED/KILLED instead of leaving it RUNNING;
(b) a GPU spec on a joined cluster without GPUs (yet) warns, only the local machine refuses;
(c) range-test plots are drawn off Tune's driver loop (they took ~1 s per result);
(d) after an interrupt, unfinished trials' child runs are KILLED, not FINISHED, and --resume
    continues them to FINISHED without duplicates;
(e) compare groups by policy label plus the search-space values of a run.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from helpers import StubTrial, config, make_tracker, new_store, range_event, result
from mlflow import MlflowClient

from sweep import cli, preflight
from sweep.errors import SweepError
from sweep.store import TAG_ERROR, TAG_PARENT_RUN_ID
from sweep.tracking import MLflowTracker

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def uri(tmp_path: Path, empty_store: Path) -> str:
    return new_store(empty_store, tmp_path)


def _children(client: MlflowClient, tracker: MLflowTracker) -> list[Any]:
    assert tracker.experiment_id is not None
    return client.search_runs(
        [tracker.experiment_id], f"tags.`{TAG_PARENT_RUN_ID}` = '{tracker.parent_run_id}'"
    )


def _statuses(client: MlflowClient, tracker: MLflowTracker) -> dict[str, str]:
    runs = _children(client, tracker)
    return {c.data.tags["plateau_sweep.trial_id"]: c.info.status for c in runs}


# -- (a) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "status"),
    [(RuntimeError("tuner blew up"), "FAILED"), (KeyboardInterrupt(), "KILLED")],
    ids=["error", "ctrl-c"],
)
def test_driver_error_closes_the_parent_run(
    exc: BaseException,
    status: str,
    uri: str,
    tmp_path: Path,
    tiny_cifar_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run command itself (Ray replaced by stubs): run_sweep raises after the tracker set up."""
    from sweep import run_command, tuner

    seen: dict[str, MLflowTracker] = {}

    def failing_run_sweep(spec: Any, *, tracker: MLflowTracker, **kw: Any) -> Any:
        tracker.setup()
        trial = StubTrial("t_1", config(), status="RUNNING")
        tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
        seen["tracker"] = tracker
        raise exc

    monkeypatch.setattr(tuner, "run_sweep", failing_run_sweep)
    monkeypatch.setattr(run_command, "init_ray", lambda address: None)
    monkeypatch.setattr(run_command, "check_cluster_resources", lambda spec, cluster=False: None)
    # bind_ray_to_loopback changes Ray's process-wide node-IP rule, which would outlive this
    # test (a later in-process Ray cluster would bind to loopback, its drivers would not).
    monkeypatch.setattr(run_command, "bind_ray_to_loopback", lambda: None)
    raw = yaml.safe_load((REPO / "sweep" / "specs" / "smoke.yaml").read_text())
    raw["data"].update(train_subset=60, val_subset=20, test_subset=20)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--spec", str(spec), "--data-dir", str(tiny_cifar_dir)]
    argv += ["--tracking-uri", uri, "--storage-path", str(tmp_path / "results")]
    if isinstance(exc, KeyboardInterrupt):
        assert cli.main(argv) == 130
    else:
        with pytest.raises(RuntimeError, match="tuner blew up"):
            cli.main(argv)
    tracker = seen["tracker"]
    client = MlflowClient(tracking_uri=uri)
    assert tracker.parent_run_id is not None
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == status
    if status == "FAILED":
        assert "tuner blew up" in parent.data.tags[TAG_ERROR]
    assert [c.info.status for c in _children(client, tracker)] == ["KILLED"]


# -- (b) ----------------------------------------------------------------------------------------
def test_gpu_spec_on_a_cluster_without_gpus_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    spec = SimpleNamespace(resources=SimpleNamespace(cpu=1, gpu=1))
    preflight.check_cluster_resources(spec, cluster=True)  # the autoscaler may add GPU nodes
    assert "autoscaler" in capsys.readouterr().err
    with pytest.raises(SweepError, match=r"resources\.gpu: 1 GPUs per trial but the Ray cluster"):
        preflight.check_cluster_resources(spec, cluster=False)
    spec.resources.cpu = 16  # CPUs are never waited for
    with pytest.raises(SweepError, match=r"resources\.cpu"):
        preflight.check_cluster_resources(spec, cluster=True)


# -- (c) ----------------------------------------------------------------------------------------
def test_range_test_plot_is_drawn_off_the_driver_loop(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweep import plots

    threads: list[str] = []
    real = plots.plot_range_test

    def spy(event: Any, path: Path, **kw: Any) -> Path:
        threads.append(threading.current_thread().name)
        return real(event, path, **kw)

    monkeypatch.setattr(plots, "plot_range_test", spy)
    tracker = make_tracker(uri)
    tracker.setup()
    trial = StubTrial("t_1", config(epochs=2), status="RUNNING")
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    tracker.on_trial_result(0, [trial], trial, result(1, events=[range_event(1)]))
    tracker.on_trial_result(0, [trial], trial, result(2, test_acc=0.5, test_loss=1.0))
    tracker.on_trial_complete(0, [trial], trial)
    trial.status = "TERMINATED"
    tracker.on_experiment_end([trial])  # waits for the plots
    assert threads and all(t.startswith("plateau_sweep_plots") for t in threads)
    client = MlflowClient(tracking_uri=uri)
    names = {f.path for f in client.list_artifacts(tracker.child_run_id("t_1") or "", "events")}
    assert names == {"events/epoch_001_range_test.json", "events/epoch_001_range_test.png"}


# -- (d) ----------------------------------------------------------------------------------------
def _run(tracker: MLflowTracker, trial: StubTrial, epochs: range, *, complete: bool) -> None:
    trial.status = "RUNNING"
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for e in epochs:
        extra = {"test_acc": 0.5, "test_loss": 1.0} if e == trial.config["epochs"] else {}
        tracker.on_trial_result(0, [trial], trial, result(e, **extra))
    if complete:
        tracker.on_trial_complete(0, [trial], trial)
    trial.status = "TERMINATED"  # what Tune's cleanup sets on Ctrl-C too


def test_interrupted_trials_are_killed_then_resumed_to_finished(uri: str) -> None:
    client = MlflowClient(tracking_uri=uri)
    tracker = make_tracker(uri)
    tracker.setup()
    done = StubTrial("done", config(seed=0, epochs=2))
    cut = StubTrial("cut", config(seed=1, epochs=2))
    _run(tracker, done, range(1, 3), complete=True)
    _run(tracker, cut, range(1, 2), complete=False)  # Ctrl-C during epoch 2
    tracker.on_experiment_end([done, cut])
    status = {
        c.data.tags["plateau_sweep.trial_id"]: c.info.status for c in _children(client, tracker)
    }
    assert status == {"done": "FINISHED", "cut": "KILLED"}
    assert client.get_run(tracker.parent_run_id or "").info.status == "KILLED"

    resumed = make_tracker(uri, resume=True)
    resumed.setup()
    assert resumed.parent_run_id == tracker.parent_run_id
    _run(resumed, cut, range(2, 3), complete=True)  # "done" is skipped by Tune on resume
    resumed.on_experiment_end([done, cut])
    status = {
        c.data.tags["plateau_sweep.trial_id"]: c.info.status for c in _children(client, tracker)
    }
    assert status == {"done": "FINISHED", "cut": "FINISHED"}  # the same two runs, no duplicate
    assert client.get_run(tracker.parent_run_id or "").info.status == "FINISHED"


# -- (e) ----------------------------------------------------------------------------------------
def test_compare_keeps_search_space_values_apart(uri: str, tmp_path: Path) -> None:
    from sweep.compare import compare_sweep

    tracker = make_tracker(uri)
    tracker.setup()
    trials = []
    for i, (lr, seed) in enumerate([(0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)]):
        trial = StubTrial(f"t{i}", {**config("constant", seed=seed, epochs=1), "lr": lr})
        _run(tracker, trial, range(1, 2), complete=True)
        trials.append(trial)
    tracker.on_experiment_end(trials)
    comparison = compare_sweep(uri, "demo", out_dir=tmp_path / "cmp", log_to_parent=False)
    rows = {r.policy: r.n for r in comparison.rows}
    assert rows == {"constant-label [lr=0.01]": 2, "constant-label [lr=0.1]": 2}
