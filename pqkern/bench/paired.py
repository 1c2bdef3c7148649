"""Paired, interleaved timing of two kernels (immutable bench): the engine behind the trial's verdict and asv's speed-up.

Each kernel runs in its own jailed worker (``session.KernelProcess``), so neither can reach the
other's module, dispatchers, index or numba configuration. The judge (this process) drives
them in rounds. In each round, for each workload, it takes the next block of queries from a
random permutation of the query pool and has both kernels search that block, in a random
order, each block led by one untimed call on a base vector so that each kernel's working
set is as warm as a runner run leaves it. Every result of both kernels is checked
(``workloads.py``); per query, ``x = ln(cpu_incumbent / cpu_candidate)`` (CPU time of the
worker process around the call: time spent descheduled on a shared machine is not the
kernel's), and the round's observation per workload is the block's mean ``x``. Shared noise
(another process on the core, frequency changes) hits both kernels of a pair alike and cancels.

``decide`` stops as soon as the confidence sequences (``sequential.py``) settle the keep rule:

- keep: the geometric mean of the workloads' speed-ups is above ``MIN_GAIN`` (99% confident),
  and neither workload is slower by more than ``MAX_LOSS`` (99% confident it is not);
- discard: the combined speed-up is confidently below ``MIN_GAIN`` ("slower" when below 1,
  "within" otherwise), or a workload is confidently slower than ``MAX_LOSS``;
- otherwise, at the cap (rounds, queries or seconds), discard as "cap".

``measure`` runs a fixed number of rounds and only reports (the baseline, asv, upstream page).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pqkern.bench import sequential
from pqkern.bench.oracle import BLOCK as ORACLE_BLOCK
from pqkern.bench.reference import tie_aware_recall
from pqkern.bench.session import Block, KernelProcess, WorkerFailure
from pqkern.bench.worker import ContractError
from pqkern.bench.workloads import WORKLOADS, K, make

MIN_GAIN = math.log(1.01)
MAX_LOSS = math.log(0.98)
POOL = 2000
PAIRS = {"flat": 1, "ivf": 2}  # query pairs per workload per round (an IVF query costs about a third of a flat one at 1M)
# An untimed call on a base vector before each timed flat call brings that kernel's working set (the same for every
# flat query) back to where a runner run keeps it; an IVF query probes other partitions than the last one did anyway.
WARM_CALLS = {"flat": True, "ivf": False}
CAP_SECONDS = 30.0
TOLERANCE = 0.01
SEED_KERNEL = Path(__file__).resolve().parent / "seed_kernel.py"


def _geomean(values: list[int]) -> int | None:
    return int(round(math.exp(np.mean(np.log(np.maximum(values, 1)))))) if values else None


@dataclass
class KernelFigures:
    """What one kernel did on one workload over the queries of a comparison."""

    wall_ns: list[int] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)
    ids: list[np.ndarray] = field(default_factory=list)
    qids: list[int] = field(default_factory=list)
    max_rel_error: float = 0.0
    rank_problem: str = ""

    def summary(self, fx, wl, k: int = K) -> dict:
        """Geomean times and recall@k (the kernel's, and the exact ADC's on the same queries)."""
        qids = np.asarray(self.qids, np.int64)
        if not qids.size:
            return {"queries": 0, "geomean_ns_per_query": None, "geomean_cpu_ns_per_query": None, "recall_at_10": 0.0,
                    "recall_10_at_10": 0.0, "reference_recall_at_10": 0.0, "max_rel_error": 0.0}
        found = np.concatenate(self.ids)
        gt = fx.groundtruth[qids, :k]
        recall = tie_aware_recall(fx.base, fx.queries[qids], found, gt, at=k)
        ref = tie_aware_recall(fx.base, fx.queries[qids], wl.oracle_topk(qids)[0], gt, at=k)
        return {"queries": int(qids.size), "geomean_ns_per_query": _geomean(self.wall_ns),
                "geomean_cpu_ns_per_query": _geomean(self.cpu_ns),
                "recall_at_10": recall[0], "recall_10_at_10": recall[1], "reference_recall_at_10": ref[0],
                "max_rel_error": self.max_rel_error}


@dataclass
class Comparison:
    """The outcome of a paired comparison: decision, intervals and both kernels' figures."""

    decision: str  # keep, discard, measured, crash, timeout, harness
    stop: str  # faster, slower, within, loss:<workload>, cap, measured, or the failure's stage
    reason: str
    intervals: dict[str, sequential.Interval]  # per workload and "combined"
    candidate: dict[str, dict] = field(default_factory=dict)
    incumbent: dict[str, dict] = field(default_factory=dict)
    prepare_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    peak_mem_mb: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    seconds: float = 0.0
    contract_problem: str = ""  # a top-k that is not the nearest by ADC (reported after recall, the clearer message)
    records: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"decision": self.decision, "stop": self.stop, "reason": self.reason, "rounds": self.rounds,
                "contract_problem": self.contract_problem,
                "seconds": round(self.seconds, 3),
                "intervals": {w: dict(zip(("speedup", "lo", "hi"), iv.as_ratio(), strict=True), rounds=iv.rounds, sd=iv.sd)
                              for w, iv in self.intervals.items()},
                "candidate": self.candidate, "incumbent": self.incumbent, "prepare_seconds": self.prepare_seconds,
                "peak_mem_mb": self.peak_mem_mb, "records": self.records}


