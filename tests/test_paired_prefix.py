"""benchmarks/paired_prefix.py: the shared prefix of two arms, on synthetic histories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import new_store
from mlflow import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import paired_prefix


def _arm(lrs: list[float], val_loss: list[float]) -> dict[str, dict[int, float]]:
    hist = {"lr": dict(enumerate(lrs, 1)), "val_loss": dict(enumerate(val_loss, 1))}
    hist["train_loss"] = {e: 2 * v for e, v in hist["val_loss"].items()}
    hist["val_acc"] = {e: 1 - v for e, v in hist["val_loss"].items()}
    return hist


@pytest.mark.parametrize(
    ("a", "b", "epochs", "differing", "first_change"),
    [
        # the cut at epoch 3 ends the prefix; what follows may differ
        (([1, 1, 0.3, 0.3], [0.9, 0.8, 0.7, 0.6]), ([1, 1, 1, 1], [0.9, 0.8, 0.75, 0.7]), 2, 0, 3),
        # never changed: every epoch is compared
        (([1, 1, 1], [0.9, 0.8, 0.7]), ([1, 1, 1], [0.9, 0.8, 0.7]), 3, 0, None),
        # a difference before any LR changed: the arms do not pair
        (([1, 1, 0.1], [0.9, 0.8, 0.7]), ([1, 1, 1], [0.9, 0.81, 0.7]), 2, 1, 3),
        # a shorter arm: only the epochs both ran
        (([1, 1], [0.9, 0.8]), ([1, 1, 1], [0.9, 0.8, 0.7]), 2, 0, None),
        # different first LRs: nothing shared
        (([1, 1], [0.9, 0.8]), ([3, 3], [0.9, 0.8]), 0, 0, 1),
    ],
)
def test_shared_prefix_compares_the_epochs_before_the_first_lr_change(
    a: tuple[list[float], list[float]],
    b: tuple[list[float], list[float]],
    epochs: int,
    differing: int,
    first_change: int | None,
) -> None:
    got = paired_prefix.shared_prefix("7", _arm(*a), _arm(*b))
    assert got == paired_prefix.Prefix("7", epochs, differing, first_change)


def _log_arm(client: MlflowClient, exp_id: str, label: str, seed: int, lrs: list[float]) -> None:
    run = client.create_run(
        exp_id,
        tags={
            "plateau_sweep.role": "child",
            "plateau_sweep.policy_label": label,
            "plateau_sweep.seed": str(seed),
        },
    )
    for epoch, lr in enumerate(lrs, 1):
        # the same numbers at the first LR, the new LR's own numbers after it
        loss = 1.0 / epoch if lr == lrs[0] else 0.5 / epoch
        for key, value in {
            "lr": lr,
            "val_loss": loss,
            "train_loss": loss,
            "val_acc": 1 - loss,
        }.items():
            client.log_metric(run.info.run_id, key, value, step=epoch)  # type: ignore[attr-defined]


def test_paired_prefix_reads_both_arms_from_a_real_mlflow_store(
    tmp_path: Path,
    empty_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = new_store(empty_store, tmp_path)
    client = MlflowClient(tracking_uri=uri)
    new, old = client.create_experiment("new"), client.create_experiment("old")
    for seed in (3, 4):
        _log_arm(client, new, "cut", seed, [1e-3, 1e-3, 1e-4])
        _log_arm(client, old, "keep", seed, [1e-3, 1e-3, 1e-3])
    _log_arm(client, old, "keep", 5, [1e-3])  # a seed the new arm did not run
    out = tmp_path / "paired.json"
    argv = ["paired_prefix.py", "new", "old", "keep", "cut", "--tracking-uri", uri]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    assert paired_prefix.main() == 0
    printed = capsys.readouterr().out
    assert (
        "cut seed   3:  2 epochs at the first LR before either arm changed it (epoch 3)" in printed
    )
    assert "pair (seeds: 3, 4)" in printed
    doc = json.loads(out.read_text())
    assert doc["arms"]["cut"]["pair"] is True
    assert [p["epochs"] for p in doc["arms"]["cut"]["seeds"]] == [2, 2]
    # an arm that is not there is an error that names it, and nothing is written
    out.unlink()
    monkeypatch.setattr(sys, "argv", [*argv[:4], "nothing", *argv[5:], "--out", str(out)])
    with pytest.raises(SystemExit, match="no runs labelled 'nothing'"):
        paired_prefix.main()
    assert not out.exists()
