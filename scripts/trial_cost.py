#!/usr/bin/env python3
"""What a trial costs, start to verdict, and where the time goes: a nil change, and a change of 10% or more.

    scripts/trial_cost.py [--trials 10] [--case 'nil change'] [--asv] [--load] [--workdir DIR]

In a scratch clone on the runner's default fixture: the seed as the incumbent (recorded as the
baseline), then ``--trials`` times each (reset in between) a nil change (the same kernel plus a
module constant it never uses: judged, not same-code) and a change of 10% or more on every
workload (the unrolled demo kernel, about 1.45x the seed in throughput at 1M). Prints each trial's wall time
and its phases as the trial recorded them (start-up, paired rounds, the checks against the exact
answers of fresh queries, the exactness check and the seed measurement of a keep), then the
medians. ``--asv``: keeps are recorded in asv as ``pqkern-trial`` does by default (the wall time then includes it);
``--load``: a CPU-bound process is held on the other CPU, the trials pinned to the first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from scratch import DEMO, SEED, branch, clone, commit, git, start_load, trial

PHASES = ("start-up", "paired", "exactness", "checks", "seed measurement")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--case", action="append", choices=["nil change", "10%+ change"], help="only these (default both)")
    ap.add_argument("--asv", action="store_true", help="record keeps in asv, as pqkern-trial does by default")
    ap.add_argument("--load", action="store_true", help="hold a CPU-bound process on the other CPU")
    ap.add_argument("--revision", help="measure the bench of this commit (default: the committed HEAD), e.g. the one before a "
                    "change, to compare before and after in one run")
    ap.add_argument("--workdir")
    args = ap.parse_args()
    repo = clone(args.workdir, "trial-cost-", args.revision)
    incumbent_src = SEED.read_text()
    incumbent = branch(repo, "cost", incumbent_src)
    load = start_load() if args.load else None
    cpu = 0 if load else None
    try:
        return _run(args, repo, incumbent, incumbent_src, cpu)
    finally:
        if load:
            load.kill()


def _run(args: argparse.Namespace, repo, incumbent: str, incumbent_src: str, cpu: int | None) -> int:
    base = trial(repo, "baseline", cpu=cpu, asv=args.asv)
    print(f"baseline: exit {base.code} {base.seconds:.0f}s {base.timings} {base.verdict[:200]}", flush=True)
    cases = {"nil change": incumbent_src + "\nUNUSED = 0\n", "10%+ change": (DEMO / "unrolled.py").read_text()}
    for name, text in cases.items():
        if args.case and name not in args.case:
            continue
        walls, phases = [], {p: [] for p in PHASES}
        for i in range(args.trials):
            commit(repo, text + f"\nTRY = {i}\n", f"{name} {i}")
            t = trial(repo, f"{name} {i}", cpu=cpu, asv=args.asv)
            walls.append(t.seconds)
            for p in PHASES:
                phases[p].append(t.timings.get(p, 0.0))
            print(f"{name} {i}: {t.seconds:.1f}s " + " ".join(f"{p}={t.timings.get(p, 0):.1f}" for p in PHASES)
                  + f" {t.verdict[:160]}", flush=True)
            git(repo, "reset", "-q", "--hard", incumbent)
        print(f"SUMMARY {name}: wall median {statistics.median(walls):.1f}s (range {min(walls):.1f}-{max(walls):.1f}); "
              + ", ".join(f"{p} {statistics.median(v):.1f}s" for p, v in phases.items()), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
