"""What benchmarks/oracle.py prints and plots: its result as text tables and scatter plots.

Formatting only; every figure comes from ``_oracle_analysis`` (the scores over the cached curves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from _oracle_analysis import DEFAULT_RULE, HORIZONS


def table(result: dict) -> str:
    lines = [f"range-test curves: {result['probe']} ({result['states']} states)"]
    lines += score_lines(result["rules"])
    if result.get("rules_vs_pooled_oracle"):
        lines.append(
            f"against the mean oracle of {result['streams']} data streams "
            f"({result['pooled_states']} states):"
        )
        lines += score_lines(result["rules_vs_pooled_oracle"])
    for h in HORIZONS:
        lines.append(f"oracle noise {h}: {result['oracle_noise'][h]}")
    lines.append(
        f"oracle half - 2ep (median decades): {result['oracle_half_minus_2ep_median_decades']}"
    )
    for against, by_rule in result["default_versus"].items():
        lines.append(
            f"{DEFAULT_RULE} vs each rule, state by state, against the oracle of {against}: "
            "median |e| difference [95% CI] (closer in / farther in)"
        )
        for name, by_h in by_rule.items():
            cells = [_paired_cell(h, d) for h, d in by_h.items()]
            lines.append(f"  {name:<30}" + "   ".join(cells))
    fallbacks = result.get("no_descent_fallbacks", {})
    if any(f["states"] for f in fallbacks.values()):
        lines.append(
            "no-descent fallbacks of the default rule, on the states it declined: val loss vs"
            " keeping the LR (mean, median; worse / better beyond the noise), applied |e|"
        )
        lines += [_delta_line(fallback, 18, f) for fallback, f in fallbacks.items()]
    policies = result.get("policies", {})
    if policies:
        lines.append(
            "policy settings on every state: val loss vs keeping the LR (mean, median;"
            " worse / better beyond the noise), applied |e|"
        )
        lines += [_delta_line(name, 34, f) for name, f in policies.items()]
    names = [f"stream {k}" for k in range(result["streams"])] + ["their mean"]
    if result["against_each_stream"]:
        lines.append(f"median |e| against each oracle stream ({' / '.join(names)}):")
    keys = [f"stream_{k}" for k in range(result["streams"])] + ["mean"]
    for name, by_h in result["against_each_stream"].items():
        cells = [
            f"{h} "
            + " / ".join(num(d[f"median_abs_decades_vs_{k}"]) for k in keys)
            + f" ({d['states']} states)"
            for h, d in by_h.items()
        ]
        lines.append(f"  {name:<30}" + "   ".join(cells))
    return "\n".join(lines)


def _delta_line(name: str, width: int, scores: dict) -> str:
    """One line of delta_scores: per horizon mean and median delta, (worse/better), |e|."""
    cells = [
        f"{h} {_delta(d['mean_delta_vs_running'])} {_delta(d['median_delta_vs_running'])}"
        f" ({d['worse']}/{d['better']}) {num(d['applied_median_abs_decades'])}"
        for h in HORIZONS
        if (d := scores[h])
    ]
    return f"  {name:<{width}}{scores['states']:>3} states  " + "   ".join(cells)


def score_lines(rules: dict[str, dict]) -> list[str]:
    """A table of ``score`` results: per horizon the median |e| (95% CI), p90, bias, the share
    worse than the running LR and the rank correlation with the oracle."""
    lines = [
        f"{'rule':<32}{'none':>6}"
        + "".join(
            f"{h + ' |e| (95% CI)':>22}{'p90':>6}{'bias':>7}{'worse':>7}{'rho':>6}"
            for h in HORIZONS
        )
    ]
    for name, s in rules.items():
        line = f"{name:<32}{_pct(s['no_suggestion']):>6}"
        for h in HORIZONS:
            d = s[h]
            ci = d["median_abs_ci95"]
            interval = f" ({num(ci[0])}-{num(ci[1])})" if ci else ""
            line += (
                f"{num(d['median_abs_decades']) + interval:>22}{num(d['p90_abs_decades']):>6}"
                f"{num(d['median_signed_decades']):>7}{_pct(d['worse_than_running']):>7}"
                f"{num((d['follows_oracle'] or {}).get('spearman')):>6}"
            )
        lines.append(line)
    return lines


def _paired_cell(horizon: str, d: dict) -> str:
    if "ci95" not in d:
        return f"{horizon} -"
    lo, hi = d["ci95"]
    return (
        f"{horizon} {d['median_abs_difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
        f" ({d['closer_in']}/{d['farther_in']} of {d['states']})"
    )


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}" if x < 0 else f"{x:.2f}"


def _delta(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def plot_scatter(
    result: dict, path: Path, rules: Sequence[str], horizon: str = "2ep", oracle: str = "oracle"
) -> Path:
    """Pick vs oracle LR (both relative to the running LR), one panel per rule."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def points(name: str, opt: str) -> list[tuple[float, float]]:
        return [
            (r["oracle"][horizon], math.log10(r["pick"] / r["running_lr"]))
            for r in result["rows"][name]
            if r["optimizer"] == opt and r["pick"] is not None and r["oracle"][horizon] is not None
        ]

    every = [p for name in rules for opt in ("adam", "sgd") for p in points(name, opt)]
    pad = 0.25  # every point stays inside the axes, however far off it lies
    xlim = (min([-3.0] + [x - pad for x, _ in every]), max([1.5] + [x + pad for x, _ in every]))
    ylim = (min([-5.0] + [y - pad for _, y in every]), max([2.0] + [y + pad for _, y in every]))
    cols = 4
    nrows = math.ceil(len(rules) / cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(rules):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for opt, color in (("adam", "tab:blue"), ("sgd", "tab:orange")):
            pts = points(name, opt)
            if pts or i == 0:  # the first panel's legend names both, picks or not
                xs, ys = zip(*pts, strict=True) if pts else ((), ())
                ax.scatter(xs, ys, s=14, color=color, label=opt)
        ax.plot(xlim, xlim, color="black", linewidth=0.8)
        for d in (-0.2, 0.2):
            ax.plot(xlim, (xlim[0] + d, xlim[1] + d), color="grey", linewidth=0.5, linestyle="--")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        s = result["rules"][name][horizon]
        ax.set_title(
            f"{name}\nmedian |e| {num(s['median_abs_decades'])}, bias "
            f"{num(s['median_signed_decades'])}",
            fontsize=8,
        )
        ax.set_xlabel(f"{oracle} ({horizon}), log10(lr / running)", fontsize=7)
        ax.set_ylabel("pick, log10(lr / running)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
