"""Reading benchmarks/oracle.py's cached curves: the oracle LR per state, every rule's pick, scores.

Pure functions over the cached JSON documents (no training), so a re-analysis costs seconds.
Offsets are in decades from the state's running LR: ``log10(lr / running_lr)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from _reference_rules import REFERENCE_RULES

HORIZONS = ("half", "2ep")
FIT_REACH = 0.3  # decades around the grid's best that the parabola uses
#: The rules scored against each oracle stream too.
STREAM_CHECKED = (
    "ours_midpoint",
    "ours_steepest",
    "torch_lr_finder",
    "fastai_steep",
    "baseline_lr_x0.3",
)
#: The rule the fallback and policy rows (and the state-by-state comparisons) were measured
#: with: the default, except while ``--setup full-test3`` made ``steepest`` the default (until
#: the end-to-end decision of docs/performance.md 6b brought ``midpoint`` back). Every row
#: names its rule, so a row means the same whatever the default is.
MEASURED_RULE = "midpoint"
#: The rule compared state by state with each of these.
DEFAULT_RULE = f"ours_{MEASURED_RULE}"
PAIRED_WITH = (
    "torch_lr_finder",
    "fastai_steep",
    "fastai_minimum",
    "fastai_valley",
    "ours_steepest",
    "baseline_lr_x0.3",
)
BOOTSTRAP = 4000  # resamples of the states for a 95% interval
FOLDS = ((0, 2), (1, 3))  # seeds of the two calibration folds
#: No range test at all: keep the running LR, or cut it by reduce_on_plateau's factor in the specs.
BASELINES = {"baseline_keep_lr": 1.0, "baseline_lr_x0.3": 0.3}
#: The rule ``MEASURED_RULE`` with each no-descent fallback (one of them is its default row's).
FALLBACKS = {
    "fallback_cut": "cut",
    "fallback_keep": "keep",
    "fallback_below_divergence": "below_divergence",
    "fallback_keep_or_raise": "keep_or_raise",
}
#: Whole settings of the range-test policy, spelled out so that a row means the same whatever
#: the defaults are: the rule, the limit on one test's change of the LR, and the fallback.
#: ``policy_steepest_*`` is the policy with the rule ``steepest`` (its applied LR trained too).
#: The ``anchor_*`` rows move the pick ``pull`` decades toward 0.3 x the running LR (what a
#: plateau wants on the well-set states); they are scored by the moved pick.
POLICIES: dict[str, dict[str, Any]] = {
    "policy_unlimited_below_divergence": {
        "rule": MEASURED_RULE,
        "max_change": None,
        "fallback": "below_divergence",
        "anchor": None,
    },
    "policy_x10_below_divergence": {
        "rule": MEASURED_RULE,
        "max_change": 10.0,
        "fallback": "below_divergence",
        "anchor": None,
    },
    "policy_unlimited_keep_or_raise": {
        "rule": MEASURED_RULE,
        "max_change": None,
        "fallback": "keep_or_raise",
        "anchor": None,
    },
    "policy_x10_keep_or_raise": {
        "rule": MEASURED_RULE,
        "max_change": 10.0,
        "fallback": "keep_or_raise",
        "anchor": None,
    },
    "policy_steepest_x10_below_divergence": {
        "rule": "steepest",
        "max_change": 10.0,
        "fallback": "below_divergence",
        "anchor": None,
    },
    "policy_anchor0.3_pull0.25": {
        "rule": MEASURED_RULE,
        "max_change": 10.0,
        "fallback": "below_divergence",
        "anchor": 0.3,
        "pull": 0.25,
    },
    "policy_anchor0.3_pull0.5": {
        "rule": MEASURED_RULE,
        "max_change": 10.0,
        "fallback": "below_divergence",
        "anchor": 0.3,
        "pull": 0.5,
    },
}


def policy_settings() -> list[dict[str, Any]]:
    """The policy settings whose applied LR the oracle run trains (beside the grid)."""
    fallbacks = [{"rule": MEASURED_RULE, "fallback": f} for f in FALLBACKS.values()]
    return fallbacks + list(POLICIES.values())


# -- the oracle grid ---------------------------------------------------------------------------
def lr_key(offset: float) -> str:
    return f"{round(offset, 3) + 0.0:+.3f}"


#: What the oracle grid records per LR and horizon: (validation loss, validation accuracy).
LOSS, ACC = 0, 1
#: A diverged run's validation accuracy (its outputs are NaN: one class, chance on CIFAR-10).
DIVERGED_ACC = 0.1


def _measured(point: dict, horizon: str, which: int = LOSS) -> float | None:
    value = (point.get(horizon) or [None, None])[which]
    return None if value is None else float(value)


def _cost(point: dict, horizon: str, which: int) -> float | None:
    """The measure as a cost, lower is better: the loss, or minus the accuracy."""
    value = _measured(point, horizon, which)
    return None if value is None else (-value if which == ACC else value)


def best_offset(points: dict[str, dict], horizon: str, which: int = LOSS) -> float | None:
    """The grid's best offset: lowest validation loss (``LOSS``) or highest accuracy (``ACC``)."""
    scored = [
        (v, float(k)) for k, p in points.items() if (v := _cost(p, horizon, which)) is not None
    ]
    return min(scored)[1] if scored else None


