"""What the pick's distance from the oracle costs in validation accuracy (nothing is trained).

The oracle of ``benchmarks/oracle.py`` is the LR with the lowest validation loss, and the
targets are set in decades from it; the policies are compared end to end by accuracy. Every
oracle grid point also recorded the validation accuracy at both horizons, so this reads, from
the cached curves of every oracle population, each rule's applied LR in accuracy:

- against keeping the running LR (stream 0, linear in log LR between grid points; a diverged
  point counts as chance, 10%);
- against the loss oracle and an accuracy oracle found on the state's *other* data streams and
  scored on stream 0, so that neither is chosen on the measurements it is scored by;
- the accuracy oracle's own place: how far it lies from the loss oracle, and how far it moves
  between streams (the accuracy of 2,000 validation images is a noisy measure).

    .venv/bin/python benchmarks/accuracy_cost.py   # ~5 s: results/accuracy_cost.json and .png
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as C
import numpy as np
from _oracle_analysis import (
    ACC,
    HORIZONS,
    LOSS,
    loss_at,
    quantile,
    state_rows,
    stream_oracles,
)
from _oracle_report import num
from oracle import load_curves
from oracle_pooled import POPULATIONS

from sweep.stats import Paired

#: The reading fixed before ``--setup full-plateau-test`` was trained (docs/range_test_oracle.md,
#: "The plateau's accuracy reading on fresh seeds"): on its states, the 2-epoch accuracy oracle
#: lies at least ``acc_above_loss`` decade above the loss oracle, and the half-epoch oracle at
#: least ``loss_gap`` above the 2-epoch one by loss but within ``acc_gap`` of it by accuracy.
PLATEAU_READING = {
    "population": "first plateau, fresh",
    "acc_above_loss": 0.2,
    "loss_gap": 0.3,
    "acc_gap": 0.2,
}
#: The rules shown: ours (their applied LR is the default policy's: limit x10, fallback
#: below_divergence), the reference rules (applied as picked; the running LR when none), and
#: the two ways of not testing at all.
SHOWN = (
    "ours_midpoint",
    "ours_steepest",
    "torch_lr_finder",
    "fastai_steep",
    "fastai_valley",
    "baseline_lr_x0.3",
    "baseline_keep_lr",
)
#: The oracles, found on the state's other streams and scored on stream 0.
ORACLES = {"oracle_loss_other_streams": LOSS, "oracle_acc_other_streams": ACC}
PROBE = "held_out_default"


def acc_at(points: dict[str, dict], horizon: str, offset: float) -> float | None:
    return loss_at(points, horizon, offset, which=ACC)


def _mean(found: Sequence[float | None]) -> float | None:
    kept = [o for o in found if o is not None]
    return float(np.mean(kept)) if kept else None


def other_stream_oracle(entry: dict, horizon: str, which: int) -> float | None:
    """The mean oracle offset (by loss or by accuracy) of the state's streams other than 0."""
    return _mean(stream_oracles(entry, horizon, which)[1:])


def mean_oracle(entry: dict, horizon: str, which: int) -> float | None:
    """The mean oracle offset (by loss or by accuracy) over all the state's streams."""
    return _mean(stream_oracles(entry, horizon, which))


def state_table(docs: Sequence[dict]) -> dict[str, list[dict]]:
    """Per shown rule and oracle, one row per state: the applied offset and, per horizon, the
    accuracy there, at the running LR, and the decade errors from both mean oracles."""
    out: dict[str, list[dict]] = {name: [] for name in (*SHOWN, *ORACLES)}
    for doc in docs:
        by_rule = state_rows(doc, PROBE)
        for i, base in enumerate(by_rule[SHOWN[0]]):
            entry = doc["states"][base["state"]]
            points = entry["oracle"]["0"]
            applied: dict[str, dict[str, float | None]] = {
                name: {
                    h: math.log10(by_rule[name][i]["applied"] / base["running_lr"])
                    for h in HORIZONS
                }
                for name in SHOWN
            }
            for name, which in ORACLES.items():
                applied[name] = {h: other_stream_oracle(entry, h, which) for h in HORIZONS}
            # the state's own facts, the same for every rule
            running = {h: acc_at(points, h, 0.0) for h in HORIZONS}
            oracle = {(h, w): mean_oracle(entry, h, w) for h in HORIZONS for w in (LOSS, ACC)}
            for name, offsets in applied.items():
                row: dict[str, Any] = {"state": base["state"], "applied": offsets}
                for h in HORIZONS:
                    o, loss_o, acc_o = offsets[h], oracle[h, LOSS], oracle[h, ACC]
                    row[h] = {
                        "acc": None if o is None else acc_at(points, h, o),
                        "acc_running": running[h],
                        "err_loss_oracle": None if o is None or loss_o is None else o - loss_o,
                        "err_acc_oracle": None if o is None or acc_o is None else o - acc_o,
                    }
                out[name].append(row)
    return out


