"""The keep rule (immutable bench): what the paired intervals (``sequential.py``) must show for a keep, and each stop.

All figures are log speed-ups of the candidate over the incumbent (> 0: faster), 99% intervals.

- ``faster`` (keep): the combined (geometric mean over the workloads) gain is above ``MIN_GAIN`` and
  no workload is slower by more than ``MAX_LOSS``;
- ``simpler`` (keep, a candidate with a smaller syntax tree than the incumbent's, ``simplicity.py``):
  no workload is slower by more than its remaining margin. Between two faster keeps the simpler
  keeps of a branch may lose at most ``SIMPLER_MARGIN`` in all, per workload, counted at each
  keep's 99% bound, so a chain of them can never drift slower than that;
- ``slower`` / ``loss:<workload>`` (discard): confidently slower overall, or one workload confidently
  slower than ``MAX_LOSS`` (than its margin, for a simpler candidate);
- ``within`` (discard): confidently below ``MIN_GAIN``, not confidently faster at all;
- ``below-bar`` (discard): confidently faster, but not confidently by ``MIN_GAIN`` (at the cap, or once
  the interval lies between 0 and ``MIN_GAIN``);
- ``cap`` (discard): still undecided when the time, round or query cap is reached.

Under measurement, not used by the trial: ``single_workload``, a second keep path for a gain on
one workload only (``python -m pqkern.bench.paired --single-workload``, ``scripts/verdict_power.py``).
"""

from __future__ import annotations

import math

from pqkern.bench.sequential import Interval

MIN_GAIN = math.log(1.01)
MAX_LOSS = math.log(0.98)
SIMPLER_MARGIN = -math.log(0.98)  # per workload, between two faster keeps
MIN_SIMPLER_MARGIN = math.log(1.002)  # below this the margin is spent: a simpler candidate is judged as any other
SINGLE_GAIN = math.log(1.03)  # the single-workload path: one workload faster by this, at the corrected level,
SINGLE_LOSS = math.log(0.99)  # and every workload confidently slower by less than this


def decide(intervals: dict[str, Interval], workloads: list[str],
           simpler_margin: dict[str, float] | None = None) -> tuple[str, str] | None:
    """``(decision, stop)`` on the current intervals, or None to go on; ``simpler_margin`` (per workload, log) for a
    simpler candidate with margin left."""
    comb = intervals["combined"]
    if comb.lo > MIN_GAIN and all(intervals[w].lo > MAX_LOSS for w in workloads):
        return "keep", "faster"
    if simpler_margin:
        if all(intervals[w].lo > -simpler_margin[w] for w in workloads):
            return "keep", "simpler"
        for w in workloads:
            if intervals[w].hi < -simpler_margin[w]:
                return "discard", "slower" if comb.hi < 0 else f"loss:{w}"
        return None
    if comb.hi < 0:
        return "discard", "slower"
    for w in workloads:
        if intervals[w].hi < MAX_LOSS:
            return "discard", f"loss:{w}"
    if comb.hi < MIN_GAIN:
        return "discard", "below-bar" if comb.lo > 0 else "within"
    return None


def single_workload(corrected: dict[str, Interval], intervals: dict[str, Interval],
                    workloads: list[str]) -> tuple[str, str] | None:
    """``("keep", "faster:<w>")`` when workload ``w`` is confidently faster by ``SINGLE_GAIN`` at the level corrected for
    the workloads' several chances (``corrected``: per-workload intervals at ``ALPHA / len(workloads)``) and no workload
    may be slower by ``SINGLE_LOSS`` (``intervals``, 99%); else None."""
    if not all(intervals[w].lo > SINGLE_LOSS for w in workloads):
        return None
    best = max(workloads, key=lambda w: corrected[w].lo)
    return ("keep", f"faster:{best}") if corrected[best].lo > SINGLE_GAIN else None


def at_cap(intervals: dict[str, Interval]) -> str:
    """The stop of a comparison that reached its cap undecided."""
    return "below-bar" if intervals.get("combined") and intervals["combined"].lo > 0 else "cap"


def explain(stop: str) -> str:
    """The verdict's words for a stop."""
    gain, loss = f"{math.exp(MIN_GAIN) - 1:.0%}", f"{1 - math.exp(MAX_LOSS):.0%}"
    if stop.startswith("faster:"):
        return (f"faster on {stop[7:]}: confident of a gain above {math.exp(SINGLE_GAIN) - 1:.0%} there, and no workload "
                f"slower by {1 - math.exp(SINGLE_LOSS):.0%}")
    if stop.startswith("loss:"):
        return f"slower on {stop[5:]}: 99% confident of a loss above its margin ({loss} for a faster candidate)"
    return {
        "faster": f"faster: 99% confident of a gain above {gain} with no workload slower by {loss}",
        "simpler": "simpler: a smaller syntax tree, and 99% confident no workload lost more than the margin left",
        "same-code": "simpler: the same syntax tree as the incumbent (only comments, docstrings or layout changed)",
        "slower": "slower",
        "within": f"not faster: 99% confident the gain is below {gain}",
        "below-bar": f"faster, but below the {gain} bar: 99% confident of a gain, not of one above {gain}",
        "cap": "not significant: undecided at the cap",
        "measured": "measured",
    }.get(stop, stop)


def spent_margin(lows: list[dict[str, float]], workloads: list[str]) -> dict[str, float]:
    """The margin left per workload (log) after the simpler keeps since the last faster keep, given each one's 99% lower
    bounds (ratios); a workload a keep did not measure counts as unspent for it."""
    left = dict.fromkeys(workloads, SIMPLER_MARGIN)
    for low in lows:
        for w in workloads:
            if low.get(w):
                left[w] -= max(0.0, -math.log(low[w]))
    return left
