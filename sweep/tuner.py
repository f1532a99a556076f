"""Ray Tune wiring: a validated :class:`SweepSpec` in, a finished ``tune.ResultGrid`` out.

Ray 2.60 APIs only: everything comes from ``ray.tune`` (``tune.RunConfig``,
``tune.CheckpointConfig``, ``tune.FailureConfig``, ``tune.report`` inside the trial).
The caller (``sweep.cli``) has already validated everything and called ``ray.init``.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.spec import ARM_KEY, SweepSpec
from trainables import results as R

if TYPE_CHECKING:
    from ray import tune

    from trainables.data import DataSplits

#: Tune's "this experiment can be restored" marker file (``ray.tune.impl.tuner_internal``).
_TUNER_PKL = "tuner.pkl"


def is_uri(path: str) -> bool:
    return "://" in path


def resolve_storage(storage_path: str, cwd: Path | None = None) -> str:
    """Local paths become absolute (Ray needs that); URIs pass through unchanged."""
    if is_uri(storage_path):
        return storage_path
    path = Path(storage_path).expanduser()
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    return str(Path(os.path.normpath(path)))


def experiment_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}" if is_uri(storage) else str(Path(storage) / name)


def sweep_exists(storage: str, name: str) -> bool:
    """Whether ``storage/name`` holds a Tune experiment that can be restored."""
    path = experiment_path(storage, name)
    # Cheap local answer first: no marker file, no sweep (and no need to import Ray at all).
    if not is_uri(storage) and not (Path(path) / _TUNER_PKL).is_file():
        return False
    from ray import tune

    return bool(tune.Tuner.can_restore(path))


def make_trainable(spec: SweepSpec, splits: DataSplits, *, quiet: bool = True) -> Any:
    from ray import tune

    from trainables.tune_entry import train_trial

    # with_parameters puts the splits in the object store once; every trial gets a reference.
    trainable = tune.with_parameters(
        train_trial, data=splits, keep=spec.checkpoint_num_to_keep, quiet=quiet
    )
    return tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def make_scheduler(spec: SweepSpec) -> Any:
    if spec.scheduler.name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # metric/mode come from TuneConfig (val_acc, max); max_t = the full run.
        return ASHAScheduler(
            # The epoch, not Tune's training_iteration: a trial restored from a checkpoint
            # newer than Tune's saved state counts its iterations from the older one.
            time_attr=R.EPOCH,
            max_t=spec.epochs,
            grace_period=spec.scheduler.grace_period,
            reduction_factor=spec.scheduler.reduction_factor,
        )
    return None  # FIFO


def make_reporter(spec: SweepSpec | None = None, results_dir: str = "") -> tune.CLIReporter:
    from sweep.terminal import StatusTable

    parameters = {ARM_KEY: "policy", "seed": "seed"}
    for dim in spec.search_space.dims if spec is not None else ():
        parameters[dim.key] = f"cfg:{dim.key}"  # "lr" alone would clash with the lr metric

    return StatusTable(
        results_dir=results_dir,
        metric_columns={
            "epoch": "epoch",
            "val_acc": "val_acc",
            "val_loss": "val_loss",
            "lr": "lr",
            "range_tests": "range_tests",
        },
        parameter_columns=parameters,
        max_report_frequency=15,
        max_column_length=24,  # room for "range_test_on_plateau"
        sort_by_metric=False,
    )


def make_run_config(
    spec: SweepSpec, storage: str, tracker: Any, *, verbose: bool = False
) -> tune.RunConfig:
    from ray import tune

    from sweep.retries import NoRetryOnDeterministicFailure
    from sweep.terminal import EventLines

    return tune.RunConfig(
        name=spec.name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        # Tune keeps every checkpoint it registered; the trial itself prunes all but its
        # newest checkpoint_num_to_keep (see trainables.tune_entry), so a checkpoint pruned
        # while Tune's saved state lagged behind is never deleted twice (an ERROR in Ray).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        callbacks=[
            NoRetryOnDeterministicFailure(),
            EventLines(),
            *([tracker] if tracker is not None else []),
        ],
        progress_reporter=make_reporter(spec, experiment_path(storage, spec.name)),
        # The status table only (per-result lines would drown it), unless --verbose.
        verbose=3 if verbose else 1,
    )


def run_sweep(
    spec: SweepSpec,
    *,
    splits: DataSplits,
    tracker: Any,
    resume: bool,
    storage: str | None = None,
    verbose: bool = False,
) -> tune.ResultGrid:
    """Run (or, with ``resume``, continue) the sweep; Ray must be initialised already.
    ``verbose``: Ray's and Tune's own output as they print it (otherwise :mod:`sweep.terminal`
    keeps the terminal to the status table and the project's one-line events)."""
    from ray import tune

    # The legacy output engine is the one that honours a custom CLIReporter (Ray 2.60 ignores
    # progress_reporter otherwise); a user who prefers the new engine can set it to 1.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Short epochs (the smoke test) checkpoint more often than every 5 s; Tune's warning about
    # the resulting experiment snapshots is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    storage = storage or resolve_storage(spec.storage_path)
    trainable = make_trainable(spec, splits, quiet=not verbose)
    run_config = make_run_config(spec, storage, tracker, verbose=verbose)

    if resume:
        path = experiment_path(storage, spec.name)
        # Finished trials stay finished; unfinished and errored ones continue from their
        # latest checkpoint.
        # The param_space again: Tune saved its tune.sample_from entries as placeholders, and
        # trials it had not created yet would get the placeholders instead of values.
        tuner = tune.Tuner.restore(
            path,
            trainable=trainable,
            param_space=spec.param_space(),
            resume_unfinished=True,
            resume_errored=True,
        )
        _replace_run_callbacks(tuner, run_config)
        return tuner.fit()

    tuner = tune.Tuner(
        trainable,
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            scheduler=make_scheduler(spec),
            num_samples=spec.search_space.num_samples,
            max_concurrent_trials=spec.max_concurrent_trials,
            # Deliberate: a fresh worker process per trial, so torch's thread settings, RNG
            # state and allocator caches never leak from one trial into the next.
            reuse_actors=False,
        ),
        run_config=run_config,
    )
    return tuner.fit()


