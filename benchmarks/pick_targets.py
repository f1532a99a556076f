"""The range-test pick's targets at a glance: one plot from ``level_rule.json``, nothing trained.

For every population of oracle states (the 24 design states, the 108 held-out well-set ones,
the 72 where the running LR is set badly, the policy's first plateau on 10 and on 12 fresh
states) and each rule -- the default ``midpoint``, the first-loss calibration (an option, off),
fastai ``steep``, torch-lr-finder's and a fixed x 0.3 cut -- the median |log10(pick / oracle)|
with its 95% bootstrap interval at half an epoch and at 2 epochs against the 0.2-decade
target, and the 2-epoch median signed error against the +-0.1-decade band.
docs/range_test_oracle.md, "Targets".

    .venv/bin/python benchmarks/pick_targets.py     # ~2 s: benchmarks/results/pick_targets.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import _common as C

SOURCE = C.RESULTS_DIR / "level_rule.json"
#: Population in level_rule.json -> its label on the plot.
POPULATIONS = {
    "design (24, in sample)": "design\n(24, in sample)",
    "well-set, all held out (108)": "well set,\nheld out (108)",
    "LR set badly, all (72)": "LR set\nbadly (72)",
    "seed_cnn, first plateau (10)": "first\nplateau (10)",
    "seed_cnn, first plateau, fresh (12)": "first plateau,\nfresh (12)",
}
#: Rule in level_rule.json -> its label.
RULES = {
    "ours_midpoint": "midpoint (default)",
    "level on a pick, declines none": "first-loss calibration (option, off)",
    "fastai_steep": "fastai steep",
    "torch_lr_finder": "torch-lr-finder",
    "baseline_lr_x0.3": "fixed x 0.3 cut",
}
MEDIAN_TARGET = 0.2
BIAS_TARGET = 0.1


def figures(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Population -> rule -> the plotted figures (median |e| and its interval per horizon, the
    2-epoch bias, the share without a suggestion)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for pop in POPULATIONS:
        scores = doc["populations"][pop]["scores"]
        out[pop] = {
            rule: {
                "half": scores[rule]["half"]["median_abs_decades"],
                "half_ci95": scores[rule]["half"]["median_abs_ci95"],
                "2ep": scores[rule]["2ep"]["median_abs_decades"],
                "2ep_ci95": scores[rule]["2ep"]["median_abs_ci95"],
                "bias_2ep": scores[rule]["2ep"]["median_signed_decades"],
                "none": scores[rule]["no_suggestion"],
            }
            for rule in RULES
        }
    return out


def plot(figs: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    pops = list(POPULATIONS)
    width = 0.8 / len(RULES)
    panels = [
        ("half", "median |log10(pick / oracle)|, half an epoch"),
        ("2ep", "median |log10(pick / oracle)|, 2 epochs"),
        ("bias_2ep", "median signed error (bias), 2 epochs; shaded: the target"),
    ]
    for j, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, j + 1)
        for i, rule in enumerate(RULES):
            xs = [p + (i - (len(RULES) - 1) / 2) * width for p in range(len(pops))]
            ys = [figs[pop][rule][key] for pop in pops]
            kw: dict[str, Any] = {"label": RULES[rule], "marker": "os^vD"[i], "linestyle": "none"}
            if key == "bias_2ep":
                ax.plot(xs, ys, **kw)
            else:
                lo = [
                    y - figs[pop][rule][f"{key}_ci95"][0] for y, pop in zip(ys, pops, strict=True)
                ]
                hi = [
                    figs[pop][rule][f"{key}_ci95"][1] - y for y, pop in zip(ys, pops, strict=True)
                ]
                ax.errorbar(xs, ys, yerr=[lo, hi], capsize=2, **kw)
        if key == "bias_2ep":
            ax.axhspan(-BIAS_TARGET, BIAS_TARGET, color="green", alpha=0.12, label="target +-0.1")
            ax.axhline(0, color="grey", linewidth=0.6)
        else:
            ax.axhline(MEDIAN_TARGET, color="green", linestyle="--", label="target 0.2")
            ax.set_ylim(0, None)
        ax.set_xticks(range(len(pops)), [POPULATIONS[p] for p in pops], fontsize=7)
        ax.set_ylabel("decades", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        if j == 0:
            ax.legend(fontsize=6.5, loc="upper left")
    fig.suptitle(
        "The range test's pick against the LR oracle (bars: 95% bootstrap interval of the median)",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="level_rule.py's result")
    parser.add_argument(
        "--out", type=Path, default=C.RESULTS_DIR / "pick_targets.png", help="the plot"
    )
    args = parser.parse_args()
    figs = figures(json.loads(args.source.read_text()))
    for pop, by_rule in figs.items():
        print(pop)
        for rule, f in by_rule.items():
            print(
                f"  {RULES[rule]:38s} {f['half']:.2f} / {f['2ep']:.2f}"
                f"  bias {f['bias_2ep']:+.2f}  none {f['none']:.0%}"
            )
    print(f"plot: {plot(figs, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
