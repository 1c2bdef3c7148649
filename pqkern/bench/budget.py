"""What a kernel may spend outside its timed calls (immutable bench).

Work done where nothing times it would buy speed for nothing: an index built in ``prepare`` at
any cost, a lazy build in the first searches, or work slipped into the untimed warm-up call a
paired comparison makes before each timed flat call. So:

- set-up: ``prepare``, plus whatever the warm-up searches right after it cost beyond searching (where a
  lazy build on the first searches would land: their wall time beyond ``UNTIMED_RATIO`` times the
  kernel's median timed call each), may take on each workload at most ``PREPARE_FIXED_S`` plus
  ``PREPARE_PER_MILLION_S`` per million rows, wall time. ``prepare`` alone is checked as soon as the
  worker is ready, the rest once calls have been timed. Honest re-layouts need far less: on the 1M
  fixture the demo kernels', the legitimate test kernels' and a pruned, unrolled kernel's prepare
  take 10-20 ms, their warm-up searches 2-90 ms (``scripts/prepare_cost.py``).
- the comparison's untimed warm-up calls (on the IVF layouts) may cost at most ``UNTIMED_RATIO`` times
  its timed calls of that workload, like with like: the sum of the untimed calls' CPU time against
  the sum of the timed calls', each warm-up beside the timed call it led (plus ``UNTIMED_SLACK_NS``
  per call for the harness's noise), and only when the ratio is confidently over (the throughput
  interval of ``throughput.py``). A warm-up call searches a fresh query like a timed one, from the
  same distribution, and the calls are interleaved with the timed ones, so a loaded machine slows
  both alike, and an honest kernel whose cost depends on the query (pruning that rarely pays) meets
  its slow queries as often in either.

Over budget is the kernel's failure (a crash), with the figures.
"""

from __future__ import annotations

import math

import numpy as np

from pqkern.bench import throughput

PREPARE_FIXED_S = 1.0
PREPARE_PER_MILLION_S = 2.0
UNTIMED_RATIO = 3.0
UNTIMED_SLACK_NS = 200_000


def prepare_budget(rows: int) -> float:
    """Seconds a workload of ``rows`` rows may spend in ``prepare``."""
    return PREPARE_FIXED_S + PREPARE_PER_MILLION_S * rows / 1e6


def prepare_problem(workload: str, rows: int, prepare_ns: int, warm_ns: int = 0, warm_calls: int = 0,
                    timed_ns: list[float] | None = None) -> str:
    """'' when set-up kept within its budget, else the figures: ``prepare`` alone, or with the warm-up searches' cost
    beyond ``warm_calls`` searches when the kernel's timed calls (``timed_ns``, per call) are known."""
    excess = 0.0
    if timed_ns and warm_calls:
        excess = max(0.0, warm_ns - warm_calls * (UNTIMED_RATIO * float(np.median(timed_ns)) + UNTIMED_SLACK_NS))
    spent, budget = (prepare_ns + excess) / 1e9, prepare_budget(rows)
    if spent <= budget:
        return ""
    more = f" and its first searches {excess / 1e9:.2f} s more than searching costs" if excess else ""
    return (f"{workload}: prepare took {prepare_ns / 1e9:.2f} s{more} for {rows:,} rows, over the set-up budget of "
            f"{budget:.2f} s ({PREPARE_FIXED_S:g} s + {PREPARE_PER_MILLION_S:g} s per million rows): build nothing "
            f"expensive outside the timed searches")


def untimed_problem(workload: str, untimed_ns: list[float], timed_ns: list[float]) -> str:
    """'' unless the comparison's untimed calls confidently cost more than allowed beside the timed calls they led
    (``untimed_ns[i]`` led ``timed_ns[i]``)."""
    n = min(len(untimed_ns), len(timed_ns))
    if n == 0:
        return ""
    pairs = [(float(u), UNTIMED_RATIO * float(t) + UNTIMED_SLACK_NS) for u, t in zip(untimed_ns[:n], timed_ns[:n], strict=True)]
    over = throughput.intervals({"untimed": pairs})["untimed"]
    if over.lo <= 0:
        return ""
    spent, timed = float(np.mean(untimed_ns[:n])), float(np.mean(timed_ns[:n]))
    return (f"{workload}: its untimed warm-up calls took {spent / 1e6:.2f} ms of CPU each on average, 99% confidently more "
            f"than {UNTIMED_RATIO:g} times its timed calls ({timed / 1e6:.2f} ms on average; ratio at least "
            f"{math.exp(over.lo) * UNTIMED_RATIO:.1f}): work was done outside the timed calls")