def oracle_offset(points: dict[str, dict], horizon: str, which: int = LOSS) -> float | None:
    """The vertex of a parabola (in log LR) through the validation losses (or accuracies)
    within FIT_REACH of the grid's best; the grid's best when there is no fit with the best
    inside that opens toward it."""
    best = best_offset(points, horizon, which)
    if best is None:
        return None
    near = sorted(
        (float(k), v)
        for k, p in points.items()
        if (v := _cost(p, horizon, which)) is not None and abs(float(k) - best) <= FIT_REACH + 1e-9
    )
    xs = np.array([x for x, _ in near])
    ys = np.array([y for _, y in near])
    if len(xs) >= 3 and xs.min() < best < xs.max():
        a, b, _ = np.polyfit(xs, ys, 2)
        if a > 0 and xs.min() <= -b / (2 * a) <= xs.max():
            return float(-b / (2 * a))
    return best


def loss_at(
    points: dict[str, dict], horizon: str, offset: float, which: int = LOSS
) -> float | None:
    """Validation loss (or accuracy) at ``offset``: exact on a grid point, else linear in log LR
    between the neighbouring grid points (the nearest end outside the grid); past a diverged
    point the loss is inf and the accuracy ``DIVERGED_ACC``."""
    diverged = DIVERGED_ACC if which == ACC else math.inf
    pts = sorted(
        (float(k), v if (v := _measured(p, horizon, which)) is not None else diverged)
        for k, p in points.items()
    )
    if not pts:
        return None
    if offset <= pts[0][0]:
        return pts[0][1]
    if offset >= pts[-1][0]:
        return pts[-1][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= offset <= x1:
            if not (math.isfinite(y0) and math.isfinite(y1)):
                return y0 if offset == x0 else y1 if offset == x1 else math.inf
            return y0 + (offset - x0) / (x1 - x0) * (y1 - y0)
    return None


# -- the rules on the recorded curves ---------------------------------------------------------
def real_descent(curve: Any) -> bool:
    """A descent no reader would miss: before the diverging part the raw loss falls more than
    1% below the window's start level and more than 5x the descent's noise."""
    if len(curve.raw) < 3:
        return False
    level = float(np.median(curve.raw[:3]))
    drop = level - float(np.min(curve.raw))
    return drop > 0.01 * abs(level) and drop > 5 * curve.noise


def our_pick(
    curve_doc: dict, rule: str | None, running_lr: float, settings: dict[str, Any] | None = None
) -> tuple[float | None, float]:
    """(raw pick, applied LR) of our ``rule`` (None: the default) and other policy ``settings``
    (None: the defaults) through the policy's own decide()."""
    from trainables.lr import RangeTestOnPlateauLR

    kwargs = {**(settings or {}), **({} if rule is None else {"rule": rule})}
    policy = RangeTestOnPlateauLR(base_lr=running_lr, steps_per_epoch=100, **kwargs)
    decision = policy.decide(result_of(curve_doc), running_lr)
    return decision.suggested_lr, decision.new_lr


def result_of(curve_doc: dict) -> Any:
    from trainables.lr import RangeTestResult

    losses = tuple(math.nan if v is None else float(v) for v in curve_doc["losses"])
    return RangeTestResult(tuple(curve_doc["lrs"]), losses, curve_doc["stop_reason"], 0, 0.0)


def rule_names() -> list[str]:
    from trainables.lr import SUGGESTION_RULES

    return (
        [f"ours_{r}" for r in SUGGESTION_RULES]
        + list(FALLBACKS)
        + list(POLICIES)
        + list(REFERENCE_RULES)
        + list(BASELINES)
    )


def state_rows(doc: dict, probe: str) -> dict[str, list[dict]]:
    """For every rule, one row per state: pick, applied LR, curve facts, errors, loss deltas."""
    from trainables.lr import analyse_curve
    from trainables.lr.range_test_policy import pull_toward

    rows: dict[str, list[dict]] = {name: [] for name in rule_names()}
    for sid, entry in sorted(doc["states"].items()):
        curve_doc = entry["range_tests"].get(probe)
        points = entry["oracle"].get("0")
        if curve_doc is None or not points:
            continue
        running = entry["running_lr"]
        result = result_of(curve_doc)
        curve = analyse_curve(result.lrs, result.losses)
        facts = {
            "state": sid,
            "optimizer": entry["optimizer"],
            "seed": entry["seed"],
            "epoch": entry["epoch"],
            "running_lr": running,
            "oracle": {h: oracle_offset(points, h) for h in HORIZONS},
            "smoothed_min_lr": float(curve.lrs[curve.minimum]) if len(curve.lrs) else None,
            "diverge_lr": curve.diverge_lr,
            "reason": curve.reason,
            "real_descent": real_descent(curve),
        }
        for name in rows:
            if name.startswith("ours_"):
                pick, applied = our_pick(curve_doc, name[len("ours_") :], running)
            elif name in FALLBACKS:
                settings = {"rule": MEASURED_RULE, "fallback": FALLBACKS[name]}
                pick, applied = our_pick(curve_doc, None, running, settings)
            elif name in POLICIES:
                pick, applied = our_pick(curve_doc, None, running, POLICIES[name])
                anchor = POLICIES[name].get("anchor")
                if pick is not None and anchor is not None:  # scored by the moved pick
                    pick = pull_toward(pick, running * anchor, POLICIES[name]["pull"])
            elif name in BASELINES:
                pick = applied = running * BASELINES[name]
            else:
                pick = REFERENCE_RULES[name](
                    list(result.lrs), list(result.losses), curve_doc["num_steps"]
                )
                applied = pick if pick is not None else running
            rows[name].append(with_errors({**facts, "pick": pick, "applied": applied}, points))
    return rows


def with_errors(row: dict, points: dict[str, dict]) -> dict:
    """Add the signed errors (decades) of pick and applied LR, and the loss deltas vs running."""
    running = row["running_lr"]
    row["err"], row["applied_err"], row["delta_vs_running"] = {}, {}, {}
    for h in HORIZONS:
        o = row["oracle"][h]
        pick = row["pick"]
        row["err"][h] = None if pick is None or o is None else math.log10(pick / running) - o
        applied = math.log10(row["applied"] / running)
        row["applied_err"][h] = None if o is None else applied - o
        at_applied, at_running = loss_at(points, h, applied), loss_at(points, h, 0.0)
        row["delta_vs_running"][h] = (
            None if at_applied is None or at_running is None else at_applied - at_running
        )
    return row


# -- scores ------------------------------------------------------------------------------------
def quantile(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.array(values), q)) if len(values) else None


