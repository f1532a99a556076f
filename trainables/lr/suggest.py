"""Pick a learning rate from a recorded range-test curve: pure functions, numpy only.

The curve is read in four steps (:func:`analyse_curve`), and every rule works on the result:

1. the window: non-finite points dropped, the first ``skip_start`` fraction (and the last
   ``skip_end`` points, none by default) left out;
2. the diverging part cut off, on the raw losses: from the first point whose running median of
   3 rises above the level the window started at by more than ``DIVERGE_NOISE`` noise standard
   deviations and ``DIVERGE_REL`` of the level -- training at those LRs leaves the model worse
   than it was (a single spike is not enough).
   Nothing from there on is smoothed, searched or picked;
3. the rest smoothed with a zero-lag (two-sided) exponential kernel, weights ``beta**|i-j|``:
   unlike a causal EMA it does not shift the curve toward larger LRs, and the blow-up that was
   cut off cannot leak back into the descent. A lone spike above that level, too short to be
   cut, is smoothed as if at the level (it says the loss rose, not by how much): a spike many
   times the descent's depth cannot bury the descent before it. ``beta=None`` fits the kernel
   to the test (:func:`auto_beta`): it reaches ``SMOOTH_DECADES`` of LR whatever the number of
   steps, and further when the curve is noisy for its depth;
4. the descent: the smoothed curve up to its minimum. The noise estimate (:func:`batch_noise`)
   and every rule look at the descent only, never past its minimum.

The rules then pick: ``steepest`` the largest drop of the descent's running minimum per unit of
log LR (a spike and its decay back never count as descent; the drop between two points is
credited to the later one, whose step caused it on the held-out measure), ``midpoint`` halfway
in log LR between the steepest point and the smoothed minimum, ``valley`` fastai's rule on the
descent (its longest decreasing subsequence, 1/3 + 1/6 of the way along it), ``minimum_div10``
the LR at the smoothed minimum / 10.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainables.validation import is_int as _is_int
from trainables.validation import is_real as _is_real

SUGGESTION_RULES = ("steepest", "midpoint", "valley", "minimum_div10")
MIN_POINTS = 5
"""Fewer usable points than this in the window give no suggestion."""
NOISE_POINTS = 10
"""The noise is estimated on at least this many points (when the curve has them)."""
SKIP_START = 0.1
"""Default fraction of the curve left out at its start (the first steps barely train)."""
SKIP_END = 0
"""Default number of points left out at the end: none, the diverging part is cut explicitly."""
SMOOTH_DECADES = 0.3
"""Least reach of the automatic smoothing kernel, in decades of LR (see :func:`auto_beta`)."""
SMOOTH_RESIDUAL = 0.1
"""The automatic kernel leaves noise of at most this fraction of the descent's depth."""
DIVERGE_NOISE = 3.0
DIVERGE_REL = 0.01
"""The diverging part starts at the first point above the start level by more than
DIVERGE_NOISE noise std and DIVERGE_REL of the level."""
BETA_RANGE = (0.0, 1.0)
"""Valid smoothing factors: 0 <= beta < 1 (0: no smoothing)."""


def min_steps_to_suggest(skip_start: float = SKIP_START, skip_end: int = SKIP_END) -> int:
    """The shortest range test (in steps) that can give a suggestion at all."""
    n = MIN_POINTS
    while n - math.ceil(skip_start * n) - skip_end < MIN_POINTS:
        n += 1
    return n


