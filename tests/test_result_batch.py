"""What one reported result becomes in its MLflow child run (``sweep.result_batch``), as tables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sweep.result_batch import ResultBatch, Written, lr_trace_budget, result_batch
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

HOST_TAG = NODE_TAGS[R.HOSTNAME]


def epoch_result(epoch: int, **extra: Any) -> dict[str, Any]:
    return {R.EPOCH: epoch, R.VAL_ACC: 0.5, R.VAL_LOSS: 1.2, R.LR: 1e-3, **extra}


def keys(batch: ResultBatch) -> list[str]:
    return sorted({key for key, _, _ in batch.points})


def value(batch: ResultBatch, key: str) -> float:
    (found,) = [v for k, v, _ in batch.points if k == key]
    return found


RANGE_EVENT = {"kind": "range_test", "new_lr": 4.8e-4}
NOT_LEARNING = {
    "kind": "not_learning",
    "epoch": 3,
    "reason": "plateau: ...; the run is not learning",
}

# (case, result, written before, expected keys, expected extra tags, repeat, final)
CASES = [
    (
        "first epoch",
        epoch_result(1),
        Written(),
        [BEST_VAL_ACC_METRIC, R.LR, R.VAL_ACC, R.VAL_LOSS],
        {TAG_LAST_EPOCH: "1"},
        False,
        False,
    ),
    (
        "an epoch written before: nothing",
        epoch_result(2),
        Written(last_epoch=2),
        [],
        {},
        True,
        False,
    ),
    (
        "an epoch written before, with final metrics not yet written: those",
        epoch_result(2, **{R.TEST_ACC: 0.6, R.TEST_LOSS: 1.1}),
        Written(last_epoch=2),
        [R.TEST_ACC, R.TEST_LOSS],
        {TAG_FINAL_LOGGED: "true"},
        True,
        True,
    ),
    (
        "final metrics already written, epoch repeated: nothing",
        epoch_result(2, **{R.TEST_ACC: 0.6}),
        Written(last_epoch=2, final_logged=True),
        [],
        {},
        True,
        False,
    ),
    (
        "a range test's LR as its own metric",
        epoch_result(3, **{R.POLICY_EVENTS: json.dumps([RANGE_EVENT])}),
        Written(last_epoch=2),
        [BEST_VAL_ACC_METRIC, R.LR, RANGE_TEST_LR_METRIC, R.VAL_ACC, R.VAL_LOSS],
        {TAG_LAST_EPOCH: "3"},
        False,
        False,
    ),
    (
        "a non-finite range-test LR is no metric",
        epoch_result(3, **{R.POLICY_EVENTS: json.dumps([{"kind": "range_test", "new_lr": None}])}),
        Written(last_epoch=2),
        [BEST_VAL_ACC_METRIC, R.LR, R.VAL_ACC, R.VAL_LOSS],
        {TAG_LAST_EPOCH: "3"},
        False,
        False,
    ),
    (
        "not learning: a tag",
        epoch_result(3, **{R.POLICY_EVENTS: json.dumps([NOT_LEARNING])}),
        Written(last_epoch=2),
        [BEST_VAL_ACC_METRIC, R.LR, R.VAL_ACC, R.VAL_LOSS],
        {TAG_LAST_EPOCH: "3", TAG_NOT_LEARNING: "epoch 3: the run is not learning"},
        False,
        False,
    ),
    (
        "malformed events and LR trace are left out, the metrics kept",
        epoch_result(3, **{R.POLICY_EVENTS: "{not json", R.LR_TRACE: "[[1, 2, 3]]"}),
        Written(last_epoch=2),
        [BEST_VAL_ACC_METRIC, R.LR, R.VAL_ACC, R.VAL_LOSS],
        {TAG_LAST_EPOCH: "3"},
        False,
        False,
    ),
    (
        "no epoch but Tune's iteration",
        {"training_iteration": 4, R.VAL_ACC: 0.4},
        Written(last_epoch=3),
        [BEST_VAL_ACC_METRIC, R.VAL_ACC],
        {TAG_LAST_EPOCH: "4"},
        False,
        False,
    ),
    (
        "a node tag only when it changed",
        epoch_result(2, **{R.HOSTNAME: "b"}),
        Written(last_epoch=2, node={HOST_TAG: "a"}),
        [],
        {HOST_TAG: "b"},
        True,
        False,
    ),
    (
        "an unchanged node tag is not written again",
        epoch_result(3, **{R.HOSTNAME: "a"}),
        Written(last_epoch=2, node={HOST_TAG: "a"}),
        [BEST_VAL_ACC_METRIC, R.LR, R.VAL_ACC, R.VAL_LOSS],
        {TAG_LAST_EPOCH: "3"},
        False,
        False,
    ),
]


@pytest.mark.parametrize(
    ("result", "before", "want_keys", "want_tags", "repeat", "final"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_result_batch(
    result: dict[str, Any],
    before: Written,
    want_keys: list[str],
    want_tags: dict[str, str],
    repeat: bool,
    final: bool,
) -> None:
    batch = result_batch(result, before, lr_budget=100)
    assert batch is not None
    assert keys(batch) == sorted(want_keys)
    assert set(batch.tags) == set(want_tags)
    assert dict(batch.tags) == want_tags
    assert (batch.repeat, batch.final) == (repeat, final)
    assert batch.only_node_tags == (repeat and not final)


def test_a_result_without_an_epoch_is_not_placed() -> None:
    assert result_batch({R.VAL_ACC: 0.4}, Written(), lr_budget=10) is None


def test_best_val_acc_is_the_running_best_and_is_remembered() -> None:
    before = Written(last_epoch=1, best_val_acc=0.6)
    worse = result_batch(epoch_result(2, **{R.VAL_ACC: 0.55}), before, lr_budget=0)
    assert worse is not None and value(worse, BEST_VAL_ACC_METRIC) == 0.6
    better = result_batch(epoch_result(2, **{R.VAL_ACC: 0.65}), before, lr_budget=0)
    assert better is not None and value(better, BEST_VAL_ACC_METRIC) == 0.65
    assert (better.after.last_epoch, better.after.best_val_acc) == (2, 0.65)
    assert worse is not None and worse.after.best_val_acc == 0.6


def test_the_lr_trace_is_downsampled_to_its_budget_and_counted() -> None:
    trace = [[step, 1e-3 * (1 + step)] for step in range(50)] + [[50, float("nan")]]
    result = epoch_result(1, **{R.LR_TRACE: json.dumps(trace)})
    batch = result_batch(result, Written(lr_points=7), lr_budget=5)
    assert batch is not None
    steps = [s for k, _, s in batch.points if k == LR_STEP_METRIC]
    assert steps[0] == 0 and steps[-1] == 49  # first and last finite points kept
    assert batch.after.lr_points == 12


def test_a_repeat_remembers_final_metrics_and_node_tags_but_not_the_epoch() -> None:
    before = Written(last_epoch=3, lr_points=9, best_val_acc=0.5, node={HOST_TAG: "a"})
    result = epoch_result(2, **{R.TEST_ACC: 0.6, R.HOSTNAME: "b"})
    batch = result_batch(result, before, lr_budget=10)
    assert batch is not None
    assert batch.after == Written(3, 9, True, 0.5, {HOST_TAG: "b"})


# (epochs of the run, max points, points written so far, expected budget)
BUDGETS = [
    (10, 2000, 0, 200),
    (10, 2000, 1900, 100),
    (10, 2000, 2000, 0),
    (None, 2000, 0, 2000),
    (0, 50, 10, 40),
    (5000, 2000, 0, 1),
]


@pytest.mark.parametrize(("epochs", "max_points", "written", "want"), BUDGETS)
def test_lr_trace_budget(epochs: int | None, max_points: int, written: int, want: int) -> None:
    assert lr_trace_budget(epochs, max_points, written) == want
