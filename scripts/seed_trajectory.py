#!/usr/bin/env python3
"""Are the speed-ups over the seed in results.tsv true? Ten keeps in a row, each checked against its own direct run.

    scripts/seed_trajectory.py [--rounds 100] [--workdir DIR]

In a scratch clone: the seed's search repeated 20 times per call as the baseline, then the same
with 18, 16, 14, 12, 10, 8, 6, 4, 3 and 2 repetitions as ten candidates, each about 10% to 100% faster than the last,
judged by the real trial (which measures every keep against the frozen seed directly). After
each keep, an independent paired run of the kept kernel against the seed (``python -m
pqkern.bench.paired``, ``--rounds`` rounds, fresh queries). Prints, per keep, the row's figure and
interval beside the independent one, whether the row's figure lies inside the independent 99%
interval, and both widths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from scratch import branch, clone, commit, repeated, trial


def direct(repo: Path, rounds: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "paired.json"
        subprocess.run([sys.executable, "-m", "pqkern.bench.paired", "--candidate", "pqkern/kernels.py", "--mode", "measure",
                        "--rounds", str(rounds), "--result-json", str(out)], cwd=repo, capture_output=True, check=True)
        iv = json.loads(out.read_text())["intervals"]["combined"]
    return iv["speedup"], iv["lo"], iv["hi"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    repo = clone(args.workdir, "seed-trajectory-")
    branch(repo, "trajectory", repeated(20))
    print(f"baseline: {trial(repo, 'baseline').verdict[:200]}", flush=True)
    inside = 0
    for reps in (18, 16, 14, 12, 10, 8, 6, 4, 3, 2):
        commit(repo, repeated(reps), f"{reps} repetitions")
        t = trial(repo, f"{reps} repetitions")
        rows = (repo / "results.tsv").read_text().splitlines()
        last = dict(zip(rows[0].split("\t"), rows[-1].split("\t"), strict=True))
        if t.code != 0:
            print(f"{reps}: not kept: {t.verdict[:200]}", flush=True)
            continue
        row = tuple(float(last[k]) for k in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi"))
        ind = direct(repo, args.rounds)
        ok = ind[1] <= row[0] <= ind[2]
        inside += ok
        print(f"{reps:2} reps: row {row[0]:.3f}x [{row[1]:.3f}, {row[2]:.3f}] width {row[2] - row[1]:.3f}; independent "
              f"{ind[0]:.3f}x [{ind[1]:.3f}, {ind[2]:.3f}] width {ind[2] - ind[1]:.3f}; inside {ok}", flush=True)
    print(f"SUMMARY: {inside} of the kept rows lie inside their independent direct measurement's 99% interval", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