def score(rows: list[dict], noise: dict[str, float]) -> dict:
    """One rule over the states: errors per horizon, no-suggestion and worse-than-running."""
    picks = [r for r in rows if r["pick"] is not None]
    descents = [r for r in rows if r["real_descent"]]
    out: dict[str, Any] = {
        "n": len(rows),
        "no_suggestion": 1 - len(picks) / len(rows) if rows else None,
        "real_descents": len(descents),
        "no_suggestion_of_real_descents": (
            sum(r["pick"] is None for r in descents) / len(descents) if descents else None
        ),
        "raw_pick_past_smoothed_min": sum(
            1
            for r in picks
            if r["smoothed_min_lr"] is not None and r["pick"] > r["smoothed_min_lr"] * (1 + 1e-9)
        ),
        "applied_in_diverging_part": sum(
            1 for r in rows if r["diverge_lr"] is not None and r["applied"] >= r["diverge_lr"]
        ),
    }
    for h in HORIZONS:
        errs = [r["err"][h] for r in picks if r["err"][h] is not None]
        applied = [r["applied_err"][h] for r in rows if r["applied_err"][h] is not None]
        deltas = [r["delta_vs_running"][h] for r in rows if r["delta_vs_running"][h] is not None]
        out[h] = {
            "median_abs_decades": quantile([abs(e) for e in errs], 0.5),
            "median_abs_ci95": bootstrap_ci([abs(e) for e in errs]),
            "follows_oracle": follows_oracle(picks, h),
            "p90_abs_decades": quantile([abs(e) for e in errs], 0.9),
            "median_signed_decades": quantile(errs, 0.5),
            "applied_median_abs_decades": quantile([abs(e) for e in applied], 0.5),
            "applied_median_signed_decades": quantile(applied, 0.5),
            "worse_than_running": (
                sum(d > noise[h] for d in deltas) / len(deltas) if deltas else None
            ),
        }
    return out


