"""The sweep spec as pydantic models: every key, default, bound and choice of a spec.

A spec is validated once, on the driver, by :meth:`SweepSpec.model_validate` (through
:func:`sweep.spec.load_spec`, which turns a ``ValidationError`` into one line). The trial-level
values (model, optimizer, epochs, policy parameters, ...) take their types and defaults from
:class:`trainables.config.TrialConfig` and the policy parameter models of
:mod:`trainables.lr.params`, so a default lives in one place. The last step of the validation
builds the :class:`TrialConfig` of every policy arm (and every value a search space can take):
the plain dumps of those are what Ray hands to the trials, which check nothing again.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from sweep.search_space import SearchSpec, search_value
from trainables.config import (
    Count,
    DataOptions,
    DeviceName,
    Lr,
    ModelName,
    Momentum,
    Monitor,
    OptimizerName,
    TrialConfig,
    WeightDecay,
)
from trainables.lr.params import (
    ConstantParams,
    CyclicalParams,
    RangeTestParams,
    ReduceOnPlateauParams,
    keyed_error,
)

#: The config key that names a trial's policy arm (its label).
ARM_KEY = "policy_label"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


def trial_default(name: str) -> Any:
    """The default of a TrialConfig field: the one place it is written."""
    return TrialConfig.model_fields[name].get_default(call_default_factory=True)


fail = keyed_error


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class OptimizerSpec(Spec):
    name: OptimizerName = trial_default("optimizer")
    lr: Lr = trial_default("lr")
    momentum: Momentum = trial_default("momentum")
    nesterov: bool = trial_default("nesterov")
    weight_decay: WeightDecay = trial_default("weight_decay")


class _Arm(Spec):
    label: str | None = Field(None, min_length=1)

    @property
    def arm_label(self) -> str:
        return self.label or self.name  # type: ignore[attr-defined]


class ConstantArm(_Arm):
    name: Literal["constant"]
    params: ConstantParams = Field(default_factory=ConstantParams)


class CyclicalArm(_Arm):
    name: Literal["cyclical"]
    params: CyclicalParams


class ReduceOnPlateauArm(_Arm):
    name: Literal["reduce_on_plateau"]
    params: ReduceOnPlateauParams = Field(default_factory=ReduceOnPlateauParams)


class RangeTestArm(_Arm):
    name: Literal["range_test_on_plateau"]
    params: RangeTestParams = Field(default_factory=RangeTestParams)


PolicyArm = Annotated[
    ConstantArm | CyclicalArm | ReduceOnPlateauArm | RangeTestArm, Field(discriminator="name")
]


class ResourcesSpec(Spec):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _whole_gpus_or_a_share(self) -> ResourcesSpec:
        if self.gpu > 1 and not float(self.gpu).is_integer():
            raise fail(
                "gpu",
                f"a trial may share one GPU (a fraction <= 1) or use whole GPUs, got {self.gpu:g}",
            )
        return self


class FifoScheduler(Spec):
    name: Literal["fifo"] = "fifo"


class AshaScheduler(Spec):
    name: Literal["asha"]
    grace_period: int = Field(2, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


SchedulerSpec = Annotated[FifoScheduler | AshaScheduler, Field(discriminator="name")]


class MlflowSpec(Spec):
    tracking_uri: str = Field("sqlite:///mlflow.db", min_length=1)
    experiment: str | None = Field(None, min_length=1)


class TrialExtras(Spec):
    """The trial settings a spec's optional ``trial:`` section may change."""

    augment: bool = trial_default("augment")
    device: DeviceName = trial_default("device")
    checkpoint_every: Count = trial_default("checkpoint_every")
    lr_trace_points: Count = trial_default("lr_trace_points")


