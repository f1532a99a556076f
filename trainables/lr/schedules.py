"""The LR as a function of the iteration: constant, and Smith's (2017) cyclical schedules."""

from __future__ import annotations

import math
from typing import Any

from trainables.lr.params import ConstantParams, CyclicalParams
from trainables.lr.policy_base import LRPolicy


class ConstantLR(LRPolicy):
    """``base_lr`` throughout."""

    name = "constant"
    params_class = ConstantParams

    def lr(self) -> float:
        return self.base_lr


class CyclicalLR(LRPolicy):
    """Smith (2017) cyclical LR on the global iteration, between ``base_lr`` and ``max_lr``.

    Parameters: a :class:`CyclicalParams`, or its fields as keywords (validated here).
    """

    name = "cyclical"
    params_class = CyclicalParams
    params: CyclicalParams

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.params
        if kwargs.get("params") is None and self.base_lr >= p.max_lr:  # checked here
            raise ValueError(f"base_lr ({self.base_lr}) must be < max_lr ({p.max_lr})")
        self.max_lr, self.mode, self.gamma = p.max_lr, p.mode, p.gamma
        if p.step_size_iters is not None:
            self.step_size = float(p.step_size_iters)
        else:
            self.step_size = float(p.step_size_epochs or 0.0) * self.steps_per_epoch

    def lr(self) -> float:
        it, ss = self.iteration, self.step_size
        cycle = math.floor(1 + it / (2 * ss))
        x = abs(it / ss - 2 * cycle + 1)
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1.0 / 2.0 ** (cycle - 1)
        else:
            scale = self.gamma**it
        return self.base_lr + (self.max_lr - self.base_lr) * max(0.0, 1.0 - x) * scale
