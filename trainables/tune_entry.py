"""The Ray Tune function trainable: the only place a trial touches Ray.

``train_trial(config, data)`` is what the driver hands to ``tune.Tuner`` (wrapped with
``tune.with_parameters(train_trial, data=splits)`` so the splits travel once through the object
store, and ``tune.with_resources``). It turns the plain config into a :class:`TrialConfig`, picks
the device from the resources Ray assigned, restores from the newest checkpoint of the trial that
loads, and reports each epoch with ``tune.report(metrics, checkpoint=...)``.

Checkpoints are listed from the trial's own folder in the run's storage, not taken from Tune's
bookkeeping: Tune saves its experiment state every few seconds, so after a driver crash it may
point at an older checkpoint than the newest one written (or at one already pruned). The trial
also prunes its own old checkpoints (``keep``), so Tune never deletes one that is already gone;
a pruned folder is emptied, not removed, so that Ray can still restore from it by name. A
checkpoint waits on the worker's disk in :mod:`trainables.staging`, whose leftovers from killed
trial processes each trial's start removes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs
import ray
from ray import tune

from trainables import results as R
from trainables import staging
from trainables.checkpoint import CheckpointError, load_state, save_state
from trainables.config import TrialConfig
from trainables.data import DataSplits, load_options
from trainables.device import select_device
from trainables.loop import NonFiniteLossError, train

_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d{6,})$")
PRUNED = ".pruned"
"""Left in the emptied folder of a pruned checkpoint: Tune's saved state may still name that
folder (it lags behind the trial), and Ray refuses to restore a trial from a checkpoint folder
that no longer exists, before this module's restore could take the newest one that loads."""


@dataclass(frozen=True)
class StoredCheckpoint:
    index: int
    path: str  # in the storage filesystem

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]


def list_checkpoints(fs: pyarrow.fs.FileSystem, trial_path: str) -> list[StoredCheckpoint]:
    """The ``checkpoint_NNNNNN`` folders of a trial, newest (highest index) first; pruned
    ones (emptied, marked ``PRUNED``) are not checkpoints any more. One listing of the trial's
    folder, however many checkpoints were pruned (a request each on remote storage)."""
    selector = pyarrow.fs.FileSelector(trial_path, allow_not_found=True, recursive=True)
    infos = fs.get_file_info(selector)
    pruned = {i.path.rsplit("/", 1)[0] for i in infos if i.base_name == PRUNED}
    top = trial_path.rstrip("/")
    found = []
    for info in infos:
        match = _CHECKPOINT_DIR.match(info.base_name)
        if (
            match
            and info.type == pyarrow.fs.FileType.Directory
            and info.path.rsplit("/", 1)[0] == top
            and info.path not in pruned
        ):
            found.append(StoredCheckpoint(int(match.group(1)), info.path))
    return sorted(found, key=lambda c: c.index, reverse=True)


