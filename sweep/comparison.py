"""A sweep's comparison as values: one summary per run, one row per policy, each policy paired
with a reference policy seed by seed; and the tables they print as (made to fit 120 columns).
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweep.errors import PROG
from sweep.stats import MIN_SEEDS_FOR_CI, Paired, Stat

#: Seeds per policy the "more seeds" commands aim at (intervals are read from 3).
SEEDS_WANTED = 5
#: The widest a policy label gets in a table (longer ones are cut with "…").
POLICY_COLUMN = 32


@dataclass(frozen=True)
class PairedRow:
    """One policy against the reference policy, seed by seed."""

    policy: str
    reference: str
    seeds: list[str]  # the seeds both ran
    final_test_acc: Paired
    best_val_acc: Paired


@dataclass(frozen=True)
class SweepSource:
    """One sweep of a pooled comparison, as MLflow holds it."""

    sweep: str
    experiment: str
    parent_run_id: str


@dataclass(frozen=True)
class RunSummary:
    """What one finished child run contributes."""

    run_id: str
    trial_id: str | None
    policy: str
    seed: str | None
    epochs: int
    best_val_acc: float | None
    final_test_acc: float | None
    reached_epoch: int | None
    images_to_target: float | None
    range_tests: int
    range_test_lrs: list[float]
    not_learning: bool = False  # a plateau at chance was flagged (plateau_sweep.not_learning)


@dataclass(frozen=True)
class PolicyRow:
    policy: str
    n: int
    seeds: list[str]
    best_val_acc: Stat
    final_test_acc: Stat
    target_val_acc: float | None
    reached: int  # runs that reached the target (0 when there is no target)
    epochs_to_target: Stat  # over the runs that reached it
    images_to_target: Stat  # over the runs that reached it
    range_tests: Stat  # range tests per run
    range_test_lrs: list[float]  # every LR a range test chose, all seeds
    not_learning: int = 0  # runs with a plateau at chance

    @property
    def reached_text(self) -> str:
        return "-" if self.target_val_acc is None else f"{self.reached}/{self.n}"

    @property
    def lrs_text(self) -> str:
        lrs = sorted(self.range_test_lrs)
        if not lrs:
            return "-"
        mid = len(lrs) // 2
        median = lrs[mid] if len(lrs) % 2 else math.sqrt(lrs[mid - 1] * lrs[mid])
        return f"{median:.2e} [{lrs[0]:.2e}, {lrs[-1]:.2e}] (n={len(lrs)})"


@dataclass
class Comparison:
    tracking_uri: str
    sweep_name: str
    experiment_name: str
    parent_run_id: str
    target_val_acc: float | None
    rows: list[PolicyRow]
    runs: list[RunSummary]
    excluded: dict[str, int] = field(default_factory=dict)  # child runs not FINISHED, by status
    reference: str | None = None  # the policy the paired table compares against
    paired: list[PairedRow] = field(default_factory=list)
    results_dir: str | None = None  # the sweep's Tune folder, from its parent run
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    pooled: list[SweepSource] = field(default_factory=list)  # the sweeps, when more than one

    def row(self, policy: str) -> PolicyRow:
        for r in self.rows:
            if r.policy == policy:
                return r
        raise KeyError(policy)

    def format(self, *, wide: bool = False, more_seeds: Sequence[str] = ()) -> str:
        """Plain-text tables that fit 120 columns: per policy (mean ± std over seeds, the 95%
        interval of the final test accuracy), the range tests, and each policy paired with the
        reference seed by seed. ``wide`` adds the images-to-target and range-test columns to
        the first table (about 220 columns)."""
        head = [
            f"sweep '{self.sweep_name}': {len(self.runs)} finished trial runs",
            f"(MLflow experiment '{self.experiment_name}', parent run {self.parent_run_id})",
        ]
        if self.pooled:
            names = " + ".join(f"'{s.sweep}'" for s in self.pooled)
            head = [f"sweeps {names} pooled: {len(self.runs)} finished trial runs"]
            head += [
                f"  {s.sweep}: MLflow experiment '{s.experiment}', parent run {s.parent_run_id}"
                for s in self.pooled
            ]
        if self.excluded:
            parts = ", ".join(f"{n} {s}" for s, n in sorted(self.excluded.items()))
            head.append(f"not compared (not FINISHED): {parts}")
        head.append(
            "mean ± std over seeds; CI95: half-width of the 95% t interval of the mean"
            + (" (flagged n<3: too few seeds to read)" if self._few else "")
        )
        if self.target_val_acc is not None:
            head.append(
                f"target val_acc >= {self.target_val_acc:g}: reached = runs that got there, "
                "epochs = mean over those"
            )
        else:
            head.append("no target val_acc given (--target-acc X adds the reached columns)")
        columns = ["policy", "n", "best val_acc", "final test_acc", "CI95 test_acc"]
        if self.target_val_acc is not None:
            columns += ["reached", "epochs to target"]
        if wide:
            columns += ["images to target", "range tests", "range-test LR median [min, max]"]
        table = [columns]
        for r in self.rows:
            line = [
                _short(r.policy),
                str(r.n),
                r.best_val_acc.format(".4f"),
                r.final_test_acc.format(".4f"),
                r.final_test_acc.format_ci(".4f"),
            ]
            if self.target_val_acc is not None:
                line += [r.reached_text, r.epochs_to_target.format(".2f")]
            if wide:
                line += [
                    r.images_to_target.format(",.0f"),
                    r.range_tests.format(".2f"),
                    r.lrs_text,
                ]
            table.append(line)
        lines = [*head, "", *aligned(table)]
        if not wide:
            lines += self._format_range_tests()
        more = self._format_more_seeds(more_seeds)
        tail = [*self._format_not_learning(), *self._format_paired(), *more]
        return "\n".join([*lines, *tail]) + "\n"

    @property
    def _few(self) -> bool:
        return any(r.final_test_acc.few for r in self.rows) or any(
            len(p.seeds) < MIN_SEEDS_FOR_CI for p in self.paired
        )

    def _format_more_seeds(self, commands: Sequence[str]) -> list[str]:
        """Where the intervals are flagged, how to get more seeds: another sweep, pooled; the
        exact ``commands`` when the caller knows them (``run`` does), else their shape."""
        if not self._few:
            return []
        if commands:
            head = "too few seeds to read; more seeds, compared with these as one:"
            return ["", head, *(f"  {c}" for c in commands)]
        names = shlex.join([s.sweep for s in self.pooled] or [self.sweep_name])
        return [
            "",
            "too few seeds to read: run the sweep again with the same spec and options plus "
            f"'--seeds {self.next_seeds()} --name NEW',",
            f"then '{PROG} compare {names} NEW' compares them all as one",
        ]

    def next_seeds(self) -> str:
        """Seeds none of the runs used, enough for every policy to reach ``SEEDS_WANTED``:
        ``2-4`` after seeds 0 and 1."""
        used = [int(r.seed) for r in self.runs if r.seed is not None and r.seed.isdigit()]
        start = max(used, default=-1) + 1
        more = max(1, SEEDS_WANTED - min((r.n for r in self.rows), default=0))
        return f"{start}-{start + more - 1}"

    def _format_not_learning(self) -> list[str]:
        flagged = [
            f"{_short(r.policy)} {r.not_learning} of {r.n}" for r in self.rows if r.not_learning
        ]
        if not flagged:
            return []
        return [
            "",
            f"not learning (a plateau at chance; the lr far too high or far too low): "
            f"{', '.join(flagged)} runs",
        ]

    def _format_range_tests(self) -> list[str]:
        rows = [r for r in self.rows if r.range_test_lrs]
        if not rows:
            return []
        table = [["policy", "range tests per run", "LR chosen: median [min, max] (count)"]]
        table += [[_short(r.policy), r.range_tests.format(".2f"), r.lrs_text] for r in rows]
        return ["", *aligned(table)]

    def _format_paired(self) -> list[str]:
        if len(self.rows) < 2:  # one arm: nothing to pair it with
            return []
        if self.reference is None:
            return ["", "no paired comparison: the sweep has no 'constant' arm (pass --reference)"]
        if not self.paired:
            return []
        table = [
            [
                "policy",
                "seeds",
                "Δ final test_acc ±CI95",
                "better",
                "Δ best val_acc ±CI95",
                "better",
            ]
        ]
        for p in self.paired:
            table.append(
                [
                    _short(p.policy),
                    str(len(p.seeds)),
                    p.final_test_acc.format_short(),
                    p.final_test_acc.better_text,
                    p.best_val_acc.format_short(),
                    p.best_val_acc.better_text,
                ]
            )
        return [
            "",
            f"paired with {self.reference}, seed by seed: mean of (policy - {self.reference}) over "
            "the seeds both ran ±CI95;",
            "better: seeds where the policy is higher",
            "",
            *aligned(table),
        ]

    def to_dict(self) -> dict[str, Any]:
        def clean(obj: Any) -> Any:
            if isinstance(obj, float):
                return obj if math.isfinite(obj) else None
            if isinstance(obj, dict):
                return {k: clean(v) for k, v in obj.items()}
            if isinstance(obj, list | tuple):
                return [clean(v) for v in obj]
            return obj

        return clean(
            {
                "tracking_uri": self.tracking_uri,
                "sweep_name": self.sweep_name,
                "experiment_name": self.experiment_name,
                "parent_run_id": self.parent_run_id,
                "pooled": [asdict(s) for s in self.pooled],
                "target_val_acc": self.target_val_acc,
                "excluded": dict(self.excluded),
                "reference": self.reference,
                "paired": [asdict(p) for p in self.paired],
                "rows": [{**asdict(r), "reached_text": r.reached_text} for r in self.rows],
                "runs": [asdict(r) for r in self.runs],
            }
        )

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)


def seed_key(seed: str | None) -> tuple[int, float, str]:
    if seed is None:
        return (1, 0.0, "")
    try:
        return (0, float(seed), seed)
    except ValueError:
        return (0, math.inf, seed)


def policy_rows(runs: Sequence[RunSummary], target: float | None) -> list[PolicyRow]:
    by_policy: dict[str, list[RunSummary]] = {}
    for r in runs:
        by_policy.setdefault(r.policy, []).append(r)
    rows = []
    for policy in sorted(by_policy):
        group = sorted(by_policy[policy], key=lambda r: seed_key(r.seed))
        reached = [r for r in group if r.reached_epoch is not None]
        rows.append(
            PolicyRow(
                policy=policy,
                n=len(group),
                seeds=[r.seed for r in group if r.seed is not None],
                best_val_acc=Stat.of([r.best_val_acc for r in group]),
                final_test_acc=Stat.of([r.final_test_acc for r in group]),
                target_val_acc=target,
                reached=len(reached),
                epochs_to_target=Stat.of([r.reached_epoch for r in reached]),
                images_to_target=Stat.of([r.images_to_target for r in reached]),
                range_tests=Stat.of([float(r.range_tests) for r in group]),
                range_test_lrs=[lr for r in group for lr in r.range_test_lrs],
                not_learning=sum(r.not_learning for r in group),
            )
        )
    return rows


def aligned(table: list[list[str]]) -> list[str]:
    """Left-aligned columns, a dashed rule under the header row."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def paired_rows(runs: Sequence[RunSummary], reference: str) -> list[PairedRow]:
    """Every other policy against ``reference``, over the seeds both ran (run order kept)."""
    by_policy: dict[str, dict[str, RunSummary]] = {}
    for r in runs:
        if r.seed is not None:
            by_policy.setdefault(r.policy, {})[r.seed] = r
    ref = by_policy.get(reference, {})
    rows = []
    for policy in sorted(by_policy):
        if policy == reference:
            continue
        own = by_policy[policy]
        seeds = sorted(set(own) & set(ref), key=seed_key)
        rows.append(
            PairedRow(
                policy=policy,
                reference=reference,
                seeds=seeds,
                final_test_acc=Paired.of(
                    [(own[s].final_test_acc, ref[s].final_test_acc) for s in seeds]
                ),
                best_val_acc=Paired.of([(own[s].best_val_acc, ref[s].best_val_acc) for s in seeds]),
            )
        )
    return rows


def _short(label: str) -> str:
    return label if len(label) <= POLICY_COLUMN else label[: POLICY_COLUMN - 1] + "…"
