"""A trial's phases, in order (immutable bench): start-up, the decision, the check and its confirmation, the seed.

1. **Start-up.** The incumbent's and the candidate's workers start together, in a random order,
   identically (``session.py``): neither can tell which it is. ``prepare`` is budgeted.
2. **Decision.** Paired rounds of the incumbent against the candidate (``paired.py``) until the
   keep rule (``rule.py``) decides or the cap is reached. A retried candidate (the same syntax tree
   judged against the same incumbent before, ``retry.py``) starts from that trial's rounds: its
   sequence goes on. A baseline measures against the frozen seed (``paired.SEED_MEASUREMENT``).
3. **Check and confirmation (a keep, a ``confirm``, a baseline).** The same rounds go on, with no
   pause and the same partner, until this trial's rounds hold ``exactness.CHECKED_ANSWERS`` answers of
   each kernel: every answer of both kernels is checked against the exact ADC top-k
   (``exactness.py``). Then the rule is applied again on the intervals over every round
   (``rule.confirm``): hundreds of queries more, so a kernel kept on a few lucky rounds, or whose
   combined gain was decided while a workload's margin was not, is kept only if the rule still keeps
   it. A discard's results are checked the same way, after its rounds.
4. **Against the seed (a keep).** The frozen seed's worker, started during the check (on the judge's
   CPU; after it when the judge has no CPU of its own), is paired with the candidate's until its
   combined interval is within +-2% (``paired.SEED_MEASUREMENT``): the candidate's ``vs_seed``. It
   must agree with the incumbent's recorded ``vs_seed`` times the decision's ``speedup``
   (``chain.py``), or the candidate is not kept.

Recall: every workload's recall@10 at or above ``RECALL_FLOOR`` and within ``RECALL_BAND`` (or one
query) of the exact ADC's on the same queries.
"""

from __future__ import annotations

import time

from pqkern.bench import affinity, chain, exactness, rule, throughput
from pqkern.bench.paired import SEED_KERNEL, SEED_MEASUREMENT, Comparison, Match

RECALL_BAND = 0.005
RECALL_FLOOR = 0.50


def below_floor(figures: dict) -> str:
    """'' when the candidate's recall@10 on every workload is at or above the floor."""
    for w, fig in figures.items():
        if fig["recall_at_10"] is not None and fig["recall_at_10"] < RECALL_FLOOR:
            return f"{w} recall@10 {fig['recall_at_10']:.4f} is below the floor {RECALL_FLOOR}"
    return ""


def outside_band(figures: dict) -> str:
    """'' when the candidate's recall@10 on every workload is within the band of the exact ADC's on the same queries."""
    for w, fig in figures.items():
        n = max(fig["delta_queries"], 1)
        band = max(RECALL_BAND, 1.0 / n + 1e-9)
        if fig["recall_delta"] is not None and abs(fig["recall_delta"]) > band:
            return (f"{w} recall@10 is {fig['recall_delta']:+.4f} from the exact ADC's on the same {n} queries "
                    f"(band {band:.4f})")
    return ""


def problem(cmp: Comparison) -> tuple[str, str] | None:
    """A recall or rank problem of the candidate's checked results, as ``(status, reason)``."""
    if below_floor(cmp.candidate):  # the clearest message for a kernel that skips most rows
        return "recall", below_floor(cmp.candidate)
    if cmp.contract_problem:  # rows skipped, recall still above the floor
        return "crash", cmp.contract_problem
    if outside_band(cmp.candidate):
        return "recall", outside_band(cmp.candidate)
    return None


def decided_already(cmp: Comparison, names: list[str], margin: dict | None) -> tuple[str, str] | None:
    """``(status, reason)`` when the rounds a retry continues (``retry.py``) already decide a discard: nothing new to
    run. A continued comparison that was on its way to a keep goes on (``run``)."""
    if not cmp.prior_rounds:
        return None
    cmp.intervals = throughput.intervals(cmp.rounds_data, cmp.alpha)
    outcome = rule.decide(cmp.intervals, names, margin)
    if not outcome or outcome[0] != "discard":
        return None
    cmp.decision, cmp.stop = outcome
    cmp.reason = rule.explain(cmp.stop)
    return cmp.decision, cmp.reason


