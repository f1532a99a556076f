"""Framework-free learning-rate policy core: plateau detection, LR range test, suggestion rules.

Nothing here imports Ray or MLflow; the trainer wires these pieces into a trial. Torch loads
only with what needs it (:class:`TrainingSnapshot`, :func:`run_range_test`), so the configs and
the curve reading load without it: a spec is checked in well under a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trainables.lr.params import (
    MIN_RANGE_TEST_STEPS,
    PARAMS,
    POLICY_NAMES,
    ConstantParams,
    CyclicalParams,
    PolicyParams,
    RangeTestParams,
    ReduceOnPlateauParams,
    TriggerParams,
)
from trainables.lr.plateau import PlateauDetector, ReduceOnPlateauLR
from trainables.lr.policies import POLICIES, make_policy, policy_param_names
from trainables.lr.policy_base import LRPolicy, PolicyEvent, RangeProbe
from trainables.lr.range_test import STOP_REASONS, RangeTestResult, lr_ladder
from trainables.lr.range_test_policy import RangeTestDecision, RangeTestOnPlateauLR
from trainables.lr.schedules import ConstantLR, CyclicalLR
from trainables.lr.suggest import (
    BETA_RANGE,
    SUGGESTION_RULES,
    CurveAnalysis,
    analyse_curve,
    auto_beta,
    batch_noise,
    min_steps_to_suggest,
    pick,
    smooth_curve,
    smooth_losses,
    suggest_lr_with_reason,
)

if TYPE_CHECKING:
    from trainables.lr.range_test import run_range_test
    from trainables.lr.snapshot import TrainingSnapshot

_NEED_TORCH = {"TrainingSnapshot": "snapshot", "run_range_test": "range_test"}


def __getattr__(name: str) -> Any:
    if name not in _NEED_TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_NEED_TORCH[name]}"), name)


__all__ = [
    "BETA_RANGE",
    "MIN_RANGE_TEST_STEPS",
    "PARAMS",
    "POLICIES",
    "POLICY_NAMES",
    "STOP_REASONS",
    "SUGGESTION_RULES",
    "ConstantLR",
    "ConstantParams",
    "CurveAnalysis",
    "CyclicalLR",
    "CyclicalParams",
    "LRPolicy",
    "PlateauDetector",
    "PolicyEvent",
    "PolicyParams",
    "RangeProbe",
    "RangeTestDecision",
    "RangeTestOnPlateauLR",
    "RangeTestParams",
    "RangeTestResult",
    "ReduceOnPlateauLR",
    "ReduceOnPlateauParams",
    "TrainingSnapshot",
    "TriggerParams",
    "analyse_curve",
    "auto_beta",
    "batch_noise",
    "lr_ladder",
    "make_policy",
    "min_steps_to_suggest",
    "pick",
    "policy_param_names",
    "run_range_test",
    "smooth_curve",
    "smooth_losses",
    "suggest_lr_with_reason",
]
