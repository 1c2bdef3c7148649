"""The canonical runner (immutable bench): time the kernel, verify every result, print the result block.

The kernel never runs in this process. A worker process (``--worker``) loads the kernel,
calls ``prepare``, warms up on base vectors that are not queries, and times each query once;
this process is its watchdog and its judge: it kills the worker at the time budget, checks
every returned id and distance against the reference ADC, computes recall, prints the block
on stdout and, with ``--result-json``, writes the same figures to a file. Whatever the kernel
prints goes to stderr, so stdout carries only the block.

Guarantees: the kernel file passes the static policy (pqkern/bench/policy.py); codes, codebook and
queries reach the kernel in read-only file mappings and are hashed before and after the run;
warm-up uses base vectors, and each timed query is searched once; the clock is bound before
the kernel is imported, and the sum of per-query times is checked against this process's own
measurement of the timed phase; results must be exact ``numpy.ndarray`` objects, checked
inside the timed region; on a sample of queries the whole top-k is checked against the exact
reference ADC top-k; the worker's address space is capped (--memory-limit-mb).

Exit codes (the block is printed in every case, and a one-line reason goes to stderr):
  0 pass
  1 the harness could not run (bad or missing fixture, bad arguments); the message says what to do
  2 recall@10 below the floor (--recall-floor, default 0.50)
  3 time budget exceeded (--time-budget, default 600 s); the worker is killed
  4 the kernel broke its contract (wrong type, shape or dtype, bad ids, dishonest distances) or raised
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from time import perf_counter_ns as _clock
from time import process_time_ns as _cpu_clock

import numpy as np

from pqkern.bench.fixture import FixtureError, default_source, load_fixture
from pqkern.bench.policy import PolicyError, check_kernel
from pqkern.bench.reference import adc_distances, adc_topk, tie_aware_recall

EXIT_PASS, EXIT_HARNESS, EXIT_RECALL, EXIT_TIMEOUT, EXIT_CONTRACT = 0, 1, 2, 3, 4
STATUS = {0: "pass", 1: "harness_error", 2: "recall_below_floor", 3: "timeout", 4: "contract_violation"}
K = 10
WARMUP_VECTORS = 8
COMPILE_ROWS = 4096
SPOT_CHECKS = 10
HARNESS_NS_PER_QUERY = 200_000  # allowance for the worker's own work around each timed call
BLOCK_KEYS = ("source", "num_base", "num_queries", "recall_at_10", "geomean_ns_per_query", "peak_mem_mb", "total_seconds")
DEFAULT_KERNEL = Path(__file__).resolve().parents[1] / "kernels.py"


class ContractError(Exception):
    """The kernel returned something the interface does not allow."""


# ---------------------------------------------------------------- worker (runs the kernel)


def _send(fd: int, **msg) -> None:
    os.write(fd, (json.dumps(msg) + "\n").encode())


def _proc_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Reset VmHWM (Linux ``clear_refs``); where that is refused, VmHWM stays the lifetime peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def load_kernel(path: str):
    spec = importlib.util.spec_from_file_location("pqkern_kernel_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("prepare", "search"):
        if not callable(getattr(module, name, None)):
            raise ContractError(f"{path} defines no callable {name}()")
    return module


def _check_shape(res, k: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    if type(res) is not tuple or len(res) != 2:
        raise ContractError(f"{where}: search must return a tuple (ids, dists), got {type(res).__name__}")
    ids, dists = res
    for name, arr, dtype in (("ids", ids, np.int64), ("dists", dists, np.float32)):
        if type(arr) is not np.ndarray:
            raise ContractError(f"{where}: {name} must be a numpy.ndarray, got {type(arr).__module__}.{type(arr).__name__}")
        if arr.dtype != dtype or arr.shape != (k,):
            raise ContractError(f"{where}: {name} must be {np.dtype(dtype).name} ({k},), got {arr.dtype} {arr.shape}")
    return ids, dists


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def worker_main(cfg: dict) -> int:
    """Run the kernel as configured by the parent; report through the pipe ``cfg['fd']``."""
    fd = cfg["fd"]
    try:
        fx = load_fixture(cfg["source"], cfg["num_base"], cfg["num_queries"], cfg["num_learn"])
    except FixtureError as e:
        _send(fd, phase="error", kind="harness", message=str(e))
        return EXIT_HARNESS
    codes, codebook, queries = np.asarray(fx.codes), np.asarray(fx.codebook), np.asarray(fx.queries)
    timed = cfg["timed"]
    warm = _readonly(np.asarray(fx.base[cfg["warm_rows"]], np.float32))
    k = K
    stage = "import"
    try:
        kernel = load_kernel(cfg["kernel"])
        cap = _proc_status_kb("VmSize") * 1024 + cfg["memory_limit_mb"] * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        # Compile on a small slice first, so JIT memory is not counted as the kernel's footprint.
        stage = "prepare (compile pass)"
        small = kernel.prepare(_readonly(codes[:, :COMPILE_ROWS]), codebook)
        stage = "search (compile pass)"
        _check_shape(kernel.search(small, warm[0], k), k, "compile pass")
        del small
        hashlib.sha256(codes.data).hexdigest()  # touch the inputs so their pages are not counted as growth
        rss0 = _proc_status_kb("VmRSS")
        _reset_peak_rss()
        stage = "prepare"
        t0 = _clock()
        index = kernel.prepare(codes, codebook)
        prepare_ns = _clock() - t0
        stage = "search (warm-up)"
        for i in range(warm.shape[0]):
            _check_shape(kernel.search(index, warm[i], k), k, f"warm-up vector {i}")
        _send(fd, phase="timed_start")
        times = np.empty(len(timed), np.int64)
        cpu_times = np.empty(len(timed), np.int64)
        out_ids = np.empty((len(timed), k), np.int64)
        out_d = np.empty((len(timed), k), np.float32)
        for j, qi in enumerate(timed):
            stage = f"search (query {qi})"
            q = queries[qi]
            t0, c0 = _clock(), _cpu_clock()
            res = kernel.search(index, q, k)
            ids, dists = res
            c1, t1 = _cpu_clock(), _clock()
            times[j], cpu_times[j] = t1 - t0, c1 - c0
            ids, dists = _check_shape(res, k, f"query {qi}")
            out_ids[j], out_d[j] = ids, dists
        _send(fd, phase="timed_end")
        peak_kb = _proc_status_kb("VmHWM")  # without clear_refs this is the lifetime peak: an over-estimate
    except ContractError as e:
        _send(fd, phase="error", kind="contract", message=str(e))
        return EXIT_CONTRACT
    except BaseException as e:  # the kernel raised: report where, with the kernel's traceback on stderr
        traceback.print_exc()
        hint = f" (the kernel may use {cfg['memory_limit_mb']} MB: --memory-limit-mb)" if isinstance(e, MemoryError) else ""
        _send(fd, phase="error", kind="raised", message=f"kernel raised in {stage}: {type(e).__name__}: {e}{hint}")
        return EXIT_CONTRACT
    np.savez(Path(cfg["out"]), times=times, cpu_times=cpu_times, ids=out_ids, dists=out_d)
    _send(fd, phase="done", prepare_ns=int(prepare_ns), peak_mem_kb=max(0, peak_kb - rss0))
    return EXIT_PASS


# ---------------------------------------------------------------- parent (watchdog and judge)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pqkern-run",
        description="Time the PQ kernel on the fixture, verify every result and print the result block.",
        epilog="exit codes: 0 pass; 1 harness could not run; 2 recall@10 below the floor; "
        "3 time budget exceeded; 4 kernel broke its contract or raised. "
        "The block is printed in every case; the reason goes to stderr.",
    )
    p.add_argument("--source", help="sift1m, siftsmall, synthetic or smoke "
                   "(default: $PQKERN_SOURCE, else sift1m if present, else synthetic)")
    p.add_argument("--num-base", type=int, help="synthetic/smoke only: base vectors")
    p.add_argument("--num-queries", type=int, help="synthetic/smoke only: query vectors generated")
    p.add_argument("--num-learn", type=int, help="synthetic/smoke only: learn vectors generated")
    p.add_argument("--kernel", default=str(DEFAULT_KERNEL), help="kernels file to run (default: pqkern/kernels.py)")
    p.add_argument("--queries", type=int, default=1000, help="timed queries (default 1000, capped at the source's count)")
    p.add_argument("--recall-floor", type=float, default=0.50, help="minimum recall@10 (default 0.50)")
    p.add_argument("--time-budget", type=float, default=600.0, help="seconds for the kernel's whole run (default 600)")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative distance tolerance vs reference ADC (default 0.01)")
    p.add_argument("--threads", type=int, default=1, help="NUMBA_NUM_THREADS for the kernel (default 1)")
    p.add_argument("--memory-limit-mb", type=int, default=4096,
                   help="address space the kernel may add to the worker, in MB (default 4096)")
    p.add_argument("--result-json", help="also write the result, with per-query times, to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def format_block(r: dict) -> str:
    def fmt(key: str) -> str:
        v = r.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "nan"
        if key in ("recall_at_10", "recall_10_at_10"):
            return f"{v:.4f}"
        if key in ("peak_mem_mb", "total_seconds"):
            return f"{v:.1f}"
        return str(v)

    extra = ("recall_10_at_10", "status", "exit_code", "geomean_cpu_ns_per_query", "prepare_seconds", "timed_seconds",
             "max_rel_error",
             "threads", "fixture_id", "codebook_sha256", "kernel_sha256")
    return "\n".join(["---"] + [f"{key}: {fmt(key)}" for key in BLOCK_KEYS + extra])


def geomean_ns(times: np.ndarray) -> int:
    """Geometric mean of per-query times in ns, rounded; the figure the block and asv report."""
    t = np.maximum(np.asarray(times, np.float64), 1.0)
    return int(round(float(np.exp(np.mean(np.log(t))))))


def verify(fx, timed: np.ndarray, ids: np.ndarray, dists: np.ndarray, tolerance: float) -> float:
    """Check every result; return the largest relative distance error. Raises ContractError."""
    n = fx.num_base
    worst = 0.0
    for j, qi in enumerate(timed):
        where = f"query {qi}"
        row_ids, row_d = ids[j], dists[j]
        if row_ids.min() < 0 or row_ids.max() >= n:
            raise ContractError(f"{where}: id out of range 0..{n - 1}: {row_ids.tolist()}")
        if np.unique(row_ids).size != row_ids.size:
            raise ContractError(f"{where}: duplicate ids {row_ids.tolist()}")
        if not np.all(np.isfinite(row_d)):
            raise ContractError(f"{where}: non-finite distance {row_d.tolist()}")
        if np.any(np.diff(row_d) < 0):
            raise ContractError(f"{where}: distances not ascending {row_d.tolist()}")
        ref = adc_distances(fx.codes, fx.codebook, fx.queries[qi], row_ids)
        err = np.abs(row_d.astype(np.float64) - ref) / np.maximum(ref, 1e-6)
        bad = int(np.argmax(err))
        if err[bad] > tolerance:
            raise ContractError(
                f"{where}: distance {float(row_d[bad]):.6g} for id {int(row_ids[bad])} is off by {err[bad]:.2%} "
                f"from the reference ADC {ref[bad]:.6g} (tolerance {tolerance:.2%})"
            )
        worst = max(worst, float(err[bad]))
    return worst


def fixture_digest(fx) -> str:
    """sha256 over the bytes handed to the kernel: codes, codebook and queries."""
    h = hashlib.sha256()
    for arr in (fx.codes, fx.codebook, fx.queries):
        h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def check_timing(times: np.ndarray, phase_ns: int) -> str:
    """Compare the per-query times with this process's own clock on the whole timed phase; '' if consistent."""
    total = int(times.sum())
    if np.any(times <= 0):
        return "a per-query time was not positive: the clock was tampered with"
    if total > phase_ns + max(100_000_000, phase_ns // 10):  # slack: this process may see the messages late
        return f"per-query times add to {total / 1e6:.1f} ms, more than the whole timed phase ({phase_ns / 1e6:.1f} ms)"
    allowance = HARNESS_NS_PER_QUERY * len(times) + 200_000_000
    if phase_ns - total > allowance:
        return (f"the timed phase took {phase_ns / 1e6:.1f} ms but per-query times add to only {total / 1e6:.1f} ms: "
                f"work happened outside the timed calls")
    return ""


def spot_check(fx, timed: np.ndarray, ids: np.ndarray, tolerance: float) -> None:
    """On a sample of queries, the top-k must be as close as the exact reference ADC top-k, rank by rank (ties allowed)."""
    for j in np.unique(np.linspace(0, len(timed) - 1, min(SPOT_CHECKS, len(timed))).astype(int)):
        qi = timed[j]
        _, ref_d = adc_topk(fx.codes, fx.codebook, fx.queries[qi], K)
        got = np.sort(adc_distances(fx.codes, fx.codebook, fx.queries[qi], ids[j]))
        worse = np.flatnonzero(got > ref_d * (1 + tolerance) + 1e-6)
        if worse.size:
            i = int(worse[0])
            raise ContractError(
                f"query {qi}: the top-{K} is not the nearest by ADC: rank {i + 1} has ADC distance {got[i]:.6g}, "
                f"the reference top-{K} has {ref_d[i]:.6g} there (rows were skipped?)"
            )


def _run_worker(args: argparse.Namespace, fx, timed: np.ndarray, out: Path, deadline: float) -> tuple[str, dict]:
    """Start the worker and follow it until done, error or deadline: ``(outcome, last message)``."""
    read_fd, write_fd = os.pipe()
    warm_rows = list(range(fx.num_base // 2, fx.num_base // 2 + WARMUP_VECTORS))
    cfg = {"fd": write_fd, "source": fx.source, "num_base": args.num_base, "num_queries": args.num_queries,
           "num_learn": args.num_learn, "kernel": str(Path(args.kernel).resolve()), "timed": timed.tolist(),
           "warm_rows": warm_rows, "out": str(out), "memory_limit_mb": args.memory_limit_mb}
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PQKERN_DATA=str(fx.cache_dir.parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pqkern.bench.runner", "--worker", json.dumps(cfg)],
        stdout=sys.stderr.fileno(), stdin=subprocess.DEVNULL, pass_fds=(write_fd,), env=env, start_new_session=True,
    )
    os.close(write_fd)
    buf, last, stamps = b"", {}, {}
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", last
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                proc.wait()
                return ("done" if last.get("phase") == "done" else "died"), dict(last, returncode=proc.returncode)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                last = json.loads(line)
                if last.get("phase") in ("timed_start", "timed_end"):
                    stamps[last["phase"]] = time.perf_counter_ns()
                last["stamps"] = stamps
                if last.get("phase") == "error":
                    proc.wait()
                    return "error", last
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(json.loads(args.worker))
    start = time.monotonic()
    r: dict = {"threads": args.threads}
    code, reason = EXIT_PASS, ""
    code, reason = _judge(args, r)
    r["total_seconds"] = time.monotonic() - start
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
    r["kernel_sha256"] = hashlib.sha256(kernel.read_bytes()).hexdigest()
    try:
        check_kernel(kernel)
    except PolicyError as e:
        return EXIT_CONTRACT, str(e)
    try:
        fx = load_fixture(r["source"], args.num_base, args.num_queries, args.num_learn)
    except FixtureError as e:
        return EXIT_HARNESS, str(e)
    if args.queries < 1:
        return EXIT_HARNESS, f"--queries must be at least 1, got {args.queries}"
    timed = np.arange(min(args.queries, fx.queries.shape[0]))
    r.update(num_base=fx.num_base, num_queries=int(timed.size), fixture_id=fx.fixture_id, codebook_sha256=fx.codebook_sha256)
    handed_over = fixture_digest(fx)
    deadline = time.monotonic() + args.time_budget
    with tempfile.TemporaryDirectory(prefix="pqkern-run-") as tmp:
        out = Path(tmp) / "results.npz"
        outcome, msg = _run_worker(args, fx, timed, out, deadline)
        if outcome == "timeout":
            phase = msg.get("phase", "start-up")
            return EXIT_TIMEOUT, f"time budget of {args.time_budget:g} s exceeded (last phase: {phase}); worker killed"
        if outcome == "error":
            code = EXIT_HARNESS if msg["kind"] == "harness" else EXIT_CONTRACT
            return code, msg["message"]
        if outcome == "died":
            rc = msg.get("returncode")
            how = f"signal {signal.Signals(-rc).name}" if rc and rc < 0 else f"exit code {rc}"
            return EXIT_CONTRACT, f"worker died with {how} (last phase: {msg.get('phase', 'start-up')}); see stderr"
        with np.load(out) as z:
            times, cpu_times, ids, dists = z["times"], z["cpu_times"], z["ids"], z["dists"]
    if fixture_digest(fx) != handed_over:
        return EXIT_CONTRACT, "the fixture (codes, codebook or queries) changed during the run"
    stamps = msg["stamps"]
    problem = check_timing(times, stamps["timed_end"] - stamps["timed_start"])
    if problem:
        return EXIT_CONTRACT, problem
    r.update(geomean_ns_per_query=geomean_ns(times), geomean_cpu_ns_per_query=geomean_ns(cpu_times),
             prepare_seconds=round(msg["prepare_ns"] / 1e9, 3), timed_seconds=round(float(times.sum()) / 1e9, 3),
             peak_mem_mb=msg["peak_mem_kb"] / 1024, per_query_ns=times.tolist(), per_query_cpu_ns=cpu_times.tolist())
    try:
        r["max_rel_error"] = float(f"{verify(fx, timed, ids, dists, args.tolerance):.3g}")
    except ContractError as e:
        return EXIT_CONTRACT, str(e)
    gt = np.asarray(fx.groundtruth[timed, :K])
    r["recall_at_10"], r["recall_10_at_10"] = tie_aware_recall(fx.base, fx.queries[timed], ids, gt, at=K)
    if r["recall_at_10"] < args.recall_floor:
        return EXIT_RECALL, f"recall@10 {r['recall_at_10']:.4f} is below the floor {args.recall_floor}"
    try:
        spot_check(fx, timed, ids, args.tolerance)
    except ContractError as e:
        return EXIT_CONTRACT, str(e)
    return EXIT_PASS, ""


if __name__ == "__main__":
    sys.exit(main())
