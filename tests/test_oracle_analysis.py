"""benchmarks/oracle.py's grid and its multi-stream oracle, on synthetic loss curves.

The expensive part of the oracle (two epochs of training per grid point) is replaced by a
parabola in log LR, so the grid's decisions and the pooled oracle are checked exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _oracle_setups
import oracle
from _oracle_analysis import (
    FALLBACKS,
    HORIZONS,
    POLICIES,
    against_pooled,
    calibrated,
    declined,
    fallback_scores,
    follows_oracle,
    lr_key,
    oracle_noise,
    oracle_offset,
    policy_scores,
    policy_settings,
    pooled_oracle,
    stream_count,
)


def parabola(vertex: float) -> dict[str, dict]:
    """Grid points every 0.125 decade over [-1.5, +0.5]; the loss is smallest at ``vertex``."""
    points = {}
    for i in range(-12, 5):
        x = i * 0.125
        loss = 1.0 + (x - vertex) ** 2
        points[lr_key(x)] = {"lr": 10**x, "half": [loss, 0.5], "2ep": [loss, 0.5]}
    return points


def entry(*vertices: float) -> dict:
    return {"oracle": {str(k): parabola(v) for k, v in enumerate(vertices)}}


class Grid:
    """A stand-in for two epochs of training: the loss is a parabola around -0.6 decade."""

    def __init__(self) -> None:
        self.trained: list[float] = []

    def __call__(self, offset: float) -> dict:
        self.trained.append(offset)
        loss = 1.0 + (offset + 0.6) ** 2
        return {"lr": 10**offset, "half": [loss, 0.5], "2ep": [loss, 0.5]}


def _meta(opt: str, seed: int, epoch: int, val_loss: float) -> dict:
    return {"optimizer": opt, "seed": seed, "epoch": epoch, "running_lr": 1e-3,
            "val_loss": val_loss, "val_acc": 0.5}  # fmt: skip


@pytest.mark.parametrize(
    ("cached", "now", "stale"),
    [
        # the same states: nothing stale
        ({"a-e2": ("adam", 0, 2, 1.5)}, {"a-e2": ("adam", 0, 2, 1.5)}, []),
        # float noise in the recorded loss is the same state
        ({"a-e2": ("adam", 0, 2, 1.5)}, {"a-e2": ("adam", 0, 2, 1.5000001)}, []),
        # retrained on another CPU: another val loss
        ({"a-e2": ("adam", 0, 2, 1.5)}, {"a-e2": ("adam", 0, 2, 1.49)}, ["a-e2"]),
        # a plateau setup whose detector now fires at another epoch: the cached state is stale
        ({"a-e22": ("adam", 0, 22, 1.1)}, {"a-e25": ("adam", 0, 25, 1.0)}, ["a-e22"]),
        # another shard's run, not trained now: not judged
        ({"s-e3": ("sgd", 1, 3, 1.7)}, {"a-e2": ("adam", 0, 2, 1.5)}, []),
        # nothing cached yet
        ({}, {"a-e2": ("adam", 0, 2, 1.5)}, []),
    ],
)
def test_a_cache_from_another_machine_is_not_extended(
    cached: dict, now: dict, stale: list[str]
) -> None:
    got = oracle.stale_states(
        {k: _meta(*v) for k, v in cached.items()}, {k: _meta(*v) for k, v in now.items()}
    )
    assert got == stale


def test_a_resumed_grid_trains_nothing_new() -> None:
    train, points = Grid(), dict[str, dict]()
    oracle.run_grid(points, train, _oracle_setups.COARSE, _oracle_setups.REFINE, lambda: None)
    first = list(train.trained)
    assert len(first) > len(_oracle_setups.COARSE)  # refined around the best
    assert min(abs(x + 0.6) for x in first) <= 0.0625  # to 0.125 decade
    # the LR the policy applied, measured after the grid and better than every grid point
    points[lr_key(-0.474)] = {"lr": 10**-0.474, "half": [0.5, 0.6], "2ep": [0.5, 0.6]}
    oracle.run_grid(points, train, _oracle_setups.COARSE, _oracle_setups.REFINE, lambda: None)
    assert train.trained == first


def test_an_interrupted_grid_resumes_to_the_same_points() -> None:
    whole, points = Grid(), dict[str, dict]()
    oracle.run_grid(points, whole, _oracle_setups.COARSE, _oracle_setups.REFINE, lambda: None)
    for cut in range(1, len(whole.trained)):
        partial = {lr_key(x): points[lr_key(x)] for x in whole.trained[:cut]}
        rest = Grid()
        oracle.run_grid(partial, rest, _oracle_setups.COARSE, _oracle_setups.REFINE, lambda: None)
        assert whole.trained[:cut] + rest.trained == whole.trained


@pytest.mark.parametrize(
    ("vertices", "streams", "expected"),
    [
        ((-0.5, -0.3, -0.1), 3, -0.3),
        ((-0.5, -0.3, -0.1), 2, -0.4),  # the first two streams
        ((-0.5, -0.3, -0.1), 4, None),  # a stream missing: no pooled oracle
        ((-0.5,), 1, -0.5),
    ],
)
def test_the_pooled_oracle_is_the_mean_over_streams(
    vertices: tuple[float, ...], streams: int, expected: float | None
) -> None:
    for h in HORIZONS:
        got = pooled_oracle(entry(*vertices), h, streams)
        assert got == pytest.approx(expected, abs=1e-9) if expected is not None else got is None


def test_the_oracle_fits_the_vertex_between_grid_points() -> None:
    assert oracle_offset(parabola(-0.33), "2ep") == pytest.approx(-0.33, abs=1e-9)


def test_the_oracle_noise_counts_every_pair_of_streams() -> None:
    doc = {"states": {"a": entry(-0.5, -0.3, -0.1), "b": entry(-0.2), "c": entry(0.0, 0.4)}}
    assert stream_count(doc) == 3
    noise = oracle_noise(doc)["2ep"]
    assert noise["states"] == 2  # "b" has one stream only
    assert noise["pairs"] == 4  # a: 3 pairs, c: 1
    assert noise["lr_median_abs_decades"] == pytest.approx(0.3)  # 0.2, 0.4, 0.2, 0.4
    # one stream's sd: a has variance 0.04, c has 0.08
    assert noise["lr_sd_one_stream_decades"] == pytest.approx((0.06) ** 0.5)


def test_picks_are_scored_against_the_pooled_oracle() -> None:
    doc = {"states": {"a": entry(-0.5, -0.3, -0.1), "b": entry(-0.2)}}
    rows = [
        {
            "state": sid,
            "running_lr": 1e-3,
            "pick": 1e-3 * 10**-0.3,
            "applied": 1e-3 * 10**-0.3,
            "oracle": {h: -0.5 for h in HORIZONS},
        }
        for sid in ("a", "b")
    ]
    (row,) = against_pooled(rows, doc, 3)  # "b" lacks two streams
    assert row["state"] == "a"
    assert row["err"]["2ep"] == pytest.approx(0.0, abs=1e-9)
    assert "err" not in rows[0]  # the input rows are not changed


@pytest.mark.parametrize(
    ("picks", "expected"),
    [
        ((-0.9, -0.6, -0.3, 0.0), 1.0),  # moves with the oracle
        ((0.0, -0.3, -0.6, -0.9), -1.0),  # against it
        ((-0.5, -0.5, -0.5, -0.5), None),  # a fixed cut does not move at all
    ],
)
def test_whether_the_pick_follows_the_oracle(
    picks: tuple[float, ...], expected: float | None
) -> None:
    rows = [
        {"running_lr": 1e-3, "pick": 1e-3 * 10**p, "oracle": {"2ep": o}}
        for p, o in zip(picks, (-1.0, -0.7, -0.4, -0.1), strict=True)
    ]
    got = follows_oracle(rows, "2ep")
    assert got is not None
    assert got["spearman"] == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("setup", "run", "expected"),
    [
        (_oracle_setups.FULL, ("adam", 1e-3, 0, 5), "adam-s0-e5"),  # the cached curves' names
        (_oracle_setups.FULL, ("sgd", 0.02, 3, 14), "sgd-s3-e14"),
        (
            _oracle_setups.MISSET,
            ("adam", 1e-4, 1, 3),
            "adam0.0001-s1-e3",
        ),  # two Adam LRs: named apart
        (_oracle_setups.MISSET, ("adam", 1e-2, 1, 3), "adam0.01-s1-e3"),
    ],
)
def test_state_names_stay_apart(
    setup: _oracle_setups.Setup, run: tuple[str, float, int, int], expected: str
) -> None:
    assert setup.state_id(*run) == expected


@pytest.mark.parametrize(
    ("setup", "states"),
    [
        (_oracle_setups.FULL, 24),
        (_oracle_setups.FULL_TEST3, 12),
        (_oracle_setups.FULL_8K, 12),
        (_oracle_setups.FULL_WD, 12),
    ],
    ids=lambda v: v.name if isinstance(v, _oracle_setups.Setup) else str(v),
)
def test_every_committed_cache_matches_its_setups_key(
    setup: _oracle_setups.Setup, states: int
) -> None:
    """The key carries weight decay only when set: curves cached before it existed still load,
    and a setup with weight decay never picks up the curves of one without."""
    curves = oracle.load_curves(oracle.C.RESULTS_DIR / f"{setup.name}_curves", setup)["states"]
    assert len(curves) == states
    assert ("weight_decay" in setup.key()) == (setup.weight_decay > 0)
    assert "model" not in setup.key()


def test_another_models_setup_keys_its_curves_apart() -> None:
    """ResNet-8's states never load seed_cnn curves cached under the same population."""
    same_population = dataclasses.replace(_oracle_setups.FULL_RESNET8, model="seed_cnn")
    assert _oracle_setups.FULL_RESNET8.key() == {**same_population.key(), "model": "resnet8"}