def rule(intervals: dict[str, sequential.Interval], workloads: list[str]) -> tuple[str, str] | None:
    """The keep rule on the current intervals: ``(decision, stop)``, or None to go on."""
    comb = intervals["combined"]
    if comb.hi < 0:
        return "discard", "slower"
    for w in workloads:
        if intervals[w].hi < MAX_LOSS:
            return "discard", f"loss:{w}"
    if comb.lo > MIN_GAIN and all(intervals[w].lo > MAX_LOSS for w in workloads):
        return "keep", "faster"
    if comb.hi < MIN_GAIN:
        return "discard", "within"
    return None


def explain(decision: str, stop: str) -> str:
    return {
        "faster": f"faster: 99% confident of a gain above {math.exp(MIN_GAIN) - 1:.0%} with no workload slower by "
                  f"{1 - math.exp(MAX_LOSS):.0%}",
        "slower": "slower",
        "within": f"not faster: 99% confident the gain is below {math.exp(MIN_GAIN) - 1:.0%}",
        "cap": "not significant: undecided at the cap",
        "measured": "measured",
    }.get(stop, f"slower on {stop[5:]}: 99% confident of a loss above {1 - math.exp(MAX_LOSS):.0%}" if stop.startswith("loss:")
          else stop)


class _Side:
    """One kernel's worker and its figures per workload."""

    def __init__(self, label: str, source: str, wls: dict, warm: np.ndarray, deadline: float, jail: bool, threads: int,
                 k: int):
        self.label = label
        self.proc = KernelProcess(label, source, {w: wl.files for w, wl in wls.items()}, warm, k, deadline,
                                  threads=threads, jail=jail)
        self.figures = {w: KernelFigures() for w in wls}

    def search(self, wl, qids: np.ndarray, warm_vec: np.ndarray | None) -> Block:
        queries, probes = wl.request(qids, warm_vec)
        return self.proc.search(wl.name, queries, probes, warm=warm_vec is not None)


