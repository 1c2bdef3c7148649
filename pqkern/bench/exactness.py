"""Exactness proved before a keep (immutable bench): the candidate on thousands of fresh queries nobody timed.

The timed rounds of a trial check every result, but a decision may need only a few dozen
queries, and a kernel wrong on one query in a few hundred would slip through. So before a
candidate is kept (and before a baseline is recorded) it searches ``CHECK_QUERIES`` more fresh
queries on each workload, which the judge checks exactly as it checks timed ones (at once, then
against the exact ADC top-k, rank by rank). A kernel wrong on 1 query in 300 is caught with
probability 1 - (299/300)**2200, above 99.9%, by this phase alone.

A check the kernel could tell apart from the timed rounds is one it could pass while cheating in
them, so nothing tells them apart: the check runs in a fresh worker of its own (started while the
timed rounds' results are checked), which receives exactly what a worker of the timed rounds
receives, from its first call: the same start-up, and then, round by round, the same requests of
the same workloads in the same order, each flat query led by an untimed call on another fresh
query. A kernel that counts its calls, or watches their pattern, to be exact only when checked
meets the check at whatever call it cheats on.

The judge computes the exact answers in a thread while the worker searches on (the oracle is
compiled ``nogil``), so the check costs about the kernel's own search time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pqkern.bench.workloads import Checked

CHECK_QUERIES = 2200  # per workload
BATCH_ROUNDS = 25  # rounds whose results are rank-checked together


class ExactnessFailure(Exception):
    """The candidate failed the exactness check; ``kind`` is contract (a wrong result) or the worker's failure kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def check(match, label: str, rows: np.ndarray, tolerance: float, log=None) -> dict[str, list[Checked]]:
    """Search ``rows`` of the query set on every workload with ``label``'s worker of ``match`` (a ``paired.Match``), in the
    timed rounds' pattern; return each workload's checked results. Raises :class:`ExactnessFailure` naming the first
    wrong query, or how the worker failed."""
    from pqkern.bench.paired import Failed

    out: dict[str, list[Checked]] = {w: [] for w in match.wls}
    pending: list[tuple[str, Checked, object]] = []
    with ThreadPoolExecutor(1) as pool:
        try:
            batch: dict[str, list[Checked]] = {w: [] for w in match.wls}
            rounds = match.rounds_in(rows)
            for t in range(rounds):
                for w in match.wls:
                    for warm_row, row in match.calls(w, t, rows):
                        _, checked, warm = match.search(label, w, warm_row, row)
                        batch[w] += [checked] + ([warm] if warm is not None else [])
                if (t + 1) % BATCH_ROUNDS == 0 or t + 1 == rounds:
                    for w, got in batch.items():
                        if got:
                            merged = Checked.join(got)
                            out[w].append(merged)
                            pending.append((w, merged, pool.submit(match.wls[w].rank_problem, merged, tolerance)))
                    batch = {w: [] for w in match.wls}
        except Failed as e:
            raise ExactnessFailure(e.kind, f"exactness check: {e}") from None
        if log:
            log(f"exactness: {rounds} rounds, {sum(len(c.rows) for got in out.values() for c in got)} results")
        for w, _, future in pending:
            problem = future.result()
            if problem:
                raise ExactnessFailure("contract", f"exactness check, {w}: {problem}")
    return out
