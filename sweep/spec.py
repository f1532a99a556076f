"""The sweep spec: one YAML file that says what to compare, on what data, where to run and track.

:func:`load_spec` reads and validates every key up front -- unknown keys (with a "did you mean"),
wrong types, bad ranges, bad policy parameters -- and raises :class:`SpecError` with one line
that names the key path, e.g. ``policies[1].params.patience: must be >= 0, got -1``. Nothing
here imports Ray or MLflow; :meth:`SweepSpec.param_space` imports ``ray.tune`` only when called.

Schema (see ``sweep/specs/default.yaml`` for a commented example)::

    name: policy-compare          # sweep name = MLflow experiment (default) = Ray run name
    data: {dir: null, train_subset: 5000, val_subset: null, test_subset: 2000,
           val_fraction: 0.2, split_seed: 0}
    model: seed_cnn
    optimizer: {name: adam, lr: 0.001, momentum: 0.9, nesterov: false, weight_decay: 0.0}
    epochs: 15
    batch_size: 50
    monitor: val_loss
    policies:                     # each {name, label (default name, unique), params}
      - {name: range_test_on_plateau, params: {patience: 2, cooldown: 1}}
    seeds: 3                      # a count (-> [0, 1, 2]) or a list of distinct ints >= 0
    search_space:                 # optional; over plain trial-config values
      lr: {loguniform: [1.0e-4, 1.0e-2]}   # or {uniform: [lo, hi]}, {grid: [...]}, {choice: [...]}
      num_samples: 1
    resources: {cpu: 1, gpu: 0}
    max_concurrent_trials: 2
    scheduler: {name: fifo}       # or {name: asha, grace_period: 2, reduction_factor: 2}
    max_failures: 2
    checkpoint_num_to_keep: 2
    storage_path: ./ray_results   # local path (relative to the working directory) or a URI
    mlflow: {tracking_uri: "sqlite:///mlflow.db", experiment: null}
    target_val_acc: 0.5
    trial: {augment: true, device: auto, checkpoint_every: 1, lr_trace_points: 100}  # optional
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard

import yaml

from trainables.config import MONITORS, OPTIMIZERS, ConfigError, did_you_mean

#: CIFAR-10's fixed sizes, for the checks that can be made before the data is read.
CIFAR10_TRAIN = 50_000
CIFAR10_TEST = 10_000

#: The config key that names a trial's policy arm (its label). Every other key of a trial's
#: config is a plain TrialConfig field; ``sweep.tuner`` drops this one before ``train_trial``.
ARM_KEY = "policy_label"

SCHEDULERS = ("fifo", "asha")
SEARCH_KINDS = ("grid", "choice", "loguniform", "uniform")
#: TrialConfig fields a search space may vary. The policy, its parameters and the seed are the
#: sweep's own axes; the data fields are fixed because the driver splits the data once.
SEARCHABLE = (
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "optimizer",
    "batch_size",
    "epochs",
    "model",
    "augment",
)
#: TrialConfig fields the optional ``trial:`` section may set.
TRIAL_EXTRAS = ("augment", "device", "checkpoint_every", "lr_trace_points")
BUILTIN_SPECS = ("default", "smoke", "cifar10_full", "cifar10_resnet18")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TOP_KEYS = (
    "name",
    "data",
    "model",
    "optimizer",
    "epochs",
    "batch_size",
    "monitor",
    "policies",
    "seeds",
    "search_space",
    "resources",
    "max_concurrent_trials",
    "scheduler",
    "max_failures",
    "checkpoint_num_to_keep",
    "storage_path",
    "mlflow",
    "target_val_acc",
    "trial",
)


class SpecError(ValueError):
    """A bad sweep spec; the message is one line that starts with the key path."""


# ---------------------------------------------------------------------------------------------
# The validated spec
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSpec:
    dir: str | None = None
    train_subset: int | None = 5000
    val_subset: int | None = None
    test_subset: int | None = 2000
    val_fraction: float = 0.2
    split_seed: int = 0

    @property
    def max_train(self) -> int:
        """Training images CIFAR-10 has left after the validation split."""
        return CIFAR10_TRAIN - round(CIFAR10_TRAIN * self.val_fraction)

    @property
    def max_val(self) -> int:
        return round(CIFAR10_TRAIN * self.val_fraction)


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0


@dataclass(frozen=True)
class PolicyArm:
    name: str
    label: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class SearchDim:
    key: str
    kind: str  # one of SEARCH_KINDS
    values: tuple[Any, ...]  # the list for grid/choice, (lo, hi) for the distributions

    def domain(self) -> Any:
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        return tune.uniform(*self.values)


@dataclass(frozen=True)
class SearchSpec:
    dims: tuple[SearchDim, ...] = ()
    num_samples: int = 1

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.dims if d.kind == "grid")


@dataclass(frozen=True)
class ResourcesSpec:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class SchedulerSpec:
    name: str = "fifo"
    grace_period: int = 2
    reduction_factor: float = 2.0


@dataclass(frozen=True)
class MlflowSpec:
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None


@dataclass(frozen=True)
class SweepSpec:
    name: str
    data: DataSpec
    model: str
    optimizer: OptimizerSpec
    epochs: int
    batch_size: int
    monitor: str
    policies: tuple[PolicyArm, ...]
    seeds: tuple[int, ...]
    search_space: SearchSpec
    resources: ResourcesSpec
    max_concurrent_trials: int | None
    scheduler: SchedulerSpec
    max_failures: int
    checkpoint_num_to_keep: int | None
    storage_path: str
    mlflow: MlflowSpec
    target_val_acc: float | None
    trial: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The YAML this spec came from (plus the command-line overrides, as comments).
    text: str = ""
    #: The file it came from (None for text or a built-in spec).
    source: str | None = None

    @property
    def experiment_name(self) -> str:
        return self.mlflow.experiment or self.name

    @property
    def arm_labels(self) -> tuple[str, ...]:
        return tuple(arm.label for arm in self.policies)

    def trial_count(self) -> int:
        """Trials the sweep runs: arms x seeds x grid points x num_samples."""
        return (
            len(self.policies)
            * len(self.seeds)
            * self.search_space.grid_size
            * self.search_space.num_samples
        )

    def base_trial(self) -> dict[str, Any]:
        """The plain TrialConfig values every trial shares (no policy, params or seed)."""
        out: dict[str, Any] = {
            "model": self.model,
            "optimizer": self.optimizer.name,
            "lr": self.optimizer.lr,
            "momentum": self.optimizer.momentum,
            "nesterov": self.optimizer.nesterov,
            "weight_decay": self.optimizer.weight_decay,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "monitor": self.monitor,
            # Documentary inside a sweep (the driver ships the splits), but logged with the run.
            "data_dir": self.data.dir,
            "val_fraction": self.data.val_fraction,
            "split_seed": self.data.split_seed,
            "train_subset": self.data.train_subset,
            "val_subset": self.data.val_subset,
            "test_subset": self.data.test_subset,
        }
        out.update(self.trial)
        return out

    def arm_trial(self, arm: PolicyArm, seed: int, **overrides: Any) -> dict[str, Any]:
        """One concrete trial config (plain TrialConfig fields only)."""
        out = self.base_trial()
        out.update(policy=arm.name, policy_params=dict(arm.params), seed=seed)
        out.update(overrides)
        return out

    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``: a grid over (arm, seed) x the search space.

        Every trial's config holds the plain TrialConfig fields -- ``policy`` and
        ``policy_params`` are filled in from the arm by ``tune.sample_from`` so trackers and
        tables see them -- plus ``policy_label`` (the arm's label, which the MLflow tracker
        tags runs with and the trainable wrapper drops before ``train_trial``).
        All arms get the same seeds, so arms differ only in the LR policy.
        """
        from ray import tune

        space: dict[str, Any] = self.base_trial()
        space[ARM_KEY] = tune.grid_search(list(self.arm_labels))
        space["policy"] = tune.sample_from(
            _ArmValue({arm.label: arm.name for arm in self.policies})
        )
        space["policy_params"] = tune.sample_from(
            _ArmValue({arm.label: dict(arm.params) for arm in self.policies})
        )
        space["seed"] = tune.grid_search(list(self.seeds))
        for dim in self.search_space.dims:
            space[dim.key] = dim.domain()
        return space

    #: The name the task brief uses for :meth:`param_space`.
    trial_configs = param_space

    def expand(self) -> list[dict[str, Any]]:
        """All trial configs of a grid-only spec (random dimensions keep their (lo, hi) / list).

        Handy for tests and dry runs; Tune itself expands :meth:`param_space`.
        """
        grids = [d for d in self.search_space.dims if d.kind == "grid"]
        out: list[dict[str, Any]] = []
        for _ in range(self.search_space.num_samples):
            for arm in self.policies:
                for seed in self.seeds:
                    for combo in _product([d.values for d in grids]):
                        cfg = self.arm_trial(
                            arm, seed, **dict(zip([d.key for d in grids], combo, strict=True))
                        )
                        cfg[ARM_KEY] = arm.label
                        out.append(cfg)
        return out


