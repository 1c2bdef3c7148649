"""The canonical runner (immutable bench): time one kernel on one workload, verify every result, print the block.

``pqkern-run`` (or ``python -m pqkern.bench.runner``). The kernel runs only in a jailed worker
process (``pqkern/bench/worker.py``, ``pqkern/bench/jail.py``); this process is its watchdog and
its judge. It checks the kernel file against the static policy, loads the fixture, starts the
worker, sends the queries in order (each searched once, in blocks), then checks every result
against the reference ADC and the exact ADC top-k, checks the kernel's ``prepare`` against its
budget (``budget.py``), measures recall against exact ground truth (and beside the exact ADC's on
the same queries), prints the block on stdout and, with ``--result-json``, writes the same
figures and the per-query times to a file. Whatever the kernel prints goes to stderr.

Queries: by default the fixture's first ``--queries`` queries, the same every run, so blocks
compare; ``--fresh-queries`` draws fresh ones (``queries.py``), ``--query-seed`` replays them. The
block's ``queries:`` line says which.

Workloads (``--workload``): ``flat`` (default; one scan of all N codes per query) and ``ivf``
(Lance's IVF_PQ: one ``search`` per probed partition with the residual query, the probe timed
as one query). See ``pqkern/bench/workloads.py``.

Exit codes (the block is printed in every case, and a one-line reason goes to stderr):
  0 pass
  1 the harness could not run (bad or missing fixture, bad arguments); the message says what to do
  2 recall@10 below the floor (--recall-floor, default 0.50)
  3 time budget exceeded (--time-budget, default 600 s); the worker is killed
  4 the kernel broke its contract (wrong type, shape or dtype, bad ids, dishonest distances or times, prepare
    over budget), raised, or was stopped by the jail
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from pqkern.bench import affinity, budget, datasets, recall
from pqkern.bench.fixture import FixtureError, default_source
from pqkern.bench.policy import PolicyError, check_kernel
from pqkern.bench.queries import draw_seed, fixed_queries, fresh_queries, parse_seed, warm_vectors
from pqkern.bench.session import KernelProcess, WorkerFailure
from pqkern.bench.worker import ContractError
from pqkern.bench.workloads import WORKLOADS, K, judged, make

EXIT_PASS, EXIT_HARNESS, EXIT_RECALL, EXIT_TIMEOUT, EXIT_CONTRACT = 0, 1, 2, 3, 4
STATUS = {0: "pass", 1: "harness_error", 2: "recall_below_floor", 3: "timeout", 4: "contract_violation"}
BLOCK_KEYS = ("source", "num_base", "num_queries", "recall_at_10", "geomean_ns_per_query", "peak_mem_mb", "total_seconds")
EXTRA_KEYS = ("recall_10_at_10", "status", "exit_code", "geomean_cpu_ns_per_query", "prepare_seconds", "timed_seconds",
              "max_rel_error", "threads", "fixture_id", "codebook_sha256", "kernel_sha256", "workload", "fixed_seconds", "jail",
              "queries", "recall_delta", "data_seconds")
BLOCK_QUERIES = 50
DEFAULT_KERNEL = Path(__file__).resolve().parents[1] / "kernels.py"
FAILURE_EXIT = {"timeout": EXIT_TIMEOUT, "harness": EXIT_HARNESS}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pqkern-run",
        description="Time the PQ kernel on the fixture, verify every result and print the result block.",
        epilog="exit codes: 0 pass; 1 harness could not run; 2 recall@10 below the floor; "
        "3 time budget exceeded; 4 kernel broke its contract, raised or was stopped by the jail. "
        "The block is printed in every case; the reason goes to stderr.",
    )
    p.add_argument("--workload", choices=WORKLOADS, default="flat", help="flat (default) or ivf")
    p.add_argument("--source", help="sift1m, siftsmall, synthetic, smoke or imagesift "
                   "(default: $PQKERN_SOURCE, else sift1m if present, else synthetic)")
    p.add_argument("--num-base", type=int, help="synthetic/smoke only: base vectors")
    p.add_argument("--num-queries", type=int, help="synthetic/smoke only: query vectors generated")
    p.add_argument("--num-learn", type=int, help="synthetic/smoke only: learn vectors generated")
    p.add_argument("--kernel", default=str(DEFAULT_KERNEL), help="kernels file to run (default: pqkern/kernels.py)")
    p.add_argument("--queries", type=int, default=1000, help="timed queries (default 1000, capped at the source's count)")
    p.add_argument("--fresh-queries", action="store_true", help="fresh queries (queries.py) instead of the fixture's first ones")
    p.add_argument("--query-seed", help="replay the fresh queries of a recorded run (implies --fresh-queries)")
    p.add_argument("--recall-floor", type=float, default=0.50, help="minimum recall@10 (default 0.50)")
    p.add_argument("--time-budget", type=float, default=600.0, help="seconds for the kernel's whole run (default 600)")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative distance tolerance vs reference ADC (default 0.01)")
    p.add_argument("--threads", type=int, default=1, help="NUMBA_NUM_THREADS for the kernel (default 1)")
    p.add_argument("--memory-limit-mb", type=int, default=4096,
                   help="address space the kernel may add to the worker, in MB (default 4096)")
    p.add_argument("--result-json", help="also write the result, with per-query times, to this file")
    p.add_argument("--no-jail", action="store_true",
                   help="run the worker without the operating-system jail (only where the jail cannot work; see "
                   "docs/guarantees.md)")
    return p.parse_args(argv)


def format_block(r: dict, omit_missing: bool = False) -> str:
    """The result block: the seven canonical lines (``nan`` where not measured), then the others (left out when not
    measured if ``omit_missing``)."""

    def fmt(key: str) -> str:
        v = r.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "nan"
        if key in ("recall_at_10", "recall_10_at_10", "recall_delta"):
            return f"{v:.4f}"
        if key in ("peak_mem_mb", "total_seconds", "fixed_seconds"):
            return f"{v:.1f}"
        return str(v)

    extra = [key for key in EXTRA_KEYS if not omit_missing or fmt(key) != "nan"]
    return "\n".join(["---"] + [f"{key}: {fmt(key)}" for key in BLOCK_KEYS + tuple(extra)])


def geomean_ns(times: np.ndarray) -> int:
    """Geometric mean of per-query times in ns, rounded; the figure the block and asv report."""
    t = np.maximum(np.asarray(times, np.float64), 1.0)
    return int(round(float(np.exp(np.mean(np.log(t))))))


def file_digest(paths: list[str]) -> str:
    """sha256 over the files the worker maps (the kernel sees them read-only)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def process_seconds() -> float:
    """Seconds since this process started (interpreter start-up and imports included), from /proc; 0 elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic() - process_seconds()
    r: dict = {"threads": args.threads, "workload": args.workload, "jail": "off" if args.no_jail else "on"}
    code, reason = _judge(args, r)
    r["total_seconds"] = time.monotonic() - start
    if r.get("timed_seconds") is not None:
        r["fixed_seconds"] = r["total_seconds"] - r["timed_seconds"]
    r["exit_code"], r["status"] = code, STATUS[code]
    print(format_block(r), flush=True)
    if reason:
        print(f"pqkern-run: {STATUS[code]}: {reason}", file=sys.stderr, flush=True)
    if args.result_json:
        Path(args.result_json).write_text(json.dumps(dict(r, reason=reason), indent=1) + "\n")
    return code


def _judge(args: argparse.Namespace, r: dict) -> tuple[int, str]:
    """Fill ``r`` with the measured figures; return ``(exit code, reason)``."""
    r["source"] = args.source or default_source()
    kernel = Path(args.kernel)
    if not kernel.is_file():
        return EXIT_HARNESS, f"kernel file {kernel} not found"
    source = kernel.read_text(encoding="utf-8")
    r["kernel_sha256"] = hashlib.sha256(source.encode()).hexdigest()
    try:
        check_kernel(kernel)
    except PolicyError as e:
        return EXIT_CONTRACT, str(e)
    if args.queries < 1:
        return EXIT_HARNESS, f"--queries must be at least 1, got {args.queries}"
    try:
        seed = parse_seed(args.query_seed) if args.query_seed else (draw_seed() if args.fresh_queries else None)
        t0 = time.monotonic()
        # the first run on the default fixture builds everything the trial will need, so the trial only loads data
        trial_data = args.source is None and args.num_base is None and args.num_queries is None and args.num_learn is None
        fx = datasets.ensure(r["source"], judged(r["source"]) if trial_data else [args.workload], num_base=args.num_base,
                             num_queries=args.num_queries, num_learn=args.num_learn)
        r["data_seconds"] = round(time.monotonic() - t0, 1)
        qs = fixed_queries(fx, args.queries) if seed is None else fresh_queries(fx, seed, args.queries)
        wl = make(args.workload, fx, qs)
    except (FixtureError, ValueError) as e:
        return EXIT_HARNESS, str(e)
    rows = np.arange(len(qs))
    r.update(num_base=fx.num_base, num_queries=int(rows.size), fixture_id=fx.fixture_id, codebook_sha256=fx.codebook_sha256,
             queries=qs.describe())
    worker = KernelProcess(source, {wl.name: wl.spec()}, warm_vectors(fx, qs.seed), K,
                           time.monotonic() + args.time_budget, args.memory_limit_mb, args.threads, jail=not args.no_jail)
    try:
        handed_over = file_digest(list(wl.files.values()))
        if not qs.fresh:
            wl.oracle(rows)  # loaded (or computed the first time) while the worker starts
        results = _time_queries(worker, wl, rows, affinity.plan(args.threads))
    except WorkerFailure as e:
        return FAILURE_EXIT.get(e.kind, EXIT_CONTRACT), (
            f"time budget of {args.time_budget:g} s {e}" if e.kind == "timeout" else str(e))
    finally:
        worker.close()
    ids, dists, wall, cpu = results
    if file_digest(list(wl.files.values())) != handed_over:
        return EXIT_CONTRACT, "the fixture files the kernel saw changed during the run"
    r.update(geomean_ns_per_query=geomean_ns(wall), geomean_cpu_ns_per_query=geomean_ns(cpu),
             prepare_seconds=round(worker.setup.prepare_ns[wl.name] / 1e9, 3),
             timed_seconds=round(float(wall.sum()) / 1e9, 3),
             peak_mem_mb=worker.peak_mem_kb / 1024, per_query_ns=wall.tolist(), per_query_cpu_ns=cpu.tolist(),
             worker_steps_seconds={k: round(v / 1e9, 3) for k, v in worker.setup.steps_ns.items()})
    try:
        checked = wl.check(rows, ids, dists, args.tolerance)
    except ContractError as e:
        return EXIT_CONTRACT, str(e)
    r["max_rel_error"] = float(f"{checked.worst:.3g}")
    setup = worker.setup
    over = budget.prepare_problem(wl.name, wl.num_rows, setup.prepare_ns[wl.name], setup.warm_ns.get(wl.name, 0),
                                  setup.warm_calls.get(wl.name, 0), [t / wl.calls_per_query for t in cpu])
    if over:
        return EXIT_CONTRACT, over
    rank_problem = wl.rank_problem(checked, args.tolerance)
    got = recall.figures(wl, rows, checked.ids, None)
    r.update(recall_at_10=got["recall_at_10"], recall_10_at_10=got["recall_10_at_10"],
             recall_delta=round(got["recall_delta"], 4), reference_recall_at_10=got["reference_recall_at_10"])
    if r["recall_at_10"] < args.recall_floor:
        return EXIT_RECALL, f"recall@10 {r['recall_at_10']:.4f} is below the floor {args.recall_floor}"
    if rank_problem:
        return EXIT_CONTRACT, rank_problem
    return EXIT_PASS, ""


def _time_queries(worker: KernelProcess, wl, rows: np.ndarray, cpus: tuple[int | None, int | None]):
    """Each query once, in order, a request each: ``(ids, dists, wall ns, cpu ns)``, timed by the judge from outside,
    the worker held on one CPU and the judge on another (``cpus``, ``affinity.py``)."""
    worker.ready()
    blocks = []
    with affinity.timing([worker.proc.pid], cpus):
        for start in range(0, rows.size, BLOCK_QUERIES):
            part = rows[start: start + BLOCK_QUERIES]
            queries, probes = wl.request(part)
            blocks.append(worker.search(wl.name, queries, probes))
    worker.finish()
    return tuple(np.concatenate([getattr(b, f) for b in blocks]) for f in ("ids", "dists", "wall_ns", "cpu_ns"))


if __name__ == "__main__":
    sys.exit(main())
