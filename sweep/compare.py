"""Compare the LR policies of a finished sweep, read back from MLflow.

:func:`compare_sweep` finds the sweep's parent run (by its tags), its FINISHED child runs (by
``mlflow.parentRunId``), reads their metric histories and summarises, per policy, over seeds:
best val_acc, final test_acc, how soon a target val_acc is reached (in epochs and in training
images, range-test images included), how many range tests ran and which LRs they chose. The
table, a JSON version and two plots go to ``out_dir`` and, by default, onto the parent run
under ``comparison/``.

Confidence intervals are two-sided 95% Student-t intervals of the mean over seeds:
``mean ± t(0.975, n-1) · s / sqrt(n)`` with the sample standard deviation ``s`` (ddof=1).

All arms of a sweep share their seeds (data split, data order, initial weights), so each policy
is also compared with a reference policy (``constant`` by default) seed by seed: the mean of
the per-seed differences over the seeds both ran, its 95% t interval, and the number of seeds
where the policy did better. Pairing removes the seed-to-seed spread that both arms share.

:func:`compare_sweeps` compares several sweeps of one spec, run on other seeds, as one
population of seeds, when :mod:`sweep.pooling` finds them poolable.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tempfile
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
from sweep.store import (
    LR_STEP_METRIC,
    RANGE_TEST_LR_METRIC,
    SPEC_ARTIFACT,
    TAG_NOT_LEARNING,
    TAG_POLICY,
    TAG_POLICY_LABEL,
    TAG_RESULTS_DIR,
    TAG_SEED,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TrackingError,
    children_filter,
    make_client,
    parent_filter,
    retrying,
    search_all_runs,
    sqlite_db_path,
)
from sweep.store_check import check_tracking_store
from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

COMPARISON_ARTIFACT_DIR = "comparison"

DEFAULT_REFERENCE = "constant"


class CompareError(ValueError):
    """A sweep that cannot be compared; the message is one line with the fix."""


# -- reading the store -------------------------------------------------------------------------
def _client(tracking_uri: str, *, must_exist: bool = True) -> MlflowClient | None:
    """A client for an existing store; None when a sqlite db is missing and must_exist=False.

    Never creates a db: MLflow would happily create an empty one (and its folder).
    """
    if not isinstance(tracking_uri, str) or not tracking_uri.strip():
        raise CompareError(f"tracking store {tracking_uri!r}: empty URI")
    if tracking_uri.startswith("sqlite:"):
        path = sqlite_db_path(tracking_uri)
        if path is None:
            raise CompareError(
                f"tracking store {tracking_uri}: an in-memory store holds no sweeps; "
                "pass the sweep's sqlite:///path/mlflow.db"
            )
        if path.is_dir():
            raise CompareError(f"tracking store {tracking_uri}: {path} is a folder, not a db")
        if not path.exists():
            if not must_exist:
                return None
            raise CompareError(
                f"tracking store {tracking_uri}: {path} does not exist; pass the store the "
                "sweep wrote to (--tracking-uri) or run `python -m sweep run --name NAME` first"
            )
    else:
        try:
            check_tracking_store(tracking_uri)
        except TrackingError as exc:
            raise CompareError(str(exc)) from None
    return make_client(tracking_uri)


def _experiment_ids(client: MlflowClient) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids.extend(str(e.experiment_id) for e in page)
        token = page.token
        if not token:
            return ids


def _parents(client: MlflowClient, experiment_ids: list[str]) -> list[Run]:
    if not experiment_ids:
        return []
    return search_all_runs(
        client, experiment_ids, parent_filter(), order_by=["attributes.start_time DESC"]
    )


def _unusable(tracking_uri: str, exc: Exception) -> CompareError:
    """One line naming the store and what went wrong with it."""
    detail = " ".join(str(exc).split())[:200]
    return CompareError(f"tracking store {tracking_uri}: unusable ({type(exc).__name__}: {detail})")


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step -> value, the latest logged value winning for a repeated step."""
    out: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        prev = out.get(m.step)
        if prev is None or m.timestamp >= prev[0]:
            out[m.step] = (m.timestamp, m.value)
    return {s: v for s, (_, v) in sorted(out.items())}


def _last(history: Mapping[int, float]) -> float | None:
    if not history:
        return None
    value = history[max(history)]
    return value if math.isfinite(value) else None


def _policy_of(run: Run) -> str:
    tags, params = run.data.tags, run.data.params
    for value in (
        tags.get(TAG_POLICY_LABEL),
        tags.get("policy_label"),
        tags.get(TAG_POLICY),
        tags.get("policy"),
        params.get("policy"),
    ):
        if value:
            return value
    return "unknown"


