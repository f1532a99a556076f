"""Plots written by the driver: range-test curves (tracking) and sweep comparisons (compare).

Everything here draws on a bare :class:`matplotlib.figure.Figure` attached to the
non-interactive Agg canvas, never through ``pyplot``: no global backend switch, no GUI, no
figure registry to leak, safe to call from Tune's driver loop and from tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: The y-axis label for each range-test measure (``PolicyEvent.measure``).
MEASURE_LABELS = {
    "held_out": "held-out batch loss (after the step at each LR)",
    "train_batch": "training batch loss (before the step at each LR)",
}


def _figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def range_test_figure(event: Mapping[str, Any]) -> Figure:
    """Loss vs LR (log x) of one range-test event, as the decision read it.

    Raw points; the curve smoothed exactly as the suggestion smoothed it (the event's ``beta``,
    through ``trainables.lr.analyse_curve``: the same code, not a copy); the diverging part
    shaded; the chosen, suggested and old LRs marked. The y axis names what was measured (the
    event's ``measure``). ``event`` is a policy event dict; losses may hold ``None``.
    """
    from trainables.lr import analyse_curve

    lrs_raw = list(event.get("lrs") or [])
    losses_raw = list(event.get("losses") or [])
    n = min(len(lrs_raw), len(losses_raw))
    points = [(_finite(lrs_raw[i]), _finite(losses_raw[i])) for i in range(n)]
    kept = [(lr, loss) for lr, loss in points if lr is not None and lr > 0]
    lrs = [lr for lr, _ in kept]
    losses = [loss if loss is not None else math.nan for _, loss in kept]
    beta = _finite(event.get("beta"))  # None: automatic, as the policy's default
    measure = event.get("measure")

    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color="tab:blue", alpha=0.35, linewidth=1.0, marker=".", label="raw")
    curve = None
    if len(lrs) >= 2 and all(b > a for a, b in itertools.pairwise(lrs)):
        curve = analyse_curve(lrs, losses, beta=beta)
    if curve is not None and len(curve.lrs):
        how = f"β={curve.beta:.3g}" + ("" if beta is not None else " auto")
        ax.plot(
            curve.lrs, curve.smoothed, color="tab:blue", linewidth=2.0, label=f"smoothed ({how})"
        )
        if curve.diverge_lr is not None:
            ax.axvspan(
                curve.diverge_lr, max(lrs), color="tab:red", alpha=0.08, label="diverging part"
            )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(MEASURE_LABELS.get(str(measure), "loss (measure not recorded)"))

    chosen = _finite(event.get("new_lr"))
    suggested = _finite(event.get("suggested_lr"))
    if chosen is not None and chosen > 0:
        ax.axvline(chosen, color="tab:red", linewidth=1.5, label=f"chosen lr {chosen:.3g}")
    if suggested is not None and suggested > 0 and suggested != chosen:
        ax.axvline(
            suggested,
            color="tab:orange",
            linestyle="--",
            linewidth=1.2,
            label=f"suggested lr {suggested:.3g}",
        )
    old = _finite(event.get("old_lr"))
    if old is not None and old > 0:
        ax.axvline(old, color="grey", linestyle=":", linewidth=1.0, label=f"old lr {old:.3g}")

    finite_losses = [v for v in losses if math.isfinite(v)]
    if finite_losses:  # a diverging tail would squash the part of the curve that was read
        lo = min(finite_losses)
        hi = max(curve.raw) if curve is not None and len(curve.raw) else max(finite_losses)
        if hi > lo:
            pad = 0.1 * (hi - lo)
            ax.set_ylim(lo - pad, hi + 3 * pad)

    title = f"range test, epoch {event.get('epoch', '?')}"
    if event.get("rule"):
        title += f", rule {event['rule']}"
    if event.get("stop_reason"):
        title += f", stopped: {event['stop_reason']}"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def plot_range_test(event: Mapping[str, Any], path: Path) -> Path:
    """:func:`range_test_figure` of ``event``, saved as a PNG at ``path``."""
    return _save(range_test_figure(event), path)


def _color(i: int) -> str:
    return f"C{i % 10}"


def plot_val_acc_vs_epoch(
    curves: Mapping[str, Sequence[Mapping[int, float]]],
    path: Path,
    *,
    target: float | None = None,
    band: str = "minmax",
) -> Path:
    """Mean val_acc per epoch for each policy, with a band over seeds.

    ``curves[policy]`` holds one ``{epoch: val_acc}`` per seed. ``band`` is "minmax" (min–max
    over seeds) or "std" (mean ± one sample standard deviation).
    """
    if band not in ("minmax", "std"):
        raise ValueError(f"band must be 'minmax' or 'std', got {band!r}")
    fig = _figure()
    ax = fig.add_subplot()
    for i, (policy, seeds) in enumerate(sorted(curves.items())):
        epochs = sorted({e for seed in seeds for e in seed})
        if not epochs:
            continue
        mean, lo, hi = [], [], []
        for e in epochs:
            vals = [seed[e] for seed in seeds if e in seed and math.isfinite(seed[e])]
            if not vals:
                mean.append(math.nan)
                lo.append(math.nan)
                hi.append(math.nan)
                continue
            m = sum(vals) / len(vals)
            mean.append(m)
            if band == "minmax":
                lo.append(min(vals))
                hi.append(max(vals))
            else:
                sd = (
                    math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
                    if len(vals) > 1
                    else 0.0
                )
                lo.append(m - sd)
                hi.append(m + sd)
        color = _color(i)
        ax.plot(epochs, mean, color=color, linewidth=2.0, label=f"{policy} (n={len(seeds)})")
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1.0, label=f"target {target}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    what = "min–max" if band == "minmax" else "±1 std"
    ax.set_title(f"val_acc vs epoch (mean over seeds, band: {what})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_lr_vs_step(
    traces: Mapping[str, Sequence[Sequence[tuple[int, float]]]], path: Path
) -> Path:
    """LR vs global step (log y): every seed of every policy as a faint line, one color each."""
    fig = _figure()
    ax = fig.add_subplot()
    any_positive = False
    for i, (policy, seeds) in enumerate(sorted(traces.items())):
        color = _color(i)
        for j, trace in enumerate(seeds):
            pts = sorted((s, v) for s, v in trace if math.isfinite(v) and v > 0)
            if not pts:
                continue
            any_positive = True
            ax.plot(
                [s for s, _ in pts],
                [v for _, v in pts],
                color=color,
                alpha=0.9 if j == 0 else 0.35,
                linewidth=1.4 if j == 0 else 0.9,
                label=policy if j == 0 else None,
                drawstyle="steps-post",
            )
    if any_positive:
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("global step")
    ax.set_ylabel("learning rate")
    ax.set_title("LR vs step (all seeds; first seed bold)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)
