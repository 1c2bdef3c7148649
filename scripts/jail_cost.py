#!/usr/bin/env python3
"""What does the jail cost? The same kernel in a jailed and an unjailed worker, timed side by side.

Both workers load the same kernel on the same fixture; the judge alternates them query by query
in random order (as the paired verdict does), so the ratio of their per-query CPU times is the
jail's effect on the timed phase, with a 99% confidence sequence. It also prints each worker's
start-up steps: the ``jail`` step is the set-up cost of entering it.

    scripts/jail_cost.py [--kernel pqkern/bench/seed_kernel.py] [--workload flat] [--queries 500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pqkern.bench import datasets, throughput
from pqkern.bench.queries import fixed_queries, warm_vectors
from pqkern.bench.session import KernelProcess
from pqkern.bench.workloads import K, make

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", type=Path, default=REPO / "pqkern" / "bench" / "seed_kernel.py")
    ap.add_argument("--workload", choices=("flat", "ivf"), default="flat")
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()
    fx = datasets.ensure(None, ("flat", "ivf"))
    qs = fixed_queries(fx, args.queries)
    wl = make(args.workload, fx, qs)
    source = args.kernel.read_text(encoding="utf-8")
    deadline = time.monotonic() + 3600
    workers = {jailed: KernelProcess(source, {wl.name: wl.spec()}, warm_vectors(fx, None), K,
                                     deadline, jail=jailed) for jailed in (True, False)}
    rng = np.random.default_rng()
    ratios = []
    try:
        for w in workers.values():
            w.ready()
        for qi in rng.permutation(len(qs)):
            cpu = {}
            for jailed in ((True, False) if rng.random() < 0.5 else (False, True)):
                cpu[jailed] = workers[jailed].search(wl.name, *wl.request(np.array([qi]))).cpu_ns[0]
            ratios.append((float(cpu[True]), float(cpu[False])))
        steps = {jailed: dict(w.setup.steps_ns) for jailed, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    iv = throughput.intervals({"w": ratios})["w"]
    est, lo, hi = iv.as_ratio()
    print(f"{fx.fixture_id}, {wl.name}, {len(ratios)} queries, {args.kernel.name}")
    print(f"jailed / unjailed CPU time over the same queries: {est:.4f} [{lo:.4f}, {hi:.4f}] (99% confidence sequence)")
    for jailed, s in steps.items():
        print(f"  {'jailed  ' if jailed else 'unjailed'} start-up steps (s): " +
              ", ".join(f"{k} {v / 1e9:.3f}" for k, v in s.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
