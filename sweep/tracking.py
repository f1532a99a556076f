"""MLflow tracking of a sweep, written by the driver only.

Trials never talk to MLflow: they report plain results to Tune (see ``trainables/results.py``)
and the :class:`MLflowTracker` callback, living in the driver process, is the one writer. SQLite
dislikes concurrent writers and a trial on another node could not reach the driver's db file
anyway.

Layout in the store (one experiment per sweep name, tagged mlflow.experimentKind=
custom_model_development so MLflow treats it as model training)::

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

The trial→run mapping lives in MLflow itself (tags), so a new driver with ``resume=True`` finds
the same parent and child runs again; Tune's experiment checkpoint also carries it through
:meth:`MLflowTracker.get_state`/``set_state``.

The callback only uses these attributes of a Tune ``Trial``: ``trial_id``, ``config``,
``status`` and, for the error text, ``error_file`` (or an ``error_msg`` string when present),
so tests drive it with a small stub object.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from ray.tune import Callback

from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

log = logging.getLogger(__name__)

T = TypeVar("T")

# -- names in the store ------------------------------------------------------------------------
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
TAG_PREVIOUS_ERROR = "plateau_sweep.previous_error"  # an error the trial was retried after
TAG_FAILURES = "plateau_sweep.failures"
TAG_CHECKPOINT_FALLBACK = "plateau_sweep.checkpoint_fallback"  # restored past a damaged one
TAG_LAST_EPOCH = "plateau_sweep.last_epoch"  # highest epoch whose metrics are logged
TAG_FINAL_LOGGED = "plateau_sweep.final_logged"  # test_* metrics logged
TAG_RESUMES = "plateau_sweep.resumes"
TAG_SPEC_PATH = "plateau_sweep.spec_path"
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

# MLflow's own limits (mlflow.utils.validation)
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 8000
_ERROR_DETAIL_CHARS = 4000

#: Config keys that are never logged as params (secrets, environments).
_SECRET_KEY = re.compile(
    r"(token|secret|passw|api[_-]?key|credential|auth|private[_-]?key|(^|[._])env($|[._])|environ)",
    re.IGNORECASE,
)


class TrackingError(ValueError):
    """A tracking store that cannot be used; the message is one line naming the URI."""


# -- the store check ---------------------------------------------------------------------------
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


def check_tracking_store(uri: str) -> None:
    """Fail fast, before any trial starts, on a tracking store that cannot be written.

    Raises :class:`TrackingError` with one line naming ``uri`` and the cause. Creates nothing: a
    missing sqlite db is fine when its folder exists and is writable (probed with a temporary
    file that is removed at once); an existing one must open read-write and give a write lock
    within a short timeout (``BEGIN IMMEDIATE`` then ``ROLLBACK``).
    """
    if not isinstance(uri, str) or not uri.strip():
        raise TrackingError(f"tracking store {uri!r}: empty URI; use sqlite:///path/mlflow.db")
    scheme = urlparse(uri).scheme.lower()
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("http", "https"):
        _check_tcp(uri, default_port=443 if scheme == "https" else 80, what="tracking server")
    elif scheme == "" or scheme == "file" or (len(scheme) == 1 and os.name == "nt"):
        raise TrackingError(
            f"tracking store {uri}: MLflow 3 refuses file stores (./mlruns); "
            "use sqlite:///path/mlflow.db (e.g. sqlite:///mlflow.db)"
        )
    elif scheme.split("+")[0] in ("postgresql", "postgres", "mysql", "mssql"):
        ports = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
        _check_tcp(uri, default_port=ports[scheme.split("+")[0]], what="database server")
    # other schemes (databricks, ...) are left to MLflow


def _check_sqlite(uri: str) -> None:
    raw = _sqlite_path(uri)
    if raw in ("", ":memory:"):
        raise TrackingError(
            f"tracking store {uri}: an in-memory sqlite store is lost when the driver exits; "
            "use sqlite:///path/mlflow.db"
        )
    path = Path(raw)  # no ~ expansion: SQLAlchemy does not expand it either
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise TrackingError(f"tracking store {uri}: {path} is a folder, not a sqlite db file")
    if path.exists():
        _check_sqlite_file(uri, path)
        return
    if not folder.exists():
        raise TrackingError(
            f"tracking store {uri}: folder {folder} does not exist; create it first "
            f"(mkdir -p {folder})"
        )
    if not folder.is_dir():
        raise TrackingError(f"tracking store {uri}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingError(f"tracking store {uri}: folder {folder} is not writable")
    try:  # os.access says yes to root on most things; a real write says the truth
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".plateau_sweep_probe_"):
            pass
    except OSError as exc:
        raise TrackingError(
            f"tracking store {uri}: folder {folder} is not writable ({exc.strerror or exc})"
        ) from None


def _check_sqlite_file(uri: str, path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not os.access(path, os.R_OK | os.W_OK):
        raise TrackingError(f"tracking store {uri}: db file {path} is read-only")
    if not os.access(folder, os.W_OK | os.X_OK):  # sqlite writes its journal next to the db
        raise TrackingError(
            f"tracking store {uri}: folder {folder} is not writable (sqlite needs it for its "
            "journal)"
        )
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(  # mode=rw: never create the file
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=0.5, isolation_level=None
        )
        conn.execute("PRAGMA schema_version").fetchone()  # "file is not a database" surfaces here
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            cause = "database is locked by another process (is another sweep or server writing?)"
        elif "readonly" in msg or "read-only" in msg:
            cause = f"db file {path} is read-only"
        else:
            cause = f"cannot open {path} as a sqlite db ({msg})"
        raise TrackingError(f"tracking store {uri}: {cause}") from None
    finally:
        if conn is not None:
            conn.close()


def _check_tcp(uri: str, *, default_port: int, what: str, timeout_s: float = 3.0) -> None:
    parsed = urlparse(uri)
    host = parsed.hostname
    if not host:
        raise TrackingError(f"tracking store {uri}: no host in the URI")
    try:
        port = parsed.port or default_port
    except ValueError:
        raise TrackingError(f"tracking store {uri}: bad port in the URI") from None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            cause = f"no answer within {timeout_s:g} s"
        raise TrackingError(
            f"tracking store {uri}: {what} {host}:{port} is unreachable ({cause})"
        ) from None


# -- small helpers -----------------------------------------------------------------------------
def _now_ms() -> int:
    return int(time.time() * 1000)


def _number(value: Any) -> float | None:
    """A metric value, or None for what is not a number (strings, None, lists)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, np.generic) and np.issubdtype(type(value), np.number):
            return float(value)
    except ImportError:  # pragma: no cover
        pass
    return None


