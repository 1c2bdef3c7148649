"""Exactness proved before a keep (immutable bench): the same paired rounds, carried on, every answer checked.

Every answer of every round is checked against the exact ADC top-k, but a decision may need only
a few dozen rounds, and a kernel wrong on one query in a few hundred would slip through. So once a
candidate is decided a keep (and for a baseline), the rounds simply go on, until the trial's
rounds, the decision's included, hold ``CHECKED_ANSWERS`` answers of each kernel (``rounds_to_go``):
the same two workers, the same partner, the same requests (one query a request, each timed query
led by an untimed one), with no pause between the decision and the check. The incumbent (kept
before) is checked again alongside. The judge computes the exact answers in a thread while the
rounds go on, bounded by the k-th distances the kernels returned, on one low-priority thread on
the judge's CPU (``_in_the_background``), and so is recall's ground truth, a BLAS scan held to one
BLAS thread meanwhile (its threads would take the workers' CPU).

Nothing a kernel can see tells the check from the decision: no role (every worker starts the
same way), no pause, no other partner, no other pattern of calls, so its call count and a
coarse clock say nothing either. Both kernels of the trial get the check.

What it catches, counting only the rounds a kernel cannot tell from its decision (the seed
measurement after them checks more): a kernel wrong on 1 query in 300 on every workload gives
2,080 answers a chance, ``1 - (299/300) ** 2080`` = 99.90%. One wrong on a single workload
meets its share of them (of ten answers a round, two flat, four IVF, four real IVF): flat only,
416 answers, 75.0% at its keep; one IVF workload only, 832, 93.8%; and as often again at the next
keep, where it is the incumbent (93.8% and 99.6% over both), besides the queries of every trial
in between, in each of which it is the incumbent and every answer is checked. A kernel found
wrong as the incumbent is revoked (``history.py``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from pqkern.bench.paired import CHECKED_ANSWERS, RECALL_SAMPLE, answers_per_round

CHECK_ROUNDS = 350  # the most rounds the check may take (a round holds at least 6 answers: flat and IVF, 2 pairs)
BATCH_ROUNDS = 25  # rounds whose exact answers are computed together, in the background


def _in_the_background() -> None:
    """The exact-answer thread computes on one thread (numba's thread count is per thread), on the judge's CPU, never on
    the workers', at the lowest priority (nice 19, Linux: this thread only), so that the judge preempts it as soon as a
    worker answers. Not SCHED_IDLE: the thread holds the GIL between its compiled calls, and one that never runs on a
    busy CPU would stall the judge without end (measured: a trial held on one CPU failed the seed's worker after a 5 s
    stall)."""
    import numba

    numba.set_num_threads(1)
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


@contextmanager
def _one_blas_thread():
    """BLAS on one thread while the rounds go on (its threads would take the workers' CPU), if threadpoolctl can say so:
    yields whether it could."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield True


def rounds_to_go(match, decided: int) -> int:
    """The rounds the check adds to ``decided`` rounds for ``CHECKED_ANSWERS`` answers of each kernel."""
    return min(CHECK_ROUNDS, max(0, -(-CHECKED_ANSWERS // answers_per_round(match)) - decided))


def carry_on(match, first: str, second: str, rows: np.ndarray, cmp, decided: int, log=None) -> None:
    """``rounds_to_go`` more rounds of ``first`` against ``second`` on ``rows`` (``paired.Match.pair`` in measure mode,
    into ``cmp``), the exact answers of each batch computed in a thread while the next batch is searched, when the judge
    has a CPU of its own (``affinity.py``). On one CPU they wait for the rounds: a busy thread beside the workers kept a
    worker that had just answered from running for seconds (measured: 3.6 s), which the judge must read as a worker that
    does not stop. The caller's ``Match.settle`` then checks every result."""
    rounds = rounds_to_go(match, decided)
    if match.cpus[0] is None:  # no CPU of its own for the judge: the exact answers wait for the rounds
        match.pair(first, second, rows, cmp, mode="measure", rounds=rounds)
    else:
        _with_answers_in_background(match, first, second, rows, cmp, rounds)
    if log:
        log(f"exactness: {cmp.rounds} more rounds ({decided + cmp.rounds} in all), every answer checked")


def _with_answers_in_background(match, first: str, second: str, rows: np.ndarray, cmp, rounds: int) -> None:
    """``rounds`` rounds, the exact answers (and recall's ground truth) of every ``BATCH_ROUNDS`` computed in a thread
    while the next batch is searched."""
    done = {w: sum(len(c.rows) for label in (first, second) for c in match.figures[label][w].checked) for w in match.wls}
    with ThreadPoolExecutor(1, initializer=_in_the_background) as pool, _one_blas_thread() as limited:
        pending = []

        def batch(round_: int) -> None:
            if (round_ + 1) % BATCH_ROUNDS:
                return
            for w, wl in match.wls.items():
                got = [match.figures[label][w].results() for label in (first, second)]
                rows_, bounds = np.concatenate([g[0] for g in got]), np.concatenate([g[2][:, -1] for g in got])
                pending.append(pool.submit(wl.oracle, rows_[done[w]:], bounds[done[w]:]))
                done[w] = rows_.size
                if limited and wl.queries.fresh:  # recall's ground truth (the first rows searched), one BLAS thread
                    pending.append(pool.submit(wl.queries.groundtruth, got[1][0][:RECALL_SAMPLE], wl.k, wl.num_rows))

        match.pair(first, second, rows, cmp, mode="measure", rounds=rounds, after_round=batch)
        for future in pending:
            future.result()
