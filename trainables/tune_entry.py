"""The Ray Tune function trainable: the only place a trial touches Ray.

``train_trial(config, data)`` is what the driver hands to ``tune.Tuner`` (wrapped with
``tune.with_parameters(train_trial, data=splits)`` so the splits travel once through the object
store, and ``tune.with_resources``). It turns the plain config into a :class:`TrialConfig`, picks
the device from the resources Ray assigned, restores from ``tune.get_checkpoint()`` when Ray
restarts the trial, and reports each epoch with ``tune.report(metrics, checkpoint=...)``.
"""

from __future__ import annotations

import tempfile
from typing import Any

import ray
from ray import tune

from trainables.checkpoint import load_state, save_state
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
        with checkpoint.as_directory() as directory:
            return load_state(directory)

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="plateau-sweep-ckpt-") as directory:
            save_state(state, directory)
            # tune.report persists the folder to the run's storage before it returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


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
