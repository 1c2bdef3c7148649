"""The judge's handle on one kernel's worker process (immutable bench).

``KernelProcess`` starts ``pqkern.bench.worker`` in its own process group with a private
temporary directory, sends it the kernel's source (the worker never reads the repository,
the trial's folder or the ground truth), and then asks for blocks of searches. It is the
watchdog (one deadline for the worker's whole life; at the deadline the process group is
killed) and the first line of the judge: it cross-checks the per-query times the worker
reports against its own clocks (the wall time of each round trip, and the CPU time of each
of its threads read from ``/proc/<pid>/task/*/schedstat``), so a kernel cannot under-report
its time or leave a thread working between its calls.
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

# Allowance in the CPU cross-check, per request over the worker's whole life (clock reads, a thread waking up).
SLACK_PER_REQUEST_NS = 1_000_000
# numba's OpenMP threads sleep as soon as a parallel region ends instead of spinning for the next one: a spinning thread
# would take the shared core from the main thread, and its CPU between calls could not be told from a kernel's work.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_THREADING_LAYER": "omp",
              "OMP_WAIT_POLICY": "PASSIVE"}


class WorkerFailure(Exception):
    """The worker stopped: ``kind`` is contract, raised, timeout, died or harness; the message says why."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Block:
    """One block of searches as the worker answered it (``ids``/``dists``: (n, calls, k))."""

    ids: np.ndarray  # the timed queries' results
    dists: np.ndarray
    wall_ns: np.ndarray  # per timed query
    cpu_ns: np.ndarray
    warm_cpu_ns: int = 0  # the untimed warm-up call's CPU, when the block had one
    warm_ids: np.ndarray | None = None  # and its result, (1, calls, k)
    warm_dists: np.ndarray | None = None


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


@dataclass
class CpuLedger:
    """The worker over all its searches, in ns: the wall time of its timed calls, its main thread's CPU inside them
    (as it reports it), and the CPU the operating system accounted to its main thread and to its other threads."""

    wall_inside: int = 0
    main_inside: int = 0
    used_main: int = 0
    used_others: int = 0
    requests: int = 0


def _schedstat_ns(pid: int, settle_s: float = 0.0) -> tuple[int, int] | None:
    """CPU time of the worker so far, in ns: (main thread, all other threads).

    Linux brings a running thread's count up to date only at a tick or when it stops running, so
    with ``settle_s`` this first waits (that long at most) until no thread of the worker is running."""
    end = time.monotonic() + settle_s
    while True:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
            running = any(Path(t, "stat").read_text().rpartition(")")[2].split()[0] == "R" for t in tasks)
            if running and time.monotonic() < end:
                time.sleep(0)
                continue
            times = {t.name: int(Path(t, "schedstat").read_text().split()[0]) for t in tasks}
            main = times.pop(str(pid))
        except (OSError, ValueError, IndexError, KeyError):
            return None
        return main, sum(times.values())


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

    def __init__(self, label: str, source: str, workloads: dict[str, dict], warm: np.ndarray, k: int,
                 deadline: float, memory_limit_mb: int = 4096, threads: int = 1, jail: bool = True):
        self.label, self.deadline, self.k, self.threads = label, deadline, k, threads
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
        self.warm_ns: dict[str, int] = {}
        self.warm_calls: dict[str, int] = {}
        self.steps_ns: dict[str, int] = {}
        self.cpu = CpuLedger()
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
        self.warm_ns = {str(k): int(v) for k, v in header.get("warm_ns", {}).items()}
        self.warm_calls = {str(k): int(v) for k, v in header.get("warm_calls", {}).items()}
        self.steps_ns = {str(k): int(v) for k, v in header.get("steps_ns", {}).items()}
        return self.prepare_ns

    def search(self, workload: str, queries: np.ndarray, probes: np.ndarray | None = None, warm: bool = True) -> Block:
        """Search a block (with a leading untimed warm-up query when ``warm``, whose result comes back apart); check the
        reported times."""
        arrays = [np.asarray(queries, np.float32)] + ([np.asarray(probes, np.int32)] if probes is not None else [])
        cpu0 = _schedstat_ns(self.proc.pid, settle_s=0.05)
        t0 = time.perf_counter_ns()
        try:
            send(self.cmd, {"op": "search", "workload": workload, "warm": warm}, *arrays)
        except OSError:
            pass
        header, out = self._receive(f"{workload} search")
        round_trip = time.perf_counter_ns() - t0
        cpu1 = _schedstat_ns(self.proc.pid, settle_s=0.05)
        n = queries.shape[0]
        width = 1 if probes is None else probes.shape[1]
        if header.get("op") != "result" or len(out) != 4:
            raise WorkerFailure("died", "the worker's reply is not a search result")
        ids, dists, wall, cpu = out
        if ids.shape != (n, width, self.k) or dists.shape != ids.shape or wall.shape != (n,) or cpu.shape != (n,):
            raise WorkerFailure("contract", "the worker's reply has the wrong shape")
        measured = cpu0 is not None and cpu1 is not None
        if measured:
            led = self.cpu
            led.wall_inside += int(wall.sum())
            led.main_inside += int(header.get("main_inside_ns", 0))
            led.used_main += cpu1[0] - cpu0[0]
            led.used_others += cpu1[1] - cpu0[1]
            led.requests += 1
        problem = check_times(wall, round_trip, self.cpu if measured else None, self.threads)
        if problem:
            self.kill()
            raise WorkerFailure("contract", f"{workload} search: {problem}")
        ids, dists, first = ids.astype(np.int64), dists.astype(np.float32), 1 if warm else 0
        return Block(ids[first:], dists[first:], wall[first:], cpu[first:], int(cpu[0]) if warm else 0,
                     ids[:first] if warm else None, dists[:first] if warm else None)

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


def check_times(wall: np.ndarray, round_trip_ns: int, cpu: CpuLedger | None, threads: int = 1) -> str:
    """'' when the worker's reported times agree with the judge's own clocks; else the problem.

    Per block: each wall time positive, and all of them within the block's round trip. Over the
    worker's life so far (``cpu``; None where ``/proc`` cannot be read): the CPU its main thread
    reports for the timed calls must not exceed what the operating system accounted to it, and its
    other ``threads - 1`` threads (numba's) may work only inside the calls, so their CPU cannot
    exceed the calls' wall time each. Between the calls the main thread runs the harness (receive,
    check, send), whose cost varies from machine to machine and is not compared."""
    if np.any(wall <= 0):
        return "a per-query time was not positive: the clock was tampered with"
    total = int(wall.sum())
    if total > round_trip_ns:
        return f"per-query times add to {total / 1e6:.3f} ms, more than the whole round trip ({round_trip_ns / 1e6:.3f} ms)"
    if cpu is None:
        return ""
    slack = SLACK_PER_REQUEST_NS * cpu.requests
    if cpu.main_inside > cpu.used_main + slack:
        return (f"the timed calls report {cpu.main_inside / 1e6:.1f} ms of CPU on the main thread, more than it used "
                f"({cpu.used_main / 1e6:.1f} ms)")
    allowed = (threads - 1) * cpu.wall_inside
    if cpu.used_others > allowed + slack:
        return (f"the worker's other threads used {cpu.used_others / 1e6:.1f} ms of CPU while it searched, more than "
                f"{threads - 1} thread(s) can in the {cpu.wall_inside / 1e6:.1f} ms of its timed calls: work happened "
                f"outside the timed calls")
    return ""
