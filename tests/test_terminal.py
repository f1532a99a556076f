"""sweep/terminal.py: the one line a range test prints, from real policy decisions."""

from __future__ import annotations

from typing import Any

import pytest
from test_lr_policies import FakeProbe, make_rtp, plateau_now

from sweep.terminal import range_test_line


@pytest.mark.parametrize(
    ("shape", "settings", "says"),
    [
        ("u", {}, ["(range test suggested ", "(midpoint))"]),
        ("u", {"max_change": 2.0}, ["(midpoint), kept within a factor 2 of 0.01)"]),
        ("flat", {"fallback": "cut"}, ["(no suggestion (", "); fell back to lr x 0.1)"]),
        ("flat", {}, ["fell back to the same lr (the loss never diverged))"]),
        ("rising", {}, ["(no suggestion (", "fell back to 0.1 x ", "where the loss began to"]),
    ],
)  # fmt: skip
def test_the_line_says_how_the_lr_was_chosen(
    shape: str, settings: dict[str, Any], says: list[str]
) -> None:
    """The whole decision is shown -- a fallback's how, a limit -- but the LR move only once."""
    (event,) = plateau_now(make_rtp(num_steps=30, **settings), FakeProbe(shape))
    line = range_test_line(event.to_dict())
    assert line.startswith(f"epoch 1 range test: lr 0.01 -> {event.new_lr:.3g} (")
    for part in says:
        assert part in line
    assert line.count(" -> ") == 1 and not line.endswith(f"-> {event.new_lr:.3g})")


def test_an_event_without_a_decision_shows_the_move_only() -> None:
    event = {"epoch": 3, "reason": "lr 0.001 -> 0.0003", "old_lr": 1e-3, "new_lr": 3e-4}
    assert range_test_line(event) == "epoch 3 range test: lr 0.001 -> 0.0003"


class FakeClock:
    """Stands in for the ``time`` module Tune's ``warn_if_slow`` reads: each call to ``time()``
    moves on by ``step`` seconds, so a timed block "takes" exactly ``step``."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def time(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(
    ("verbose", "user_value", "step", "warned"),
    [
        (True, None, 0.6, True),  # Ray's own 0.5 s: a 0.6 s step is reported
        (False, None, 0.6, False),  # the sweep's terminal: not below 2 s
        (False, None, 2.1, True),
        (False, "0.3", 0.4, True),  # a threshold the user set is kept
    ],
)  # fmt: skip
def test_slow_step_warnings_start_at_two_seconds(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    verbose: bool,
    user_value: str | None,
    step: float,
    warned: bool,
) -> None:
    """Tune warns of every driver step over 0.5 s ("... may be a performance bottleneck"); on a
    machine whose cores all train, the callbacks recording a result have taken 0.51 s."""
    import logging

    from ray.tune.utils import util

    from sweep.terminal import SLOW_STEP_S, quiet_ray

    monkeypatch.setattr(util.warn_if_slow, "DEFAULT_THRESHOLD", 0.5)  # restored afterwards
    monkeypatch.setattr(util, "START_OF_TIME", 0.0)  # Tune is silent in a process's first 60 s
    monkeypatch.setattr(util, "time", FakeClock(step))
    for key in ("TUNE_WARN_THRESHOLD_S", "TUNE_PRINT_ALL_TRIAL_ERRORS", "MLFLOW_LOGGING_LEVEL"):
        monkeypatch.setenv(key, "")  # so that the unset below is undone: quiet_ray sets them
        monkeypatch.delenv(key)
    tune_log, mlflow_log = logging.getLogger("ray.tune.tune"), logging.getLogger("mlflow")
    monkeypatch.setattr(tune_log, "filters", list(tune_log.filters))  # quiet_ray adds one
    request.addfinalizer(lambda level=mlflow_log.level: mlflow_log.setLevel(level))
    if user_value is not None:
        monkeypatch.setenv("TUNE_WARN_THRESHOLD_S", user_value)
        monkeypatch.setattr(util.warn_if_slow, "DEFAULT_THRESHOLD", float(user_value))
    quiet_ray(verbose)
    with caplog.at_level(logging.WARNING, logger=util.__name__), util.warn_if_slow("log_batch"):
        pass
    assert ("may be a performance bottleneck" in caplog.text) is warned, caplog.text
    if not verbose and user_value is None:
        assert util.warn_if_slow.DEFAULT_THRESHOLD == SLOW_STEP_S
