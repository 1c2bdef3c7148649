#!/usr/bin/env python3
"""Are honest kernels still judged on their speed alone? Each demo and legitimate test kernel against the seed, through
the real trial.

    scripts/honest_trials.py [--trials 1] [--kernel PATH ...] [--workdir DIR]

In a scratch clone it records the seed as the baseline of a branch, then commits each kernel (the
demo's re-layout and unrolled scan, and every kernel in ``tests/kernels/legit/``, among them an
exact pruning scan) as a candidate, runs the real trial and resets. A kernel that is faster on
every workload must be kept; one that loses on a workload may be discarded for it; none may end
in a crash, a time-out or a refusal (the exactness check, the set-up budget, the size limit and
the policy must pass every honest kernel). Prints one line per trial and a summary per kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scratch import DEMO, SEED, TESTS, branch, clone, commit, git, trial

KERNELS = [DEMO / "relayout.py", DEMO / "unrolled.py", *sorted((TESTS / "legit").glob("*.py"))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--kernel", action="append", type=Path)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    repo = clone(args.workdir, "honest-trials-")
    incumbent = branch(repo, "honest", SEED.read_text())
    base = trial(repo, "baseline")
    print(f"baseline: exit {base.code} {base.seconds:.0f}s {base.verdict[:200]}", flush=True)
    failed = 0
    for path in args.kernel or KERNELS:
        ends = {}
        for i in range(args.trials):
            commit(repo, path.read_text() + f"\nTRY = {i}\n", f"{path.name} {i}")
            t = trial(repo, f"{path.name} {i}")
            ends[f"exit {t.code} {t.stop}"] = ends.get(f"exit {t.code} {t.stop}", 0) + 1
            failed += t.code not in (0, 1)
            print(f"{path.name} {i}: exit {t.code} {t.seconds:.0f}s {t.verdict[:260]}", flush=True)
            git(repo, "reset", "-q", "--hard", incumbent)
        print(f"SUMMARY {path.name}: {ends}", flush=True)
    print(f"honest kernels that crashed, timed out or were refused: {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
