"""The MLflow runs view of a sweep: which runs it lists, which columns it shows, and the link
that opens it.

Opened plainly, MLflow 3.17's UI lands on an experiment's GenAI overview (traces, token
usage), and its runs page folds the trials under their parent run and shows no metric or
param column. The link built here uses three mechanisms of MLflow's own UI instead
(``mlflow/server/js/build``):

* ``workflowType=machine_learning`` in the link switches the UI to its model-training mode.
  In 3.17's open-source build that mode comes from this URL parameter or from the browser's
  last choice (GenAI at first), never from the experiment's ``mlflow.experimentKind`` tag
  (the code that reads the tag is switched off there); the tag is set anyway
  (``custom_model_development``), for MLflow builds that do read it.
* ``viewStateShareKey=<key>`` in the link makes the runs page load its view -- search filter,
  sort, selected columns, column order and widths -- from the experiment tag
  ``mlflow.sharedViewState.<key>``: a saved view, listed by name under the page's "Views".
* That view's search filter keeps only the sweep's trial runs, so none is folded under the
  parent and the parent's trial counters stay out of the charts.

Only this module knows MLflow's view format; :mod:`sweep.ui` serves the UI.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sweep.errors import SweepError
from sweep.spec import ARM_KEY
from sweep.store import (
    BEST_VAL_ACC_METRIC,
    EXPERIMENT_KIND_TRAINING,
    ROLE_CHILD,
    ROLE_PARENT,
    TAG_EXPERIMENT_KIND,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
    TAG_RUN_NAME,
    TAG_SWEEP,
    search_all_runs,
)
from trainables import results as R

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

#: The experiment tag prefix of a saved runs view (MLflow's ``mlflow.sharedViewState.``).
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
#: The link parameter that names the saved view to open, and the one that picks the UI mode.
VIEW_KEY_PARAM = "viewStateShareKey"
WORKFLOW_PARAM = "workflowType"
WORKFLOW_TRAINING = "machine_learning"

#: The columns after the run name (MLflow's column ids): the results, then policy and seed.
COLUMNS = (
    f"metrics.`{BEST_VAL_ACC_METRIC}`",
    f"metrics.`{R.TEST_ACC}`",
    f"params.`{ARM_KEY}`",
    f"params.`{R.SEED}`",
)
_NAME_COLUMN = "attributes.`Run Name`"
#: Room for "range_test_on_plateau · seed 0" and for "range_test_on_plateau".
_WIDTHS_PX = {_NAME_COLUMN: 240, f"params.`{ARM_KEY}`": 180}
_FINISHED = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class SweepView:
    """A sweep's runs view as saved in the store."""

    sweep_name: str
    experiment_id: str
    parent_run_id: str
    key: str
    trial_runs: tuple[str, ...]  # run names, in the view's order

    def link(self, base_url: str) -> str:
        return runs_link(base_url, self.experiment_id, self.key)


def view_key(sweep_name: str) -> str:
    """The saved view's key (one per sweep; sweep names are ``[A-Za-z0-9._-]``)."""
    return f"plateau_sweep.trials.{sweep_name}"


def runs_link(base_url: str, experiment_id: str, key: str) -> str:
    """The UI link that opens the saved view ``key`` of an experiment in model-training mode."""
    query = urlencode({WORKFLOW_PARAM: WORKFLOW_TRAINING, VIEW_KEY_PARAM: key})
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def trials_filter(sweep_name: str, parent_run_id: str | None = None) -> str:
    """MLflow search filter for a sweep's trial runs (of one parent run when given)."""
    text = f"tags.`{TAG_SWEEP}` = '{sweep_name}' AND tags.`{TAG_ROLE}` = '{ROLE_CHILD}'"
    if parent_run_id is not None:
        text += f" AND tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'"
    return text


def view_state(search_filter: str) -> dict[str, Any]:
    """The runs page state MLflow's UI restores from a saved view: search facets (filter,
    sort) and UI state (columns, their order and widths; every run in the charts, where MLflow
    otherwise shows only the first 10)."""
    return {
        "searchFilter": search_filter,
        "orderByKey": f"tags.`{TAG_RUN_NAME}`",
        "orderByAsc": True,
        "selectedColumns": list(COLUMNS),
        "columnOrder": [_NAME_COLUMN, "runDateAndNestInfo", "duration", *COLUMNS],
        "columnWidths": dict(_WIDTHS_PX),
        "runsHiddenMode": "SHOW_ALL",
    }


def saved_view(name: str, state: dict[str, Any], now_ms: int) -> str:
    """The tag value of a saved view: MLflow's envelope around the JSON of the state."""
    return json.dumps(
        {"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)}
    )


# -- the store ---------------------------------------------------------------------------------
def publish_view(client: MlflowClient, tracking_uri: str, sweep_name: str) -> SweepView:
    """Save the sweep's runs view in its experiment (and mark the experiment as model
    training); return it. Writes only tags, plus ``best_val_acc`` for finished trial runs
    logged before the tracker wrote it. Raises SweepError, or CompareError for an unknown sweep."""
    from sweep.readback import find_parent

    parent, _ = find_parent(client, tracking_uri, sweep_name)
    experiment_id = str(parent.info.experiment_id)
    parents = search_all_runs(
        client,
        [experiment_id],
        f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}' AND tags.`{TAG_SWEEP}` = '{sweep_name}'",
    )
    # A sweep name run twice into one experiment: show the newest sweep, as compare does.
    only = parent.info.run_id if len(parents) > 1 else None
    search_filter = trials_filter(sweep_name, only)
    trials = search_all_runs(
        client, [experiment_id], search_filter, order_by=[f"tags.`{TAG_RUN_NAME}` ASC"]
    )
    key = view_key(sweep_name)
    state = view_state(search_filter)
    try:
        experiment = client.get_experiment(experiment_id)
        if TAG_EXPERIMENT_KIND not in experiment.tags:
            client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING)
        value = saved_view(f"trials of {sweep_name}", state, int(time.time() * 1000))
        client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, value)
        backfill_best_val_acc(client, trials)
    except Exception as exc:  # a read-only or locked store, a server that refuses writes
        detail = " ".join(str(exc).split())[:200]
        raise SweepError(
            f"tracking store {tracking_uri}: cannot save the sweep's runs view "
            f"({type(exc).__name__}: {detail})",
            "make the store writable (or wait for the sweep writing to it) and rerun",
        ) from None
    return SweepView(
        sweep_name=sweep_name,
        experiment_id=experiment_id,
        parent_run_id=parent.info.run_id,
        key=key,
        trial_runs=tuple(run.info.run_name for run in trials),
    )


def backfill_best_val_acc(client: MlflowClient, runs: Sequence[Run]) -> int:
    """Log ``best_val_acc`` (the running max of val_acc, step = epoch) on the finished runs
    that lack it: runs logged before the tracker wrote it. Returns how many were filled."""
    from mlflow.entities import Metric

    filled = 0
    for run in runs:
        if run.info.status not in _FINISHED or BEST_VAL_ACC_METRIC in run.data.metrics:
            continue
        history = sorted(
            (m.step, m.timestamp, m.value)
            for m in client.get_metric_history(run.info.run_id, R.VAL_ACC)
        )
        best = -math.inf
        points = []
        for step, timestamp, value in history:
            if math.isfinite(value):
                best = max(best, value)
            if math.isfinite(best):
                points.append(Metric(BEST_VAL_ACC_METRIC, best, timestamp, step))
        if points:
            client.log_batch(run.info.run_id, metrics=points[-1000:], synchronous=True)
            filled += 1
    return filled
