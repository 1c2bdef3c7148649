"""Paired, interleaved timing of kernels (immutable bench): the engine behind the trial's verdict, asv and the upstream page.

Each kernel runs in its own jailed worker (``session.KernelProcess``), so none can reach another's
module, dispatchers, index or numba configuration, and none can tell which role it plays: every
worker starts the same way (in a random order) and gets the same kind of requests. A
:class:`Match` holds the workers of one run on the same workloads and the same queries (fresh
ones, ``queries.py``, unless told otherwise). The judge (this process) drives two of them in
rounds (:meth:`Match.pair`). In each round, for each workload, it takes the next queries of the
run's random order and has both kernels search each one, in a random order, each timed query led
by one untimed call on another fresh query (its result is checked too), so that whatever the
other kernel left in the shared caches, each kernel's working set is as warm as its own last
call left it. Per query, ``x = ln(cpu_first / cpu_second)``, where each CPU time is what the
operating system accounted to that worker's process for the request, read by the judge
(``session.py``): nothing a worker reports decides anything, and time spent descheduled on a
shared machine is not the kernel's. The round's observation per workload is the two kernels' summed
CPU time over its queries, and every speed-up is a throughput ratio (``throughput.py``): the sum of
the incumbent's times over the candidate's. Shared noise (another process on the core, frequency
changes) hits both kernels of a pair alike and largely cancels.

Every result is checked at once (``workloads.py``: types, ids, distances against the reference
ADC) and, later, against the exact ADC top-k (:meth:`Match.settle`, which also measures recall).
Nothing heavy runs on the judge's side while kernels are being timed for a decision.

``decide`` stops as soon as the confidence sequences (``throughput.py``) settle the keep rule
(``rule.py``); ``measure`` runs a fixed number of rounds, or until the combined interval is as narrow
as asked (``until``), and only reports (the baseline, asv, the upstream page, the seed measurement of
a keep). Who failed decides what a failure means: the
candidate's is a crash (or timeout); the incumbent's is reported as ``incumbent`` (the trial
revokes its keep); the frozen seed's is the harness's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pqkern.bench import affinity, budget, recall, rule, throughput
from pqkern.bench.datasets import is_real
from pqkern.bench.fixture import FixtureError
from pqkern.bench.queries import QuerySet, draw_seed, fixed_queries, fresh_queries, parse_seed, rng, warm_vectors
from pqkern.bench.session import Block, KernelProcess, WorkerFailure
from pqkern.bench.worker import ContractError
from pqkern.bench.workloads import WORKLOADS, Checked, K, Workload, judged, make, parse, real_unavailable

POOL = 2000  # query-set rows for one comparison's rounds
# Timed query pairs per workload per round. Two of each: a round's summed time is then less noisy, and a flat query of
# the real descriptors (595k rows) costs about two IVF queries.
PAIRS = {"flat": 2, "ivf": 2}
# On the IVF layouts an untimed call on another fresh query before each timed call brings that kernel's working set
# (its code, its tables, the codebook) back to where its own last call left it, whatever the other kernel left in the
# shared caches: a kernel that evicts them at the end of each call slows only itself. Its result is checked like any
# other, and it looks like any other query to the kernel (each query is a request of its own). A flat scan streams
# megabytes of codes from memory whatever the caches hold: its timed calls run back to back instead, closer in time,
# which halves a flat pair's cost and the noise of a machine whose state changes between the two calls
# (scripts/pair_noise.py).
WARM_CALLS = {"flat": False, "ivf": True}
# Paired timing stops undecided after this many rounds, or this long, whichever comes first. At 1M, quiet, a round
# takes about 80 ms at the seed's speed; a 3% gain is decided in about 30 rounds (40 for nine in ten), a nil change ends
# `within` after about 100 (narrowing the interval to +-1%) or at the cap. Counted in rounds, the cap gives the same
# power whatever a round costs; the seconds bound a loaded machine and kernels much slower than the seed, whose 3%
# gains may then end undecided (measured: scripts/verdict_power.py, scripts/pair_noise.py).
CAP_ROUNDS = 120
CAP_SECONDS = 20.0
# Answers each kernel gives, in all, before a keep: every one checked (exactness.py). A candidate whose combined gain is
# decided while a workload's margin is not goes on until the rounds hold this many too (the trial's check: 208 rounds at
# ten answers a round on three workloads, 347 at six on two), and is judged again on the narrower intervals.
CHECKED_ANSWERS = 2080
# A measurement against the frozen seed (a keep's vs_seed, a baseline, asv): at least ``min_rounds``, then until the
# combined interval is within +-2% (half-width, log), at most ``rounds``: scans are there in about 30 rounds, kernels whose
# cost depends on the query (pruning) later.
SEED_MEASUREMENT = {"min_rounds": 30, "rounds": 300, "until": math.log(1.02)}
TOLERANCE = 0.01
RECALL_SAMPLE = 250  # rows per workload on which absolute recall is measured (ground truth: a BLAS scan per fresh query)
SEED_KERNEL = Path(__file__).resolve().parent / "seed_kernel.py"


def _geomean(values: list[int]) -> int | None:
    return int(round(math.exp(np.mean(np.log(np.maximum(values, 1)))))) if values else None


@dataclass
class KernelFigures:
    """What one kernel did on one workload in a run: its timed calls, and every result it returned, checked."""

    checked: list[Checked] = field(default_factory=list)
    wall_ns: list[int] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)
    warm_cpu_ns: list[int] = field(default_factory=list)
    rank_problem: str = ""

    def add(self, checked: Checked, block: Block | None, warm: Block | None = None) -> None:
        """A checked result; ``block`` when it was timed, ``warm`` the untimed call that led it."""
        self.checked.append(checked)
        if block is not None:
            self.wall_ns.extend(int(v) for v in block.wall_ns)
            self.cpu_ns.extend(int(v) for v in block.cpu_ns)
        if warm is not None:
            self.warm_cpu_ns.extend(int(v) for v in warm.cpu_ns)

    def results(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, found ids, sorted reference distances)`` of every checked result, in the order searched."""
        if not self.checked:
            return np.empty(0, np.int64), np.empty((0, 0), np.int64), np.empty((0, 0))
        joined = Checked.join(self.checked)
        return joined.rows, joined.ids, joined.ref

    def summary(self, wl: Workload) -> dict:
        """Timed figures (geomean wall and CPU ns, the CPU time's p50 and p99 and its sum over the timed queries) and recall
        over every checked result."""
        rows, found, _ = self.results()
        p50, p99 = (np.percentile(self.cpu_ns, [50, 99]).round().astype(int).tolist() if self.cpu_ns else (None, None))
        return {"queries": len(self.wall_ns), "checked_queries": int(rows.size),
                "geomean_ns_per_query": _geomean(self.wall_ns), "geomean_cpu_ns_per_query": _geomean(self.cpu_ns),
                "p50_ns": p50, "p99_ns": p99, "cpu_ns_total": int(sum(self.cpu_ns)),
                "max_rel_error": max((c.worst for c in self.checked), default=0.0),
                **recall.figures(wl, rows, found, RECALL_SAMPLE if wl.queries.fresh else None)}


