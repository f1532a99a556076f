"""Framework-free learning-rate policy core: plateau detection, LR range test, suggestion rules.

Nothing here imports Ray or MLflow; the trainer wires these pieces into a trial.
"""

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
from trainables.lr.plateau import (
    PlateauDetector,
    RangeTestDecision,
    RangeTestOnPlateauLR,
    ReduceOnPlateauLR,
)
from trainables.lr.policies import POLICIES, make_policy, policy_param_names
from trainables.lr.policy_base import LRPolicy, PolicyEvent, RangeProbe
from trainables.lr.range_test import STOP_REASONS, RangeTestResult, lr_ladder, run_range_test
from trainables.lr.schedules import ConstantLR, CyclicalLR
from trainables.lr.snapshot import TrainingSnapshot
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
