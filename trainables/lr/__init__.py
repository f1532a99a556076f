"""Framework-free learning-rate policy core: plateau detection, LR range test, suggestion rules.

Nothing here imports Ray or MLflow; the trainer wires these pieces into a trial.
"""

from trainables.lr.plateau import PlateauDetector
from trainables.lr.policies import (
    POLICY_NAMES,
    ConstantLR,
    CyclicalLR,
    LRPolicy,
    PolicyEvent,
    RangeProbe,
    RangeTestOnPlateauLR,
    ReduceOnPlateauLR,
    make_policy,
    policy_param_names,
)
from trainables.lr.range_test import STOP_REASONS, RangeTestResult, lr_ladder, run_range_test
from trainables.lr.snapshot import TrainingSnapshot
from trainables.lr.suggest import (
    SUGGESTION_RULES,
    batch_noise,
    smooth_losses,
    suggest_lr,
    suggest_lr_with_reason,
)

__all__ = [
    "POLICY_NAMES",
    "STOP_REASONS",
    "SUGGESTION_RULES",
    "ConstantLR",
    "CyclicalLR",
    "LRPolicy",
    "PlateauDetector",
    "PolicyEvent",
    "RangeProbe",
    "RangeTestOnPlateauLR",
    "RangeTestResult",
    "ReduceOnPlateauLR",
    "TrainingSnapshot",
    "batch_noise",
    "lr_ladder",
    "make_policy",
    "policy_param_names",
    "run_range_test",
    "smooth_losses",
    "suggest_lr",
    "suggest_lr_with_reason",
]
