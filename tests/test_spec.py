"""The sweep spec: every bad spec fails with one line naming the key path; good specs expand."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweep.spec import (
    ARM_KEY,
    BUILTIN_SPECS,
    SpecError,
    builtin_spec_text,
    load_builtin_spec,
    load_spec,
)
from trainables.config import TrialConfig

SPECS_DIR = Path(__file__).resolve().parents[1] / "sweep" / "specs"

BASE: dict[str, Any] = {
    "name": "unit",
    "data": {"train_subset": 300, "val_subset": 200, "test_subset": 200},
    "model": "seed_cnn",
    "optimizer": {"name": "adam", "lr": 0.001},
    "epochs": 2,
    "batch_size": 50,
    "policies": [
        {"name": "range_test_on_plateau", "params": {"patience": 0}},
        {"name": "reduce_on_plateau", "params": {"patience": 1, "factor": 0.3}},
        {"name": "cyclical", "params": {"max_lr": 0.006, "step_size_epochs": 1}},
        {"name": "constant"},
    ],
    "seeds": 2,
}


def spec_text(change: Callable[[dict[str, Any]], None] | None = None) -> str:
    raw = copy.deepcopy(BASE)
    if change is not None:
        change(raw)
    return yaml.safe_dump(raw, sort_keys=False)


def setter(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        node = raw
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = value

    return change


def deleter(*path: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        node = raw
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    # unknown keys at every level, with a did-you-mean
    ("unknown-top-key", setter("epoch", value=3), "epoch: unknown key (did you mean 'epochs'?)"),
    (
        "unknown-data-key",
        setter("data", "train_subsett", value=10),
        "data.train_subsett: unknown key (did you mean 'train_subset'?)",
    ),
    (
        "unknown-optimizer-key",
        setter("optimizer", "lrr", value=0.1),
        "optimizer.lrr: unknown key (did you mean 'lr'?)",
    ),
    (
        "unknown-policy-key",
        setter("policies", 0, "parms", value={}),
        "policies[0].parms: unknown key (did you mean 'params'?)",
    ),
    (
        "unknown-policy-param",
        setter("policies", 0, "params", "patiense", value=2),
        "policies[0].params.patiense: unknown parameter of policy 'range_test_on_plateau' "
        "(did you mean 'patience'?)",
    ),
    (
        "unknown-resources-key",
        setter("resources", "gpus", value=1),
        "resources.gpus: unknown key (did you mean 'gpu'?)",
    ),
    (
        "unknown-mlflow-key",
        setter("mlflow", "tracking_url", value="sqlite:///x.db"),
        "mlflow.tracking_url: unknown key (did you mean 'tracking_uri'?)",
    ),
    # wrong types
    ("epochs-string", setter("epochs", value="ten"), "epochs: must be an integer, got 'ten'"),
    ("seeds-float", setter("seeds", value=2.5), "seeds: must be a count"),
    ("batch-size-bool", setter("batch_size", value=True), "batch_size: must be an integer"),
    ("lr-string", setter("optimizer", "lr", value="fast"), "optimizer.lr: must be a number"),
    ("policies-not-list", setter("policies", value="constant"), "policies: must be a list"),
    ("data-not-mapping", setter("data", value=[1, 2]), "data: must be a mapping"),
    # ranges
    ("epochs-zero", setter("epochs", value=0), "epochs: must be >= 1, got 0"),
    ("epochs-negative", setter("epochs", value=-3), "epochs: must be >= 1, got -3"),
    ("seeds-zero", setter("seeds", value=0), "seeds: must be a count"),
    ("seed-negative", setter("seeds", value=[-1, 2]), "seeds[0]: must be an integer >= 0, got -1"),
    ("duplicate-seeds", setter("seeds", value=[0, 1, 0]), "seeds[2]: duplicate seed 0"),
    ("seeds-empty", setter("seeds", value=[]), "seeds: empty list"),
    ("cpu-zero", setter("resources", "cpu", value=0), "resources.cpu: must be > 0"),
    (
        "gpu-fraction-above-one",
        setter("resources", "gpu", value=1.5),
        "resources.gpu: a trial may share one GPU (a fraction <= 1) or use whole GPUs, got 1.5",
    ),
    ("gpu-negative", setter("resources", "gpu", value=-1), "resources.gpu: must be >= 0"),
    ("target-acc", setter("target_val_acc", value=1.5), "target_val_acc: must be in (0, 1]"),
    ("val-fraction-zero", setter("data", "val_fraction", value=0), "data.val_fraction"),
    ("bad-name", setter("name", value="my sweep"), "name: must be letters, digits"),
    (
        "max-concurrent",
        setter("max_concurrent_trials", value=0),
        "max_concurrent_trials: must be >= 1",
    ),
    # policies
    ("policies-empty", setter("policies", value=[]), "policies: empty list"),
    ("policies-missing", deleter("policies"), "policies: missing"),
    (
        "unknown-policy",
        setter("policies", 2, "name", value="cyclic"),
        "policies[2].name: 'cyclic' is not known (did you mean 'cyclical'?)",
    ),
    (
        "patience-negative",
        setter("policies", 1, "params", "patience", value=-1),
        "policies[1].params.patience: must be >= 0, got -1",
    ),
    (
        "min-lr-above-max-lr",
        setter("policies", 0, "params", value={"min_lr": 0.1, "max_lr": 0.01}),
        "policies[0].params.min_lr: must be < max_lr (0.01), got 0.1",
    ),
    (
        "rule-unknown",
        setter("policies", 0, "params", "rule", value="fastest"),
        "policies[0].params.rule: 'fastest' is not known (did you mean 'steepest'?); choose one "
        "of: steepest, midpoint, valley, minimum_div10",
    ),
    (
        "fallback-unknown",
        setter("policies", 0, "params", "fallback", value="halve"),
        "policies[0].params.fallback: 'halve' is not known; choose one of: below_divergence, "
        "cut, keep, keep_or_raise",
    ),
    (
        "max-change-not-above-one",
        setter("policies", 0, "params", "max_change", value=1),
        "policies[0].params.max_change: must be > 1 or null, got 1",
    ),
    (
        "max-raise-not-positive",
        setter("policies", 0, "params", "max_raise", value=0),
        "policies[0].params.max_raise: must be > 0 or null, got 0",
    ),
    (
        "max-raise-below-max-change",
        setter("policies", 0, "params", "max_raise", value=0.05),
        "policies[0].params.max_raise: must be >= 1 / max_change (0.1): a floor under the cut"
        " deeper than max_change allows, got 0.05",
    ),
    (
        "anchor-above-one",
        setter("policies", 0, "params", "anchor", value=3),
        "policies[0].params.anchor: must be in (0, 1] or null, got 3",
    ),
    (
        "pull-zero",
        setter("policies", 0, "params", "pull", value=0),
        "policies[0].params.pull: must be in (0, 2], got 0",
    ),
    (
        "beta-out-of-range",
        setter("policies", 0, "params", "beta", value=1.5),
        "policies[0].params.beta: must be in [0, 1) or null, got 1.5",
    ),
    (
        "beta-negative",
        setter("policies", 0, "params", "beta", value=-0.2),
        "policies[0].params.beta: must be in [0, 1) or null, got -0.2",
    ),
    (
        "chance-margin-out-of-range",
        setter("policies", 0, "params", "chance_margin", value=1.0),
        "policies[0].params.chance_margin: must be in [0, 1) or null, got 1.0",
    ),
    (
        "num-steps-too-short-to-suggest",
        setter("policies", 0, "params", "num_steps", value=4),
        "policies[0].params.num_steps: must be >= 6 or null, got 4 (a shorter range test can "
        "never suggest an LR)",
    ),
    (
        "min-steps-too-short-to-suggest",
        setter("policies", 0, "params", "min_steps", value=3),
        "policies[0].params.min_steps: must be >= 6, got 3",
    ),
    (
        "num-steps-not-an-int",
        setter("policies", 0, "params", "num_steps", value=12.5),
        "policies[0].params.num_steps: must be an integer, got 12.5",
    ),
    (
        "min-lr-zero",
        setter("policies", 0, "params", "min_lr", value=0),
        "policies[0].params.min_lr: must be > 0, got 0",
    ),
    (
        "max-lr-negative",
        setter("policies", 0, "params", "max_lr", value=-1),
        "policies[0].params.max_lr: must be > 0, got -1",
    ),
    ("max-failures-negative", setter("max_failures", value=-1), "max_failures: must be >= 0"),
    (
        "factor-out-of-range",
        setter("policies", 1, "params", "factor", value=1.5),
        "policies[1].params.factor: must be in (0, 1), got 1.5",
    ),
    (
        "cyclical-bad-mode",
        setter("policies", 2, "params", "mode", value="triangle"),
        "policies[2].params.mode: 'triangle' is not known (did you mean 'triangular'?)",
    ),
    (
        "cyclical-max-lr-below-lr",
        setter("policies", 2, "params", "max_lr", value=0.0001),
        "policies[2].params.max_lr: must be > lr (0.001), got 0.0001",
    ),
    (
        "duplicate-labels",
        setter("policies", 3, "label", value="range_test_on_plateau"),
        "policies[3].label: 'range_test_on_plateau' is already used by policies[0]",
    ),
    # model, optimizer, monitor, scheduler
    ("unknown-model", setter("model", value="resnet99"), "model: 'resnet99' is not known"),
    ("unknown-monitor", setter("monitor", value="val_los"), "(did you mean 'val_loss'?)"),
    (
        "nesterov-with-adam",
        setter("optimizer", "nesterov", value=True),
        "optimizer.nesterov: true needs optimizer name 'sgd'",
    ),
    ("unknown-scheduler", setter("scheduler", value={"name": "ashaa"}), "scheduler.name: 'ashaa'"),
    (
        "asha-grace-above-epochs",
        setter("scheduler", value={"name": "asha", "grace_period": 5}),
        "scheduler.grace_period: must be <= epochs (2), got 5",
    ),
    (
        "fifo-with-asha-key",
        setter("scheduler", value={"name": "fifo", "grace_period": 1}),
        "scheduler.grace_period: unknown key",
    ),
    ("bad-trial-extra", setter("trial", "device", value="tpu"), "trial.device: 'tpu' is not known"),
    # search space
    (
        "empty-grid",
        setter("search_space", value={"lr": {"grid": []}}),
        "search_space.lr.grid: empty list expands to zero trials",
    ),
    (
        "search-unknown-key",
        setter("search_space", value={"weight_decy": {"grid": [0.1]}}),
        "search_space.weight_decy: unknown key (did you mean 'weight_decay'?)",
    ),
    (
        "search-not-searchable",
        setter("search_space", value={"policy": {"grid": ["constant"]}}),
        "search_space.policy: 'policy' cannot be searched",
    ),
    (
        "search-unknown-kind",
        setter("search_space", value={"lr": {"log_uniform": [0.001, 0.01]}}),
        "search_space.lr.log_uniform: unknown search kind (did you mean 'loguniform'?)",
    ),
    (
        "search-loguniform-low",
        setter("search_space", value={"lr": {"loguniform": [0, 0.01]}}),
        "search_space.lr.loguniform: low must be > 0",
    ),
    (
        "search-bad-value",
        setter("search_space", value={"batch_size": {"choice": ["big"]}}),
        "search_space.batch_size.choice[0]: must be an integer, got 'big'",
    ),
    (
        "search-num-samples",
        setter("search_space", value={"num_samples": 0}),
        "search_space.num_samples: must be >= 1",
    ),
    # data sizes that can be checked without the data
    (
        "batch-above-train-subset",
        setter("batch_size", value=500),
        "batch_size: 500 is larger than data.train_subset (300)",
    ),
    (
        "search-batch-above-train-subset",
        setter("search_space", value={"batch_size": {"grid": [50, 400]}}),
        "search_space.batch_size.grid[1]: 400 is larger than data.train_subset (300)",
    ),
    (
        "train-subset-above-cifar",
        setter("data", "train_subset", value=45000),
        "data.train_subset: CIFAR-10 has 40000 training images left after a val_fraction of 0.2",
    ),
    ("test-subset-above-cifar", setter("data", "test_subset", value=20000), "data.test_subset"),
]


@pytest.mark.parametrize(("change", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_spec_fails_with_one_line(
    change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_text(change))
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nepochs: [1, 2\n", "line 3"),  # unclosed flow sequence
        ("name: x\n  epochs: 2\n", "line 2"),  # bad indentation
        (
            "name: x\nepochs: 2\nepochs: 3\n",
            "line 3, column 1: YAML syntax error: duplicate key 'epochs'",
        ),
        ("- just\n- a list\n", "the spec must be a YAML mapping of keys, got list"),
        ("", "got empty"),
    ],
)
def test_yaml_problems_are_one_line_with_the_line(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------
# Good specs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILTIN_SPECS)
def test_shipped_specs_load(name: str) -> None:
    spec = load_builtin_spec(name)
    assert spec.policies and spec.seeds
    assert {a.name for a in spec.policies} <= {
        "range_test_on_plateau",
        "cyclical",
        "constant",
        "reduce_on_plateau",
    }
    # the same file, read as a path, gives the same spec
    from_file = load_spec(SPECS_DIR / f"{name}.yaml")
    assert from_file.trial_count() == spec.trial_count()
    assert from_file.source == str(SPECS_DIR / f"{name}.yaml")


BENCH_DIR = SPECS_DIR.parents[1] / "benchmarks" / "specs"
BENCH_SPECS = sorted(BENCH_DIR.glob("policy_compare*.yaml"))


@pytest.mark.parametrize("path", BENCH_SPECS, ids=lambda p: p.stem)
def test_benchmark_specs_compare_the_four_policies_over_three_seeds(path: Path) -> None:
    """benchmarks/specs/*: a policy comparison runs the four policies, >= 3 seeds each."""
    spec = load_spec(path)
    assert sorted({a.name for a in spec.policies}) == sorted(
        ["range_test_on_plateau", "cyclical", "constant", "reduce_on_plateau"]
    )
    assert len(spec.seeds) >= 3 and spec.data.dir is None  # the data folder comes from the CLI


def test_benchmark_specs_exist_and_all_load() -> None:
    assert len(BENCH_SPECS) >= 2
    for path in BENCH_DIR.glob("*.yaml"):  # ablations too
        assert load_spec(path).trial_count() >= 3, path.name


def test_default_spec_compares_the_four_policies() -> None:
    spec = load_builtin_spec("default")
    assert sorted(spec.arm_labels) == sorted(
        ["range_test_on_plateau", "cyclical", "constant", "reduce_on_plateau"]
    )
    assert spec.resources.cpu == 1 and spec.resources.gpu == 0
    assert spec.storage_path == "./ray_results"
    assert spec.mlflow.tracking_uri == "sqlite:///mlflow.db"
    assert spec.experiment_name == spec.name


def test_full_and_resnet_specs_follow_the_settings() -> None:
    full = load_builtin_spec("cifar10_full")
    assert (full.model, full.optimizer.name, full.optimizer.lr, full.batch_size) == (
        "seed_cnn",
        "adam",
        0.001,
        50,
    )
    assert full.epochs == 100 and full.seeds == (0, 1, 2, 3, 4) and full.resources.gpu == 0.25
    assert full.data.train_subset is None and full.trial_count() == 20
    resnet = load_builtin_spec("cifar10_resnet18")
    opt = resnet.optimizer
    assert (opt.name, opt.momentum, opt.nesterov, opt.weight_decay, opt.lr) == (
        "sgd",
        0.9,
        True,
        5e-4,
        0.05,
    )
    assert (resnet.batch_size, resnet.epochs) == (128, 60)


def _variants(spec: Any) -> list[dict[str, Any]]:
    from ray.tune.search.variant_generator import generate_variants

    out = []
    for _ in range(spec.search_space.num_samples):
        out += [config for _, config in generate_variants(spec.param_space())]
    return out


def _assert_plain_trial_configs(variants: list[dict[str, Any]]) -> None:
    for config in variants:
        # every trial's config is the plain form of a valid TrialConfig, and what the trial
        # rebuilds from it without checking is that same config
        assert TrialConfig.trusted(config) == TrialConfig.model_validate(config)


def test_smoke_expands_to_the_right_trials() -> None:
    spec = load_builtin_spec("smoke")
    assert spec.trial_count() == len(spec.policies) * len(spec.seeds) == 2
    assert spec.epochs <= 3 and spec.data.train_subset == 300
    rt = next(a for a in spec.policies if a.name == "range_test_on_plateau")
    assert rt.params.patience == 0
    variants = _variants(spec)
    assert len(variants) == 2
    assert {v["policy"] for v in variants} == {a.name for a in spec.policies}
    _assert_plain_trial_configs(variants)


def test_param_space_resolves_each_arm_and_shares_seeds() -> None:
    spec = load_builtin_spec("default")
    variants = _variants(spec)
    assert len(variants) == spec.trial_count() == 4 * 2
    by_label = {a.arm_label: a for a in spec.policies}
    for v in variants:
        arm = by_label[v[ARM_KEY]]
        assert v["policy"] == arm.name
        expected = arm.params.model_dump(exclude={"name"})
        if arm.name in ("reduce_on_plateau", "range_test_on_plateau"):
            expected["mode"] = "min"  # follows the monitored val_loss
        assert v["policy_params"] == expected
    # every arm runs every seed, with otherwise identical configs
    seeds_per_arm = Counter(v[ARM_KEY] for v in variants)
    assert set(seeds_per_arm.values()) == {len(spec.seeds)}
    strip = ("policy", "policy_params", ARM_KEY)
    shared = {tuple(sorted((k, repr(x)) for k, x in v.items() if k not in strip)) for v in variants}
    assert len(shared) == len(spec.seeds)
    _assert_plain_trial_configs(variants)


def test_seeds_count_becomes_a_list() -> None:
    assert load_spec(spec_text(setter("seeds", value=3))).seeds == (0, 1, 2)
    assert load_spec(spec_text(setter("seeds", value=[7, 3]))).seeds == (7, 3)


def test_search_space_grid_expands() -> None:
    text = spec_text(
        setter(
            "search_space", value={"lr": {"grid": [0.001, 0.002]}, "batch_size": {"grid": [25, 50]}}
        )
    )
    spec = load_spec(text)
    assert spec.search_space.grid_size == 4
    assert spec.trial_count() == 4 * 2 * 4
    variants = _variants(spec)
    assert len(variants) == spec.trial_count()
    assert {(v["lr"], v["batch_size"]) for v in variants} == {
        (0.001, 25),
        (0.001, 50),
        (0.002, 25),
        (0.002, 50),
    }
    assert len(spec.expand()) == spec.trial_count()
    _assert_plain_trial_configs(variants)


def test_random_search_uses_num_samples() -> None:
    text = spec_text(
        setter("search_space", value={"lr": {"loguniform": [1e-4, 3e-3]}, "num_samples": 3})
    )
    spec = load_spec(text)
    assert spec.trial_count() == 4 * 2 * 3
    variants = _variants(spec)
    assert len(variants) == spec.trial_count()
    assert all(1e-4 <= v["lr"] <= 3e-3 for v in variants)


def test_yaml_exponent_floats_are_numbers() -> None:
    spec = load_spec(spec_text() + "target_val_acc: 5e-1\n")
    assert spec.target_val_acc == 0.5


def test_overrides_and_smoke_shrink() -> None:
    spec = load_builtin_spec(
        "default",
        {"name": "other", "data.dir": "/somewhere", "storage_path": "s3://bucket/x"},
        smoke=True,
    )
    assert spec.name == "other" and spec.data.dir == "/somewhere"  # --name wins over -smoke
    assert spec.storage_path == "s3://bucket/x"
    assert spec.epochs == 3 and spec.seeds == (0,)
    assert (spec.data.train_subset, spec.data.val_subset, spec.data.test_subset) == (300, 200, 200)
    assert "# command-line overrides:" in spec.text
    assert spec.text.startswith(builtin_spec_text("default").rstrip("\n"))


def test_smoke_shrink_renames_the_sweep() -> None:
    assert load_builtin_spec("default", smoke=True).name == "policy-compare-smoke"
    assert load_builtin_spec("smoke", smoke=True).name == "policy-compare-smoke"
    assert load_builtin_spec("smoke", smoke=True).trial_count() == 2


def test_override_errors_name_the_key() -> None:
    with pytest.raises(SpecError, match="name: must be letters"):
        load_builtin_spec("smoke", {"name": "bad name"})


def test_policy_shorthand_and_labels() -> None:
    text = spec_text(
        setter(
            "policies",
            value=[
                "constant",
                {"name": "reduce_on_plateau", "label": "rop-0.5", "params": {"factor": 0.5}},
                {"name": "reduce_on_plateau", "label": "rop-0.1", "params": {"factor": 0.1}},
            ],
        )
    )
    spec = load_spec(text)
    assert spec.arm_labels == ("constant", "rop-0.5", "rop-0.1")
    variants = _variants(spec)
    params = {v[ARM_KEY]: v["policy_params"] for v in variants}
    assert params["constant"] == {}
    assert (params["rop-0.5"]["factor"], params["rop-0.1"]["factor"]) == (0.5, 0.1)
    assert params["rop-0.5"]["patience"] == 10  # the default, written out for the trial


def test_asha_scheduler_and_run_config() -> None:
    from ray.tune.schedulers import ASHAScheduler

    from sweep.tuner import experiment_path, make_run_config, make_scheduler, resolve_storage

    spec = load_spec(spec_text(setter("scheduler", value={"name": "asha", "grace_period": 1})))
    scheduler = make_scheduler(spec)
    assert isinstance(scheduler, ASHAScheduler)
    assert make_scheduler(load_spec(spec_text())) is None  # fifo

    storage = resolve_storage("./ray_results", Path("/work/x"))
    assert storage == "/work/x/ray_results"
    assert resolve_storage("s3://bucket/runs") == "s3://bucket/runs"
    assert experiment_path("s3://bucket/runs/", "unit") == "s3://bucket/runs/unit"
    config = make_run_config(spec, storage, tracker=None)
    assert config.name == "unit" and config.storage_path == storage
    assert config.failure_config is not None and config.failure_config.max_failures == 2
    assert config.checkpoint_config is not None
    # The trial prunes its own checkpoints (keeping the spec's 2): Tune deletes none.
    assert config.checkpoint_config.num_to_keep is None
    assert any(type(c).__name__ == "NoRetryOnDeterministicFailure" for c in config.callbacks)


def test_tune_runs_the_trial_function_of_trainables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The function Ray runs lives in trainables/ (the worker imports nothing of sweep/)."""
    from ray import tune

    from sweep.tuner import make_trainable
    from trainables.tune_entry import train_trial

    captured: dict[str, Any] = {}

    def with_parameters(fn: Any, **kw: Any) -> Any:
        captured.update(fn=fn, kw=kw)
        return fn

    monkeypatch.setattr(tune, "with_parameters", with_parameters)
    monkeypatch.setattr(tune, "with_resources", lambda fn, resources: fn)
    spec = load_spec(spec_text())
    assert make_trainable(spec, splits=None) is train_trial  # type: ignore[arg-type]
    assert captured["kw"] == {"data": None, "keep": spec.checkpoint_num_to_keep, "quiet": True}
