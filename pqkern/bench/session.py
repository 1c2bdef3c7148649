"""The judge's handle on one kernel's worker process (immutable bench).

``KernelProcess`` starts ``pqkern.bench.worker`` in its own process group with a private
temporary directory, sends it the kernel's source (the worker never reads the repository,
the trial's folder or the ground truth), and then asks for blocks of searches. It is the
watchdog (one deadline for the worker's whole life; at the deadline the process group is
killed) and the first line of the judge: it cross-checks the per-query times the worker
reports against its own clocks (the wall time of each round trip, and the worker's CPU
time read from ``/proc/<pid>/schedstat``), so a kernel cannot under-report its time.
The worker dies with the judge (``PR_SET_PDEATHSIG``), even when the judge is SIGKILLed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pqkern.bench.protocol import Deadline, ProtocolError, receive, send

# Allowance for the worker's own work around the timed calls, over its whole life: per request (receive, unpack, check,
# send: about 0.3 ms measured), plus a share of the CPU it used (the odd garbage collection, page faults).
SLACK_PER_REQUEST_NS = 1_000_000
SLACK_SHARE = 0.10
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_THREADING_LAYER": "omp"}


class WorkerFailure(Exception):
    """The worker stopped: ``kind`` is contract, raised, timeout, died or harness; the message says why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Block:
    """One block of searches as the worker answered it (``ids``/``dists``: (n, calls, k))."""

    ids: np.ndarray
    dists: np.ndarray
    wall_ns: np.ndarray  # per query, the warm-up call first when the block had one
    cpu_ns: np.ndarray


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); a no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def forbidden() -> list[str]:
    """What a jailed worker must never read: the repository (the harness, results.tsv, trials/) and the data directory."""
    from pqkern.bench.fixture import data_dir, repo_root

    return [str(repo_root()), str(data_dir())]


def _schedstat_ns(pid: int) -> int | None:
    """CPU time of the worker so far, in ns, as the kernel accounts it: all its threads, numba's or any other."""
    try:
        return sum(int(Path(t, "schedstat").read_text().split()[0]) for t in Path(f"/proc/{pid}/task").iterdir())
    except (OSError, ValueError, IndexError):
        return None


