"""PlateauDetector: hand-computed tables, equivalence with torch's ReduceLROnPlateau, state."""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from trainables.lr import PlateauDetector

NAN = math.nan


def fire_epochs(detector: PlateauDetector, metrics: list[float]) -> list[int]:
    return [epoch for epoch, m in enumerate(metrics) if detector.step(m)]


@pytest.mark.parametrize(
    ("kwargs", "metrics", "expected"),
    [
        pytest.param(
            {"mode": "min", "threshold_mode": "rel", "threshold": 0.1, "patience": 1},
            [1.0, 0.95, 0.89, 0.89, 0.89, 0.5, 0.5, 0.5],
            [4, 7],
            id="min-rel",
        ),
        # the same small absolute moves at scale 100: rel (1 %) sees plateaus, abs (0.01) does not
        pytest.param(
            {"mode": "min", "threshold_mode": "rel", "threshold": 0.01, "patience": 0},
            [100.0, 99.5, 99.2, 98.0],
            [1, 2],
            id="min-rel-scale",
        ),
        pytest.param(
            {"mode": "min", "threshold_mode": "abs", "threshold": 0.01, "patience": 0},
            [100.0, 99.5, 99.2, 98.0],
            [],
            id="min-abs-scale",
        ),
        pytest.param(
            {"mode": "min", "threshold_mode": "abs", "threshold": 0.05, "patience": 1},
            [1.0, 0.96, 0.94, 0.93, 0.92, 0.80],
            [4],
            id="min-abs",
        ),
        pytest.param(
            {"mode": "max", "threshold_mode": "rel", "threshold": 0.1, "patience": 0},
            [1.0, 1.05, 1.2, 1.25, 1.4],
            [1, 3],
            id="max-rel",
        ),
        pytest.param(
            {"mode": "max", "threshold_mode": "rel", "threshold": 0.1, "patience": 0},
            [10.0, 10.5, 11.2],
            [1],
            id="max-rel-scale",
        ),
        pytest.param(
            {"mode": "max", "threshold_mode": "abs", "threshold": 0.1, "patience": 0},
            [10.0, 10.5, 11.2],
            [],
            id="max-abs-scale",
        ),
        pytest.param(
            {"mode": "max", "threshold_mode": "abs", "threshold": 0.1, "patience": 1},
            [0.5, 0.55, 0.58, 0.61, 0.62, 0.7],
            [2, 5],
            id="max-abs",
        ),
        pytest.param(
            {"threshold": 0.0, "patience": 0, "cooldown": 2},
            [1.0] * 8,
            [1, 4, 7],
            id="cooldown",
        ),
        pytest.param(
            {"threshold": 0.0, "patience": 2, "cooldown": 1},
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [3, 7],
            id="cooldown-patience",
        ),
        pytest.param(
            {"threshold": 0.0, "patience": 1},
            [1.0, NAN, NAN, 0.5, NAN, 0.4, NAN, NAN],
            [2, 7],
            id="nan-in-sequence",
        ),
        pytest.param(
            {"mode": "max", "threshold": 0.0, "patience": 0},
            [NAN, 0.3, NAN, 0.4],
            [0, 2],
            id="nan-max",
        ),
    ],
)
def test_fire_table(kwargs: dict[str, Any], metrics: list[float], expected: list[int]) -> None:
    assert fire_epochs(PlateauDetector(**kwargs), metrics) == expected


def test_nan_never_becomes_best() -> None:
    det = PlateauDetector(mode="min", patience=5)
    det.step(NAN)
    assert det.best == math.inf and det.num_bad_epochs == 1
    det.step(2.0)
    det.step(NAN)
    assert det.best == 2.0 and det.num_bad_epochs == 1
    det_max = PlateauDetector(mode="max", patience=5)
    det_max.step(NAN)
    assert det_max.best == -math.inf


def test_properties_after_fire() -> None:
    det = PlateauDetector(patience=1, cooldown=3, threshold=0.0)
    assert not det.in_cooldown and det.best == math.inf
    assert [det.step(m) for m in (1.0, 1.0, 1.0)] == [False, False, True]
    assert det.num_bad_epochs == 0 and det.in_cooldown and det.cooldown_counter == 3
    assert det.best == 1.0


def _random_metrics(rng: np.random.Generator, n: int) -> list[float]:
    """A noisy descending walk with exact repeats, plateaus and the odd NaN."""
    values: list[float] = []
    level = float(rng.uniform(0.5, 3.0))
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            values.append(NAN)
            continue
        if r < 0.35 and values:
            values.append(values[-1])  # exact repeat
            continue
        level += float(rng.normal(-0.01, 0.05))
        values.append(round(level, 3))
    return values