def fallback_scores(rows: dict[str, list[dict]], noise: dict[str, float]) -> dict[str, dict]:
    """Each no-descent fallback of the default rule on the states where it gave no suggestion:
    the validation loss change against keeping the running LR (mean, median; more than the
    oracle's noise worse / better), and the applied LR's median |error| from the oracle."""
    return {
        fallback: delta_scores([r for r in rows[name] if r["pick"] is None], noise)
        for name, fallback in FALLBACKS.items()
    }


def policy_scores(rows: dict[str, list[dict]], noise: dict[str, float]) -> dict[str, dict]:
    """Each of the POLICIES on every state, scored as fallback_scores scores a fallback."""
    return {name: delta_scores(rows[name], noise) for name in POLICIES}


def delta_scores(rows: list[dict], noise: dict[str, float]) -> dict[str, Any]:
    """The applied LRs of ``rows``: validation loss change against keeping the running LR
    (mean, median; more than the oracle's noise worse / better; a diverged run counts as
    worse and its mean is inf), and their median |error| from the oracle."""
    entry: dict[str, Any] = {"states": len(rows)}
    for h in HORIZONS:
        deltas = [d for r in rows if (d := r["delta_vs_running"][h]) is not None]
        errs = [abs(e) for r in rows if (e := r["applied_err"][h]) is not None]
        entry[h] = {
            "mean_delta_vs_running": float(np.mean(deltas)) if deltas else None,
            "median_delta_vs_running": quantile(deltas, 0.5),
            "worse": sum(d > noise[h] for d in deltas),
            "better": sum(d < -noise[h] for d in deltas),
            "applied_median_abs_decades": quantile(errs, 0.5),
        }
    return entry


def follows_oracle(rows: list[dict], horizon: str) -> dict | None:
    """Does the pick move with the oracle from state to state? Spearman's rank correlation of
    pick and oracle (offsets from the running LR), its p-value, and both spreads (sd, decades)."""
    from scipy.stats import spearmanr

    pairs = [
        (math.log10(r["pick"] / r["running_lr"]), r["oracle"][horizon])
        for r in rows
        if r["pick"] is not None and r["oracle"][horizon] is not None
    ]
    if len(pairs) < 3:
        return None
    picks, oracles = (np.array(v) for v in zip(*pairs, strict=True))
    if np.ptp(picks) == 0 or np.ptp(oracles) == 0:
        return {"spearman": None, "p_value": None, "pick_sd": float(np.std(picks, ddof=1))}
    rho, p_value = spearmanr(picks, oracles)
    return {
        "spearman": float(rho),
        "p_value": float(p_value),
        "pick_sd": float(np.std(picks, ddof=1)),
        "oracle_sd": float(np.std(oracles, ddof=1)),
    }


