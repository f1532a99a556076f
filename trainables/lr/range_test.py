"""The LR range test (Smith 2015 / fastai): a short exponential LR sweep from a snapshot.

The model, optimizer, grad scaler and RNGs are snapshotted before the sweep and restored after
it, whatever happens, so a range test leaves no trace in the training run except the batches it
drew from the iterator it was given.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainables.validation import is_int, is_real

if TYPE_CHECKING:  # torch loads when a test runs: the result type and ladder need none of it
    import torch
    from torch import Tensor, nn

NORM_SETTLE_BATCHES = 10
"""Batches whose BatchNorm statistics replace the running ones before a held-out test."""

STOP_REASONS = ("completed", "diverged", "non_finite", "exhausted")
"""completed: all steps ran; diverged: smoothed loss > diverge_factor x best smoothed;
non_finite: a loss was NaN/inf; exhausted: the batch iterator ran out first."""


@dataclass(frozen=True)
class RangeTestResult:
    """The whole recorded curve (raw per-batch losses, non-finite kept as recorded)."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    stop_reason: str
    images: int
    seconds: float

    def __post_init__(self) -> None:
        if len(self.lrs) != len(self.losses):
            raise ValueError(
                f"lrs ({len(self.lrs)} points) and losses ({len(self.losses)}) differ in length"
            )
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(
                f"unknown stop_reason {self.stop_reason!r} (valid: {', '.join(STOP_REASONS)})"
            )

    @property
    def num_steps(self) -> int:
        return len(self.lrs)


def lr_ladder(min_lr: float, max_lr: float, num_steps: int) -> np.ndarray:
    """``num_steps`` exponentially spaced LRs, first exactly ``min_lr``, last exactly ``max_lr``."""
    _check_range(min_lr, max_lr, num_steps)
    ladder = np.geomspace(float(min_lr), float(max_lr), int(num_steps))
    ladder[0], ladder[-1] = float(min_lr), float(max_lr)
    return ladder


def run_range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, Tensor], Tensor],
    batches: Iterator[tuple[Tensor, Tensor]],
    *,
    min_lr: float,
    max_lr: float,
    num_steps: int,
    beta: float = 0.98,
    diverge_factor: float = 4.0,
    scaler: Any | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
    generators: Sequence[torch.Generator] = (),
    held_out: tuple[Tensor, Tensor] | None = None,
    settle_batches: int = NORM_SETTLE_BATCHES,
) -> RangeTestResult:
    """Train one batch per LR of :func:`lr_ladder`, record the losses, then restore everything.

    Stops early on a non-finite loss or when the bias-corrected smoothed loss exceeds
    ``diverge_factor`` x the best smoothed loss so far. ``batches`` should be the range test's own
    iterator (so the epoch's data stream is not advanced); inputs are moved to the model's device.
    ``scaler`` is a ``torch.amp.GradScaler``; ``autocast`` makes the context for forward + loss.

    With ``held_out`` (a batch not trained on), the loss recorded for each LR is the loss on that
    same fixed batch right after the step at that LR (eval mode, no grad), instead of the loss of
    the batch being trained on. A short test late in training is otherwise dominated by
    batch-to-batch noise (different images every step); on one fixed batch the curve shows what
    each LR does to the model. It costs one forward pass of the held-out batch per step.

    The held-out loss is read in eval mode, through the BatchNorm running statistics. Those lag
    the weights during training, and a test that only updated them would record their catch-up
    as a descent at every LR, the smallest included: on ResNet-8 at LR 1e-12 the held-out loss
    fell by a median 0.11 in 20 steps (``benchmarks/norm_drift.py``). So, with ``held_out`` and
    a model with BatchNorm, the running statistics are first recomputed for the current weights
    from the next ``settle_batches`` batches (forward passes, no step; counted in ``images``).
    A model without BatchNorm draws no batch for it; ``settle_batches=0`` turns it off.
    """
    from trainables.lr.snapshot import TrainingSnapshot

    ladder = lr_ladder(min_lr, max_lr, num_steps)
    if not is_real(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"beta ({beta!r}) must be in [0, 1)")
    if not is_real(diverge_factor) or not diverge_factor > 1.0:
        raise ValueError(f"diverge_factor ({diverge_factor!r}) must be > 1")
    if not is_int(settle_batches) or settle_batches < 0:
        raise ValueError(f"settle_batches ({settle_batches!r}) must be an int >= 0")
    device = next((p.device for p in model.parameters()), None)
    make_ctx = autocast if autocast is not None else contextlib.nullcontext

    lrs: list[float] = []
    losses: list[float] = []
    images = 0
    stop_reason = "completed"
    start = time.perf_counter()
    with TrainingSnapshot.capture(model, optimizer, scaler, generators):
        if held_out is not None and settle_batches:
            images += _settle_norm_stats(model, batches, settle_batches, device, make_ctx)
        avg, best = 0.0, math.inf
        for i, lr in enumerate(ladder.tolist()):
            try:
                inputs, targets = next(batches)
            except StopIteration:
                stop_reason = "exhausted"
                break
            if device is not None:
                inputs, targets = inputs.to(device), targets.to(device)
            images += int(inputs.shape[0])
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with make_ctx():
                loss = loss_fn(model(inputs), targets)
            value = float(loss.detach())
            if held_out is not None and math.isfinite(value):
                _step(loss, optimizer, scaler)
                value = _held_out_loss(model, loss_fn, held_out, device, make_ctx)
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                stop_reason = "non_finite"
                break
            avg = beta * avg + (1.0 - beta) * value
            smoothed = avg / (1.0 - beta ** (i + 1))
            best = min(best, smoothed)
            if best > 0 and smoothed > diverge_factor * best:
                stop_reason = "diverged"
                break
            if held_out is None:
                _step(loss, optimizer, scaler)
    return RangeTestResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        stop_reason=stop_reason,
        images=images,
        seconds=time.perf_counter() - start,
    )


