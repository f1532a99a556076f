"""A plateau at chance: the run is not learning, and the user is told.

A network that died in its first epochs (every output the same) sits at the chance loss,
ln 10 on CIFAR-10, as does one whose LR is far too low. Neither the metric nor a range test's
curve tells the two apart (docs/performance.md 6b), and only the second can be rescued (a
range test raises its LR), so the policies decide as always and a ``not_learning`` event beside
the decision says the run is at chance; the terminal prints it once per trial.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_lr_policies import FakeProbe, make_rtp

from trainables import results as R
from trainables.config import TrialConfig
from trainables.lr import make_policy
from trainables.lr.plateau import at_chance, chance_level

LN10 = math.log(10)


@pytest.mark.parametrize(
    ("metric", "chance", "mode", "margin", "expected"),
    [
        # a loss (minimised): chance ln 10, flagged from 0.98 x ln 10 = 2.2565 up
        (2.3026, LN10, "min", 0.02, True),  # a dead network's val_loss
        (2.2566, LN10, "min", 0.02, True),
        (2.2564, LN10, "min", 0.02, False),
        (8.86, LN10, "min", 0.02, True),  # worse than guessing is no better than chance
        (1.36, LN10, "min", 0.02, False),  # the highest val_loss a well-set sweep's test saw
        (2.2564, LN10, "min", 0.0, False),  # margin 0: only chance itself and worse
        (LN10, LN10, "min", 0.0, True),
        (2.0, LN10, "min", 0.2, True),  # a wide margin: 0.8 x ln 10 = 1.84
        (float("nan"), LN10, "min", 0.02, False),  # NaN is not judged
        (float("inf"), LN10, "min", 0.02, True),
        # an accuracy (maximised): chance 0.1, flagged up to 0.1 + 0.02 x 0.9 = 0.118
        (0.1, 0.1, "max", 0.02, True),
        (0.0875, 0.1, "max", 0.02, True),  # one class predicted, and the rarest
        (0.1175, 0.1, "max", 0.02, True),
        (0.1185, 0.1, "max", 0.02, False),
        (0.35, 0.1, "max", 0.02, False),
        (float("nan"), 0.1, "max", 0.02, False),
    ],
)
def test_at_chance(metric: float, chance: float, mode: str, margin: float, expected: bool) -> None:
    assert at_chance(metric, chance, mode, margin) is expected


@pytest.mark.parametrize(
    ("mode", "margin", "bad"),
    [("up", 0.02, "mode ('up') must be 'min' or 'max'"), ("min", 1.0, "margin (1.0) must be in")],
)
def test_at_chance_rejects(mode: str, margin: float, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        at_chance(2.3, LN10, mode, margin)


def plateau_at(policy: Any, metric: float, probe: FakeProbe) -> list[Any]:
    """Patience 0: the second of two equal metrics fires the plateau (a NaN, never an
    improvement, fires on both); the first plateau's events."""
    first = policy.end_epoch(0, metric, probe)
    return first or policy.end_epoch(1, metric, probe)


def test_a_plateau_at_chance_warns_beside_the_decision() -> None:
    probe = FakeProbe("u")
    policy = make_rtp(chance_level=LN10, num_steps=30)
    test, warning = plateau_at(policy, 2.3026, probe)
    assert len(probe.calls) == 1 and test.kind == "range_test"  # the decision is as always
    assert policy.num_range_tests == 1 and policy.num_plateaus == 1
    assert warning.kind == "not_learning" and warning.epoch == test.epoch == 1
    assert warning.old_lr == warning.new_lr == test.new_lr == policy.lr()  # the LR just chosen
    assert "val_loss 2.3 is no better than chance (2.3): the run is not learning" in warning.reason
    assert "far too high (a dead network: restart with a lower one) or far too low" in (
        warning.reason
    )
    assert warning.lrs == () and warning.suggested_lr is None
    assert policy.events == [test, warning]
    json.dumps(warning.to_dict())  # goes out with the trial's report as it is


def test_reduce_on_plateau_warns_too() -> None:
    policy = make_policy(
        "reduce_on_plateau",
        {"patience": 0, "factor": 0.5},
        base_lr=0.1,
        steps_per_epoch=5,
        metric_name="val_loss",
        chance_level=LN10,
    )
    cut, warning = plateau_at(policy, 2.31, FakeProbe("u"))
    assert cut.kind == "reduce" and warning.kind == "not_learning"
    assert warning.new_lr == cut.new_lr == policy.lr() == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("kwargs", "metric", "warned"),
    [
        ({"chance_level": LN10}, 1.36, False),  # learning
        ({"chance_level": LN10, "chance_margin": None}, 2.3026, False),  # warning off
        ({}, 2.3026, False),  # no chance level given (the Python API's default)
        ({"chance_level": LN10}, float("nan"), False),  # NaN: not judged
        ({"chance_level": 0.1, "metric_name": "val_acc", "metric_mode": "max"}, 0.1, True),
        ({"chance_level": 0.1, "metric_name": "val_acc", "metric_mode": "max"}, 0.35, False),
        # a detector told to maximise a loss still sees a loss: judged by the metric's own mode
        ({"chance_level": LN10, "mode": "max"}, 1.0, False),
        ({"chance_level": LN10, "mode": "max"}, 2.31, True),
    ],
)
def test_which_plateaus_warn(kwargs: dict[str, Any], metric: float, warned: bool) -> None:
    probe = FakeProbe("u")
    policy = make_rtp(num_steps=30, **kwargs)
    events = plateau_at(policy, metric, probe)
    assert events[0].kind == "range_test" and len(probe.calls) >= 1
    assert [e.kind for e in events[1:]] == (["not_learning"] if warned else [])