def _int(value: Any) -> int | None:
    """An int from a number or a numeric string (tags are strings), else None."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    num = _number(value)
    if num is None or not math.isfinite(num):
        return None
    return int(num)


def _plain(value: Any) -> str | None:
    """The param/tag string of a plain value, or None for objects that are not plain data."""
    if value is None or isinstance(value, str | bool | int | float):
        return str(value)
    if isinstance(value, list | tuple):
        if all(v is None or isinstance(v, str | bool | int | float) for v in value):
            return json.dumps(list(value))
        return None
    return None


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flat string params of a trial config: nested dicts joined with dots.

    Keys that look like secrets or environments (token, secret, password, api_key, env, ...)
    and values that are not plain data (object refs, callables) are left out.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if _SECRET_KEY.search(str(key)):
            continue
        if isinstance(value, Mapping):
            out.update(flatten_config(value, prefix=f"{name}."))
            continue
        text = _plain(value)
        if text is not None:
            out[name] = text[:_MAX_PARAM_LEN]
    return out


def downsample(points: Sequence[T], n: int) -> list[T]:
    """At most ``n`` evenly spaced items, first and last included."""
    if n <= 0:
        return []
    if len(points) <= n:
        return list(points)
    if n == 1:
        return [points[-1]]
    idx = sorted({round(i * (len(points) - 1) / (n - 1)) for i in range(n)})
    return [points[i] for i in idx]


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _is_transient(exc: BaseException) -> bool:
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


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _trial_error_text(trial: Any) -> str:
    """The latest error of a trial: ``error_msg`` if set, else the tail of its error file."""
    msg = getattr(trial, "error_msg", None)
    if isinstance(msg, str) and msg.strip():
        return msg.strip()
    path = None
    with contextlib.suppress(Exception):
        path = trial.error_file
    if path and os.path.isfile(path):
        with contextlib.suppress(OSError):
            text = Path(path).read_text(errors="replace")
            blocks = re.split(r"(?m)^Failure # \d+.*$", text)
            last = blocks[-1].strip() if blocks else text.strip()
            if last:
                return last
    with contextlib.suppress(Exception):
        err = trial.get_error()
        if err:
            return str(err).strip()
    return "unknown error (see the trial's error.txt in the Tune results folder)"


def _running_best(best: float | None, value: float | None) -> float | None:
    """The higher of ``best`` and ``value``; a missing or non-finite value changes nothing."""
    if value is None or not math.isfinite(value):
        return best
    return value if best is None else max(best, value)


def child_run_name(
    tags: Mapping[str, str], config: Mapping[str, Any], name_keys: Sequence[str], trial_id: str
) -> str:
    """A trial's run name as the MLflow runs table shows it: ``constant · seed 0``, followed
    by the values of ``name_keys`` (the search-space keys, ``lr 0.003``) when there are any."""
    parts = [tags.get(TAG_POLICY_LABEL) or tags.get(TAG_POLICY) or f"trial {trial_id}"]
    if tags.get(TAG_SEED) is not None:
        parts.append(f"seed {tags[TAG_SEED]}")
    for key in name_keys:
        value = config.get(key)
        if value is not None:
            text = f"{value:.3g}" if isinstance(value, float) else str(value)
            parts.append(f"{key} {text}")
    return " · ".join(parts)


def _error_summary(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return _one_line(lines[-1] if lines else text)


def _git_info(cwd: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return out
    if not commit:
        return out
    out["mlflow.source.git.commit"] = commit
    out["plateau_sweep.git_commit"] = commit
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        out["plateau_sweep.git_dirty"] = str(bool(status.strip())).lower()
    return out


def _device_names() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return ", ".join(f"cuda:{i} {n}" for i, n in enumerate(names))
    except Exception:  # a broken CUDA setup must not stop the sweep from being tracked
        pass
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"cpu ({cpu}, {os.cpu_count()} cores)"


def collect_provenance(project_dir: Path | None = None) -> dict[str, str]:
    """Tags describing where and with what the driver runs (no environment variables)."""
    tags: dict[str, str] = {}
    dirs = [project_dir or Path(__file__).resolve().parents[1], Path.cwd()]
    for d in dirs:
        tags = _git_info(d)
        if tags:
            break
    for pkg in ("torch", "ray", "mlflow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"plateau_sweep.version.{pkg}"] = importlib.metadata.version(pkg)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        tags["plateau_sweep.version.plateau_sweep"] = importlib.metadata.version("plateau-sweep")
    tags["plateau_sweep.version.python"] = platform.python_version()
    tags["plateau_sweep.platform"] = platform.platform()
    tags["plateau_sweep.driver_host"] = socket.gethostname()
    tags["plateau_sweep.driver_devices"] = _device_names()
    return tags


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


# -- the callback ------------------------------------------------------------------------------
@dataclass
class _Child:
    run_id: str
    last_epoch: int = 0
    lr_points: int = 0
    final_logged: bool = False
    status: str = "RUNNING"
    failures: int = 0
    has_error_tag: bool = False
    node: dict[str, str] = field(default_factory=dict)
    best_val_acc: float | None = None


class MLflowTracker(Callback):
    """Tune callback: the sweep's parent run, a nested child run per trial, all from the driver.

    Hooks never raise into Tune (that would kill the sweep): transient store errors are retried
    ``max_tries`` times with doubling delays from ``retry_delay_s``, then the write is dropped
    with a warning. Only :meth:`setup` raises (:class:`TrackingError`): a sweep that cannot
    create its parent run should not start.
    """

    def __init__(
        self,
        *,
        tracking_uri: str,
        experiment_name: str,
        sweep_name: str,
        spec_text: str,
        spec_path: str | None = None,
        resume: bool = False,
        lr_trace_max_points: int = 2000,
        artifact_location: str | None = None,
        max_tries: int = 5,
        retry_delay_s: float = 0.2,
        name_keys: Sequence[str] = (),
    ) -> None:
        if lr_trace_max_points < 1:
            raise ValueError(f"lr_trace_max_points must be >= 1, got {lr_trace_max_points}")
        if max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {max_tries}")
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.sweep_name = sweep_name
        self.spec_text = spec_text
        self.spec_path = spec_path
        self.resume = resume
        self.lr_trace_max_points = lr_trace_max_points
        self.artifact_location = artifact_location
        self.max_tries = max_tries
        self.retry_delay_s = retry_delay_s
        self.name_keys = tuple(name_keys)  # config keys shown in run names (the search space)
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._parent_status: str | None = None
        self._children: dict[str, _Child] = {}
        self._existing: dict[str, Run] = {}  # children found in the store on resume
        self._state_parent_run_id: str | None = None  # from set_state (Tune's restore)
        # Range-test plots (matplotlib, ~1 s each) are drawn off Tune's loop, one at a time.
        self._plotter: concurrent.futures.ThreadPoolExecutor | None = None
        self._plots: list[concurrent.futures.Future[None]] = []

    # -- plumbing -------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included), and Tuner.restore unpickles it: the
        # copy drops the client (it holds a DB engine) and resumes this parent run on setup().
        state = self.__dict__.copy()
        state["_client"] = None
        state["_existing"] = {}
        state["_children"] = {}
        state["_state_parent_run_id"] = self._parent_run_id or self._state_parent_run_id
        state["_parent_run_id"] = None
        state["_parent_status"] = None
        state["_plotter"] = None
        state["_plots"] = []
        return state

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = make_client(self.tracking_uri)
        return self._client

    @property
    def parent_run_id(self) -> str | None:
        return self._parent_run_id

    @property
    def experiment_id(self) -> str | None:
        return self._experiment_id

    def child_run_id(self, trial_id: str) -> str | None:
        """The child run of a trial: logged by this driver, or found in the store on resume."""
        child = self._children.get(trial_id)
        if child is not None:
            return child.run_id
        run = self._existing.get(trial_id)
        return run.info.run_id if run is not None else None

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, retrying transient errors; re-raises the last error."""
        delay = self.retry_delay_s
        for attempt in range(1, self.max_tries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt >= self.max_tries or not _is_transient(exc):
                    raise
                log.debug("mlflow: %s failed (try %d/%d): %s", what, attempt, self.max_tries, exc)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _dropping(self, what: str) -> Iterator[None]:
        """Run a block whose failure is logged as one warning and otherwise ignored."""
        try:
            yield
        except Exception as exc:
            log.warning(
                "mlflow tracking: dropped %s (%s: %s)",
                what,
                type(exc).__name__,
                _one_line(str(exc), 300),
            )

    def _log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        what: str,
    ) -> None:
        """One ``log_batch`` per call when within MLflow's limits; chunked otherwise.

        Tags go with the last chunk, so a tag like ``last_epoch`` is only set once all the
        metrics before it are in.
        """
        from mlflow.entities import Param, RunTag

        param_list = [Param(k, v[:_MAX_PARAM_LEN]) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)[:_MAX_TAG_LEN]) for k, v in (tags or {}).items()]
        for p_chunk in _chunks(param_list, _MAX_PARAMS_TAGS_PER_BATCH):
            self._call(what, self.client.log_batch, run_id, params=p_chunk, synchronous=True)
        metric_chunks = list(_chunks(list(metrics), _MAX_METRICS_PER_BATCH)) or [[]]
        tag_chunks = list(_chunks(tag_list, _MAX_PARAMS_TAGS_PER_BATCH)) or [[]]
        for i, chunk in enumerate(metric_chunks):
            last = i == len(metric_chunks) - 1
            first_tags = tag_chunks[0] if last else []
            if not chunk and not first_tags:
                continue
            self._call(
                what,
                self.client.log_batch,
                run_id,
                metrics=chunk,
                tags=first_tags,
                synchronous=True,
            )
        for t_chunk in tag_chunks[1:]:
            self._call(what, self.client.log_batch, run_id, tags=t_chunk, synchronous=True)

    def _set_status(self, run_id: str, status: str, what: str) -> None:
        if status == "RUNNING":
            self._call(what, self.client.update_run, run_id, status="RUNNING")
        else:
            self._call(what, self.client.set_terminated, run_id, status=status)

    # -- parent ---------------------------------------------------------------------------------
    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Create the parent run, or find it again when resuming. Raises TrackingError."""
        if self._parent_run_id is not None and self._parent_status == "RUNNING":
            return  # already set up (setup called twice)
        try:
            self._setup_parent()
        except TrackingError:
            raise
        except Exception as exc:
            raise TrackingError(
                f"tracking store {self.tracking_uri}: cannot create the sweep's parent run "
                f"({type(exc).__name__}: {_one_line(str(exc), 300)})"
            ) from exc

    def _get_or_create_experiment(self) -> str:
        exp = self._call("get experiment", self.client.get_experiment_by_name, self.experiment_name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"tracking store {self.tracking_uri}: experiment '{self.experiment_name}' "
                    "is deleted; restore it (mlflow experiments restore) or purge it (mlflow gc)"
                )
            return str(exp.experiment_id)
        location = self.artifact_location or default_artifact_location(
            self.tracking_uri, self.experiment_name
        )
        try:
            return str(
                self._call(
                    "create experiment",
                    self.client.create_experiment,
                    self.experiment_name,
                    artifact_location=location,
                    tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND_TRAINING},
                )
            )
        except Exception:  # another driver may have created it in between
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def _find_parent(self) -> Run | None:
        assert self._experiment_id is not None
        if self._state_parent_run_id:
            with contextlib.suppress(Exception):
                run = self._call("get run", self.client.get_run, self._state_parent_run_id)
                if (
                    run.info.lifecycle_stage == "active"
                    and run.data.tags.get(TAG_SWEEP) == self.sweep_name
                ):
                    return run
        runs = search_all_runs(
            self.client,
            [self._experiment_id],
            parent_filter(),
            order_by=["attributes.start_time DESC"],
        )
        for run in runs:
            if run.data.tags.get(TAG_SWEEP) == self.sweep_name:
                return run
        return None

    def _setup_parent(self) -> None:
        self._experiment_id = self._get_or_create_experiment()
        resuming = self.resume or self._state_parent_run_id is not None
        parent = self._find_parent() if resuming else None
        if parent is not None:
            self._parent_run_id = parent.info.run_id
            resumes = _int(parent.data.tags.get(TAG_RESUMES)) or 0
            self._log_batch(
                parent.info.run_id,
                tags={TAG_RESUMES: str(resumes + 1)},
                what="parent resume tag",
            )
            self._set_status(parent.info.run_id, "RUNNING", "parent status")
            if SPEC_ARTIFACT not in {
                f.path for f in self._call("list", self.client.list_artifacts, parent.info.run_id)
            }:
                self._call(
                    "spec", self.client.log_text, parent.info.run_id, self.spec_text, "spec.yaml"
                )
            self._load_children()
            log.info(
                "mlflow: resuming sweep '%s' in parent run %s (%d child runs)",
                self.sweep_name,
                self._parent_run_id,
                len(self._existing),
            )
        else:
            if resuming:
                log.warning(
                    "mlflow: no parent run of sweep '%s' in experiment '%s' to resume; "
                    "starting a new one",
                    self.sweep_name,
                    self.experiment_name,
                )
            tags = {
                TAG_SWEEP: self.sweep_name,
                TAG_ROLE: ROLE_PARENT,
                "mlflow.note.content": f"plateau-sweep '{self.sweep_name}'",
                **collect_provenance(),
            }
            if self.spec_path:
                tags[TAG_SPEC_PATH] = str(self.spec_path)
            run = self._call(
                "create parent",
                self.client.create_run,
                self._experiment_id,
                tags=tags,
                run_name=self.sweep_name,
            )
            self._parent_run_id = run.info.run_id
            self._call(
                "spec", self.client.log_text, self._parent_run_id, self.spec_text, "spec.yaml"
            )
            self._children = {}
        self._parent_status = "RUNNING"

    def _load_children(self) -> None:
        """Index the parent's existing child runs by trial id; the store is the truth."""
        assert self._experiment_id is not None and self._parent_run_id is not None
        runs = search_all_runs(
            self.client, [self._experiment_id], children_filter(self._parent_run_id)
        )
        self._existing = {}
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            tid = run.data.tags.get(TAG_TRIAL_ID)
            if tid:
                self._existing[tid] = run
        # A mapping from set_state may be older than the store (Tune checkpoints periodically):
        # children are adopted afresh from the store when their trials start again.
        self._children = {}

    def _ensure_parent(self) -> str:
        if self._parent_run_id is None:
            self.setup()
        assert self._parent_run_id is not None
        return self._parent_run_id

    # -- children -------------------------------------------------------------------------------
    def _adopt(self, trial_id: str, run: Run) -> _Child:
        tags = run.data.tags
        child = _Child(
            run_id=run.info.run_id,
            last_epoch=_int(tags.get(TAG_LAST_EPOCH)) or 0,
            final_logged=tags.get(TAG_FINAL_LOGGED) == "true",
            status=run.info.status,
            failures=_int(tags.get(TAG_FAILURES)) or 0,
            has_error_tag=TAG_ERROR in tags,
            node={k: v for k, v in tags.items() if k in NODE_TAGS.values()},
        )
        history = self._call(
            "lr history", self.client.get_metric_history, run.info.run_id, LR_STEP_METRIC
        )
        child.lr_points = len(history)
        child.best_val_acc = run.data.metrics.get(BEST_VAL_ACC_METRIC)
        if child.best_val_acc is None:  # a run logged before best_val_acc existed
            val = self._call("val_acc", self.client.get_metric_history, run.info.run_id, R.VAL_ACC)
            for m in val:
                child.best_val_acc = _running_best(child.best_val_acc, m.value)
        self._children[trial_id] = child
        return child

    def _child_tags(self, trial: Any) -> dict[str, str]:
        config = trial.config if isinstance(getattr(trial, "config", None), Mapping) else {}
        tags = {
            TAG_PARENT_RUN_ID: self._ensure_parent(),
            TAG_ROLE: ROLE_CHILD,
            TAG_SWEEP: self.sweep_name,
            TAG_TRIAL_ID: str(trial.trial_id),
        }
        if config.get("policy") is not None:
            tags[TAG_POLICY] = str(config["policy"])
        if config.get("seed") is not None:
            tags[TAG_SEED] = str(config["seed"])
        if config.get("policy_label") is not None:
            tags[TAG_POLICY_LABEL] = str(config["policy_label"])
        return tags

    def _ensure_child(self, trial: Any) -> _Child:
        tid = str(trial.trial_id)
        child = self._children.get(tid)
        if child is not None:
            return child
        parent_id = self._ensure_parent()
        config = trial.config if isinstance(getattr(trial, "config", None), Mapping) else {}
        params = flatten_config(config)
        run = self._existing.get(tid)  # complete for this parent when resuming, else empty
        if run is not None:
            child = self._adopt(tid, run)
            have = run.data.params
            missing = {k: v for k, v in params.items() if k not in have}
            changed = sorted(k for k, v in params.items() if k in have and have[k] != v)
            if changed:
                log.warning(
                    "mlflow: trial %s resumed with changed config keys %s; keeping the "
                    "logged params",
                    tid,
                    ", ".join(changed),
                )
            if missing:
                self._log_batch(child.run_id, params=missing, what=f"params of trial {tid}")
            return child
        tags = self._child_tags(trial)
        name = child_run_name(tags, config, self.name_keys, tid)
        created = self._call(
            "create child",
            self.client.create_run,
            self._experiment_id or "0",
            tags=tags,
            run_name=name,
        )
        child = _Child(run_id=created.info.run_id)
        self._children[tid] = child
        log.debug("mlflow: trial %s -> child run %s of %s", tid, child.run_id, parent_id)
        if params:
            self._log_batch(child.run_id, params=params, what=f"params of trial {tid}")
        return child

    def _reopen(self, trial: Any, child: _Child) -> None:
        """Mark a child RUNNING again (retry, restore, resumed sweep)."""
        tags: dict[str, str] = {}
        if child.has_error_tag:
            with self._dropping(f"error tag of trial {trial.trial_id}"):
                run = self._call("get run", self.client.get_run, child.run_id)
                previous = run.data.tags.get(TAG_ERROR)
                if previous:
                    tags[TAG_PREVIOUS_ERROR] = previous
                self._call("delete tag", self.client.delete_tag, child.run_id, TAG_ERROR)
                child.has_error_tag = False
        if tags:
            self._log_batch(child.run_id, tags=tags, what="previous error tag")
        if child.status != "RUNNING":
            self._set_status(child.run_id, "RUNNING", "child status")
            child.status = "RUNNING"

    # -- Tune hooks -----------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._dropping(f"start of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            self._reopen(trial, child)

    def on_trial_restore(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._dropping(f"restore of trial {trial.trial_id}"):
            self._reopen(trial, self._ensure_child(trial))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        with self._dropping(f"result of trial {trial.trial_id}"):
            self.log_result(trial, result)

    def log_result(self, trial: Any, result: Mapping[str, Any]) -> None:
        """Log one reported result (may raise; the hook wraps it)."""
        from mlflow.entities import Metric

        tid = str(trial.trial_id)
        child = self._ensure_child(trial)
        if result.get(R.NO_RETRY):
            return  # a failure notice, not an epoch: on_trial_error records it
        if result.get(R.CHECKPOINT_FALLBACK):
            self._log_fallback(child, tid, str(result[R.CHECKPOINT_FALLBACK]))
        if result.get(R.RESTORED_METRICS):
            # The epoch a restored trial started from: logged only if this driver never saw it.
            try:
                restored = json.loads(str(result[R.RESTORED_METRICS]))
            except ValueError as exc:
                log.warning("mlflow: trial %s: bad restored_metrics (%s)", tid, exc)
            else:
                if isinstance(restored, dict):
                    self.log_result(trial, restored)
        epoch = _int(result.get(R.EPOCH))
        if epoch is None:
            epoch = _int(result.get("training_iteration"))
        if epoch is None:
            log.debug("mlflow: result of trial %s has no epoch; not logged", tid)
            return
        repeat = epoch <= child.last_epoch
        ts = _now_ms()
        metrics: list[Metric] = []
        tags: dict[str, str] = {}
        events: list[dict[str, Any]] = []
        n_lr = 0
        if not repeat:
            for key in R.EPOCH_METRICS:
                value = _number(result.get(key))
                if value is not None:
                    metrics.append(Metric(key, value, ts, epoch))
            best = _running_best(child.best_val_acc, _number(result.get(R.VAL_ACC)))
            if best is not None:
                metrics.append(Metric(BEST_VAL_ACC_METRIC, best, ts, epoch))
            lr_points = self._lr_points(trial, child, result, tid)
            metrics.extend(Metric(LR_STEP_METRIC, v, ts, s) for s, v in lr_points)
            n_lr = len(lr_points)
            try:
                events = [e for e in R.decode_events(dict(result)) if isinstance(e, dict)]
            except (TypeError, ValueError) as exc:
                log.warning("mlflow: trial %s epoch %d: bad policy_events (%s)", tid, epoch, exc)
            for ev in events:
                new_lr = _number(ev.get("new_lr"))
                if ev.get("kind") == "range_test" and new_lr is not None and math.isfinite(new_lr):
                    metrics.append(Metric(RANGE_TEST_LR_METRIC, new_lr, ts, epoch))
            tags[TAG_LAST_EPOCH] = str(epoch)
        final = False
        if not child.final_logged or not repeat:
            for key in R.FINAL_METRICS:
                value = _number(result.get(key))
                if value is not None:
                    metrics.append(Metric(key, value, ts, epoch))
                    final = True
            if final:
                tags[TAG_FINAL_LOGGED] = "true"
        node = {
            tag: str(result[key])
            for key, tag in NODE_TAGS.items()
            if result.get(key) is not None and child.node.get(tag) != str(result[key])
        }
        tags.update(node)
        if repeat and not final:
            if node:
                self._log_batch(child.run_id, tags=node, what=f"node tags of trial {tid}")
                child.node.update(node)
            log.debug("mlflow: trial %s epoch %d already logged; skipped", tid, epoch)
            return
        self._log_batch(child.run_id, metrics=metrics, tags=tags, what=f"metrics of trial {tid}")
        child.node.update(node)
        child.final_logged = child.final_logged or final
        if not repeat:
            child.last_epoch = epoch
            child.lr_points += n_lr
            child.best_val_acc = _running_best(child.best_val_acc, _number(result.get(R.VAL_ACC)))
        if events:
            with self._dropping(f"policy events of trial {tid}, epoch {epoch}"):
                self._log_events(child, epoch, events)

    def _log_fallback(self, child: _Child, tid: str, text: str) -> None:
        """A restore skipped damaged checkpoints: a tag and an event artifact on the child."""
        try:
            info = json.loads(text)
            skipped = dict(info.get("skipped") or {})
            restored = str(info.get("restored"))
        except (ValueError, AttributeError, TypeError) as exc:
            log.warning("mlflow: trial %s: bad checkpoint_fallback (%s)", tid, exc)
            return
        summary = f"restored {restored}; skipped {', '.join(sorted(skipped))} (damaged)"
        log.warning("trial %s: %s", tid, summary)
        self._log_batch(
            child.run_id, tags={TAG_CHECKPOINT_FALLBACK: summary}, what="checkpoint fallback"
        )
        event = {"kind": "checkpoint_fallback", "restored": restored, "skipped": skipped}
        name = f"{EVENTS_DIR}/checkpoint_fallback_{_now_ms()}.json"
        self._call("fallback event", self.client.log_dict, child.run_id, event, name)

    def _lr_points(
        self, trial: Any, child: _Child, result: Mapping[str, Any], tid: str
    ) -> list[tuple[int, float]]:
        try:
            trace = R.decode_lr_trace(dict(result))
        except (TypeError, ValueError) as exc:
            log.warning("mlflow: trial %s: bad lr_trace (%s)", tid, exc)
            return []
        trace = [(s, v) for s, v in trace if math.isfinite(v)]
        if not trace:
            return []
        config = trial.config if isinstance(getattr(trial, "config", None), Mapping) else {}
        epochs = _int(config.get("epochs"))
        per_epoch = (
            max(1, self.lr_trace_max_points // epochs)
            if epochs and epochs > 0
            else self.lr_trace_max_points
        )
        budget = min(per_epoch, self.lr_trace_max_points - child.lr_points)
        return downsample(trace, budget)

    def _log_events(self, child: _Child, epoch: int, events: Iterable[dict[str, Any]]) -> None:
        """Each event as ``events/epoch_NNN_<kind>.json`` now; range-test plots in the background
        (drawing one takes about a second, too long for Tune's driver loop)."""
        plots: list[tuple[str, dict[str, Any]]] = []
        with tempfile.TemporaryDirectory(prefix="plateau_sweep_events_") as tmp:
            folder = Path(tmp) / EVENTS_DIR
            folder.mkdir()
            used: set[str] = set()
            for ev in events:
                ev_epoch = _int(ev.get("epoch"))
                kind = re.sub(r"[^A-Za-z0-9_]+", "_", str(ev.get("kind") or "event"))
                base = f"epoch_{ev_epoch if ev_epoch is not None else epoch:03d}_{kind}"
                name, n = base, 2
                while name in used:
                    name, n = f"{base}_{n}", n + 1
                used.add(name)
                (folder / f"{name}.json").write_text(json.dumps(ev, indent=2, sort_keys=True))
                if kind == "range_test" and ev.get("lrs") and ev.get("losses"):
                    plots.append((name, ev))
            self._call("events", self.client.log_artifacts, child.run_id, tmp)
        for name, ev in plots:
            if self._plotter is None:
                self._plotter = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="plateau_sweep_plots"
                )
            self._plots = [f for f in self._plots if not f.done()]
            self._plots.append(self._plotter.submit(self._log_plot, child.run_id, name, ev))

    def _log_plot(self, run_id: str, name: str, event: dict[str, Any]) -> None:
        from sweep.plots import plot_range_test

        with (
            self._dropping(f"range-test plot {name}"),
            tempfile.TemporaryDirectory(prefix="plateau_sweep_plot_") as tmp,
        ):
            path = plot_range_test(event, Path(tmp) / f"{name}.png")
            self._call("plot", self.client.log_artifact, run_id, str(path), EVENTS_DIR)

    def _flush_plots(self) -> None:
        """Wait for the range-test plots still being drawn (end of the sweep)."""
        if self._plotter is not None:
            self._plotter.shutdown(wait=True)
            self._plotter = None
        self._plots = []

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._dropping(f"completion of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            if child.has_error_tag:
                self._reopen(trial, child)
            self._set_status(child.run_id, "FINISHED", "child status")
            child.status = "FINISHED"

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._dropping(f"error of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            text = _trial_error_text(trial)
            child.failures += 1
            self._log_batch(
                child.run_id,
                tags={
                    TAG_ERROR: _error_summary(text),
                    TAG_ERROR_DETAIL: text[-_ERROR_DETAIL_CHARS:],
                    TAG_FAILURES: str(child.failures),
                },
                what=f"error tags of trial {trial.trial_id}",
            )
            child.has_error_tag = True
            self._set_status(child.run_id, "FAILED", "child status")
            child.status = "FAILED"

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """The trial failed and Tune retries it: keep the child RUNNING, note the error."""
        with self._dropping(f"recovery of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            self._reopen(trial, child)
            text = _trial_error_text(trial)
            child.failures += 1
            self._log_batch(
                child.run_id,
                tags={TAG_PREVIOUS_ERROR: _error_summary(text), TAG_FAILURES: str(child.failures)},
                what=f"recovery tags of trial {trial.trial_id}",
            )

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Close the children still open and the parent, with trial counts on the parent.

        The parent is FINISHED when every trial ended (TERMINATED or ERROR), failed trials
        included; KILLED when some never ended (the sweep was interrupted and can be resumed).
        """
        with self._dropping("end of the sweep"):
            self._flush_plots()
            statuses = {str(t.trial_id): str(getattr(t, "status", "")) for t in trials}
            ended = {tid: self._ended_status(tid, status) for tid, status in statuses.items()}
            finished = sum(s == "FINISHED" for s in ended.values())
            failed = sum(s == "FAILED" for s in ended.values())
            total = len(statuses)
            for tid, child in self._children.items():
                want = ended.get(tid, "KILLED")
                if tid in statuses and child.status != want:
                    with self._dropping(f"status of trial {tid}"):
                        self._set_status(child.run_id, want, "child status")
                        child.status = want
            complete = finished + failed == total
            self.close_parent(
                "FINISHED" if complete else "KILLED", counts=(finished, failed, total)
            )

    def _ended_status(self, tid: str, tune_status: str) -> str:
        """The run status of a trial at the end of the sweep.

        On Ctrl-C Tune stops the running trials and marks them TERMINATED without calling
        ``on_trial_complete``: only a trial whose completion this driver saw (or one finished by
        an earlier driver of a resumed sweep) is FINISHED; an interrupted one is KILLED, and
        ``--resume`` continues it.
        """
        if tune_status == "ERROR":
            return "FAILED"
        if tune_status != "TERMINATED":
            return "KILLED"
        child = self._children.get(tid)
        if child is None or child.status == "FINISHED":
            return "FINISHED"
        return "KILLED"

    def close_parent(
        self,
        status: str = "FAILED",
        reason: str | None = None,
        *,
        counts: tuple[int, int, int] | None = None,
    ) -> None:
        """End the parent run (the CLI calls this with FAILED when the driver errors).

        Children still RUNNING are marked KILLED. ``counts`` = (finished, failed, total) trials,
        logged as tags and metrics; by default counted from the children this driver knows.
        Never raises.
        """
        if status not in RUN_STATUSES or status == "RUNNING":
            raise ValueError(f"status must be FINISHED, FAILED or KILLED, got {status!r}")
        with self._dropping("range-test plots"):
            self._flush_plots()
        if self._parent_run_id is None:
            return
        with self._dropping("closing the parent run"):
            from mlflow.entities import Metric

            for tid, child in self._children.items():
                if child.status == "RUNNING":
                    with self._dropping(f"status of trial {tid}"):
                        self._set_status(child.run_id, "KILLED", "child status")
                        child.status = "KILLED"
            if counts is None:
                states = [c.status for c in self._children.values()]
                counts = (states.count("FINISHED"), states.count("FAILED"), len(states))
            finished, failed, total = counts
            ts = _now_ms()
            tags = {
                TAG_TRIALS_FINISHED: str(finished),
                TAG_TRIALS_FAILED: str(failed),
                TAG_TRIALS_TOTAL: str(total),
            }
            if reason:
                tags[TAG_ERROR] = _one_line(reason)
            metrics = [
                Metric("trials_finished", float(finished), ts, 0),
                Metric("trials_failed", float(failed), ts, 0),
                Metric("trials_total", float(total), ts, 0),
            ]
            self._log_batch(self._parent_run_id, metrics=metrics, tags=tags, what="sweep counts")
            self._set_status(self._parent_run_id, status, "parent status")
            self._parent_status = status

    # -- Tune experiment checkpoint -------------------------------------------------------------
    def get_state(self) -> dict[str, Any] | None:
        return {
            "version": 1,
            "tracking_uri": self.tracking_uri,
            "experiment_name": self.experiment_name,
            "sweep_name": self.sweep_name,
            "experiment_id": self._experiment_id,
            "parent_run_id": self._parent_run_id,
            "children": {tid: dataclasses.asdict(c) for tid, c in self._children.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Adopt the parent run from Tune's experiment checkpoint (called before :meth:`setup`).

        The store stays the source of truth: setup checks the parent run still exists and
        re-reads each child run (its trial id, last logged epoch, LR points) from its tags.
        """
        if not state or state.get("version") != 1:
            return
        if state.get("sweep_name") != self.sweep_name or state.get("tracking_uri") != (
            self.tracking_uri
        ):
            log.warning(
                "mlflow: ignoring the tracker state of sweep '%s' at %s (this is '%s' at %s)",
                state.get("sweep_name"),
                state.get("tracking_uri"),
                self.sweep_name,
                self.tracking_uri,
            )
            return
        self._state_parent_run_id = state.get("parent_run_id")
        self._parent_run_id = None  # setup() verifies it against the store