@dataclass
class TuneReporter:
    """Reporter backed by Tune's session: checkpoints go through Ray's storage.

    ``keep``: how many of the newest checkpoints the trial keeps (None: all).
    """

    keep: int | None = None
    #: Checkpoints that failed to load on restore (name -> why); pruned at the next report.
    skipped: dict[str, str] = field(default_factory=dict)
    _notes: dict[str, Any] = field(default_factory=dict)

    def _storage(self) -> Any:
        from ray.train._internal.session import get_storage

        return get_storage()

    def restore(self) -> dict[str, Any] | None:
        """The state of the newest checkpoint of this trial that loads; None for a fresh start.

        Damaged checkpoints (corrupt, truncated, half written) are skipped and named in the
        next report (the driver records the fallback). Raises CheckpointError naming every
        checkpoint tried when none loads -- never a fresh start reported as a resume.
        """
        storage = self._storage()
        fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
        stored = list_checkpoints(fs, trial_path)
        if not stored:
            known = tune.get_checkpoint()
            if known is not None:
                raise CheckpointError(
                    f"checkpoint {known.path} is gone and the trial folder {trial_path} holds "
                    "no other checkpoint"
                )
            return None
        # New checkpoints go after every existing one, whatever Tune's (possibly older) count.
        storage.current_checkpoint_index = stored[0].index + 1
        for checkpoint in stored:
            try:
                with tune.Checkpoint(checkpoint.path, filesystem=fs).as_directory() as folder:
                    state = load_state(folder)
            except (CheckpointError, OSError) as exc:
                why = str(exc)
                self.skipped[checkpoint.path] = (
                    why if checkpoint.name in why else f"{checkpoint.path}: {why}"
                )
                continue
            if self.skipped:
                self._notes[R.CHECKPOINT_FALLBACK] = json.dumps(
                    {
                        "restored": checkpoint.name,
                        "skipped": {p.rsplit("/", 1)[-1]: why for p, why in self.skipped.items()},
                    }
                )
            return state
        tried = "; ".join(self.skipped.values())
        raise CheckpointError(f"no checkpoint of this trial loads ({len(stored)} tried): {tried}")

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if self._notes:
            metrics = {**metrics, **self._notes}
            self._notes = {}
        if state is None:
            tune.report(metrics)
            return
        with staging.staged_checkpoint() as directory:
            save_state(state, directory)
            # tune.report persists the folder to the run's storage before it returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        self._prune()

    def _prune(self) -> None:
        """Empty the checkpoints beyond the newest ``keep``, and the damaged ones skipped; each
        folder stays, marked ``PRUNED`` (killed in between, an empty folder reads as damaged)."""
        storage = self._storage()
        fs = storage.storage_filesystem
        stored = list_checkpoints(fs, storage.trial_fs_path)
        good = [c for c in stored if c.path not in self.skipped]
        doomed = [c for c in stored if c.path in self.skipped]
        if self.keep is not None:
            doomed += good[self.keep :]
        for checkpoint in doomed:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_dir_contents(checkpoint.path)
                with fs.open_output_stream(f"{checkpoint.path}/{PRUNED}") as marker:
                    marker.write(b"pruned; Tune's saved state may still name this folder\n")
        self.skipped = {}

    def fail_without_retry(self, exc: NonFiniteLossError) -> None:
        """Tell the driver this failure is deterministic: retrying would fail the same way."""
        tune.report({R.EPOCH: exc.epoch, R.VAL_ACC: math.nan, R.NO_RETRY: str(exc)})


def assigned_resources() -> tuple[float, float]:
    """(cpus, gpus) Ray assigned to this trial."""
    resources = tune.get_context().get_trial_resources().required_resources
    return float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))


def quiet_exit_hook(unraisable: Any) -> None:
    """``sys.unraisablehook`` of a quiet trial: Ray ends a finished trial's worker by raising
    SystemExit in it, and when that lands inside a weakref callback Python prints it as an
    ignored exception with a traceback, at every worker's exit by chance; a Ctrl-C of the driver
    reaches the workers as KeyboardInterrupt the same way. Those two are dropped; every other
    unraisable exception is printed as usual."""
    if isinstance(unraisable.exc_value, (SystemExit, KeyboardInterrupt)):
        return
    sys.__unraisablehook__(unraisable)


def train_trial(
    config: dict[str, Any],
    data: DataSplits | None = None,
    keep: int | None = None,
    quiet: bool = False,
) -> None:
    """The function Ray runs for each trial of a sweep.

    ``config`` is the plain dump of a TrialConfig the driver validated (plus the values Tune
    sampled from validated ranges): rebuilt as it is, not checked again. ``data``: the splits
    the driver shipped; ``keep``: how many of its newest checkpoints the trial keeps;
    ``quiet``: no line per checkpoint from Ray (the driver shows the epochs in its table).
    """
    if quiet:
        logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
        sys.unraisablehook = quiet_exit_hook
    cfg = TrialConfig.trusted(config)
    staging.remove_orphans()  # checkpoints left on this node by killed trial processes
    cpus, gpus = assigned_resources()
    setup = select_device(cfg.device, gpus_assigned=gpus, cpus_assigned=cpus)
    if data is None:  # not shipped by the driver: load it here
        data = load_options(cfg.data)
    node_id = ray.get_runtime_context().get_node_id()
    reporter = TuneReporter(keep=keep)
    try:
        train(cfg, data, reporter, setup, node_id=node_id)
    except NonFiniteLossError as exc:
        reporter.fail_without_retry(exc)
        raise
    finally:
        staging.release()  # not left to the process's exit, which Ray may cut short