@dataclass(frozen=True)
class _ArmValue:
    """``tune.sample_from`` callable: the value for this trial's arm (picklable, no lambda)."""

    by_label: Mapping[str, Any]

    def __call__(self, config: Mapping[str, Any]) -> Any:
        return copy.deepcopy(self.by_label[config[ARM_KEY]])


def _product(lists: Sequence[Sequence[Any]]) -> Iterator[tuple[Any, ...]]:
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for tail in _product(lists[1:]):
            yield (head, *tail)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def builtin_spec_text(name: str) -> str:
    """The text of a spec shipped as package data (``sweep/specs/<name>.yaml``)."""
    if name not in BUILTIN_SPECS:
        raise SpecError(
            f"no built-in spec '{name}'{did_you_mean(name, BUILTIN_SPECS)}; "
            f"choose one of: {', '.join(BUILTIN_SPECS)}"
        )
    return resources.files("sweep").joinpath("specs", f"{name}.yaml").read_text("utf-8")


def load_builtin_spec(
    name: str, overrides: Mapping[str, Any] | None = None, *, smoke: bool = False
) -> SweepSpec:
    """A spec shipped with the package (``default``, ``smoke``, ``cifar10_full``, ...)."""
    text = builtin_spec_text(name)
    return _load(text, None, overrides, label=f"built-in spec '{name}'", smoke=smoke)


