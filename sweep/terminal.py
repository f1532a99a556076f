"""What a running sweep prints: Tune's status table, pointing at the sweep's own results
folder, and the project's one-line events -- range tests, retries, failures.

Ray's per-checkpoint lines, its ``Tuner.restore(...)`` hint (``--resume`` is the way here) and
the full traceback of every trial failure stay out of the terminal: the traceback is in the
trial's ``error.txt`` and in its MLflow run's tags, and the terminal gets one line naming them.
``run --verbose`` leaves all of Ray's output as it is.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import tune
from ray.tune import Callback

from sweep.run_values import error_summary, not_learning_line, trial_error_text
from trainables import results as R

#: Seconds one step of Tune's driver loop may take before Tune warns (Ray's default is 0.5).
SLOW_STEP_S = 2.0

#: Tune's own resume hint names its Python API; the CLI prints ``--resume`` instead.
_TUNE_RESUME_HINT = "Resume experiment with"


def quiet_ray(verbose: bool) -> None:
    """Before Ray starts: keep trial tracebacks, Tune's resume hint, MLflow's set-up lines and
    Tune's slow-step warnings below ``SLOW_STEP_S`` out of the terminal (unless ``verbose``; a
    ``TUNE_WARN_THRESHOLD_S`` the user set is kept)."""
    if verbose:
        return
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    tune_log = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _DropResumeHint) for f in tune_log.filters):
        tune_log.addFilter(_DropResumeHint())
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # in case it was imported already
    # Tune warns when one step of its driver loop takes longer than TUNE_WARN_THRESHOLD_S
    # (0.5 s): "... may be a performance bottleneck. Please consider reporting results less
    # frequently". A trial reports once per epoch, and the callbacks that record a result
    # (the MLflow write among them) take tens of ms; but with every core given to trials (a
    # trial per core, as in the default spec) the driver waits for CPU, and on a 2-core
    # machine they have taken 0.51 s. Past 2 s it is worth a line.
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", str(SLOW_STEP_S))
    from ray.tune.utils.util import warn_if_slow  # read the variable at import: set it again

    warn_if_slow.DEFAULT_THRESHOLD = float(os.environ["TUNE_WARN_THRESHOLD_S"])


class _DropResumeHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TUNE_RESUME_HINT not in record.getMessage()


class StatusTable(tune.CLIReporter):
    """Tune's status table, with the sweep's results folder instead of Ray's staging one."""

    def __init__(self, *args: Any, results_dir: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results_dir = results_dir

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        lines = self._progress_str(trials, done, *sys_info).splitlines()
        lines = [
            f"Results: {self.results_dir}" if line.startswith("Result logdir:") else line
            for line in lines
        ]
        print("\n".join(lines), flush=True)


def trial_name(trial: Any) -> str:
    """``range_test_on_plateau seed 0`` (+ the trial id), as the events name a trial."""
    config = trial.config if isinstance(getattr(trial, "config", None), dict) else {}
    label = config.get("policy_label") or config.get("policy") or "trial"
    seed = config.get("seed")
    return f"{label}" + (f" seed {seed}" if seed is not None else "") + f" ({trial.trial_id})"


class EventLines(Callback):
    """One line per event the user should see while a sweep runs."""

    def __init__(self) -> None:
        self._no_retry: set[str] = set()
        self._not_learning: set[str] = set()  # trials already reported as not learning

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if result.get(R.NO_RETRY):
            self._no_retry.add(str(trial.trial_id))
            return
        try:
            events = R.decode_events(dict(result))
        except (TypeError, ValueError):
            return
        for event in events:
            if not isinstance(event, dict):
                continue
            if event.get("kind") == "range_test":
                print(f"{trial_name(trial)}: {range_test_line(event)}", flush=True)
            elif event.get("kind") == "not_learning" and trial.trial_id not in self._not_learning:
                # Once per trial: a run stuck at chance says the same at its later plateaus.
                self._not_learning.add(trial.trial_id)
                line = f"{trial_name(trial)}: {not_learning_line(event)} (said once per trial)"
                print(line, flush=True)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(
            f"{trial_name(trial)}: {error_summary(trial_error_text(trial))[:200]}; retrying "
            f"from its last checkpoint (failure {trial.num_failures} of at most "
            f"{trial.max_failures})",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        where = getattr(trial, "error_file", None) or "the trial's error.txt"
        how = (
            "failed, not retried (it would fail the same way)"
            if str(trial.trial_id) in self._no_retry
            else "failed"
        )
        print(
            f"{trial_name(trial)}: {how}: {error_summary(trial_error_text(trial))[:200]} "
            f"(full text: {where}, and its MLflow run's plateau_sweep.error_detail tag)",
            flush=True,
        )


def range_test_line(event: dict[str, Any]) -> str:
    """``epoch 4 range test: lr 0.001 -> 0.0003 (range test suggested 3e-4 (midpoint))``.

    The decision is every part of the event's reason from the suggestion (or its absence) on,
    the fallback, a limit or the divergence guard included, but not the closing ``lr a -> b``.
    """
    parts = str(event.get("reason", "")).split("; ")
    start = next(
        (
            i
            for i, part in enumerate(parts)
            if part.startswith(("range test suggested", "no suggestion"))
        ),
        len(parts),
    )
    end = len(parts) - 1 if " -> " in parts[-1] and parts[-1].startswith("lr ") else len(parts)
    decision = "; ".join(parts[start:end])
    old, new = event.get("old_lr"), event.get("new_lr")
    lrs = f"lr {old:.3g} -> {new:.3g}" if isinstance(old, float) and isinstance(new, float) else ""
    return f"epoch {event.get('epoch')} range test: {lrs}" + (f" ({decision})" if decision else "")
