"""What one reported trial result becomes in its MLflow child run: a pure function, no MLflow.

:class:`sweep.tracking.MLflowTracker` keeps, per child run, what it has written so far
(:class:`Written`). :func:`result_batch` turns one Tune result into what is left to write: the
metric points (key, value, step), the tags, the node tags that changed and the policy events.
An epoch already written is not written again (a restored trial reports its last epoch once
more); its final metrics are, if they were not written yet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sweep.run_values import integer, not_learning_line, number, running_best
from sweep.store import (
    BEST_VAL_ACC_METRIC,
    LR_STEP_METRIC,
    NODE_TAGS,
    RANGE_TEST_LR_METRIC,
    TAG_FINAL_LOGGED,
    TAG_LAST_EPOCH,
    TAG_NOT_LEARNING,
)
from trainables import results as R

log = logging.getLogger(__name__)

Point = tuple[str, float, int]
"""A metric point: key, value, step (the epoch, or the global step for the LR trace)."""


@dataclass(frozen=True)
class Written:
    """What a child run has received so far."""

    last_epoch: int = 0
    lr_points: int = 0
    final_logged: bool = False
    best_val_acc: float | None = None
    node: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultBatch:
    """What one result adds to its child run."""

    epoch: int
    repeat: bool  # this epoch was written before: only final metrics and node tags are new
    points: tuple[Point, ...]
    tags: Mapping[str, str]  # node tags included
    node: Mapping[str, str]  # the node tags that changed
    events: tuple[dict[str, Any], ...]
    final: bool  # carries final (test) metrics
    after: Written  # what the child run has received once this batch is written

    @property
    def only_node_tags(self) -> bool:
        """Nothing to write but changed node tags (perhaps not even those)."""
        return self.repeat and not self.final


def lr_trace_budget(epochs: int | None, max_points: int, written: int) -> int:
    """How many LR trace points this epoch may add: an even share of ``max_points`` per epoch
    (all of it when the run's epoch count is unknown), never past ``max_points`` in all."""
    per_epoch = max(1, max_points // epochs) if epochs and epochs > 0 else max_points
    return max(0, min(per_epoch, max_points - written))


def result_batch(
    result: Mapping[str, Any], before: Written, lr_budget: int, trial_id: str = "?"
) -> ResultBatch | None:
    """The batch ``result`` adds to a child run that has received ``before``; None when the
    result has no epoch (nothing to place it at). Malformed payloads (events, LR trace) are
    left out with a warning naming ``trial_id``; the rest of the result is kept."""
    epoch = integer(result.get(R.EPOCH))
    if epoch is None:
        epoch = integer(result.get("training_iteration"))
    if epoch is None:
        return None
    repeat = epoch <= before.last_epoch
    best = before.best_val_acc
    points: list[Point] = []
    tags: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    lr_points: list[tuple[int, float]] = []
    if not repeat:
        for key in R.EPOCH_METRICS:
            value = number(result.get(key))
            if value is not None:
                points.append((key, value, epoch))
        best = running_best(best, number(result.get(R.VAL_ACC)))
        if best is not None:
            points.append((BEST_VAL_ACC_METRIC, best, epoch))
        lr_points = _lr_points(result, lr_budget, trial_id)
        points.extend((LR_STEP_METRIC, v, s) for s, v in lr_points)
        events = _events(result, trial_id, epoch)
        for ev in events:
            new_lr = number(ev.get("new_lr"))
            if ev.get("kind") == "range_test" and new_lr is not None and math.isfinite(new_lr):
                points.append((RANGE_TEST_LR_METRIC, new_lr, epoch))
            if ev.get("kind") == "not_learning":
                tags[TAG_NOT_LEARNING] = not_learning_line(ev)
        tags[TAG_LAST_EPOCH] = str(epoch)
    final = False
    if not before.final_logged or not repeat:
        for key in R.FINAL_METRICS:
            value = number(result.get(key))
            if value is not None:
                points.append((key, value, epoch))
                final = True
        if final:
            tags[TAG_FINAL_LOGGED] = "true"
    node = {
        tag: str(result[key])
        for key, tag in NODE_TAGS.items()
        if result.get(key) is not None and before.node.get(tag) != str(result[key])
    }
    tags.update(node)
    after = Written(
        before.last_epoch if repeat else epoch,
        before.lr_points + len(lr_points),
        before.final_logged or final,
        best,
        {**before.node, **node},
    )
    return ResultBatch(epoch, repeat, tuple(points), tags, node, tuple(events), final, after)


def _lr_points(result: Mapping[str, Any], budget: int, trial_id: str) -> list[tuple[int, float]]:
    try:
        trace = R.decode_lr_trace(dict(result))
    except (TypeError, ValueError) as exc:
        log.warning("mlflow: trial %s: bad lr_trace (%s)", trial_id, exc)
        return []
    return R.downsample([(s, v) for s, v in trace if math.isfinite(v)], budget)


def _events(result: Mapping[str, Any], trial_id: str, epoch: int) -> list[dict[str, Any]]:
    try:
        return [e for e in R.decode_events(dict(result)) if isinstance(e, dict)]
    except (TypeError, ValueError) as exc:
        log.warning("mlflow: trial %s epoch %d: bad policy_events (%s)", trial_id, epoch, exc)
        return []
