"""The MLflow store a sweep writes: the names of its tags and metrics, the client, the queries
that find a sweep's runs again, and the retry rule for a busy store.

Layout (one experiment per sweep name, tagged ``mlflow.experimentKind=custom_model_development``
so MLflow treats it as model training)::

    parent run  tags plateau_sweep.sweep=<name>, plateau_sweep.role=parent, provenance
      │         artifacts spec.yaml (+ comparison/ written by sweep.compare)
      └─ child run per trial  named "<policy label> · seed <seed>" (+ search-space values)
                              tags mlflow.parentRunId, plateau_sweep.role=child,
                              plateau_sweep.{trial_id,policy,seed,node_id,hostname,device,...}
                              params the flat trial config (policy_params.patience, ...)
                              metrics EPOCH_METRICS (step=epoch), test_* (step=last epoch),
                                      best_val_acc (running max, step=epoch),
                                      lr_step (step=global step), range_test_lr (step=epoch)
                              artifacts events/epoch_NNN_<kind>.json,
                                        events/epoch_NNN_range_test.png

The trial→run mapping lives in MLflow itself (tags), so a new driver finds the same parent and
child runs again.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

T = TypeVar("T")

TAG_SWEEP = "plateau_sweep.sweep"
TAG_ROLE = "plateau_sweep.role"
ROLE_PARENT = "parent"
ROLE_CHILD = "child"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_TRIAL_ID = "plateau_sweep.trial_id"
TAG_POLICY = "plateau_sweep.policy"
TAG_POLICY_LABEL = "plateau_sweep.policy_label"
TAG_SEED = "plateau_sweep.seed"
TAG_ERROR = "plateau_sweep.error"  # one line: the last line of the trial's error
TAG_ERROR_DETAIL = "plateau_sweep.error_detail"  # tail of the trial's error text
TAG_PREVIOUS_ERROR_DETAIL = "plateau_sweep.previous_error_detail"  # its traceback (tail)
TAG_PREVIOUS_ERROR = "plateau_sweep.previous_error"  # an error the trial was retried after
TAG_FAILURES = "plateau_sweep.failures"
TAG_CHECKPOINT_FALLBACK = "plateau_sweep.checkpoint_fallback"  # restored past a damaged one
TAG_NOT_LEARNING = "plateau_sweep.not_learning"  # the latest plateau at chance, in one line
TAG_LAST_EPOCH = "plateau_sweep.last_epoch"  # highest epoch whose metrics are logged
TAG_FINAL_LOGGED = "plateau_sweep.final_logged"  # test_* metrics logged
TAG_RESUMES = "plateau_sweep.resumes"
TAG_SPEC_PATH = "plateau_sweep.spec_path"
TAG_RESULTS_DIR = "plateau_sweep.results_dir"  # the sweep's Tune folder (storage/name)
TAG_TRIALS_FINISHED = "plateau_sweep.trials_finished"
TAG_TRIALS_FAILED = "plateau_sweep.trials_failed"
TAG_TRIALS_TOTAL = "plateau_sweep.trials_total"
NODE_TAGS = {
    R.NODE_ID: "plateau_sweep.node_id",
    R.HOSTNAME: "plateau_sweep.hostname",
    R.DEVICE: "plateau_sweep.device",
    R.PID: "plateau_sweep.pid",
}
LR_STEP_METRIC = "lr_step"
RANGE_TEST_LR_METRIC = "range_test_lr"  # the LR a range test chose (new_lr), step = epoch
BEST_VAL_ACC_METRIC = "best_val_acc"  # highest val_acc so far, step = epoch (a table column)
#: The experiment kind MLflow's UI reads (values in mlflow/server/js): model training, not GenAI
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
SPEC_ARTIFACT = "spec.yaml"
EVENTS_DIR = "events"

RUN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")


class TrackingError(ValueError):
    """A tracking store that cannot be used; the message is one line naming the URI."""


# -- where a store lives -------------------------------------------------------------------------
def _sqlite_path(uri: str) -> str:
    """The file path of a ``sqlite:///...`` URI (SQLAlchemy's rule: 3 slashes = relative)."""
    rest = uri[len("sqlite://") :]
    if rest.startswith("/"):
        rest = rest[1:]
    return rest.split("?", 1)[0]