def load_spec(
    path_or_text: str | Path,
    overrides: Mapping[str, Any] | None = None,
    *,
    smoke: bool = False,
) -> SweepSpec:
    """Read and validate a spec from a file path or from YAML text.

    ``overrides`` maps dotted key paths (``"name"``, ``"data.dir"``, ``"mlflow.tracking_uri"``,
    ``"storage_path"``) to values applied before validation (a None value is skipped);
    ``smoke`` shrinks the spec to a tiny, fast sweep (see :func:`shrink_for_smoke`).
    """
    if isinstance(path_or_text, Path) or _looks_like_path(path_or_text):
        path = Path(path_or_text)
        if not path.is_file():
            raise SpecError(f"spec file {path} does not exist; pass an existing --spec FILE")
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read spec file {path}: {exc}; check the file") from None
        return _load(text, str(path), overrides, label=str(path), smoke=smoke)
    return _load(str(path_or_text), None, overrides, label="spec", smoke=smoke)


def _looks_like_path(value: str) -> bool:
    if "\n" in value:
        return False
    return value.endswith((".yaml", ".yml")) or Path(value).is_file()


def _load(
    text: str,
    source: str | None,
    overrides: Mapping[str, Any] | None,
    *,
    label: str,
    smoke: bool = False,
) -> SweepSpec:
    raw = parse_yaml(text, label=label)
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else type(raw).__name__
        raise SpecError(f"{label}: the spec must be a YAML mapping of keys, got {kind}")
    applied: dict[str, Any] = {}
    if smoke:  # before the overrides, so that an explicit --name is kept as given
        applied.update(shrink_for_smoke(raw))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted, value)
            applied[dotted] = value
    if applied:
        lines = [f"#   {key}: {value!r}" for key, value in applied.items()]
        text = text.rstrip("\n") + "\n# command-line overrides:\n" + "\n".join(lines) + "\n"
    return validate(raw, text=text, source=source)


