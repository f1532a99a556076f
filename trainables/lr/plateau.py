"""Plateaus: the detector, with exactly the semantics of
``torch.optim.lr_scheduler.ReduceLROnPlateau``, the base of the policies it triggers, and the
one that cuts the LR (:class:`ReduceOnPlateauLR`).

The detector only decides *when* a plateau fires; what to do about it is the policy's: cut the
LR, or run a short range test and jump to its pick
(:class:`trainables.lr.range_test_policy.RangeTestOnPlateauLR`). Names and the order of the
updates follow torch so that the two can be compared step for step. A plateau whose metric is
no better than chance (:func:`at_chance`) also gets a ``not_learning`` warning.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from trainables.lr.params import PlateauParams, ReduceOnPlateauParams, TriggerParams
from trainables.lr.policy_base import LRPolicy, PolicyEvent, RangeProbe, fmt
from trainables.validation import build

Trigger = TriggerParams | PlateauParams
"""Any params model that holds a plateau trigger's fields."""
REDUCE_EPS = 1e-8
"""reduce_on_plateau changes the LR only when old - new > eps (torch's ReduceLROnPlateau)."""


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


class PlateauPolicy(LRPolicy):
    """Shared plumbing: a PlateauDetector on the monitored metric and a current LR. The
    detector's ``mode: null`` follows the metric's mode."""

    params: PlateauParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector = PlateauDetector.from_params(self.params, self.metric_mode)
        self._lr = self.base_lr
        self.num_plateaus = 0

    def lr(self) -> float:
        return self._lr

    def _check_probe(self, probe: RangeProbe | None) -> None:
        """Hook: raise if this policy cannot work with ``probe``."""

    def _end_epoch(
        self, epoch: int, metric: float | None, probe: RangeProbe | None
    ) -> list[PolicyEvent]:
        if metric is None:
            raise ValueError(
                f"policy {self.name!r} needs the monitored metric ({self.metric_name}) "
                f"at the end of every epoch, got None at epoch {epoch}"
            )
        self._check_probe(probe)
        if not self.detector.step(metric):
            return []
        self.num_plateaus += 1
        plateau = (
            f"plateau: {self.metric_name} did not improve for {self.detector.patience + 1} "
            f"epochs (best {fmt(self.detector.best)})"
        )
        at_chance = self._at_chance(metric)
        events = [self._on_plateau(epoch, plateau, probe, at_chance)]
        if at_chance:
            events.append(self._not_learning(epoch, plateau, metric))
        return events

    @abstractmethod
    def _on_plateau(
        self, epoch: int, plateau: str, probe: RangeProbe | None, at_chance: bool
    ) -> PolicyEvent:
        """The LR decision at a plateau; ``at_chance``: the metric is no better than chance."""

    def _at_chance(self, metric: float) -> bool:
        margin = self.params.chance_margin
        if margin is None or self.chance_level is None:
            return False
        return at_chance(metric, self.chance_level, self.metric_mode, margin)

    def _not_learning(self, epoch: int, plateau: str, metric: float) -> PolicyEvent:
        """The warning beside a plateau at chance; the LR is whatever the policy just chose.

        Neither the metric nor a range test's curve tells a network killed by an LR far too
        high (nothing rescues it: restart lower) from one held at chance by an LR far too low
        (a range test raises it): docs/performance.md 6b."""
        return PolicyEvent(
            epoch=epoch,
            kind="not_learning",
            reason=f"{plateau}; {self.metric_name} {fmt(metric)} is no better than chance"
            f" ({fmt(self.chance_level or 0.0)}): the run is not learning; its lr is far too"
            " high (a dead network: restart with a lower one) or far too low",
            old_lr=self._lr,
            new_lr=self._lr,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "lr": float(self._lr),
            "num_plateaus": int(self.num_plateaus),
            "detector": self.detector.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.detector.load_state_dict(state["detector"])
        self._lr = float(state["lr"])
        self.num_plateaus = int(state["num_plateaus"])


class ReduceOnPlateauLR(PlateauPolicy):
    """``torch.optim.lr_scheduler.ReduceLROnPlateau``: on a plateau, lr = max(lr*factor, min_lr)."""

    name = "reduce_on_plateau"
    params_class = ReduceOnPlateauParams

    @property
    def factor(self) -> float:
        return self.params.factor

    @property
    def min_lr(self) -> float:
        return self.params.min_lr

    def _on_plateau(
        self, epoch: int, plateau: str, probe: RangeProbe | None, at_chance: bool
    ) -> PolicyEvent:
        old = self._lr
        new = max(old * self.factor, self.min_lr)
        if old - new > REDUCE_EPS:
            self._lr = new
            action = f"lr {fmt(old)} -> {fmt(new)} (x {self.factor:g}, floor {fmt(self.min_lr)})"
        else:
            new = old
            action = f"lr {fmt(old)} unchanged (within {REDUCE_EPS:g} of min_lr {fmt(self.min_lr)})"
        return PolicyEvent(
            epoch=epoch, kind="reduce", reason=f"{plateau}; {action}", old_lr=old, new_lr=new
        )


def chance_level(mode: str, num_classes: int) -> float:
    """A metric's value for a uniform guess over ``num_classes`` classes: ln of it for a metric
    minimised (a cross-entropy loss), its inverse for one maximised (an accuracy)."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode ({mode!r}) must be 'min' or 'max'")
    if num_classes < 2:
        raise ValueError(f"num_classes ({num_classes!r}) must be >= 2")
    return math.log(num_classes) if mode == "min" else 1.0 / num_classes


def at_chance(metric: float, chance: float, mode: str, margin: float) -> bool:
    """Whether ``metric`` is no better than a uniform guess: within ``margin`` of the way from
    the ``chance`` value to a perfect score (0 for a metric minimised, a loss; 1 for one
    maximised, an accuracy), or worse. NaN is not judged (False).

    For CIFAR-10's cross-entropy, chance is ln 10 = 2.303 and the default margin 0.02 flags
    a loss of 2.257 or more; for accuracy, chance is 0.1 and the margin flags 0.118 or less.
    A network that died in its first epochs (every output the same) sits there, and so does
    an untrained one whose LR is far too low.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode ({mode!r}) must be 'min' or 'max'")
    if not 0 <= margin < 1:
        raise ValueError(f"margin ({margin!r}) must be in [0, 1)")
    if math.isnan(metric):
        return False
    if mode == "min":
        return metric >= chance * (1 - margin)
    return metric <= chance + margin * (1 - chance)
