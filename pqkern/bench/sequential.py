"""A confidence sequence for a paired speed-up, valid although it is looked at after every round (immutable bench).

Each round gives one observation per workload: the paired ``ln(t_incumbent / t_candidate)`` of its
queries. Rounds are independent (fresh random queries, the order of the two kernels drawn at
random for every pair), and the random order makes the noise symmetric about the true log
speed-up, so the median of the observations estimates it.

The interval is a confidence sequence for that median (Howard and Ramdas, "Sequential estimation
of quantiles with applications to A/B-testing and best-arm identification", 2022): at a
candidate median ``m``, the count of observations at or below ``m`` minus ``t/2`` is a sum of
independent +-1/2 steps, and Robbins' normal mixture bounds it, for all ``t`` at once, by

    u(t) = sqrt((1 + r^2 t/4) / r^2 * log((1 + r^2 t/4) / alpha^2))

with probability at least ``1 - alpha`` (Ville's inequality). The interval after ``t`` rounds is every
``m`` inside that bound: the order statistics of rank ``t/2 - u(t)`` and ``t/2 + u(t)``. It needs
no variance estimate and no assumption on the tails, which a shared machine makes heavy; and
stopping as soon as it excludes a value is valid, unlike a fixed-sample interval re-checked
after each batch. ``r`` sets the round at which it is tightest (``ROUNDS_TARGET``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.01  # two-sided: each interval is a 99% confidence sequence
ROUNDS_TARGET = 300  # the sequence is tightest around this many rounds
MIN_ROUNDS = 20  # no decision before this many rounds


@dataclass(frozen=True)
class Interval:
    """A log speed-up estimate (the median) with its confidence-sequence bounds (> 0: the candidate is faster)."""

    mean: float
    lo: float
    hi: float
    rounds: int
    sd: float  # of the observations about their median

    @property
    def speedup(self) -> float:
        return math.exp(self.mean)

    def as_ratio(self) -> tuple[float, float, float]:
        """``(speed-up, low, high)`` as ratios (> 1 means the candidate is faster)."""
        return math.exp(self.mean), math.exp(self.lo), math.exp(self.hi)


def boundary(t: int, alpha: float = ALPHA, target: int = ROUNDS_TARGET) -> float:
    """``u(t)``: how far from ``t/2`` the count below the true median strays, at most, over all ``t`` (prob. 1 - alpha)."""
    a = -2.0 * math.log(alpha)
    r2 = (a + math.log(a + 1.0)) / (target / 4.0)  # the normal mixture's width, tuned to ``target``
    v = r2 * t / 4.0
    return math.sqrt((1.0 + v) / r2 * math.log((1.0 + v) / alpha ** 2))


def interval(values: list[float], alpha: float = ALPHA, target: int = ROUNDS_TARGET) -> Interval:
    """The median of ``values`` and the confidence sequence's interval for it after these observations."""
    t = len(values)
    if t == 0:
        return Interval(0.0, -math.inf, math.inf, 0, math.inf)
    s = sorted(values)
    median = (s[(t - 1) // 2] + s[t // 2]) / 2
    u = boundary(t, alpha, target)
    low_rank = math.floor(t / 2 - u)  # 0-based: the order statistic the count must exceed t/2 - u at
    high_rank = math.ceil(t / 2 + u) - 1
    lo = s[low_rank] if low_rank >= 0 else -math.inf
    hi = s[high_rank] if high_rank < t else math.inf
    sd = math.sqrt(sum((v - median) ** 2 for v in values) / max(t - 1, 1))
    return Interval(median, min(lo, median), max(hi, median), t, sd)
