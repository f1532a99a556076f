"""compare_sweep over a synthetic sweep logged through MLflowTracker into a real SQLite store.

2 policies x 3 seeds with hand-picked numbers; the expected means, standard deviations, 95% t
intervals and reach-the-target numbers below are worked out by hand in the comments.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from helpers import PNG_SIGNATURE, StubTrial, new_store
from mlflow import MlflowClient

from sweep.compare import CompareError, compare_sweep
from sweep.comparison import Comparison
from sweep.readback import range_test_events, spec_target
from sweep.stats import Paired, Stat, t_critical_95
from sweep.tracking import MLflowTracker
from trainables import results as R

T2 = 4.302652729911275  # t(0.975, df=2)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compare_sweep writes ./<sweep>-comparison when the store names no results folder."""
    monkeypatch.chdir(tmp_path)


# policy label -> seed -> (val_acc per epoch, images_seen per epoch, test_acc, {epoch: chosen lr})
SWEEP: dict[str, dict[int, tuple[list[float], list[int], float, dict[int, float]]]] = {
    "rtp": {
        0: ([0.40, 0.55, 0.62, 0.60], [1000, 2600, 3600, 4600], 0.60, {2: 3e-3}),
        1: ([0.45, 0.61, 0.63, 0.66], [1000, 2500, 3500, 4500], 0.64, {2: 2e-3, 4: 1e-3}),
        2: ([0.30, 0.40, 0.50, 0.58], [1000, 2000, 3000, 4000], 0.57, {}),
    },
    "constant": {
        0: ([0.50, 0.55, 0.58, 0.59], [1000, 2000, 3000, 4000], 0.58, {}),
        1: ([0.52, 0.60, 0.61, 0.62], [1000, 2000, 3000, 4000], 0.61, {}),
        2: ([0.50, 0.58, 0.60, 0.65], [1000, 2000, 3000, 4000], 0.63, {}),
    },
}
POLICY_NAME = {"rtp": "range_test_on_plateau", "constant": "constant"}
TARGET = 0.6


def _event(epoch: int, lr: float) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "kind": "range_test",
        "reason": "plateau",
        "old_lr": 1e-3,
        "new_lr": lr,
        "suggested_lr": lr,
        "rule": "steepest",
        "lrs": [1e-5, 1e-4, 1e-3, 1e-2],
        "losses": [2.0, 1.8, 1.5, None],
        "stop_reason": "diverged",
        "images": 500,
        "seconds": 0.5,
    }


def log_sweep(
    uri: str,
    name: str,
    *,
    fail_one: bool = True,
    target: str = "null",
    results_dir: str | None = None,
) -> MLflowTracker:
    tracker = MLflowTracker(
        tracking_uri=uri,
        experiment_name=f"exp-{name}",
        sweep_name=name,
        spec_text=f"name: {name}\ntarget_val_acc: {target}\n",
        lr_trace_max_points=40,
        results_dir=results_dir,
    )
    tracker.setup()
    trials: list[StubTrial] = []
    for label, seeds in SWEEP.items():
        for seed, (vals, images, test_acc, chosen) in seeds.items():
            cfg = {
                "policy": POLICY_NAME[label],
                "policy_label": label,
                "seed": seed,
                "epochs": 4,
                "lr": 1e-3,
            }
            trial = StubTrial(f"{label}_{seed}", cfg)
            trials.append(trial)
            tracker.on_trial_start(iteration=0, trials=trials, trial=trial)
            count = 0
            for epoch, (val, img) in enumerate(zip(vals, images, strict=True), start=1):
                events = [_event(epoch, chosen[epoch])] if epoch in chosen else []
                count += len(events)
                lr = chosen.get(epoch, 1e-3 if seed != 1 else 2e-3)
                result = {
                    R.EPOCH: epoch,
                    R.VAL_ACC: val,
                    R.VAL_LOSS: 1.0 - val,
                    R.IMAGES_SEEN: img,
                    R.RANGE_TESTS: count,
                    R.LR: lr,
                    R.POLICY_EVENTS: json.dumps(events),
                    R.LR_TRACE: json.dumps([[(epoch - 1) * 10 + i, lr] for i in range(10)]),
                }
                if epoch == len(vals):
                    result[R.TEST_ACC] = test_acc
                tracker.on_trial_result(iteration=epoch, trials=trials, trial=trial, result=result)
            trial.status = "TERMINATED"
            tracker.on_trial_complete(iteration=5, trials=trials, trial=trial)
    if fail_one:  # a failed trial is not compared
        bad = StubTrial("constant_3", {"policy": "constant", "policy_label": "constant", "seed": 3})
        bad.error_msg = "RuntimeError: boom"
        trials.append(bad)
        tracker.on_trial_start(iteration=6, trials=trials, trial=bad)
        tracker.on_trial_result(
            iteration=6, trials=trials, trial=bad, result={R.EPOCH: 1, R.VAL_ACC: 0.99}
        )
        bad.status = "ERROR"
        tracker.on_trial_error(iteration=7, trials=trials, trial=bad)
    tracker.on_experiment_end(trials=trials)
    return tracker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> tuple[str, MLflowTracker]:
    root = tmp_path_factory.mktemp("store")
    uri = new_store(empty_store, root)
    return uri, log_sweep(uri, "main")


