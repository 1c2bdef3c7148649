"""What every speed-up means (immutable bench): throughput, the ratio of two kernels' CPU time over the same queries.

A Lance user sees queries per second, so the speed-up of a candidate over an incumbent on a
workload is ``sum(t_incumbent) / sum(t_candidate)`` over the timed queries both searched: a
kernel that is fast on most queries and slow on a few is judged by what those few cost, not by
its typical query (the median ratio, which this replaced, kept a kernel whose throughput was half
the incumbent's). Across workloads the speed-up is their geometric mean.

Each round gives, per workload, the two kernels' summed CPU time over that round's queries
``(a_t, b_t)``. The estimate after ``t`` rounds is ``log(sum a / sum b)``. Its interval is an
asymptotic confidence sequence (Waudby-Smith, Arnold, Wu, Wang and Ramdas, "Time-uniform central
limit theory and asymptotic confidence sequences", Annals of Statistics 2024): the estimate is a
smooth function of two means, so it moves, to first order, as the mean of the rounds' influence
values ``psi_t = a_t / mean(a) - b_t / mean(b)`` (the delta method), and Robbins' normal mixture
bounds that mean for all ``t`` at once:

    half-width(t) = s_t * sqrt((1 + r^2 t) / (r^2 t^2) * log((1 + r^2 t) / alpha^2))

where ``s_t`` estimates the standard deviation of ``psi``. It stays valid however often it is
looked at (each round), which a fixed-sample interval does not. The combined (geometric-mean)
estimate's influence values are the mean of the workloads' in the same round, so one interval
covers it with the workloads' correlation accounted for.

"Asymptotic" is the price of not assuming bounded times: the coverage holds as rounds grow, and a
shared machine's heavy-tailed noise makes early variance estimates too small. So ``s_t`` starts
from a prior (``PRIOR_ROUNDS`` pseudo-rounds at ``PRIOR_SD``) that the data outweighs within a
few dozen rounds, no decision is taken before ``MIN_ROUNDS``, and a keep is confirmed on the
interval at the end of the check's rounds (``phases.py``), hundreds of queries later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALPHA = 0.01  # two-sided: each interval is a 99% confidence sequence
ROUNDS_TARGET = 150  # the sequence is tightest around this many rounds (the decision's cap and the check's end)
MIN_ROUNDS = 20  # no decision before this many rounds
PRIOR_ROUNDS = 10  # pseudo-rounds of the variance prior
PRIOR_SD = 0.05  # their spread: a paired round's noise on a quiet 2-vCPU machine (scripts/pair_noise.py)


@dataclass(frozen=True)
class Interval:
    """A log speed-up estimate with its confidence-sequence bounds (> 0: the candidate is faster)."""

    mean: float
    lo: float
    hi: float
    rounds: int
    sd: float  # of the rounds' influence values

    @property
    def speedup(self) -> float:
        return math.exp(self.mean)

    def as_ratio(self) -> tuple[float, float, float]:
        """``(speed-up, low, high)`` as ratios (> 1 means the candidate is faster)."""
        return math.exp(self.mean), math.exp(self.lo), math.exp(self.hi)


Round = tuple[float, float]  # (incumbent's summed CPU ns, candidate's) over one round's queries of one workload


def mixture_width(t: int, alpha: float = ALPHA, target: int = ROUNDS_TARGET) -> float:
    """The normal mixture's half-width for the mean of ``t`` unit-variance values (multiply by their sd)."""
    if t <= 0:
        return math.inf
    a = -2.0 * math.log(alpha)
    r2 = (a + math.log(a + 1.0)) / target  # tightest near ``target``
    v = 1.0 + r2 * t
    return math.sqrt(v / (r2 * t * t) * math.log(v / alpha ** 2))


def _sd(values: Sequence[float]) -> float:
    """The influence values' standard deviation, shrunk towards the prior while they are few."""
    t = len(values)
    mean = sum(values) / t
    ss = sum((v - mean) ** 2 for v in values)
    return math.sqrt((ss + PRIOR_ROUNDS * PRIOR_SD ** 2) / (t - 1 + PRIOR_ROUNDS))


def _influence(rounds: Sequence[Round]) -> tuple[float, list[float]]:
    """``(log(sum a / sum b), the rounds' influence values)`` of one workload."""
    ma = sum(a for a, _ in rounds) / len(rounds)
    mb = sum(b for _, b in rounds) / len(rounds)
    ma, mb = max(ma, 1.0), max(mb, 1.0)
    return math.log(ma / mb), [a / ma - b / mb for a, b in rounds]


def _interval(estimate: float, psi: list[float], alpha: float, target: int) -> Interval:
    sd = _sd(psi)
    half = sd * mixture_width(len(psi), alpha, target)
    return Interval(estimate, estimate - half, estimate + half, len(psi), sd)


def intervals(rounds: Mapping[str, Sequence[Round]], alpha: float = ALPHA,
              target: int = ROUNDS_TARGET) -> dict[str, Interval]:
    """Each workload's throughput interval (log of incumbent time / candidate time, > 0: the candidate is faster) and
    the ``combined`` one (their geometric mean), after the rounds so far (every workload has the same rounds)."""
    names = list(rounds)
    t = min((len(rounds[w]) for w in names), default=0)
    if t == 0:
        empty = Interval(0.0, -math.inf, math.inf, 0, math.inf)
        return {**{w: empty for w in names}, "combined": empty}
    out, parts = {}, []
    for w in names:
        estimate, psi = _influence(rounds[w][:t])
        out[w] = _interval(estimate, psi, alpha, target)
        parts.append((estimate, psi))
    combined_psi = [sum(p[1][i] for p in parts) / len(parts) for i in range(t)]
    out["combined"] = _interval(sum(p[0] for p in parts) / len(parts), combined_psi, alpha, target)
    return out


def ratio_of_sums(rounds: Sequence[Round]) -> float:
    """The throughput ratio of one workload's rounds (incumbent time / candidate time)."""
    b = sum(r[1] for r in rounds)
    return sum(r[0] for r in rounds) / b if b else math.nan