def group_labels(runs: Sequence[Run]) -> dict[str, str]:
    """run id -> comparison group: the policy label, plus the search-space values of the run.

    Runs of one policy label that differ in a searchable param (lr, batch_size, ... -- only a
    spec's search space varies those) are different configurations, never seeds of one:
    ``constant [lr=0.01]`` and ``constant [lr=0.1]`` are compared as two rows.
    """
    from sweep.search_space import SEARCHABLE

    by_label: dict[str, list[Run]] = {}
    for run in runs:
        by_label.setdefault(_policy_of(run), []).append(run)
    out: dict[str, str] = {}
    for label, group in by_label.items():
        varying = [key for key in SEARCHABLE if len({r.data.params.get(key) for r in group}) > 1]
        for run in group:
            values = ",".join(f"{k}={run.data.params.get(k)}" for k in varying)
            out[run.info.run_id] = f"{label} [{values}]" if values else label
    return out


def _seed_of(run: Run) -> str | None:
    return run.data.tags.get(TAG_SEED) or run.data.tags.get("seed") or run.data.params.get("seed")


def _summarise_run(
    client: MlflowClient, run: Run, target: float | None
) -> tuple[RunSummary, dict[int, float], list[tuple[int, float]]]:
    rid = run.info.run_id
    val = _history(client, rid, R.VAL_ACC)
    images = _history(client, rid, R.IMAGES_SEEN)
    test = _history(client, rid, R.TEST_ACC)
    tests_count = _history(client, rid, R.RANGE_TESTS)
    chosen = list(client.get_metric_history(rid, RANGE_TEST_LR_METRIC))
    chosen.sort(key=lambda m: (m.step, m.timestamp))
    lr_trace = sorted(_history(client, rid, LR_STEP_METRIC).items())

    finite_val = {e: v for e, v in val.items() if math.isfinite(v)}
    reached_epoch = None
    images_at = None
    if target is not None:
        for e in sorted(finite_val):
            if finite_val[e] >= target:
                reached_epoch = e
                images_at = images.get(e)
                break
    count = _last(tests_count)
    summary = RunSummary(
        run_id=rid,
        trial_id=run.data.tags.get(TAG_TRIAL_ID),
        policy=_policy_of(run),
        seed=_seed_of(run),
        epochs=max(val) if val else 0,
        best_val_acc=max(finite_val.values()) if finite_val else None,
        final_test_acc=_last(test),
        reached_epoch=reached_epoch,
        images_to_target=images_at,
        range_tests=int(count) if count is not None else len(chosen),
        range_test_lrs=[m.value for m in chosen if math.isfinite(m.value)],
        not_learning=TAG_NOT_LEARNING in run.data.tags,
    )
    return summary, finite_val, lr_trace


def _find_parent(
    client: MlflowClient, tracking_uri: str, sweep_name: str, experiment_name: str | None
) -> tuple[Run, str]:
    if experiment_name is not None:
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None or exp.lifecycle_stage != "active":
            raise CompareError(
                f"no experiment '{experiment_name}' in {tracking_uri}"
                + (" (it is deleted)" if exp is not None else "")
            )
        ids = [str(exp.experiment_id)]
    else:
        ids = _experiment_ids(client)
    parents = _parents(client, ids)
    for run in parents:  # newest first
        if run.data.tags.get(TAG_SWEEP) == sweep_name:
            exp_name = experiment_name or client.get_experiment(run.info.experiment_id).name
            return run, exp_name
    known = sorted({n for r in parents if (n := r.data.tags.get(TAG_SWEEP))})
    where = f" (experiment '{experiment_name}')" if experiment_name else ""
    hint = (
        f"; known sweeps: {', '.join(known)}"
        if known
        else f"; run `python -m sweep run --name {sweep_name}` first"
    )
    raise CompareError(f"no sweep named '{sweep_name}' in {tracking_uri}{where}{hint}")


def spec_target(client: MlflowClient, parent_run_id: str) -> float | None:
    """``target_val_acc`` of the spec the sweep ran with (its parent run's spec.yaml).

    Read as :func:`sweep.spec.target_val_acc` reads it (0.5 when absent, ``null`` -> None);
    None too when the parent run has no readable spec.yaml (a run logged by something else).
    """
    from mlflow.exceptions import MlflowException

    from sweep.spec import SpecError, parse_yaml, target_val_acc

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(parent_run_id, SPEC_ARTIFACT, tmp)
            raw = parse_yaml(Path(path).read_text())
        return target_val_acc(raw) if isinstance(raw, dict) else None
    except (MlflowException, OSError, SpecError) as exc:  # parse_yaml raises SpecError
        log.info("no target_val_acc from the sweep's spec.yaml: %s", exc)
        return None


