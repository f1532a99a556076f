"""Do two sweeps' arms pair seed by seed? The check that a new arm may be paired with an arm
committed by an earlier sweep.

Two arms of one spec and seed train the same steps until either first changes its LR, so the
metrics they log up to that epoch must be equal, bit for bit: the runs are exact. A difference
there means the code or the data changed between the sweeps, and a paired difference against
the committed arm would mix that change into the policy's effect. This reads both arms from
the MLflow store (nothing is trained) and compares, per shared seed, every epoch both ran at
the trial's first LR.

    .venv/bin/python benchmarks/paired_prefix.py plateau-cut confirm-patience3-fresh \\
        reduce_on_plateau reduce_on_plateau_x0.1 reduce_on_plateau_x0.04
    # a few seconds: benchmarks/results/paired_prefix.json; exit 1 if an arm does not pair
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import _common as C

METRICS = ("train_loss", "val_loss", "val_acc")


@dataclass(frozen=True)
class Prefix:
    """One seed's shared prefix: the epochs both arms trained at the first LR, and how many of
    them logged different metrics."""

    seed: str
    epochs: int
    differing: int
    first_change: int | None  # the first epoch either arm ran at another LR (None: never)


def arm_histories(
    tracking_uri: str, experiment: str, label: str, keys: tuple[str, ...] = (*METRICS, "lr")
) -> dict[str, dict[str, dict[int, float]]]:
    """Seed -> metric -> {epoch: value} of one arm's child runs, for the metrics ``keys``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: no MLflow experiment {experiment!r} in {tracking_uri}")
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.`plateau_sweep.role` = 'child' and tags.`plateau_sweep.policy_label` = '{label}'",
        max_results=1000,
    )
    if not runs:
        raise SystemExit(f"error: no runs labelled {label!r} in experiment {experiment!r}")
    out: dict[str, dict[str, dict[int, float]]] = {}
    for run in runs:
        seed = run.data.tags["plateau_sweep.seed"]
        if seed in out:
            raise SystemExit(f"error: seed {seed} of {label!r} ran twice in {experiment!r}")
        out[seed] = {
            key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
            for key in keys
        }
    return out


def shared_prefix(
    seed: str, a: dict[str, dict[int, float]], b: dict[str, dict[int, float]]
) -> Prefix:
    """Compare the epochs that both arms ran at the first LR of the trial."""
    epochs = sorted(set(a["lr"]) & set(b["lr"]))
    if not epochs:
        return Prefix(seed, 0, 0, None)
    first = a["lr"][epochs[0]]
    same_lr = [e for e in epochs if a["lr"][e] == first and b["lr"][e] == first]
    changed = [e for e in epochs if e not in same_lr]
    prefix = [e for e in same_lr if not changed or e < changed[0]]
    differing = sum(any(a[k].get(e) != b[k].get(e) for k in METRICS) for e in prefix)
    return Prefix(seed, len(prefix), differing, changed[0] if changed else None)


def check(new: dict, ref: dict) -> list[Prefix]:
    """The shared prefix of every seed both arms ran, in seed order."""
    return [shared_prefix(s, new[s], ref[s]) for s in sorted(set(new) & set(ref), key=int)]


def pairs(prefixes: list[Prefix]) -> bool:
    """The arms pair if they share a seed and every shared seed has an identical prefix."""
    return bool(prefixes) and all(p.epochs and not p.differing for p in prefixes)


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    parser.add_argument("experiment", help="the new sweep's name (its MLflow experiment)")
    parser.add_argument("reference_experiment", help="the earlier sweep's name")
    parser.add_argument("reference_label", help="the committed arm's policy label")
    parser.add_argument("labels", nargs="+", help="the new arms' policy labels")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    ref = arm_histories(args.tracking_uri, args.reference_experiment, args.reference_label)
    arms = {}
    for label in args.labels:
        prefixes = check(arm_histories(args.tracking_uri, args.experiment, label), ref)
        for p in prefixes:
            status = "identical" if p.differing == 0 and p.epochs else f"{p.differing} differ"
            print(
                f"{label} seed {p.seed:>3}: {p.epochs:2d} epochs at the first LR before either"
                f" arm changed it (epoch {p.first_change}): {status}",
                flush=True,
            )
        arms[label] = {"pair": pairs(prefixes), "seeds": [asdict(p) for p in prefixes]}
        seeds = ", ".join(p.seed for p in prefixes) or "none shared"
        print(
            f"{label} ({args.experiment}) and {args.reference_label}"
            f" ({args.reference_experiment}): {'pair' if arms[label]['pair'] else 'do NOT pair'}"
            f" (seeds: {seeds})",
            flush=True,
        )
    reference = {"experiment": args.reference_experiment, "label": args.reference_label}
    C.write_result(
        "paired_prefix",
        {"experiment": args.experiment, "reference": reference, "arms": arms},
        args.out,
    )
    return 0 if all(a["pair"] for a in arms.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