def _resamples(n: int) -> np.ndarray:
    """BOOTSTRAP rows of n state indices drawn with replacement (fixed seed: reproducible)."""
    return np.random.default_rng(0).integers(0, n, size=(BOOTSTRAP, n))


def bootstrap_ci(values: Sequence[float]) -> list[float] | None:
    """95% percentile-bootstrap interval of the median, the states resampled (fixed seed)."""
    if len(values) < 2:
        return None
    arr = np.array(values)
    meds = np.median(arr[_resamples(len(arr))], axis=1)
    return [float(np.quantile(meds, 0.025)), float(np.quantile(meds, 0.975))]


def paired(rows_a: list[dict], rows_b: list[dict]) -> dict[str, dict]:
    """Rule a against rule b, state by state (the states where both picked): the difference
    of their median |error|, its 95% bootstrap interval (states resampled together), and in
    how many states a is closer to the oracle. Negative: a is closer."""
    by_state = {r["state"]: r for r in rows_b}
    out = {}
    for h in HORIZONS:
        pairs = [
            (abs(a["err"][h]), abs(b["err"][h]))
            for a in rows_a
            if (b := by_state.get(a["state"])) is not None
            and a["err"][h] is not None
            and b["err"][h] is not None
        ]
        if len(pairs) < 2:
            out[h] = {"states": len(pairs)}
            continue
        ea, eb = (np.array(v) for v in zip(*pairs, strict=True))
        idx = _resamples(len(pairs))
        diffs = np.median(ea[idx], axis=1) - np.median(eb[idx], axis=1)
        out[h] = {
            "states": len(pairs),
            "median_abs_difference": float(np.median(ea) - np.median(eb)),
            "ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))],
            "closer_in": int(np.sum(ea < eb)),
            "farther_in": int(np.sum(ea > eb)),
        }
    return out


def declined(rows: dict[str, list[dict]], others: Sequence[str], ours: str = DEFAULT_RULE) -> dict:
    """What a "no suggestion" costs: on the curves ``ours`` declines (the policy's fallback is
    applied), per horizon, the median |error| of ours' applied LR and of each other rule's
    (its pick, or the running LR where it declines too), and in how many of those states ours
    is closer, farther, level. A declined curve with a real descent is counted apart."""
    mine = [r for r in rows[ours] if r["pick"] is None]
    out: dict[str, Any] = {
        "states": len(rows[ours]),
        "declined": len(mine),
        "declined_real_descents": sum(bool(r["real_descent"]) for r in mine),
    }
    for name in others:
        by_state = {r["state"]: r for r in rows[name]}
        theirs = [by_state[r["state"]] for r in mine]
        entry: dict[str, Any] = {"answered": sum(t["pick"] is not None for t in theirs)}
        for h in HORIZONS:
            pairs = [
                (abs(a["applied_err"][h]), abs(b["applied_err"][h]))
                for a, b in zip(mine, theirs, strict=True)
                if a["applied_err"][h] is not None and b["applied_err"][h] is not None
            ]
            ea, eb = [p[0] for p in pairs], [p[1] for p in pairs]
            entry[h] = {
                "states": len(pairs),
                "ours_median_abs": quantile(ea, 0.5),
                "theirs_median_abs": quantile(eb, 0.5),
                "ours_closer_in": sum(a < b for a, b in pairs),
                "ours_farther_in": sum(a > b for a, b in pairs),
            }
        out[name] = entry
    return out


def stream_count(doc: dict) -> int:
    """The most data streams any state's oracle has (1 + its independent repeats)."""
    return max((len(e["oracle"]) for e in doc["states"].values()), default=0)


