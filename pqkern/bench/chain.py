"""The chain must agree with itself (immutable bench): a keep's gain over its incumbent against its gain over the seed.

A keep is measured twice: against its incumbent (the decision, ``speedup``) and against the frozen
seed (``vs_seed``). The incumbent's own ``vs_seed`` was measured when it was kept. If all three are
honest, ``incumbent vs_seed x speedup`` and the candidate's ``vs_seed`` estimate the same ratio, and
their 99% intervals overlap. When they do not, one measurement is wrong: an incumbent that runs
slower now than when it was kept (sandbagging: it makes any candidate look faster), a kernel
that behaves differently against different partners, or drift nobody foresaw. The candidate is
then not kept, and the verdict gives both figures.
"""

from __future__ import annotations

import math

from pqkern.bench.throughput import Interval


def recorded(row: dict) -> tuple[float, float, float] | None:
    """An incumbent's recorded ``(vs_seed, low, high)`` from its results.tsv row, or None when it has none."""
    try:
        values = tuple(float(row[k]) for k in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi"))
    except (KeyError, TypeError, ValueError):
        return None
    return values if all(v > 0 and math.isfinite(v) for v in values) else None


def contradiction(incumbent: tuple[float, float, float] | None, speedup: Interval, vs_seed: Interval) -> str:
    """'' when the incumbent's recorded ``vs_seed`` times the candidate's ``speedup`` over it agrees (the 99% intervals
    overlap) with the candidate's own ``vs_seed``; else the two figures, said plainly."""
    if incumbent is None or not math.isfinite(speedup.lo + speedup.hi + vs_seed.lo + vs_seed.hi):
        return ""
    s, lo, hi = incumbent
    low, high = math.log(lo) + speedup.lo, math.log(hi) + speedup.hi
    if vs_seed.hi >= low and vs_seed.lo <= high:
        return ""
    predicted = s * speedup.speedup
    got = vs_seed.as_ratio()
    return (f"the measurements contradict each other: the incumbent's vs_seed {s:.3f}x [{lo:.3f}, {hi:.3f}] times this "
            f"speedup {speedup.speedup:.3f}x gives {predicted:.3f}x [{math.exp(low):.3f}, {math.exp(high):.3f}], but the "
            f"candidate measured against the seed directly is {got[0]:.3f}x [{got[1]:.3f}, {got[2]:.3f}]; not kept")