@pytest.fixture(scope="module")
def comparison(
    store: tuple[str, MLflowTracker], tmp_path_factory: pytest.TempPathFactory
) -> Comparison:
    uri, _ = store
    out = tmp_path_factory.mktemp("out")
    return compare_sweep(uri, "main", out_dir=out, target_val_acc=TARGET)


def test_best_val_acc_and_test_acc_per_policy(comparison: Comparison) -> None:
    assert [r.policy for r in comparison.rows] == ["constant", "rtp"]
    assert comparison.excluded == {"FAILED": 1}
    rtp = comparison.row("rtp")
    assert rtp.n == 3
    assert rtp.seeds == ["0", "1", "2"]
    # best val_acc: 0.62, 0.66, 0.58 -> mean 0.62; deviations 0, +0.04, -0.04 -> s = 0.04
    assert rtp.best_val_acc.mean == pytest.approx(0.62)
    assert rtp.best_val_acc.std == pytest.approx(0.04)
    assert rtp.best_val_acc.ci95 == pytest.approx(T2 * 0.04 / math.sqrt(3))  # 0.09937
    assert rtp.best_val_acc.ci95 == pytest.approx(0.09937, abs=1e-5)
    # test_acc: 0.60, 0.64, 0.57 -> mean 0.603333; s^2 = (0.0033^2+0.0367^2+0.0333^2)/2
    assert rtp.final_test_acc.mean == pytest.approx(0.603333, abs=1e-6)
    assert rtp.final_test_acc.std == pytest.approx(math.sqrt(0.0024666667 / 2), abs=1e-6)
    const = comparison.row("constant")
    assert const.n == 3  # the FAILED seed 3 is not among them
    # best val_acc: 0.59, 0.62, 0.65 -> mean 0.62, s = 0.03, CI 4.3027 * 0.03 / sqrt(3)
    assert const.best_val_acc.mean == pytest.approx(0.62)
    assert const.best_val_acc.std == pytest.approx(0.03)
    assert const.best_val_acc.ci95 == pytest.approx(0.074525, abs=1e-5)
    assert const.final_test_acc.mean == pytest.approx((0.58 + 0.61 + 0.63) / 3)


