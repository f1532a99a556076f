"""The Tune callback that writes a sweep into MLflow, from the driver only.

Trials never talk to MLflow: they report plain results to Tune (see ``trainables/results.py``)
and the :class:`MLflowTracker` callback, living in the driver process, is the one writer. SQLite
dislikes concurrent writers and a trial on another node could not reach the driver's db file
anyway. What goes where in the store is described in :mod:`sweep.store`.

A new driver with ``resume=True`` finds the same parent and child runs again; Tune's experiment
checkpoint also carries them through :meth:`MLflowTracker.get_state`/``set_state``.

The callback only uses these attributes of a Tune ``Trial``: ``trial_id``, ``config``,
``status`` and, for the error text, ``error_file`` (or an ``error_msg`` string when present),
so tests drive it with a small stub object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ray.tune import Callback

from sweep.event_artifacts import EventArtifacts
from sweep.provenance import collect_provenance
from sweep.run_values import (
    MAX_PARAM_LEN,
    child_run_name,
    error_summary,
    flatten_config,
    integer,
    now_ms,
    number,
    one_line_text,
    running_best,
    trial_error_text,
)
from sweep.store import (
    BEST_VAL_ACC_METRIC,
    EXPERIMENT_KIND_TRAINING,
    LR_STEP_METRIC,
    NODE_TAGS,
    RANGE_TEST_LR_METRIC,
    ROLE_CHILD,
    ROLE_PARENT,
    RUN_STATUSES,
    SPEC_ARTIFACT,
    TAG_CHECKPOINT_FALLBACK,
    TAG_ERROR,
    TAG_ERROR_DETAIL,
    TAG_EXPERIMENT_KIND,
    TAG_FAILURES,
    TAG_FINAL_LOGGED,
    TAG_LAST_EPOCH,
    TAG_PARENT_RUN_ID,
    TAG_POLICY,
    TAG_POLICY_LABEL,
    TAG_PREVIOUS_ERROR,
    TAG_RESULTS_DIR,
    TAG_RESUMES,
    TAG_ROLE,
    TAG_SEED,
    TAG_SPEC_PATH,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TAG_TRIALS_FAILED,
    TAG_TRIALS_FINISHED,
    TAG_TRIALS_TOTAL,
    TrackingError,
    children_filter,
    default_artifact_location,
    make_client,
    parent_filter,
    retrying,
    search_all_runs,
)
from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

log = logging.getLogger(__name__)

T = TypeVar("T")

# MLflow's own limits (mlflow.utils.validation)
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_TAG_LEN = 8000
_ERROR_DETAIL_CHARS = 4000


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
        results_dir: str | None = None,
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
        self.results_dir = results_dir
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
        self._artifacts = EventArtifacts(self._call, self._dropping)

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
        state["_artifacts"] = None  # rebuilt by __setstate__
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._artifacts = EventArtifacts(self._call, self._dropping)

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
        return retrying(what, fn, *args, tries=self.max_tries, delay_s=self.retry_delay_s, **kwargs)

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
                one_line_text(str(exc), 300),
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
        """One ``log_batch`` when within MLflow's limits. Beyond them, MLflow's own batching
        logs the metrics and params first and the tags after, so that a tag like
        ``last_epoch`` is only set once every metric before it is in."""
        from mlflow.entities import Param, RunTag

        param_list = [Param(k, v[:MAX_PARAM_LEN]) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)[:_MAX_TAG_LEN]) for k, v in (tags or {}).items()]
        log_batch = self.client.log_batch
        if len(metrics) <= _MAX_METRICS_PER_BATCH and (
            len(param_list) + len(tag_list) <= _MAX_PARAMS_TAGS_PER_BATCH
        ):
            self._call(what, log_batch, run_id, list(metrics), param_list, tag_list)
            return
        self._call(what, log_batch, run_id, metrics=list(metrics), params=param_list)
        if tag_list:
            self._call(what, log_batch, run_id, tags=tag_list)

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
                f"({type(exc).__name__}: {one_line_text(str(exc), 300)})"
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
            resumes = integer(parent.data.tags.get(TAG_RESUMES)) or 0
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
            if self.results_dir:
                tags[TAG_RESULTS_DIR] = self.results_dir
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
            last_epoch=integer(tags.get(TAG_LAST_EPOCH)) or 0,
            final_logged=tags.get(TAG_FINAL_LOGGED) == "true",
            status=run.info.status,
            failures=integer(tags.get(TAG_FAILURES)) or 0,
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
                child.best_val_acc = running_best(child.best_val_acc, m.value)
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
        epoch = integer(result.get(R.EPOCH))
        if epoch is None:
            epoch = integer(result.get("training_iteration"))
        if epoch is None:
            log.debug("mlflow: result of trial %s has no epoch; not logged", tid)
            return
        repeat = epoch <= child.last_epoch
        ts = now_ms()
        metrics: list[Metric] = []
        tags: dict[str, str] = {}
        events: list[dict[str, Any]] = []
        n_lr = 0
        if not repeat:
            for key in R.EPOCH_METRICS:
                value = number(result.get(key))
                if value is not None:
                    metrics.append(Metric(key, value, ts, epoch))
            best = running_best(child.best_val_acc, number(result.get(R.VAL_ACC)))
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
                new_lr = number(ev.get("new_lr"))
                if ev.get("kind") == "range_test" and new_lr is not None and math.isfinite(new_lr):
                    metrics.append(Metric(RANGE_TEST_LR_METRIC, new_lr, ts, epoch))
            tags[TAG_LAST_EPOCH] = str(epoch)
        final = False
        if not child.final_logged or not repeat:
            for key in R.FINAL_METRICS:
                value = number(result.get(key))
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
            child.best_val_acc = running_best(child.best_val_acc, number(result.get(R.VAL_ACC)))
        if events:
            with self._dropping(f"policy events of trial {tid}, epoch {epoch}"):
                self._artifacts.log_events(self.client, child.run_id, epoch, events)

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
        self._artifacts.log_fallback(self.client, child.run_id, event)

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
        epochs = integer(config.get("epochs"))
        per_epoch = (
            max(1, self.lr_trace_max_points // epochs)
            if epochs and epochs > 0
            else self.lr_trace_max_points
        )
        budget = min(per_epoch, self.lr_trace_max_points - child.lr_points)
        return R.downsample(trace, budget)

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
            text = trial_error_text(trial)
            child.failures += 1
            self._log_batch(
                child.run_id,
                tags={
                    TAG_ERROR: error_summary(text),
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
            text = trial_error_text(trial)
            child.failures += 1
            self._log_batch(
                child.run_id,
                tags={TAG_PREVIOUS_ERROR: error_summary(text), TAG_FAILURES: str(child.failures)},
                what=f"recovery tags of trial {trial.trial_id}",
            )

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Close the children still open and the parent, with trial counts on the parent.

        The parent is FINISHED when every trial ended (TERMINATED or ERROR), failed trials
        included; KILLED when some never ended (the sweep was interrupted and can be resumed).
        """
        with self._dropping("end of the sweep"):
            self._artifacts.flush()
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
            self._artifacts.flush()
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
            ts = now_ms()
            tags = {
                TAG_TRIALS_FINISHED: str(finished),
                TAG_TRIALS_FAILED: str(failed),
                TAG_TRIALS_TOTAL: str(total),
            }
            if reason:
                tags[TAG_ERROR] = one_line_text(reason)
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
