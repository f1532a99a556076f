"""Other libraries' LR-finder suggestion rules, reimplemented faithfully, for benchmarks/oracle.py.

Each function takes the raw curve our range test recorded (LR per step, loss per step, NaN/inf
kept as recorded) and applies that library's own smoothing, truncation and rule, so the rules
are compared on the same curves. Read from the libraries' source:

* torch-lr-finder 0.2.x, ``torch_lr_finder/lr_finder.py`` (davidtvs/pytorch-lr-finder, commit
  00abb90): ``LRFinder.range_test`` smooths ``loss = smooth_f*loss + (1-smooth_f)*previous``
  (smooth_f 0.05, seeded with the first loss, no bias correction) and stops after recording a
  loss above ``diverge_th`` (5) x the best so far; ``LRFinder.plot`` drops ``skip_start`` (10)
  and ``skip_end`` (5) points and suggests ``lrs[argmin(np.gradient(losses))]``.
* fastai 2.7, ``fastai/callback/schedule.py`` (fastai/fastai, commit 0a049e8) and
  ``fastai/learner.py``: the Recorder keeps ``AvgSmoothLoss`` (beta 0.98, debiased) values;
  ``LRFinder`` stops when the smoothed loss exceeds 4x its best; ``Learner.lr_find`` keeps
  ``[num_it//10 : -5]``, cuts at the first NaN, then ``valley`` (longest decreasing
  subsequence, 1/3 + 1/6 of the way along it), ``steep`` (steepest forward slope in log lr),
  ``minimum`` (argmin / 10) and ``slide`` (interval slide rule, lr_diff 15, thresh 0.005).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Rule = Callable[[Sequence[float], Sequence[float], int], float | None]


# -- torch-lr-finder ---------------------------------------------------------------------------
def torch_lr_finder_curve(
    lrs: Sequence[float], losses: Sequence[float], smooth_f: float = 0.05, diverge_th: float = 5.0
) -> tuple[list[float], list[float]]:
    """The history ``LRFinder.range_test`` would have recorded for these raw losses."""
    hist_lr: list[float] = []
    hist_loss: list[float] = []
    best = math.inf
    for i, (lr, raw) in enumerate(zip(lrs, losses, strict=True)):
        loss = float(raw) if raw is not None else math.nan
        if i == 0:
            best = loss
        else:
            if smooth_f > 0:
                loss = smooth_f * loss + (1 - smooth_f) * hist_loss[-1]
            if loss < best:
                best = loss
        hist_lr.append(float(lr))
        hist_loss.append(loss)
        if loss > diverge_th * best:
            break
    return hist_lr, hist_loss


def torch_lr_finder_steepest(
    lrs: Sequence[float],
    losses: Sequence[float],
    num_it: int,
    skip_start: int = 10,
    skip_end: int = 5,
) -> float | None:
    """``LRFinder.plot``'s suggestion (None where it prints "Failed to compute the gradients")."""
    h_lr, h_loss = torch_lr_finder_curve(lrs, losses)
    lr_w = h_lr[skip_start:-skip_end] if skip_end else h_lr[skip_start:]
    loss_w = h_loss[skip_start:-skip_end] if skip_end else h_loss[skip_start:]
    try:
        idx = int(np.gradient(np.array(loss_w)).argmin())
    except ValueError:
        return None
    return float(lr_w[idx])


# -- fastai ----------------------------------------------------------------------------------------
def fastai_curve(
    lrs: Sequence[float], losses: Sequence[float], num_it: int, beta: float = 0.98
) -> tuple[np.ndarray, np.ndarray]:
    """Recorder lrs/losses (AvgSmoothLoss values) after ``lr_find``'s cut, as tensors would be."""
    rec_lr: list[float] = []
    rec_loss: list[float] = []
    avg, best = 0.0, math.inf
    for count, (lr, raw) in enumerate(zip(lrs, losses, strict=True), start=1):
        loss = float(raw) if raw is not None else math.nan
        avg = avg * beta + loss * (1 - beta)  # torch.lerp(loss, avg, beta)
        smooth = avg / (1 - beta**count)
        rec_lr.append(float(lr))
        rec_loss.append(smooth)
        if smooth < best:
            best = smooth
        if smooth > 4 * best:  # LRFinder.after_batch: CancelFitException
            break
    lr_arr = np.array(rec_lr[num_it // 10 : -5])
    loss_arr = np.array(rec_loss[num_it // 10 : -5])
    nan_idx = np.nonzero(np.isnan(loss_arr))[0]
    if len(nan_idx):
        lr_arr, loss_arr = lr_arr[: nan_idx[0]], loss_arr[: nan_idx[0]]
    return lr_arr, loss_arr


def fastai_valley(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> float | None:
    lr_arr, loss = fastai_curve(lrs, losses, num_it)
    n = len(loss)
    if n == 0:
        return None
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (loss[i] < loss[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lr_arr[idx])  # a negative idx indexes from the end, as in fastai


def fastai_steep(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> float | None:
    lr_arr, loss = fastai_curve(lrs, losses, num_it)
    if len(loss) < 2:
        return None
    grads = (loss[1:] - loss[:-1]) / (np.log(lr_arr[1:]) - np.log(lr_arr[:-1]))
    return float(lr_arr[int(np.argmin(grads))])


def fastai_minimum(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> float | None:
    lr_arr, loss = fastai_curve(lrs, losses, num_it)
    if len(loss) == 0:
        return None
    return float(lr_arr[int(np.argmin(loss))]) / 10


def fastai_slide(
    lrs: Sequence[float],
    losses: Sequence[float],
    num_it: int,
    lr_diff: int = 15,
    thresh: float = 0.005,
    adjust_value: float = 1.0,
) -> float | None:
    lr_arr, loss = fastai_curve(lrs, losses, num_it)
    if len(loss) < 2:
        return None
    loss_grad = np.gradient(loss)
    r_idx = -1
    l_idx = r_idx - lr_diff
    if -l_idx > len(loss):  # fastai indexes lrs[l_idx] first: an IndexError on short curves
        return None
    local_min_lr = lr_arr[l_idx]
    while (l_idx >= -len(loss)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > thresh):
        local_min_lr = lr_arr[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


REFERENCE_RULES: dict[str, Rule] = {
    "torch_lr_finder": torch_lr_finder_steepest,
    "fastai_valley": fastai_valley,
    "fastai_steep": fastai_steep,
    "fastai_minimum": fastai_minimum,
    "fastai_slide": fastai_slide,
}