@dataclass
class Comparison:
    """The outcome of a run: decision, intervals, each kernel's figures, and what the run cost."""

    decision: str  # keep, discard, measured, crash, timeout, harness, or incumbent (the incumbent failed)
    stop: str  # faster, simpler, slower, within, below-bar, loss:<workload>, cap, measured, or the failure's stage
    reason: str
    intervals: dict[str, throughput.Interval]  # throughput, per workload and "combined" (throughput.py)
    candidate: dict[str, dict] = field(default_factory=dict)
    incumbent: dict[str, dict] = field(default_factory=dict)
    prepare_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    setup_seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # prepare and its warm-up searches
    peak_mem_mb: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    check_rounds: int = 0  # the rounds that went on for the exactness check after a keep decision
    seconds: float = 0.0
    contract_problem: str = ""  # the candidate's top-k is not the nearest by ADC (reported after recall)
    queries: str = ""  # which queries: "fresh, seed 0x..." once the run is over, or "fixed, ..."
    query_seed: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    records: list[dict] = field(default_factory=list)
    rounds_data: dict[str, list[list[int]]] = field(default_factory=dict)  # per workload, each round's (first, second) CPU ns
    alpha: float = throughput.ALPHA
    prior_rounds: int = 0  # rounds continued from an earlier trial's evidence (retry.py), counted in ``rounds``

    def to_json(self) -> dict:
        return {"estimand": "throughput", "decision": self.decision, "stop": self.stop, "reason": self.reason,
                "rounds": self.rounds, "check_rounds": self.check_rounds, "alpha": self.alpha,
                "prior_rounds": self.prior_rounds, "rounds_data": self.rounds_data,
                "contract_problem": self.contract_problem, "seconds": round(self.seconds, 3), "queries": self.queries,
                "query_seed": self.query_seed, "timings": {k: round(v, 3) for k, v in self.timings.items()},
                "intervals": {w: dict(zip(("speedup", "lo", "hi"), iv.as_ratio(), strict=True), rounds=iv.rounds, sd=iv.sd)
                              for w, iv in self.intervals.items()},
                "candidate": self.candidate, "incumbent": self.incumbent, "prepare_seconds": self.prepare_seconds,
                "setup_seconds": self.setup_seconds, "peak_mem_mb": self.peak_mem_mb, "records": self.records}