def test_reaching_the_target(comparison: Comparison) -> None:
    rtp = comparison.row("rtp")
    # seed 0 reaches 0.6 at epoch 3 (3600 images), seed 1 at epoch 2 (2500), seed 2 never
    assert (rtp.reached, rtp.n, rtp.reached_text) == (2, 3, "2/3")
    assert rtp.epochs_to_target.mean == pytest.approx(2.5)
    assert rtp.epochs_to_target.std == pytest.approx(math.sqrt(0.5))
    assert rtp.images_to_target.mean == pytest.approx(3050)
    const = comparison.row("constant")
    # seed 0 never (best 0.59), seed 1 at epoch 2 (2000 images), seed 2 at epoch 3 (3000)
    assert const.reached_text == "2/3"
    assert const.epochs_to_target.mean == pytest.approx(2.5)
    assert const.images_to_target.mean == pytest.approx(2500)


def test_range_tests_and_their_lrs(comparison: Comparison) -> None:
    rtp = comparison.row("rtp")
    assert rtp.range_tests.mean == pytest.approx(1.0)  # 1, 2, 0 per seed
    assert sorted(rtp.range_test_lrs) == pytest.approx([1e-3, 2e-3, 3e-3])
    assert "2.00e-03 [1.00e-03, 3.00e-03] (n=3)" in rtp.lrs_text
    const = comparison.row("constant")
    assert const.range_tests.mean == 0
    assert const.range_test_lrs == []
    assert const.lrs_text == "-"


