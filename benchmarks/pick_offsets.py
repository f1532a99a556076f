"""What does the range test's pick know? Its offset from the running LR against the oracle's,
per model, data recipe and optimizer, from the cached curves of every well-set oracle setup.

The median |error| of a rule mixes two things: whether its picks sit at the right *level*
for a kind of state (how far below the running LR the best LR lies for this model and
optimizer) and whether they move with the oracle *from state to state*. This splits them. Per
group of states (one setup or pool of setups, one optimizer):

- the median offset, log10(lr / running LR), of the oracle and of each rule's picks, and their
  difference (the group's bias);
- Spearman's rank correlation of pick and oracle within the group;
- the spread left when each group's own bias is taken out, median |e - median e| (decades):
  the best a per-group calibrated version of the rule could do, in sample;
- the same for a fixed cut (every state at one offset from the running LR): median
  |oracle - median oracle|, the best any rule could do that ignores the curve -- over all
  states, and over the states each rule answered (ours decline curves without a descent).

A rule whose spread is no smaller than the fixed cut's knows nothing about the state that the
group's median offset does not. Nothing is trained and nothing is chosen on it.

    .venv/bin/python benchmarks/pick_offsets.py     # ~15 s
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from _oracle_analysis import HORIZONS, quantile
from _oracle_setups import (
    FULL,
    FULL_8K,
    FULL_RESNET8_TEST,
    FULL_TEST,
    FULL_TEST2,
    FULL_TEST3,
    FULL_WD,
    Setup,
)
from oracle_pooled import pooled_rows

#: The populations, each scored against its states' mean oracle. ResNet-8 is the settled test
#: (today's default); the first ResNet-8 set has no settled curves.
POPULATIONS: dict[str, tuple[Setup, ...]] = {
    "seed_cnn, 4k images (60 states)": (FULL, FULL_TEST, FULL_TEST2, FULL_TEST3),
    "seed_cnn, 8k images (12)": (FULL_8K,),
    "seed_cnn, weight decay (12)": (FULL_WD,),
    "ResNet-8, settled (12)": (FULL_RESNET8_TEST,),
}
RULES = ("ours_midpoint", "ours_steepest", "fastai_steep", "torch_lr_finder")
OPTIMIZERS = ("adam", "sgd")


def population_rows(results_dir: Path) -> dict[str, dict[str, list[dict]]]:
    """{population: {rule: rows}} for the populations with cached curves, read once."""
    out = {}
    for label, setups in POPULATIONS.items():
        rows, _ = pooled_rows(results_dir, setups)
        if rows[RULES[0]]:
            out[label] = {name: rows[name] for name in RULES}
    return out


def offset(row: dict) -> float:
    """The pick's offset from the running LR (decades); only for a row with a pick."""
    return math.log10(row["pick"] / row["running_lr"])


def spread_around_median(values: list[float]) -> float | None:
    """median |v - median v|: what is left once the group's own level is taken out."""
    if not values:
        return None
    centre = float(np.median(values))
    return quantile([abs(v - centre) for v in values], 0.5)


def rank_correlation(pairs: list[tuple[float, float]]) -> float | None:
    """Spearman's rho of (pick, oracle) pairs; None when either side never moves."""
    from scipy.stats import spearmanr

    if len(pairs) < 3 or len({p for p, _ in pairs}) < 2 or len({o for _, o in pairs}) < 2:
        return None
    return float(spearmanr([p for p, _ in pairs], [o for _, o in pairs])[0])


def group_summary(rows: dict[str, list[dict]]) -> dict[str, Any]:
    """One group's oracle level and spread, and each rule's level, bias, rho and spread."""
    states = rows[RULES[0]]
    out: dict[str, Any] = {"n": len(states), "oracle": {}, "rules": {}}
    for h in HORIZONS:
        oracles = [r["oracle"][h] for r in states if r["oracle"][h] is not None]
        out["oracle"][h] = {
            "median_offset": quantile(oracles, 0.5),
            "fixed_cut_spread": spread_around_median(oracles),
        }
    for name in RULES:
        picked = [(offset(r), r) for r in rows[name] if r["pick"] is not None]
        entry: dict[str, Any] = {
            "picks": len(picked),
            "median_offset": quantile([p for p, _ in picked], 0.5),
        }
        for h in HORIZONS:
            pairs = [(p, r["oracle"][h]) for p, r in picked if r["oracle"][h] is not None]
            entry[h] = {
                "bias": quantile([p - o for p, o in pairs], 0.5),
                "spearman": rank_correlation(pairs),
                "spread_without_bias": spread_around_median([p - o for p, o in pairs]),
                # the fixed cut on the states this rule answered: the fair comparison
                "fixed_cut_spread_same_states": spread_around_median([o for _, o in pairs]),
            }
        out["rules"][name] = entry
    return out


