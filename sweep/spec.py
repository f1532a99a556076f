"""Loading a sweep spec: one YAML file that says what to compare, on what data, where to run
and track.

:func:`load_spec` reads the YAML (one-line errors with the line, no duplicate keys, ``1e-3`` read
as a number), applies the command line's overrides (and ``--smoke-test``'s caps), and validates
the result once with the pydantic models of :mod:`sweep.spec_schema`; any problem is a
:class:`SpecError` with one line that names the key path, e.g.
``policies[1].params.patience: must be >= 0, got -1``. Nothing here imports Ray or MLflow.

Schema (see ``sweep/specs/default.yaml`` for a commented example; defaults in the models)::

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

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import TypeAdapter, ValidationError

from sweep.spec_errors import spec_error_line
from sweep.spec_schema import ARM_KEY, SweepSpec
from trainables.validation import did_you_mean, show
from trainables.validation import is_int as _is_int
from trainables.yaml_values import load_yaml

__all__ = ["ARM_KEY", "BUILTIN_SPECS", "SpecError", "SweepSpec", "load_builtin_spec", "load_spec"]

BUILTIN_SPECS = ("default", "smoke", "cifar10_full", "cifar10_resnet18")


class SpecError(ValueError):
    """A bad sweep spec; the message is one line that starts with the key path."""


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
    """Cap a raw spec to a smoke test: <= 3 epochs, 1 seed, 300/200/200 images, 1 sample,
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

    cap(raw, "epochs", 3, "epochs")
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
    batch: Any = raw.get("batch_size")
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
            raise SpecError(f"{part}: must be a mapping, got {show(child)}")
        node = child
    node[last] = value


# ---------------------------------------------------------------------------------------------
# YAML with one-line errors (trainables.yaml_values: no duplicate keys, 1e-3 is a number)
# ---------------------------------------------------------------------------------------------
def parse_yaml(text: str, *, label: str = "spec") -> Any:
    try:
        return load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise SpecError(f"{label}{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{label}: YAML syntax error: {' '.join(str(exc).split())}") from None


def validate(raw: Mapping[str, Any], *, text: str = "", source: str | None = None) -> SweepSpec:
    """Turn a parsed YAML mapping into a :class:`SweepSpec`, or raise :class:`SpecError`."""
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(spec_error_line(exc, SweepSpec)) from None
    return spec.with_origin(text, source)


# ---------------------------------------------------------------------------------------------
# Small readers
# ---------------------------------------------------------------------------------------------
def target_val_acc(raw: Mapping[str, Any]) -> float | None:
    """The spec's ``target_val_acc`` (default 0.5; ``null`` -> None); SpecError if invalid."""
    field = SweepSpec.model_fields["target_val_acc"]
    value = raw.get("target_val_acc", field.default)
    try:
        form: Any = Annotated[field.annotation, field]
        adapter: TypeAdapter[float | None] = TypeAdapter(form)
        return adapter.validate_python(value)
    except ValidationError as exc:
        from trainables.validation import problem_of

        raise SpecError(f"target_val_acc: {problem_of(exc.errors()[0], field)}") from None