def stream_oracles(entry: dict, horizon: str, which: int = LOSS) -> list[float | None]:
    """The oracle LR (offset) of each of the state's data streams, stream 0 first: by
    validation loss, or by accuracy (``ACC``)."""
    streams = sorted(entry["oracle"], key=int)
    return [
        oracle_offset(entry["oracle"][s], horizon, which) if entry["oracle"][s] else None
        for s in streams
    ]


def pooled_oracle(entry: dict, horizon: str, streams: int) -> float | None:
    """The mean oracle LR (offset) over ``streams`` data streams; None unless the state has an
    oracle on every one of them. Each stream's own noise shrinks by sqrt(streams)."""
    found = [o for o in stream_oracles(entry, horizon)[:streams] if o is not None]
    return float(np.mean(found)) if len(found) == streams else None


def oracle_noise(doc: dict) -> dict[str, dict]:
    """The oracle repeated on independent data streams: how far its LR and its losses move
    between two streams (every pair of a state's streams), and the spread of one stream."""
    out = {}
    for h in HORIZONS:
        lr_moves, loss_moves, variances = [], [], []
        for entry in doc["states"].values():
            oracles = [o for o in stream_oracles(entry, h) if o is not None]
            if len(oracles) >= 2:
                variances.append(float(np.var(oracles, ddof=1)))
            lr_moves += [abs(a - b) for a, b in itertools.combinations(oracles, 2)]
            losses = [loss_at(p, h, 0.0) for p in entry["oracle"].values() if p]
            finite = [v for v in losses if v is not None and math.isfinite(v)]
            loss_moves += [abs(a - b) for a, b in itertools.combinations(finite, 2)]
        out[h] = {
            "states": len(variances),
            "pairs": len(lr_moves),
            "lr_median_abs_decades": quantile(lr_moves, 0.5),
            "lr_p90_abs_decades": quantile(lr_moves, 0.9),
            "lr_sd_one_stream_decades": math.sqrt(np.mean(variances)) if variances else None,
            "val_loss_at_running_lr_median_abs_diff": quantile(loss_moves, 0.5),
        }
    return out


def loss_noise_of(noise: dict[str, dict]) -> dict[str, float]:
    """Per horizon, the validation-loss change that counts as noise (``oracle_noise``'s median
    difference between two streams at the running LR): "worse" and "better" lie beyond it."""
    return {h: noise[h]["val_loss_at_running_lr_median_abs_diff"] or 0.0 for h in HORIZONS}


def against_each_stream(rows: list[dict], doc: dict, streams: int) -> dict[str, dict]:
    """Median |error| of one rule's picks over the states with an oracle on all ``streams``
    data streams, against each stream's oracle and against their mean: how much of the error
    is the oracle's own noise."""
    out = {}
    names = [f"stream_{k}" for k in range(streams)] + ["mean"]
    for h in HORIZONS:
        errs: dict[str, list[float]] = {k: [] for k in names}
        for r in rows:
            found = stream_oracles(doc["states"][r["state"]], h)[:streams]
            oracles = [o for o in found if o is not None]
            if r["pick"] is None or len(oracles) < streams:
                continue
            pick = math.log10(r["pick"] / r["running_lr"])
            for k, o in enumerate(oracles):
                errs[f"stream_{k}"].append(abs(pick - o))
            errs["mean"].append(abs(pick - float(np.mean(oracles))))
        out[h] = {"states": len(errs["mean"])} | {
            f"median_abs_decades_vs_{k}": quantile(v, 0.5) for k, v in errs.items()
        }
    return out


def against_pooled(rows: list[dict], doc: dict, streams: int) -> list[dict]:
    """The rows of the states with an oracle on all ``streams`` streams, their errors now
    against the mean oracle of those streams (the loss deltas stay stream 0's measurements)."""
    out = []
    for r in rows:
        entry = doc["states"][r["state"]]
        pooled = {h: pooled_oracle(entry, h, streams) for h in HORIZONS}
        if any(v is None for v in pooled.values()):
            continue
        out.append(with_errors({**r, "oracle": pooled}, entry["oracle"]["0"]))
    return out