@pytest.mark.parametrize(
    ("setup", "weight_decay", "model"),
    [
        (_oracle_setups.FULL, 0.0, "SeedCNN"),
        (_oracle_setups.FULL_WD, 5e-4, "SeedCNN"),
        (_oracle_setups.FULL_RESNET8, 0.0, "CifarResNet"),
    ],
)
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_trial_trains_with_the_setups_weight_decay_and_model(
    setup: _oracle_setups.Setup, weight_decay: float, model: str, optimizer: str
) -> None:
    import torch

    from trainables.data import DataSplits
    from trainables.device import select_device

    x, y = torch.zeros(50, 3, 32, 32, dtype=torch.uint8), torch.zeros(50, dtype=torch.int64)
    trial = oracle.make_trial(
        setup,
        DataSplits(x, y, x, y, x, y),
        select_device("cpu", cpus_assigned=1),
        optimizer,
        0.01,
        0,
    )
    assert {g["weight_decay"] for g in trial.optimizer.param_groups} == {weight_decay}
    assert type(trial.model).__name__ == model


def test_a_fold_with_nothing_to_calibrate_on_gets_no_correction() -> None:
    doc = {"states": {f"s{seed}": entry(-0.5) for seed in (0, 1, 2, 3)}}

    def row(seed: int, pick: float | None) -> dict:
        lr = None if pick is None else 1e-3 * 10**pick
        err = None if pick is None else pick + 0.5
        return {
            "state": f"s{seed}",
            "seed": seed,
            "running_lr": 1e-3,
            "pick": lr,
            "applied": lr or 1e-4,
            "diverge_lr": None,
            "oracle": {h: -0.5 for h in HORIZONS},
            "err": {h: err for h in HORIZONS},
        }

    # seeds 1 and 3 picked 0.2 decade too high; seeds 0 and 2 have no pick
    rows = [row(0, None), row(1, -0.3), row(2, None), row(3, -0.3)]
    out, constants = calibrated(rows, doc)
    assert constants["0,2"] == pytest.approx(0.2)  # learnt on seeds 1 and 3
    assert constants["1,3"] is None  # seeds 0 and 2 picked nothing: no constant, not 0
    assert sorted(r["seed"] for r in out) == [0, 2]


