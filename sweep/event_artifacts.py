"""A trial's events as artifacts of its child run: each policy event (and each checkpoint
fallback) as ``events/<name>.json`` at once, and each range test's plot drawn on one background
thread -- matplotlib takes about a second per plot, too long for Tune's driver loop."""

from __future__ import annotations

import concurrent.futures
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sweep.store import EVENTS_DIR

#: ``call(what, fn, *args)``: the tracker's retrying, logging wrapper around a client call.
Call = Callable[..., Any]


class EventArtifacts:
    def __init__(self, call: Call, dropping: Callable[[str], Any]) -> None:
        self._call = call
        self._dropping = dropping
        self._plotter: concurrent.futures.ThreadPoolExecutor | None = None
        self._plots: list[concurrent.futures.Future[None]] = []

    def log_events(
        self, client: Any, run_id: str, epoch: int, events: Iterable[dict[str, Any]]
    ) -> None:
        """Each event as ``events/epoch_NNN_<kind>.json``; range-test plots in the background."""
        plots: list[tuple[str, dict[str, Any]]] = []
        with tempfile.TemporaryDirectory(prefix="plateau_sweep_events_") as tmp:
            folder = Path(tmp) / EVENTS_DIR
            folder.mkdir()
            used: set[str] = set()
            for ev in events:
                ev_epoch = ev.get("epoch")
                kind = re.sub(r"[^A-Za-z0-9_]+", "_", str(ev.get("kind") or "event"))
                number = ev_epoch if isinstance(ev_epoch, int) else epoch
                base = f"epoch_{number:03d}_{kind}"
                name, n = base, 2
                while name in used:
                    name, n = f"{base}_{n}", n + 1
                used.add(name)
                (folder / f"{name}.json").write_text(json.dumps(ev, indent=2, sort_keys=True))
                if kind == "range_test" and ev.get("lrs") and ev.get("losses"):
                    plots.append((name, ev))
            self._call("events", client.log_artifacts, run_id, tmp)
        for name, ev in plots:
            if self._plotter is None:
                self._plotter = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="plateau_sweep_plots"
                )
            self._plots = [f for f in self._plots if not f.done()]
            self._plots.append(self._plotter.submit(self._log_plot, client, run_id, name, ev))

    def log_fallback(self, client: Any, run_id: str, event: dict[str, Any]) -> None:
        name = f"{EVENTS_DIR}/checkpoint_fallback_{int(time.time() * 1000)}.json"
        self._call("fallback event", client.log_dict, run_id, event, name)

    def _log_plot(self, client: Any, run_id: str, name: str, event: dict[str, Any]) -> None:
        from sweep.plots import plot_range_test

        with (
            self._dropping(f"range-test plot {name}"),
            tempfile.TemporaryDirectory(prefix="plateau_sweep_plot_") as tmp,
        ):
            path = plot_range_test(event, Path(tmp) / f"{name}.png")
            self._call("plot", client.log_artifact, run_id, str(path), EVENTS_DIR)

    def flush(self) -> None:
        """Wait for the range-test plots still being drawn (end of the sweep)."""
        if self._plotter is not None:
            self._plotter.shutdown(wait=True)
            self._plotter = None
        self._plots = []