def run(match: Match, cmp: Comparison, rows: dict, incumbent: str, candidate: str, margin: dict | None,
        trial) -> tuple[str, str]:
    """Every phase of one trial (``trial``: a ``trial.Trial``, for its incumbent row, cap and seed comparison; ``cmp``
    may already hold a continued comparison's rounds; ``rows``: the query-set rows, one stream, ``paired.rows_needed``,
    each phase taking the next); returns ``(status, reason)``. Raises ``paired.Failed`` for a kernel's failure."""
    t0 = time.monotonic()
    baseline = trial.incumbent is None
    names = list(match.wls)
    match.start_all({"incumbent": incumbent, "candidate": candidate})
    for label in match.started:  # in the random order they were started: neither waits for the other by its role
        match.ready(label, cmp, enforce_budget=label == "candidate")
    cmp.timings["start-up"] = time.monotonic() - t0
    t0 = time.monotonic()
    per = match.rows_per_round()

    def rest() -> object:  # the rows no phase has taken yet
        return rows[(cmp.rounds - cmp.prior_rounds) * per:]

    if baseline:
        match.pair("incumbent", "candidate", rest(), cmp, **SEED_MEASUREMENT, mode="measure")
    else:
        match.pair("incumbent", "candidate", rest(), cmp, mode="decide", cap_seconds=trial.args.cap_seconds,
                   cap_rounds=trial.args.cap_rounds, simpler_margin=margin)
    cmp.timings["paired"] = time.monotonic() - t0
    decision, stop = cmp.decision, cmp.stop
    go_on = baseline or decision in ("keep", "confirm")
    if go_on:
        t0 = time.monotonic()
        if not baseline and match.cpus[0] is not None:  # it starts up during the check, on the judge's CPU
            match.start("seed", SEED_KERNEL.read_text(encoding="utf-8"))
            affinity.hold(match.workers["seed"].proc.pid, match.cpus[0])
        before = cmp.rounds
        exactness.carry_on(match, "incumbent", "candidate", rest(), cmp, cmp.rounds - cmp.prior_rounds,
                           log=match.log)
        cmp.check_rounds = cmp.rounds - before
        if not baseline and "seed" not in match.workers:  # one CPU: after the rounds (exactness.carry_on says why)
            match.start("seed", SEED_KERNEL.read_text(encoding="utf-8"))
        cmp.timings["exactness"] = time.monotonic() - t0
        if not baseline:  # the rule again, on every round: the keep must hold on the narrower intervals
            final = rule.confirm(cmp.intervals, names, margin)
            decision, stop = final if final[0] == "discard" else ("keep", stop)
            match.log(f"confirmation after {cmp.rounds} rounds: {decision} ({stop})")
    cmp.decision, cmp.stop = ("measured", "measured") if baseline else (decision, stop)
    t0 = time.monotonic()
    match.finish("incumbent", cmp)
    keep = baseline or decision == "keep"
    if baseline or not keep:
        match.finish("candidate", cmp)
    match.settle(["incumbent", "candidate"])
    match.summaries(cmp)
    cmp.timings["checks"] = time.monotonic() - t0
    cmp.reason = rule.explain(cmp.stop)
    found = problem(cmp)
    if found or not keep:
        if keep and not baseline:
            match.finish("candidate", cmp)  # its peak memory, for its result block
        return found or (cmp.decision, cmp.reason)
    if baseline:
        return "baseline", f"measured against the frozen seed in {cmp.rounds} rounds"
    t0 = time.monotonic()
    trial.seed_cmp = seed = Comparison("measured", "measured", "", {})
    match.ready("seed", seed)
    match.pair("seed", "candidate", rest(), seed, **SEED_MEASUREMENT, mode="measure")
    match.finish("seed", seed)
    match.finish("candidate", cmp)
    match.settle(["seed", "candidate"])
    match.summaries(seed, incumbent="seed")
    cmp.timings["seed measurement"] = time.monotonic() - t0
    found = problem(seed)
    if found:
        return found
    contradiction = chain.contradiction(chain.recorded(trial.incumbent), cmp.intervals["combined"],
                                        seed.intervals["combined"])
    if contradiction:
        cmp.stop = "contradiction"
        return "discard", contradiction
    return "keep", cmp.reason