@pytest.mark.parametrize(
    ("mode", "classes", "expected"), [("min", 10, LN10), ("max", 10, 0.1), ("min", 2, math.log(2))]
)
def test_chance_level(mode: str, classes: int, expected: float) -> None:
    assert chance_level(mode, classes) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mode", "classes", "bad"),
    [("up", 10, "mode ('up') must be 'min' or 'max'"), ("min", 1, "num_classes (1) must be >= 2")],
)
def test_chance_level_rejects(mode: str, classes: int, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        chance_level(mode, classes)


def test_make_policy_takes_the_chance_level_from_the_trial() -> None:
    policy = make_policy(
        "range_test_on_plateau", {"patience": 0}, base_lr=1e-3, steps_per_epoch=5, chance_level=LN10
    )
    assert policy.chance_level == pytest.approx(LN10)
    with pytest.raises(ValueError, match=r"'chance_level'.*comes from the trial"):
        make_policy("range_test_on_plateau", {"chance_level": 2.3}, base_lr=1e-3, steps_per_epoch=5)
    with pytest.raises(ValueError, match=r"chance_level \(nan\) must be a finite number"):
        make_policy("constant", {}, base_lr=1e-3, steps_per_epoch=5, chance_level=float("nan"))


@pytest.mark.parametrize(
    ("margin", "bad"),
    [
        (1.0, "chance_margin: must be in [0, 1) or null, got 1.0"),
        (-0.1, "chance_margin: must be in [0, 1) or null, got -0.1"),
        ("2%", "chance_margin: must be a number, got '2%'"),
    ],
)
def test_a_bad_chance_margin_names_the_key(margin: Any, bad: str) -> None:
    with pytest.raises(ValueError) as info:
        make_policy(
            "range_test_on_plateau", {"chance_margin": margin}, base_lr=1e-3, steps_per_epoch=5
        )
    assert bad in str(info.value)


def test_the_terminal_says_it_once_per_trial(capsys: pytest.CaptureFixture[str]) -> None:
    from sweep.terminal import EventLines

    policy = make_rtp(chance_level=LN10, num_steps=30)
    _, warning = plateau_at(policy, 2.3026, FakeProbe("u"))
    result = {R.POLICY_EVENTS: json.dumps([warning.to_dict()])}
    lines = EventLines()
    trial = SimpleNamespace(trial_id="t1", config={"policy_label": "range_test", "seed": 3})
    other = SimpleNamespace(trial_id="t2", config={"policy_label": "range_test", "seed": 4})
    for t in (trial, trial, other):
        lines.on_trial_result(0, [], t, result)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"range_test seed {s} ({t}): epoch 1: val_loss 2.3 is no better than chance (2.3): the "
        "run is not learning; its lr is far too high (a dead network: restart with a lower one) "
        "or far too low (said once per trial)"
        for s, t in ((3, "t1"), (4, "t2"))
    ]


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("optimizer", "lr", "stuck", "test_moves"),
    [
        ("adam", 0.03, True, "keeps"),  # dead in its first epoch: flat curve, nothing to read
        ("sgd", 1e-5, True, "raises"),  # far too low: at chance too, and the test raises it
        ("adam", 1e-3, False, None),  # learns
    ],
)
def test_real_runs_at_chance_are_told_apart_from_learning_ones(
    real_cifar_dir: Path, optimizer: str, lr: float, stuck: bool, test_moves: str | None
) -> None:
    """800 images, patience 0 with a coarse threshold: the plateau fires at epoch 2."""
    from test_trainable import ListReporter

    from trainables.data import load_splits
    from trainables.device import select_device
    from trainables.loop import train

    splits = load_splits(real_cifar_dir, train_subset=800, val_subset=400, test_subset=400)
    params = {"patience": 0, "cooldown": 0, "threshold": 0.5, "min_lr": 1e-5, "max_lr": 1.0}
    cfg = TrialConfig.model_validate(
        {
            "policy": "range_test_on_plateau",
            "policy_params": params,
            "optimizer": optimizer,
            "epochs": 3,
            "batch_size": 32,
            "seed": 7,
            "lr": lr,
        }
    )
    rep = ListReporter()
    train(cfg, splits, rep, select_device("cpu"))
    events = [e for m in rep.reports for e in json.loads(m[R.POLICY_EVENTS])]
    assert [e["kind"] for e in events] == ["range_test"] + ["not_learning"] * stuck
    assert all((m[R.VAL_LOSS] >= 0.98 * LN10) is stuck for m in rep.reports)
    test = events[0]
    if test_moves == "keeps":
        assert test["new_lr"] == test["old_lr"] == lr
    elif test_moves == "raises":
        assert test["new_lr"] == pytest.approx(10 * lr)  # max_change 10