def compare_sweep(
    tracking_uri: str,
    sweep_name: str,
    *,
    experiment_name: str | None = None,
    out_dir: Path | None = None,
    target_val_acc: float | None = None,
    reference: str | None = None,
    log_to_parent: bool = True,
) -> Comparison:
    """Read a sweep back from MLflow and compare its policies over seeds.

    ``reference``: the policy (label) the others are paired with, seed by seed; by default
    ``constant`` when the sweep has it (else no paired table). A reference the sweep does not
    have raises :class:`CompareError`.

    Only FINISHED child runs are compared (others are counted in ``Comparison.excluded``).
    Without ``target_val_acc``, the sweep spec's own ``target_val_acc`` is used.
    Writes comparison.txt/.json, val_acc_vs_epoch.png and lr_vs_step.png to ``out_dir``
    (default: :func:`default_out_dir`) and, when ``log_to_parent``, logs them to the parent run
    under ``comparison/``. Raises :class:`CompareError` with one line.
    """
    return compare_sweeps(
        tracking_uri,
        [sweep_name],
        experiment_name=experiment_name,
        out_dir=out_dir,
        target_val_acc=target_val_acc,
        reference=reference,
        log_to_parent=log_to_parent,
    )


def compare_sweeps(
    tracking_uri: str,
    sweep_names: Sequence[str],
    *,
    experiment_name: str | None = None,
    out_dir: Path | None = None,
    target_val_acc: float | None = None,
    reference: str | None = None,
    log_to_parent: bool = True,
) -> Comparison:
    """:func:`compare_sweep` over the finished trial runs of one sweep or of several pooled.

    Several sweeps are compared as one population of seeds only when
    :func:`sweep.pooling.pooling_problem` finds nothing against it (same setup, same arms,
    no seed run twice); a pooled comparison is written to ``out_dir`` (default
    ``./<A>+<B>-comparison``) and logged to no parent run: no one sweep owns it.
    """
    names = list(sweep_names)
    if not names:
        raise CompareError("no sweep named; pass the name of the sweep to compare")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CompareError(f"sweep '{twice[0]}' is named twice; name each sweep once")
    client = _client(tracking_uri)
    assert client is not None
    sources: list[tuple[Run, str]] = []
    finished: list[Run] = []
    sweep_of: dict[str, str] = {}
    excluded: dict[str, int] = {}
    for name in names:
        parent, exp_name, done, skipped = _finished_runs(
            client, tracking_uri, name, experiment_name
        )
        sources.append((parent, exp_name))
        finished += done
        sweep_of.update({r.info.run_id: name for r in done})
        for status, n in skipped.items():
            excluded[status] = excluded.get(status, 0) + n

    labels = group_labels(finished)
    problem = pooling_problem(
        [
            PooledRun(sweep_of[r.info.run_id], labels[r.info.run_id], _seed_of(r), r.data.params)
            for r in finished
        ]
    )
    if problem is not None:
        raise CompareError(problem)
    if target_val_acc is None:
        target_val_acc = _spec_target_of(client, names, sources)
    runs: list[RunSummary] = []
    curves: dict[str, list[dict[int, float]]] = {}
    traces: dict[str, list[list[tuple[int, float]]]] = {}
    for run in sorted(finished, key=lambda r: (labels[r.info.run_id], seed_key(_seed_of(r)))):
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


def _finished_runs(
    client: MlflowClient, tracking_uri: str, sweep_name: str, experiment_name: str | None
) -> tuple[Run, str, list[Run], dict[str, int]]:
    """A sweep's parent run, its experiment, its FINISHED child runs and the others' count by
    status; raises :class:`CompareError` when it has no finished child run."""
    try:
        parent, exp_name = _find_parent(client, tracking_uri, sweep_name, experiment_name)
        children = search_all_runs(
            client, [parent.info.experiment_id], children_filter(parent.info.run_id)
        )
    except CompareError:
        raise
    except Exception as exc:
        raise _unusable(tracking_uri, exc) from None
    finished = [r for r in children if r.info.status == "FINISHED"]
    excluded: dict[str, int] = {}
    for r in children:
        if r.info.status != "FINISHED":
            excluded[r.info.status] = excluded.get(r.info.status, 0) + 1
    if not finished:
        states = ", ".join(f"{n} {s}" for s, n in sorted(excluded.items())) or "none at all"
        raise CompareError(
            f"sweep '{sweep_name}' has no finished child runs (child runs: {states}); "
            f"run `python -m sweep run --name {sweep_name}` first"
        )
    return parent, exp_name, finished, excluded


def _spec_target_of(
    client: MlflowClient, names: Sequence[str], sources: Sequence[tuple[Run, str]]
) -> float | None:
    """The sweeps' common ``target_val_acc`` (from their specs); several differing ones raise."""
    targets = [spec_target(client, parent.info.run_id) for parent, _ in sources]
    if len(set(targets)) > 1:
        shown = ", ".join(f"'{n}' {t}" for n, t in zip(names, targets, strict=True))
        raise CompareError(
            f"the sweeps' specs set different target_val_acc ({shown}); pass --target-acc X"
        )
    return targets[0]


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
