#!/usr/bin/env python3
"""What the sandbox costs a keep: the unrolled demo kernel kept with asv, inside ``pqkern-sandbox`` and outside it.

    scripts/sandbox_cost.py [--trials 3] [--workdir DIR]

In a scratch copy of this working tree (tracked and untracked files, committed) on the runner's
default fixture (the data of this checkout, ``PQKERN_DATA`` or ``data/``): the seed kernel as the
baseline (recorded in asv, so that asv's environment exists), then ``--trials`` times, alternating,
a keep of the unrolled demo kernel (about 1.2x the seed), outside the sandbox and inside one, each
reset to the baseline afterwards. Inside, one sandbox runs every trial (its start, which builds
nothing here, is timed on its own). Prints each keep's wall time as the agent's shell sees it,
the trial's own ``time=`` and ``asv=``, then the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import copy_tree

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "pqkern" / "bench" / "seed_kernel.py"
UNROLLED = REPO / "pqkern" / "tools" / "demo_kernels" / "unrolled.py"
GIT = {"GIT_AUTHOR_NAME": "cost", "GIT_AUTHOR_EMAIL": "cost@example.invalid", "GIT_COMMITTER_NAME": "cost",
       "GIT_COMMITTER_EMAIL": "cost@example.invalid"}

# Inside the sandbox: the same keeps, timed from the agent's side; one JSON line each.
INSIDE = r'''
import json, subprocess, sys, time
py, unrolled, base, tries = sys.argv[1], sys.argv[2], sys.argv[3], [int(t) for t in sys.argv[4].split(",")]
for i in tries:
    open("pqkern/kernels.py", "w").write(open(unrolled).read() + f"\nTRY = {i}\n")
    subprocess.run(["git", "commit", "-qam", f"unrolled {i}"], check=True)
    t0 = time.monotonic()
    p = subprocess.run([py, "-m", "pqkern.bench.trial", f"unrolled {i}"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    verdict = next((l for l in p.stdout.splitlines() if l.startswith("verdict:")), p.stdout[-300:] + p.stderr[-300:])
    print(json.dumps({"try": i, "code": p.returncode, "wall": wall, "verdict": verdict}), flush=True)
    subprocess.run(["git", "reset", "-q", "--hard", base], check=True)
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=dict(os.environ, **GIT)).stdout.strip()


def figures(verdict: str) -> str:
    return " ".join(m for m in re.findall(r"(?:time|asv)=\d+s", verdict))


def outside(repo: Path, i: int, base: str) -> dict:
    (repo / "pqkern" / "kernels.py").write_text(UNROLLED.read_text() + f"\nTRY = {i}\n")
    git(repo, "commit", "-qam", f"unrolled {i}")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", f"unrolled {i}"], cwd=repo, capture_output=True,
                       text=True)
    wall = time.monotonic() - t0
    verdict = next((x for x in p.stdout.splitlines() if x.startswith("verdict:")), p.stdout[-300:] + p.stderr[-300:])
    git(repo, "reset", "-q", "--hard", base)
    return {"try": i, "code": p.returncode, "wall": wall, "verdict": verdict}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--workdir")
    args = ap.parse_args()
    os.environ.setdefault("PQKERN_DATA", str(REPO / "data"))
    os.environ.update(GIT)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sandbox-cost-"))
    repo = copy_tree(work / "repo")
    git(repo, "checkout", "-q", "-b", "autoresearch/cost")
    (repo / "pqkern" / "kernels.py").write_text(SEED.read_text())
    git(repo, "commit", "-q", "--allow-empty", "-am", "the seed")
    base = git(repo, "rev-parse", "HEAD")
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", "baseline"], cwd=repo, capture_output=True, text=True)
    print(f"baseline: exit {p.returncode} {next((x for x in p.stdout.splitlines() if x.startswith('verdict:')), '')[:160]}",
          flush=True)
    walls: dict[str, list[float]] = {"outside": [], "inside": []}
    for n in range(args.trials):
        got = outside(repo, 2 * n, base)
        print(f"outside {n}: exit {got['code']} {got['wall']:.1f}s {figures(got['verdict'])} {got['verdict'][:120]}",
              flush=True)
        walls["outside"].append(got["wall"])
        t0 = time.monotonic()
        inside = [sys.executable, "-c", INSIDE, sys.executable, str(repo / UNROLLED.relative_to(REPO)), base, str(2 * n + 1)]
        p = subprocess.Popen([sys.executable, "-m", "pqkern.bench.sandbox", "--", *inside], cwd=repo,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in p.stdout:
            if line.startswith("{"):
                got = json.loads(line)
                start = time.monotonic() - t0 - got["wall"]
                print(f"inside {n}: exit {got['code']} {got['wall']:.1f}s {figures(got['verdict'])} (the sandbox's start: "
                      f"{start:.1f}s) {got['verdict'][:120]}", flush=True)
                walls["inside"].append(got["wall"])
        if p.wait():
            print(f"pqkern-sandbox exited {p.returncode}: {p.stderr.read()[-2000:]}", flush=True)
    for mode, values in walls.items():
        if values:
            print(f"SUMMARY {mode}: keep with asv, wall median {statistics.median(values):.1f}s "
                  f"(range {min(values):.1f}-{max(values):.1f}, {len(values)} trials)", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
