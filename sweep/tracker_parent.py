"""The sweep's parent run: its experiment, creating it or finding it again on resume, its
children as the store knows them, closing it with the trial counts, and Tune's checkpoint of
the mapping."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from sweep.provenance import collect_provenance
from sweep.run_values import integer, now_ms, one_line_text
from sweep.store import (
    EXPERIMENT_KIND_TRAINING,
    ROLE_PARENT,
    RUN_STATUSES,
    SPEC_ARTIFACT,
    TAG_ERROR,
    TAG_EXPERIMENT_KIND,
    TAG_RESULTS_DIR,
    TAG_RESUMES,
    TAG_ROLE,
    TAG_SPEC_PATH,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TAG_TRIALS_FAILED,
    TAG_TRIALS_FINISHED,
    TAG_TRIALS_TOTAL,
    TrackingError,
    children_filter,
    default_artifact_location,
    parent_filter,
    search_all_runs,
)
from sweep.tracker_writes import Writes

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger("sweep.tracking")


class ParentRun(Writes):
    """Mixin of :class:`sweep.tracking.MLflowTracker`: the parent run's lifecycle."""

    experiment_name: str
    sweep_name: str
    spec_text: str
    spec_path: str | None
    results_dir: str | None
    resume: bool
    artifact_location: str | None
    _experiment_id: str | None
    _parent_run_id: str | None
    _parent_status: str | None
    _children: dict[str, Any]
    _existing: dict[str, Run]
    _state_parent_run_id: str | None
    _artifacts: Any

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
                        self._set_child_status(child, "KILLED")
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