@pytest.mark.parametrize("seed", range(40))
def test_matches_torch_reduce_lr_on_plateau(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kwargs: dict[str, Any] = {
        "mode": str(rng.choice(["min", "max"])),
        "threshold_mode": str(rng.choice(["rel", "abs"])),
        "threshold": float(rng.choice([0.0, 1e-3, 1e-2, 5e-2])),
        "patience": int(rng.integers(0, 5)),
        "cooldown": int(rng.integers(0, 4)),
    }
    metrics = _random_metrics(rng, 120)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, min_lr=0.0, eps=0.0, **kwargs
    )
    det = PlateauDetector(**kwargs)
    torch_fires, our_fires = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch, metric in enumerate(metrics):
            before = optimizer.param_groups[0]["lr"]
            sched.step(metric)
            if optimizer.param_groups[0]["lr"] < before:
                torch_fires.append(epoch)
            if det.step(metric):
                our_fires.append(epoch)
            assert det.num_bad_epochs == sched.num_bad_epochs, epoch
            assert det.cooldown_counter == sched.cooldown_counter, epoch
            assert det.best == sched.best, epoch
    assert our_fires == torch_fires
    assert len(metrics) == 120


def test_property_sequences_do_fire() -> None:
    """Guard for the equivalence test: its sequences must exercise plateaus and cooldowns."""
    total = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        det = PlateauDetector(patience=2, cooldown=1, threshold=1e-3)
        total += len(fire_epochs(det, _random_metrics(rng, 120)))
    assert total > 100


def test_state_round_trip_mid_cooldown() -> None:
    metrics = [1.0] + [0.9] * 13
    det = PlateauDetector(patience=1, cooldown=3, threshold=0.0)
    prefix = [det.step(m) for m in metrics[:5]]
    assert prefix == [False, False, False, True, False]
    assert det.in_cooldown and det.cooldown_counter == 2
    state = det.state_dict()
    assert all(isinstance(v, int | float | str) for v in state.values())

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded_state = torch.load(buffer, weights_only=True)

    resumed = PlateauDetector(patience=1, cooldown=3, threshold=0.0)
    resumed.load_state_dict(loaded_state)
    assert resumed.state_dict() == state
    rest = metrics[5:]
    expected = [det.step(m) for m in rest]
    assert [resumed.step(m) for m in rest] == expected
    # a fresh detector decides differently on the same continuation: the state matters
    assert fire_epochs(PlateauDetector(patience=1, cooldown=3, threshold=0.0), rest) != [
        i for i, fired in enumerate(expected) if fired
    ]


def test_state_with_infinite_best_round_trips() -> None:
    det = PlateauDetector(mode="max")
    state = det.state_dict()
    assert state["best"] == -math.inf
    other = PlateauDetector(mode="max")
    other.load_state_dict(state)
    assert other.best == -math.inf


def test_load_state_rejects_other_mode_and_missing_keys() -> None:
    with pytest.raises(ValueError, match="mode 'max'"):
        PlateauDetector(mode="min").load_state_dict(PlateauDetector(mode="max").state_dict())
    with pytest.raises(ValueError, match="cooldown_counter"):
        PlateauDetector().load_state_dict({"best": 1.0, "num_bad_epochs": 0})


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"mode": "mx"}, "'mx'"),
        ({"threshold_mode": "relative"}, "'relative'"),
        ({"patience": -1}, "patience: must be >= 0, got -1"),
        ({"patience": 1.5}, "patience: must be an integer, got 1.5"),
        ({"patience": True}, "patience: must be an integer, got true"),
        ({"cooldown": -2}, "cooldown: must be >= 0, got -2"),
        ({"threshold": -0.1}, "threshold: must be >= 0, got -0.1"),
        ({"threshold": math.nan}, "threshold: must be a number, got nan"),
        ({"threshold": "0.1"}, "threshold: must be a number, got '0.1'"),
    ],
)
def test_constructor_rejects(kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(ValueError) as info:
        PlateauDetector(**kwargs)
    assert bad in str(info.value)


@pytest.mark.parametrize(
    ("policy", "params", "monitor", "mode", "patience"),
    [
        ("range_test_on_plateau", {}, "val_loss", "min", 3),
        ("range_test_on_plateau", {}, "val_acc", "max", 3),
        ("range_test_on_plateau", {"mode": "min", "patience": 0}, "val_acc", "min", 0),
        ("reduce_on_plateau", {"cooldown": 1}, "train_acc", "max", 10),
        ("reduce_on_plateau", {"mode": "max", "patience": 2}, "val_loss", "max", 2),
    ],
)
def test_a_trial_detector_holds_its_validated_params(
    policy: str, params: dict[str, Any], monitor: str, mode: str, patience: int
) -> None:
    """The detector reads the trial's validated params in place; ``mode: null`` follows the
    monitored metric, an explicit mode wins."""
    from trainables.config import TrialConfig
    from trainables.lr import make_policy

    cfg = TrialConfig.model_validate(
        {"policy": policy, "policy_params": params, "monitor": monitor}
    )
    built = make_policy(
        cfg.policy,
        cfg.policy_params,
        base_lr=cfg.lr,
        steps_per_epoch=10,
        metric_mode=cfg.monitor_mode,
    )
    detector = built.detector  # type: ignore[attr-defined]
    assert (detector.mode, detector.patience) == (mode, patience)
    assert detector.cooldown == cfg.policy_params.cooldown  # type: ignore[union-attr]
