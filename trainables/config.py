"""The typed, frozen configuration of one trial, built from the plain dict Ray hands over.

Ray Tune passes plain values (so a search space can reach any of them); everything inside the
trial works on :class:`TrialConfig`, which validates once, up front, with one-line errors that
name the key, the bad value and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

OPTIMIZERS = ("adam", "sgd")
MONITORS = {"val_loss": "min", "val_acc": "max", "train_loss": "min", "train_acc": "max"}
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A bad trial configuration; the message is one line naming the key and the fix."""


def did_you_mean(name: str, valid: Any) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs; plain values only, so it round-trips through Ray and MLflow."""

    model: str = "seed_cnn"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 50
    epochs: int = 10
    seed: int = 0
    policy: str = "constant"
    policy_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    monitor: str = "val_loss"
    augment: bool = True
    device: str = "auto"
    checkpoint_every: int = 1
    lr_trace_points: int = 100
    # Data options: only used when the trial loads the data itself (outside Ray, debugging);
    # inside a sweep the driver loads the splits once and ships them through the object store.
    data_dir: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    train_subset: int | None = None
    val_subset: int | None = None
    test_subset: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_params", MappingProxyType(dict(self.policy_params)))
        self._validate()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrialConfig:
        """Build from plain values, refusing unknown keys and wrong types with one line."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"trial config must be a mapping, got {type(raw).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(
                    f"unknown trial config key '{key}'{did_you_mean(key, known)}; "
                    f"valid keys: {', '.join(sorted(known))}"
                )
            kwargs[key] = _coerce(key, value, _DEFAULTS[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["policy_params"] = dict(self.policy_params)
        return out

    # -- derived --------------------------------------------------------------------------------
    @property
    def monitor_mode(self) -> str:
        return MONITORS[self.monitor]

    def policy_kwargs(self) -> dict[str, Any]:
        """Policy parameters, with the plateau mode following the monitored metric by default."""
        params = dict(self.policy_params)
        if self.policy in ("reduce_on_plateau", "range_test_on_plateau"):
            params.setdefault("mode", self.monitor_mode)
            params.setdefault("metric_name", self.monitor)
        return params

    # -- validation -----------------------------------------------------------------------------
    def _validate(self) -> None:
        from trainables.lr import POLICY_NAMES, make_policy
        from trainables.models import MODEL_NAMES

        _one_of("model", self.model, MODEL_NAMES)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("policy", self.policy, POLICY_NAMES)
        _one_of("monitor", self.monitor, MONITORS)
        _one_of("device", self.device, DEVICES)
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size)
        _positive("epochs", self.epochs)
        _positive("checkpoint_every", self.checkpoint_every)
        _positive("lr_trace_points", self.lr_trace_points)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov=true needs optimizer 'sgd' with momentum > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.seed < 0 or self.split_seed < 0:
            raise ConfigError(
                f"seeds must be >= 0, got seed={self.seed}, split_seed={self.split_seed}"
            )
        for key in ("train_subset", "val_subset", "test_subset"):
            value = getattr(self, key)
            if value is not None:
                _positive(key, value)
        try:  # the policy validates its own parameters (steps_per_epoch is irrelevant here)
            make_policy(self.policy, self.policy_kwargs(), base_lr=self.lr, steps_per_epoch=100)
        except ValueError as exc:
            raise ConfigError(f"policy '{self.policy}': {exc}") from None


_DEFAULTS = {f.name: f for f in dataclasses.fields(TrialConfig)}


def _one_of(key: str, value: str, valid: Any) -> None:
    if value not in valid:
        raise ConfigError(
            f"{key} '{value}' is not known{did_you_mean(str(value), valid)}; "
            f"choose one of: {', '.join(valid)}"
        )


def _positive(key: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{key} must be a positive number, got {value!r}")


def _coerce(key: str, value: Any, fld: dataclasses.Field[Any]) -> Any:
    """Check a plain value against the field's declared type (bool is not an int here)."""
    kind = str(fld.type)
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{key} must not be null")
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if kind.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if kind.startswith("float"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if kind.startswith("str"):
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if kind.startswith("Mapping"):
        if isinstance(value, Mapping):
            return value
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    return value
