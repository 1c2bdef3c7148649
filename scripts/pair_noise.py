#!/usr/bin/env python3
"""How noisy a paired comparison is, per workload, and where the noise comes from: two kernels (the frozen seed twice by
default) for N rounds.

    scripts/pair_noise.py [--rounds 150] [--runs 3] [--incumbent seed] [--candidate seed] [--unpinned]

Each run is a comparison in measure mode on the runner's default fixture, on the trial's workloads, in a fresh process
(``--unpinned`` alternates runs with nothing held, ``PQKERN_PIN=0``). Per run and workload it prints:

- the median CPU time per query and the milliseconds a round took;
- the throughput interval (``pqkern/bench/throughput.py``) after the run and its half-width: what decides how soon a
  nil change ends ``within`` (a workload whose code did not change should be within +-1% by the cap);
- the noise of one pair, ``x = ln(t_incumbent / t_candidate)``: its standard deviation against its median absolute
  deviation x 1.4826 (equal for normal noise; a larger sd is the heavy tail of a shared machine: a call that ran while
  the machine's state changed between the two calls of a pair);
- order within a pair: the mean ``x`` when the incumbent went first minus when it went second, halved (a call after the
  other kernel's may find the shared codes in cache, or lose its own), and the share of ``x``'s variance it explains;
- partition-size mix (IVF): the correlation of ``x`` with the rows a query's probes scan;
- per-call overhead: what the worker's own loop and protocol cost per request, measured in this process with a kernel
  that does nothing (counted alike for both kernels; it dilutes large IVF speed-ups slightly).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ONE_RUN = r"""
import json, math, sys
import numpy as np
from pqkern.bench import datasets, paired
from pqkern.bench.fixture import load_fixture
from pqkern.bench.queries import fresh_queries, parse_seed
from pqkern.bench.workloads import judged, make
fx = load_fixture()
wls = judged(fx.source)
datasets.extend(fx, wls)
cmp = paired.compare(fx, paired.kernel_source(sys.argv[2]), paired.kernel_source(sys.argv[3]), wls, mode="measure",
                     rounds=int(sys.argv[1]))
q = fresh_queries(fx, parse_seed(cmp.query_seed), paired.POOL)
out = {"ms_per_round": 1000 * cmp.timings["paired"] / max(cmp.rounds, 1)}
for w in [*wls, "combined"]:
    s, lo, hi = cmp.intervals[w].as_ratio()
    out.setdefault("intervals", {})[w] = [s, lo, hi, (math.log(hi) - math.log(lo)) / 2]
for w in wls:
    rs = [r for r in cmp.records if r["workload"] == w]
    a = np.array([r["incumbent_cpu_ns"] for r in rs], float)
    b = np.array([r["candidate_cpu_ns"] for r in rs], float)
    x = np.log(a / b)
    first = np.array([r["first"] == "incumbent" for r in rs])
    order = (x[first].mean() - x[~first].mean()) / 2 if first.any() and (~first).any() else 0.0
    wl = make(w, fx, q)
    corr = None
    if wl.kind == "ivf":
        sizes = np.array([wl.sizes[wl._probes[r["query"]]].sum() for r in rs], float)
        corr = float(np.corrcoef(sizes, x)[0, 1])
    out[w] = {"cpu_us": float(np.median(a)) / 1e3, "sd": float(x.std()),
              "robust_sd": float(1.4826 * np.median(np.abs(x - np.median(x)))), "order": float(order),
              "order_share": float(order ** 2 / max(x.var(), 1e-12)), "size_corr": corr}
print(json.dumps(out))
"""


def overhead_us() -> dict[str, float]:
    """The worker's own cost per request (its loop over the calls, the result checks), with a kernel that does nothing."""
    from pqkern.bench import worker

    class Nothing:
        ids, dists = np.arange(10, dtype=np.int64), np.arange(10, dtype=np.float32)

        def search(self, index, query, k):
            return self.ids, self.dists

    class Part:
        name, indexes, parts = "w", [object()] * 122, [np.zeros((16, 8000), np.uint8)] * 122

    out = {}
    for kind, (queries, probes) in {"flat": (np.zeros((1, 128), np.float32), None),
                                     "ivf": (np.zeros((1, 15, 128), np.float32), np.arange(15, dtype=np.int32)[None])}.items():
        start = time.perf_counter()
        for _ in range(2000):
            worker.search(Nothing(), Part(), 10, queries, probes)
        out[kind] = (time.perf_counter() - start) / 2000 * 1e6
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--incumbent", default="seed")
    ap.add_argument("--candidate", default="seed")
    ap.add_argument("--unpinned", action="store_true", help="alternate runs held on CPUs with runs held nowhere")
    args = ap.parse_args()
    print("worker overhead per request (a kernel that does nothing): "
          + ", ".join(f"{k} {v:.0f} us" for k, v in overhead_us().items()), flush=True)
    settings = ["held", "not held"] if args.unpinned else ["held"]
    halves: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for setting in settings:
            env = dict(os.environ, PQKERN_PIN="1" if setting == "held" else "0")
            got = subprocess.run([sys.executable, "-c", ONE_RUN, str(args.rounds), args.incumbent, args.candidate],
                                 capture_output=True, text=True, env=env)
            if got.returncode:
                print(got.stderr, file=sys.stderr)
                return 1
            r = json.loads(got.stdout.strip().splitlines()[-1])
            ivs = r.pop("intervals")
            print(f"{setting}: {r.pop('ms_per_round'):.1f} ms/round; " + "; ".join(
                f"{w} {s:.3f}x [{lo:.3f}, {hi:.3f}] +-{100 * h:.2f}%" for w, (s, lo, hi, h) in ivs.items()), flush=True)
            for w, v in r.items():
                halves.setdefault(w, []).append(ivs[w][3])
                size = f", size corr {v['size_corr']:+.3f}" if v["size_corr"] is not None else ""
                print(f"    {w}: {v['cpu_us']:.0f} us/query; pair sd {v['sd']:.3f} (robust {v['robust_sd']:.3f}); order "
                      f"{100 * v['order']:+.2f}% ({100 * v['order_share']:.1f}% of the variance){size}", flush=True)
            halves.setdefault("combined", []).append(ivs["combined"][3])
    for w, hs in halves.items():
        print(f"SUMMARY {w}: half-width at {args.rounds} rounds median +-{100 * float(np.median(hs)):.2f}% "
              f"(range {100 * min(hs):.2f}-{100 * max(hs):.2f}%) over {len(hs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