def shrink_for_smoke(raw: dict[str, Any]) -> dict[str, Any]:
    """Cap a raw spec to a smoke test: <= 2 epochs, 1 seed, 300/200/200 images, 1 sample,
    and a name ending in ``-smoke`` (so a smoke run never occupies the real sweep's name).

    Only values of the right type are touched (validation reports the rest). Returns what it
    changed, as dotted paths.
    """
    changed: dict[str, Any] = {}
    name = raw.get("name", "policy-compare")
    if isinstance(name, str) and not name.endswith("smoke"):
        raw["name"] = changed["name"] = f"{name}-smoke"

    def cap(container: dict[str, Any], key: str, limit: int, dotted: str) -> None:
        value = container.get(key)
        if value is None or (_is_int(value) and value > limit):
            container[key] = limit
            changed[dotted] = limit

    cap(raw, "epochs", 2, "epochs")
    seeds = raw.get("seeds", 3)
    if _is_int(seeds) and seeds > 1:
        raw["seeds"] = changed["seeds"] = 1
    elif isinstance(seeds, list) and len(seeds) > 1:
        raw["seeds"] = changed["seeds"] = seeds[:1]
    data = raw.setdefault("data", {})
    if isinstance(data, dict):
        cap(data, "train_subset", 300, "data.train_subset")
        cap(data, "val_subset", 200, "data.val_subset")
        cap(data, "test_subset", 200, "data.test_subset")
    batch = raw.get("batch_size")
    if _is_int(batch) and batch > 100:
        raw["batch_size"] = changed["batch_size"] = 100
    search = raw.get("search_space")
    if isinstance(search, dict) and search.get("num_samples", 1) != 1:
        search["num_samples"] = changed["search_space.num_samples"] = 1
    sched = raw.get("scheduler")
    if isinstance(sched, dict) and _is_int(sched.get("grace_period")) and sched["grace_period"] > 1:
        sched["grace_period"] = changed["scheduler.grace_period"] = 1
    return changed


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError(f"{part}: must be a mapping, got {_show(child)}")
        node = child
    node[last] = value


# ---------------------------------------------------------------------------------------------
# YAML with one-line errors, no duplicate keys, and 1e-3 read as a number
# ---------------------------------------------------------------------------------------------
class _SpecLoader(yaml.SafeLoader):
    pass


# YAML 1.1 (PyYAML) reads 1e-3 as a string; YAML 1.2 and every human read it as a number.
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}'", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, *, label: str = "spec") -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise SpecError(f"{label}{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{label}: YAML syntax error: {' '.join(str(exc).split())}") from None


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def validate(raw: Mapping[str, Any], *, text: str = "", source: str | None = None) -> SweepSpec:
    """Turn a parsed YAML mapping into a :class:`SweepSpec`, or raise :class:`SpecError`."""
    from trainables.lr import POLICY_NAMES
    from trainables.models import MODEL_NAMES

    _keys(raw, "", _TOP_KEYS)
    name = _str(raw.get("name", "policy-compare"), "name")
    if not _NAME_RE.match(name):
        raise SpecError(
            f"name: must be letters, digits, '.', '_' or '-' (it names folders and runs), "
            f"got {name!r}"
        )

    data = _data(raw.get("data", {}))
    model = _one_of(raw.get("model", "seed_cnn"), "model", MODEL_NAMES)
    optimizer = _optimizer(raw.get("optimizer", {}))
    epochs = _int(raw.get("epochs", 15), "epochs", low=1)
    batch_size = _int(raw.get("batch_size", 50), "batch_size", low=1)
    monitor = _one_of(raw.get("monitor", "val_loss"), "monitor", tuple(MONITORS))
    policies = _policies(raw.get("policies"), POLICY_NAMES)
    seeds = _seeds(raw.get("seeds", 3))
    search = _search(raw.get("search_space"))
    res = _resources(raw.get("resources", {}))
    max_conc_raw = raw.get("max_concurrent_trials", 2)
    max_conc = None if max_conc_raw is None else _int(max_conc_raw, "max_concurrent_trials", low=1)
    scheduler = _scheduler(raw.get("scheduler", {"name": "fifo"}), epochs)
    max_failures = _int(raw.get("max_failures", 2), "max_failures", low=0)
    keep_raw = raw.get("checkpoint_num_to_keep", 2)
    keep = None if keep_raw is None else _int(keep_raw, "checkpoint_num_to_keep", low=1)
    storage = _str(raw.get("storage_path", "./ray_results"), "storage_path")
    mlflow = _mlflow(raw.get("mlflow", {}))
    target = target_val_acc(raw)
    trial = _trial_extras(raw.get("trial", {}))

    spec = SweepSpec(
        name=name,
        data=data,
        model=model,
        optimizer=optimizer,
        epochs=epochs,
        batch_size=batch_size,
        monitor=monitor,
        policies=policies,
        seeds=seeds,
        search_space=search,
        resources=res,
        max_concurrent_trials=max_conc,
        scheduler=scheduler,
        max_failures=max_failures,
        checkpoint_num_to_keep=keep,
        storage_path=storage,
        mlflow=mlflow,
        target_val_acc=target,
        trial=MappingProxyType(trial),
        text=text,
        source=source,
    )
    _cross_checks(spec)
    _check_trials(spec)
    return spec


