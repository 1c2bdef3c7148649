#!/usr/bin/env python3
"""How noisy a paired comparison is, per workload: two kernels (the frozen seed twice by default) for N rounds.

    scripts/pair_noise.py [--rounds 150] [--runs 4] [--incumbent seed] [--candidate seed]

Runs ``--runs`` comparisons in measure mode on the runner's default fixture, alternating the
workers held on one CPU and the judge on another (``pqkern/bench/affinity.py``) with nothing held
(``PQKERN_PIN=0``), each in a fresh process. Per run and workload it prints the median CPU time
per query, the spread of the per-query ``x = ln(cpu_incumbent / cpu_candidate)`` (standard
deviation and median absolute deviation), the milliseconds a round took, and the combined 99%
interval: its width is what decides how soon a nil change ends ``within``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ONE_RUN = r"""
import json, math, sys
import numpy as np
from pqkern.bench import datasets, paired
from pqkern.bench.fixture import load_fixture
from pqkern.bench.workloads import judged
fx = load_fixture()
wls = judged(fx.source)
datasets.extend(fx, wls)
cmp = paired.compare(fx, paired.kernel_source(sys.argv[2]), paired.kernel_source(sys.argv[3]), wls, mode="measure",
                     rounds=int(sys.argv[1]))
out = {"ms_per_round": 1000 * cmp.timings["paired"] / max(cmp.rounds, 1), "combined": cmp.intervals["combined"].as_ratio()}
for w in wls:
    xs = np.array([math.log(r["incumbent_cpu_ns"] / r["candidate_cpu_ns"]) for r in cmp.records if r["workload"] == w])
    out[w] = {"cpu_us": float(np.median([r["incumbent_cpu_ns"] for r in cmp.records if r["workload"] == w])) / 1e3,
              "sd": float(xs.std()), "mad": float(np.median(np.abs(xs - np.median(xs))))}
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=150)
    ap.add_argument("--runs", type=int, default=4, help="runs of each setting, alternated")
    ap.add_argument("--incumbent", default="seed")
    ap.add_argument("--candidate", default="seed")
    args = ap.parse_args()
    widths: dict[str, list[float]] = {"held": [], "not held": []}
    for _ in range(args.runs):
        for setting in widths:
            env = dict(os.environ, PQKERN_PIN="1" if setting == "held" else "0")
            got = subprocess.run([sys.executable, "-c", ONE_RUN, str(args.rounds), args.incumbent, args.candidate],
                                 capture_output=True, text=True, env=env)
            if got.returncode:
                print(got.stderr, file=sys.stderr)
                return 1
            r = json.loads(got.stdout.strip().splitlines()[-1])
            s, lo, hi = r.pop("combined")
            ms = r.pop("ms_per_round")
            widths[setting].append(hi - lo)
            parts = [f"{w} {v['cpu_us']:.0f}us sd {v['sd']:.3f} MAD {v['mad']:.4f}" for w, v in r.items()]
            print(f"{setting:8s} {ms:5.1f} ms/round combined {s:.3f}x [{lo:.3f}, {hi:.3f}] width {hi - lo:.3f} | "
                  + "; ".join(parts), flush=True)
    for setting, ws in widths.items():
        print(f"SUMMARY {setting}: median interval width {statistics.median(ws):.4f} over {len(ws)} runs "
              f"(range {min(ws):.4f}-{max(ws):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
