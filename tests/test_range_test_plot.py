"""The range-test plot names what was measured and smooths the curve as the decision did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sweep.plots import MEASURE_LABELS, plot_range_test, range_test_figure
from trainables.lr import RangeTestOnPlateauLR, RangeTestResult, analyse_curve, lr_ladder


def event(**changes: Any) -> dict[str, Any]:
    """A real policy event (to_dict), from a synthetic curve with a blow-up at the end."""
    lrs = lr_ladder(1e-6, 1.0, 30)
    x = np.log10(lrs)
    losses = 2.0 - 0.3 * (1 + np.tanh((x + 3.5) / 0.4)) / 2 + np.exp(4.0 * (x + 0.8))
    rng = np.random.default_rng(0)
    losses = losses + rng.normal(0.0, 0.01, len(losses))
    policy = RangeTestOnPlateauLR(
        base_lr=1e-3, steps_per_epoch=10, patience=0, metric_name="val_loss", **changes
    )

    def probe(min_lr: float, max_lr: float, num_steps: int, measure: str) -> RangeTestResult:
        return RangeTestResult(tuple(lrs.tolist()), tuple(losses.tolist()), "completed", 0, 0.0)

    policy.end_epoch(0, 1.0, probe)
    (ev,) = policy.end_epoch(1, 1.0, probe)
    return ev.to_dict()


def smoothed_line(fig: Any) -> Any:
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith("smoothed")]
    return line


@pytest.mark.parametrize("measure", ["held_out", "train_batch"])
def test_y_axis_names_the_measure(measure: str) -> None:
    fig = range_test_figure(event(measure=measure))
    assert fig.axes[0].get_ylabel() == MEASURE_LABELS[measure]
    assert "held-out" in MEASURE_LABELS["held_out"] and "training" in MEASURE_LABELS["train_batch"]


def test_event_without_a_measure_does_not_claim_one() -> None:
    ev = event()
    del ev["measure"]
    assert "not recorded" in range_test_figure(ev).axes[0].get_ylabel()


@pytest.mark.parametrize("beta", [None, 0.0, 0.6])
def test_curve_is_smoothed_with_the_beta_the_decision_used(beta: float | None) -> None:
    ev = event(beta=beta)
    assert ev["beta"] is not None  # the event records the beta used, automatic or not
    line = smoothed_line(range_test_figure(ev))
    decision = analyse_curve(ev["lrs"], ev["losses"], beta=ev["beta"])
    np.testing.assert_allclose(line.get_ydata(), decision.smoothed, rtol=1e-12)
    np.testing.assert_allclose(line.get_xdata(), decision.lrs, rtol=1e-12)
    assert f"β={decision.beta:.3g}" in line.get_label()


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = plot_range_test(event(), tmp_path / "sub" / "rt.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
