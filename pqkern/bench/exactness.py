"""Exactness proved before a keep (immutable bench): the candidate on thousands of fresh queries nobody timed.

The timed rounds of a trial check every result, but a decision may need only a few dozen
queries, and a kernel wrong on one query in a few hundred would slip through. So before a
candidate is kept (and before a baseline is recorded) its worker searches ``CHECK_QUERIES`` more
fresh queries on each workload, which the judge checks exactly as it checks timed ones (the
cheap checks at once, then the exact ADC top-k, rank by rank). The calls look like timed ones
to the kernel: the same requests, one query each, and every timed result is checked too, so no
call is one a kernel could safely get wrong. A kernel wrong on 1 query in 300 is caught with
probability 1 - (299/300)**2200, above 99.9%, by this phase alone.

The judge computes the exact answers of each block in a thread while the worker searches the
next one (the oracle is compiled ``nogil``), so the check costs about the kernel's own search time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pqkern.bench.session import KernelProcess, WorkerFailure
from pqkern.bench.worker import ContractError
from pqkern.bench.workloads import Checked

CHECK_QUERIES = 2200  # per workload
BLOCK = 50


class ExactnessFailure(Exception):
    """The candidate failed the exactness check; ``kind`` is contract (a wrong result) or the worker's failure kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def check(worker: KernelProcess, wls: dict, rows: np.ndarray, tolerance: float, log=None) -> dict[str, list[Checked]]:
    """Search ``rows`` of the query set on every workload with ``worker``; return each workload's checked results.

    Raises :class:`ExactnessFailure` naming the first wrong query (or how the worker failed)."""
    out: dict[str, list[Checked]] = {w: [] for w in wls}
    with ThreadPoolExecutor(1) as pool:
        pending = []
        for name, wl in wls.items():
            for a in range(0, len(rows), BLOCK):
                part = rows[a: a + BLOCK]
                try:
                    block = worker.search(name, *wl.request(part, None), warm=False)
                    checked = wl.check(part, block.ids, block.dists, tolerance)
                except WorkerFailure as e:
                    raise ExactnessFailure(e.kind, f"exactness check, {name}: {e}") from None
                except ContractError as e:
                    raise ExactnessFailure("contract", f"exactness check, {name}: {e}") from None
                out[name].append(checked)
                pending.append((name, pool.submit(wl.rank_problem, checked, tolerance)))
            if log:
                log(f"exactness: {name}: {len(rows)} queries searched")
        for name, future in pending:
            problem = future.result()
            if problem:
                raise ExactnessFailure("contract", f"exactness check, {name}: {problem}")
    return out
