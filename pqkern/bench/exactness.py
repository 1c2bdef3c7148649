"""Exactness proved before a keep (immutable bench): the same paired rounds, carried on, every answer checked.

The timed rounds of a trial check every result, but a decision may need only a few dozen
queries, and a kernel wrong on one query in a few hundred would slip through. So once a
candidate is decided a keep (and for a baseline), the rounds simply go on: the same two
workers, the same partner, the same requests (one query a request, each timed query led by an
untimed one), with no pause between the decision and the check, for ``CHECK_ROUNDS`` more
rounds. The candidate searches ``CHECK_QUERIES`` more fresh queries on each workload (twice as
many on IVF, two pairs a round), and so does its partner, the incumbent (which was kept before
and is checked again). Every answer is checked against the exact ADC top-k, rank by rank, while
the rounds go on (the judge computes the exact answers in a thread, bounded by the k-th distances
the kernels returned).

Nothing a kernel can see tells the check from the decision: no role (every worker starts the
same way), no pause, no other partner, no other pattern of calls, so its call count and a
coarse clock say nothing either. Both kernels of the trial get the check.

What it catches: a kernel wrong on 1 query in 300, on every workload, is caught with probability
``1 - (299/300) ** 2800`` = 99.99% by this phase alone (700 flat, 1,400 IVF and 700 real queries);
one wrong on the flat or the real workload only with ``1 - (299/300) ** 700`` = 90.3% at its keep
(IVF only: 99.1%), and again at the next keep, where it is the incumbent and searches as many
(99.1% over both), besides the queries of every trial in between, in each of which it is the
incumbent.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHECK_QUERIES = 700  # per workload and kernel, at least (a pair a round: the untimed query and the timed one)
CHECK_ROUNDS = CHECK_QUERIES // 2
BATCH_ROUNDS = 25  # rounds whose exact answers are computed together, in the background


def carry_on(match, first: str, second: str, rows: np.ndarray, cmp, log=None) -> None:
    """``CHECK_ROUNDS`` more rounds of ``first`` against ``second`` on ``rows`` (``paired.Match.pair`` in measure mode,
    into ``cmp``), the exact answers of each batch computed in a thread while the next batch is searched. The caller's
    ``Match.settle`` then checks every result (the answers are cached by then)."""
    done = {w: sum(len(c.rows) for label in (first, second) for c in match.figures[label][w].checked) for w in match.wls}
    with ThreadPoolExecutor(1) as pool:
        pending = []

        def batch(round_: int) -> None:
            if (round_ + 1) % BATCH_ROUNDS:
                return
            for w, wl in match.wls.items():
                got = [match.figures[label][w].results() for label in (first, second)]
                rows_, bounds = np.concatenate([g[0] for g in got]), np.concatenate([g[2][:, -1] for g in got])
                pending.append(pool.submit(wl.oracle, rows_[done[w]:], bounds[done[w]:]))
                done[w] = rows_.size

        match.pair(first, second, rows, cmp, mode="measure", rounds=CHECK_ROUNDS, after_round=batch)
        for future in pending:
            future.result()
    if log:
        log(f"exactness: {cmp.rounds} more rounds, every answer checked")
