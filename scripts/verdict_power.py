#!/usr/bin/env python3
"""How often does pqkern-trial keep an identical kernel (A/A), kernels exactly x% faster or slower, and kernels that
differ only by code that never runs?

In a scratch clone of this repository it commits a controlled incumbent, records the baseline,
then for each scenario commits a candidate, runs the real trial, reads the verdict, and resets to
the incumbent before the next try. The work scenarios run the seed's whole search ``reps`` times
per call and return the last result, so the work, on both workloads, is exactly proportional to
``reps``; the code-generation scenarios add to a fast kernel (the pruned, unrolled scan of
``tests/kernels/legit/pruned_unrolled.py``) code that never executes:

  aa            reps 20 -> 20 (a module constant added)  must never be kept
  aa-seed       reps  1 ->  1 (the same, plain seed)     must never be kept (for the 1M fixture, where 20 reps are slow)
  relayout      the seed -> the row-major demo kernel    must be kept (on siftsmall, say)
  faster5       reps 20 -> 19 (5.3% less work)           kept how often?
  faster3       reps 33 -> 32 (3.1% less work)           kept how often?
  slower3       reps 32 -> 33 (3.1% more work)           must never be kept
  dead-branch   a branch never taken, before the hot loop of the scan (``if k > 1000000: return``)
  dead-function an njit function nothing calls
  padding       a never-taken branch inside the hot loop (the k-th distance is never negative), 18 lines of arithmetic
  aa-extra, faster5-extra, faster3-extra, slower3-extra
                the seed plus an extra accumulation over a share of the rows (30/1000 against 30; 55, 33 against 0; 0
                against 33): about 5% and 3% of the work, at the seed's speed, for the 1M fixture
  faster3-even-extra
                33/1000 on the flat scan and 12/1000 on the IVF partitions against 0: about 3% on every workload
  flat5-only-extra
                55/1000 on the flat scan only against 0: about 5% faster on the flat scan, the IVF layouts unchanged
  ivf4-only-extra
                the same on the IVF partitions only (20/1000 against 0): a few % faster on ivf and real-ivf, flat
                unchanged
  gated-prune   tests/kernels/legit/gated_pruned.py: the unrolled scan against itself with pruning switched on above
                131,072 rows (only the flat scan prunes); judged on the real flat scan it must not be kept on the
                strength of the synthetic one (compare with `-- --workload flat --workload ivf --workload real-ivf`)
  heavy10, heavy5, heavy20, heavy50
                the seed against the row-major scan of ``tests/kernels/heavy_tail.py``, which on the flat scan searches
                one query in 10 (5, 20, 50), chosen by its values, 16 (5, 32, 80) times: faster on nine queries in ten,
                about half the seed's throughput; must never be kept (run them without --decide-only: a keep is
                confirmed on the check's hundreds of queries)

    scripts/verdict_power.py --trials 20 [--scenario aa --scenario dead-branch ...] [--load] [--decide-only] [--workdir DIR]

``--decide-only`` runs the trial's decision alone (the paired check, the same rule and engine) without a keep's
seed measurement and exactness check, which for the slow repeated kernels cost a minute per keep.

``--load`` holds a CPU-bound process on the other CPU for the whole run (the trial is pinned to
the first CPU, the load to the second). The fixture comes from the usual variables, e.g.
PQKERN_SOURCE=synthetic PQKERN_NUM_BASE=50000 PQKERN_NUM_QUERIES=2000 PQKERN_NUM_LEARN=20000.
Prints one line per trial and a summary per scenario: kept / trials, the decisions, the spread of
the speed-up estimates (combined, flat and IVF: median, 10th-90th percentile, min-max) and the
wall time per trial (median and max).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scratch import DEMO, SEED, TESTS, Outcome, branch, clone, commit, git, repeated, start_load, trial

FAST = TESTS / "legit" / "pruned_unrolled.py"
HEAVY = TESTS / "heavy_tail.py"
GATED = TESTS / "legit" / "gated_pruned.py"
EXTRA = '''

def search(index, query, k):
    codes, codebook = index
    table = _distance_table(query, codebook)
    m = codes.shape[1] * (PERMILLE if codes.shape[1] >= 100000 else PART_PERMILLE) // 1000
    if m:  # extra work in proportion: the accumulation over the first PERMILLE/1000 of the rows again
        _accumulate(codes[:, :m], table)
    return _top_k(_accumulate(codes, table), k)
'''
DEAD_FUNCTION = '''

@numba.njit(boundscheck=False)
def _never_called(rows, t):
    total = np.float32(0.0)
    for r in range(rows.shape[0]):
        total += t[0, rows[r, 0]] * np.float32(r)
    return total
'''
PADDING = ("            p = np.float32(0.0)\n"
           + "".join(f"            p += t[{i}, c[{i}]] * np.float32({i + 2})\n" for i in range(16)) + "            kth = p\n")


def extra(seed: str, permille: int, tag: str, partitions: int | None = None) -> str:
    """The seed kernel plus ``permille``/1000 of its accumulation again on the flat scan and ``partitions``/1000 (the same
    by default) on indexes of fewer than 100,000 rows (the IVF partitions, synthetic and real): work in proportion at
    the seed's own speed, so that the 1M fixture's trials stay short."""
    body = EXTRA.replace("PART_PERMILLE", str(permille if partitions is None else partitions))
    return seed[: seed.index("\ndef search(")] + body.replace("PERMILLE", str(permille)) + f"\nVARIANT = {tag!r}\n"


def heavy_tail(rate: int, reps: int) -> str:
    """The row-major scan that searches one flat query in ``rate`` ``reps`` times (tests/kernels/heavy_tail.py)."""
    return HEAVY.read_text().replace("RATE = 3\n", f"RATE = {rate}\n").replace("REPS = 16\n", f"REPS = {reps}\n")


def codegen(fast: str, what: str) -> str:
    """The fast kernel with code that never runs: ``dead-branch``, ``dead-function`` or ``padding``."""
    if what == "dead-branch":
        return fast.replace("    kth = np.float32(np.inf)\n", "    kth = np.float32(np.inf)\n    if k > 1000000:\n"
                            "        return best_i, best_d\n", 1)
    if what == "dead-function":
        return fast.replace("\n\ndef prepare(", DEAD_FUNCTION + "\n\ndef prepare(", 1)
    if what == "padding":
        return fast.replace("        c = rows[r]\n", "        c = rows[r]\n        if kth < np.float32(-1.0):\n" + PADDING, 1)
    raise ValueError(what)


def scenarios(seed: str, fast: str) -> dict[str, tuple[str, str]]:
    """Scenario name -> (incumbent source, candidate source)."""
    out = {"aa": (repeated(20, "incumbent"), repeated(20, "candidate")),
           "aa-seed": (repeated(1, "incumbent"), repeated(1, "candidate")),
           # the row-major re-layout over the seed (a real gain of about 1.2-1.4x, for the small real fixtures)
           "relayout": (seed, (DEMO / "relayout.py").read_text()),
           "faster5": (repeated(20, "incumbent"), repeated(19, "candidate")),
           "faster3": (repeated(33, "incumbent"), repeated(32, "candidate")),
           "slower3": (repeated(32, "incumbent"), repeated(33, "candidate")),
           # at the seed's speed (for the 1M fixture): the accumulation, a little more than 90% of a flat query there
           "aa-extra": (extra(seed, 30, "incumbent"), extra(seed, 30, "candidate")),
           "faster5-extra": (extra(seed, 55, "incumbent"), extra(seed, 0, "candidate")),
           "faster3-extra": (extra(seed, 33, "incumbent"), extra(seed, 0, "candidate")),
           "slower3-extra": (extra(seed, 0, "incumbent"), extra(seed, 33, "candidate")),
           # about 3% less work on every workload (a smaller share on the partitions, where each call's extra costs more)
           "faster3-even-extra": (extra(seed, 33, "incumbent", 12), extra(seed, 0, "candidate")),
           # less work on the IVF partitions only (both IVF workloads), the flat scan the same
           "ivf4-only-extra": (extra(seed, 0, "incumbent", 20), extra(seed, 0, "candidate")),
           # less work on the flat scan only
           "flat5-only-extra": (extra(seed, 55, "incumbent", 0), extra(seed, 0, "candidate"))}
    gated = GATED.read_text()
    out["gated-prune"] = (gated.replace("GATE = 131072\n", "GATE = 1 << 62\n"), gated)
    for rate, reps in ((10, 16), (5, 5), (20, 32), (50, 80)):
        out[f"heavy{rate}"] = (seed, heavy_tail(rate, reps))
    for what in ("dead-branch", "dead-function", "padding"):
        out[what] = (fast, codegen(fast, what))
    return out


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    v = np.array(values)
    return (f"median {np.median(v):.3f}, p10-p90 {np.percentile(v, 10):.3f}-{np.percentile(v, 90):.3f}, "
            f"range {v.min():.3f}-{v.max():.3f}")


def decide(repo: Path, incumbent_src: str, cpu: int | None, extra_args: list[str] | None = None) -> Outcome:
    """The paired decision of the committed kernel against ``incumbent_src``, as a trial's verdict would read it."""
    (repo.parent / "incumbent.py").write_text(incumbent_src)
    out = repo.parent / "decision.json"
    start = time.monotonic()
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    p = subprocess.run([*pin, sys.executable, "-m", "pqkern.bench.paired", "--incumbent", str(repo.parent / "incumbent.py"),
                        "--candidate", "pqkern/kernels.py", "--mode", "decide", "--result-json", str(out),
                        *(extra_args or [])],
                       cwd=repo, capture_output=True, text=True)
    if p.returncode != 0 or not out.exists():
        return Outcome(p.returncode or 6, (p.stdout + p.stderr).strip()[-300:], time.monotonic() - start, {})
    r = json.loads(out.read_text())
    out.unlink()
    figures = " ".join(f"{'speedup' if w == 'combined' else w}={v['speedup']:.3f}x [{v['lo']:.3f}, {v['hi']:.3f}]"
                       for w, v in r["intervals"].items())
    verdict = f"decision: {r['decision']} {figures} stop={r['stop']} rounds={r['rounds']}"
    return Outcome(0 if r["decision"] == "keep" else 1, verdict, time.monotonic() - start, r.get("timings", {}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20, help="trials per scenario (default 20)")
    ap.add_argument("--scenario", action="append", help="scenarios to run (default: aa, faster5, faster3, slower3)")
    ap.add_argument("--load", action="store_true", help="hold a CPU-bound process on the other CPU while trials run")
    ap.add_argument("--decide-only", action="store_true",
                    help="the paired decision alone (python -m pqkern.bench.paired --mode decide: the trial's first phase, "
                         "the same rule), without the seed measurement and exactness check of a keep; much faster")
    ap.add_argument("--revision", help="measure the bench of this commit (default: the committed HEAD), e.g. the one before a "
                    "change, to compare before and after in one run")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--paired-arg", action="append", help="with --decide-only: passed to the paired engine, e.g. "
                    "--paired-arg=--cap-rounds=150")
    ap.add_argument("trial_args", nargs="*", help="passed to pqkern-trial (after --)")
    args = ap.parse_args()
    repo = clone(args.workdir, "verdict-power-", args.revision)
    table = scenarios(SEED.read_text(), FAST.read_text())
    unknown = set(args.scenario or []) - set(table)
    if unknown:
        ap.error(f"unknown scenario {', '.join(sorted(unknown))}: choose from {', '.join(table)}")
    load = start_load() if args.load else None
    cpu = 0 if args.load else None
    print(f"workdir {repo.parent}; load: {'a spin loop on CPU 1, trials on CPU 0' if load else 'none'}", flush=True)
    try:
        for name in args.scenario or ["aa", "faster5", "faster3", "slower3"]:
            incumbent_src, candidate_src = table[name]
            incumbent = branch(repo, f"power-{name}", incumbent_src)
            if not args.decide_only:
                base = trial(repo, "baseline", args.trial_args, cpu)
                print(f"{name} baseline: exit {base.code} {base.seconds:.0f}s {base.verdict}", flush=True)
            kept, decisions, times = 0, {}, []
            estimates: dict[str, list[float]] = {"speedup": [], "flat": [], "real": [], "ivf": [], "real-ivf": []}
            for i in range(args.trials):
                commit(repo, candidate_src + f"\nTRY = {i}\n", f"{name} {i}")
                t = (decide(repo, incumbent_src, cpu, args.paired_arg) if args.decide_only
                     else trial(repo, f"{name} {i}", args.trial_args, cpu))
                kept += t.code == 0
                decisions[t.stop] = decisions.get(t.stop, 0) + 1
                for part in estimates:
                    if t.figure(part) is not None:
                        estimates[part].append(t.figure(part))
                times.append(t.seconds)
                print(f"{name} {i}: exit {t.code} {t.seconds:.0f}s {t.verdict}", flush=True)
                git(repo, "reset", "-q", "--hard", incumbent)
            print(f"SUMMARY {name}: kept {kept}/{args.trials}; decisions {decisions}; "
                  + "; ".join(f"{part} {spread(v)}" for part, v in estimates.items())
                  + f"; seconds per trial median {np.median(times):.0f} max {max(times):.0f}", flush=True)
    finally:
        if load:
            load.kill()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
