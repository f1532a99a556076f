"""The Ray Tune function trainable: the only place a trial touches Ray.

``train_trial(config, data)`` is what the driver hands to ``tune.Tuner`` (wrapped with
``tune.with_parameters(train_trial, data=splits)`` so the splits travel once through the object
store, and ``tune.with_resources``). It turns the plain config into a :class:`TrialConfig`, picks
the device from the resources Ray assigned, restores from ``tune.get_checkpoint()`` when Ray
restarts the trial, and reports each epoch with ``tune.report(metrics, checkpoint=...)``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainables.checkpoint import STATE_FILE, CheckpointError, load_state, save_state
from trainables.config import TrialConfig
from trainables.data import DataSplits, load_splits
from trainables.device import select_device
from trainables.loop import train


class TuneReporter:
    """Reporter backed by Tune's session: checkpoints go through Ray's storage."""

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        try:
            with checkpoint.as_directory() as directory:
                return load_state(directory)
        except CheckpointError as exc:
            # Never fall back to a fresh start reported as a resume: fail, and say what is left.
            raise CheckpointError(f"{exc}{older_checkpoints_note(checkpoint.path)}") from None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="plateau-sweep-ckpt-") as directory:
            save_state(state, directory)
            # tune.report persists the folder to the run's storage before it returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def older_checkpoints_note(path: str) -> str:
    """The older checkpoints Ray still keeps next to a damaged one (local storage only)."""
    here = Path(path)
    if not here.name.startswith("checkpoint_") or not here.parent.is_dir():
        return ""
    older = sorted(
        p.name
        for p in here.parent.glob("checkpoint_*")
        if p.is_dir() and p.name < here.name and (p / STATE_FILE).is_file()
    )
    if not older:
        return "; Ray keeps no older checkpoint of this trial"
    return f"; Ray still keeps the older {', '.join(older)} of this trial in {here.parent}"


def assigned_resources() -> tuple[float, float]:
    """(cpus, gpus) Ray assigned to this trial."""
    resources = tune.get_context().get_trial_resources().required_resources
    return float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))


def train_trial(config: dict[str, Any], data: DataSplits | None = None) -> None:
    cfg = TrialConfig.from_dict(config)
    cpus, gpus = assigned_resources()
    setup = select_device(cfg.device, gpus_assigned=gpus, cpus_assigned=cpus)
    if data is None:  # not shipped by the driver: load it here (single-trial use)
        data = load_splits(
            cfg.data_dir,
            val_fraction=cfg.val_fraction,
            split_seed=cfg.split_seed,
            train_subset=cfg.train_subset,
            val_subset=cfg.val_subset,
            test_subset=cfg.test_subset,
        )
    node_id = ray.get_runtime_context().get_node_id()
    train(cfg, data, TuneReporter(), setup, node_id=node_id)