def compare(fx, incumbent_source: str, candidate_source: str, workloads: list[str] | tuple[str, ...] = WORKLOADS, *,
            mode: str = "decide", rounds: int | None = None, cap_seconds: float = CAP_SECONDS, time_budget: float = 600.0,
            seed: int | None = None, pool: int = POOL, jail: bool = True, threads: int = 1, k: int = K,
            pairs: dict[str, int] | None = None, warm_calls: dict[str, bool] | None = None, log=None) -> Comparison:
    """Compare two kernel sources on ``fx`` (see the module docstring); never raises for a kernel's failure."""
    start = time.monotonic()
    log = log or (lambda msg: None)
    pairs, warm_calls = pairs or PAIRS, warm_calls or WARM_CALLS
    rng = np.random.default_rng(seed)
    wls = {w: make(w, fx, k) for w in workloads}
    order = {w: _query_order(rng, min(pool, fx.queries.shape[0])) for w in workloads}
    warm = _warm_vectors(fx)
    deadline = start + time_budget
    sides = {"incumbent": _Side("incumbent", incumbent_source, wls, warm, deadline, jail, threads, k),
             "candidate": _Side("candidate", candidate_source, wls, warm, deadline, jail, threads, k)}
    cmp = Comparison("measured", "measured", "", {})
    try:
        for w, wl in wls.items():
            wl.oracle_topk(order[w][:ORACLE_BLOCK])  # computed (first time) or loaded while the workers start
        for label, side in sides.items():
            try:
                cmp.prepare_seconds[label] = {w: ns / 1e9 for w, ns in side.proc.ready().items()}
            except WorkerFailure as e:
                return _failed(cmp, label, e, start)
        per_round: dict[str, list[float]] = {w: [] for w in workloads}
        combined: list[float] = []
        max_rounds = min(len(order[w]) // pairs[w] for w in workloads)
        if rounds is not None:
            max_rounds = min(max_rounds, rounds)
        paired_start = time.monotonic()
        for t in range(max_rounds):
            for w in workloads:
                xs = []
                for i in range(t * pairs[w], (t + 1) * pairs[w]):
                    try:
                        xs.append(_pair(fx, wls[w], sides, order[w][i], warm[i % len(warm)] if warm_calls[w] else None,
                                        rng, t, cmp.records))
                    except _SideFailed as e:
                        return _failed(cmp, e.label, e.error, start)
                per_round[w].append(float(np.mean(xs)))
            combined.append(float(np.mean([per_round[w][-1] for w in workloads])))
            cmp.intervals = {w: sequential.interval(per_round[w]) for w in workloads}
            cmp.intervals["combined"] = sequential.interval(combined)
            cmp.rounds = t + 1
            if (t + 1) % 25 == 0:
                log(_progress(cmp, workloads))
            if mode == "decide" and t + 1 >= sequential.MIN_ROUNDS:
                outcome = rule(cmp.intervals, list(workloads))
                if outcome:
                    cmp.decision, cmp.stop = outcome
                    break
                if time.monotonic() - paired_start > cap_seconds:
                    cmp.decision, cmp.stop = "discard", "cap"
                    break
        else:
            if mode == "decide":
                cmp.decision, cmp.stop = "discard", "cap"
        for label, side in sides.items():
            try:
                cmp.peak_mem_mb[label] = side.proc.finish() / 1024
            except WorkerFailure as e:
                return _failed(cmp, label, e, start)
        for w, wl in wls.items():
            cmp.candidate[w] = sides["candidate"].figures[w].summary(fx, wl, k)
            cmp.incumbent[w] = sides["incumbent"].figures[w].summary(fx, wl, k)
        cmp.contract_problem = next((sides["candidate"].figures[w].rank_problem for w in workloads
                                     if sides["candidate"].figures[w].rank_problem), "")
        if any(sides["incumbent"].figures[w].rank_problem for w in workloads):
            cmp.decision, cmp.stop = "harness", "contract"
            cmp.reason = "the incumbent failed: " + next(sides["incumbent"].figures[w].rank_problem for w in workloads
                                                         if sides["incumbent"].figures[w].rank_problem)
        else:
            cmp.reason = explain(cmp.decision, cmp.stop)
        cmp.seconds = time.monotonic() - start
        return cmp
    finally:
        for side in sides.values():
            side.proc.close()


class _SideFailed(Exception):
    def __init__(self, label: str, error: Exception):
        super().__init__(str(error))
        self.label, self.error = label, error


def _pair(fx, wl, sides: dict, qi: int, warm_vec: np.ndarray | None, rng, t: int, records: list[dict]) -> float:
    """One query searched by both kernels back to back, in a random order; both results judged; ``ln(t_inc / t_cand)``."""
    first = ("incumbent", "candidate") if rng.random() < 0.5 else ("candidate", "incumbent")
    qids = np.array([qi])
    blocks = {}
    for label in first:
        try:
            blocks[label] = sides[label].search(wl, qids, warm_vec)
        except WorkerFailure as e:
            raise _SideFailed(label, e) from None
    for label in first:
        try:
            _judge_block(fx, wl, sides[label].figures[wl.name], qids, blocks[label])
        except ContractError as e:
            raise _SideFailed(label, e) from None
    inc, cand = blocks["incumbent"], blocks["candidate"]
    records.append({"round": t, "workload": wl.name, "query": int(qi), "first": first[0],
                    "incumbent_cpu_ns": int(inc.cpu_ns[0]), "candidate_cpu_ns": int(cand.cpu_ns[0]),
                    "incumbent_wall_ns": int(inc.wall_ns[0]), "candidate_wall_ns": int(cand.wall_ns[0])})
    return math.log(max(int(inc.cpu_ns[0]), 1) / max(int(cand.cpu_ns[0]), 1))


def _query_order(rng, pool: int) -> np.ndarray:
    """The pool's queries in random order, the first oracle block's first (later blocks only for long comparisons)."""
    return np.concatenate([a + rng.permutation(min(ORACLE_BLOCK, pool - a)) for a in range(0, pool, ORACLE_BLOCK)])


def _judge_block(fx, wl, figures: KernelFigures, qids: np.ndarray, block: Block) -> None:
    found, worst, problem = wl.judge(qids, block.ids, block.dists, TOLERANCE)
    figures.ids.append(found)
    figures.qids.extend(int(q) for q in qids)
    figures.wall_ns.extend(int(v) for v in block.wall_ns)
    figures.cpu_ns.extend(int(v) for v in block.cpu_ns)
    figures.max_rel_error = max(figures.max_rel_error, worst)
    figures.rank_problem = figures.rank_problem or problem


def _failed(cmp: Comparison, label: str, e: Exception, start: float) -> Comparison:
    kind = getattr(e, "kind", "contract")
    cmp.seconds = time.monotonic() - start
    if kind == "timeout":
        e = f"time budget {e}"
    if label == "incumbent":
        cmp.decision, cmp.stop, cmp.reason = "harness", kind, f"the incumbent failed: {e}"
    else:
        cmp.decision = {"timeout": "timeout", "harness": "harness"}.get(kind, "crash")
        cmp.stop, cmp.reason = kind, str(e)
    return cmp


def _warm_vectors(fx, count: int = 8) -> np.ndarray:
    start = fx.num_base // 2
    return np.asarray(fx.base[start: start + count], np.float32)


def _progress(cmp: Comparison, workloads) -> str:
    parts = [f"{w} {iv.as_ratio()[0]:.3f}x [{iv.as_ratio()[1]:.3f}, {iv.as_ratio()[2]:.3f}]"
             for w, iv in cmp.intervals.items() if w in workloads or w == "combined"]
    return f"round {cmp.rounds}: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqkern.bench.paired", description=__doc__.split("\n")[0])
    p.add_argument("--candidate", required=True, help="kernels file to judge")
    p.add_argument("--incumbent", default="seed", help="kernels file to compare with (default: the frozen seed)")
    p.add_argument("--workload", action="append", choices=WORKLOADS, help="workload(s) (default: both)")
    p.add_argument("--mode", choices=("decide", "measure"), default="measure")
    p.add_argument("--rounds", type=int, help="at most this many rounds (measure: exactly, if the pool allows)")
    p.add_argument("--seed", type=int, help="random seed (default: fresh)")
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--cap-seconds", type=float, default=CAP_SECONDS)
    p.add_argument("--k", type=int, default=K, help=f"neighbours per query (default {K})")
    p.add_argument("--pairs", type=int, nargs=2, metavar=("FLAT", "IVF"), help=f"query pairs per round (default {PAIRS})")
    p.add_argument("--warm-calls", choices=("default", "none", "both"), default="default",
                   help=f"an untimed call before each timed one (default {WARM_CALLS})")
    p.add_argument("--no-jail", action="store_true")
    p.add_argument("--result-json", help="write the comparison here")
    args = p.parse_args(argv)
    from pqkern.bench.fixture import FixtureError, load_fixture
    from pqkern.bench.policy import PolicyError, check_kernel

    inc = SEED_KERNEL if args.incumbent == "seed" else Path(args.incumbent)
    try:
        for path in (inc, Path(args.candidate)):
            check_kernel(path)
        fx = load_fixture(args.source)
    except (OSError, PolicyError, FixtureError) as e:
        print(f"paired: {e}", file=sys.stderr)
        return 1
    cmp = compare(fx, inc.read_text(), Path(args.candidate).read_text(), tuple(args.workload or WORKLOADS), mode=args.mode,
                  rounds=args.rounds, cap_seconds=args.cap_seconds, seed=args.seed, jail=not args.no_jail, k=args.k,
                  pairs=dict(zip(WORKLOADS, args.pairs, strict=True)) if args.pairs else None,
                  warm_calls=None if args.warm_calls == "default" else dict.fromkeys(WORKLOADS, args.warm_calls == "both"),
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    out = cmp.to_json()
    print(json.dumps({k: v for k, v in out.items() if k != "records"}, indent=1))
    if args.result_json:
        Path(args.result_json).write_text(json.dumps(out) + "\n")
    return 0 if cmp.decision in ("keep", "discard", "measured") else 1


if __name__ == "__main__":
    sys.exit(main())
