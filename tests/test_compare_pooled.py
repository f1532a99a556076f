"""`compare A B`: sweeps of one spec run on other seeds, compared as one population of seeds.

Synthetic sweeps logged through MLflowTracker into a real SQLite store, compared through
compare_sweep and through the CLI. Sweep "first" ran seeds 0-1, "more" seeds 2-3 of the same
two arms; range_test_on_plateau - constant in final test_acc per seed: +0.02, +0.01, -0.01,
+0.02 -> mean +0.01 over 4 seeds, better in 3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import StubTrial, new_store
from mlflow import MlflowClient

from sweep.cli import main
from sweep.compare import CompareError, compare_sweep
from sweep.stats import t_critical_95
from trainables import results as R

# seed -> final test_acc per arm
TEST_ACC = {
    "constant": {0: 0.60, 1: 0.62, 2: 0.61, 3: 0.58},
    "range_test_on_plateau": {0: 0.62, 1: 0.63, 2: 0.60, 3: 0.60},
}


def log_sweep(
    uri: str,
    name: str,
    seeds: tuple[int, ...],
    *,
    epochs: int = 3,
    patience: int = 3,
    target: str = "0.5",
) -> None:
    from sweep.tracking import MLflowTracker

    tracker = MLflowTracker(
        tracking_uri=uri,
        experiment_name=name,
        sweep_name=name,
        spec_text=f"name: {name}\ntarget_val_acc: {target}\n",
        lr_trace_max_points=40,
    )
    tracker.setup()
    trials: list[StubTrial] = []
    for policy, accs in TEST_ACC.items():
        for seed in seeds:
            cfg: dict[str, Any] = {
                "policy": policy,
                "policy_label": policy,
                "seed": seed,
                "epochs": epochs,
                "lr": 1e-3,
                "data": {"dir": f"/data/{name}"},  # where, not what: may differ
            }
            if policy != "constant":
                cfg["policy_params"] = {"patience": patience}
            trial = StubTrial(f"{name}_{policy}_{seed}", cfg)
            trials.append(trial)
            tracker.on_trial_start(iteration=0, trials=trials, trial=trial)
            for epoch in range(1, epochs + 1):
                result = {
                    R.EPOCH: epoch,
                    R.VAL_ACC: 0.4 + 0.05 * epoch,
                    R.VAL_LOSS: 1.0,
                    R.IMAGES_SEEN: 1000 * epoch,
                    R.RANGE_TESTS: 0,
                    R.LR: 1e-3,
                    R.POLICY_EVENTS: "[]",
                    R.LR_TRACE: json.dumps([[(epoch - 1) * 10, 1e-3]]),
                }
                if epoch == epochs:
                    result[R.TEST_ACC] = accs.get(seed, 0.6)
                tracker.on_trial_result(iteration=epoch, trials=trials, trial=trial, result=result)
            trial.status = "TERMINATED"
            tracker.on_trial_complete(iteration=epochs + 1, trials=trials, trial=trial)
    tracker.on_experiment_end(trials=trials)


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> str:
    uri = new_store(empty_store, tmp_path_factory.mktemp("pooled"))
    log_sweep(uri, "first", (0, 1))
    log_sweep(uri, "more", (2, 3))
    log_sweep(uri, "longer", (4, 5), epochs=4)  # another setup
    log_sweep(uri, "patience0", (6, 7), patience=0)  # one arm's params differ
    log_sweep(uri, "again", (1, 2))  # seeds 1 and 2 once more
    log_sweep(uri, "other-target", (8, 9), target="0.6")
    return uri


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a pooled comparison goes to ./A+B-comparison by default


def test_two_sweeps_pool_their_seeds(uri: str, tmp_path: Path) -> None:
    comp = compare_sweep(uri, ["first", "more"])

    assert {r.policy: r.n for r in comp.rows} == {"constant": 4, "range_test_on_plateau": 4}
    assert comp.row("constant").seeds == ["0", "1", "2", "3"]
    (paired,) = comp.paired
    diffs = [0.02, 0.01, -0.01, 0.02]
    mean = sum(diffs) / 4
    sd = (sum((d - mean) ** 2 for d in diffs) / 3) ** 0.5
    assert paired.seeds == ["0", "1", "2", "3"]
    assert paired.final_test_acc.mean == pytest.approx(0.01)
    assert paired.final_test_acc.ci95 == pytest.approx(t_critical_95(3) * sd / 2)
    assert paired.final_test_acc.better == 3
    text = comp.format()
    assert text.startswith("sweeps 'first' + 'more' pooled: 8 finished trial runs\n")
    assert [s.sweep for s in comp.pooled] == ["first", "more"]
    assert "n<3" not in text and "too few seeds" not in text  # four seeds: the intervals are read
    out = tmp_path / "first+more-comparison"
    assert comp.out_dir == out
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.json",
        "comparison.txt",
        "lr_vs_step.png",
        "val_acc_vs_epoch.png",
    ]
    saved = json.loads((out / "comparison.json").read_text())
    assert [s["sweep"] for s in saved["pooled"]] == ["first", "more"]
    # no one sweep owns a pooled comparison: nothing is logged to either parent run
    client = MlflowClient(tracking_uri=uri)
    for source in comp.pooled:
        assert client.list_artifacts(source.parent_run_id, "comparison") == []


def test_one_sweep_is_compared_alone_and_logged(uri: str) -> None:
    comp = compare_sweep(uri, "first")
    assert comp.pooled == [] and comp.row("constant").n == 2
    text = comp.format()
    assert text.startswith("sweep 'first': 4 finished trial runs\n")
    # two seeds: the intervals are flagged, and the way to more seeds is said
    assert "(n=2<3)" in text
    assert text.endswith(
        "too few seeds to read: run the sweep again with the same spec and options plus "
        "'--seeds 2-4 --name NEW',\n"
        "then 'python -m sweep compare first NEW' compares them all as one\n"
    )
    client = MlflowClient(tracking_uri=uri)
    assert client.list_artifacts(comp.parent_run_id, "comparison")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["first", "longer"], "the sweeps differ in 'epochs': 'first' ran 3, 'longer' ran 4"),
        (
            ["first", "patience0"],
            "arm 'range_test_on_plateau' ran with policy_params.patience=3 in 'first' but "
            "policy_params.patience=0 in 'patience0'",
        ),
        (["first", "again"], "arm 'constant' ran seed 1 in both 'first' and 'again'"),
        (["first", "first"], "sweep 'first' is named twice"),
        (["first", "nosuch"], "no sweep named 'nosuch'"),
        (["first", "other-target"], "the sweeps' specs set different target_val_acc"),
    ],
)
def test_sweeps_that_do_not_pool_are_refused(
    uri: str, tmp_path: Path, names: list[str], message: str
) -> None:
    with pytest.raises(CompareError, match="^" + message.replace("(", r"\(")):
        compare_sweep(uri, names)
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_pools_and_refuses_with_one_line(
    uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "first", "more", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "sweeps 'first' + 'more' pooled: 8 finished trial runs" in out
    assert "paired with constant" in out
    assert "python -m sweep ui first --tracking-uri" in out
    assert "python -m sweep ui more --tracking-uri" in out
    assert (tmp_path / "first+more-comparison" / "comparison.txt").is_file()

    assert main(["compare", "first", "longer", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the sweeps differ in 'epochs'"), err
    assert "one spec that differ in their seeds" in err[0]
    assert not (tmp_path / "first+longer-comparison").exists()

    # differing targets: --target-acc settles it
    assert main(["compare", "first", "other-target", "--tracking-uri", uri]) == 2
    assert "pass --target-acc X" in capsys.readouterr().err
    argv = ["compare", "first", "other-target", "--tracking-uri", uri, "--target-acc", "0.55"]
    assert main(argv) == 0
    assert "target val_acc >= 0.55" in capsys.readouterr().out
