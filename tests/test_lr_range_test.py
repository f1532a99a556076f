"""TrainingSnapshot, run_range_test and RangeTestOnPlateauLR on a small real torch problem (CPU)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.lr import (
    RangeTestOnPlateauLR,
    RangeTestResult,
    TrainingSnapshot,
    lr_ladder,
    run_range_test,
)

N, DIM, CLASSES, BATCH = 512, 16, 4, 32


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CallCounter(nn.Module):
    """Has a non-persistent buffer that changes in training-mode forwards."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Tensor
        self.register_buffer("calls", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.calls.add_(1)
        return x


def calls_of(p: Problem) -> int:
    counters = [m for m in p.model.modules() if isinstance(m, CallCounter)]
    return int(counters[0].calls)


def make_data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(N, DIM, generator=g)
    w = torch.randn(DIM, CLASSES, generator=g)
    y = (x @ w + 0.5 * torch.randn(N, CLASSES, generator=g)).argmax(1)
    return x, y


X, Y = make_data()


def stream(gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled batches drawn with ``gen``."""
    while True:
        perm = torch.randperm(N, generator=gen)
        for i in range(0, N, BATCH):
            idx = perm[i : i + BATCH]
            yield X[idx], Y[idx]


def loss_fn(out: Tensor, y: Tensor) -> Tensor:
    random.random()  # consume python and numpy randomness, as augmentation code would
    np.random.rand()
    return F.cross_entropy(out.float(), y)


@dataclass
class Problem:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    gen: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(7))


def make_problem(warmup: int = 5) -> Problem:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(DIM, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Dropout(0.1),
        CallCounter(),
        nn.Linear(64, CLASSES),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train(model, optimizer, stream(torch.Generator().manual_seed(1)), 1e-3, warmup)
    # leave non-trivial grads and eval mode behind, as after a validation pass
    x, y = X[:BATCH], Y[:BATCH]
    F.cross_entropy(model(x), y).backward()
    model.eval()
    return Problem(model, optimizer)


def train(model: nn.Module, opt: torch.optim.Optimizer, batches: Any, lr: float, k: int) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    model.train()
    for _ in range(k):
        x, y = next(batches)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def full_loss(model: nn.Module) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(X), Y))


# -- fingerprints --------------------------------------------------------------------------------


def fingerprint(p: Problem) -> dict[str, Any]:
    return {
        "params": {k: v.detach().clone() for k, v in p.model.named_parameters()},
        "buffers": {k: v.clone() for k, v in p.model.named_buffers()},
        "grads": {
            k: None if v.grad is None else v.grad.clone() for k, v in p.model.named_parameters()
        },
        "training": [m.training for m in p.model.modules()],
        "optimizer": copy.deepcopy(p.optimizer.state_dict()),
        "param_ids": [id(q) for g in p.optimizer.param_groups for q in g["params"]],
    }


def assert_same_fingerprint(before: dict[str, Any], p: Problem) -> None:
    after = fingerprint(p)
    for key in ("params", "buffers"):
        assert before[key].keys() == after[key].keys()
        for name, tensor in before[key].items():
            assert torch.equal(tensor, after[key][name]), f"{key} {name}"
    for name, grad in before["grads"].items():
        other = after["grads"][name]
        assert (grad is None and other is None) or torch.equal(grad, other), f"grad {name}"
    assert before["training"] == after["training"]
    assert before["param_ids"] == after["param_ids"]
    assert [id(q) for q in p.model.parameters()] == after["param_ids"]
    opt_before, opt_after = before["optimizer"], after["optimizer"]
    assert opt_before["param_groups"] == opt_after["param_groups"]  # incl. lr, betas, step hooks
    assert opt_before["state"].keys() == opt_after["state"].keys()
    for pid, state in opt_before["state"].items():
        assert state.keys() == opt_after["state"][pid].keys()
        for key, value in state.items():
            assert torch.equal(value, opt_after["state"][pid][key]), f"optimizer {pid} {key}"


def rng_states(gens: tuple[torch.Generator, ...]) -> tuple[Any, ...]:
    return (
        random.getstate(),
        np.random.get_state(),
        torch.get_rng_state(),
        [g.get_state() for g in gens],
    )


def set_rng_states(states: tuple[Any, ...], gens: tuple[torch.Generator, ...]) -> None:
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    for g, s in zip(gens, states[3], strict=True):
        g.set_state(s)


def next_draws(gens: tuple[torch.Generator, ...]) -> tuple[Any, ...]:
    return (
        random.random(),
        np.random.rand(3).tolist(),
        torch.rand(4),
        [torch.rand(4, generator=g) for g in gens],
    )


def assert_same_draws(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert a[0] == b[0]
    assert a[1] == b[1]
    assert torch.equal(a[2], b[2])
    assert all(torch.equal(x, y) for x, y in zip(a[3], b[3], strict=True))


def expected_draws(states: tuple[Any, ...], gens: tuple[torch.Generator, ...]) -> tuple[Any, ...]:
    """The draws the RNGs give from ``states``, leaving them as they were found."""
    current = rng_states(gens)
    set_rng_states(states, gens)
    draws = next_draws(gens)
    set_rng_states(current, gens)
    return draws


# -- range test restores everything ------------------------------------------------------------


def test_range_test_restores_everything_bit_identically() -> None:
    p = make_problem()
    gens = (p.gen,)
    before, rng_before = fingerprint(p), rng_states(gens)
    calls_before = calls_of(p)

    result = run_range_test(
        p.model,
        p.optimizer,
        loss_fn,
        stream(p.gen),
        min_lr=1e-5,
        max_lr=1.0,
        num_steps=40,
        generators=gens,
    )

    assert result.stop_reason == "completed"
    assert result.lrs == tuple(lr_ladder(1e-5, 1.0, 40).tolist())
    assert len(result.losses) == 40 and result.images == 40 * BATCH
    assert result.seconds > 0
    assert len(set(result.losses)) > 30  # it really trained
    assert_same_fingerprint(before, p)
    assert calls_of(p) == calls_before  # non-persistent buffer too
    assert_same_draws(next_draws(gens), expected_draws(rng_before, gens))


def test_training_continues_identically_after_a_range_test() -> None:
    p = make_problem()
    twin_model = copy.deepcopy(p.model)
    twin_opt = torch.optim.Adam(twin_model.parameters())
    twin_opt.load_state_dict(copy.deepcopy(p.optimizer.state_dict()))
    twin_gen = torch.Generator()
    twin_gen.set_state(p.gen.get_state())

    run_range_test(
        p.model,
        p.optimizer,
        loss_fn,
        stream(p.gen),
        min_lr=1e-5,
        max_lr=1.0,
        num_steps=25,
        generators=(p.gen,),
    )
    for model, opt, gen in ((p.model, p.optimizer, p.gen), (twin_model, twin_opt, twin_gen)):
        torch.manual_seed(99)  # dropout draws
        train(model, opt, stream(gen), 3e-3, 10)
    for (name, a), b in zip(
        p.model.state_dict().items(), twin_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_fresh_optimizer_state_is_restored_empty() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(DIM, 8), nn.BatchNorm1d(8), nn.Linear(8, CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run_range_test(
        model,
        opt,
        loss_fn,
        stream(torch.Generator().manual_seed(0)),
        min_lr=1e-4,
        max_lr=1e-1,
        num_steps=5,
    )
    assert len(opt.state) == 0
    assert opt.param_groups[0]["lr"] == 1e-3
    assert all(p.grad is None for p in model.parameters())


def test_forced_divergence_stops_early_and_restores() -> None:
    p = make_problem()
    gens = (p.gen,)
    before, rng_before = fingerprint(p), rng_states(gens)
    result = run_range_test(
        p.model,
        p.optimizer,
        loss_fn,
        stream(p.gen),
        min_lr=1e-4,
        max_lr=1e6,
        num_steps=60,
        generators=gens,
    )
    assert result.stop_reason in ("diverged", "non_finite")
    assert len(result.lrs) < 60 and len(result.lrs) == len(result.losses)
    assert result.images == len(result.lrs) * BATCH
    assert result.lrs == tuple(lr_ladder(1e-4, 1e6, 60).tolist()[: len(result.lrs)])
    assert_same_fingerprint(before, p)
    assert_same_draws(next_draws(gens), expected_draws(rng_before, gens))


def test_non_finite_loss_stops_and_is_recorded() -> None:
    p = make_problem()
    calls = {"n": 0}

    def nan_at_7(out: Tensor, y: Tensor) -> Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(out, y)
        return loss * float("nan") if calls["n"] == 7 else loss

    result = run_range_test(
        p.model, p.optimizer, nan_at_7, stream(p.gen), min_lr=1e-5, max_lr=1.0, num_steps=30
    )
    assert result.stop_reason == "non_finite"
    assert len(result.losses) == 7 and np.isnan(result.losses[-1])


def test_exception_inside_loss_restores_and_propagates() -> None:
    p = make_problem()
    gens = (p.gen,)
    before, rng_before = fingerprint(p), rng_states(gens)
    calls = {"n": 0}

    class Boom(RuntimeError):
        pass

    def exploding(out: Tensor, y: Tensor) -> Tensor:
        calls["n"] += 1
        if calls["n"] == 6:
            raise Boom("midway")
        return loss_fn(out, y)

    with pytest.raises(Boom, match="midway"):
        run_range_test(
            p.model,
            p.optimizer,
            exploding,
            stream(p.gen),
            min_lr=1e-5,
            max_lr=1.0,
            num_steps=20,
            generators=gens,
        )
    assert calls["n"] == 6
    assert_same_fingerprint(before, p)
    assert_same_draws(next_draws(gens), expected_draws(rng_before, gens))


def test_scaler_and_autocast_are_restored() -> None:
    p = make_problem()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    scaler_before = scaler.state_dict()
    before = fingerprint(p)
    scales: list[float] = []
    dtypes: list[torch.dtype] = []

    def tracking(out: Tensor, y: Tensor) -> Tensor:
        scales.append(scaler.get_scale())
        dtypes.append(out.dtype)
        return loss_fn(out, y)

    result = run_range_test(
        p.model,
        p.optimizer,
        tracking,
        stream(p.gen),
        min_lr=1e-5,
        max_lr=1e-2,
        num_steps=12,
        scaler=scaler,
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16),
        generators=(p.gen,),
    )
    assert result.stop_reason == "completed"
    assert len(set(scales)) > 1  # the scaler really changed during the test
    assert set(dtypes) == {torch.bfloat16}  # forward ran under autocast
    assert scaler.state_dict() == scaler_before
    assert_same_fingerprint(before, p)


def test_exhausted_iterator() -> None:
    p = make_problem()
    before = fingerprint(p)
    batches = iter([(X[:BATCH], Y[:BATCH])] * 3)
    result = run_range_test(
        p.model, p.optimizer, loss_fn, batches, min_lr=1e-5, max_lr=1.0, num_steps=10
    )
    assert result.stop_reason == "exhausted" and len(result.lrs) == 3
    assert_same_fingerprint(before, p)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"min_lr": 0.1, "max_lr": 0.01}, "min_lr (0.1) must be < max_lr (0.01)"),
        ({"min_lr": 0.0}, "min_lr (0.0)"),
        ({"max_lr": float("inf")}, "max_lr (inf)"),
        ({"num_steps": 1}, "num_steps (1)"),
        ({"num_steps": 10.0}, "num_steps (10.0)"),
        ({"beta": 1.0}, "beta (1.0)"),
        ({"diverge_factor": 1.0}, "diverge_factor (1.0)"),
    ],
)
def test_run_range_test_rejects(kwargs: dict[str, Any], bad: str) -> None:
    p = make_problem(warmup=0)
    args: dict[str, Any] = {"min_lr": 1e-5, "max_lr": 1.0, "num_steps": 10, **kwargs}
    with pytest.raises(ValueError) as info:
        run_range_test(p.model, p.optimizer, loss_fn, stream(p.gen), **args)
    assert bad in str(info.value)


def test_lr_ladder() -> None:
    ladder = lr_ladder(1e-6, 1.0, 7)
    assert ladder[0] == 1e-6 and ladder[-1] == 1.0 and len(ladder) == 7
    np.testing.assert_allclose(ladder[1:] / ladder[:-1], 10.0, rtol=1e-12)
    two = lr_ladder(3e-4, 0.7, 2)
    assert two.tolist() == [3e-4, 0.7]
    with pytest.raises(ValueError, match=r"min_lr \(1.0\) must be < max_lr \(1.0\)"):
        lr_ladder(1.0, 1.0, 5)


def test_result_validates() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        RangeTestResult(
            lrs=(1.0, 2.0), losses=(1.0,), stop_reason="completed", images=0, seconds=0.0
        )
    with pytest.raises(ValueError, match="'blew_up'"):
        RangeTestResult(lrs=(), losses=(), stop_reason="blew_up", images=0, seconds=0.0)


# -- the snapshot on its own -------------------------------------------------------------------


def test_snapshot_restores_twice_and_reports_size() -> None:
    p = make_problem()
    before = fingerprint(p)
    snap = TrainingSnapshot.capture(p.model, p.optimizer)
    param_bytes = sum(q.numel() * q.element_size() for q in p.model.parameters())
    assert snap.nbytes >= 4 * param_bytes  # params, grads, exp_avg, exp_avg_sq
    for _ in range(2):
        train(p.model, p.optimizer, stream(p.gen), 1e-2, 5)
        assert not torch.equal(next(p.model.parameters()), before["params"]["0.weight"])
        snap.restore()
        assert_same_fingerprint(before, p)


def test_snapshot_context_manager_restores_on_exception() -> None:
    p = make_problem()
    gens = (p.gen,)
    before, rng_before = fingerprint(p), rng_states(gens)
    with (
        pytest.raises(KeyError, match="inside"),
        TrainingSnapshot.capture(p.model, p.optimizer, generators=gens),
    ):
        train(p.model, p.optimizer, stream(p.gen), 1e-2, 3)
        raise KeyError("inside")
    assert_same_fingerprint(before, p)
    assert_same_draws(next_draws(gens), expected_draws(rng_before, gens))


# -- the policy on a real probe ----------------------------------------------------------------


@pytest.mark.parametrize("rule", ["steepest", "valley", "minimum_div10"])
def test_policy_suggestion_beats_range_ends(rule: str) -> None:
    p = make_problem()
    probe_gen = torch.Generator().manual_seed(3)
    before = fingerprint(p)

    def probe(min_lr: float, max_lr: float, num_steps: int, measure: str) -> RangeTestResult:
        return run_range_test(
            p.model,
            p.optimizer,
            loss_fn,
            stream(probe_gen),
            min_lr=min_lr,
            max_lr=max_lr,
            num_steps=num_steps,
            generators=(probe_gen,),
        )

    policy = RangeTestOnPlateauLR(
        base_lr=1e-3,
        steps_per_epoch=N // BATCH,
        patience=0,
        cooldown=0,
        min_lr=1e-5,
        max_lr=10.0,
        num_steps=100,
        rule=rule,
        max_change=None,  # the rule's own pick, however far from the running LR
        metric_name="val_loss",
    )
    assert policy.end_epoch(0, 0.9, probe) == []
    (event,) = policy.end_epoch(1, 0.95, probe)
    assert event.kind == "range_test" and event.rule == rule
    assert event.suggested_lr is not None
    assert policy.lr() == event.new_lr == event.suggested_lr
    assert 1e-5 <= event.new_lr <= 10.0
    assert len(event.lrs) == 100 and event.images == 100 * BATCH
    assert "val_loss did not improve for 1 epochs" in event.reason
    assert f"({rule})" in event.reason
    assert policy.num_range_tests == 1 and policy.events == [event]
    assert_same_fingerprint(before, p)

    def loss_after(lr: float) -> float:
        model = copy.deepcopy(p.model)
        opt = torch.optim.Adam(model.parameters())
        opt.load_state_dict(copy.deepcopy(p.optimizer.state_dict()))
        torch.manual_seed(5)
        train(model, opt, stream(torch.Generator().manual_seed(11)), lr, 30)
        return full_loss(model)

    start = full_loss(copy.deepcopy(p.model))
    at_min, at_suggested, at_max = (loss_after(lr) for lr in (1e-5, event.new_lr, 10.0))
    assert at_suggested < start
    assert at_suggested < at_min
    assert at_suggested < at_max


# -- held-out measurement ----------------------------------------------------------------------


def held_out_curve(
    p: Problem, held: tuple[Tensor, Tensor] | None, **kwargs: Any
) -> RangeTestResult:
    settings: dict[str, Any] = {"min_lr": 1e-5, "max_lr": 1.0, "num_steps": 30, **kwargs}
    return run_range_test(
        p.model,
        p.optimizer,
        loss_fn,
        stream(torch.Generator().manual_seed(21)),
        held_out=held,
        **settings,
    )


def test_held_out_curve_is_the_fixed_batch_loss_and_restores_everything() -> None:
    p = make_problem(warmup=40)
    before = fingerprint(p)
    held = (X[-128:], Y[-128:])
    result = held_out_curve(p, held, settle_batches=0)
    assert_same_fingerprint(before, p)
    assert result.images == len(result.lrs) * BATCH  # the held-out batch is not trained on
    # the first point is the held-out loss after one step at 1e-5: the starting loss, nearly
    p.model.eval()
    with torch.no_grad():
        start = float(F.cross_entropy(p.model(held[0]), held[1]))
    assert result.losses[0] == pytest.approx(start, rel=1e-2)  # BN stats moved a little


def lagging_problem() -> Problem:
    """A BatchNorm model whose running statistics lag its weights (as after fast training):
    they are those of earlier weights, shifted by one and three times too wide."""
    p = make_problem(warmup=40)
    norm = next(m for m in p.model.modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        norm.running_mean.add_(1.0)
        norm.running_var.mul_(3.0)
    return p


def test_settling_removes_the_batchnorm_catch_up_from_a_flat_curve() -> None:
    """At LR ~0 nothing is learnt: the unsettled curve falls anyway (the running statistics
    catching up with the weights), the settled one is flat and starts lower than it ends."""
    held = (X[-128:], Y[-128:])
    zero = {"min_lr": 1e-12, "max_lr": 2e-12, "num_steps": 20}
    unsettled = held_out_curve(lagging_problem(), held, settle_batches=0, **zero).losses
    settled = held_out_curve(lagging_problem(), held, **zero).losses
    assert unsettled[0] - unsettled[-1] > 0.05  # a "descent" at LR 1e-12
    assert max(settled) - min(settled) < 0.1 * (unsettled[0] - unsettled[-1])
    assert settled[0] < unsettled[-1]  # where the catch-up heads, from the first point on


def test_settling_restores_everything_and_counts_its_images() -> None:
    p = lagging_problem()
    norm = next(m for m in p.model.modules() if isinstance(m, nn.BatchNorm1d))
    before = fingerprint(p)
    result = held_out_curve(p, (X[-128:], Y[-128:]), settle_batches=4)
    assert_same_fingerprint(before, p)  # running statistics included
    assert norm.momentum == 0.1
    assert result.images == (len(result.lrs) + 4) * BATCH


def test_a_forward_that_fails_while_settling_restores_everything() -> None:
    p = lagging_problem()
    norm = next(m for m in p.model.modules() if isinstance(m, nn.BatchNorm1d))
    before = fingerprint(p)

    def breaks_on_the_second() -> Iterator[tuple[Tensor, Tensor]]:
        good = stream(torch.Generator().manual_seed(5))
        yield next(good)
        yield torch.randn(BATCH, DIM + 1), Y[:BATCH]  # wrong width: the forward raises

    with pytest.raises(RuntimeError):
        run_range_test(
            p.model,
            p.optimizer,
            loss_fn,
            breaks_on_the_second(),
            min_lr=1e-5,
            max_lr=1.0,
            num_steps=10,
            held_out=(X[-128:], Y[-128:]),
        )
    assert_same_fingerprint(before, p)  # running statistics included
    assert norm.momentum == 0.1  # not left at None (cumulative averaging)


def test_a_model_without_batchnorm_draws_no_batch_to_settle() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, CLASSES))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    drawn = 0

    def counted() -> Iterator[tuple[Tensor, Tensor]]:
        nonlocal drawn
        for batch in stream(torch.Generator().manual_seed(5)):
            drawn += 1
            yield batch

    result = run_range_test(
        model,
        optimizer,
        loss_fn,
        counted(),
        min_lr=1e-5,
        max_lr=1e-2,
        num_steps=12,
        held_out=(X[-128:], Y[-128:]),
    )
    assert drawn == len(result.lrs) == 12
    assert result.images == 12 * BATCH


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_settle_batches_is_validated(bad: Any) -> None:
    p = make_problem()
    with pytest.raises(ValueError, match="settle_batches"):
        held_out_curve(p, (X[-128:], Y[-128:]), settle_batches=bad)


def test_held_out_curve_is_far_less_noisy_than_the_batch_losses() -> None:
    from trainables.lr import batch_noise

    p = make_problem(warmup=40)
    noisy = held_out_curve(p, None)
    clean = held_out_curve(p, (X[-128:], Y[-128:]))
    window = slice(0, 20)  # before the blow-up
    assert batch_noise(clean.losses[window]) < 0.2 * batch_noise(noisy.losses[window])


def test_policy_measure_is_validated() -> None:
    with pytest.raises(ValueError, match="measure"):
        RangeTestOnPlateauLR(base_lr=1e-3, steps_per_epoch=10, measure="val")
    assert RangeTestOnPlateauLR(base_lr=1e-3, steps_per_epoch=10).measure == "held_out"
