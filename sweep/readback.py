"""A sweep read back from its MLflow store: the parent run, the finished trial runs, their
metric histories, policy labels and seeds, and the spec's target.

What ``compare`` (:mod:`sweep.compare`) reads before it summarises anything. Every problem is a
:class:`CompareError` with one line that says what to do; the store is never created or
written here.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.store import (
    EVENTS_DIR,
    SPEC_ARTIFACT,
    TAG_POLICY,
    TAG_POLICY_LABEL,
    TAG_SEED,
    TAG_SWEEP,
    TrackingError,
    children_filter,
    make_client,
    parent_filter,
    search_all_runs,
    sqlite_db_path,
)
from sweep.store_check import check_tracking_store

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)


class CompareError(ValueError):
    """A sweep that cannot be read back or compared; the message is one line with the fix."""


def client_for(tracking_uri: str) -> MlflowClient:
    """A client for an existing store. Never creates a db: MLflow would happily create an empty
    one (and its folder)."""
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


def _parents(client: MlflowClient, experiment_ids: list[str], also: str = "") -> list[Run]:
    """Parent runs in the experiments (``also``: more of the filter), newest first."""
    if not experiment_ids:
        return []
    return search_all_runs(
        client, experiment_ids, parent_filter() + also, order_by=["attributes.start_time DESC"]
    )


def unusable(tracking_uri: str, exc: Exception) -> CompareError:
    """One line naming the store and what went wrong with it."""
    detail = " ".join(str(exc).split())[:200]
    return CompareError(f"tracking store {tracking_uri}: unusable ({type(exc).__name__}: {detail})")


def history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """step -> value, the latest logged value winning for a repeated step."""
    out: dict[int, tuple[int, float]] = {}
    for m in client.get_metric_history(run_id, key):
        prev = out.get(m.step)
        if prev is None or m.timestamp >= prev[0]:
            out[m.step] = (m.timestamp, m.value)
    return {s: v for s, (_, v) in sorted(out.items())}


def last_value(values: Mapping[int, float]) -> float | None:
    """The value at the last step, when finite."""
    if not values:
        return None
    value = values[max(values)]
    return value if math.isfinite(value) else None


def policy_of(run: Run) -> str:
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
        by_label.setdefault(policy_of(run), []).append(run)
    out: dict[str, str] = {}
    for label, group in by_label.items():
        varying = [key for key in SEARCHABLE if len({r.data.params.get(key) for r in group}) > 1]
        for run in group:
            values = ",".join(f"{k}={run.data.params.get(k)}" for k in varying)
            out[run.info.run_id] = f"{label} [{values}]" if values else label
    return out


def seed_of(run: Run) -> str | None:
    return run.data.tags.get(TAG_SEED) or run.data.tags.get("seed") or run.data.params.get("seed")


def find_parent(
    client: MlflowClient, tracking_uri: str, sweep_name: str, experiment_name: str | None = None
) -> tuple[Run, str]:
    """The sweep's newest parent run and its experiment's name, searched in ``experiment_name``
    or in every active experiment; the other sweeps are listed only to name them on a miss."""
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
    own = _parents(client, ids, f" and tags.`{TAG_SWEEP}` = '{sweep_name}'")
    if own:  # newest first
        run = own[0]
        return run, experiment_name or client.get_experiment(run.info.experiment_id).name
    known = sorted({n for r in _parents(client, ids) if (n := r.data.tags.get(TAG_SWEEP))})
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


def finished_runs(
    client: MlflowClient, tracking_uri: str, sweep_name: str, experiment_name: str | None
) -> tuple[Run, str, list[Run], dict[str, int]]:
    """A sweep's parent run, its experiment, its FINISHED child runs and the others' count by
    status; raises :class:`CompareError` when it has no finished child run."""
    try:
        parent, exp_name = find_parent(client, tracking_uri, sweep_name, experiment_name)
        children = search_all_runs(
            client, [parent.info.experiment_id], children_filter(parent.info.run_id)
        )
    except CompareError:
        raise
    except Exception as exc:
        raise unusable(tracking_uri, exc) from None
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


def spec_target_of(
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


def range_test_events(client: MlflowClient, run_id: str) -> list[dict[str, Any]]:
    """The range tests a trial run logged (``events/epoch_NNN_range_test*.json``: each test's
    curve, pick and applied LR), in epoch order; other events (retries, fallbacks) are left out."""
    events: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="plateau_sweep_readback_") as tmp:
        for art in client.list_artifacts(run_id, EVENTS_DIR):
            if art.is_dir or not art.path.endswith(".json"):
                continue
            event = json.loads(Path(client.download_artifacts(run_id, art.path, tmp)).read_text())
            if isinstance(event, dict) and event.get("kind") == "range_test":
                events.append(event)
    return sorted(events, key=lambda e: int(e.get("epoch") or 0))
