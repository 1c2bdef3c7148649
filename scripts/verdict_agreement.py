#!/usr/bin/env python3
"""Does the paired verdict measure what separate runner runs measure? One table per kernel pair, both workloads.

For each pair (incumbent, candidate) it alternates separate ``pqkern-run`` runs of the two kernels
(``--runs`` each, per workload) and takes the ratio of the runs' mean log geomean time (CPU and
wall, with the run-to-run spread), then runs the paired engine ``--paired`` times in the trial's
configuration (``measure`` mode, ``--rounds`` rounds) and prints both, side by side.

    scripts/verdict_agreement.py [--runs 5] [--paired 3] [--rounds 300]

Default pairs: the seed against the demo's re-layout, and the re-layout against the unrolled kernel.
Run it on a quiet machine, on the fixture the trial uses (default: the runner's default).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "pqkern" / "tools" / "demo_kernels"
PAIRS = [(REPO / "pqkern" / "bench" / "seed_kernel.py", DEMO / "relayout.py"), (DEMO / "relayout.py", DEMO / "unrolled.py")]


def runner(kernel: Path, workload: str, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "pqkern.bench.runner", "--kernel", str(kernel), "--workload", workload,
                    "--result-json", str(out)], cwd=REPO, capture_output=True, check=False)
    result = json.loads(out.read_text())
    if result["status"] != "pass":
        raise SystemExit(f"{kernel} failed the runner: {result['reason']}")
    return result


def paired(inc: Path, cand: Path, rounds: int, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "pqkern.bench.paired", "--incumbent", str(inc), "--candidate", str(cand),
                    "--mode", "measure", "--rounds", str(rounds), "--result-json", str(out)], cwd=REPO, capture_output=True)
    return json.loads(out.read_text())["intervals"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runner runs per kernel and workload (default 5)")
    ap.add_argument("--paired", type=int, default=3, help="paired measurements per kernel pair (default 3)")
    ap.add_argument("--rounds", type=int, default=300, help="rounds per paired measurement (default 300)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="verdict-agreement-"))
    for inc, cand in PAIRS:
        print(f"\n{cand.name} against {inc.name}", flush=True)
        for workload in ("flat", "ivf"):
            logs = {"cpu": ([], []), "wall": ([], [])}
            for _ in range(args.runs):
                for side, kernel in enumerate((inc, cand)):
                    r = runner(kernel, workload, tmp / "run.json")
                    logs["cpu"][side].append(math.log(r["geomean_cpu_ns_per_query"]))
                    logs["wall"][side].append(math.log(r["geomean_ns_per_query"]))
            for clock, (a, b) in logs.items():
                ratio = math.exp(statistics.fmean(a) - statistics.fmean(b))
                spread = [math.exp(x - y) for x, y in zip(a, b, strict=True)]
                print(f"  {workload:4} separate runs ({args.runs} each, {clock:4}): {ratio:.3f}x  "
                      f"(run pairs {min(spread):.3f}-{max(spread):.3f}; run-to-run sd {statistics.stdev(a):.1%} and "
                      f"{statistics.stdev(b):.1%})", flush=True)
        for _ in range(args.paired):
            iv = paired(inc, cand, args.rounds, tmp / "paired.json")
            print("  paired " + "  ".join(f"{w} {iv[w]['speedup']:.3f}x [{iv[w]['lo']:.3f}, {iv[w]['hi']:.3f}]"
                                          for w in ("flat", "ivf", "combined")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
