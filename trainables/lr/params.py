"""The parameters of each LR policy and of the plateau trigger: the one place that holds their
defaults, bounds and choices.

Each model is frozen and strict (``"3"`` is not 3, ``true`` is not 1) and refuses unknown keys.
Building one is the validation: a bad value raises pydantic's ``ValidationError`` (a
``ValueError``) naming the field. The sweep spec embeds these models, so a spec is checked once,
on the driver; the policies and the plateau detector take a built model and check nothing again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from trainables.lr.suggest import BETA_RANGE, SUGGESTION_RULES, min_steps_to_suggest

MIN_RANGE_TEST_STEPS = min_steps_to_suggest()
"""The shortest range test that can give a suggestion at all (num_steps, min_steps)."""

Mode = Literal["min", "max"]
ThresholdMode = Literal["rel", "abs"]
CyclicalMode = Literal["triangular", "triangular2", "exp_range"]
Measure = Literal["held_out", "train_batch"]
"""What a range test records per LR: the loss on one fixed held-out batch after the step
(default, low noise), or the loss of the batch trained on (the classic finder)."""
Rule = Literal[SUGGESTION_RULES]  # type: ignore[valid-type]
Fallback = Literal["below_divergence", "cut", "keep", "keep_or_raise"]
"""What a range test without a usable descent does: go to ``factor`` x the LR where the test's
loss began to diverge (``below_divergence``, the default; the LR is kept when the curve never
diverged), ``cut`` the LR by ``factor`` (what reduce_on_plateau does), ``keep`` it, or
``keep_or_raise``: keep it, unless ``factor`` x the divergence LR is higher (never a cut: an
LR inside the diverging part is cut by the guard that every fallback has).
``benchmarks/oracle.py`` chose the default on badly set LRs it had not seen before."""


def keyed_error(path: str, problem: str) -> PydanticCustomError:
    """A validation error about the key ``path`` (relative to the model raising it); the
    sweep's spec errors join it to the location (``policies[0].params.min_lr: ...``)."""
    return PydanticCustomError("spec", "{path}: {problem}", {"path": path, "problem": problem})


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TriggerParams(Params):
    """When a plateau fires, with the semantics of torch's ``ReduceLROnPlateau``."""

    mode: Mode = "min"
    patience: int = Field(10, ge=0)
    threshold: float = Field(1e-4, ge=0)
    threshold_mode: ThresholdMode = "rel"
    cooldown: int = Field(0, ge=0)


class ConstantParams(Params):
    name: Literal["constant"] = "constant"


