"""Which trial failures Tune retries: not the deterministic ones.

A trial that hits a non-finite training loss would hit it again from the same checkpoint with
the same data order, so retrying it ``max_failures`` times only wastes the time. The trial
reports ``no_retry`` (with the reason) just before it raises; this callback, which sees the
result before Tune handles the failure, sets the trial's retries to zero.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from trainables import results as R


class NoRetryOnDeterministicFailure(Callback):
    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if result.get(R.NO_RETRY):
            trial.max_failures = 0  # sweep.terminal prints the one line about it
