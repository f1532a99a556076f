"""What the cut's depth does after a plateau, in loss and in accuracy: arms read from MLflow.

The first-plateau oracle (``oracle.py --setup full-plateau``) ranks LRs by validation loss two
epochs on; the end-to-end comparisons rank policies by final test accuracy. This reads, for
arms that share a detector and seeds (``benchmarks/specs/plateau_cut.yaml`` and the committed
arms it pairs with), each seed's validation loss two epochs after the reference arm's first LR
change (the oracle's horizon), the final validation and test loss, and the final test accuracy,
and pairs each arm with the reference seed by seed. Nothing is trained.

    .venv/bin/python benchmarks/cut_outcomes.py confirm-patience3-fresh:reduce_on_plateau \\
        plateau-cut:reduce_on_plateau_x0.1 plateau-cut:reduce_on_plateau_x0.04 \\
        confirm-patience3-fresh:range_test     # a few seconds: results/cut_outcomes.json
"""

from __future__ import annotations

from typing import Any

import _common as C
from paired_prefix import arm_histories

from sweep.stats import Paired, Stat

#: The oracle's longer horizon, in epochs after the cut.
HORIZON = 2
KEYS = ("lr", "val_loss", "test_loss", "test_acc")
OUTCOMES = ("val_loss_after_cut", "final_val_loss", "test_loss", "test_acc")


def first_change(lr: dict[int, float]) -> int | None:
    """The first epoch logged at another LR than the run's first (None: never changed)."""
    epochs = sorted(lr)
    return next((e for e in epochs if lr[e] != lr[epochs[0]]), None)


def outcomes(hist: dict[str, dict[int, float]], cut: int | None) -> dict[str, float | None]:
    """One run's outcomes; the loss after the cut is None when there was no cut, or the run
    ended before ``HORIZON`` epochs followed it."""
    last = max(hist["val_loss"]) if hist["val_loss"] else None
    final = {k: hist[k][max(hist[k])] if hist[k] else None for k in ("test_loss", "test_acc")}
    return {
        "val_loss_after_cut": None if cut is None else hist["val_loss"].get(cut + HORIZON),
        "final_val_loss": None if last is None else hist["val_loss"][last],
        **final,
    }


def compare(
    arms: dict[str, dict[str, dict[str, dict[int, float]]]], reference: str
) -> dict[str, Any]:
    """Per arm: each outcome's mean over the shared seeds and its paired difference against
    the reference, measured at the reference's first cut of each seed."""
    ref = arms[reference]
    seeds = sorted(set.intersection(*(set(a) for a in arms.values())), key=int)
    cuts = {s: first_change(ref[s]["lr"]) for s in seeds}
    values = {name: {s: outcomes(a[s], cuts[s]) for s in seeds} for name, a in arms.items()}
    out: dict[str, Any] = {"seeds": seeds, "cuts": cuts, "arms": {}}
    for name, per_seed in values.items():
        row: dict[str, Any] = {}
        for k in OUTCOMES:
            mine = [per_seed[s][k] for s in seeds]
            paired = Paired.of([(per_seed[s][k], values[reference][s][k]) for s in seeds])
            row[k] = {
                "mean": Stat.of(mine).mean,
                "diff": paired.mean,
                "ci95": paired.ci95,
                "lower": sum(d < 0 for d in paired.diffs),
                "n": paired.n,
            }
        out["arms"][name] = row
    return out


def lines(result: dict[str, Any], reference: str) -> list[str]:
    out = [
        f"seeds {', '.join(result['seeds'])}; first cut of {reference} at epochs"
        f" {', '.join(str(result['cuts'][s]) for s in result['seeds'])};"
        f" loss after the cut at +{HORIZON} epochs; paired against {reference}"
    ]
    for name, row in result["arms"].items():
        cells = []
        for k in OUTCOMES:
            v = row[k]
            if v["mean"] is None:
                cells.append(f"{k} -")
                continue
            paired = Paired(v["n"], v["diff"], v["ci95"])  # formatted as ``sweep compare`` does
            diff = (
                ""
                if name == reference
                else f" ({paired.format_short()}, lower in {v['lower']}/{v['n']})"
            )
            cells.append(f"{k} {v['mean']:.4f}{diff}")
        out.append(f"{name:50s} " + " | ".join(cells))
    return out


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    parser.add_argument("reference", help="EXPERIMENT:LABEL of the reference arm")
    parser.add_argument("arms", nargs="+", help="EXPERIMENT:LABEL of each other arm")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    arms = {}
    for spec in (args.reference, *args.arms):
        experiment, sep, label = spec.partition(":")
        if not sep or not experiment or not label:
            parser.error(
                f"arm {spec!r}: give EXPERIMENT:LABEL, e.g. plateau-cut:reduce_on_plateau_x0.1"
            )
        arms[spec] = arm_histories(args.tracking_uri, experiment, label, KEYS)
    result = compare(arms, args.reference)
    if not result["seeds"]:
        print("error: the arms share no seed", flush=True)
        return 1
    print("\n".join(lines(result, args.reference)), flush=True)
    C.write_result("cut_outcomes", result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
