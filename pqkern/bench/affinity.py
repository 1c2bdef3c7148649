"""Which CPU the judge runs on and which the kernels' workers run on (immutable bench).

A trial reserves its CPUs machine-wide first (``cpus.py``): the judge's, the workers', and the
workers' SMT siblings, held idle; no two trials share a CPU, and a trial that finds none free
waits. While kernels are being timed their workers are held on the reservation's workers' CPU
and the judge's thread (and the exact-answer thread it starts) on its judge's CPU: the workers
never migrate (a migration leaves a kernel's caches behind, and the scheduler moves one worker
and not the other), and the judge's polling and checks never share the workers' CPU, nor do its
wake-ups preempt them. Start-up (import, compile, prepare) is not held: the workers use both of
the reservation's CPUs there. Measured with ``scripts/pair_noise.py`` (1M, 4 runs of 150 rounds
each way): rounds 5% shorter, per-query spread lower, the combined 99% interval's median width
0.0160 against 0.0170 (the widest 0.0162 against 0.0184). Both workers of a pair share that
CPU, so whatever else runs there hits both alike, as the pairing assumes.

Without a reservation (``pqkern-run``, a ``Match`` built directly), the first and the last of
the allowed CPUs no reservation holds. With one CPU reserved, allowed or free (``taskset -c 0
pqkern-trial``, a one-CPU machine), or kernels given several threads, nothing is pinned.

``PQKERN_PIN=0`` switches pinning off (the reservation stands).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from pqkern.bench import cpus

ENV = "PQKERN_PIN"


def plan(threads: int = 1) -> tuple[int | None, int | None]:
    """``(judge CPU, workers' CPU)``: the reservation's this process works under (``cpus.current``), else the first and
    the last allowed CPU no reservation holds; ``(None, None)`` (nothing held) with one CPU, kernels of several threads
    (``--threads``: they need the CPUs), not Linux, or switched off."""
    if threads > 1 or os.environ.get(ENV, "1") == "0" or not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    mine = cpus.current()
    if mine is not None:
        pair = (mine.judge, mine.workers)
        return pair if mine.judge != mine.workers and set(pair) <= set(allowed) else (None, None)
    try:
        free = [c for c in allowed if not cpus.taken(c)]
    except cpus.Unusable:  # a lock directory that cannot be read: every CPU counts as free
        free = allowed
    return (free[0], free[-1]) if len(free) > 1 else (None, None)


def hold(pid: int, cpu: int | None) -> None:
    """Hold every thread of process ``pid`` (a worker) on ``cpu``; None leaves it as it is."""
    if cpu is None:
        return
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:  # the worker is gone: its next request says how
        return
    for task in tasks:
        try:
            os.sched_setaffinity(int(task), {cpu})
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


@contextmanager
def judge_on(cpu: int | None):
    """Hold the calling thread (the judge, and threads it starts meanwhile) on ``cpu``, and give it back its CPUs after."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def timing(pids: list[int], cpus: tuple[int | None, int | None]):
    """While kernels are timed: the workers ``pids`` held on ``cpus[1]``, the judge on ``cpus[0]`` (see ``plan``)."""
    for pid in pids:
        hold(pid, cpus[1])
    with judge_on(cpus[0]):
        yield
