"""How the MLflow tracker writes: one client, transient store errors retried, hooks that never
raise into Tune, and batches within MLflow's limits."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sweep.run_values import MAX_PARAM_LEN, one_line_text
from sweep.store import make_client, retrying

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

log = logging.getLogger("sweep.tracking")

T = TypeVar("T")

# MLflow's own limits (mlflow.utils.validation)
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_TAG_LEN = 8000


class Writes:
    """Mixin of :class:`sweep.tracking.MLflowTracker`: its store and how it writes to it."""

    tracking_uri: str
    max_tries: int
    retry_delay_s: float
    _client: MlflowClient | None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = make_client(self.tracking_uri)
        return self._client

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

    def _set_child_status(self, child: Any, status: str) -> None:
        """A trial's child run to ``status``: in MLflow and in the tracker's own record of it."""
        self._set_status(child.run_id, status, "child status")
        child.status = status

    def _set_status(self, run_id: str, status: str, what: str) -> None:
        if status == "RUNNING":
            self._call(what, self.client.update_run, run_id, status="RUNNING")
        else:
            self._call(what, self.client.set_terminated, run_id, status=status)
