"""The names of what a trial reports each epoch: the contract between trial and driver.

Every epoch a trial calls ``tune.report(metrics, checkpoint=...)`` with these keys; the driver
side (MLflow tracking, comparison) reads them by these names. Structured payloads travel as
JSON strings so Tune's loggers and result tables keep them intact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, TypeVar

T = TypeVar("T")

EPOCH: Final = "epoch"  # 1-based epoch just finished
TRAIN_LOSS: Final = "train_loss"
TRAIN_ACC: Final = "train_acc"
VAL_LOSS: Final = "val_loss"
VAL_ACC: Final = "val_acc"
LR: Final = (
    "lr"  # LR in effect after this epoch's policy decision (what the next epoch starts with)
)
IMAGES_SEEN: Final = "images_seen"  # training images so far, range-test images included
RANGE_TEST_IMAGES: Final = "range_test_images"  # of which spent in range tests
RANGE_TESTS: Final = "range_tests"  # count so far
EPOCH_TIME_S: Final = "epoch_time_s"
TEST_LOSS: Final = "test_loss"  # final report only
TEST_ACC: Final = "test_acc"  # final report only
POLICY_EVENTS: Final = "policy_events"  # JSON list of PolicyEvent.to_dict() of this epoch
LR_TRACE: Final = "lr_trace"  # JSON list of [global_step, lr] for this epoch, downsampled
POLICY: Final = "policy"
SEED: Final = "seed"
NODE_ID: Final = "node_id"
HOSTNAME: Final = "hostname"
PID: Final = "pid"
DEVICE: Final = "device"
#: Reported once after a restore: the restored epoch's own metrics, as JSON.
RESTORED_METRICS: Final = "restored_metrics"
#: Reported once after a restore that skipped damaged checkpoints: JSON
#: ``{"restored": name, "skipped": {name: why}}``.
CHECKPOINT_FALLBACK: Final = "checkpoint_fallback"
#: A deterministic failure (the reason): the driver does not retry the trial.
NO_RETRY: Final = "no_retry"

#: Scalar metrics logged per epoch (step = epoch) by the driver.
EPOCH_METRICS: Final = (
    TRAIN_LOSS,
    TRAIN_ACC,
    VAL_LOSS,
    VAL_ACC,
    LR,
    IMAGES_SEEN,
    RANGE_TEST_IMAGES,
    RANGE_TESTS,
    EPOCH_TIME_S,
)
FINAL_METRICS: Final = (TEST_LOSS, TEST_ACC)


def decode_events(result: dict[str, Any]) -> list[dict[str, Any]]:
    raw = result.get(POLICY_EVENTS) or "[]"
    return list(json.loads(raw))


def decode_lr_trace(result: dict[str, Any]) -> list[tuple[int, float]]:
    raw = result.get(LR_TRACE) or "[]"
    return [(int(s), float(v)) for s, v in json.loads(raw)]


def downsample(points: Sequence[T], n: int) -> list[T]:
    """At most ``n`` evenly spaced items, first and last included (``n == 1``: the last)."""
    if n <= 0:
        return []
    if len(points) <= n:
        return list(points)
    if n == 1:
        return [points[-1]]
    idx = sorted({round(i * (len(points) - 1) / (n - 1)) for i in range(n)})
    return [points[i] for i in idx]
