#!/usr/bin/env python3
"""What a query costs on the real descriptors' two layouts: the flat scan (``real``) and the IVF_PQ layout (``real-ivf``).

    scripts/real_layouts.py [KERNEL ...]     (default: the frozen seed; files or git revisions)

For each kernel, one jailed worker per layout (``pqkern/bench/session.py``) searches 200 fresh
queries of the imagesift fixture, one request each, timed from outside; prints the median CPU
time per query. The data must be built (``python -m pqkern.bench.datasets``).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from pqkern.bench.datasets import REAL, REAL_IVF, real_rows
from pqkern.bench.fixture import load_fixture
from pqkern.bench.paired import kernel_source, query_set
from pqkern.bench.queries import warm_vectors
from pqkern.bench.session import KernelProcess
from pqkern.bench.workloads import make

QUERIES = 200


def main(argv: list[str]) -> int:
    fx = load_fixture(build=False)
    queries = query_set(fx, QUERIES, query_seed=12345)
    for spec in argv or ["seed"]:
        for name in (REAL, REAL_IVF):
            wl = make(f"{name}@{real_rows()}" if real_rows() else name, fx, queries)
            worker = KernelProcess(kernel_source(spec), {wl.name: wl.spec()}, warm_vectors(fx, queries.seed), wl.k,
                                   time.monotonic() + 600)
            try:
                worker.ready()
                cpu = [worker.search(wl.name, *wl.request(np.array([i]))).cpu_ns[0] for i in range(QUERIES)]
                worker.finish()
            finally:
                worker.close()
            print(f"{spec} {name}: median CPU {np.median(cpu) / 1e3:.0f} us per query ({QUERIES} fresh queries)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
