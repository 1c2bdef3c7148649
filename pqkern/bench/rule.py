"""The keep rule (immutable bench): what the throughput intervals (``throughput.py``) must show, and each stop's name.

All figures are log throughput ratios of the candidate over the incumbent (> 0: faster), 99% intervals.

- ``faster`` (keep): the gain is decided, and no workload is slower by more than ``MAX_LOSS``. The gain is decided
  when the combined (geometric mean over the workloads) gain is above ``MIN_GAIN``, or when one workload's gain is
  above ``ONE_WORKLOAD_GAIN`` and the combined gain above zero: a real gain on one workload of three (3% alone is a 1%
  combined gain) is kept even when the others' noise keeps the combined interval wide. Every keep is confidently
  faster overall, so a chain of keeps cannot drift slower; an A/A candidate is kept at most as often as the combined
  interval misses (1%);
- ``simpler`` (keep, a candidate with a smaller syntax tree than the incumbent's, ``simplicity.py``):
  no workload is slower by more than its remaining margin. Between two faster keeps the simpler
  keeps of a branch may lose at most ``SIMPLER_MARGIN`` in all, per workload, counted at each
  keep's 99% bound, so a chain of them can never drift slower than that;
- ``confirm`` (go on): the combined gain is decided (above ``MIN_GAIN``) but a workload's margin is
  not: the rounds go on, through the check's rounds (``phases.py``), and the rule is applied again at
  their end (:func:`confirm`);
- ``slower`` / ``loss:<workload>`` (discard): confidently slower overall, or one workload confidently
  slower than ``MAX_LOSS`` (than its margin, for a simpler candidate);
- ``within`` (discard): confidently below ``MIN_GAIN``, not confidently faster at all;
- ``below-bar`` (discard): confidently faster, and confidently not by ``MIN_GAIN`` (so no workload alone can
  have gained ``ONE_WORKLOAD_GAIN`` with the others unchanged);
- ``cap`` / ``cap:<what>`` (discard): still undecided when the round or time cap is reached, naming
  what stayed undecided: ``cap`` alone when the combined gain is, ``cap:<w>[+<w>...]`` when the
  combined gain was decided and those workloads' margins were not.

A keep is decided twice: once by :func:`decide` during the rounds (``keep`` or ``confirm``), and
once by :func:`confirm` on the intervals at the end of the check's rounds, hundreds of queries
later; only a candidate the rule still keeps then is kept. Nothing kept on a few lucky rounds
survives a tail its later queries show.
"""

from __future__ import annotations

import math

from pqkern.bench.throughput import Interval

MIN_GAIN = math.log(1.01)
ONE_WORKLOAD_GAIN = math.log(1.03)  # one workload's gain that keeps when the combined gain is above zero
MAX_LOSS = math.log(0.98)
SIMPLER_MARGIN = -math.log(0.98)  # per workload, between two faster keeps
MIN_SIMPLER_MARGIN = math.log(1.002)  # below this the margin is spent: a simpler candidate is judged as any other


def _margins(intervals: dict[str, Interval], workloads: list[str], margin: dict[str, float]) -> tuple[list[str], list[str]]:
    """``(workloads confidently slower than their margin, workloads whose margin is undecided)``."""
    lost = [w for w in workloads if intervals[w].hi < -margin[w]]
    open_ = [w for w in workloads if w not in lost and not intervals[w].lo > -margin[w]]
    return lost, open_


def gain_decided(intervals: dict[str, Interval], workloads: list[str]) -> bool:
    """The combined gain is above ``MIN_GAIN``, or one workload's above ``ONE_WORKLOAD_GAIN`` and the combined above 0."""
    comb = intervals["combined"]
    return comb.lo > MIN_GAIN or (comb.lo > 0 and any(intervals[w].lo > ONE_WORKLOAD_GAIN for w in workloads))