class CyclicalParams(Params):
    """Smith (2017) cyclical LR between the trial's lr and ``max_lr``; give exactly one of
    ``step_size_epochs`` (half-cycle in epochs) and ``step_size_iters``."""

    name: Literal["cyclical"] = "cyclical"
    max_lr: float = Field(gt=0)
    mode: CyclicalMode = "triangular"
    step_size_epochs: float | None = Field(2.0, gt=0)
    step_size_iters: int | None = Field(None, ge=1)
    gamma: float = Field(0.99994, gt=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _iterations_replace_epochs(cls, data: Any) -> Any:
        # Giving the half-cycle in iterations replaces the default in epochs.
        if isinstance(data, dict) and "step_size_iters" in data and "step_size_epochs" not in data:
            data = {**data, "step_size_epochs": None}
        return data

    @model_validator(mode="after")
    def _one_step_size(self) -> CyclicalParams:
        if (self.step_size_epochs is None) == (self.step_size_iters is None):
            raise keyed_error(
                "step_size_epochs",
                "give exactly one of step_size_epochs and step_size_iters "
                "(set step_size_epochs: null to use step_size_iters)",
            )
        return self


class _PlateauParams(Params):
    """The trigger of a plateau policy; ``mode`` None follows the monitored metric.
    ``chance_margin`` (None: off): a plateau where the monitored metric is no better than
    chance (within that share of the way from chance to a perfect score, ``plateau.at_chance``)
    also emits a ``not_learning`` event; the LR decision is the policy's as always."""

    mode: Mode | None = None
    threshold: float = Field(1e-4, ge=0)
    threshold_mode: ThresholdMode = "rel"
    chance_margin: float | None = Field(0.02, ge=0, lt=1)


class ReduceOnPlateauParams(_PlateauParams):
    """torch's ``ReduceLROnPlateau``: on a plateau, lr = max(lr * factor, min_lr)."""

    name: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    patience: int = Field(10, ge=0)
    cooldown: int = Field(0, ge=0)
    factor: float = Field(0.1, gt=0, lt=1)
    min_lr: float = Field(0.0, ge=0)


_SHORTEST = "a shorter range test can never suggest an LR"


class RangeTestParams(_PlateauParams):
    """On a plateau, a short LR range test from a snapshot; the rule's pick, or the
    ``fallback`` when the curve has no usable descent; ``max_change`` (None: no limit) bounds
    one test's move to that factor either way (10, chosen with ``benchmarks/oracle.py`` on
    badly set LRs it had not seen); ``max_raise`` (None: only ``max_change``) bounds a raise
    to that factor (1: never raise; below 1, every test cuts at least to that factor, a floor
    under the fixed cut) unless the plateau is at chance. ``anchor`` (None: off)
    moves the pick ``pull`` decades toward ``anchor`` x the running LR, never past it.
    ``first_loss_intercept`` and ``first_loss_slope`` (None: off; give both) replace a pick at
    most 0.3 decade above the running LR by the running LR x 10^(intercept + slope x the
    curve's first loss), kept below the curve's smoothed minimum: a calibration, fitted per
    optimizer on CIFAR-10 seed_cnn states (``benchmarks/level_rule.py``: Adam -1.13, 0.45;
    SGD with momentum -1.23, 0.42), of a held-out test from ``min_lr`` 1e-6. Off by default:
    of two readings fixed before fresh well-set states were trained, one missed the 0.2-decade
    target and the other the 2-epoch bias target (-0.103 against +-0.1), and end to end it
    moved test_acc by +0.08 points with Adam (CI -0.47 .. +0.63) and -0.05 with SGD (CI -0.74
    .. +0.64).
    ``beta`` None fits the smoothing to the test's length and noise. The default rule,
    ``midpoint``, was chosen end to end: on seeds 5-9, by a rule fixed before the sweep ran
    (ce8ec29), it beat ``steepest`` by 1.25 points of test_acc over 10 pairs
    (docs/performance.md 6b; the oracle alone had favoured ``steepest``)."""

    name: Literal["range_test_on_plateau"] = "range_test_on_plateau"
    patience: int = Field(3, ge=0)
    cooldown: int = Field(2, ge=0)
    min_lr: float = Field(1e-6, gt=0)
    max_lr: float = Field(1.0, gt=0)
    num_steps: int | None = Field(None, ge=MIN_RANGE_TEST_STEPS, description=_SHORTEST)
    epoch_fraction: float = Field(0.1, gt=0)
    min_steps: int = Field(20, ge=MIN_RANGE_TEST_STEPS, description=_SHORTEST)
    rule: Rule = "midpoint"
    factor: float = Field(0.1, gt=0, lt=1)
    fallback: Fallback = "below_divergence"
    max_change: float | None = Field(10.0, gt=1)
    max_raise: float | None = Field(None, gt=0)
    anchor: float | None = Field(None, gt=0, le=1)
    pull: float = Field(0.25, gt=0, le=2)
    first_loss_intercept: float | None = Field(None, ge=-3, le=3)
    first_loss_slope: float | None = Field(None, ge=-3, le=3)
    beta: float | None = Field(None, ge=BETA_RANGE[0], lt=BETA_RANGE[1])
    measure: Measure = "held_out"

    @model_validator(mode="after")
    def _range(self) -> RangeTestParams:
        if self.min_lr >= self.max_lr:
            raise keyed_error("min_lr", f"must be < max_lr ({self.max_lr:g}), got {self.min_lr:g}")
        if (
            self.max_raise is not None
            and self.max_change is not None
            and self.max_raise * self.max_change < 1
        ):
            raise keyed_error(
                "max_raise",
                f"must be >= 1 / max_change ({1 / self.max_change:g}): a floor under the cut"
                f" deeper than max_change allows, got {self.max_raise:g}",
            )
        if (self.first_loss_intercept is None) != (self.first_loss_slope is None):
            raise keyed_error(
                "first_loss_slope",
                "give both first_loss_intercept and first_loss_slope, or neither",
            )
        if self.first_loss_slope is not None:
            if self.measure != "held_out":
                raise keyed_error(
                    "first_loss_slope",
                    f"needs measure: held_out (the calibration's), got {self.measure!r}",
                )
            if self.anchor is not None:
                raise keyed_error(
                    "anchor", "set anchor or first_loss_slope, not both (each moves the pick)"
                )
        return self


PlateauParams = ReduceOnPlateauParams | RangeTestParams
"""The params of a policy that a plateau triggers."""
PolicyParams = Annotated[
    ConstantParams | CyclicalParams | ReduceOnPlateauParams | RangeTestParams,
    Field(discriminator="name"),
]
PARAMS: dict[str, type[Params]] = {
    "constant": ConstantParams,
    "cyclical": CyclicalParams,
    "reduce_on_plateau": ReduceOnPlateauParams,
    "range_test_on_plateau": RangeTestParams,
}
POLICY_NAMES = tuple(PARAMS)


def param_names(policy: str) -> tuple[str, ...]:
    """The parameters a spec may set for ``policy`` (its name excluded)."""
    return tuple(k for k in PARAMS[policy].model_fields if k != "name")