def calibrated(
    rows: list[dict], doc: dict, horizon: str = "2ep"
) -> tuple[list[dict], dict[str, float | None]]:
    """The rule's picks scaled by 10**-c, c = the median signed error at ``horizon`` of the
    *other* fold of seeds (out-of-fold: no state helps calibrate its own correction).

    The applied LR follows the policy: the scaled pick, clamped below where the curve diverged
    (x 0.1 of it, as decide() does), the fallback where there was no pick.
    """
    out: list[dict] = []
    constants: dict[str, float | None] = {}
    for fold in FOLDS:
        train = [
            r["err"][horizon]
            for r in rows
            if r["seed"] not in fold and r["err"][horizon] is not None
        ]
        if not train:  # nothing to calibrate on: this fold gets no corrected picks
            constants[",".join(map(str, fold))] = None
            continue
        c = float(np.median(train))
        constants[",".join(map(str, fold))] = c
        for r in rows:
            if r["seed"] not in fold:
                continue
            new = dict(r)
            if r["pick"] is not None:
                new["pick"] = r["pick"] * 10**-c
                applied = new["pick"]
                if r["diverge_lr"] is not None and applied >= r["diverge_lr"]:
                    applied = r["diverge_lr"] * 0.1
                new["applied"] = applied
            points = doc["states"][r["state"]]["oracle"]["0"]
            out.append(with_errors(new, points))
    everything = [r["err"][horizon] for r in rows if r["err"][horizon] is not None]
    constants["all"] = float(np.median(everything)) if everything else None
    return out, constants


def analyse(doc: dict, probe: str, noise: dict[str, dict] | None = None) -> dict:
    """Every score of every rule on one kind of range-test curve; ``noise`` replaces the
    oracle noise measured on ``doc`` (which has none with a single stream)."""
    rows = state_rows(doc, probe)
    noise = noise or oracle_noise(doc)
    loss_noise = loss_noise_of(noise)
    scores = {name: score(r, loss_noise) for name, r in rows.items()}
    corrections = {}
    for name in [n for n in rows if n.startswith("ours_")]:
        cv_rows, constants = calibrated(rows[name], doc)
        corrections[name] = constants
        if any(r["pick"] is not None for r in cv_rows):
            scores[f"{name}_calibrated_cv"] = score(cv_rows, loss_noise)
            rows[f"{name}_calibrated_cv"] = cv_rows
    shift = [
        r["oracle"]["half"] - r["oracle"]["2ep"]
        for r in next(iter(rows.values()), [])
        if r["oracle"]["half"] is not None and r["oracle"]["2ep"] is not None
    ]
    streams = stream_count(doc)
    several = streams > 1  # with one stream, "each stream" and "their mean" are stream 0 again
    by_stream = {
        name: against_each_stream(rows[name], doc, streams)
        for name in STREAM_CHECKED
        if name in rows and several
    }
    pooled = {name: against_pooled(r, doc, streams) for name, r in rows.items()} if several else {}
    versus = {
        against: {
            name: paired(by_rule[DEFAULT_RULE], by_rule[name])
            for name in PAIRED_WITH
            if DEFAULT_RULE in by_rule and name in by_rule
        }
        for against, by_rule in (("stream_0", rows), ("pooled", pooled))
        if by_rule
    }
    return {
        "probe": probe,
        "states": len(next(iter(rows.values()), [])),
        "oracle_noise": noise,
        "streams": streams,
        "against_each_stream": by_stream,
        "pooled_states": len(next(iter(pooled.values()), [])),
        "rules_vs_pooled_oracle": {name: score(r, loss_noise) for name, r in pooled.items() if r},
        "oracle_half_minus_2ep_median_decades": quantile(shift, 0.5),
        "default_versus": versus,
        "no_descent_fallbacks": fallback_scores(rows, loss_noise),
        "policies": policy_scores(rows, loss_noise),
        "corrections_decades": corrections,
        "rules": scores,
        "rows": rows,
        "pooled_rows": pooled,
    }
