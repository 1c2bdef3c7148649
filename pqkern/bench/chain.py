"""The chain must agree with itself (immutable bench): a keep's gain over its incumbent against its gain over the seed.

A keep is measured twice: against its incumbent (the decision, ``speedup``) and against the frozen
seed (``vs_seed``). The incumbent's own ``vs_seed`` was measured when it was kept. If all three are
honest, ``incumbent vs_seed x speedup`` and the candidate's ``vs_seed`` estimate the same ratio, and
their 99% intervals, each widened by ``AGREE_TOLERANCE``, overlap. When they do not, one
measurement is wrong: an incumbent that runs slower now than when it was kept (sandbagging: it
makes any candidate look faster), a kernel that behaves differently against different partners,
or drift nobody foresaw. The candidate is then not kept, and the verdict gives both figures.
"""

from __future__ import annotations

import math

from pqkern.bench.throughput import Interval

# Two measurements of one pair at different times, each to +-2%, differ by a few % more than their intervals allow:
# what else the shared core runs changes how fast one kernel is against another a little (a trial's unrolled kernel
# read 1.232x [1.216, 1.247] over the seed's code at HEAD and 1.176x [1.153, 1.199] over the frozen seed, the same
# code, seconds later; an audit read an honest keep's vs_seed 0.632x [0.620, 0.644] against 0.661x recorded). So two
# figures agree when their intervals, each widened by this share, overlap; a sandbagging incumbent or a forged figure
# is further off than that. The audit uses the same share.
AGREE_TOLERANCE = 0.03


def agree(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> bool:
    """Whether two ratio intervals overlap once each is widened by ``AGREE_TOLERANCE``."""
    return lo_a * (1 - AGREE_TOLERANCE) <= hi_b * (1 + AGREE_TOLERANCE) and \
        lo_b * (1 - AGREE_TOLERANCE) <= hi_a * (1 + AGREE_TOLERANCE)


def recorded(row: dict) -> tuple[float, float, float] | None:
    """An incumbent's recorded ``(vs_seed, low, high)`` from its results.tsv row, or None when it has none."""
    try:
        values = tuple(float(row[k]) for k in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi"))
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(v > 0 and math.isfinite(v) for v in values) else None


def contradiction(incumbent: tuple[float, float, float] | None, speedup: Interval, vs_seed: Interval) -> str:
    """'' when the incumbent's recorded ``vs_seed`` times the candidate's ``speedup`` over it agrees (the 99% intervals
    overlap, each widened by ``AGREE_TOLERANCE``) with the candidate's own ``vs_seed``; else the two figures."""
    if incumbent is None or not math.isfinite(speedup.lo + speedup.hi + vs_seed.lo + vs_seed.hi):
        return ""
    s, lo, hi = incumbent
    low, high = lo * math.exp(speedup.lo), hi * math.exp(speedup.hi)  # the predicted vs_seed's interval, as ratios
    got = vs_seed.as_ratio()
    if agree(low, high, got[1], got[2]):
        return ""
    predicted = s * speedup.speedup
    return (f"the measurements contradict each other: the incumbent's vs_seed {s:.3f}x [{lo:.3f}, {hi:.3f}] times this "
            f"speedup {speedup.speedup:.3f}x gives {predicted:.3f}x [{low:.3f}, {high:.3f}], but the "
            f"candidate measured against the seed directly is {got[0]:.3f}x [{got[1]:.3f}, {got[2]:.3f}]; not kept")