def test_table_json_and_plots(comparison: Comparison, store: tuple[str, MLflowTracker]) -> None:
    text = comparison.format()
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("policy"))
    assert lines[header + 1].startswith("------")
    rtp_line = next(ln for ln in lines if ln.startswith("rtp "))
    assert "0.6200 ± 0.0400" in rtp_line  # best val_acc: mean ± std
    # final test_acc 0.60, 0.64, 0.57: std 0.0351, 95% half-width t(2) * s / sqrt(3) = 0.0872
    assert "0.6033 ± 0.0351" in rtp_line and "±0.0872" in rtp_line
    assert "2/3" in rtp_line
    assert "1 FAILED" in text
    assert max(len(ln) for ln in lines) <= 120  # fits a terminal
    wide = comparison.format(wide=True)
    assert "3,050" in next(ln for ln in wide.splitlines() if ln.startswith("rtp "))
    assert "2.00e-03 [1.00e-03, 3.00e-03] (n=3)" in text  # the range-test table

    out = comparison.out_dir
    assert out is not None
    assert (out / "comparison.txt").read_text() == text
    data = json.loads((out / "comparison.json").read_text())
    assert data == json.loads(comparison.to_json())
    row = next(r for r in data["rows"] if r["policy"] == "rtp")
    assert row["best_val_acc"]["mean"] == pytest.approx(0.62)
    assert row["reached_text"] == "2/3"
    for name in ("val_acc_vs_epoch.png", "lr_vs_step.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE

    uri, tracker = store
    client = MlflowClient(tracking_uri=uri)
    logged = {f.path for f in client.list_artifacts(comparison.parent_run_id, "comparison")}
    assert comparison.parent_run_id == tracker.parent_run_id
    assert logged == {
        "comparison/comparison.txt",
        "comparison/comparison.json",
        "comparison/val_acc_vs_epoch.png",
        "comparison/lr_vs_step.png",
    }


def test_without_target_and_default_out_dir(
    store: tuple[str, MLflowTracker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, _ = store
    monkeypatch.chdir(tmp_path)
    comp = compare_sweep(uri, "main", experiment_name="exp-main", log_to_parent=False)
    assert comp.experiment_name == "exp-main"
    assert comp.row("rtp").reached_text == "-"
    assert comp.row("rtp").epochs_to_target.n == 0
    # the store does not say where the sweep's results are: a folder here, named after it
    assert comp.out_dir == tmp_path / "main-comparison"
    assert (comp.out_dir / "lr_vs_step.png").is_file()
    assert "no target" in comp.format()


def test_default_out_dir_is_in_the_sweeps_results_folder(tmp_path: Path, empty_store: Path) -> None:
    uri = new_store(empty_store, tmp_path)
    results = tmp_path / "ray_results" / "placed"
    results.mkdir(parents=True)
    log_sweep(uri, "placed", fail_one=False, results_dir=str(results))
    comp = compare_sweep(uri, "placed", log_to_parent=False)
    assert comp.out_dir == results / "comparison"
    assert sorted(p.name for p in comp.files.values()) == sorted(
        p.name for p in (results / "comparison").iterdir()
    )


def test_target_defaults_to_the_sweeps_own_spec(tmp_path: Path, empty_store: Path) -> None:
    """Without target_val_acc, compare uses the target of the spec the sweep ran with."""
    uri = new_store(empty_store, tmp_path)
    log_sweep(uri, "targeted", fail_one=False, target=str(TARGET))
    comp = compare_sweep(uri, "targeted", log_to_parent=False)
    assert comp.target_val_acc == TARGET
    assert comp.row("rtp").epochs_to_target.mean == pytest.approx(2.5)  # as with TARGET given
    assert comp.row("rtp").images_to_target.mean == pytest.approx(3050)
    # an explicit target still wins
    assert (
        compare_sweep(uri, "targeted", target_val_acc=0.99, log_to_parent=False).target_val_acc
        == 0.99
    )
    # a spec without the key gets the spec's default (0.5); no spec.yaml at all: no target
    tracker = MLflowTracker(
        tracking_uri=uri, experiment_name="e2", sweep_name="bare", spec_text="name: bare\n"
    )
    tracker.setup()
    assert tracker.parent_run_id is not None
    assert spec_target(tracker.client, tracker.parent_run_id) == 0.5
    assert spec_target(tracker.client, "0" * 32) is None


def test_unknown_sweep_and_experiment(store: tuple[str, MLflowTracker]) -> None:
    uri, _ = store
    with pytest.raises(CompareError, match=r"no sweep named 'nope'.*known sweeps: main") as info:
        compare_sweep(uri, "nope", log_to_parent=False)
    assert "\n" not in str(info.value)
    with pytest.raises(CompareError, match="no experiment 'missing'"):
        compare_sweep(uri, "main", experiment_name="missing", log_to_parent=False)


def test_unusable_stores(tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "mlflow.db"
    with pytest.raises(CompareError, match="does not exist"):
        compare_sweep(f"sqlite:///{missing}", "x")
    assert not (tmp_path / "sub").exists()  # MLflow would have created folder and db
    with pytest.raises(CompareError, match="sqlite:///"):
        compare_sweep("file:./mlruns", "x")
    assert not (tmp_path / "sub").exists()


def test_sweep_without_finished_children(tmp_path: Path, empty_store: Path) -> None:
    uri = new_store(empty_store, tmp_path)
    tracker = MLflowTracker(
        tracking_uri=uri, experiment_name="e", sweep_name="fresh", spec_text="name: fresh\n"
    )
    tracker.setup()
    trial = StubTrial("t", {"policy": "constant", "seed": 0})
    tracker.on_trial_start(iteration=0, trials=[trial], trial=trial)
    with pytest.raises(CompareError, match="no finished child runs") as info:
        compare_sweep(uri, "fresh")
    assert "python -m sweep run --name fresh" in str(info.value)
    assert "1 RUNNING" in str(info.value)


def test_stat_and_t_critical_value() -> None:
    assert Stat.of([]).mean is None and Stat.of([]).format() == "-"
    assert Stat.of([0.5, 0.6]).format_ci() == "±0.6353 (n=2<3)"  # t(1) = 12.7: flagged
    assert Stat.of([0.5, 0.6, 0.7]).format_ci() == "±0.2484"
    one = Stat.of([0.5])
    assert (one.n, one.mean, one.std, one.ci95) == (1, 0.5, None, None)
    assert one.format() == "0.5000"
    assert Stat.of([1.0, None, float("nan"), 3.0]).n == 2
    assert t_critical_95(1) == pytest.approx(12.706, abs=1e-3)
    assert t_critical_95(30) == pytest.approx(2.042, abs=1e-3)
    assert t_critical_95(60) == pytest.approx(2.0003, abs=1e-3)
    assert t_critical_95(10_000) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError):
        t_critical_95(0)


# -- paired against the reference policy -------------------------------------------------------
def test_paired_differences_against_constant(comparison: Comparison) -> None:
    assert comparison.reference == "constant"  # the default, present in this sweep
    (paired,) = comparison.paired
    assert (paired.policy, paired.reference, paired.seeds) == ("rtp", "constant", ["0", "1", "2"])
    # test_acc: rtp 0.60, 0.64, 0.57 against constant 0.58, 0.61, 0.63 -> +0.02, +0.03, -0.06;
    # mean -0.003333, deviations +0.023333, +0.033333, -0.056667 -> s^2 = 0.0048667 / 2
    test = paired.final_test_acc
    assert test.diffs == pytest.approx((0.02, 0.03, -0.06))
    assert test.mean == pytest.approx(-0.01 / 3)
    assert test.ci95 == pytest.approx(T2 * math.sqrt(0.0048666667 / 2) / math.sqrt(3), rel=1e-6)
    assert test.ci95 == pytest.approx(0.12254, abs=1e-5)
    assert (test.better, test.n, test.better_text) == (2, 3, "2/3")
    # best val_acc: 0.62, 0.66, 0.58 against 0.59, 0.62, 0.65 -> +0.03, +0.04, -0.07; mean 0,
    # s^2 = (0.0009 + 0.0016 + 0.0049) / 2 = 0.0037
    val = paired.best_val_acc
    assert val.mean == pytest.approx(0.0, abs=1e-12)
    assert val.ci95 == pytest.approx(T2 * math.sqrt(0.0037) / math.sqrt(3), rel=1e-6)
    assert val.better == 2


def test_paired_table_and_json(comparison: Comparison) -> None:
    text = comparison.format()
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("paired with constant"))
    assert lines[start + 3].startswith("policy") and lines[start + 4].startswith("------")
    row = lines[start + 5]
    assert row.startswith("rtp ") and "-0.0033 ±0.1225" in row and "2/3" in row
    assert max(len(ln) for ln in lines[start:]) <= 100  # a narrow second table, not more columns
    data = json.loads(comparison.to_json())
    assert data["reference"] == "constant"
    assert data["paired"][0]["final_test_acc"]["better"] == 2


def test_the_paired_table_needs_two_arms(comparison: Comparison) -> None:
    """Without a 'constant' arm the table says how to get one; a one-arm sweep says nothing."""
    two = dataclasses.replace(comparison, reference=None, paired=[])
    assert "no paired comparison: the sweep has no 'constant' arm (pass --reference)" in (
        two.format().splitlines()
    )
    one = dataclasses.replace(two, rows=[comparison.row("rtp")])
    assert "paired" not in one.format()


def test_reference_can_be_any_policy_of_the_sweep(store: tuple[str, MLflowTracker]) -> None:
    uri, _ = store
    comp = compare_sweep(uri, "main", reference="rtp", log_to_parent=False)
    (paired,) = comp.paired
    assert (paired.policy, paired.reference) == ("constant", "rtp")
    assert paired.final_test_acc.mean == pytest.approx(0.01 / 3)
    assert paired.final_test_acc.better == 1
    with pytest.raises(
        CompareError, match=r"--reference 'cyclical' is not a policy.*constant, rtp"
    ):
        compare_sweep(uri, "main", reference="cyclical", log_to_parent=False)


def test_paired_uses_only_the_seeds_both_ran() -> None:
    one = Paired.of([(0.6, 0.5), (None, 0.5), (0.7, float("nan")), (0.4, 0.5)])
    assert one.n == 2 and one.diffs == pytest.approx((0.1, -0.1)) and one.better == 1
    assert one.mean == pytest.approx(0.0, abs=1e-12)
    single = Paired.of([(0.6, 0.5)])
    assert single.ci95 is None and single.format() == "+0.1000"
    assert single.format_short() == "+0.1000 (n=1)"
    two = Paired.of([(0.6, 0.5), (0.7, 0.5)])
    assert two.format_short().endswith("(n=2<3)")  # an interval from 2 seeds is flagged
    assert Paired.of([]).format() == "-" and Paired.of([]).better_text == "-"


def test_runs_at_chance_are_counted_and_said(tmp_path: Path, empty_store: Path) -> None:
    """A run whose plateau was at chance (a not_learning event) is counted per policy."""
    uri = new_store(empty_store, tmp_path)
    tracker = MLflowTracker(
        tracking_uri=uri, experiment_name="exp-dead", sweep_name="dead", spec_text="name: dead\n"
    )
    tracker.setup()
    trials: list[StubTrial] = []
    warning = {"epoch": 2, "kind": "not_learning", "old_lr": 0.01, "new_lr": 0.01, "reason": ""}
    for label, seed, dead in (("rtp", 0, True), ("rtp", 1, False), ("constant", 0, False)):
        cfg = {"policy": POLICY_NAME[label], "policy_label": label, "seed": seed, "epochs": 2}
        trial = StubTrial(f"{label}_{seed}", cfg)
        trials.append(trial)
        tracker.on_trial_start(iteration=0, trials=trials, trial=trial)
        for epoch in (1, 2):
            events = [warning] if dead and epoch == 2 else []
            result = {R.EPOCH: epoch, R.VAL_ACC: 0.1, R.POLICY_EVENTS: json.dumps(events)}
            if epoch == 2:
                result[R.TEST_ACC] = 0.1
            tracker.on_trial_result(iteration=epoch, trials=trials, trial=trial, result=result)
        trial.status = "TERMINATED"
        tracker.on_trial_complete(iteration=3, trials=trials, trial=trial)
    tracker.on_experiment_end(trials=trials)
    comparison = compare_sweep(uri, "dead", out_dir=tmp_path / "out")
    assert comparison.row("rtp").not_learning == 1 and comparison.row("constant").not_learning == 0
    assert [r.not_learning for r in comparison.runs if r.policy == "rtp"] == [True, False]
    assert (
        "not learning (a plateau at chance; the lr far too high or far too low): rtp 1 of 2 runs"
        in comparison.format().splitlines()
    )


def test_range_test_events_reads_a_runs_range_tests_in_epoch_order(
    tmp_path: Path, empty_store: Path, store: tuple[str, MLflowTracker]
) -> None:
    """What benchmarks/spike_fix.py and declines.py read: the tracker's own event files, and
    only the range tests among them (a second test in one epoch has a suffixed name)."""
    uri, tracker = store
    client = MlflowClient(tracking_uri=uri)
    run_id = tracker.child_run_id("rtp_1")
    assert run_id is not None
    events = range_test_events(client, run_id)
    assert [(e["epoch"], e["new_lr"]) for e in events] == [(2, 2e-3), (4, 1e-3)]
    assert range_test_events(client, str(tracker.child_run_id("constant_1"))) == []

    client = MlflowClient(tracking_uri=new_store(empty_store, tmp_path))
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp).info.run_id
    for name, event in {
        "epoch_005_range_test": _event(5, 1e-3),
        "epoch_002_range_test": _event(2, 3e-3),
        "epoch_002_range_test_2": _event(2, 4e-3),
        "epoch_003_reduce": {"epoch": 3, "kind": "reduce", "new_lr": 1e-4},
    }.items():
        client.log_text(run, json.dumps(event), f"events/{name}.json")
    client.log_text(run, "not json", "events/epoch_005_range_test.png")
    assert [(e["epoch"], e["new_lr"]) for e in range_test_events(client, run)] == [
        (2, 3e-3),
        (2, 4e-3),
        (5, 1e-3),
    ]