class Failed(Exception):
    """A kernel of the match failed: ``label`` says which, ``kind`` how (the worker's kinds, or contract)."""

    def __init__(self, label: str, kind: str, message: str):
        super().__init__(message)
        self.label, self.kind = label, kind


def failure(cmp: Comparison, e: Failed) -> Comparison:
    """Record ``e`` in ``cmp``: the candidate's failure is a crash or timeout, the incumbent's is ``incumbent``, any
    other kernel's (the frozen seed's) or the harness's own is ``harness``."""
    reason = f"time budget {e}" if e.kind == "timeout" else str(e)
    if e.kind == "harness" or e.label not in ("candidate", "incumbent"):
        cmp.decision, cmp.reason = "harness", (reason if e.kind == "harness" else f"the {e.label} failed: {reason}")
    elif e.label == "incumbent":
        cmp.decision, cmp.reason = "incumbent", reason
    else:
        cmp.decision, cmp.reason = ("timeout" if e.kind == "timeout" else "crash"), reason
    cmp.stop = e.kind
    return cmp


class Match:
    """Kernels in jailed workers, on the same workloads and queries, for one run."""

    def __init__(self, wls: dict[str, Workload], queries: QuerySet, *, time_budget: float = 600.0, jail: bool = True,
                 threads: int = 1, k: int = K, pairs: dict[str, int] | None = None, warm_calls: dict[str, bool] | None = None,
                 log=None):
        self.wls, self.queries, self.k, self.jail, self.threads = wls, queries, k, jail, threads
        self.pairs, self.warm_calls = pairs or PAIRS, warm_calls or WARM_CALLS
        self.deadline = time.monotonic() + time_budget
        self.warm = warm_vectors(queries.fx, queries.seed)  # for the workers' compile pass and start-up warm-up
        self.coin = rng(queries.seed or 0, "pairs") if queries.fresh else np.random.default_rng()  # who goes first
        self.log = log or (lambda msg: None)
        self.workers: dict[str, KernelProcess] = {}
        self.started: list[str] = []
        self.figures: dict[str, dict[str, KernelFigures]] = {}
        self.records: list[dict] = []
        self.cpus = affinity.plan(threads)  # the judge's and the timed workers' (affinity.py)

    def __enter__(self) -> Match:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, label: str, source: str) -> None:
        """Start ``label``'s worker on ``source`` (it imports and compiles in the background). The label stays here:
        the worker is started exactly as every other."""
        self.workers[label] = KernelProcess(source, {w: wl.spec() for w, wl in self.wls.items()}, self.warm,
                                            self.k, self.deadline, threads=self.threads, jail=self.jail)
        self.figures[label] = {w: KernelFigures() for w in self.wls}

    def start_all(self, sources: dict[str, str]) -> None:
        """Start these workers in a random order (nothing, not even the order of their process ids, says which is
        which)."""
        labels = list(sources)
        random.SystemRandom().shuffle(labels)
        for label in labels:
            self.start(label, sources[label])
        self.started = labels  # get them ready in this order too: neither waits for the other by its role

    def ready(self, label: str, cmp: Comparison, enforce_budget: bool = False) -> None:
        """Wait until ``label``'s kernel is prepared and warm; record its prepare time; check its budget if asked."""
        worker = self.workers[label]
        try:
            worker.ready()
        except WorkerFailure as e:
            raise Failed(label, e.kind, str(e)) from None
        setup = worker.setup
        cmp.prepare_seconds[label] = {w: ns / 1e9 for w, ns in setup.prepare_ns.items()}
        cmp.setup_seconds[label] = {w: (ns + setup.warm_ns.get(w, 0)) / 1e9 for w, ns in setup.prepare_ns.items()}
        if enforce_budget:
            for w, wl in self.wls.items():
                problem = budget.prepare_problem(w, wl.num_rows, setup.prepare_ns[w])
                if problem:
                    raise Failed(label, "contract", problem)

    def calls(self, w: str, t: int, rows: np.ndarray) -> list[tuple[int | None, int]]:
        """Workload ``w``'s calls in round ``t`` of a phase on ``rows``: ``(untimed warm-up row or None, timed row)``."""
        kind = self.wls[w].kind
        pairs, warm = self.pairs[kind], self.warm_calls[kind]
        mine = [int(r) for r in rows[t * pairs * (1 + warm): (t + 1) * pairs * (1 + warm)]]
        return [(mine[2 * i], mine[2 * i + 1]) for i in range(pairs)] if warm else [(None, r) for r in mine]

    def rounds_in(self, rows: np.ndarray) -> int:
        """How many rounds ``rows`` hold."""
        return len(rows) // self.rows_per_round()

    def rows_per_round(self) -> int:
        """The query-set rows a round takes (the workload that takes most: each workload reads the same rows)."""
        return max(self.pairs[wl.kind] * (1 + self.warm_calls[wl.kind]) for wl in self.wls.values())

    def search(self, label: str, w: str, warm_row: int | None, row: int) -> tuple[Block, Block | None]:
        """One timed query of ``label``'s kernel, led by an untimed one on ``warm_row`` (each a request of its own, the
        same to the kernel): ``(block, warm block)``."""
        wl, worker = self.wls[w], self.workers[label]
        try:
            warm = None if warm_row is None else worker.search(w, *wl.request(np.array([warm_row])))
            block = worker.search(w, *wl.request(np.array([row])))
        except WorkerFailure as e:
            raise Failed(label, e.kind, str(e)) from None
        return block, warm

    def check(self, label: str, w: str, warm_row: int | None, row: int, block: Block, warm: Block | None) -> None:
        """Check ``label``'s timed and untimed results at once (one call of the workload's check for both) and add
        them to its figures."""
        wl, figures = self.wls[w], self.figures[label][w]
        rows = np.array([row] if warm is None else [row, warm_row])
        ids = block.ids if warm is None else np.concatenate([block.ids, warm.ids])
        dists = block.dists if warm is None else np.concatenate([block.dists, warm.dists])
        try:
            checked = wl.check(rows, ids, dists, TOLERANCE)
        except ContractError as e:
            raise Failed(label, "contract", str(e)) from None
        figures.add(Checked(checked.rows[:1], checked.ids[:1], checked.ref[:1], checked.worst), block, warm)
        if warm is not None:
            figures.add(Checked(checked.rows[1:], checked.ids[1:], checked.ref[1:], checked.worst), None)

    def pair(self, first: str, second: str, rows: np.ndarray, cmp: Comparison, **how) -> None:
        """Rounds of ``first`` against ``second`` on ``rows`` (in order) until decided, measured or capped: fills
        ``cmp``'s intervals, rounds, decision and stop (speed-ups are ``second``'s over ``first``); ``how``: see
        ``_rounds``. Both workers are held on one CPU and the judge on another meanwhile (``affinity.py``)."""
        with affinity.timing([self.workers[label].proc.pid for label in (first, second)], self.cpus):
            self._rounds(first, second, rows, cmp, **how)

    def _rounds(self, first: str, second: str, rows: np.ndarray, cmp: Comparison, *, mode: str = "decide",
                rounds: int | None = None, cap_seconds: float = CAP_SECONDS, cap_rounds: int = CAP_ROUNDS,
                simpler_margin: dict[str, float] | None = None, after_round=None, until: float | None = None,
                min_rounds: int = throughput.MIN_ROUNDS) -> None:
        """``pair``'s rounds, appended to ``cmp.rounds_data`` (which may hold an earlier trial's rounds of the same
        comparison, ``retry.py``, or this run's earlier phase): ``mode`` decide (``rule.decide`` after every round from
        ``min_rounds`` on, until decided or ``cap_rounds`` / ``cap_seconds`` more rounds) or measure (at most ``rounds``
        more; with ``until``, stop once the combined interval's half-width is at most ``until``, log, after
        ``min_rounds``); ``after_round(t)`` is called after each round."""
        names = list(self.wls)
        data = cmp.rounds_data
        for w in names:
            data.setdefault(w, [])
        done = min(len(data[w]) for w in names)
        max_rounds = self.rounds_in(rows) if rounds is None else min(self.rounds_in(rows), rounds)
        start = time.monotonic()
        cmp.decision, cmp.stop = ("measured", "measured") if mode == "measure" else ("discard", "cap")
        if mode == "decide" and self._decided(cmp, names, simpler_margin, done, min_rounds):
            return
        for t in range(max_rounds):
            for w in names:
                sums = [0, 0]
                for warm_row, row in self.calls(w, t, rows):
                    a, b = self._pair(w, first, second, warm_row, row, self.coin, done + t)
                    sums[0], sums[1] = sums[0] + a, sums[1] + b
                data[w].append(sums)
            cmp.intervals = throughput.intervals(data, cmp.alpha)
            cmp.rounds = done + t + 1
            if (t + 1) % 25 == 0:
                self.log(_progress(cmp))
            if after_round:
                after_round(t)
            if mode == "measure":
                if until is not None and cmp.rounds >= min_rounds and _half_width(cmp.intervals["combined"]) <= until:
                    return
                continue
            if self._decided(cmp, names, simpler_margin, cmp.rounds, min_rounds):
                return
            if t + 1 >= cap_rounds or time.monotonic() - start > cap_seconds:
                break
        if mode == "decide":
            cmp.stop = rule.at_cap(cmp.intervals, names, simpler_margin)

    @staticmethod
    def _decided(cmp: Comparison, names: list[str], simpler_margin, rounds: int, min_rounds: int) -> bool:
        """Apply the keep rule to ``cmp``'s intervals once ``min_rounds`` are in; True (decision and stop set) when it
        decides."""
        if rounds < min_rounds:
            return False
        if not cmp.intervals:
            cmp.intervals = throughput.intervals(cmp.rounds_data, cmp.alpha)
        outcome = rule.decide(cmp.intervals, names, simpler_margin)
        if outcome:
            cmp.decision, cmp.stop = outcome
        return outcome is not None

    def _pair(self, w: str, first: str, second: str, warm_row: int | None, row: int, coin, t: int) -> tuple[int, int]:
        """One query searched by both kernels back to back, in a random order, then every result checked: the two
        kernels' CPU ns, ``first``'s then ``second``'s."""
        labels = (first, second) if coin.random() < 0.5 else (second, first)
        blocks, warms = {}, {}
        for label in labels:
            blocks[label], warms[label] = self.search(label, w, warm_row, row)
        for label in labels:  # after both searched: the judge's work never sits between two timed calls of a pair
            self.check(label, w, warm_row, row, blocks[label], warms[label])
        self.records.append({"round": t, "workload": w, "query": int(row), "first": labels[0],
                             **{f"{label}_{clock}_ns": int(getattr(blocks[label], f"{clock}_ns")[0])
                                for label in (first, second) for clock in ("cpu", "wall")}})
        return max(int(blocks[first].cpu_ns[0]), 1), max(int(blocks[second].cpu_ns[0]), 1)

    def settle(self, labels: list[str]) -> None:
        """Check every result of these kernels against the exact ADC top-k (computed once per query, bounded by the
        smallest k-th distance any of them returned), and the candidate's untimed work (the other kernels' was
        checked when they were candidates). Raises Failed for any kernel but the candidate whose results are wrong,
        and for the candidate's untimed work; the candidate's wrong results are its ``rank_problem``."""
        for w, wl in self.wls.items():
            got = {label: self.figures[label][w].results() for label in labels}
            rows = np.concatenate([g[0] for g in got.values()])
            if rows.size:
                bounds = np.concatenate([g[2][:, -1] for g in got.values()])
                wl.oracle(rows, bounds)
            for label in labels:
                figures = self.figures[label][w]
                problem = self.untimed_problem(label, w) if label == "candidate" else ""
                if problem:
                    raise Failed(label, "contract", problem)
                for checked in figures.checked:
                    figures.rank_problem = figures.rank_problem or wl.rank_problem(checked, TOLERANCE)
                if figures.rank_problem and label != "candidate":  # the candidate's is reported after its recall
                    raise Failed(label, "contract", figures.rank_problem)

    def untimed_problem(self, label: str, w: str) -> str:
        """The kernel's untimed work against its budget (``budget.py``): set-up (prepare and what its warm-up searches
        cost beyond searching), and the comparison's warm-up calls beside its timed calls."""
        figures, setup, wl = self.figures[label][w], self.workers[label].setup, self.wls[w]
        return (budget.prepare_problem(w, wl.num_rows, setup.prepare_ns[w], setup.warm_ns.get(w, 0),
                                       setup.warm_calls.get(w, 0), [t / wl.calls_per_query for t in figures.cpu_ns])
                or budget.untimed_problem(w, figures.warm_cpu_ns, figures.cpu_ns))

    def summaries(self, cmp: Comparison, candidate: str = "candidate", incumbent: str = "incumbent") -> None:
        """Fill ``cmp``'s per-workload figures of two kernels and the candidate's first rank problem."""
        for w, wl in self.wls.items():
            cmp.candidate[w] = self.figures[candidate][w].summary(wl)
            cmp.incumbent[w] = self.figures[incumbent][w].summary(wl)
        cmp.contract_problem = next((self.figures[candidate][w].rank_problem for w in self.wls
                                     if self.figures[candidate][w].rank_problem), "")

    def finish(self, label: str, cmp: Comparison) -> None:
        """End ``label``'s worker and record its peak memory."""
        try:
            cmp.peak_mem_mb[label] = self.workers[label].finish() / 1024
        except WorkerFailure as e:
            raise Failed(label, e.kind, str(e)) from None

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def answers_per_round(match: Match) -> int:
    """What each kernel answers in a round: a timed query per pair, and an untimed one before it where there is one."""
    return sum(match.pairs[wl.kind] * (1 + match.warm_calls[wl.kind]) for wl in match.wls.values())


