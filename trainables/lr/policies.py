"""The LR policies by name. A trial builds its policy's class from :data:`POLICIES` with the
params the driver validated; :func:`make_policy` builds one from plain parameters and checks
them (tests, benchmarks, the Python API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from trainables.lr.params import POLICY_NAMES, Params, param_names
from trainables.lr.plateau import ReduceOnPlateauLR
from trainables.lr.policy_base import LRPolicy
from trainables.lr.range_test_policy import RangeTestOnPlateauLR
from trainables.lr.schedules import ConstantLR, CyclicalLR
from trainables.validation import did_you_mean


class PolicyClass(Protocol):
    """How a policy is built: what the trial gives every policy, and its params (a validated
    model, or its fields as keywords, checked by the policy)."""

    def __call__(
        self,
        *,
        params: Any = ...,
        base_lr: float,
        steps_per_epoch: int,
        metric_name: str = ...,
        metric_mode: str = ...,
        chance_level: float | None = ...,
        **fields: Any,
    ) -> LRPolicy: ...


POLICIES: dict[str, PolicyClass] = {
    cls.name: cls for cls in (ConstantLR, CyclicalLR, ReduceOnPlateauLR, RangeTestOnPlateauLR)
}
"""Each policy class by name; a trial builds its class from its validated params directly."""
assert tuple(POLICIES) == POLICY_NAMES
_TRIAL_ARGS = ("base_lr", "steps_per_epoch", "chance_level")


def policy_param_names(name: str) -> tuple[str, ...]:
    """The parameters a spec may set for policy ``name`` (base_lr/steps_per_epoch come from the
    trial)."""
    _policy_class(name)
    return param_names(name)


def make_policy(
    name: str,
    params: Mapping[str, Any] | Params,
    *,
    base_lr: float,
    steps_per_epoch: int,
    metric_name: str = "metric",
    metric_mode: str = "min",
    chance_level: float | None = None,
) -> LRPolicy:
    """Build policy ``name`` from a validated params model (as the trial does: nothing is checked
    again) or from plain parameters (validated here; unknown names/parameters raise ValueError).
    """
    cls = _policy_class(name)
    trial: dict[str, Any] = {
        "base_lr": base_lr,
        "steps_per_epoch": steps_per_epoch,
        "metric_name": metric_name,
        "metric_mode": metric_mode,
        "chance_level": chance_level,
    }
    if isinstance(params, Params):
        return cls(params=params, **trial)
    valid = policy_param_names(name)
    for key in params:
        if key in _TRIAL_ARGS:
            raise ValueError(
                f"parameter {key!r} for policy {name!r} comes from the trial, not the policy params"
            )
        if key not in valid:
            raise ValueError(
                f"unknown parameter {key!r} for policy {name!r}"
                f"{did_you_mean(str(key), valid)}; valid: {', '.join(valid) or 'none'}"
            )
    return cls(**trial, **params)  # the policy checks its parameters as keywords


def _policy_class(name: str) -> PolicyClass:
    if name not in POLICIES:
        raise ValueError(
            f"unknown policy {name!r}{did_you_mean(str(name), POLICY_NAMES)}; "
            f"valid: {', '.join(POLICY_NAMES)}"
        )
    return POLICIES[name]
