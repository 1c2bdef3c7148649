#!/usr/bin/env python3
"""What honest kernels spend in prepare (and the warm-up searches after it), beside the budget (pqkern/bench/budget.py).

    scripts/prepare_cost.py [KERNEL ...]     # default: the seed, the demo kernels and the legitimate test kernels

Each kernel is started in a jailed worker on the default fixture's flat and IVF workloads, as the
trial starts it; the worker reports each workload's prepare and warm-up time. Prints one line per
kernel and workload with both figures, their sum and the budget, and the kernel's size in bytes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pqkern.bench import datasets
from pqkern.bench.budget import prepare_budget
from pqkern.bench.queries import fixed_queries, warm_vectors
from pqkern.bench.session import KernelProcess
from pqkern.bench.workloads import K, make

REPO = Path(__file__).resolve().parent.parent
DEFAULT = [REPO / "pqkern" / "bench" / "seed_kernel.py", *sorted((REPO / "pqkern" / "tools" / "demo_kernels").glob("*.py")),
           *sorted((REPO / "tests" / "kernels" / "legit").glob("*.py"))]


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or DEFAULT
    fx = datasets.ensure(None, ("flat", "ivf"))
    queries = fixed_queries(fx, 10)
    wls = {w: make(w, fx, queries) for w in ("flat", "ivf")}
    print(f"{fx.fixture_id}: prepare + warm-up, seconds (budget: {prepare_budget(fx.num_base):.2f} s per workload)")
    for path in paths:
        worker = KernelProcess(path.read_text(encoding="utf-8"), {w: wl.spec() for w, wl in wls.items()},
                               warm_vectors(fx, None), K, time.monotonic() + 600)
        try:
            worker.ready()
        finally:
            worker.close()
        for w in wls:
            prep, warm = worker.setup.prepare_ns[w] / 1e9, worker.setup.warm_ns[w] / 1e9
            print(f"  {path.name:22} {w:5} prepare {prep:7.3f}  warm-up {warm:7.3f}  sum {prep + warm:7.3f}  "
                  f"({path.stat().st_size:,} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
