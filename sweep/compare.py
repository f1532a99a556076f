"""Compare the LR policies of a finished sweep, read back from MLflow.

:func:`compare_sweep` finds the sweep's parent run (by its tags), its FINISHED child runs (by
``mlflow.parentRunId``; both through :mod:`sweep.readback`), reads their metric histories and
summarises, per policy, over seeds: best val_acc, final test_acc, how soon a target val_acc is
reached (in epochs and in training images, range-test images included), how many range tests
ran and which LRs they chose. The table, a JSON version and two plots go to ``out_dir`` and, by
default, onto the parent run under ``comparison/``.

Confidence intervals are two-sided 95% Student-t intervals of the mean over seeds:
``mean ± t(0.975, n-1) · s / sqrt(n)`` with the sample standard deviation ``s`` (ddof=1).

All arms of a sweep share their seeds (data split, data order, initial weights), so each policy
is also compared with a reference policy (``constant`` by default) seed by seed: the mean of
the per-seed differences over the seeds both ran, its 95% t interval, and the number of seeds
where the policy did better. Pairing removes the seed-to-seed spread that both arms share.

Given several names, :func:`compare_sweep` compares sweeps of one spec, run on other seeds, as
one population of seeds, when :mod:`sweep.pooling` finds them poolable.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.comparison import (
    Comparison,
    RunSummary,
    SweepSource,
    paired_rows,
    policy_rows,
    seed_key,
)
from sweep.pooling import PooledRun, pooling_problem
from sweep.readback import (
    CompareError,
    client_for,
    finished_runs,
    group_labels,
    history,
    last_value,
    policy_of,
    seed_of,
    spec_target_of,
)
from sweep.store import (
    LR_STEP_METRIC,
    RANGE_TEST_LR_METRIC,
    TAG_NOT_LEARNING,
    TAG_RESULTS_DIR,
    TAG_TRIAL_ID,
    retrying,
)
from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

COMPARISON_ARTIFACT_DIR = "comparison"

DEFAULT_REFERENCE = "constant"


def _summarise_run(
    client: MlflowClient, run: Run, target: float | None
) -> tuple[RunSummary, dict[int, float], list[tuple[int, float]]]:
    rid = run.info.run_id
    val = history(client, rid, R.VAL_ACC)
    images = history(client, rid, R.IMAGES_SEEN)
    test = history(client, rid, R.TEST_ACC)
    tests_count = history(client, rid, R.RANGE_TESTS)
    chosen = list(client.get_metric_history(rid, RANGE_TEST_LR_METRIC))
    chosen.sort(key=lambda m: (m.step, m.timestamp))
    lr_trace = sorted(history(client, rid, LR_STEP_METRIC).items())

    finite_val = {e: v for e, v in val.items() if math.isfinite(v)}
    reached_epoch = None
    images_at = None
    if target is not None:
        for e in sorted(finite_val):
            if finite_val[e] >= target:
                reached_epoch = e
                images_at = images.get(e)
                break
    count = last_value(tests_count)
    summary = RunSummary(
        run_id=rid,
        trial_id=run.data.tags.get(TAG_TRIAL_ID),
        policy=policy_of(run),
        seed=seed_of(run),
        epochs=max(val) if val else 0,
        best_val_acc=max(finite_val.values()) if finite_val else None,
        final_test_acc=last_value(test),
        reached_epoch=reached_epoch,
        images_to_target=images_at,
        range_tests=int(count) if count is not None else len(chosen),
        range_test_lrs=[m.value for m in chosen if math.isfinite(m.value)],
        not_learning=TAG_NOT_LEARNING in run.data.tags,
    )
    return summary, finite_val, lr_trace


def compare_sweep(
    tracking_uri: str,
    sweep_names: str | Sequence[str],
    *,
    experiment_name: str | None = None,
    out_dir: Path | None = None,
    target_val_acc: float | None = None,
    reference: str | None = None,
    log_to_parent: bool = True,
) -> Comparison:
    """Read a sweep (a name) or several (names) back from MLflow and compare their policies
    over seeds.

    ``reference``: the policy (label) the others are paired with, seed by seed; by default
    ``constant`` when the sweep has it (else no paired table). A reference the sweep does not
    have raises :class:`CompareError`.

    Only FINISHED child runs are compared (others are counted in ``Comparison.excluded``).
    Without ``target_val_acc``, the sweep spec's own ``target_val_acc`` is used.
    Writes comparison.txt/.json, val_acc_vs_epoch.png and lr_vs_step.png to ``out_dir``
    (default: :func:`default_out_dir`) and, when ``log_to_parent``, logs them to the parent run
    under ``comparison/``. Raises :class:`CompareError` with one line.

    Several sweeps are compared as one population of seeds only when
    :func:`sweep.pooling.pooling_problem` finds nothing against it (same setup, same arms,
    no seed run twice); a pooled comparison is written to ``out_dir`` (default
    ``./<A>+<B>-comparison``) and logged to no parent run: no one sweep owns it.
    """
    names = [sweep_names] if isinstance(sweep_names, str) else list(sweep_names)
    if not names:
        raise CompareError("no sweep named; pass the name of the sweep to compare")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CompareError(f"sweep '{twice[0]}' is named twice; name each sweep once")
    client = client_for(tracking_uri)
    sources: list[tuple[Run, str]] = []
    finished: list[Run] = []
    sweep_of: dict[str, str] = {}
    excluded: dict[str, int] = {}
    for name in names:
        parent, exp_name, done, skipped = finished_runs(client, tracking_uri, name, experiment_name)
        sources.append((parent, exp_name))
        finished += done
        sweep_of.update({r.info.run_id: name for r in done})
        for status, n in skipped.items():
            excluded[status] = excluded.get(status, 0) + n

    labels = group_labels(finished)
    problem = pooling_problem(
        [
            PooledRun(sweep_of[r.info.run_id], labels[r.info.run_id], seed_of(r), r.data.params)
            for r in finished
        ]
    )
    if problem is not None:
        raise CompareError(problem)
    if target_val_acc is None:
        target_val_acc = spec_target_of(client, names, sources)
    runs: list[RunSummary] = []
    curves: dict[str, list[dict[int, float]]] = {}
    traces: dict[str, list[list[tuple[int, float]]]] = {}
    for run in sorted(finished, key=lambda r: (labels[r.info.run_id], seed_key(seed_of(r)))):
        summary, val, trace = _summarise_run(client, run, target_val_acc)
        summary = dataclasses.replace(summary, policy=labels[run.info.run_id])
        runs.append(summary)
        curves.setdefault(summary.policy, []).append(val)
        traces.setdefault(summary.policy, []).append(trace)

    shown = " + ".join(names)
    labels_run = {r.policy for r in runs}
    if reference is not None and reference not in labels_run:
        which = "sweep" if len(names) == 1 else "sweeps"
        raise CompareError(
            f"--reference {reference!r} is not a policy of {which} '{shown}' "
            f"(its policies: {', '.join(sorted(labels_run))}); pass one of those"
        )
    if reference is None and DEFAULT_REFERENCE in labels_run:
        reference = DEFAULT_REFERENCE
    parent, exp_name = sources[0]
    pooled = [
        SweepSource(name, exp, p.info.run_id) for name, (p, exp) in zip(names, sources, strict=True)
    ]
    comparison = Comparison(
        tracking_uri=tracking_uri,
        sweep_name=shown,
        experiment_name=exp_name,
        parent_run_id=parent.info.run_id,
        results_dir=parent.data.tags.get(TAG_RESULTS_DIR) if len(names) == 1 else None,
        target_val_acc=target_val_acc,
        rows=policy_rows(runs, target_val_acc),
        runs=runs,
        excluded=excluded,
        reference=reference,
        paired=paired_rows(runs, reference) if reference is not None else [],
        pooled=pooled if len(names) > 1 else [],
    )
    _write(comparison, curves, traces, out_dir)
    if log_to_parent and len(names) == 1:
        _log_to_parent(client, comparison)
    return comparison


def _write(
    comparison: Comparison,
    curves: Mapping[str, Sequence[Mapping[int, float]]],
    traces: Mapping[str, Sequence[Sequence[tuple[int, float]]]],
    out_dir: Path | None,
) -> None:
    from sweep.plots import plot_lr_vs_step, plot_val_acc_vs_epoch

    out = Path(out_dir) if out_dir is not None else default_out_dir(comparison)
    out.mkdir(parents=True, exist_ok=True)
    comparison.out_dir = out
    files = {
        "comparison.txt": out / "comparison.txt",
        "comparison.json": out / "comparison.json",
        "val_acc_vs_epoch.png": out / "val_acc_vs_epoch.png",
        "lr_vs_step.png": out / "lr_vs_step.png",
    }
    plot_val_acc_vs_epoch(curves, files["val_acc_vs_epoch.png"], target=comparison.target_val_acc)
    plot_lr_vs_step(traces, files["lr_vs_step.png"])
    comparison.files = files
    files["comparison.txt"].write_text(comparison.format())
    files["comparison.json"].write_text(comparison.to_json() + "\n")


def default_out_dir(comparison: Comparison) -> Path:
    """``comparison/`` in the sweep's results folder when that is a local folder here, else
    ``./<sweep>-comparison`` (pooled sweeps: ``./<A>+<B>-comparison``)."""
    results = comparison.results_dir
    if results and "://" not in results and Path(results).is_dir():
        return Path(results) / COMPARISON_ARTIFACT_DIR
    names = [s.sweep for s in comparison.pooled] or [comparison.sweep_name]
    safe = "+".join(re.sub(r"[^A-Za-z0-9._-]+", "_", n) for n in names)
    return Path.cwd() / f"{safe}-comparison"


def _log_to_parent(client: MlflowClient, comparison: Comparison) -> None:
    """Log the files under comparison/ on the parent; a store that stays busy only warns."""
    for name, path in comparison.files.items():
        try:
            retrying(
                f"log {name}",
                client.log_artifact,
                comparison.parent_run_id,
                str(path),
                artifact_path=COMPARISON_ARTIFACT_DIR,
            )
        except Exception as exc:
            log.warning("compare: could not log %s to the parent run: %s", name, exc)