def smooth_losses(losses: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Causal, bias-corrected exponential moving average of ``losses`` (fastai's AvgSmoothLoss).

    ``avg = beta*avg + (1-beta)*x``; ``s_i = avg / (1 - beta**(i+1))``, counted from the first
    point of this curve, so ``s_0`` is the first loss exactly. Non-finite values propagate.
    Used online, while a test runs (its divergence stop); a finished curve is smoothed with
    :func:`smooth_curve`, which has no lag.
    """
    _check_beta(beta)
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    out = np.empty_like(x)
    avg = 0.0
    for i, value in enumerate(x):
        avg = beta * avg + (1.0 - beta) * float(value)
        out[i] = avg / (1.0 - beta ** (i + 1))
    if len(x):
        out[0] = x[0]  # exact, whatever rounding (1-beta)*x/(1-beta) would give
    return out


def smooth_curve(losses: Sequence[float] | np.ndarray, beta: float) -> np.ndarray:
    """Zero-lag smoothing: ``s_i = sum_j beta**|i-j| x_j / sum_j beta**|i-j|`` (finite x only).

    The two-sided version of the EMA: a linear trend passes through unchanged (no shift toward
    later points), and the normalisation debiases the ends. ``beta=0`` returns the curve.
    """
    _check_beta(beta)
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    if beta == 0.0 or len(x) < 2:
        return x.copy()
    idx = np.arange(len(x))
    weights = float(beta) ** np.abs(idx[:, None] - idx[None, :])
    return (weights @ x) / weights.sum(axis=1)


def auto_beta(
    lrs: Sequence[float] | np.ndarray,
    noise: float = 0.0,
    depth: float = 0.0,
    decades: float = SMOOTH_DECADES,
) -> float:
    """The ``beta`` of the zero-lag kernel that fits this test's length and noise.

    The kernel's mean reach is ``h = beta / (1 - beta)`` points. It reaches at least ``decades``
    of LR on this ladder (``h = decades / (decades per point)``: about 0.49 for 20 steps over
    six decades, 0.8 for 80), so a short test is not smoothed more than a long one, and at least
    far enough that the noise left, ``noise / sqrt(2h + 1)``, is at most ``SMOOTH_RESIDUAL`` of
    the descent's ``depth`` (a noisy curve needs more). At most a quarter of the points.
    """
    lr = np.asarray(lrs, dtype=np.float64).reshape(-1)
    lr = lr[np.isfinite(lr) & (lr > 0)]
    if len(lr) < 2:
        return 0.0
    per_point = (math.log10(lr[-1]) - math.log10(lr[0])) / (len(lr) - 1)
    h = decades / per_point if per_point > 0 and decades > 0 else 0.0
    if noise > 0 and depth > 0:
        h = max(h, ((noise / (SMOOTH_RESIDUAL * depth)) ** 2 - 1.0) / 2.0)
    h = min(h, len(lr) / 4.0)
    return round(h / (1.0 + h), 4)


@dataclass(frozen=True)
class CurveAnalysis:
    """What :func:`analyse_curve` read from a curve; ``reason`` is "ok" or why it is unusable.

    ``lrs``/``raw``/``smoothed`` cover the window up to (not including) the diverging part;
    ``minimum`` indexes the smoothed minimum in them, ``diverge_lr`` is the first LR of the
    diverging part (None: the curve never diverged).
    """

    lrs: np.ndarray
    raw: np.ndarray
    smoothed: np.ndarray
    minimum: int
    noise: float
    beta: float
    diverge_lr: float | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    @property
    def descent(self) -> float:
        return float(self.smoothed[0] - self.smoothed[self.minimum]) if len(self.smoothed) else 0.0


def analyse_curve(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    beta: float | None = None,
    skip_start: float = SKIP_START,
    skip_end: int = SKIP_END,
    min_rel_drop: float = 0.005,
    noise_factor: float = 1.0,
) -> CurveAnalysis:
    """Window, diverging part, zero-lag smoothing and descent of a curve (see the module doc)."""
    if beta is not None:
        _check_beta(beta)
    if not _is_real(skip_start) or not 0.0 <= skip_start < 1.0:
        raise ValueError(f"skip_start ({skip_start!r}) must be in [0, 1)")
    if not _is_int(skip_end) or skip_end < 0:
        raise ValueError(f"skip_end ({skip_end!r}) must be an int >= 0")
    if not _is_real(min_rel_drop) or not 0.0 <= min_rel_drop < 1.0:
        raise ValueError(f"min_rel_drop ({min_rel_drop!r}) must be in [0, 1)")
    if not _is_real(noise_factor) or not noise_factor >= 0.0:
        raise ValueError(f"noise_factor ({noise_factor!r}) must be >= 0")
    lr_arr = np.asarray(lrs, dtype=np.float64).reshape(-1)
    loss_arr = np.asarray(losses, dtype=np.float64).reshape(-1)
    if lr_arr.shape != loss_arr.shape:
        raise ValueError(
            f"lrs ({len(lr_arr)} points) and losses ({len(loss_arr)}) differ in length"
        )
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(lr_arr) & np.isfinite(loss_arr) & (lr_arr > 0)
    lr_arr, loss_arr = lr_arr[usable], loss_arr[usable]
    if np.any(np.diff(lr_arr) <= 0):
        raise ValueError("lrs must be strictly increasing (after dropping non-finite points)")
    n = len(lr_arr)
    start, end = math.ceil(skip_start * n), n - int(skip_end)
    lr_w, raw = lr_arr[start:end], loss_arr[start:end]
    if end - start < MIN_POINTS:
        empty = np.empty(0)
        reason = f"too few usable points ({max(end - start, 0)} < {MIN_POINTS} after skipping)"
        return CurveAnalysis(empty, empty, empty, 0, 0.0, beta or 0.0, None, reason)

    cut, noise, depth, limit = _diverging_part(raw)
    diverge_lr = float(lr_w[cut]) if cut < len(raw) else None
    used_beta = auto_beta(lr_w, noise, depth) if beta is None else float(beta)
    lr_w, raw = lr_w[:cut], raw[:cut]
    if len(raw) < 2:
        reason = "no usable descent"
        return CurveAnalysis(lr_w, raw, raw.copy(), 0, noise, used_beta, diverge_lr, reason)
    smoothed = smooth_curve(np.minimum(raw, limit), used_beta)  # a lone spike counts at the limit
    m = int(np.argmin(smoothed))
    noise = batch_noise(raw[: max(m + 1, NOISE_POINTS)])
    first, lowest = float(smoothed[0]), float(smoothed[m])
    result = CurveAnalysis(lr_w, raw, smoothed, m, noise, used_beta, diverge_lr, "ok")
    if m == 0 or first - lowest < min_rel_drop * abs(first):
        return dataclasses.replace(result, reason="no usable descent")
    if first - lowest < noise_factor * noise:
        reason = f"descent {first - lowest:.3g} within the batch-to-batch noise ({noise:.3g})"
        return dataclasses.replace(result, reason=reason)
    return result


def suggest_lr_with_reason(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    rule: str = "steepest",
    *,
    beta: float | None = None,
    skip_start: float = SKIP_START,
    skip_end: int = SKIP_END,
    min_rel_drop: float = 0.005,
    noise_factor: float = 1.0,
) -> tuple[float | None, str]:
    """The suggested LR for a range-test curve (None when the curve shows no usable descent)
    and a short human reason ("ok" or why there is none).

    See the module docstring for how the curve is read. A descent of the smoothed loss smaller
    than ``min_rel_drop`` of its start, or than ``noise_factor`` x :func:`batch_noise` of the
    raw descent, is no descent: a short test late in training otherwise "finds" its steepest
    point in the noise.
    """
    check_rule(rule)
    curve = analyse_curve(
        lrs,
        losses,
        beta=beta,
        skip_start=skip_start,
        skip_end=skip_end,
        min_rel_drop=min_rel_drop,
        noise_factor=noise_factor,
    )
    if not curve.ok:
        return None, curve.reason
    return pick(curve, rule), "ok"


def pick(curve: CurveAnalysis, rule: str) -> float:
    """Apply ``rule`` to a usable :class:`CurveAnalysis`; never past the smoothed minimum."""
    check_rule(rule)
    if not curve.ok:
        raise ValueError(f"the curve gives no suggestion ({curve.reason})")
    lrs, s, m = curve.lrs, curve.smoothed, curve.minimum
    if rule == "minimum_div10":
        return float(lrs[m]) / 10.0
    descent = s[: m + 1]
    if rule == "valley":
        return float(lrs[_fastai_valley_index(descent)])
    envelope = np.minimum.accumulate(descent)
    drops = -np.diff(envelope) / np.diff(np.log(lrs[: m + 1]))
    steepest = float(lrs[1 + int(np.argmax(drops))])
    if rule == "steepest":
        return steepest
    return math.sqrt(steepest * float(lrs[m]))  # midpoint: halfway in log LR


def batch_noise(losses: Sequence[float] | np.ndarray) -> float:
    """Robust estimate of the per-point noise of a loss curve (its standard deviation).

    Second differences cancel any locally linear trend, so a smooth descent is not counted as
    noise; the median absolute deviation ignores the few points where the curve bends or blows up.
    For i.i.d. noise of std s, ``x[i+1] - 2x[i] + x[i-1]`` has std ``s*sqrt(6)``.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return 0.0
    d2 = np.diff(x, 2)
    mad = float(np.median(np.abs(d2 - np.median(d2))))
    return 1.4826 * mad / math.sqrt(6.0)


def check_rule(rule: Any) -> str:
    if rule not in SUGGESTION_RULES:
        raise ValueError(f"unknown rule {rule!r} (valid: {', '.join(SUGGESTION_RULES)})")
    return str(rule)


def _diverging_part(raw: np.ndarray) -> tuple[int, float, float, float]:
    """(first index of the diverging part or ``len(raw)``, the noise, the descent's depth, the
    level that counts as diverging).

    The start level is the median of the first three points. The noise is measured on the raw
    curve up to the minimum of its running median of 5 (at least ``NOISE_POINTS`` points): not
    on the blow-up, which would inflate it, and robust to a single dip; once for the cut, and
    again on the part that is kept.
    """
    level = float(np.median(raw[:3]))
    med = _running_median(raw, 5)
    noise = batch_noise(raw[: max(int(np.argmin(med)) + 1, NOISE_POINTS)])
    limit = level + max(DIVERGE_NOISE * noise, DIVERGE_REL * abs(level))
    above = np.nonzero(_running_median(raw, 3)[1:] > limit)[0]  # one spike is no divergence
    cut = int(above[0]) + 1 if len(above) else len(raw)
    m = int(np.argmin(med[:cut]))  # and measured again on what is kept
    noise = batch_noise(raw[: min(max(m + 1, NOISE_POINTS), cut)])
    return cut, noise, max(0.0, level - float(med[m])), limit


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred running median; the window shrinks at the ends."""
    half = width // 2
    return np.array([np.median(x[max(0, i - half) : i + half + 1]) for i in range(len(x))])


def _fastai_valley_index(losses: np.ndarray) -> int:
    """fastai's ``valley`` (fastai/callback/schedule.py, 2.7): the longest decreasing
    subsequence, then 1/3 + 1/6 of the way from its start to its end."""
    n = len(losses)
    lds = [1] * n
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max(0, min(n - 1, max_start + int(sections) + int(sections / 2)))


def _check_beta(beta: float) -> None:
    low, high = BETA_RANGE
    if not _is_real(beta) or not low <= beta < high:
        raise ValueError(f"beta ({beta!r}) must be in [{low:g}, {high:g})")