def decide(intervals: dict[str, Interval], workloads: list[str],
           simpler_margin: dict[str, float] | None = None) -> tuple[str, str] | None:
    """``(decision, stop)`` on the current intervals, or None to go on; ``decision`` is keep, confirm (the combined gain
    is decided, a margin is not: go on, bounded, and :func:`confirm` at the end) or discard. ``simpler_margin`` (per
    workload, log) for a simpler candidate with margin left."""
    comb = intervals["combined"]
    gain = gain_decided(intervals, workloads)
    if gain and all(intervals[w].lo > MAX_LOSS for w in workloads):
        return "keep", "faster"
    if simpler_margin:
        lost, open_ = _margins(intervals, workloads, simpler_margin)
        if lost:
            return "discard", "slower" if comb.hi < 0 else f"loss:{lost[0]}"
        return ("keep", "simpler") if not open_ else None
    lost, open_ = _margins(intervals, workloads, dict.fromkeys(workloads, -MAX_LOSS))
    if comb.hi < 0:
        return "discard", "slower"
    if lost:
        return "discard", f"loss:{lost[0]}"
    if gain:
        return ("keep", "faster") if not open_ else ("confirm", "faster")
    if comb.hi < MIN_GAIN:
        return "discard", "below-bar" if comb.lo > 0 else "within"
    return None


def confirm(intervals: dict[str, Interval], workloads: list[str], simpler_margin: dict[str, float] | None = None,
            ) -> tuple[str, str]:
    """The final decision on a candidate :func:`decide` kept or sent on: keep only if the rule still keeps it on these
    (later, narrower) intervals; else the discard's stop, or what stayed undecided (:func:`at_cap`)."""
    outcome = decide(intervals, workloads, simpler_margin)
    if outcome and outcome[0] in ("keep", "discard"):
        return outcome
    return "discard", at_cap(intervals, workloads, simpler_margin)


def at_cap(intervals: dict[str, Interval], workloads: list[str] | None = None,
           simpler_margin: dict[str, float] | None = None) -> str:
    """The stop of a comparison that reached its cap undecided: ``cap`` when the combined gain is undecided, else
    ``cap:`` and the workloads whose margin is (``below-bar`` only when the gain is confidently below the bar)."""
    comb = intervals.get("combined")
    if comb is None:
        return "cap"
    workloads = workloads if workloads is not None else [w for w in intervals if w != "combined"]
    margin = simpler_margin or dict.fromkeys(workloads, -MAX_LOSS)
    if not simpler_margin and not gain_decided(intervals, workloads):
        return "below-bar" if 0 < comb.lo and comb.hi < MIN_GAIN else "cap"
    _, open_ = _margins(intervals, workloads, margin)
    return f"cap:{'+'.join(open_)}" if open_ else "cap"


def explain(stop: str) -> str:
    """The verdict's words for a stop."""
    gain, loss = f"{math.exp(MIN_GAIN) - 1:.0%}", f"{1 - math.exp(MAX_LOSS):.0%}"
    one = f"{math.exp(ONE_WORKLOAD_GAIN) - 1:.0%}"
    if stop.startswith("loss:"):
        return f"slower on {stop[5:]}: 99% confident of a throughput loss above its margin ({loss} for a faster candidate)"
    if stop.startswith("cap:"):
        what = stop[4:].split("+")
        return (f"undecided at the cap: {' and '.join(what)} not shown to be within {'its' if len(what) == 1 else 'their'} "
                f"margin ({loss} slower at most for a faster candidate)")
    return {
        "faster": f"faster: 99% confident of a throughput gain above {gain} (or above {one} on one workload) with no "
                  f"workload slower by {loss}",
        "simpler": "simpler: a smaller syntax tree, and 99% confident no workload lost more than the margin left",
        "same-code": "simpler: the same syntax tree as the incumbent (only comments, docstrings or layout changed)",
        "slower": "slower",
        "within": f"not faster: 99% confident the throughput gain is below {gain}",
        "below-bar": f"faster, but below the {gain} bar: 99% confident of a gain, and of one below {gain}",
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