def _declined(delta_2ep: float, picked: bool = False) -> dict:
    return {
        "pick": 1e-3 if picked else None,
        "delta_vs_running": {"half": 0.0, "2ep": delta_2ep},
        "applied_err": {"half": 0.5, "2ep": -0.5},
    }


def test_fallbacks_are_scored_on_the_declined_states_only() -> None:
    noise = {"half": 0.03, "2ep": 0.04}
    deltas = {  # fallback -> the 2-epoch deltas of its three declined states
        "cut": [0.10, -0.05, 0.01],
        "keep": [0.0, 0.0, 0.0],
        "below_divergence": [0.05, -0.30, 0.02],
        "keep_or_raise": [0.0, -0.30, 0.0],
    }
    rows = {
        name: [_declined(d) for d in deltas[fb]] + [_declined(-1.0, picked=True)]
        for name, fb in FALLBACKS.items()
    }
    scores = fallback_scores(rows, noise)
    assert set(scores) == set(deltas)
    for fb, ds in deltas.items():
        two = scores[fb]["2ep"]
        assert scores[fb]["states"] == 3  # the state with a pick is not a fallback's
        assert two["mean_delta_vs_running"] == pytest.approx(sum(ds) / 3)
        assert two["worse"] == sum(d > 0.04 for d in ds)
        assert two["better"] == sum(d < -0.04 for d in ds)
        assert two["applied_median_abs_decades"] == pytest.approx(0.5)


