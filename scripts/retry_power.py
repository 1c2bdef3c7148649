#!/usr/bin/env python3
"""Does retrying roll the dice again? An A/A candidate retried until kept, through the real trial.

    scripts/retry_power.py --sequences 50 --retries 5 [--mode same|near] [--workdir DIR] [-- TRIAL_ARGS...]

In a scratch clone of this repository it commits an incumbent (the seed), records the baseline,
then, for each sequence, commits a nil change (the seed plus an unused tuple, of another length in
each sequence, so that each sequence is a family of its own, judged from the full level) and runs the
trial; after a discard it retries, up to ``--retries`` more times, until one is kept:

- ``same``: the very same kernel again each time (a re-commit of the same syntax tree): each
  retry must continue the earlier trial's rounds (pqkern/bench/retry.py);
- ``near``: a near-copy each time (the unused tuple's values changed): a new comparison, at the
  level its family has left.

Prints one line per trial and, per mode, how many sequences ended kept, the stops, how many
retries continued earlier rounds, and the seconds per trial.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from scratch import SEED, branch, clone, commit, git, trial


def nil_change(sequence: int, value: int) -> str:
    """An unused tuple of ``sequence + 1`` copies of ``value``: each sequence's tree has its own shape, so each is a
    family of its own (retry.py judges its first try at the full level, not at the level earlier sequences left), and
    the tries of a sequence in ``near`` mode differ only in a constant: near-copies of one another."""
    return f"\nUNUSED = ({', '.join([str(value)] * (sequence + 1))},)\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=50)
    ap.add_argument("--retries", type=int, default=5, help="retries after the first trial (default 5)")
    ap.add_argument("--mode", choices=("same", "near"), action="append", help="default: both")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("trial_args", nargs="*", help="passed to pqkern-trial (after --)")
    args = ap.parse_args()
    repo = clone(args.workdir, "retry-power-")
    seed = SEED.read_text()
    print(f"workdir {repo.parent}", flush=True)
    for mode in args.mode or ["same", "near"]:
        incumbent = branch(repo, f"retry-{mode}", seed)
        base = trial(repo, "baseline", args.trial_args)
        print(f"{mode} baseline: exit {base.code} {base.seconds:.0f}s {base.verdict}", flush=True)
        kept, stops, continued, times = 0, {}, 0, []
        for i in range(args.sequences):
            for j in range(args.retries + 1):
                commit(repo, seed + nil_change(i, 0 if mode == "same" else j), f"{mode} {i}.{j}")
                t = trial(repo, f"nil change {i}, try {j}", args.trial_args)
                times.append(t.seconds)
                stops[t.stop] = stops.get(t.stop, 0) + 1
                continued += "continues its rounds" in t.verdict
                print(f"{mode} {i}.{j}: exit {t.code} {t.seconds:.0f}s {t.verdict[:400]}", flush=True)
                if t.code == 0:
                    kept += 1
                    git(repo, "reset", "-q", "--hard", incumbent)
                    break
        print(f"SUMMARY {mode}: kept {kept}/{args.sequences} sequences of up to {args.retries + 1} trials; stops {stops}; "
              f"{continued} trials continued earlier rounds; seconds per trial median {np.median(times):.0f} "
              f"max {max(times):.0f}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