def _data(raw: Any) -> DataSpec:
    m = _mapping(raw, "data")
    _keys(
        m,
        "data",
        ("dir", "train_subset", "val_subset", "test_subset", "val_fraction", "split_seed"),
    )
    default = DataSpec()
    directory = m.get("dir")
    if directory is not None:
        directory = _str(directory, "data.dir")
    subsets: dict[str, int | None] = {}
    for key in ("train_subset", "val_subset", "test_subset"):
        value = m.get(key, getattr(default, key))
        subsets[key] = None if value is None else _int(value, f"data.{key}", low=1)
    val_fraction = _num(m.get("val_fraction", default.val_fraction), "data.val_fraction")
    if not 0 < val_fraction < 1:
        raise SpecError(f"data.val_fraction: must be in (0, 1), got {_show(val_fraction)}")
    split_seed = _int(m.get("split_seed", default.split_seed), "data.split_seed", low=0)
    spec = DataSpec(directory, val_fraction=val_fraction, split_seed=split_seed, **subsets)
    if spec.train_subset is not None and spec.train_subset > spec.max_train:
        raise SpecError(
            f"data.train_subset: CIFAR-10 has {spec.max_train} training images left after a "
            f"val_fraction of {val_fraction:g}, got {spec.train_subset}"
        )
    if spec.val_subset is not None and spec.val_subset > spec.max_val:
        raise SpecError(
            f"data.val_subset: a val_fraction of {val_fraction:g} leaves {spec.max_val} "
            f"validation images, got {spec.val_subset}"
        )
    if spec.test_subset is not None and spec.test_subset > CIFAR10_TEST:
        raise SpecError(
            f"data.test_subset: CIFAR-10 has {CIFAR10_TEST} test images, got {spec.test_subset}"
        )
    return spec


def _optimizer(raw: Any) -> OptimizerSpec:
    m = _mapping(raw, "optimizer")
    _keys(m, "optimizer", ("name", "lr", "momentum", "nesterov", "weight_decay"))
    d = OptimizerSpec()
    name = _one_of(m.get("name", d.name), "optimizer.name", OPTIMIZERS)
    lr = _num(m.get("lr", d.lr), "optimizer.lr")
    if lr <= 0:
        raise SpecError(f"optimizer.lr: must be > 0, got {_show(m.get('lr'))}")
    momentum = _num(m.get("momentum", d.momentum), "optimizer.momentum")
    if not 0 <= momentum < 1:
        raise SpecError(f"optimizer.momentum: must be in [0, 1), got {_show(momentum)}")
    nesterov = _bool(m.get("nesterov", d.nesterov), "optimizer.nesterov")
    if nesterov and (name != "sgd" or momentum == 0):
        raise SpecError("optimizer.nesterov: true needs optimizer name 'sgd' with momentum > 0")
    wd = _num(m.get("weight_decay", d.weight_decay), "optimizer.weight_decay")
    if wd < 0:
        raise SpecError(f"optimizer.weight_decay: must be >= 0, got {_show(wd)}")
    return OptimizerSpec(name, lr, momentum, nesterov, wd)


