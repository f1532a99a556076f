"""Trial.train_step / train_steps / epoch_batches: one optimizer step for every training path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from trainables.config import TrialConfig
from trainables.data import DataSplits
from trainables.device import select_device
from trainables.loop import Trial


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def splits(n_train: int = 150) -> DataSplits:
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        return x, torch.randint(0, 10, (n,), generator=g)

    (tx, ty), (vx, vy), (sx, sy) = part(n_train), part(40), part(40)
    return DataSplits(tx, ty, vx, vy, sx, sy)


def trial(policy: str = "constant", **params: object) -> Trial:
    cfg = TrialConfig.model_validate(
        {"batch_size": 50, "seed": 3, "lr": 1e-3, "policy": policy, "policy_params": params}
    )
    return Trial(cfg, splits(), select_device("cpu", cpus_assigned=1))


def test_train_steps_at_the_policy_lr_is_exactly_an_epoch() -> None:
    a, b = trial(), trial()
    a.train_epoch(1)
    loss = b.train_steps(b.epoch_batches(1), b.steps_per_epoch, 1e-3)
    assert loss > 0
    for (name, pa), pb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
    assert a.counters.global_step == b.counters.global_step == a.steps_per_epoch
    assert b.policy.iteration == 0  # train_steps neither asks nor advances the policy
    assert a.policy.iteration == a.steps_per_epoch


def test_train_steps_uses_the_given_lr() -> None:
    a, b = trial(), trial()
    a.train_steps(a.epoch_batches(1), 2, 1e-3)
    b.train_steps(b.epoch_batches(1), 2, 1e-2)
    assert b.optimizer.param_groups[0]["lr"] == 1e-2
    assert not torch.equal(next(a.model.parameters()), next(b.model.parameters()))


def test_train_steps_validates() -> None:
    t = trial()
    with pytest.raises(ValueError, match="num_steps"):
        t.train_steps(t.epoch_batches(1), 0, 1e-3)
    with pytest.raises(ValueError, match="empty"):
        t.train_steps(iter([]), 3, 1e-3)


def test_replica_streams_are_other_orders_of_the_same_images() -> None:
    t = trial()
    own = [y for _, y in t.epoch_batches(2)]
    again = [y for _, y in t.epoch_batches(2)]
    other = [y for _, y in t.epoch_batches(2, replica=1)]
    assert all(torch.equal(p, q) for p, q in zip(own, again, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(own, other, strict=True))
    assert sorted(torch.cat(own).tolist()) == sorted(torch.cat(other).tolist())


def test_held_out_probe_runs_past_a_pass_of_a_small_set() -> None:
    # 150 images, batches of 50: one held out, the test trains on the other two, 20 steps long
    t = trial("range_test_on_plateau", patience=0)
    result = t.probe(1)(1e-5, 1.0, 20)
    assert result.images == len(result.lrs) * 50
    assert len(result.lrs) >= 6


@pytest.mark.parametrize(("epochs", "tested_at"), [(2, []), (3, [2])])
def test_no_range_test_after_the_last_epoch(epochs: int, tested_at: list[int]) -> None:
    """A plateau after the last epoch costs nothing: no LR is used after it."""
    import json

    from helpers import KeepReports

    from trainables import results as R
    from trainables.loop import train

    cfg = TrialConfig.model_validate(
        {
            "batch_size": 50,
            "seed": 3,
            "epochs": epochs,
            "policy": "range_test_on_plateau",
            # patience 0, cooldown 0 and a 50% threshold: every epoch after the first plateaus
            "policy_params": {"patience": 0, "cooldown": 0, "threshold": 0.5, "num_steps": 6},
        }
    )
    keep = KeepReports()
    train(cfg, splits(), keep, select_device("cpu", cpus_assigned=1))
    reports = keep.reports
    events = [e for m in reports for e in json.loads(str(m[R.POLICY_EVENTS]))]
    assert [e["epoch"] for e in events if e["kind"] == "range_test"] == tested_at
    assert reports[-1][R.RANGE_TESTS] == len(tested_at)
