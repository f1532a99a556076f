"""The training loop of one trial, independent of Ray.

:func:`train` runs a :class:`TrialConfig` on a :class:`DataSplits`, asks a :class:`Reporter`
for a checkpoint to resume from, and hands it one report per epoch (metrics plus the state to
checkpoint). The Ray Tune adapter (``trainables.tune_entry``) and the command-line runner
(``python -m trainables``) are the two reporters.

Determinism: model init comes from ``seed``; each epoch's shuffle and augmentation come from a
generator keyed by (seed, epoch), and each range test's batches from one keyed by (seed, epoch,
test index). So the position in the data stream is fixed by the epoch alone, a range test never
advances the epoch's stream, and a trial resumed after epoch k repeats epochs k+1.. exactly.

:meth:`Trial.train_step` is the one optimizer step every training path takes: the epoch loop
(at the policy's LR) and :meth:`Trial.train_steps` (N steps at a fixed LR from the current
state, for benchmarks such as ``benchmarks/oracle.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables import results as R
from trainables.augment import BatchPipeline
from trainables.cifar_files import NUM_CLASSES
from trainables.config import TrialConfig
from trainables.data import DataSplits
from trainables.device import DeviceSetup
from trainables.lr import POLICIES, LRPolicy, RangeTestResult, run_range_test
from trainables.lr.plateau import chance_level
from trainables.lr.range_test import NORM_SETTLE_BATCHES
from trainables.models import build_model
from trainables.rng import capture_rng, restore_rng

EVAL_BATCH = 500


class NonFiniteLossError(RuntimeError):
    """Training produced a non-finite loss: the trial fails instead of reporting NaNs.

    From the same state and data order it would fail the same way again (``epoch`` says
    where), so the trial is not worth retrying.
    """

    def __init__(self, message: str, *, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch

    def __reduce__(self) -> tuple[Any, ...]:  # Ray pickles it back to the driver
        return (_non_finite, (str(self), self.epoch))


def _non_finite(message: str, epoch: int) -> NonFiniteLossError:
    return NonFiniteLossError(message, epoch=epoch)


class Reporter(Protocol):
    def restore(self) -> dict[str, Any] | None:
        """The checkpointed state to resume from, or None for a fresh start."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        """One epoch's metrics, and the state to checkpoint with them (None: no checkpoint)."""


@dataclass
class Counters:
    epoch: int = 0
    global_step: int = 0
    images_seen: int = 0
    range_test_images: int = 0

    def state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


STREAM_EPOCH, STREAM_RANGE_TEST, STREAM_REPLICA = 0, 1, 2
"""Purposes of :func:`stream_seed`: the epoch order, range tests, and independent replicas of
the epoch order (another data order for the same epoch, see :meth:`Trial.epoch_batches`)."""


def stream_seed(seed: int, epoch: int, purpose: int, index: int = 0) -> int:
    """A stable 63-bit seed for one data stream (purposes: ``STREAM_*``)."""
    mixed = np.random.SeedSequence([seed, epoch, purpose, index]).generate_state(2, np.uint32)
    return int(mixed[0]) << 31 | int(mixed[1]) >> 1