def _paired(rows: list[dict], reference: list[dict], h: str) -> dict[str, Any]:
    """Accuracy (points) of ``rows`` minus ``reference``'s, state by state."""
    ref = {r["state"]: r[h]["acc"] for r in reference}
    p = Paired.of([(r[h]["acc"], ref.get(r["state"])) for r in rows])
    return {
        "states": p.n,
        "mean_points": None if p.mean is None else 100 * p.mean,
        "ci95_points": None if p.ci95 is None else 100 * p.ci95,
        "better_in": p.better,
        "worse_in": sum(d < 0 for d in p.diffs),
    }


def _errors(rows: list[dict], h: str, key: str) -> dict[str, float | None]:
    errs = [r[h][key] for r in rows if r[h][key] is not None]
    return {
        "median_abs_decades": quantile([abs(e) for e in errs], 0.5),
        "median_signed_decades": quantile(errs, 0.5),
    }


def score_population(table: dict[str, list[dict]]) -> dict[str, Any]:
    """Each rule's accuracy against keeping the LR and against the loss oracle (other
    streams), and its decade errors from the loss and the accuracy oracles."""
    out: dict[str, Any] = {}
    for name, rows in table.items():
        out[name] = {}
        for h in HORIZONS:
            keep = [{"state": r["state"], h: {"acc": r[h]["acc_running"]}} for r in rows]
            out[name][h] = {
                "vs_keep": _paired(rows, keep, h),
                "vs_loss_oracle": _paired(rows, table["oracle_loss_other_streams"], h),
                "from_loss_oracle": _errors(rows, h, "err_loss_oracle"),
                "from_acc_oracle": _errors(rows, h, "err_acc_oracle"),
                # the default rule's accuracy minus this rule's, state by state
                "default_minus_this": _paired(table[SHOWN[0]], rows, h),
            }
    return out


def oracle_facts(docs: Sequence[dict]) -> dict[str, Any]:
    """Per horizon: how far the accuracy oracle lies from the loss oracle (each the mean over
    a state's streams), and how far each oracle moves between two streams of one state."""
    out = {}
    for h in HORIZONS:
        apart, moves = [], {"loss": [], "acc": []}
        for doc in docs:
            for entry in doc["states"].values():
                by = {
                    k: [o for o in stream_oracles(entry, h, w) if o is not None]
                    for k, w in (("loss", LOSS), ("acc", ACC))
                }
                if all(by.values()):
                    apart.append(float(np.mean(by["acc"]) - np.mean(by["loss"])))
                for k, found in by.items():
                    if len(found) >= 2:
                        moves[k].append(abs(found[0] - found[1]))
        out[h] = {
            "states": len(apart),
            "acc_minus_loss_oracle_median_decades": quantile(apart, 0.5),
            "acc_minus_loss_oracle_median_abs_decades": quantile([abs(a) for a in apart], 0.5),
            "loss_oracle_stream_move_median_decades": quantile(moves["loss"], 0.5),
            "acc_oracle_stream_move_median_decades": quantile(moves["acc"], 0.5),
        }
    out["horizons"] = horizon_gaps(docs)
    return out


def horizon_gaps(docs: Sequence[dict]) -> dict[str, dict[str, float | None]]:
    """By loss and by accuracy: the half-epoch oracle minus the 2-epoch one, per state (each
    the mean over the state's streams), its median and median size."""
    out = {}
    for k, which in (("loss", LOSS), ("acc", ACC)):
        gaps = [
            half - two
            for doc in docs
            for entry in doc["states"].values()
            if (half := mean_oracle(entry, "half", which)) is not None
            and (two := mean_oracle(entry, "2ep", which)) is not None
        ]
        out[k] = {
            "states": len(gaps),
            "half_minus_2ep_median_decades": quantile(gaps, 0.5),
            "half_minus_2ep_median_abs_decades": quantile([abs(g) for g in gaps], 0.5),
        }
    return out


def plateau_reading(facts: dict[str, Any]) -> dict[str, Any]:
    """``PLATEAU_READING`` applied to one population's ``oracle_facts``."""
    r = PLATEAU_READING
    above = facts["2ep"]["acc_minus_loss_oracle_median_decades"]
    by_loss = facts["horizons"]["loss"]["half_minus_2ep_median_decades"]
    by_acc = facts["horizons"]["acc"]["half_minus_2ep_median_decades"]
    checks = {
        "acc_oracle_above_loss_oracle": above is not None and above >= r["acc_above_loss"],
        "horizons_apart_by_loss": by_loss is not None and by_loss >= r["loss_gap"],
        "horizons_together_by_acc": by_acc is not None and abs(by_acc) <= r["acc_gap"],
    }
    return {
        "acc_minus_loss_oracle_2ep": above,
        "half_minus_2ep_by_loss": by_loss,
        "half_minus_2ep_by_acc": by_acc,
        "checks": checks,
        "holds": all(checks.values()),
    }


def _pts(d: dict[str, Any]) -> str:
    if d["mean_points"] is None:
        return "-"
    ci = "" if d["ci95_points"] is None else f" ±{d['ci95_points']:.2f}"
    return f"{d['mean_points']:+.2f}{ci} ({d['better_in']}+/{d['worse_in']}-)"


