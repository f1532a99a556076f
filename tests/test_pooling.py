"""Which sweeps may be pooled into one comparison: sweep.pooling.pooling_problem, as a table."""

from __future__ import annotations

import pytest

from sweep.pooling import PooledRun, pooling_problem

SETUP = {"epochs": "12", "lr": "0.001", "model": "seed_cnn", "data.train_subset": "4000"}
RTP = {"policy": "range_test_on_plateau", "policy_params.patience": "3"}
CONSTANT = {"policy": "constant"}


def run(sweep: str, group: str, seed: int, arm: dict[str, str], **setup: str) -> PooledRun:
    params = {**SETUP, **arm, "policy_label": group, "seed": str(seed), **setup}
    return PooledRun(sweep=sweep, group=group, seed=str(seed), params=params)


def two_sweeps(*extra: PooledRun) -> list[PooledRun]:
    """Sweep A ran both arms on seeds 0-1, sweep B on seeds 2-3: poolable."""
    return [
        *(
            run(s, g, seed, arm)
            for s, seeds in (("A", (0, 1)), ("B", (2, 3)))
            for seed in seeds
            for g, arm in (("rtp", RTP), ("constant", CONSTANT))
        ),
        *extra,
    ]


CASES = [
    ("one sweep: nothing to pool", [run("A", "rtp", 0, RTP), run("A", "rtp", 0, RTP)], None),
    ("same setup, other seeds", two_sweeps(), None),
    (
        "an arm only one sweep ran",
        two_sweeps(run("B", "cyclical", 2, {"policy": "cyclical"})),
        None,
    ),
    (
        "where the data was, the device, bookkeeping: may differ",
        [
            run("A", "constant", 0, CONSTANT, **{"data.dir": "/a", "device": "auto"}),
            run("B", "constant", 1, CONSTANT, **{"data.dir": "/b", "device": "cpu"}),
            run("B", "constant", 2, CONSTANT, checkpoint_every="2", lr_trace_points="50"),
        ],
        None,
    ),
    (
        "another epoch count",
        [run("A", "constant", 0, CONSTANT), run("B", "constant", 1, CONSTANT, epochs="30")],
        "the sweeps differ in 'epochs': 'A' ran 12, 'B' ran 30",
    ),
    (
        "a key one sweep does not log",
        [run("A", "constant", 0, CONSTANT), run("B", "constant", 1, CONSTANT, augment="True")],
        "the sweeps differ in 'augment': 'A' ran None, 'B' ran True",
    ),
    (
        "a search space over the same values in both",
        [
            run(s, f"constant [lr={lr}]", seed, CONSTANT, lr=lr)
            for s, seed in (("A", 0), ("B", 1))
            for lr in ("0.001", "0.003")
        ],
        None,
    ),
    (
        "a search space over other values",
        [
            run("A", "constant [lr=0.001]", 0, CONSTANT, lr="0.001"),
            run("A", "constant [lr=0.003]", 0, CONSTANT, lr="0.003"),
            run("B", "constant", 1, CONSTANT, lr="0.001"),
        ],
        "the sweeps differ in 'lr': 'A' ran 0.001/0.003, 'B' ran 0.001",
    ),
    (
        "one arm with other params",
        two_sweeps(run("B", "rtp", 4, {**RTP, "policy_params.patience": "0"})),
        "arm 'rtp' ran with policy_params.patience=3 in 'A' but policy_params.patience=0 in 'B'",
    ),
    (
        "one label, another policy",
        [run("A", "x", 0, CONSTANT), run("B", "x", 1, RTP)],
        "arm 'x' ran with policy=constant in 'A' but policy=range_test_on_plateau in 'B'",
    ),
    (
        "a seed run again",
        two_sweeps(run("B", "constant", 1, CONSTANT)),
        "arm 'constant' ran seed 1 in both 'A' and 'B'",
    ),
]


@pytest.mark.parametrize(("case", "runs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_pooling_problem(case: str, runs: list[PooledRun], expected: str | None) -> None:
    problem = pooling_problem(runs)
    if expected is None:
        assert problem is None, problem
    else:
        assert problem is not None and problem.startswith(expected), problem
        assert "\n" not in problem and "; " in problem  # one line, with the fix
