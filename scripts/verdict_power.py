#!/usr/bin/env python3
"""How often does pqkern-trial keep an identical kernel (A/A), and kernels exactly x% faster or slower?

In a scratch clone of this repository it commits a controlled incumbent, records the baseline,
then for each scenario commits a candidate, runs the real trial, reads the verdict, and resets to
the incumbent before the next try. The controlled kernels run the seed's whole search ``reps``
times per call and return the last result, so the work, on both workloads, is exactly
proportional to ``reps``:

  aa        reps 20 -> 20 (a comment changed)   must never be kept
  aa-seed   reps  1 ->  1 (the plain seed)      must never be kept (for the 1M fixture, where 20 reps are too slow)
  faster5   reps 20 -> 19 (5.3% less work)       kept how often?
  faster3   reps 33 -> 32 (3.1% less work)       kept how often?
  slower3   reps 32 -> 33 (3.1% more work)       must never be kept

    scripts/verdict_power.py --trials 20 [--scenario aa --scenario faster3 ...] [--load] [--workdir DIR]

``--load`` holds a CPU-bound process on the other CPU for the whole run (the trial is pinned to
the first CPU, the load to the second). The fixture comes from the usual variables, e.g.
PQKERN_SOURCE=synthetic PQKERN_NUM_BASE=50000 PQKERN_NUM_QUERIES=2000 PQKERN_NUM_LEARN=20000.
Prints one line per trial and a summary per scenario: kept / trials, the decisions, the median
speed-up and the wall time per trial (median and max).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = {"aa": (20, 20), "aa-seed": (1, 1), "faster5": (20, 19), "faster3": (33, 32), "slower3": (32, 33)}
REPEAT = '''

def search(index, query, k):
    codes, codebook = index
    for _ in range(REPS - 1):
        _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
    return _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
'''


def variant(seed: str, reps: int, tag: str) -> str:
    """The seed kernel, its search repeated ``reps`` times per call."""
    return seed[: seed.index("\ndef search(")] + REPEAT.replace("REPS", str(reps)) + f"\n# variant {tag}\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=power", "-c", "user.email=power@example.invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def trial(repo: Path, description: str, extra: list[str], cpu: int | None) -> tuple[int, str, float]:
    start = time.monotonic()
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    p = subprocess.run([*pin, sys.executable, "-m", "pqkern.bench.trial", description, "--no-asv", *extra], cwd=repo,
                       capture_output=True, text=True)
    line = next((x for x in p.stdout.splitlines() if x.startswith("verdict:")), (p.stdout + p.stderr).strip()[-300:])
    return p.returncode, line, time.monotonic() - start


def start_load() -> subprocess.Popen:
    """A CPU-bound process held on the second CPU."""
    return subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20, help="trials per scenario (default 20)")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="scenarios to run (default all)")
    ap.add_argument("--load", action="store_true", help="hold a CPU-bound process on the other CPU while trials run")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("trial_args", nargs="*", help="passed to pqkern-trial (after --)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="verdict-power-"))
    repo = work / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    seed = (repo / "pqkern" / "bench" / "seed_kernel.py").read_text()
    load = start_load() if args.load else None
    cpu = 0 if args.load else None
    print(f"workdir {work}; load: {'a spin loop on CPU 1, trials on CPU 0' if load else 'none'}", flush=True)
    try:
        for name in args.scenario or ["aa", "faster5", "faster3", "slower3"]:
            inc_reps, cand_reps = SCENARIOS[name]
            git(repo, "checkout", "-q", "-B", f"autoresearch/power-{name}", "origin/HEAD")
            (repo / "results.tsv").unlink(missing_ok=True)
            (repo / "pqkern" / "kernels.py").write_text(variant(seed, inc_reps, "incumbent"))
            git(repo, "commit", "-qam", f"incumbent: seed x{inc_reps}")
            incumbent = git(repo, "rev-parse", "HEAD")
            code, line, secs = trial(repo, "baseline", args.trial_args, cpu)
            print(f"{name} baseline: exit {code} {secs:.0f}s {line}", flush=True)
            kept, decisions, ratios, times = 0, {}, [], []
            for i in range(args.trials):
                (repo / "pqkern" / "kernels.py").write_text(variant(seed, cand_reps, f"{name}-{i}"))
                git(repo, "commit", "-qam", f"{name} {i}: seed x{cand_reps}")
                code, line, secs = trial(repo, f"{name} {i}", args.trial_args, cpu)
                kept += code == 0
                stop = re.search(r" stop=(\S+)", line)
                decisions[stop.group(1) if stop else f"exit {code}"] = decisions.get(stop.group(1) if stop else f"exit {code}",
                                                                                      0) + 1
                m = re.search(r" speedup=([\d.]+)x", line)
                if m:
                    ratios.append(float(m.group(1)))
                times.append(secs)
                print(f"{name} {i}: exit {code} {secs:.0f}s {line}", flush=True)
                git(repo, "reset", "-q", "--hard", incumbent)
            expected = inc_reps / cand_reps
            print(f"SUMMARY {name}: kept {kept}/{args.trials}; expected speed-up {expected:.3f}; decisions {decisions}; "
                  f"speed-up median {statistics.median(ratios) if ratios else float('nan'):.3f}; "
                  f"seconds per trial median {statistics.median(times):.0f} max {max(times):.0f}", flush=True)
    finally:
        if load:
            load.kill()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
