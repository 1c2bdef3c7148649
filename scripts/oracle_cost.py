#!/usr/bin/env python3
"""What the judge's exact answers cost per fresh query: verifying (bounded by a kernel's k-th distance) or searching.

    .venv/bin/python scripts/oracle_cost.py [--queries 200]

On the runner's default fixture, for fresh queries: the exact ADC top-10 of each, flat and IVF, once with no bound (a
search: every row gets its exact distance) and once bounded by the true k-th distance, as a kernel's own answers
bound it in a trial (a verification: rows whose float32 partial sums pass the bound are dropped early). Each is
timed in the judge's own thread, one run after the other, so read the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pqkern.bench import datasets
from pqkern.bench.queries import draw_seed, fresh_queries
from pqkern.bench.workloads import make


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    fx = datasets.ensure(None, ("flat", "ivf"))
    qs = fresh_queries(fx, draw_seed(), 2 * args.queries)
    for name in ("flat", "ivf"):
        rows = np.arange(args.queries)
        wl = make(name, fx, qs)
        wl.oracle(np.array([args.queries]))  # compiled (or loaded from numba's cache) before timing
        t0 = time.perf_counter()
        _, exact = wl.oracle(rows)  # no bound: a search
        search = time.perf_counter() - t0
        verify_wl = make(name, fx, qs)
        t0 = time.perf_counter()
        _, again = verify_wl.oracle(rows, exact[:, -1])  # bounded by the true k-th distance: a verification
        verify = time.perf_counter() - t0
        assert np.array_equal(again, exact)
        print(f"{fx.fixture_id} {name}: search {1e3 * search / args.queries:.2f} ms/query, verify "
              f"{1e3 * verify / args.queries:.2f} ms/query ({search / verify:.1f}x)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