def test_policies_are_scored_on_every_state_and_a_diverged_run_counts_as_worse() -> None:
    noise = {"half": 0.03, "2ep": 0.04}
    deltas = [0.10, -0.05, math.inf]  # one applied LR diverged: worse, and the mean is inf
    rows = {
        name: [_declined(d) for d in deltas] + [_declined(-1.0, picked=True)] for name in POLICIES
    }
    scores = policy_scores(rows, noise)
    assert set(scores) == set(POLICIES)
    for entry in scores.values():
        two = entry["2ep"]
        assert entry["states"] == 4  # a state with a pick is scored too
        assert two["worse"] == 2 and two["better"] == 2
        assert two["mean_delta_vs_running"] == math.inf


def _answer(
    state: str, pick: float | None, applied_err: float | None, descent: bool = False
) -> dict:
    return {
        "state": state,
        "pick": pick,
        "real_descent": descent,
        "applied_err": {h: applied_err for h in HORIZONS},
    }


@pytest.mark.parametrize(
    ("ours", "theirs", "declined_", "closer", "farther", "answered"),
    [
        # ours declines s0 and s1 (fallback 0.5 off); they answer both, 0.8 and 0.2 off
        ([("s0", None, 0.5), ("s1", None, -0.5), ("s2", 1e-3, 0.0)],
         [("s0", 1e-3, 0.8), ("s1", 1e-3, 0.2), ("s2", 1e-3, 0.9)], 2, 1, 1, 2),
        # they decline s1 too (and keep the LR, 0.5 off: level); s2 is ours' pick, not counted
        ([("s0", None, 0.3), ("s1", None, 0.5), ("s2", 1e-3, 0.0)],
         [("s0", 1e-3, -0.4), ("s1", None, -0.5), ("s2", 1e-3, 5.0)], 2, 1, 0, 1),
        # nothing declined: nothing compared
        ([("s0", 1e-3, 0.1)], [("s0", 1e-3, 0.9)], 0, 0, 0, 0),
    ],
)  # fmt: skip
def test_a_declined_curve_compares_the_fallback_with_their_answer(
    ours: list, theirs: list, declined_: int, closer: int, farther: int, answered: int
) -> None:
    rows = {"ours": [_answer(*r) for r in ours], "theirs": [_answer(*r) for r in reversed(theirs)]}
    got = declined(rows, ["theirs"], ours="ours")
    assert (got["states"], got["declined"], got["declined_real_descents"]) == (
        len(ours),
        declined_,
        0,
    )
    assert got["theirs"]["answered"] == answered
    for h in HORIZONS:
        assert got["theirs"][h]["states"] == declined_
        assert got["theirs"][h]["ours_closer_in"] == closer
        assert got["theirs"][h]["ours_farther_in"] == farther


def test_a_declined_real_descent_is_counted_apart() -> None:
    rows = {"ours": [_answer("s0", None, 0.1, descent=True), _answer("s1", None, 0.1)]}
    rows["theirs"] = [_answer("s0", 1e-3, 0.2), _answer("s1", 1e-3, 0.2)]
    got = declined(rows, ["theirs"], ours="ours")
    assert got["declined_real_descents"] == 1
    assert got["theirs"]["2ep"]["ours_median_abs"] == pytest.approx(0.1)
    assert got["theirs"]["2ep"]["theirs_median_abs"] == pytest.approx(0.2)