def _policies(raw: Any, policy_names: Sequence[str]) -> tuple[PolicyArm, ...]:
    if raw is None:
        raise SpecError("policies: missing; list at least one LR policy, e.g. [{name: constant}]")
    if not isinstance(raw, list):
        raise SpecError(f"policies: must be a list of {{name, label, params}}, got {_show(raw)}")
    if not raw:
        raise SpecError(
            "policies: empty list; list at least one LR policy, e.g. [{name: constant}]"
        )
    arms: list[PolicyArm] = []
    labels: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"policies[{i}]"
        if isinstance(item, str):  # shorthand: "- constant"
            item = {"name": item}
        m = _mapping(item, path)
        _keys(m, path, ("name", "label", "params"))
        if "name" not in m:
            raise SpecError(f"{path}.name: missing; choose one of: {', '.join(policy_names)}")
        name = _one_of(m["name"], f"{path}.name", tuple(policy_names))
        label = _str(m.get("label", name), f"{path}.label")
        if label in labels:
            raise SpecError(
                f"{path}.label: '{label}' is already used by policies[{labels[label]}]; "
                "give each arm a unique label"
            )
        labels[label] = i
        params_raw = m.get("params")
        params = {} if params_raw is None else dict(_mapping(params_raw, f"{path}.params"))
        _policy_params(name, params, f"{path}.params")
        arms.append(PolicyArm(name=name, label=label, params=MappingProxyType(params)))
    return tuple(arms)


def _policy_params(policy: str, params: dict[str, Any], path: str) -> None:
    """Checks with exact key paths; the policy itself validates the rest (see _check_trials)."""
    from trainables.lr import policy_param_names

    valid = tuple(policy_param_names(policy))
    for key in params:
        if not isinstance(key, str) or key not in valid:
            hint = did_you_mean(str(key), valid)
            choices = ", ".join(valid) if valid else "none"
            raise SpecError(
                f"{path}.{key}: unknown parameter of policy '{policy}'{hint}; "
                f"valid parameters: {choices}"
            )
    for key in ("patience", "cooldown"):
        if key in params:
            _int(params[key], f"{path}.{key}", low=0)
    for key in ("min_lr", "max_lr"):
        if key in params:
            value = _num(params[key], f"{path}.{key}")
            if value <= 0:
                raise SpecError(f"{path}.{key}: must be > 0, got {_show(params[key])}")
    if "min_lr" in params and "max_lr" in params and params["min_lr"] >= params["max_lr"]:
        raise SpecError(
            f"{path}.min_lr: must be < max_lr ({_show(params['max_lr'])}), "
            f"got {_show(params['min_lr'])}"
        )
    if policy in ("reduce_on_plateau", "range_test_on_plateau") and "factor" in params:
        factor = _num(params["factor"], f"{path}.factor")
        if not 0 < factor < 1:
            raise SpecError(f"{path}.factor: must be in (0, 1), got {_show(params['factor'])}")


def _seeds(raw: Any) -> tuple[int, ...]:
    what = "a count (an integer >= 1) or a list of distinct integers >= 0"
    if _is_int(raw):
        if raw < 1:
            raise SpecError(f"seeds: must be {what}, got {raw}")
        return tuple(range(raw))
    if not isinstance(raw, list):
        raise SpecError(f"seeds: must be {what}, got {_show(raw)}")
    if not raw:
        raise SpecError(f"seeds: empty list; must be {what}")
    seen: set[int] = set()
    for i, seed in enumerate(raw):
        if not _is_int(seed) or seed < 0:
            raise SpecError(f"seeds[{i}]: must be an integer >= 0, got {_show(seed)}")
        if seed in seen:
            raise SpecError(f"seeds[{i}]: duplicate seed {seed}; list each seed once")
        seen.add(seed)
    return tuple(raw)


