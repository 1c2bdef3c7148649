"""The judge's handle on one kernel's worker process (immutable bench): it starts it, feeds it, and times it from outside.

``KernelProcess`` starts ``pqkern.bench.worker`` in its own process group with a private
temporary directory of a random name (``pqkern-worker-XXXXXXXX``: nothing in a worker's argv,
environment, paths or requests says which role it plays), sends it the kernel's source (the
worker never reads the repository, the trial's folder or the ground truth), and then sends it
requests, one query at a time.

**The worker reports no time.** The judge reads the worker's CPU time from the operating
system's accounting (``/proc/<pid>/task/*/schedstat``, every thread, which no process can
change for itself) just before it sends each request, and again once the reply is in and the
worker is blocked waiting for the next request. Everything the worker's process spends from
one reading to the other is that request's: the kernel's work, whatever it did after replying,
and the worker's own few microseconds of protocol (the same for every kernel). CPU spent between
requests (after the worker went idle, before the next request) is a contract failure: work
outside the timed calls. The wall time of a request is the judge's own clock around it. A
worker whose accounting cannot be read, or that keeps running after it replied, fails.
Peak memory is read the same way (``/proc/<pid>/status``).

It is also the watchdog (one deadline for the worker's whole life; at the deadline the process
group is killed). The worker dies with the judge (``PR_SET_PDEATHSIG``), even when the judge is
SIGKILLed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pqkern.bench.protocol import Deadline, ProtocolError, receive, send

# CPU a worker may be charged between two requests, each time and over its life. A worker blocked reading its next
# request uses none (measured: exactly 0 over thousands of gaps, quiet and loaded); the slack only absorbs a reading
# taken as the worker's last instructions before the read were still being accounted.
GAP_SLACK_NS = 50_000
GAP_TOTAL_NS = 2_000_000
# How long a worker may stay runnable after its reply is in (a loaded machine may not run it at once), not counting
# the time the judge itself was held up between two readings for longer than STALL_SECONDS.
SETTLE_SECONDS = 5.0
STALL_SECONDS = 0.5
# Past its first quick readings, the judge sleeps between two: a judge polling without a pause, on a CPU it shares with
# the worker (one CPU allowed, another thread of the judge busy), kept the worker from its last microseconds of protocol
# for up to 5 s (measured: 25,000 readings of a runnable worker that used 0.1 ms in 3.6 s).
POLL_SLEEP_SECONDS = 0.0002
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
    """Queries searched one request each: results ``(n, calls, k)`` and the judge's wall and CPU ns per query."""

    ids: np.ndarray
    dists: np.ndarray
    wall_ns: np.ndarray
    cpu_ns: np.ndarray


@dataclass
class Setup:
    """What the worker's set-up cost, measured by the judge: per workload, ``prepare`` and the start-up warm-up."""

    prepare_ns: dict[str, int] = field(default_factory=dict)  # CPU
    warm_ns: dict[str, int] = field(default_factory=dict)  # CPU of the warm-up searches right after prepare
    warm_calls: dict[str, int] = field(default_factory=dict)
    steps_ns: dict[str, int] = field(default_factory=dict)  # wall time of start-up (import, jail, compile)


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


