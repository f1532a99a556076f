"""Plateau detection with exactly the semantics of ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

The detector only decides *when* a plateau fires; what to do about it (cut the LR, run a range
test) is the policy's business.  Names and the order of the updates follow torch so that the
two can be compared step for step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainables.lr.params import RangeTestParams, ReduceOnPlateauParams, TriggerParams
from trainables.validation import build

Trigger = TriggerParams | ReduceOnPlateauParams | RangeTestParams
"""Any params model that holds a plateau trigger's fields."""


class PlateauDetector:
    """Counts epochs without improvement of a metric; :meth:`step` returns True on a plateau.

    Per step, as torch does it: an improvement sets ``best`` and zeroes the bad-epoch count,
    anything else (including NaN) adds one bad epoch; during cooldown the cooldown counter is
    decremented and bad epochs are ignored; once the bad-epoch count exceeds ``patience`` the
    plateau fires, the count is zeroed and the cooldown starts.
    """

    def __init__(
        self,
        mode: str = "min",
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
    ) -> None:
        # Keywords are checked here, through the params model; from_params trusts a built one.
        self._init(
            build(
                TriggerParams,
                mode=mode,
                patience=patience,
                threshold=threshold,
                threshold_mode=threshold_mode,
                cooldown=cooldown,
            )
        )

    @classmethod
    def from_params(cls, params: Trigger, metric_mode: str = "min") -> PlateauDetector:
        """The detector of a built params model, trusted as it is: a plateau policy's params
        are read in place (``mode: null`` follows ``metric_mode``, the monitored metric's)."""
        detector = cls.__new__(cls)
        detector._init(params, metric_mode)
        return detector

    def _init(self, params: Trigger, metric_mode: str = "min") -> None:
        self.mode = params.mode or ("max" if metric_mode == "max" else "min")
        self.patience = params.patience
        self.threshold = params.threshold
        self.threshold_mode = params.threshold_mode
        self.cooldown = params.cooldown
        self._best = math.inf if self.mode == "min" else -math.inf
        self._num_bad_epochs = 0
        self._cooldown_counter = 0

    # -- state -----------------------------------------------------------------------------------
    @property
    def best(self) -> float:
        """The best metric seen so far (+inf / -inf before the first finite one)."""
        return self._best

    @property
    def num_bad_epochs(self) -> int:
        return self._num_bad_epochs

    @property
    def cooldown_counter(self) -> int:
        return self._cooldown_counter

    @property
    def in_cooldown(self) -> bool:
        return self._cooldown_counter > 0

    # -- logic -----------------------------------------------------------------------------------
    def is_better(self, a: float, best: float) -> bool:
        """Whether ``a`` improves on ``best`` by more than the threshold (never for NaN)."""
        if math.isnan(a):
            return False
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (1.0 + self.threshold)
        return a > best + self.threshold

    def step(self, metric: float) -> bool:
        """Feed one epoch's metric; True when a plateau fires on this epoch."""
        current = float(metric)
        if self.is_better(current, self._best):
            self._best = current
            self._num_bad_epochs = 0
        else:
            self._num_bad_epochs += 1

        if self.in_cooldown:
            self._cooldown_counter -= 1
            self._num_bad_epochs = 0

        if self._num_bad_epochs > self.patience:
            self._cooldown_counter = self.cooldown
            self._num_bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain python values only (the float ``best`` may be +-inf)."""
        return {
            "mode": self.mode,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "best": float(self._best),
            "num_bad_epochs": int(self._num_bad_epochs),
            "cooldown_counter": int(self._cooldown_counter),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the running state; the configuration stays the constructor's.

        A state saved in the other ``mode`` is rejected since its ``best`` would be meaningless.
        """
        missing = [k for k in ("best", "num_bad_epochs", "cooldown_counter") if k not in state]
        if missing:
            raise ValueError(f"plateau detector state is missing {', '.join(missing)}")
        if state.get("mode", self.mode) != self.mode:
            raise ValueError(
                f"plateau detector state has mode {state['mode']!r}, this detector {self.mode!r}"
            )
        self._best = float(state["best"])
        self._num_bad_epochs = int(state["num_bad_epochs"])
        self._cooldown_counter = int(state["cooldown_counter"])

    def __repr__(self) -> str:
        return (
            f"PlateauDetector(mode={self.mode!r}, patience={self.patience}, "
            f"threshold={self.threshold}, threshold_mode={self.threshold_mode!r}, "
            f"cooldown={self.cooldown}, best={self._best}, "
            f"num_bad_epochs={self._num_bad_epochs}, cooldown_counter={self._cooldown_counter})"
        )
