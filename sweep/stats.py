"""Statistics over seeds: the mean with its 95% Student-t interval, and paired differences.

Confidence intervals are two-sided 95% Student-t intervals of the mean over seeds:
``mean ± t(0.975, n-1) · s / sqrt(n)`` with the sample standard deviation ``s`` (ddof=1).
Fewer than 3 seeds give an interval too wide to say anything (with 2, t is 12.7):
:attr:`Stat.few` flags them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Intervals from fewer seeds than this are flagged, not read.
MIN_SEEDS_FOR_CI = 3


def t_critical_95(df: int) -> float:
    """t(0.975, df), the two-sided 95% critical value of Student's t (``scipy.stats.t.ppf``)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    from scipy.stats import t

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class Stat:
    """Summary of one quantity over seeds; std and ci95 (t half-width) need n >= 2."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci95: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, values: Sequence[float | int | None]) -> Stat:
        vals = [float(v) for v in values if v is not None and math.isfinite(v)]
        n = len(vals)
        if n == 0:
            return cls(0)
        mean = sum(vals) / n
        std = ci = None
        if n >= 2:
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
            ci = t_critical_95(n - 1) * std / math.sqrt(n)
        return cls(n, mean, std, ci, min(vals), max(vals))

    @property
    def few(self) -> bool:
        """Too few values for the interval to mean anything."""
        return self.n < MIN_SEEDS_FOR_CI

    def format(self, spec: str = ".4f") -> str:
        """``mean ± std``."""
        if self.mean is None:
            return "-"
        text = format(self.mean, spec)
        if self.std is not None:
            text += f" ± {format(self.std, spec)}"
        return text

    def format_ci(self, spec: str = ".4f") -> str:
        """The 95% half-width, or why there is none worth showing."""
        if self.ci95 is None:
            return "-"
        return f"±{format(self.ci95, spec)}" + (f" (n={self.n}<3)" if self.few else "")


@dataclass(frozen=True)
class Paired:
    """Per-seed differences ``policy - reference`` of one quantity, over the shared seeds."""

    n: int
    mean: float | None = None
    ci95: float | None = None  # t half-width; needs n >= 2
    better: int = 0  # seeds where the policy's value is higher
    diffs: tuple[float, ...] = ()

    @classmethod
    def of(cls, pairs: Sequence[tuple[float | None, float | None]]) -> Paired:
        diffs = tuple(
            float(a) - float(b)
            for a, b in pairs
            if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        )
        stat = Stat.of(list(diffs))
        return cls(stat.n, stat.mean, stat.ci95, sum(d > 0 for d in diffs), diffs)

    def format(self, spec: str = "+.4f") -> str:
        """``mean [lo, hi]`` (the 95% interval), flagged when from fewer than 3 seeds."""
        if self.mean is None:
            return "-"
        if self.ci95 is None:
            return format(self.mean, spec)
        lo, hi = self.mean - self.ci95, self.mean + self.ci95
        flag = f" (n={self.n}<3)" if self.n < MIN_SEEDS_FOR_CI else ""
        return f"{format(self.mean, spec)} [{format(lo, spec)}, {format(hi, spec)}]{flag}"

    def format_short(self, spec: str = "+.4f") -> str:
        """``mean ±half-width``, flagged when from fewer than 3 seeds."""
        if self.mean is None:
            return "-"
        if self.ci95 is None:
            return f"{format(self.mean, spec)} (n={self.n})"
        flag = f" (n={self.n}<3)" if self.n < MIN_SEEDS_FOR_CI else ""
        return f"{format(self.mean, spec)} ±{self.ci95:.4f}{flag}"

    @property
    def better_text(self) -> str:
        return f"{self.better}/{self.n}" if self.n else "-"