class SweepSpec(Spec):
    """A whole sweep: what to compare, on what data, where to run and track."""

    name: str = Field("policy-compare", pattern=NAME_PATTERN)
    data: DataOptions = Field(default_factory=DataOptions)
    model: ModelName = trial_default("model")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    epochs: Count = trial_default("epochs")
    batch_size: Count = trial_default("batch_size")
    monitor: Monitor = trial_default("monitor")
    policies: tuple[PolicyArm, ...] = Field(min_length=1)
    seeds: tuple[int, ...] = (0, 1, 2)
    search_space: SearchSpec = Field(default_factory=SearchSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent_trials: Count | None = 2
    scheduler: SchedulerSpec = Field(default_factory=FifoScheduler)
    max_failures: int = Field(2, ge=0)
    checkpoint_num_to_keep: Count | None = 2
    storage_path: str = Field("./ray_results", min_length=1)
    mlflow: MlflowSpec = Field(default_factory=MlflowSpec)
    target_val_acc: float | None = Field(0.5, gt=0, le=1)
    trial: TrialExtras = Field(default_factory=TrialExtras)
    _text: str = PrivateAttr("")
    _source: str | None = PrivateAttr(None)

    # -- the shorthands and the rules between keys -------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        out = dict(raw)
        policies = out.get("policies")
        if isinstance(policies, list):  # "- constant" is {name: constant}
            out["policies"] = tuple({"name": p} if isinstance(p, str) else p for p in policies)
        if isinstance(out.get("scheduler"), str):
            out["scheduler"] = {"name": out["scheduler"]}
        scheduler = out.get("scheduler")
        epochs = out.get("epochs", trial_default("epochs"))
        asha = isinstance(scheduler, Mapping) and scheduler.get("name") == "asha"
        if asha and "grace_period" not in scheduler and isinstance(epochs, int):  # type: ignore[operator]
            out["scheduler"] = {**scheduler, "grace_period": min(2, epochs)}  # type: ignore[dict-item]
        if "seeds" in out:
            out["seeds"] = _seeds(out["seeds"])
        return out

    @model_validator(mode="after")
    def _rules_between_keys(self) -> SweepSpec:
        labels: dict[str, int] = {}
        for i, arm in enumerate(self.policies):
            if arm.arm_label in labels:
                raise fail(
                    f"policies[{i}].label",
                    f"'{arm.arm_label}' is already used by policies[{labels[arm.arm_label]}]; "
                    "give each arm a unique label",
                )
            labels[arm.arm_label] = i
        if isinstance(self.scheduler, AshaScheduler) and self.scheduler.grace_period > self.epochs:
            raise fail(
                "scheduler.grace_period",
                f"must be <= epochs ({self.epochs}), got {self.scheduler.grace_period}",
            )
        train = self.data.train_subset
        if train is not None and self.batch_size > train:
            raise fail(
                "batch_size", f"{self.batch_size} is larger than data.train_subset ({train})"
            )
        for dim in self.search_space.dims:
            if dim.key == "batch_size" and dim.kind in ("grid", "choice") and train is not None:
                for j, value in enumerate(dim.values):
                    if isinstance(value, int) and value > train:
                        raise fail(
                            f"search_space.batch_size.{dim.kind}[{j}]",
                            f"{value} is larger than data.train_subset ({train})",
                        )
        self.trial_configs()  # every arm, with every search value, must make a valid trial
        return self

    # -- the trials -----------------------------------------------------------------------------
    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or self.name

    @property
    def arm_labels(self) -> tuple[str, ...]:
        return tuple(arm.arm_label for arm in self.policies)

    def trial_count(self) -> int:
        """Trials the sweep runs: arms x seeds x grid points x num_samples."""
        return (
            len(self.policies)
            * len(self.seeds)
            * self.search_space.grid_size
            * self.search_space.num_samples
        )

    @property
    def text(self) -> str:
        """The YAML this spec came from (plus the command-line overrides, as comments)."""
        return self._text

    @property
    def source(self) -> str | None:
        """The file it came from (None for text or a built-in spec)."""
        return self._source

    def with_origin(self, text: str, source: str | None) -> SweepSpec:
        self._text, self._source = text, source
        return self

    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``: a grid over (arm, seed) x the search space.

        Every trial's config is the plain dump of its arm's validated TrialConfig: ``policy``
        and ``policy_params`` come from the arm (by ``tune.sample_from`` on the arm's label),
        the seed and the search-space keys from Tune. All arms get the same seeds, so arms
        differ only in the LR policy.
        """
        from ray import tune

        arms = {label: cfg.plain() for label, cfg in self.trial_configs().items()}
        space: dict[str, Any] = self.base_trial().plain()
        space[ARM_KEY] = tune.grid_search(list(arms))
        for key in ("policy", "policy_params"):
            space[key] = tune.sample_from(ArmValue(key, arms))
        space["seed"] = tune.grid_search(list(self.seeds))
        for dim in self.search_space.dims:
            space[dim.key] = dim.domain()
        return space

    def expand(self) -> list[dict[str, Any]]:
        """All trial configs of a grid-only spec (random dimensions keep their (lo, hi) / list),
        as plain values. Handy for tests and dry runs; Tune itself expands :meth:`param_space`.
        """
        grids = [d for d in self.search_space.dims if d.kind == "grid"]
        out: list[dict[str, Any]] = []
        for _ in range(self.search_space.num_samples):
            for cfg in self.trial_configs().values():
                for seed in self.seeds:
                    for combo in itertools.product(*(d.values for d in grids)):
                        values = dict(zip([d.key for d in grids], combo, strict=True))
                        out.append({**cfg.plain(), "seed": seed, **values})
        return out

    def base_trial(self) -> TrialConfig:
        """The trial settings every arm shares (the constant policy, the first seed). Built
        from values this spec validated: nothing is checked again."""
        o = self.optimizer
        return TrialConfig.model_construct(
            model=self.model,
            optimizer=o.name,
            lr=o.lr,
            momentum=o.momentum,
            nesterov=o.nesterov,
            weight_decay=o.weight_decay,
            batch_size=self.batch_size,
            epochs=self.epochs,
            seed=self.seeds[0],
            monitor=self.monitor,
            data=self.data,
            **dict(self.trial),
        )

    def trial_configs(self) -> dict[str, TrialConfig]:
        """The trial config of each arm (by label), checked against the rules between a
        trial's keys -- also with every value the search space can give."""
        base = self.base_trial()
        for key, problem in base.conflicts():
            raise fail(_spec_path(key), problem)
        out = {}
        for i, arm in enumerate(self.policies):
            cfg = base.model_copy(
                update={
                    "policy": arm.name,
                    "policy_params": arm.params,
                    ARM_KEY: arm.arm_label,
                }
            ).with_params_mode()
            for key, problem in cfg.conflicts():
                raise fail(_spec_path(key, i), problem)
            for dim in self.search_space.dims:
                for j, value in enumerate(dim.finite):
                    where = f"search_space.{dim.key}.{dim.kind}[{j}]"
                    checked = search_value(dim.key, value, where)
                    for _, problem in cfg.model_copy(update={dim.key: checked}).conflicts():
                        raise fail(f"{where} with policies[{i}]", problem)
            out[arm.arm_label] = cfg
        return out


@dataclass(frozen=True)
class ArmValue:
    """``tune.sample_from`` callable: one key of this trial's arm (picklable, no lambda)."""

    key: str
    arms: Mapping[str, Mapping[str, Any]]

    def __call__(self, config: Mapping[str, Any]) -> Any:
        return copy.deepcopy(self.arms[config[ARM_KEY]][self.key])


def _spec_path(trial_key: str, arm: int | None = None) -> str:
    """Where a trial config key is written in a spec."""
    if trial_key.startswith("policy_params."):
        return f"policies[{arm}].params.{trial_key.split('.', 1)[1]}"
    if trial_key in ("nesterov", "lr", "momentum", "weight_decay"):
        return f"optimizer.{trial_key}"
    return trial_key


def _seeds(raw: Any) -> Any:
    what = "a count (an integer >= 1) or a list of distinct integers >= 0"
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise fail("seeds", f"must be {what}, got {raw}")
        return tuple(range(raw))
    if not isinstance(raw, list | tuple):
        raise fail("seeds", f"must be {what}, got {raw!r}")
    if not raw:
        raise fail("seeds", f"empty list; must be {what}")
    seen: set[int] = set()
    for i, seed in enumerate(raw):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise fail(f"seeds[{i}]", f"must be an integer >= 0, got {seed!r}")
        if seed in seen:
            raise fail(f"seeds[{i}]", f"duplicate seed {seed}; list each seed once")
        seen.add(seed)
    return tuple(raw)
