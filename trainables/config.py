"""The typed, frozen configuration of one trial: every default and bound of a trial in one
place.

:class:`TrialConfig` is a pydantic model, strict and closed (unknown keys are refused). The
sweep spec builds and validates one per policy arm on the driver; Ray then carries its plain
dump (:meth:`TrialConfig.plain`) to the trial, which rebuilds it with :meth:`TrialConfig.trusted`
without checking anything again. ``python -m trainables`` validates its own command line with
:meth:`TrialConfig.model_validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from trainables.lr.params import (
    PARAMS,
    POLICY_NAMES,
    ConstantParams,
    CyclicalParams,
    PlateauParams,
    PolicyParams,
    keyed_error,
)

MODEL_NAMES = (
    "seed_cnn",
    "resnet8",
    "resnet20",
    "resnet18",
)  # built by trainables.models.build_model
MONITORS = {"val_loss": "min", "val_acc": "max", "train_loss": "min", "train_acc": "max"}

ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]
PolicyName = Literal[POLICY_NAMES]  # type: ignore[valid-type]
Monitor = Literal["val_loss", "val_acc", "train_loss", "train_acc"]
OptimizerName = Literal["adam", "sgd"]
DeviceName = Literal["auto", "cpu", "cuda"]
# The bounds of the trial's values (the sweep spec uses the same types).
Lr = Annotated[float, Field(gt=0)]
Momentum = Annotated[float, Field(ge=0, lt=1)]
WeightDecay = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0)]


#: CIFAR-10's fixed sizes, for the checks that can be made before the data is read.
CIFAR10_TRAIN = 50_000
CIFAR10_TEST = 10_000


class DataOptions(BaseModel):
    """Which CIFAR-10 images a trial uses: the folder, the train/validation split and subsets.
    The defaults of every spec and of a trial run on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    dir: str | None = None
    train_subset: int | None = Field(5000, ge=1)
    val_subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(2000, ge=1)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)

    @property
    def max_train(self) -> int:
        """Training images CIFAR-10 has left after the validation split."""
        return CIFAR10_TRAIN - round(CIFAR10_TRAIN * self.val_fraction)

    @property
    def max_val(self) -> int:
        return round(CIFAR10_TRAIN * self.val_fraction)

    @model_validator(mode="after")
    def _fits_cifar10(self) -> DataOptions:
        checks = (
            ("train_subset", self.train_subset, self.max_train, "training images left after a "
             f"val_fraction of {self.val_fraction:g}"),
            ("val_subset", self.val_subset, self.max_val, "validation images at a val_fraction "
             f"of {self.val_fraction:g}"),
            ("test_subset", self.test_subset, CIFAR10_TEST, "test images"),
        )  # fmt: skip
        for key, value, most, what in checks:
            if value is not None and value > most:
                raise PydanticCustomError(
                    "spec",
                    "{path}: {problem}",
                    {"path": key, "problem": f"CIFAR-10 has {most} {what}, got {value}"},
                )
        return self


class ConfigError(ValueError):
    """A bad trial configuration; the message is one line naming the key and the fix."""


class TrialConfig(BaseModel):
    """Everything one trial needs."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    model: ModelName = "seed_cnn"
    optimizer: OptimizerName = "adam"
    lr: Lr = 1e-3
    momentum: Momentum = 0.9
    nesterov: bool = False
    weight_decay: WeightDecay = 0.0
    batch_size: Count = 50
    epochs: Count = 15
    seed: Seed = 0
    policy: PolicyName = "constant"
    #: The policy's parameters; their ``name`` is the policy's (filled in from ``policy``).
    policy_params: PolicyParams = Field(default_factory=ConstantParams)
    #: The policy arm's label in a sweep (the policy's name by default); documentary.
    policy_label: str | None = None
    monitor: Monitor = "val_loss"
    augment: bool = True
    device: DeviceName = "auto"
    checkpoint_every: Count = 1
    lr_trace_points: Count = 100
    #: Which data: inside a sweep the driver loads it once and ships the splits (documentary
    #: here); a trial run on its own loads it with these options.
    data: DataOptions = Field(default_factory=DataOptions)

    @model_validator(mode="before")
    @classmethod
    def _policy_params_of_the_policy(cls, raw: Any) -> Any:
        """``policy_params`` belong to ``policy`` (their ``name`` is the policy's)."""
        if isinstance(raw, Mapping):
            policy, params = raw.get("policy", "constant"), raw.get("policy_params") or {}
            if isinstance(params, Mapping) and isinstance(policy, str):
                return {**raw, "policy_params": {**params, "name": policy}}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        for key, problem in self.conflicts():
            raise keyed_error(key, problem)
        return self

    def conflicts(self) -> list[tuple[str, str]]:
        """(key, problem) for each rule between fields this config breaks."""
        found = []
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            found.append(("nesterov", "true needs optimizer name 'sgd' with momentum > 0"))
        params = self.policy_params
        if isinstance(params, CyclicalParams) and params.max_lr <= self.lr:
            found.append(
                ("policy_params.max_lr", f"must be > lr ({self.lr:g}), got {params.max_lr:g}")
            )
        return found

    def with_params_mode(self) -> TrialConfig:
        """This config with a plateau policy's ``mode: null`` written out as the monitor's mode
        (what the detector does with it), so that MLflow shows the mode the trial uses."""
        params = self.policy_params
        if isinstance(params, PlateauParams) and params.mode is None:
            params = params.model_copy(update={"mode": MONITORS[self.monitor]})
            return self.model_copy(update={"policy_params": params})
        return self

    # -- the plain form Ray carries --------------------------------------------------------------
    def plain(self) -> dict[str, Any]:
        """Plain values only, as Tune's param_space and MLflow's params take them."""
        out = self.model_dump()
        out["policy_params"].pop("name", None)
        return out

    @classmethod
    def trusted(cls, plain: Mapping[str, Any]) -> TrialConfig:
        """Rebuild a config the driver validated (its :meth:`plain` dump, with the values Tune
        sampled from validated ranges): nothing is checked again."""
        values = dict(plain)
        policy = values.get("policy", "constant")
        params = {**(values.get("policy_params") or {}), "name": policy}
        values["policy_params"] = PARAMS[policy].model_construct(**params)  # defaults filled in
        if isinstance(values.get("data"), Mapping):
            values["data"] = DataOptions.model_construct(**values["data"])
        return cls.model_construct(**values)

    # -- derived --------------------------------------------------------------------------------
    @property
    def monitor_mode(self) -> str:
        return MONITORS[self.monitor]

    @property
    def plateau_params(self) -> PlateauParams | None:
        params = self.policy_params
        return params if isinstance(params, PlateauParams) else None