def describe_death(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        sig = signal.Signals(-returncode)
        if sig == signal.SIGSYS:
            try:
                from pqkern.bench.jail import describe_death as jail_reason

                return jail_reason(int(sig))
            except ImportError:
                pass
        return f"signal {sig.name}"
    return f"exit code {returncode}"


class KernelProcess:
    """One kernel in one jailed worker; ``search`` blocks until the worker answers or the deadline passes."""

    def __init__(self, label: str, source: str, workloads: dict[str, dict[str, str]], warm: np.ndarray, k: int,
                 deadline: float, memory_limit_mb: int = 4096, threads: int = 1, jail: bool = True):
        self.label, self.deadline, self.k = label, deadline, k
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pqkern-worker-{label}-"))
        cmd_r, self.cmd = os.pipe()
        self.reply, reply_w = os.pipe()
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), NUMBA_CACHE_DIR=str(self.tmp / "numba_cache"),
                   TMPDIR=str(self.tmp), **WORKER_ENV)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqkern.bench.worker", str(cmd_r), str(reply_w)], pass_fds=(cmd_r, reply_w),
            stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), env=env, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        os.close(cmd_r)
        os.close(reply_w)
        self.prepare_ns: dict[str, int] = {}
        self.steps_ns: dict[str, int] = {}
        # over every search: the CPU it reported for the timed calls, its own bookkeeping between them, what it used
        self.claimed_cpu_ns = self.bookkeeping_ns = self.used_cpu_ns = self.requests = 0
        self.peak_mem_kb = 0
        try:
            send(self.cmd, {"kernel_source": source, "tmp": str(self.tmp), "workloads": workloads, "k": k,
                            "memory_limit_mb": memory_limit_mb, "jail": jail, "threads": threads, "forbid": forbidden()},
                 np.asarray(warm, np.float32))
        except OSError:
            pass  # the worker died at once; the first receive says how

    def _receive(self, stage: str) -> tuple[dict, list[np.ndarray]]:
        try:
            header, arrays = receive(self.reply, self.deadline)
        except Deadline:
            self.kill()
            raise WorkerFailure("timeout", f"exceeded in {stage}; the worker was killed") from None
        except ProtocolError as e:
            code = self.proc.wait()
            if code == 0 or (code > 0 and "closed" not in str(e)):
                raise WorkerFailure("died", f"the worker broke the protocol in {stage}: {e}") from None
            raise WorkerFailure("died", f"the worker died in {stage} with {describe_death(code)}; see stderr") from None
        if header.get("op") == "error":
            self.proc.wait()
            raise WorkerFailure(str(header.get("kind")), str(header.get("message")))
        return header, arrays

    def ready(self) -> dict[str, int]:
        """Wait until the kernel is imported, compiled, prepared and warm; return ``prepare`` ns per workload."""
        header, _ = self._receive("start-up (import, compile, prepare)")
        if header.get("op") != "ready":
            raise WorkerFailure("died", f"the worker sent {header.get('op')!r} instead of ready")
        self.prepare_ns = {str(k): int(v) for k, v in header["prepare_ns"].items()}
        self.steps_ns = {str(k): int(v) for k, v in header.get("steps_ns", {}).items()}
        return self.prepare_ns

    def search(self, workload: str, queries: np.ndarray, probes: np.ndarray | None = None, warm: bool = True) -> Block:
        """Search a block (with a leading untimed warm-up query when ``warm``); check the reported times."""
        arrays = [np.asarray(queries, np.float32)] + ([np.asarray(probes, np.int32)] if probes is not None else [])
        cpu0 = _schedstat_ns(self.proc.pid)
        t0 = time.perf_counter_ns()
        try:
            send(self.cmd, {"op": "search", "workload": workload, "warm": warm}, *arrays)
        except OSError:
            pass
        header, out = self._receive(f"{workload} search")
        round_trip = time.perf_counter_ns() - t0
        cpu1 = _schedstat_ns(self.proc.pid)
        n = queries.shape[0]
        width = 1 if probes is None else probes.shape[1]
        if header.get("op") != "result" or len(out) != 4:
            raise WorkerFailure("died", "the worker's reply is not a search result")
        ids, dists, wall, cpu = out
        if ids.shape != (n - warm, width, self.k) or dists.shape != ids.shape or wall.shape != (n,) or cpu.shape != (n,):
            raise WorkerFailure("contract", "the worker's reply has the wrong shape")
        if cpu0 is not None and cpu1 is not None:
            self.claimed_cpu_ns += int(cpu.sum())
            self.bookkeeping_ns += max(0, int(header.get("bookkeeping_ns", 0)))
            self.used_cpu_ns += cpu1 - cpu0
            self.requests += 1
        problem = check_times(wall, round_trip, self.claimed_cpu_ns, self.used_cpu_ns if cpu0 is not None else None,
                              self.requests, self.bookkeeping_ns)
        if problem:
            self.kill()
            raise WorkerFailure("contract", f"{workload} search: {problem}")
        first = 1 if warm else 0
        return Block(ids.astype(np.int64), dists.astype(np.float32), wall[first:], cpu[first:])

    def finish(self) -> int:
        """End the worker; return the kernel's peak resident-memory growth in kB."""
        try:
            send(self.cmd, {"op": "finish"})
        except OSError:
            pass
        header, _ = self._receive("finish")
        self.peak_mem_kb = int(header.get("peak_mem_kb", 0))
        self.close()
        return self.peak_mem_kb

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        for fd in (self.cmd, self.reply):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_times(wall: np.ndarray, round_trip_ns: int, claimed_cpu_ns: int, used_cpu_ns: int | None, requests: int = 1,
                bookkeeping_ns: int = 0) -> str:
    """'' when the worker's reported times agree with the judge's own clocks; else the problem.

    Per block: each wall time positive, and all of them within the block's round trip. Over the
    worker's life so far: the CPU time it reports for its calls against the CPU time the operating
    system accounted to it (``/proc/<pid>/schedstat``) while it served them. The harness's own
    bookkeeping between calls (checking and copying results, measured on its main thread only)
    is expected; CPU beyond both, say a kernel's thread working between calls, is not."""
    if np.any(wall <= 0):
        return "a per-query time was not positive: the clock was tampered with"
    total = int(wall.sum())
    if total > round_trip_ns:
        return f"per-query times add to {total / 1e6:.3f} ms, more than the whole round trip ({round_trip_ns / 1e6:.3f} ms)"
    if used_cpu_ns is None:
        return ""
    slack = SLACK_PER_REQUEST_NS * requests
    if claimed_cpu_ns > used_cpu_ns + slack:
        return (f"per-query CPU times add to {claimed_cpu_ns / 1e6:.1f} ms, more than the worker used "
                f"({used_cpu_ns / 1e6:.1f} ms)")
    if used_cpu_ns - claimed_cpu_ns - bookkeeping_ns > slack + SLACK_SHARE * used_cpu_ns:
        return (f"the worker used {used_cpu_ns / 1e6:.1f} ms of CPU while searching but its per-query times add to only "
                f"{claimed_cpu_ns / 1e6:.1f} ms: work happened outside the timed calls")
    return ""
