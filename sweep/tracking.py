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

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from sweep.event_artifacts import EventArtifacts
from sweep.result_batch import Written, lr_trace_budget, result_batch
from sweep.run_values import (
    child_run_name,
    error_summary,
    flatten_config,
    integer,
    now_ms,
    running_best,
    trial_error_text,
)
from sweep.store import (
    BEST_VAL_ACC_METRIC,
    LR_STEP_METRIC,
    NODE_TAGS,
    ROLE_CHILD,
    TAG_CHECKPOINT_FALLBACK,
    TAG_ERROR,
    TAG_ERROR_DETAIL,
    TAG_FAILURES,
    TAG_FINAL_LOGGED,
    TAG_LAST_EPOCH,
    TAG_PARENT_RUN_ID,
    TAG_POLICY,
    TAG_POLICY_LABEL,
    TAG_PREVIOUS_ERROR,
    TAG_PREVIOUS_ERROR_DETAIL,
    TAG_ROLE,
    TAG_SEED,
    TAG_SWEEP,
    TAG_TRIAL_ID,
)
from sweep.tracker_parent import ParentRun
from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

_ERROR_DETAIL_CHARS = 4000
"""How much of a failure's traceback a child run keeps (its end, where the error is)."""


# -- the callback ------------------------------------------------------------------------------
@dataclass
class _Child:
    run_id: str
    written: Written = field(default_factory=Written)  # what its results have written so far
    status: str = "RUNNING"
    failures: int = 0
    has_error_tag: bool = False


class MLflowTracker(ParentRun, Callback):
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

    # -- children -------------------------------------------------------------------------------
    def _adopt(self, trial_id: str, run: Run) -> _Child:
        tags = run.data.tags
        history = self._call(
            "lr history", self.client.get_metric_history, run.info.run_id, LR_STEP_METRIC
        )
        # MLflow's SQL store commits a batch's metrics and its tags in separate transactions:
        # a driver killed between the two leaves metrics newer than the last_epoch tag.
        val = self._call("val_acc", self.client.get_metric_history, run.info.run_id, R.VAL_ACC)
        best = run.data.metrics.get(BEST_VAL_ACC_METRIC)
        if best is None:  # a run logged before best_val_acc existed
            for m in val:
                best = running_best(best, m.value)
        written = Written(
            last_epoch=max([integer(tags.get(TAG_LAST_EPOCH)) or 0, *(m.step for m in val)]),
            lr_points=len(history),
            final_logged=tags.get(TAG_FINAL_LOGGED) == "true"
            or any(k in run.data.metrics for k in R.FINAL_METRICS),
            best_val_acc=best,
            node={k: v for k, v in tags.items() if k in NODE_TAGS.values()},
        )
        child = _Child(
            run_id=run.info.run_id,
            written=written,
            status=run.info.status,
            failures=integer(tags.get(TAG_FAILURES)) or 0,
            has_error_tag=TAG_ERROR in tags,
        )
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
            self._set_child_status(child, "RUNNING")

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
        batch = result_batch(result, child.written, self._lr_budget(trial, child), tid)
        if batch is None:
            log.debug("mlflow: result of trial %s has no epoch; not logged", tid)
            return
        if batch.only_node_tags:
            if batch.node:
                self._log_batch(
                    child.run_id, tags=dict(batch.node), what=f"node tags of trial {tid}"
                )
            child.written = batch.after
            log.debug("mlflow: trial %s epoch %d already logged; skipped", tid, batch.epoch)
            return
        ts = now_ms()
        metrics = [Metric(key, value, ts, step) for key, value, step in batch.points]
        self._log_batch(
            child.run_id, metrics=metrics, tags=dict(batch.tags), what=f"metrics of trial {tid}"
        )
        child.written = batch.after
        if batch.events:
            with self._dropping(f"policy events of trial {tid}, epoch {batch.epoch}"):
                self._artifacts.log_events(
                    self.client, child.run_id, batch.epoch, list(batch.events)
                )

    def _lr_budget(self, trial: Any, child: _Child) -> int:
        config = trial.config if isinstance(getattr(trial, "config", None), Mapping) else {}
        epochs = integer(config.get("epochs"))
        return lr_trace_budget(epochs, self.lr_trace_max_points, child.written.lr_points)

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

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._dropping(f"completion of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            if child.has_error_tag:
                self._reopen(trial, child)
            self._set_child_status(child, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self._dropping(f"error of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            self._log_failure(trial, child, TAG_ERROR, TAG_ERROR_DETAIL, "error")
            child.has_error_tag = True
            self._set_child_status(child, "FAILED")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """The trial failed and Tune retries it: keep the child RUNNING, note the error."""
        with self._dropping(f"recovery of trial {trial.trial_id}"):
            child = self._ensure_child(trial)
            self._reopen(trial, child)
            self._log_failure(
                trial, child, TAG_PREVIOUS_ERROR, TAG_PREVIOUS_ERROR_DETAIL, "recovery"
            )

    def _log_failure(
        self, trial: Any, child: _Child, summary_tag: str, detail_tag: str, what: str
    ) -> None:
        """One more failure of ``trial``: its error's summary and traceback end as tags."""
        text = trial_error_text(trial)
        child.failures += 1
        self._log_batch(
            child.run_id,
            tags={
                summary_tag: error_summary(text),
                detail_tag: text[-_ERROR_DETAIL_CHARS:],
                TAG_FAILURES: str(child.failures),
            },
            what=f"{what} tags of trial {trial.trial_id}",
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
                        self._set_child_status(child, want)
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