class InterruptWatch:
    """Tells whether Ctrl+C (SIGINT) ended a ``tuner.fit()`` early.

    Tune catches the first SIGINT itself, saves the experiment and returns normally, marking
    running trials TERMINATED -- so the ResultGrid cannot tell. Tune's handler re-installs the
    handler it found when it fires; this watch installs its own first and checks afterwards
    whether it is back in place.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Any = None
        self._active = threading.current_thread() is threading.main_thread()

    def _handler(self, signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __enter__(self) -> InterruptWatch:
        if self._active:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self.interrupted = signal.getsignal(signal.SIGINT) == self._handler
            signal.signal(signal.SIGINT, self._previous)


def _replace_run_callbacks(tuner: Any, run_config: Any) -> None:
    """A restored Tuner unpickles the *old* RunConfig, callbacks included; install this run's
    tracker (built with resume=True) and reporter instead."""
    local = getattr(tuner, "_local_tuner", None)
    if local is not None:
        restored = local.get_run_config()
        restored.callbacks = run_config.callbacks
        restored.progress_reporter = run_config.progress_reporter
        restored.verbose = run_config.verbose
        return
    remote = getattr(tuner, "_remote_tuner", None)
    if remote is not None:  # Ray client (ray://): the tuner lives on the cluster
        import ray

        restored = ray.get(remote.get_run_config.remote())
        restored.callbacks = run_config.callbacks
        restored.progress_reporter = run_config.progress_reporter
        restored.verbose = run_config.verbose
        ray.get(remote.set_run_config_and_remote_string_queue.remote(restored, None))