def sqlite_db_path(uri: str) -> Path | None:
    """The db file of a sqlite tracking URI, or None for other URIs and in-memory stores."""
    if not uri.startswith("sqlite:"):
        return None
    path = _sqlite_path(uri)
    if path in ("", ":memory:"):
        return None
    return Path(path)


def normalize_tracking_uri(uri: str, cwd: Path) -> str:
    """Relative sqlite/file-store paths become absolute, so every process agrees on them."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        rest = uri[len(prefix) :]
        if rest and not rest.startswith(":memory:"):
            return prefix + str((cwd / rest).resolve())
        return uri
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        return str((cwd / uri).expanduser().resolve())
    return uri


def default_artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Artifacts of a sqlite store live next to the db (``<db folder>/mlartifacts/<name>``).

    MLflow's default is ``./mlruns`` under the driver's cwd, which scatters artifacts wherever
    the CLI happens to be started. For other stores the server decides (None).
    """
    path = sqlite_db_path(tracking_uri)
    if path is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("._") or "experiment"
    return (path.resolve().parent / "mlartifacts" / safe).as_uri()


def make_client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def search_all_runs(
    client: MlflowClient, experiment_ids: list[str], filter_string: str, **kwargs: Any
) -> list[Run]:
    """All active runs matching the filter, following MLflow's pages."""
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=1000, page_token=token, **kwargs
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_parent_run(tracking_uri: str, experiment_name: str, sweep_name: str) -> Run | None:
    """The newest parent run of ``sweep_name`` in the experiment, or None (no such run or
    experiment; the store must exist, see :func:`check_tracking_store`)."""
    db = sqlite_db_path(tracking_uri)
    if db is not None and not db.is_file():
        return None  # opening it would create it
    client = make_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = search_all_runs(
        client,
        [experiment.experiment_id],
        f"{parent_filter()} and tags.`{TAG_SWEEP}` = '{sweep_name}'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0] if runs else None


def parent_filter() -> str:
    return f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'"


def children_filter(parent_run_id: str) -> str:
    return f"tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'"


# -- a busy store --------------------------------------------------------------------------------
def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: a locked/busy db, a connection or server hiccup."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.OperationalError | ConnectionError | TimeoutError | OSError):
            return True
        name = type(cur).__name__
        module = type(cur).__module__
        if module.startswith("sqlalchemy") and name in ("OperationalError", "TimeoutError"):
            return True
        if name == "MlflowException" or module.startswith("mlflow"):
            code = str(getattr(cur, "error_code", ""))
            if code in (
                "TEMPORARILY_UNAVAILABLE",
                "INTERNAL_ERROR",
                "REQUEST_LIMIT_EXCEEDED",
                "ABORTED",
                "DEADLINE_EXCEEDED",
            ):
                return True
            text = str(cur).lower()
            if any(w in text for w in ("locked", "busy", "timed out", "timeout", "connection")):
                return True
        cur = cur.__cause__ or cur.__context__
    return False


def retrying(
    what: str, fn: Callable[..., T], *args: Any, tries: int = 5, delay_s: float = 0.2, **kw: Any
) -> T:
    """``fn(*args, **kw)``, retried ``tries`` times with doubling delays on transient errors
    (:func:`is_transient`); the last error is raised."""
    delay = delay_s
    for attempt in range(1, tries + 1):
        try:
            return fn(*args, **kw)
        except Exception as exc:
            if attempt >= tries or not is_transient(exc):
                raise
            log.debug("mlflow: %s failed (try %d/%d): %s", what, attempt, tries, exc)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