def summarise(populations: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, Any]]:
    """{population: {"all" | optimizer: group summary}}."""
    out: dict[str, dict[str, Any]] = {}
    for label, rows in populations.items():
        groups = {"all": rows} | {
            opt: {k: [r for r in v if r["optimizer"] == opt] for k, v in rows.items()}
            for opt in OPTIMIZERS
        }
        out[label] = {g: group_summary(r) for g, r in groups.items() if r[RULES[0]]}
    return out


def _f(x: float | None, signed: bool = True) -> str:
    return "-" if x is None else (f"{x:+.2f}" if signed else f"{x:.2f}")


def lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """A table per horizon: level of oracle and picks, bias, rho, spreads."""
    out = []
    for h in HORIZONS:
        out.append(
            f"\n{h}: offsets log10(lr / running); spread = median |e - median e| of the rule"
            " / of a fixed cut on the states it answered"
        )
        out.append(
            f"{'population':34s} {'opt':4s} {'n':>3s} {'oracle':>7s} {'cut spr':>7s}   "
            + "   ".join(f"{n.replace('ours_', ''):>27s}" for n in RULES)
        )
        out.append(f"{'':55s}" + "   ".join(f"{'pick  bias   rho  spr/cut':>27s}" for _ in RULES))
        for label, groups in summary.items():
            for g, s in groups.items():
                cells = []
                for name in RULES:
                    r = s["rules"][name]
                    cells.append(
                        f"{_f(r['median_offset'])} {_f(r[h]['bias'])} {_f(r[h]['spearman'])} "
                        f"{_f(r[h]['spread_without_bias'], False)}/"
                        f"{_f(r[h]['fixed_cut_spread_same_states'], False)}"
                    )
                out.append(
                    f"{label:34s} {g:4s} {s['n']:3d} {_f(s['oracle'][h]['median_offset']):>7s} "
                    f"{_f(s['oracle'][h]['fixed_cut_spread'], False):>7s}   "
                    + "   ".join(f"{c:>27s}" for c in cells)
                )
    return out


def plot(
    populations: dict[str, dict[str, list[dict]]], path: Path, rule: str = "ours_midpoint"
) -> Path:
    """Pick vs oracle offset, one panel per population and horizon; group medians marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(len(populations), 1)
    fig = Figure(figsize=(3.3 * cols, 6.6), layout="constrained")
    FigureCanvasAgg(fig)
    lim = (-2.0, 1.0)
    cut = math.log10(0.3)
    for row, h in enumerate(HORIZONS):
        for col, (label, by_rule) in enumerate(populations.items()):
            rows = by_rule[rule]
            ax = fig.add_subplot(2, cols, row * cols + col + 1)
            for opt, color in (("adam", "tab:blue"), ("sgd", "tab:orange")):
                pts = [
                    (r["oracle"][h], offset(r))
                    for r in rows
                    if r["optimizer"] == opt
                    and r["pick"] is not None
                    and r["oracle"][h] is not None
                ]
                if not pts:
                    continue
                xs, ys = (np.clip(v, *lim) for v in zip(*pts, strict=True))
                ax.scatter(xs, ys, s=14, color=color, alpha=0.7, label=opt)
                ax.scatter(
                    [np.median(xs)],
                    [np.median(ys)],
                    s=120,
                    marker="X",
                    color=color,
                    edgecolor="black",
                    linewidth=0.8,
                )
            ax.plot(lim, lim, color="black", linewidth=0.8, label="pick = oracle")
            ax.axhline(cut, color="grey", linewidth=0.8, linestyle="--", label="x 0.3 cut")
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_title(f"{label}\n{h}", fontsize=8)
            ax.set_xlabel("oracle, log10(lr / running)", fontsize=7)
            ax.set_ylabel(f"{rule} pick, log10(lr / running)", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(
        "range-test pick vs oracle (X: group median; points clipped to the axes)", fontsize=9
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    populations = population_rows(C.RESULTS_DIR)
    if not populations:
        print("no cached well-set curves in benchmarks/results", flush=True)
        return 1
    summary = summarise(populations)
    print("\n".join(lines(summary)), flush=True)
    out = C.write_result(
        "pick_offsets",
        {"seconds": time.perf_counter() - t0, "rules": list(RULES), "populations": summary},
        args.out,
    )
    print(f"plot: {plot(populations, out.with_name(f'{out.stem}.png'))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