def _stderr_fd() -> int:
    """Where the worker's prints go: this process's stderr (the kernel's output never reaches the result block)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # a stream with no descriptor (a test's capture): the real one
        return 2


def cpu_ns(pid: int) -> tuple[int, bool]:
    """The CPU time all of ``pid``'s threads have used, in ns, and whether any of them is running (or runnable).

    Linux brings a running thread's count up to date only at a tick or when it stops running, so the figure is exact
    only when none runs. Raises OSError when the accounting cannot be read."""
    total, running = 0, False
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that ended between the listing and the read
            continue
        running |= state == b"R"
    return total, running


def memory_kb(pid: int, field_name: str) -> int:
    """A field of ``/proc/<pid>/status`` in kB (VmRSS, VmHWM); 0 when absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


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
    """One kernel in one jailed worker; every request is timed by the judge from outside the worker."""

    def __init__(self, source: str, workloads: dict[str, dict], warm: np.ndarray, k: int, deadline: float,
                 memory_limit_mb: int = 4096, threads: int = 1, jail: bool = True):
        self.deadline, self.k, self.workloads = deadline, k, workloads
        self.warm = np.asarray(warm, np.float32)
        self.tmp = Path(tempfile.mkdtemp(prefix="pqkern-worker-"))
        cmd_r, self.cmd = os.pipe()
        self.reply, reply_w = os.pipe()
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), NUMBA_CACHE_DIR=str(self.tmp / "numba_cache"),
                   TMPDIR=str(self.tmp), **WORKER_ENV)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pqkern.bench.worker", str(cmd_r), str(reply_w)], pass_fds=(cmd_r, reply_w),
            stdin=subprocess.DEVNULL, stdout=_stderr_fd(), env=env, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        os.close(cmd_r)
        os.close(reply_w)
        self.setup = Setup()
        self.peak_mem_kb = 0
        self.rss0_kb = 0
        self.idle_cpu: int | None = None  # the worker's CPU when it last went idle
        self.gaps_ns = 0  # CPU it used between requests, over its life
        self.started = time.perf_counter_ns()
        try:
            send(self.cmd, {"kernel_source": source, "tmp": str(self.tmp), "workloads": workloads, "k": k,
                            "memory_limit_mb": memory_limit_mb, "jail": jail, "threads": threads, "forbid": forbidden()},
                 self.warm)
        except OSError:
            pass  # the worker died at once; the first receive says how

    # -- the protocol ---------------------------------------------------------------------------------------------
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

    def _settled_cpu(self, stage: str, quiet: int | None = None) -> int:
        """The worker's CPU ns once none of its threads runs (it is blocked waiting for the judge) and two readings in a
        row agree (a thread shows as sleeping a moment before the scheduler adds its last slice to its count), or one
        reading equals ``quiet``, the count when the worker was last seen settled: it has not run since."""
        give_up = time.monotonic() + SETTLE_SECONDS
        last, polls, polled = None, 0, time.monotonic()
        while True:
            try:
                used, running = cpu_ns(self.proc.pid)
            except (OSError, ValueError, IndexError) as e:
                if self.proc.poll() is not None:
                    raise WorkerFailure("died", f"the worker died in {stage} with {describe_death(self.proc.returncode)}"
                                                f"; see stderr") from None
                self.kill()
                raise WorkerFailure("harness", f"the judge cannot read the worker's CPU accounting ({e}): it times "
                                               f"every call from /proc/<pid>/task/*/schedstat (Linux)") from None
            if not running and used in (last, quiet):
                return used
            last = None if running else used
            now = time.monotonic()
            if now - polled > STALL_SECONDS:  # the judge itself was held up (a loaded machine): not the worker's doing
                give_up += now - polled
            polled = now
            if now > min(give_up, self.deadline):
                self.kill()
                raise WorkerFailure("contract", f"{stage}: the worker kept running {SETTLE_SECONDS:g} s after it "
                                                f"answered: work outside the timed calls")
            polls += 1
            if polls > 20:  # a few microseconds of protocol are left to the worker, usually: poll, then let it run
                time.sleep(POLL_SLEEP_SECONDS)

    def request(self, stage: str, header: dict, *arrays: np.ndarray) -> tuple[dict, list[np.ndarray], int, int]:
        """Send one request and wait for its answer: ``(header, arrays, wall ns, CPU ns)``, both measured here."""
        before = self._settled_cpu(stage, quiet=self.idle_cpu)
        self._check_gap(stage, before)
        t0 = time.perf_counter_ns()
        try:
            send(self.cmd, header, *arrays)
        except OSError:
            pass  # the receive says how the worker died
        got, out = self._receive(stage)
        wall = time.perf_counter_ns() - t0
        self.idle_cpu = self._settled_cpu(stage)
        return got, out, wall, self.idle_cpu - before

    def _check_gap(self, stage: str, now: int) -> None:
        """Fail when the worker used CPU since it last went idle, with no request to answer."""
        if self.idle_cpu is None:
            return
        gap = now - self.idle_cpu
        self.gaps_ns += gap
        if gap > GAP_SLACK_NS or self.gaps_ns > GAP_TOTAL_NS:
            self.kill()
            raise WorkerFailure("contract", f"{stage}: the worker used {gap / 1e3:.0f} us of CPU between two requests "
                                            f"({self.gaps_ns / 1e3:.0f} us in all), while it had nothing to answer: "
                                            f"work outside the timed calls")

    # -- the life of a worker -------------------------------------------------------------------------------------
    def ready(self) -> dict[str, int]:
        """Wait until the kernel is imported and compiled; then ``prepare`` and warm up each workload, timed from here.
        Returns ``prepare``'s CPU ns per workload."""
        header, _ = self._receive("start-up (import, compile)")
        if header.get("op") != "loaded":
            raise WorkerFailure("died", f"the worker sent {header.get('op')!r} instead of loaded")
        self.setup.steps_ns = {"start-up to compiled": time.perf_counter_ns() - self.started}
        self.rss0_kb = memory_kb(self.proc.pid, "VmRSS")
        self._reset_peak()
        for name, spec in self.workloads.items():
            self.setup.prepare_ns[name] = self.request(f"prepare ({name})", {"op": "prepare", "workload": name})[3]
            # the warm-up searches: each warm vector on the whole flat index, or on the first partitions of an IVF layout
            parts = min(4, int(spec.get("partitions", 1))) if spec["kind"] == "ivf" else 1
            probes = np.arange(parts, dtype=np.int32)[None, :] if spec["kind"] == "ivf" else None
            spent = calls = 0
            for i, vector in enumerate(self.warm):
                asked = vector[None, :] if probes is None else np.repeat(vector[None, None, :], parts, axis=1)
                got = self._search(name, asked, probes, f"{name} warm-up vector {i}")
                spent += got[3]
                calls += parts
            self.setup.warm_ns[name], self.setup.warm_calls[name] = spent, calls
        return self.setup.prepare_ns

    def _search(self, workload: str, queries: np.ndarray, probes: np.ndarray | None, stage: str):
        arrays = [np.asarray(queries, np.float32)] + ([np.asarray(probes, np.int32)] if probes is not None else [])
        header, out, wall, cpu = self.request(stage, {"op": "search", "workload": workload}, *arrays)
        width = 1 if probes is None else probes.shape[1]
        if header.get("op") != "result" or len(out) != 2:
            raise WorkerFailure("died", "the worker's reply is not a search result")
        ids, dists = out
        if ids.shape != (1, width, self.k) or dists.shape != ids.shape:
            raise WorkerFailure("contract", "the worker's reply has the wrong shape")
        return ids.astype(np.int64), dists.astype(np.float32), wall, cpu

    def search(self, workload: str, queries: np.ndarray, probes: np.ndarray | None = None) -> Block:
        """Search each query (with its probed partitions for ivf) in a request of its own, timed from here."""
        got = [self._search(workload, queries[j: j + 1], None if probes is None else probes[j: j + 1],
                            f"{workload} search") for j in range(queries.shape[0])]
        return Block(np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got]),
                     np.array([g[2] for g in got], np.int64), np.array([g[3] for g in got], np.int64))

    def _reset_peak(self) -> None:
        """Make the peak resident memory (VmHWM) start again from now, where the kernel allows it (clear_refs)."""
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass  # without clear_refs the peak is the lifetime peak: an over-estimate

    def finish(self) -> int:
        """End the worker; return the kernel's peak resident-memory growth in kB, read from outside."""
        try:
            self.peak_mem_kb = max(0, memory_kb(self.proc.pid, "VmHWM") - self.rss0_kb)
        except OSError:
            pass
        self._check_gap("finish", self._settled_cpu("finish"))
        try:
            send(self.cmd, {"op": "finish"})
        except OSError:
            pass
        self._receive("finish")
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
