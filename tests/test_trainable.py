"""The CIFAR-10 trainable on real data: every policy through Ray Tune, range tests, exact resume.

Needs the real CIFAR-10 at ../shared/data/cifar-10-batches-py (the ``real_cifar_dir`` fixture
skips otherwise). Data sizes are a few hundred images so each run takes seconds on 2 cores.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from trainables import results as R
from trainables.config import TrialConfig
from trainables.data import DataSplits, load_splits
from trainables.device import select_device
from trainables.loop import NonFiniteLossError, train

pytestmark = pytest.mark.realdata

POLICIES: dict[str, dict[str, Any]] = {
    "constant": {},
    "cyclical": {"mode": "triangular2", "max_lr": 3e-3, "step_size_epochs": 1},
    "reduce_on_plateau": {"patience": 0, "factor": 0.5, "threshold": 0.5},
    "range_test_on_plateau": {
        "patience": 0,
        "cooldown": 0,
        "threshold": 0.5,
        "min_lr": 1e-5,
        "max_lr": 1.0,
    },
}


@pytest.fixture(scope="module")
def splits(real_cifar_dir: Path) -> DataSplits:
    return load_splits(real_cifar_dir, train_subset=800, val_subset=400, test_subset=400)


class ListReporter:
    """In-memory reporter: keeps every report and, optionally, every checkpointed state."""

    def __init__(self, resume_from: dict[str, Any] | None = None) -> None:
        self.reports: list[dict[str, Any]] = []
        self.states: dict[int, dict[str, Any]] = {}
        self.resume_from = resume_from

    def restore(self) -> dict[str, Any] | None:
        return self.resume_from

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.reports.append(metrics)
        if state is not None:
            import copy

            self.states[metrics[R.EPOCH]] = copy.deepcopy(state)


def config(policy: str, **overrides: Any) -> TrialConfig:
    base: dict[str, Any] = {
        "policy": policy,
        "policy_params": POLICIES[policy],
        "epochs": 3,
        "batch_size": 32,
        "seed": 7,
        "lr": 1e-3,
    }
    base.update(overrides)
    return TrialConfig.model_validate(base)


COMPARED = (R.TRAIN_LOSS, R.TRAIN_ACC, R.VAL_LOSS, R.VAL_ACC, R.LR, R.IMAGES_SEEN, R.RANGE_TESTS)


def test_range_test_fires_and_sets_the_chosen_lr(splits: DataSplits) -> None:
    rep = ListReporter()
    train(config("range_test_on_plateau", epochs=3), splits, rep, select_device("cpu"))
    events = [e for m in rep.reports for e in json.loads(m[R.POLICY_EVENTS])]
    assert events, "patience 0 must trigger a range test"
    first = events[0]
    assert first["kind"] == "range_test" and len(first["lrs"]) >= 10
    assert first["lrs"] == sorted(first["lrs"]) and first["lrs"][0] == pytest.approx(1e-5)
    epoch_of_first = first["epoch"]
    reported = next(m for m in rep.reports if m[R.EPOCH] == epoch_of_first)
    assert reported[R.LR] == pytest.approx(first["new_lr"])
    assert first["new_lr"] != pytest.approx(first["old_lr"])
    assert reported[R.RANGE_TESTS] >= 1
    # range-test images are counted in images_seen
    assert reported[R.RANGE_TEST_IMAGES] == sum(
        e["images"] for m in rep.reports[:epoch_of_first] for e in json.loads(m[R.POLICY_EVENTS])
    )
    assert (
        reported[R.IMAGES_SEEN] == epoch_of_first * (800 // 32) * 32 + reported[R.RANGE_TEST_IMAGES]
    )


def _timeless(events_json: str) -> list[dict[str, Any]]:
    """Events without their wall-clock fields (seconds, and the reason text that quotes them)."""
    return [
        {k: v for k, v in e.items() if k not in ("seconds", "reason")}
        for e in json.loads(events_json)
    ]


@pytest.mark.parametrize("policy", ["range_test_on_plateau", "cyclical"])
def test_resume_from_checkpoint_is_exact(splits: DataSplits, policy: str) -> None:
    """A trial restored after epoch 2 repeats epochs 3.. bit for bit (outside Ray)."""
    setup = select_device("cpu")
    full = ListReporter()
    train(config(policy, epochs=4), splits, full, setup)
    resumed = ListReporter(resume_from=full.states[2])
    train(config(policy, epochs=4), splits, resumed, setup)
    assert [m[R.EPOCH] for m in resumed.reports] == [3, 4]
    for a, b in zip(full.reports[2:], resumed.reports, strict=True):
        for key in COMPARED:
            assert a[key] == b[key], (key, a[key], b[key])
        assert _timeless(a[R.POLICY_EVENTS]) == _timeless(b[R.POLICY_EVENTS])
    assert full.reports[-1][R.TEST_ACC] == resumed.reports[-1][R.TEST_ACC]


def test_nonfinite_training_loss_fails_the_trial(splits: DataSplits) -> None:
    cfg = config("constant", lr=1e4, epochs=2, optimizer="sgd", momentum=0.9)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        train(cfg, splits, ListReporter(), select_device("cpu"))


# -- through Ray Tune --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _tuner(
    tmp_path: Path,
    splits: DataSplits,
    trainable: Any,
    param_space: dict[str, Any],
    max_failures: int = 0,
):
    from ray import tune

    return tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, data=splits), {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=False),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "ray_results"),
            name="t",
            failure_config=tune.FailureConfig(max_failures=max_failures),
            verbose=0,
        ),
    )


@pytest.mark.ray
@pytest.mark.slow
def test_every_policy_learns_through_ray_tune(
    ray_local: Any, splits: DataSplits, tmp_path: Path
) -> None:
    from ray import tune

    from trainables.tune_entry import train_trial

    space = {
        "policy": tune.grid_search(list(POLICIES)),
        "policy_params": tune.sample_from(lambda spec: POLICIES[spec.config.policy]),
        "epochs": 3,
        "batch_size": 32,
        "seed": 0,
    }
    grid = _tuner(tmp_path, splits, train_trial, space).fit()
    assert not grid.errors
    by_policy = {r.config["policy"]: r for r in grid}
    assert set(by_policy) == set(POLICIES)
    for policy, result in by_policy.items():
        metrics = result.metrics
        assert metrics[R.EPOCH] == 3
        assert metrics[R.VAL_ACC] > 0.20, (policy, metrics[R.VAL_ACC])
        assert math.isfinite(metrics[R.TEST_ACC])
        assert result.checkpoint is not None
    events = json.loads(
        by_policy["range_test_on_plateau"].metrics_dataframe[R.POLICY_EVENTS].iloc[0]
    )
    assert by_policy["range_test_on_plateau"].metrics[R.RANGE_TESTS] >= 1 or events


def flaky_trial(config: dict[str, Any], data: DataSplits | None = None) -> None:
    """train_trial that crashes right after reporting epoch 2, on its first attempt only."""
    from trainables import tune_entry

    marker = Path(config.pop("_marker"))
    if not marker.exists():
        real_report = tune_entry.TuneReporter.report

        def report(self: Any, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
            real_report(self, metrics, state)
            if metrics[R.EPOCH] == 2:
                marker.write_text("crashed once")
                raise RuntimeError("injected crash after epoch 2")

        tune_entry.TuneReporter.report = report  # type: ignore[method-assign]
    else:  # the retry: it must start from the checkpoint, not from scratch
        from ray import tune

        marker.with_suffix(".retry").write_text(str(tune.get_checkpoint() is not None))
    tune_entry.train_trial(config, data)


@pytest.mark.ray
@pytest.mark.slow
def test_resume_through_ray_checkpoint_restore_is_exact(
    ray_local: Any, splits: DataSplits, tmp_path: Path
) -> None:
    from ray import cloudpickle

    from trainables.tune_entry import train_trial

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    base = {
        "policy": "range_test_on_plateau",
        "policy_params": POLICIES["range_test_on_plateau"],
        "epochs": 4,
        "batch_size": 32,
        "seed": 3,
    }
    clean = _tuner(tmp_path / "clean", splits, train_trial, dict(base)).fit()
    marker = tmp_path / "crashed"
    crashed = _tuner(
        tmp_path / "crash", splits, flaky_trial, {**base, "_marker": str(marker)}, max_failures=1
    ).fit()
    assert marker.exists(), "the injected crash did not happen"
    assert marker.with_suffix(".retry").read_text() == "True", "retry did not get the checkpoint"
    assert not clean.errors and not crashed.errors
    a = clean[0].metrics_dataframe.set_index(R.EPOCH)
    rows = crashed[0].metrics_dataframe
    # Depending on how Ray rewrote result.json on restore, the frame holds epochs 1..4 or only
    # the restored attempt's 3..4; either way the second attempt must not start again at epoch 1.
    assert list(rows[R.EPOCH])[-2:] == [3, 4], list(rows[R.EPOCH])
    assert list(rows[R.EPOCH]).count(1) <= 1
    b = rows.drop_duplicates(R.EPOCH, keep="last").set_index(R.EPOCH)
    for key in COMPARED:
        assert list(a.loc[b.index, key]) == list(b[key]), key
    assert clean[0].metrics[R.TEST_ACC] == crashed[0].metrics[R.TEST_ACC]


@pytest.mark.parametrize(
    ("raised", "printed"),
    [("SystemExit(1)", False), ("KeyboardInterrupt()", False), ("ValueError(7)", True)],
)
def test_quiet_trial_drops_the_exit_traceback_of_its_worker(raised: str, printed: bool) -> None:
    """Ray ends a trial's worker with SystemExit; landing in a weakref callback, Python printed
    it as an ignored exception with a traceback. A quiet trial drops that one only."""
    import subprocess

    code = (
        "import sys, weakref\n"
        "from trainables.tune_entry import quiet_exit_hook\n"
        "sys.unraisablehook = quiet_exit_hook\n"
        "class A: pass\n"
        "a = A()\n"
        f"def callback(ref): raise {raised}\n"
        "r = weakref.ref(a, callback)\n"
        "del a\n"
        "print('went on')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and proc.stdout == "went on\n", proc.stderr
    assert ("Traceback" in proc.stderr) is printed, proc.stderr