def _search(raw: Any) -> SearchSpec:
    if raw is None:
        return SearchSpec()
    m = _mapping(raw, "search_space")
    from trainables.config import TrialConfig

    fields = tuple(TrialConfig.__dataclass_fields__)
    dims: list[SearchDim] = []
    num_samples = 1
    for key, value in m.items():
        path = f"search_space.{key}"
        if key == "num_samples":
            num_samples = _int(value, path, low=1)
            continue
        if key not in SEARCHABLE:
            if key in fields:
                raise SpecError(
                    f"{path}: '{key}' cannot be searched (policies, seeds and data are the "
                    f"sweep's own axes); searchable keys: {', '.join(SEARCHABLE)}"
                )
            raise SpecError(
                f"{path}: unknown key{did_you_mean(str(key), (*SEARCHABLE, 'num_samples'))}; "
                f"searchable keys: {', '.join(SEARCHABLE)}, num_samples"
            )
        dm = _mapping(value, path)
        if len(dm) != 1:
            raise SpecError(
                f"{path}: must have exactly one of {', '.join(SEARCH_KINDS)}, got {_show(value)}"
            )
        kind, values = next(iter(dm.items()))
        if kind not in SEARCH_KINDS:
            raise SpecError(
                f"{path}.{kind}: unknown search kind{did_you_mean(str(kind), SEARCH_KINDS)}; "
                f"use one of: {', '.join(SEARCH_KINDS)}"
            )
        kpath = f"{path}.{kind}"
        if not isinstance(values, list):
            raise SpecError(f"{kpath}: must be a list, got {_show(values)}")
        if kind in ("grid", "choice"):
            if not values:
                raise SpecError(f"{kpath}: empty list expands to zero trials; give >= 1 value")
        else:
            if len(values) != 2:
                raise SpecError(f"{kpath}: must be [low, high], got {_show(values)}")
            lo, hi = (_num(v, f"{kpath}[{j}]") for j, v in enumerate(values))
            if not lo < hi:
                raise SpecError(f"{kpath}: low must be < high, got {_show(values)}")
            if kind == "loguniform" and lo <= 0:
                raise SpecError(f"{kpath}: low must be > 0 for a log scale, got {_show(lo)}")
            values = [lo, hi]
        dims.append(SearchDim(key=str(key), kind=str(kind), values=tuple(values)))
    return SearchSpec(dims=tuple(dims), num_samples=num_samples)


def _resources(raw: Any) -> ResourcesSpec:
    m = _mapping(raw, "resources")
    _keys(m, "resources", ("cpu", "gpu"))
    cpu = _num(m.get("cpu", 1), "resources.cpu")
    if cpu <= 0:
        raise SpecError(f"resources.cpu: must be > 0 (CPUs per trial), got {_show(m.get('cpu'))}")
    gpu = _num(m.get("gpu", 0), "resources.gpu")
    if gpu < 0:
        raise SpecError(f"resources.gpu: must be >= 0, got {_show(m.get('gpu'))}")
    if gpu > 1 and not float(gpu).is_integer():
        raise SpecError(
            f"resources.gpu: a trial may share one GPU (a fraction <= 1) or use whole GPUs, "
            f"got {_show(m.get('gpu'))}"
        )
    return ResourcesSpec(cpu=cpu, gpu=gpu)


def _scheduler(raw: Any, epochs: int) -> SchedulerSpec:
    if isinstance(raw, str):
        raw = {"name": raw}
    m = _mapping(raw, "scheduler")
    name = _one_of(m.get("name", "fifo"), "scheduler.name", SCHEDULERS)
    if name == "fifo":
        _keys(m, "scheduler", ("name",))
        return SchedulerSpec(name="fifo")
    _keys(m, "scheduler", ("name", "grace_period", "reduction_factor"))
    d = SchedulerSpec()
    grace = _int(
        m.get("grace_period", min(d.grace_period, epochs)), "scheduler.grace_period", low=1
    )
    if grace > epochs:
        raise SpecError(f"scheduler.grace_period: must be <= epochs ({epochs}), got {grace}")
    factor = _num(m.get("reduction_factor", d.reduction_factor), "scheduler.reduction_factor")
    if factor <= 1:
        raise SpecError(f"scheduler.reduction_factor: must be > 1, got {_show(factor)}")
    return SchedulerSpec(name="asha", grace_period=grace, reduction_factor=factor)


