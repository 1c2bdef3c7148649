"""Confidence sequences for a paired speed-up, valid although they are looked at after every round (immutable bench).

Each round gives one observation per workload: the mean, over a block of queries, of the
paired ``ln(t_incumbent / t_candidate)``. Rounds are independent (fresh random queries, the
order of the two kernels drawn at random), so their mean estimates the log speed-up.

The interval is an asymptotic confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy and
Ramdas, "Time-uniform central limit theory and asymptotic confidence sequences", 2021):
with ``m`` the mean and ``s`` the standard deviation of the first ``t`` observations,

    m +/- s * sqrt(2 (t r^2 + 1) / (t^2 r^2) * log(sqrt(t r^2 + 1) / alpha))

covers the true mean at every ``t`` at once with probability about ``1 - alpha``: stopping as
soon as it excludes a value is valid, unlike a fixed-sample t-interval re-checked after each
batch. ``r`` sets the round at which the sequence is tightest (``ROUNDS_TARGET``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.01  # two-sided: each interval is a 99% confidence sequence
ROUNDS_TARGET = 120  # the sequence is tightest around this many rounds
MIN_ROUNDS = 12  # no decision before this many rounds: the plug-in sd needs some observations


@dataclass(frozen=True)
class Interval:
    """A log speed-up estimate with its confidence-sequence bounds (natural log of candidate speed-up)."""

    mean: float
    lo: float
    hi: float
    rounds: int
    sd: float

    @property
    def speedup(self) -> float:
        return math.exp(self.mean)

    def as_ratio(self) -> tuple[float, float, float]:
        """``(speed-up, low, high)`` as ratios (> 1 means the candidate is faster)."""
        return math.exp(self.mean), math.exp(self.lo), math.exp(self.hi)


def rho(alpha: float = ALPHA, target: int = ROUNDS_TARGET) -> float:
    """The mixing parameter that makes the sequence tightest at ``target`` rounds."""
    a = -2.0 * math.log(alpha)
    return math.sqrt((a + math.log(a + 1.0)) / target)


def half_width_factor(t: int, alpha: float = ALPHA, target: int = ROUNDS_TARGET) -> float:
    """The multiple of the observations' sd that is the sequence's half-width after ``t`` observations."""
    r2 = rho(alpha, target) ** 2
    return math.sqrt(2.0 * (t * r2 + 1.0) / (t * t * r2) * math.log(math.sqrt(t * r2 + 1.0) / alpha))


def interval(values: list[float], alpha: float = ALPHA, target: int = ROUNDS_TARGET) -> Interval:
    """The confidence sequence's interval after the observations ``values`` (infinite with fewer than two)."""
    t = len(values)
    if t < 2:
        mean = values[0] if values else 0.0
        return Interval(mean, -math.inf, math.inf, t, math.inf)
    mean = math.fsum(values) / t
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (t - 1))
    w = sd * half_width_factor(t, alpha, target)
    return Interval(mean, mean - w, mean + w, t, sd)