def test_the_pooled_script_compares_declines_on_every_population(tmp_path: Path) -> None:
    """On the committed curves: every population is read, the well-set one has its 60 states,
    and no declined curve of the default had a real descent on the well-set states."""
    import oracle_pooled

    out = tmp_path / "pooled.json"
    proc = subprocess.run(
        [sys.executable, str(Path(oracle_pooled.__file__)), "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert set(doc["declined"]) == set(oracle_pooled.POPULATIONS)
    well = doc["declined"]["well-set (seed_cnn, 4k)"]
    assert well["states"] == 60 and well["declined_real_descents"] == 0
    assert set(oracle_pooled.ANSWER_EVERY_CURVE) <= set(well)


def test_every_scored_policy_setting_is_trained() -> None:
    settings = policy_settings()
    assert [s["fallback"] for s in settings[: len(FALLBACKS)]] == list(FALLBACKS.values())
    assert all(p in settings for p in POLICIES.values())


def _rows(picks: tuple[float | None, ...], oracles: tuple[float, ...]) -> dict[str, list[dict]]:
    """pick_offsets' input: the same rows under every rule it reads."""
    import pick_offsets

    rows = [
        {
            "optimizer": "adam",
            "running_lr": 1e-3,
            "pick": None if p is None else 1e-3 * 10**p,
            "oracle": {h: o for h in HORIZONS},
        }
        for p, o in zip(picks, oracles, strict=True)
    ]
    return {name: rows for name in pick_offsets.RULES}


@pytest.mark.parametrize(
    ("picks", "bias", "rho", "spread", "cut_same"),
    [
        # always 0.2 decade above the oracle: all bias, nothing left once it is taken out
        ((-0.8, -0.6, -0.4, -0.2), 0.2, 1.0, 0.0, 0.2),
        # a fixed cut: no rank order, and what is left is the oracle's own spread
        ((-0.5, -0.5, -0.5, -0.5), 0.2, None, 0.2, 0.2),
        # against the oracle: what is left is larger than the fixed cut's
        ((-0.2, -0.4, -0.6, -0.8), 0.2, -1.0, 0.4, 0.2),
        # declined curves count in no figure but the count of picks, and the fixed cut it is
        # compared with is scored on the two states it answered
        ((-0.8, -0.6, None, None), 0.2, None, 0.0, 0.1),
    ],
)
def test_pick_offsets_split_level_from_state_to_state_moves(
    picks: tuple[float | None, ...],
    bias: float,
    rho: float | None,
    spread: float,
    cut_same: float,
) -> None:
    import pick_offsets

    got = pick_offsets.group_summary(_rows(picks, (-1.0, -0.8, -0.6, -0.4)))
    assert got["n"] == 4
    assert got["oracle"]["2ep"]["median_offset"] == pytest.approx(-0.7)
    assert got["oracle"]["2ep"]["fixed_cut_spread"] == pytest.approx(0.2)
    rule = got["rules"]["ours_midpoint"]
    assert rule["picks"] == sum(p is not None for p in picks)
    assert rule["2ep"]["bias"] == pytest.approx(bias)
    assert rule["2ep"]["spearman"] == (None if rho is None else pytest.approx(rho))
    assert rule["2ep"]["spread_without_bias"] == pytest.approx(spread, abs=1e-9)
    assert rule["2ep"]["fixed_cut_spread_same_states"] == pytest.approx(cut_same)


def test_pick_offsets_reads_every_population_from_the_committed_caches() -> None:
    import pick_offsets

    got = pick_offsets.summarise(pick_offsets.population_rows(oracle.C.RESULTS_DIR))
    assert [g["all"]["n"] for g in got.values()] == [60, 12, 12, 12]
    for groups in got.values():  # the optimizers split each population
        assert groups["adam"]["n"] + groups["sgd"]["n"] == groups["all"]["n"]


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("patience", "max_epochs", "kept"),
    [
        # an LR that learns nothing: epoch 2 is no better than epoch 1, and patience 0 fires
        (0, 3, 2),
        # patience 1 needs two bad epochs: 2 and 3
        (1, 4, 3),
        # a detector that never fires by the last epoch keeps no state
        (5, 2, None),
    ],
)
def test_plateau_setup_keeps_the_state_where_the_detector_first_fires(
    real_cifar_dir: Path, tmp_path: Path, patience: int, max_epochs: int, kept: int | None
) -> None:
    import torch

    from trainables.device import select_device

    setup_ = dataclasses.replace(
        _oracle_setups.QUICK, runs=(("sgd", 1e-9, (max_epochs,)),), plateau_patience=patience
    )
    assert setup_.key()["plateau_patience"] == patience
    torch.set_num_threads(1)
    device = select_device("cpu", cpus_assigned=1)
    splits = oracle.load_setup_splits(setup_, str(real_cifar_dir))
    info = oracle.make_states(setup_, splits, device, tmp_path, (0, 1))
    want = [] if kept is None else [f"sgd-s0-e{kept}"]
    assert sorted(info) == want
    assert sorted(p.stem for p in tmp_path.glob("*.pt")) == want
    if kept is not None:
        assert info[want[0]]["epoch"] == kept
        stamp = (tmp_path / f"{want[0]}.pt").stat().st_mtime_ns
        # a second call reads the cache: nothing is trained or written again
        assert oracle.make_states(setup_, splits, device, tmp_path, (0, 1)) == info
        assert (tmp_path / f"{want[0]}.pt").stat().st_mtime_ns == stamp