def _mlflow(raw: Any) -> MlflowSpec:
    m = _mapping(raw, "mlflow")
    _keys(m, "mlflow", ("tracking_uri", "experiment"))
    uri = _str(m.get("tracking_uri", MlflowSpec.tracking_uri), "mlflow.tracking_uri")
    experiment = m.get("experiment")
    if experiment is not None:
        experiment = _str(experiment, "mlflow.experiment")
    return MlflowSpec(tracking_uri=uri, experiment=experiment)


def _trial_extras(raw: Any) -> dict[str, Any]:
    m = _mapping(raw, "trial")
    _keys(m, "trial", TRIAL_EXTRAS)
    return dict(m)


def _cross_checks(spec: SweepSpec) -> None:
    train = spec.data.train_subset
    if train is not None:
        if spec.batch_size > train:
            raise SpecError(
                f"batch_size: {spec.batch_size} is larger than data.train_subset ({train})"
            )
        for dim in spec.search_space.dims:
            if dim.key == "batch_size" and dim.kind in ("grid", "choice"):
                for j, value in enumerate(dim.values):
                    if _is_int(value) and value > train:
                        raise SpecError(
                            f"search_space.batch_size.{dim.kind}[{j}]: {value} is larger than "
                            f"data.train_subset ({train})"
                        )


def _check_trials(spec: SweepSpec) -> None:
    """Build a TrialConfig for every arm (and every search value) so that no trial fails on a
    config error an hour into the sweep; the policies validate their own parameters here."""
    from trainables.config import TrialConfig

    seed = spec.seeds[0]
    plain = PolicyArm(name="constant", label="constant")
    _trial_ok(TrialConfig, spec.arm_trial(plain, seed), "trial config")
    for dim in spec.search_space.dims:
        for j, value in enumerate(dim.values):
            where = f"search_space.{dim.key}.{dim.kind}[{j}]"
            _trial_ok(TrialConfig, spec.arm_trial(plain, seed, **{dim.key: value}), where)
    for i, arm in enumerate(spec.policies):
        _trial_ok(TrialConfig, spec.arm_trial(arm, seed), f"policies[{i}].params")
        for dim in spec.search_space.dims:
            for j, value in enumerate(dim.values):
                where = f"search_space.{dim.key}.{dim.kind}[{j}] with policies[{i}]"
                _trial_ok(TrialConfig, spec.arm_trial(arm, seed, **{dim.key: value}), where)


def _trial_ok(cls: Any, config: dict[str, Any], path: str) -> None:
    try:
        cls.from_dict(config)
    except ConfigError as exc:
        message = " ".join(str(exc).split())
        message = re.sub(r"^policy '[^']*': ", "", message)
        raise SpecError(f"{path}: {message}") from None


# ---------------------------------------------------------------------------------------------
# Small typed readers; each error names the key path
# ---------------------------------------------------------------------------------------------
def target_val_acc(raw: Mapping[str, Any]) -> float | None:
    """The spec's ``target_val_acc`` (default 0.5; ``null`` -> None); SpecError if invalid."""
    value = raw.get("target_val_acc", 0.5)
    if value is None:
        return None
    target = _num(value, "target_val_acc")
    if not 0 < target <= 1:
        raise SpecError(f"target_val_acc: must be in (0, 1], got {_show(value)}")
    return target


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:57]}..."


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path}: must be a mapping of keys, got {_show(value)}")
    return value


def _keys(m: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
    for key in m:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(
                f"{where}: unknown key{did_you_mean(str(key), allowed)}; "
                f"valid keys{' of ' + path if path else ''}: {', '.join(allowed)}"
            )


def _int(value: Any, path: str, *, low: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
        value = int(value)
    if not _is_int(value):
        raise SpecError(f"{path}: must be an integer, got {_show(value)}")
    if low is not None and value < low:
        raise SpecError(f"{path}: must be >= {low}, got {value}")
    return int(value)


def _num(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"{path}: must be a number, got {_show(value)}")
    return float(value)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: must be true or false, got {_show(value)}")
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{path}: must be a non-empty string, got {_show(value)}")
    return value


def _one_of(value: Any, path: str, valid: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise SpecError(
            f"{path}: {_show(value)} is not known{did_you_mean(str(value), valid)}; "
            f"choose one of: {', '.join(valid)}"
        )
    return value