def confirm_rounds_of(match: Match) -> int:
    """The rounds that hold ``CHECKED_ANSWERS`` answers of each kernel: where the trial's check ends and a keep is
    confirmed."""
    return -(-CHECKED_ANSWERS // answers_per_round(match))


def rows_needed(kinds: list[str], cap_rounds: int, pairs: dict[str, int] | None = None,
                warm_calls: dict[str, bool] | None = None) -> int:
    """Query-set rows a trial may take, in one stream, for workloads of these kinds: the decision (at most the cap) and
    the check (to ``CHECKED_ANSWERS``) overlap, then the seed measurement (``SEED_MEASUREMENT``); every phase takes the
    next rows, so no query is searched twice by a worker."""
    pairs, warm_calls = pairs or PAIRS, warm_calls or WARM_CALLS
    answers = sum(pairs[k] * (1 + warm_calls[k]) for k in kinds)
    per = max(pairs[k] * (1 + warm_calls[k]) for k in kinds)
    return per * (max(cap_rounds, -(-CHECKED_ANSWERS // answers)) + SEED_MEASUREMENT["rounds"])


def rows_per_round(pairs: dict[str, int] | None = None, warm_calls: dict[str, bool] | None = None) -> int:
    """The query-set rows a round takes from its phase's rows (the workload that takes most)."""
    pairs, warm_calls = pairs or PAIRS, warm_calls or WARM_CALLS
    return max(pairs[kind] * (1 + warm_calls[kind]) for kind in pairs)


def plan(queries: QuerySet, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Each phase's rows of the query set, in the run's random order: consecutive slices of a set large enough for
    all of them, else the whole set (in its own order) for each."""
    order = rng(queries.seed, "order") if queries.fresh else np.random.default_rng(0)
    if sum(sizes.values()) <= len(queries):
        bounds = np.cumsum([0, *sizes.values()])
        return {phase: a + order.permutation(b - a) for phase, a, b in zip(sizes, bounds[:-1], bounds[1:], strict=True)}
    return {phase: order.permutation(len(queries)) for phase in sizes}


def query_set(fx, count: int, query_seed: int | None = None, fixed: bool = False) -> QuerySet:
    """The queries of a run: fresh for ``query_seed`` (drawn now when None), or the fixture's own when ``fixed``."""
    if fixed:
        return fixed_queries(fx)
    return fresh_queries(fx, draw_seed() if query_seed is None else query_seed, count)


def compare(fx, incumbent_source: str, candidate_source: str, workloads: list[str] | tuple[str, ...] = WORKLOADS, *,
            mode: str = "decide", rounds: int | None = None, cap_seconds: float = CAP_SECONDS,
            cap_rounds: int = CAP_ROUNDS, until: float | None = None, min_rounds: int = throughput.MIN_ROUNDS,
            confirm_rounds: int | None = None, time_budget: float = 600.0, query_seed: int | None = None,
            fixed: bool = False, jail: bool = True, threads: int = 1, k: int = K, pairs: dict[str, int] | None = None,
            warm_calls: dict[str, bool] | None = None, log=None) -> Comparison:
    """Compare two kernel sources on ``fx`` (see the module docstring): one pair of rounds, settled; never raises for a
    kernel's failure. Fresh queries unless ``fixed``. In decide mode a candidate whose combined gain is decided while a
    workload's margin is not (``confirm``) goes on for up to ``confirm_rounds`` rounds in all (default: the trial's check,
    ``confirm_rounds_of``), and the rule is applied again (``rule.confirm``), as the trial does through its check. The
    workloads' data must be built (``datasets.extend``): the judge only loads it."""
    start = time.monotonic()
    queries = query_set(fx, POOL, query_seed, fixed)
    cmp = Comparison("measured", "measured", "", {})
    try:
        wls = {w: make(w, fx, queries, k) for w in workloads}  # loaded only: the caller built them (datasets.py)
    except (ValueError, FixtureError) as e:
        cmp.decision, cmp.reason = "harness", str(e)
        return cmp
    rows = plan(queries, {"pair": POOL})["pair"]
    with Match(wls, queries, time_budget=time_budget, jail=jail, threads=threads, k=k, pairs=pairs, warm_calls=warm_calls,
               log=log) as match:
        try:
            match.start_all({"incumbent": incumbent_source, "candidate": candidate_source})
            for label in match.started:
                match.ready(label, cmp)
            cmp.timings["start-up"] = time.monotonic() - start
            match.pair("incumbent", "candidate", rows, cmp, mode=mode, rounds=rounds, cap_seconds=cap_seconds,
                       cap_rounds=cap_rounds, until=until, min_rounds=min_rounds)
            if mode == "decide" and cmp.decision == "confirm":
                stop = cmp.stop
                total = confirm_rounds or confirm_rounds_of(match)
                match.pair("incumbent", "candidate", rows[cmp.rounds * match.rows_per_round():], cmp, mode="measure",
                           rounds=max(0, total - cmp.rounds))
                cmp.decision, cmp.stop = rule.confirm(cmp.intervals, list(wls))
                cmp.stop = stop if cmp.decision == "keep" else cmp.stop
            cmp.timings["paired"] = time.monotonic() - start - cmp.timings["start-up"]
            for label in ("incumbent", "candidate"):
                match.finish(label, cmp)
            t0 = time.monotonic()
            match.settle(["incumbent", "candidate"])
            match.summaries(cmp)
            cmp.timings["checks"] = time.monotonic() - t0
            cmp.reason = rule.explain(cmp.stop)
        except Failed as e:
            failure(cmp, e)
        cmp.records = match.records
    cmp.queries, cmp.query_seed = queries.describe(), (f"{queries.seed:#x}" if queries.fresh else "")
    cmp.seconds = time.monotonic() - start
    return cmp


def summary(cmp: Comparison) -> str:
    """The decision and one labelled line per workload: what the screening command prints."""
    lines = [f"decision: {cmp.decision} ({cmp.stop}; {cmp.reason}) rounds={cmp.rounds} time={cmp.seconds:.0f}s"]
    return "\n".join(lines + [f"{w}: {ratio_text(iv)}" for w, iv in cmp.intervals.items()])


def ratio_text(iv: throughput.Interval) -> str:
    """A speed-up and its 99% interval as the verdict and the progress lines print it: ``1.043x [1.021, 1.066]``."""
    s, lo, hi = iv.as_ratio()
    return f"{s:.3f}x [{lo:.3f}, {hi:.3f}]"


def _half_width(iv: throughput.Interval) -> float:
    return (iv.hi - iv.lo) / 2


def _progress(cmp: Comparison) -> str:
    parts = [f"{w} {ratio_text(iv)}" for w, iv in cmp.intervals.items()]
    return f"round {cmp.rounds}: " + "; ".join(parts)


def kernel_source(spec: str) -> str:
    """A kernel's source from ``seed`` (the frozen seed), a file, or a git revision of pqkern/kernels.py (``HEAD``)."""
    if spec == "seed":
        return SEED_KERNEL.read_text(encoding="utf-8")
    if Path(spec).is_file():
        return Path(spec).read_text(encoding="utf-8")
    show = subprocess.run(["git", "show", f"{spec}:pqkern/kernels.py"], capture_output=True, text=True)
    if show.returncode:
        raise OSError(f"{spec!r} is neither 'seed', a file, nor a git revision with pqkern/kernels.py")
    return show.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqkern.bench.paired", description=__doc__.split("\n")[0])
    p.add_argument("--candidate", default="pqkern/kernels.py", help="kernel to judge: a file or a git revision "
                   "(default: the working tree's pqkern/kernels.py)")
    p.add_argument("--incumbent", default="seed", help="kernel to compare with: 'seed' (the frozen seed, default), a file, "
                   "or a git revision such as HEAD (its pqkern/kernels.py)")
    p.add_argument("--workload", action="append", help="workload(s), repeatable or comma-separated: flat, ivf, real, "
                   "real-ivf or flat@N (default: the trial's: real, ivf and real-ivf beside a synthetic fixture, flat and ivf "
                   "on a real one)")
    p.add_argument("--mode", choices=("decide", "measure"), default="measure")
    p.add_argument("--rounds", type=int, help="at most this many rounds (measure: exactly, if the pool allows)")
    p.add_argument("--seed-measurement", action="store_true", help="measure as the trial measures a keep against the "
                   f"frozen seed: {SEED_MEASUREMENT['min_rounds']} rounds at least, then until the combined interval is "
                   f"within +-2%%, {SEED_MEASUREMENT['rounds']} at most")
    p.add_argument("--query-seed", help="replay the fresh queries of a recorded run (its query_seed); default: new ones")
    p.add_argument("--fixed-queries", action="store_true", help="the fixture's own queries instead of fresh ones")
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--cap-seconds", type=float, default=CAP_SECONDS)
    p.add_argument("--cap-rounds", type=int, default=CAP_ROUNDS)
    p.add_argument("--k", type=int, default=K, help=f"neighbours per query (default {K})")
    p.add_argument("--pairs", type=int, nargs=2, metavar=("FLAT", "IVF"), help=f"query pairs per round (default {PAIRS})")
    p.add_argument("--warm-calls", choices=("default", "none", "both"), default="default",
                   help=f"an untimed call before each timed one (default {WARM_CALLS})")
    p.add_argument("--no-jail", action="store_true")
    p.add_argument("--cpus", help="the CPUs to reserve, as pqkern-trial --cpus (default: a free set; under a trial, the "
                   "trial's)")
    p.add_argument("--result-json", help="write the comparison here")
    p.add_argument("--summary", action="store_true", help="print only the decision and one labelled line per workload "
                   "(estimate and 99%% interval of the candidate's speed-up over the incumbent) instead of the JSON")
    args = p.parse_args(argv)
    from pqkern.bench import cpus
    from pqkern.bench.fixture import load_fixture
    from pqkern.bench.policy import PolicyError, violations

    try:
        sources = {role: kernel_source(spec) for role, spec in (("incumbent", args.incumbent), ("candidate", args.candidate))}
        for role, source in sources.items():
            found = violations(source)
            if found:
                raise PolicyError(f"the {role}", found)
        seed = parse_seed(args.query_seed) if args.query_seed else None
        fx = load_fixture(args.source)
    except (OSError, ValueError, FixtureError) as e:
        print(f"paired: {e}", file=sys.stderr)
        return 1
    try:  # no two timings share a CPU: the screen waits for a free set like a trial (cpus.py)
        reservation = cpus.reserve("python -m pqkern.bench.paired", Path.cwd(), wanted=cpus.parse(args.cpus))
    except (cpus.CpuError, cpus.Unusable) as e:
        print(f"paired: {e}", file=sys.stderr)
        return 1
    with reservation:
        return _judge(args, fx, sources, seed)


def _judge(args: argparse.Namespace, fx, sources: dict[str, str], seed: int | None) -> int:
    """``main``'s comparison, under its CPU reservation: build what is missing, compare, print, write."""
    from pqkern.bench import datasets

    workloads = tuple(w for spec in args.workload or [] for w in spec.split(",") if w) or judged(fx.source)
    why = real_unavailable(fx) if not args.workload and any(is_real(w) for w in workloads) else ""
    if why:
        print(f"paired: without the real-descriptor workload: {why}", file=sys.stderr)
        workloads = WORKLOADS
    try:
        for w in workloads:
            parse(w)
        datasets.extend(fx, workloads)  # built once (progress on stderr), before anything is judged
    except (FixtureError, ValueError) as e:
        print(f"paired: {e}", file=sys.stderr)
        return 1
    how = dict(SEED_MEASUREMENT, mode="measure") if args.seed_measurement else {"mode": args.mode, "rounds": args.rounds}
    cmp = compare(fx, sources["incumbent"], sources["candidate"], workloads, **how,
                  cap_seconds=args.cap_seconds, cap_rounds=args.cap_rounds, query_seed=seed, fixed=args.fixed_queries,
                  jail=not args.no_jail, k=args.k, pairs=dict(zip(WORKLOADS, args.pairs, strict=True)) if args.pairs else None,
                  warm_calls=None if args.warm_calls == "default" else dict.fromkeys(WORKLOADS, args.warm_calls == "both"),
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    out = cmp.to_json()
    if args.summary:
        print(summary(cmp))
    else:
        print(json.dumps({k: v for k, v in out.items() if k != "records"}, indent=1))
    if args.result_json:
        Path(args.result_json).write_text(json.dumps(out) + "\n")
    return 0 if cmp.decision in ("keep", "discard", "measured") else 1


if __name__ == "__main__":
    sys.exit(main())
