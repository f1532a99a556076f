"""benchmarks/held_out_bn_stats.py: the held-out forward on the batch's own BatchNorm statistics."""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from held_out_bn_stats import held_out_loss_batch_stats


def model_with_stale_stats() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )
    with torch.no_grad():  # running statistics far from any batch's
        model[1].running_mean.fill_(2.0)
        model[1].running_var.fill_(9.0)
    return model


def test_it_normalises_by_the_batch_and_leaves_the_running_statistics_alone() -> None:
    model = model_with_stale_stats()
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = held_out_loss_batch_stats(model, F.cross_entropy, (x, y), None, contextlib.nullcontext)

    reference = copy.deepcopy(model).train()  # batch statistics (it would update a copy's buffers)
    with torch.no_grad():
        batch_stats = float(F.cross_entropy(reference(x), y))
        running_stats = float(F.cross_entropy(copy.deepcopy(model).eval()(x), y))
    assert got == pytest.approx(batch_stats, rel=1e-6)
    assert abs(got - running_stats) > 1e-3  # the eval-mode reading differs: the test can fail
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. num_batches_tracked
    assert model.training and model[1].track_running_stats
