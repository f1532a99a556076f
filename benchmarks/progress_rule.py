"""What the oracle's best LR follows: how far training has gone, which the range test's curve
does not see. A curve-free rule calibrated on the 24 design states, scored on 72 others.

``benchmarks/pick_offsets.py`` found that within a population the range test's pick and the
2-epoch oracle barely correlate (rho +0.15 over the 60 seed_cnn states). The oracle's moves are
not noise: on every well-set population its offset from the running LR falls with the epoch
of the state (about -0.1 .. -0.3 decade at epoch 2-3, -0.7 .. -0.9 at epoch 10-14), while the
pick stays near -0.5 decade whatever the epoch.

This fits, per optimizer and horizon, oracle offset = a + b * log10(epoch) on the 24 design
states (``--setup full``: seeds 0-3) and scores it, beside the default rule (``midpoint``) and a
fixed cut calibrated on the same 24 states (the median oracle offset per optimizer), against the
mean oracle of the other well-set populations: 36 fresh seed_cnn states (seeds 4-9), 12 on
8,000 images, 12 with weight decay and 12 on ResNet-8 with the settled test. The rule reads
the epoch and the optimizer, never the curve: it measures how much of the oracle a schedule
knows, not a range test. Nothing is trained.

The states where the policy acts are scored apart (``FULL_PLATEAU``: each constant-LR
run's first plateau, 5,000 images), by a reading fixed before they were trained
(``EXTENDS_WITHIN``), with the validation loss each LR gains there against keeping the running
LR: the oracle's, the policy's applied LR, reduce_on_plateau's x 0.3 and the progress rule's.

    .venv/bin/python benchmarks/progress_rule.py     # ~15 s
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from _oracle_analysis import HORIZONS, bootstrap_ci, quantile
from _oracle_setups import (
    FULL,
    FULL_8K,
    FULL_PLATEAU,
    FULL_PLATEAU_TEST,
    FULL_RESNET8_TEST,
    FULL_TEST,
    FULL_TEST2,
    FULL_TEST3,
    FULL_WD,
    Setup,
)
from oracle_pooled import pooled_rows

CALIBRATION: tuple[Setup, ...] = (FULL,)
VALIDATION: dict[str, tuple[Setup, ...]] = {
    "seed_cnn, fresh (36)": (FULL_TEST, FULL_TEST2, FULL_TEST3),
    "seed_cnn, 8k images (12)": (FULL_8K,),
    "seed_cnn, weight decay (12)": (FULL_WD,),
    "ResNet-8, settled (12)": (FULL_RESNET8_TEST,),
}
#: The states where the policy acts (each run's first plateau, by epoch 30), scored apart:
#: the rule was fitted on epochs 2-10 / 3-14 and is read there by a reading fixed before those
#: states were trained (``FULL_PLATEAU``; ``FULL_PLATEAU_TEST``, trained later, is
#: read by the same reading).
PLATEAU: dict[str, tuple[Setup, ...]] = {
    "seed_cnn, first plateau": (FULL_PLATEAU,),
    "seed_cnn, first plateau, fresh": (FULL_PLATEAU_TEST,),
}
#: The accuracy the range test's pick is asked for: median |error| at most this, at both horizons.
TARGET = 0.2
#: That reading: the rule extends to them if its median |error| is within the target at both
#: horizons and it is closer than the default's pick in more than half the states it answered.
EXTENDS_WITHIN = TARGET
OPTIMIZERS = ("adam", "sgd")
RULE = "ours_midpoint"  # the default
METHODS = ("midpoint", "fixed cut", "progress", "progress in steps")
#: Training images of the design states: "progress in steps" reads a state of another data
#: size at the design epoch with as many optimizer steps (8,000 images: epoch x 2).
DESIGN_TRAIN = FULL.train


def rows_of(setups: tuple[Setup, ...]) -> list[dict]:
    """The default rule's rows over ``setups``, each with its setup's training-set size."""
    out = []
    for setup in setups:
        rows, _ = pooled_rows(C.RESULTS_DIR, (setup,))
        out += [{**r, "train": setup.train} for r in rows[RULE]]
    return out


def pick_offset(row: dict) -> float | None:
    return None if row["pick"] is None else math.log10(row["pick"] / row["running_lr"])


def calibrate(rows: list[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """{optimizer: {horizon: {"slope", "intercept", "cut"}}} from the calibration rows."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for opt in OPTIMIZERS:
        out[opt] = {}
        for h in HORIZONS:
            pts = [
                (math.log10(r["epoch"]), r["oracle"][h])
                for r in rows
                if r["optimizer"] == opt and r["oracle"][h] is not None
            ]
            xs, ys = (np.array(v) for v in zip(*pts, strict=True))
            slope, intercept = np.polyfit(xs, ys, 1)
            out[opt][h] = {
                "slope": float(slope),
                "intercept": float(intercept),
                "cut": float(np.median(ys)),
                "states": len(pts),
            }
    return out