def seeded_generator(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.inference_mode()
def evaluate(model: nn.Module, pipe: BatchPipeline, setup: DeviceSetup) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over every image of ``pipe`` (no augmentation)."""
    model.eval()
    loss_sum = torch.zeros((), device=setup.device, dtype=torch.float64)
    correct = torch.zeros((), device=setup.device, dtype=torch.int64)
    n = 0
    for x, y in pipe.sequential():
        with setup.autocast():
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
        n += y.numel()
    return float(loss_sum) / n, float(correct) / n


class Trial:
    """One trial's mutable training state, built from a config and the data splits."""

    def __init__(self, cfg: TrialConfig, splits: DataSplits, setup: DeviceSetup) -> None:
        self.cfg = cfg
        self.setup = setup
        seed_everything(cfg.seed)
        data = splits.to(setup.device)
        cl = setup.channels_last
        self.train_pipe = BatchPipeline(
            data.train_x,
            data.train_y,
            batch_size=cfg.batch_size,
            augment=cfg.augment,
            channels_last=cl,
        )
        eval_bs = max(cfg.batch_size, EVAL_BATCH)

        def eval_pipe(x: torch.Tensor, y: torch.Tensor) -> BatchPipeline:
            return BatchPipeline(
                x, y, batch_size=min(eval_bs, len(y)), augment=False, channels_last=cl
            )

        self.val_pipe = eval_pipe(data.val_x, data.val_y)
        self.test_pipe = eval_pipe(data.test_x, data.test_y)
        self.steps_per_epoch = self.train_pipe.steps_per_epoch(drop_last=True)
        model = build_model(cfg.model).to(setup.device)
        self.model = model.to(memory_format=torch.channels_last) if cl else model
        self.optimizer = build_optimizer(cfg, self.model)
        # The validated params go to the policy's class as they are: nothing is checked again.
        self.policy: LRPolicy = POLICIES[cfg.policy](
            params=cfg.policy_params,
            base_lr=cfg.lr,
            steps_per_epoch=self.steps_per_epoch,
            metric_name=cfg.monitor,
            metric_mode=cfg.monitor_mode,
            chance_level=chance_level(cfg.monitor_mode, NUM_CLASSES),
        )
        self.counters = Counters()

    # -- checkpoint state ------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy": self.policy.state_dict(),
            "counters": self.counters.state(),
            "rng": capture_rng(),
        }

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy.load_state_dict(state["policy"])
        self.counters = Counters(**state["counters"])
        restore_rng(state["rng"])

    # -- one epoch ---------------------------------------------------------------------------------
    def epoch_batches(
        self, epoch: int, replica: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The training batches of ``epoch`` (1-based), in the trial's own data order.

        ``replica`` k > 0 gives an independent order of the same images for the same epoch
        (another shuffle and other crops/flips), e.g. to repeat a measurement on a second
        data stream; replica 0 is the order :meth:`train_epoch` trains on.
        """
        purpose, index = (STREAM_EPOCH, 0) if replica == 0 else (STREAM_REPLICA, replica)
        gen = seeded_generator(stream_seed(self.cfg.seed, epoch, purpose, index))
        return self.train_pipe.epoch(gen, drop_last=True)

    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch ``(x, y)`` at ``lr``; returns the loss and logits.

        The model must be in training mode. Both are returned detached and stay on the device
        (no host sync here): callers accumulate them and read them once.
        """
        set_lr(self.optimizer, lr)
        with self.setup.autocast():
            out = self.model(x)
            loss = F.cross_entropy(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.counters.global_step += 1
        return loss.detach(), out.detach()

    def train_steps(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], num_steps: int, lr: float
    ) -> float:
        """Train ``num_steps`` batches from ``batches`` at the fixed ``lr``; mean training loss.

        The LR policy is neither asked nor advanced (its LR and iteration stay as they were):
        this trains the current state at a given LR, as a benchmark or an oracle needs to.
        Raises :class:`NonFiniteLossError` when the loss turns non-finite.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps ({num_steps!r}) must be >= 1")
        self.model.train()
        loss_sum = torch.zeros((), device=self.setup.device, dtype=torch.float64)
        n = 0
        for _, (x, y) in zip(range(num_steps), batches, strict=False):
            loss, _ = self.train_step(x, y, lr)
            loss_sum += loss.double() * y.numel()
            n += y.numel()
        if n == 0:
            raise ValueError("train_steps: the batch iterator was empty")
        self.counters.images_seen += n
        mean_loss = float(loss_sum) / n
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"non-finite training loss at fixed lr {lr:.3g}", epoch=self.counters.epoch
            )
        return mean_loss

    def train_epoch(self, epoch: int) -> tuple[float, float, list[tuple[int, float]]]:
        """Train one epoch (1-based); returns mean loss, accuracy and the (step, lr) trace."""
        policy = self.policy
        self.model.train()
        loss_sum = torch.zeros((), device=self.setup.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.setup.device, dtype=torch.int64)
        n = 0
        trace: list[tuple[int, float]] = []
        for x, y in self.epoch_batches(epoch):
            lr = policy.lr()
            trace.append((self.counters.global_step, lr))
            loss, out = self.train_step(x, y, lr)
            policy.step_batch()
            loss_sum += loss.double() * y.numel()
            correct += (out.argmax(1) == y).sum()
            n += y.numel()
        self.counters.images_seen += n
        mean_loss = float(loss_sum) / n
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"non-finite training loss in epoch {epoch} (lr {policy.lr():.3g}, policy "
                f"{self.cfg.policy}): trial stopped; lower lr or the policy's max_lr",
                epoch=epoch,
            )
        return mean_loss, float(correct) / n, trace

    def probe(self, epoch: int) -> Any:
        """The range-test callable handed to the policy at the end of ``epoch``."""
        tests_so_far = self.policy.num_range_tests

        def run(
            min_lr: float,
            max_lr: float,
            num_steps: int,
            measure: str = "held_out",
            settle_batches: int = NORM_SETTLE_BATCHES,
        ) -> RangeTestResult:
            gen = seeded_generator(
                stream_seed(self.cfg.seed, epoch, STREAM_RANGE_TEST, tests_so_far)
            )
            batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
            held_out: tuple[torch.Tensor, torch.Tensor] | None = None
            if measure == "held_out":  # the test's stream never contains a held-out image
                held_out, batches = self.train_pipe.held_out_and_stream(gen)
            else:
                batches = self.train_pipe.random_batches(gen)
            return run_range_test(
                self.model,
                self.optimizer,
                F.cross_entropy,
                batches,
                min_lr=min_lr,
                max_lr=max_lr,
                num_steps=num_steps,
                autocast=self.setup.autocast,
                held_out=held_out,
                settle_batches=settle_batches,
            )

        return run


def train(
    cfg: TrialConfig,
    splits: DataSplits,
    reporter: Reporter,
    setup: DeviceSetup,
    *,
    node_id: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) one trial to ``cfg.epochs``; returns the last metrics reported."""
    trial = Trial(cfg, splits, setup)
    restored = reporter.restore()
    # The metrics of the restored epoch go out again with the next report: the driver may have
    # died after the checkpoint was written but before it logged them (it skips what it has).
    carried: dict[str, Any] = {}
    if restored is not None:
        trial.load(restored)
        if restored.get("metrics"):
            carried[R.RESTORED_METRICS] = json.dumps(restored["metrics"])
    identity = {
        R.POLICY: cfg.policy,
        R.SEED: cfg.seed,
        R.NODE_ID: node_id or "",
        R.HOSTNAME: socket.gethostname(),
        R.PID: os.getpid(),
        R.DEVICE: setup.name,
    }
    metrics: dict[str, Any] = {}
    if restored is not None and trial.counters.epoch >= cfg.epochs:
        # Restored at the last epoch: nothing to train, but the final report must arrive.
        metrics = dict(restored.get("metrics") or {R.EPOCH: trial.counters.epoch})
        reporter.report(metrics, None)
        return metrics
    for epoch in range(trial.counters.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc, trace = trial.train_epoch(epoch)
        val_loss, val_acc = evaluate(trial.model, trial.val_pipe, setup)
        monitored = {
            "val_loss": val_loss,
            "val_acc": val_acc,
            "train_loss": train_loss,
            "train_acc": train_acc,
        }[cfg.monitor]
        last = epoch == cfg.epochs
        # After the last epoch no LR is used again: no plateau decision, no range test.
        events = [] if last else trial.policy.end_epoch(epoch, monitored, trial.probe(epoch))
        test_images = sum(e.images for e in events)
        trial.counters.range_test_images += test_images
        trial.counters.images_seen += test_images
        trial.counters.epoch = epoch
        set_lr(trial.optimizer, trial.policy.lr())
        metrics = {
            R.EPOCH: epoch,
            R.TRAIN_LOSS: train_loss,
            R.TRAIN_ACC: train_acc,
            R.VAL_LOSS: val_loss,
            R.VAL_ACC: val_acc,
            R.LR: trial.policy.lr(),
            R.IMAGES_SEEN: trial.counters.images_seen,
            R.RANGE_TEST_IMAGES: trial.counters.range_test_images,
            R.RANGE_TESTS: trial.policy.num_range_tests,
            R.POLICY_EVENTS: json.dumps([e.to_dict() for e in events]),
            R.LR_TRACE: json.dumps(R.downsample(trace, cfg.lr_trace_points)),
            **identity,
        }
        metrics[R.EPOCH_TIME_S] = time.perf_counter() - start
        if last:
            metrics[R.TEST_LOSS], metrics[R.TEST_ACC] = evaluate(
                trial.model, trial.test_pipe, setup
            )
        save = last or epoch % cfg.checkpoint_every == 0
        state = {**trial.state(), "metrics": metrics} if save else None
        reporter.report({**metrics, **carried}, state)
        carried = {}
    return metrics
