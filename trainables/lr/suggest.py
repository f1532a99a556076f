"""Pick a learning rate from a recorded range-test curve: pure functions, numpy only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

SUGGESTION_RULES = ("steepest", "valley", "minimum_div10")
MIN_POINTS = 5
"""Fewer usable points than this in the considered window give no suggestion."""


def smooth_losses(losses: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average of ``losses``.

    ``avg = beta*avg + (1-beta)*x``; ``s_i = avg / (1 - beta**(i+1))``, counted from the first
    point of this curve, so ``s_0`` is the first loss exactly. Non-finite values propagate.
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


def suggest_lr(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    rule: str = "steepest",
    *,
    beta: float = 0.98,
    skip_start: float = 0.1,
    skip_end: int = 3,
    min_rel_drop: float = 0.005,
    noise_factor: float = 1.0,
) -> float | None:
    """The suggested LR for a range-test curve, or None when the curve shows no usable descent.

    Points whose lr or loss is non-finite (or lr <= 0) are dropped first; the rest is smoothed
    with :func:`smooth_losses` and only ``[ceil(skip_start*n) : n-skip_end]`` is considered.
    Rules: ``steepest`` (most negative d loss / d log lr), ``valley`` (middle of the longest
    strictly decreasing stretch), ``minimum_div10`` (lr at the minimum / 10).

    A descent of the smoothed loss smaller than ``noise_factor`` x :func:`batch_noise` of the raw
    window is no descent: a short test late in training (20-80 noisy batch losses, flat until the
    loss blows up) otherwise "finds" its steepest point in the noise, typically at the lowest LRs.
    """
    return suggest_lr_with_reason(
        lrs,
        losses,
        rule,
        beta=beta,
        skip_start=skip_start,
        skip_end=skip_end,
        min_rel_drop=min_rel_drop,
        noise_factor=noise_factor,
    )[0]


def suggest_lr_with_reason(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    rule: str = "steepest",
    *,
    beta: float = 0.98,
    skip_start: float = 0.1,
    skip_end: int = 3,
    min_rel_drop: float = 0.005,
    noise_factor: float = 1.0,
) -> tuple[float | None, str]:
    """Like :func:`suggest_lr`, plus a short human reason ("ok" or why there is none)."""
    if rule not in SUGGESTION_RULES:
        raise ValueError(f"unknown rule {rule!r} (valid: {', '.join(SUGGESTION_RULES)})")
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
    if end - start < MIN_POINTS:
        return None, f"too few usable points ({max(end - start, 0)} < {MIN_POINTS} after skipping)"
    smoothed = smooth_losses(loss_arr, beta)[start:end]
    window_lrs = lr_arr[start:end]

    first, lowest = float(smoothed[0]), float(smoothed.min())
    if first - lowest < min_rel_drop * abs(first) or lowest >= first:
        return None, "no usable descent"
    noise = batch_noise(loss_arr[start:end])
    if first - lowest < noise_factor * noise:
        return None, (f"descent {first - lowest:.3g} within the batch-to-batch noise ({noise:.3g})")
    slopes = np.gradient(smoothed, np.log(window_lrs))
    if float(slopes.min()) >= 0:
        return None, "no usable descent"

    if rule == "steepest":
        return float(window_lrs[int(np.argmin(slopes))]), "ok"
    if rule == "minimum_div10":
        return float(window_lrs[int(np.argmin(smoothed))]) / 10.0, "ok"
    lo, hi = _longest_decreasing_run(smoothed)
    return float(window_lrs[lo + (hi - lo) // 2]), "ok"


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


def _longest_decreasing_run(values: np.ndarray) -> tuple[int, int]:
    """Inclusive bounds of the first longest stretch with values[i+1] < values[i] throughout."""
    best, run_start = (0, 0), 0
    for i in range(1, len(values)):
        if not values[i] < values[i - 1]:
            run_start = i
        elif i - run_start > best[1] - best[0]:
            best = (run_start, i)
    return best


def _check_beta(beta: float) -> None:
    if not _is_real(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"beta ({beta!r}) must be in [0, 1)")


def _is_real(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    """An integer that is not a bool (numpy scalars included)."""
    return isinstance(value, Integral) and not isinstance(value, bool)