def predictions(row: dict, fit: dict[str, dict[str, dict[str, Any]]], h: str) -> dict:
    """Each method's offset for one state and horizon (None: the rule declined)."""
    f = fit[row["optimizer"]][h]
    return {
        "midpoint": pick_offset(row),
        "fixed cut": f["cut"],
        "progress": f["intercept"] + f["slope"] * math.log10(row["epoch"]),
        "progress in steps": f["intercept"]
        + f["slope"] * math.log10(row["epoch"] * row["train"] / DESIGN_TRAIN),
    }


def scores(rows: list[dict], fit: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per horizon and method: median |e| (with its 95% bootstrap interval), p90 |e|, median
    signed e and answered states; and the rank correlation of epoch and oracle offset."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {"states": len(rows), "horizon_gap": horizon_gap(rows)}
    for h in HORIZONS:
        errs: dict[str, list[float]] = {m: [] for m in METHODS}
        closer = answered = 0  # states where the progress rule is closer than the pick
        for r in rows:
            if r["oracle"][h] is None:
                continue
            pred = predictions(r, fit, h)
            for m, p in pred.items():
                if p is not None:
                    errs[m].append(p - r["oracle"][h])
            if pred["midpoint"] is not None:
                answered += 1
                closer += abs(pred["progress"] - r["oracle"][h]) < abs(
                    pred["midpoint"] - r["oracle"][h]
                )
        out[h] = {
            m: {
                "n": len(e),
                "median_abs": quantile([abs(v) for v in e], 0.5),
                "median_abs_ci": bootstrap_ci([abs(v) for v in e]),
                "p90_abs": quantile([abs(v) for v in e], 0.9),
                "bias": quantile(e, 0.5),
            }
            for m, e in errs.items()
        } | {"progress_closer": [closer, answered]}
        rho = {}
        for opt in OPTIMIZERS:
            pts = [
                (r["epoch"], r["oracle"][h])
                for r in rows
                if r["optimizer"] == opt and r["oracle"][h] is not None
            ]
            rho[opt] = float(spearmanr(*zip(*pts, strict=True))[0]) if len(pts) > 2 else None
        out[h]["epoch_rho"] = rho
    return out


def horizon_gap(rows: list[dict]) -> dict[str, Any]:
    """How far apart the two horizons' oracles lie in each state: a floor under any rule that
    gives one LR per state. Its errors at the two horizons add up to at least the gap, so in a
    state whose gap exceeds ``2 * TARGET`` no LR is within ``TARGET`` of both oracles; the LR
    halfway between them, which only a rule knowing both could give, is gap / 2 from each."""
    signed = [
        r["oracle"]["half"] - r["oracle"]["2ep"]
        for r in rows
        if r["oracle"]["half"] is not None and r["oracle"]["2ep"] is not None
    ]
    gaps = [abs(g) for g in signed]
    return {
        "states": len(gaps),
        "median": quantile(gaps, 0.5),
        "p90": quantile(gaps, 0.9),
        "median_half_minus_2ep": quantile(signed, 0.5),
        "beyond_one_lr": sum(g > 2 * TARGET for g in gaps),
        "halfway_median_abs": quantile([g / 2 for g in gaps], 0.5),
    }


def loss_gains(
    rows: list[dict], fit: dict[str, dict[str, dict[str, Any]]], setup_: Setup
) -> dict[str, dict[str, float]]:
    """Mean change of val loss against keeping the running LR, per horizon, at the oracle's
    LR, the policy's applied LR, reduce_on_plateau's x 0.3 and the progress rule's LR, each
    interpolated on every stream's oracle grid (nothing is trained at them)."""
    from _oracle_analysis import loss_at
    from oracle import load_curves

    doc = load_curves(C.RESULTS_DIR / f"{setup_.name}_curves", setup_)["states"]
    out: dict[str, dict[str, float]] = {}
    for h in HORIZONS:
        deltas: dict[str, list[float]] = {}
        for r in rows:
            lrs = {
                "oracle": r["oracle"][h],
                "policy applied": math.log10(r["applied"] / r["running_lr"]),
                "x 0.3 cut": math.log10(0.3),
                "progress": predictions(r, fit, h)["progress"],
            }
            for points in doc[r["state"]]["oracle"].values():
                keep = loss_at(points, h, 0.0)
                for name, offset in lrs.items():
                    at = None if offset is None else loss_at(points, h, offset)
                    if keep is not None and at is not None:
                        deltas.setdefault(name, []).append(at - keep)
        out[h] = {name: float(np.mean(v)) for name, v in deltas.items()}
    return out


def extends(result: dict[str, Any]) -> bool:
    """The reading fixed before the plateau states were trained (see ``EXTENDS_WITHIN``)."""
    for h in HORIZONS:
        closer, answered = result[h]["progress_closer"]
        if result[h]["progress"]["median_abs"] > EXTENDS_WITHIN or 2 * closer <= answered:
            return False
    return True


def lines(fit: dict, result: dict[str, dict[str, Any]]) -> list[str]:
    out = ["calibrated on the 24 design states: offset = a + b log10(epoch); fixed cut = median"]
    for opt in OPTIMIZERS:
        for h in HORIZONS:
            f = fit[opt][h]
            out.append(
                f"  {opt:4s} {h:4s}: a {f['intercept']:+.2f}, b {f['slope']:+.2f};"
                f" cut {f['cut']:+.2f} ({f['states']} states)"
            )
    out.append("\nmedian |e| [95% CI] / p90 / bias, decades, against the mean oracle")
    for label, res in result.items():
        for h in HORIZONS:
            cells = []
            for m in METHODS:
                s = res[h][m]
                ci = s["median_abs_ci"] or [math.nan, math.nan]
                cells.append(
                    f"{m} {s['median_abs']:.2f} [{ci[0]:.2f}-{ci[1]:.2f}] / {s['p90_abs']:.2f}"
                    f" / {s['bias']:+.2f} (n {s['n']})"
                )
            rho = ", ".join(f"{o} {v:+.2f}" for o, v in res[h]["epoch_rho"].items())
            closer, answered = res[h]["progress_closer"]
            out.append(
                f"{label:28s} {h:4s} "
                + " | ".join(cells)
                + f" | rho(epoch) {rho} | progress closer than midpoint in {closer} of {answered}"
            )
        gap = res["horizon_gap"]
        out.append(
            f"{label:28s} the two horizons' oracles lie a median {gap['median']:.2f} decade apart"
            f" (p90 {gap['p90']:.2f}; half minus 2 epochs {gap['median_half_minus_2ep']:+.2f}):"
            f" in {gap['beyond_one_lr']} of {gap['states']} states no one LR is within"
            f" {TARGET} of both; the LR halfway between them is a median"
            f" {gap['halfway_median_abs']:.2f} from each"
        )
        if "extends" in res:
            verdict = "extends to them" if res["extends"] else "holds only within its epochs"
            out.append(
                f"{label}: by the reading fixed before they were trained, the rule {verdict}"
            )
            for h, gains in res["loss_vs_keeping"].items():
                cells = ", ".join(f"{n} {v:+.3f}" for n, v in gains.items())
                out.append(f"  mean val loss change against keeping the running LR, {h}: {cells}")
    return out


def plot(fit: dict, groups: dict[str, list[dict]], path: Path) -> Path:
    """Oracle offset against epoch, per optimizer and horizon: every population's states, the
    progress rule's line (calibrated on the design states) and the default's median pick."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(fig)
    markers = dict(zip(groups, "o^sDvPX", strict=False))
    for i, h in enumerate(HORIZONS):
        for j, opt in enumerate(OPTIMIZERS):
            ax = fig.add_subplot(2, 2, i * 2 + j + 1)
            for label, rows in groups.items():
                pts = [
                    (r["epoch"], r["oracle"][h])
                    for r in rows
                    if r["optimizer"] == opt and r["oracle"][h] is not None
                ]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(xs))
                    ax.scatter(
                        np.array(xs) + jitter,
                        ys,
                        s=14,
                        alpha=0.6,
                        marker=markers[label],
                        label=label,
                    )
            epochs = sorted(
                {r["epoch"] for rows in groups.values() for r in rows if r["optimizer"] == opt}
            )
            grid = np.linspace(min(epochs), max(epochs), 50)
            f = fit[opt][h]
            ax.plot(
                grid,
                f["intercept"] + f["slope"] * np.log10(grid),
                color="black",
                label="progress rule (design states)",
            )
            picks = [
                (e, float(np.median(v)))
                for e in epochs
                if (
                    v := [
                        p
                        for rows in groups.values()
                        for r in rows
                        if r["optimizer"] == opt
                        and r["epoch"] == e
                        and (p := pick_offset(r)) is not None
                    ]
                )
            ]
            ax.plot(
                *zip(*picks, strict=True),
                color="tab:red",
                linestyle="--",
                marker="x",
                label="midpoint pick, median",
            )
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_title(f"{opt}, oracle at {h}", fontsize=9)
            ax.set_xlabel("epoch of the state", fontsize=8)
            ax.set_ylabel("log10(best lr / running lr)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="lower left")
    fig.suptitle(
        "the oracle's best LR falls with training progress; the range-test pick does not",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    design = rows_of(CALIBRATION)
    if not design:
        print("no cached curves of the design states in benchmarks/results", flush=True)
        return 1
    fit = calibrate(design)
    held_out = {label: rows_of(setups) for label, setups in VALIDATION.items()}
    pooled = [r for rows in held_out.values() for r in rows]
    groups = {"design (24, in sample)": design} | held_out
    result = {label: scores(rows, fit) for label, rows in groups.items() if rows}
    result[f"all held-out ({len(pooled)})"] = scores(pooled, fit)
    plateau = {label: rows_of(setups) for label, setups in PLATEAU.items()}
    for label, rows in plateau.items():
        if rows:
            groups[label] = rows
            scored = scores(rows, fit)
            result[label] = scored | {
                "extends": extends(scored),
                "loss_vs_keeping": loss_gains(rows, fit, PLATEAU[label][0]),
            }
    print("\n".join(lines(fit, result)), flush=True)
    out = C.write_result(
        "progress_rule",
        {"seconds": time.perf_counter() - t0, "fit": fit, "populations": result},
        args.out,
    )
    print(f"plot: {plot(fit, groups, out.with_name(f'{out.stem}.png'))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