def _dec(d: dict[str, float | None]) -> str:
    m, s = d["median_abs_decades"], d["median_signed_decades"]
    return "-" if m is None or s is None else f"{m:.2f} ({s:+.2f})"


def lines(name: str, states: int, facts: dict, scores: dict) -> list[str]:
    out = [f"\n{name}: {states} states"]
    for h in HORIZONS:
        f = facts[h]
        if f["states"]:
            out.append(
                f"  {h}: accuracy oracle - loss oracle "
                f"{f['acc_minus_loss_oracle_median_decades']:+.2f}"
                f" decade (median; |.| {f['acc_minus_loss_oracle_median_abs_decades']:.2f});"
                f" between streams the loss oracle moves "
                f"{num(f['loss_oracle_stream_move_median_decades'])}, the accuracy oracle "
                f"{num(f['acc_oracle_stream_move_median_decades'])}"
            )
    out.append(
        "  half-epoch oracle - 2-epoch oracle (median; |.|): "
        + ", ".join(
            f"by {k} {_signed(g['half_minus_2ep_median_decades'])} "
            f"({num(g['half_minus_2ep_median_abs_decades'])})"
            for k, g in facts["horizons"].items()
        )
    )
    head = (
        "vs keeping LR (pts)          vs loss oracle (pts)         |e| loss oracle  |e| acc oracle"
    )
    for h in HORIZONS:
        out.append(f"  {h:<4} {'rule':<27} {head}")
        for rule, s in scores.items():
            d = s[h]
            out.append(
                f"       {rule:<27} {_pts(d['vs_keep']):<28} {_pts(d['vs_loss_oracle']):<28} "
                f"{_dec(d['from_loss_oracle']):<16} {_dec(d['from_acc_oracle'])}"
            )
    default = SHOWN[0]
    for h in HORIZONS:
        pairs = [
            f"{rule} {_pts(s[h]['default_minus_this'])}"
            for rule, s in scores.items()
            if rule != default and s[h]["default_minus_this"]["states"]
        ]
        out.append(f"  {h}: {default} minus: " + "; ".join(pairs))
    return out


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


PLOTTED = (
    "ours_midpoint",
    "ours_steepest",
    "torch_lr_finder",
    "fastai_steep",
    "baseline_lr_x0.3",
    "baseline_keep_lr",
)


def plot(results: dict[str, Any], path: Path) -> Path:
    """Per horizon, each rule's validation accuracy against the loss oracle of the other
    streams (mean over states, 95% t interval), one marker per population that has one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    shown = {  # the populations with other streams to find the oracle on
        k: v
        for k, v in results.items()
        if v["rules"][PLOTTED[0]]["2ep"]["vs_loss_oracle"]["states"]
    }
    for i, h in enumerate(HORIZONS):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, (pop, res) in enumerate(shown.items()):
            ys = np.arange(len(PLOTTED)) + (j - (len(shown) - 1) / 2) * 0.13
            d = [res["rules"][r][h]["vs_loss_oracle"] for r in PLOTTED]
            xs = [x["mean_points"] if x["mean_points"] is not None else np.nan for x in d]
            err = [x["ci95_points"] or 0.0 for x in d]
            ax.errorbar(
                xs, ys, xerr=err, fmt="o", ms=4, capsize=2, label=f"{pop} ({res['states']})"
            )
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(np.arange(len(PLOTTED)), PLOTTED)
        ax.invert_yaxis()
        ax.set_title({"half": "half an epoch", "2ep": "2 epochs"}[h])
        if i == 0:
            fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    fig.suptitle("What each rule's applied LR costs in validation accuracy (mean, 95% CI)")
    fig.supxlabel(
        "val accuracy at the applied LR minus at the loss oracle of the other streams (points)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for name, setups in POPULATIONS.items():
        docs = [load_curves(C.RESULTS_DIR / f"{s.name}_curves", s) for s in setups]
        docs = [d for d in docs if d["states"]]
        if not docs:
            print(f"{name}: no cached curves in {C.RESULTS_DIR}", flush=True)
            continue
        table = state_table(docs)
        states = len(table[SHOWN[0]])
        results[name] = {
            "states": states,
            "oracles": oracle_facts(docs),
            "rules": score_population(table),
        }
        text = lines(name, states, results[name]["oracles"], results[name]["rules"])
        print("\n".join(text), flush=True)
    if not results:
        return 1
    payload: dict[str, Any] = {
        "seconds": time.perf_counter() - t0,
        "probe": PROBE,
        "populations": results,
    }
    fresh = results.get(PLATEAU_READING["population"])
    if fresh is not None:
        payload["plateau_reading"] = reading = plateau_reading(fresh["oracles"])
        verdict = "holds" if reading["holds"] else "does not hold"
        print(f"\nthe plateau's accuracy reading on fresh seeds {verdict}: {reading}", flush=True)
    written = C.write_result("accuracy_cost", payload, args.out)
    print(f"wrote {plot(results, written.with_suffix('.png'))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
