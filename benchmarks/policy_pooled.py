"""The default range-test policy against the constant LR over every seed of the long runs.

The long comparisons (docs/performance.md, 6b: seed CNN + Adam 1e-3, 30 epochs on 5,000
CIFAR-10 images) ran today's default policy -- ``rule: midpoint``, ``fallback:
below_divergence``, ``max_change: 10`` -- on seeds 0-4, again on seeds 5-9 and, at patience 3,
on seeds 10-14, each time with the constant LR on the same seeds. The runs are exact on one
machine (a rerun reproduces every seed; on another CPU it does not, docs/performance.md 6b, "Ten
more seeds"), so the same spec on 10-15 seeds is one population; each sweep alone
gives a 95% interval of 2-4 points. This pools the committed ``comparison.json`` files
(nothing is trained) and reports, per trigger, the paired difference over all seeds with its
95% t interval, as ``sweep compare`` does for one sweep. The same pairing joins arms run later
against committed ones: the ResNet-8 sweeps, and reduce_on_plateau at x 0.1 and x 0.04
(``plateau_cut``) against the committed x 0.3 and range-test arms
(``benchmarks/paired_prefix.py`` checks that such arms pair), and ten more seeds (15-24) of the
default policy and the x 0.3 cut, whose rerun of seed 14 must reproduce the committed one
exactly for the 20-seed pool to be read (it did not, on another CPU: that pool is printed, but
outside its reading).

    .venv/bin/python benchmarks/policy_pooled.py     # < 1 s

Patience 3 on seeds 0-4 ran with ``max_change: null``: its 6 tests all moved the LR by less
than x 10, so the limit would not have changed them (docs/performance.md 6b).
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as C

from sweep.stats import Paired, Stat


@dataclass(frozen=True)
class Arm:
    """One policy's runs in one committed comparison: ``results/<folder>/comparison.json``;
    only the ``seeds`` given, when given."""

    folder: str
    label: str
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Pool:
    """A policy and its reference, each as arms on disjoint seeds that pair up by seed."""

    name: str
    policy: tuple[Arm, ...]
    reference: tuple[Arm, ...]


CONSTANT = (Arm("policy_compare_long", "constant"), Arm("rule_decision_fresh", "constant"))
#: The default policy at patience 3: seeds 0-4, 5-9 and 10-14.
PATIENCE3 = (
    Arm("ablation_fallback_patience3_long", "range_test_below_divergence"),
    Arm("rule_decision_fresh", "midpoint_p3"),
    Arm("confirm_patience3_fresh", "range_test"),
)
#: reduce_on_plateau x 0.3 at patience 3: seeds 0-4 and 10-14.
CUT_X03 = (
    Arm("ablation_patience3_long", "reduce_on_plateau"),
    Arm("confirm_patience3_fresh", "reduce_on_plateau"),
)
POOLS = (
    Pool(
        "default policy, patience 3 - constant",
        PATIENCE3,
        (*CONSTANT, Arm("confirm_patience3_fresh", "constant")),
    ),
    Pool("default policy - reduce_on_plateau, p 3", (PATIENCE3[0], PATIENCE3[2]), CUT_X03),
    Pool(
        "default policy, patience 0 - constant",
        (
            Arm("ablation_rule_long", "range_test_midpoint"),
            Arm("rule_decision_fresh", "midpoint_p0"),
        ),
        CONSTANT,
    ),
    Pool(
        "steepest - midpoint, patience 0",
        (
            Arm("ablation_rule_long", "range_test_steepest"),
            Arm("rule_decision_fresh", "steepest_p0"),
        ),
        (
            Arm("ablation_rule_long", "range_test_midpoint"),
            Arm("rule_decision_fresh", "midpoint_p0"),
        ),
    ),
)
#: ResNet-8, seeds 0-4: the range-test arm with BatchNorm statistics settled before each test,
#: paired with the committed arms of the run before it (exact runs: the same seeds pair).
RESNET8 = "confirm_patience3_resnet8"
RESNET8_SETTLED = (Arm("confirm_patience3_resnet8_settled", "range_test"),)
#: ResNet-8, seeds 5-9 (confirm_patience3_resnet8_fresh, all three arms with today's test), and
#: seeds 0-9 together: the settled arm above for 0-4, the fresh sweep's for 5-9.
RESNET8_FRESH = "confirm_patience3_resnet8_fresh"
RESNET8_ALL = (*RESNET8_SETTLED, Arm(RESNET8_FRESH, "range_test"))
POOLS = (
    *POOLS,
    Pool("ResNet-8: settled range test - constant", RESNET8_SETTLED, (Arm(RESNET8, "constant"),)),
    Pool(
        "ResNet-8: settled - unsettled range test",
        RESNET8_SETTLED,
        (Arm(RESNET8, "range_test"),),
    ),
    Pool(
        "ResNet-8: settled - reduce_on_plateau",
        RESNET8_SETTLED,
        (Arm(RESNET8, "reduce_on_plateau"),),
    ),
    Pool(
        "ResNet-8, seeds 0-9: range test - constant",
        RESNET8_ALL,
        (Arm(RESNET8, "constant"), Arm(RESNET8_FRESH, "constant")),
    ),
    Pool(
        "ResNet-8, seeds 0-9: range test - reduce_on_plateau",
        RESNET8_ALL,
        (Arm(RESNET8, "reduce_on_plateau"), Arm(RESNET8_FRESH, "reduce_on_plateau")),
    ),
)
#: Cutting harder at a plateau (plateau_cut, seeds 0-4 and 10-14; its arms pair with the
#: committed ones by ``benchmarks/paired_prefix.py``): x 0.1 and x 0.04 against the x 0.3 cut
#: and the default range-test policy on the same seeds and detector.
HARDER_CUTS = tuple(
    Pool(
        f"reduce_on_plateau x {f} - {name}, p 3",
        (Arm("plateau_cut", f"reduce_on_plateau_x{f}"),),
        ref,
    )
    for f in ("0.1", "0.04")
    for name, ref in (("x 0.3", CUT_X03), ("default policy", (PATIENCE3[0], PATIENCE3[2])))
)
POOLS = (*POOLS, *HARDER_CUTS)
#: Ten more seeds (15-24) of the default policy and the x 0.3 cut (confirm_patience3_more), read
#: alone and pooled with seeds 0-4 and 10-14; its seed 14 reruns confirm_patience3_fresh's.
MORE = "confirm_patience3_more"
MORE_SEEDS = tuple(range(15, 25))
MORE_ARMS = (
    Arm(MORE, "range_test", MORE_SEEDS),
    Arm(MORE, "reduce_on_plateau", MORE_SEEDS),
)
POOLS = (
    *POOLS,
    Pool("default policy - reduce_on_plateau, p 3, seeds 15-24", MORE_ARMS[:1], MORE_ARMS[1:]),
    Pool(
        "default policy - reduce_on_plateau, p 3, 20 seeds on two CPUs",
        (PATIENCE3[0], PATIENCE3[2], MORE_ARMS[0]),
        (*CUT_X03, MORE_ARMS[1]),
    ),
)
#: Reruns that must reproduce a committed run exactly: (the rerun, the committed arm).
REPRODUCED = tuple(
    (Arm(MORE, label, (14,)), Arm("confirm_patience3_fresh", label, (14,)))
    for label in ("range_test", "reduce_on_plateau")
)
#: Within this many points either way, the 20-seed interval calls the two level.
LEVEL_WITHIN = 0.5
METRICS = ("final_test_acc", "best_val_acc")


@functools.cache
def committed_runs(path: Path) -> tuple[dict[str, Any], ...]:
    """The runs of one committed comparison, read once however many pools use them."""
    return tuple(json.loads(path.read_text())["runs"])


def arm_values(results: Path, arms: tuple[Arm, ...], metric: str) -> dict[str, float]:
    """Seed -> the metric, over the arms; a seed in two arms is an error, not a silent pick."""
    values: dict[str, float] = {}
    for arm in arms:
        path = results / arm.folder / "comparison.json"
        runs = [r for r in committed_runs(path) if (r.get("label") or r.get("policy")) == arm.label]
        if not runs:
            raise ValueError(f"{path}: no runs labelled {arm.label!r}")
        for run in runs:
            if arm.seeds is not None and int(run["seed"]) not in arm.seeds:
                continue
            seed = str(run["seed"])
            if seed in values:
                raise ValueError(f"{path}: seed {seed} of {arm.label!r} is already pooled")
            if run.get(metric) is not None:
                values[seed] = float(run[metric])
    return values


def pooled(results: Path, pool: Pool) -> dict[str, Any]:
    """The paired difference of each metric over the seeds both sides ran."""
    out: dict[str, Any] = {"name": pool.name}
    for metric in METRICS:
        policy = arm_values(results, pool.policy, metric)
        reference = arm_values(results, pool.reference, metric)
        seeds = sorted(set(policy) & set(reference), key=int)
        paired = Paired.of([(policy[s], reference[s]) for s in seeds])
        out[metric] = {
            "seeds": seeds,
            "n": paired.n,
            "mean": paired.mean,
            "ci95": paired.ci95,
            "better": paired.better,
            "diffs": list(paired.diffs),
            "policy": Stat.of([policy[s] for s in seeds]).mean,
            "reference": Stat.of([reference[s] for s in seeds]).mean,
        }
    return out


def reproduction(
    results: Path, reruns: tuple[tuple[Arm, Arm], ...] = REPRODUCED
) -> list[dict[str, Any]]:
    """Each rerun against its committed run, per metric and seed: both values and whether they
    are equal (exact runs reproduce to the last logged digit)."""
    out = []
    for rerun, committed in reruns:
        for metric in METRICS:
            new, old = (
                arm_values(results, (rerun,), metric),
                arm_values(results, (committed,), metric),
            )
            for seed in sorted(set(new) | set(old), key=int):
                a, b = new.get(seed), old.get(seed)
                out.append(
                    {
                        "arm": rerun.label,
                        "metric": metric,
                        "seed": seed,
                        "rerun": a,
                        "committed": b,
                        "equal": a is not None and a == b,
                    }
                )
    return out


def level_reading(row: dict[str, Any], within: float = LEVEL_WITHIN) -> str:
    """The reading of a policy - reference pool fixed before its seeds ran: level within
    ``within`` points if the 95% interval of the final test_acc lies inside (-within, +within);
    a difference in its direction if the interval excludes 0; else neither shown."""
    m = row["final_test_acc"]
    lo, hi = 100 * (m["mean"] - m["ci95"]), 100 * (m["mean"] + m["ci95"])
    if -within < lo and hi < within:
        return f"level within {within:g} points"
    if lo > 0 or hi < 0:
        return "different: the policy " + ("higher" if lo > 0 else "lower")
    return f"no difference shown, and not shown level to {within:g} points"


def line(row: dict[str, Any]) -> str:
    parts = [f"{row['name']:<52}"]
    for metric in METRICS:
        m = row[metric]
        lo, hi = 100 * (m["mean"] - m["ci95"]), 100 * (m["mean"] + m["ci95"])
        parts.append(
            f"{metric} {100 * m['mean']:+.2f} pts [{lo:+.2f}, {hi:+.2f}] "
            f"better {m['better']}/{m['n']}"
        )
    return "  ".join(parts)


def main() -> int:
    parser = C.base_parser(__doc__.splitlines()[0], quick=False)
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = [pooled(C.RESULTS_DIR, pool) for pool in POOLS]
    print("paired seed by seed: mean difference [95% t interval], seeds where better:")
    for row in rows:
        print(line(row))
    reproduced = reproduction(C.RESULTS_DIR)
    for r in reproduced:
        print(
            f"rerun of seed {r['seed']}, {r['arm']}, {r['metric']}: {r['rerun']} against the"
            f" committed {r['committed']}: {'equal' if r['equal'] else 'DIFFERENT'}"
        )
    pooled_20 = next(r for r in rows if r["name"] == POOLS[-1].name)
    reading = level_reading(pooled_20) if all(r["equal"] for r in reproduced) else None
    print(f"{pooled_20['name']}: {reading or 'not read: a rerun did not reproduce'}")
    C.write_result(
        "policy_pooled",
        {
            "seconds": time.perf_counter() - t0,
            "pools": rows,
            "reproduced": reproduced,
            "level_reading": reading,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
