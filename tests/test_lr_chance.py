"""The chance-level guard: a plateau at chance gets no range test.

A network that died in its first epochs (every output the same) sits at the chance loss,
ln 10 on CIFAR-10, and a range test from there reads the output biases re-centring as a
descent, or finds none and falls back upward: either way it raised the LR of the dead runs of
benchmarks/specs/misset_adam_high.yaml by up to x 10 (docs/performance.md 6b). The guard keeps
the LR and says the run is not learning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_lr_policies import FakeProbe, make_rtp

from trainables import results as R
from trainables.config import TrialConfig
from trainables.lr import make_policy
from trainables.lr.plateau import at_chance

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
    with pytest.raises(ValueError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        at_chance(2.3, LN10, mode, margin)


def plateau_at(policy: Any, metric: float, probe: FakeProbe) -> list[Any]:
    """Patience 0: the second of two equal metrics fires the plateau (a NaN, never an
    improvement, fires on both); the first event."""
    return (policy.end_epoch(0, metric, probe) + policy.end_epoch(1, metric, probe))[:1]


def test_a_plateau_at_chance_runs_no_test_and_keeps_the_lr() -> None:
    probe = FakeProbe("u")
    policy = make_rtp(chance_level=LN10, num_steps=30)
    (event,) = plateau_at(policy, 2.3026, probe)
    assert event.epoch == 1 and probe.calls == []  # no range test ran
    assert event.kind == "not_learning" and event.old_lr == event.new_lr == policy.lr() == 1e-2
    assert policy.num_range_tests == 0 and policy.num_plateaus == 1
    assert "val_loss 2.3 is no better than chance (2.3): the run is not learning" in event.reason
    assert "no range test, lr 0.01 kept" in event.reason and "lower" in event.reason
    assert event.lrs == () and event.suggested_lr is None
    json.dumps(event.to_dict())  # goes out with the trial's report as it is


@pytest.mark.parametrize(
    ("kwargs", "metric", "kind"),
    [
        ({"chance_level": LN10}, 1.36, "range_test"),  # learning: the test runs
        ({"chance_level": LN10, "chance_margin": None}, 2.3026, "range_test"),  # guard off
        ({}, 2.3026, "range_test"),  # no chance level given (the Python API's default)
        ({"chance_level": LN10}, float("nan"), "range_test"),  # NaN: not judged
        (
            {"chance_level": 0.1, "metric_name": "val_acc", "metric_mode": "max"},
            0.1,
            "not_learning",
        ),
        ({"chance_level": 0.1, "metric_name": "val_acc", "metric_mode": "max"}, 0.35, "range_test"),
    ],
)
def test_which_plateaus_the_guard_takes(kwargs: dict[str, Any], metric: float, kind: str) -> None:
    probe = FakeProbe("u")
    policy = make_rtp(num_steps=30, **kwargs)
    (event,) = plateau_at(policy, metric, probe)
    assert event.kind == kind
    assert bool(probe.calls) == (kind == "range_test")


def test_the_guard_judges_the_metric_by_its_own_mode_not_the_detectors() -> None:
    # a detector told to maximise a loss still sees a loss: 2.3 is chance, 1.0 is not
    policy = make_rtp(chance_level=LN10, mode="max", num_steps=30)
    (event,) = plateau_at(policy, 1.0, FakeProbe("u"))
    assert event.kind == "range_test"


def test_the_trial_gives_the_chance_level_and_make_policy_takes_it() -> None:
    assert TrialConfig(monitor="val_loss").chance_level == pytest.approx(LN10)
    assert TrialConfig(monitor="train_loss").chance_level == pytest.approx(LN10)
    assert TrialConfig(monitor="val_acc").chance_level == pytest.approx(0.1)
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
    (event,) = plateau_at(policy, 2.3026, FakeProbe("u"))
    result = {R.POLICY_EVENTS: json.dumps([event.to_dict()])}
    lines = EventLines()
    trial = SimpleNamespace(trial_id="t1", config={"policy_label": "range_test", "seed": 3})
    other = SimpleNamespace(trial_id="t2", config={"policy_label": "range_test", "seed": 4})
    for t in (trial, trial, other):
        lines.on_trial_result(0, [], t, result)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"range_test seed {s} ({t}): epoch 1: not learning (val_loss 2.3 is no better than "
        "chance (2.3)); no range test, lr 0.01 kept: a dead network usually means the lr is too "
        "high, try a lower one (said once per trial)"
        for s, t in ((3, "t1"), (4, "t2"))
    ]


@pytest.mark.realdata
def test_a_real_run_that_dies_gets_no_range_test(real_cifar_dir: Path) -> None:
    """Adam at 0.03 kills the seed CNN in its first epoch: val_loss sits at ln 10 (the same
    run at 1e-3 learns and its plateau gets a range test: test_trainable)."""
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
            "epochs": 3,
            "batch_size": 32,
            "seed": 7,
            "lr": 0.03,
        }
    )
    rep = ListReporter()
    train(cfg, splits, rep, select_device("cpu"))
    assert all(m[R.VAL_LOSS] == pytest.approx(LN10, abs=0.03) for m in rep.reports)
    events = [e for m in rep.reports for e in json.loads(m[R.POLICY_EVENTS])]
    assert [e["kind"] for e in events] == ["not_learning"]
    assert all(m[R.LR] == 0.03 and m[R.RANGE_TESTS] == 0 for m in rep.reports)
    assert rep.reports[-1][R.RANGE_TEST_IMAGES] == 0
