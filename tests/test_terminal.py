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