def _step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: Any | None) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _settle_norm_stats(
    model: nn.Module,
    batches: Iterator[tuple[Tensor, Tensor]],
    num_batches: int,
    device: torch.device | None,
    make_ctx: Callable[[], AbstractContextManager[Any]],
) -> int:
    """Replace the BatchNorm running statistics by their mean over the next ``num_batches``
    batches at the current weights (train-mode forward passes, no grad); the images drawn.
    No batch is drawn when the model has no BatchNorm tracking running statistics.

    ``torch.optim.swa_utils.update_bn`` does the same, but a forward that raises there leaves
    every momentum at None (the snapshot restores buffers, not attributes: training would go on
    with cumulative statistics), it resets the statistics even when no batch comes, and it runs
    outside the test's autocast."""
    import torch

    norms = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return 0
    drawn = list(itertools.islice(batches, num_batches))
    if not drawn:
        return 0
    momenta = [m.momentum for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative mean over the batches below
        model.train()
        with torch.no_grad(), make_ctx():
            for inputs, _ in drawn:
                model(inputs.to(device) if device is not None else inputs)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    return sum(int(inputs.shape[0]) for inputs, _ in drawn)


def _held_out_loss(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    held_out: tuple[Tensor, Tensor],
    device: torch.device | None,
    make_ctx: Callable[[], AbstractContextManager[Any]],
) -> float:
    import torch

    inputs, targets = held_out
    if device is not None:
        inputs, targets = inputs.to(device), targets.to(device)
    model.eval()
    try:
        with torch.no_grad(), make_ctx():
            return float(loss_fn(model(inputs), targets).float())
    finally:
        model.train()


def _check_range(min_lr: float, max_lr: float, num_steps: int) -> None:
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if not is_real(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} ({value!r}) must be a finite number > 0")
    if min_lr >= max_lr:
        raise ValueError(f"min_lr ({min_lr}) must be < max_lr ({max_lr})")
    if not is_int(num_steps) or num_steps < 2:
        raise ValueError(f"num_steps ({num_steps!r}) must be an int >= 2")
