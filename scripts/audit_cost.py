#!/usr/bin/env python3
"""What the morning audit costs per keep, and what it finds, on a branch of real keeps.

    scripts/audit_cost.py [--keeps 5] [--cpu-name NAME] [--workdir DIR]

In a scratch clone on the runner's default fixture it records a baseline and ``--keeps`` keeps
through the real trial (``--no-asv``): the seed doing 50% more accumulation, then 40%, 30%...
less work each step (``verdict_power.extra``), each about 7-10% faster than the one before. Then
it runs ``pqkern-audit`` on the branch (``--env`` this Python, ``--data`` this data directory),
prints its lines and its seconds per kernel, and audits again after forging one results.tsv
figure by hand, to show the row flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from scratch import SEED, branch, clone, commit, trial
from verdict_power import extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keeps", type=int, default=5)
    ap.add_argument("--cpu-name", help="passed to pqkern-audit (e.g. haswell: compile for AVX2)")
    ap.add_argument("--workdir")
    args = ap.parse_args()
    repo = clone(args.workdir, "audit-cost-")
    seed = SEED.read_text()
    shares = [100 * (args.keeps - i) for i in range(args.keeps + 1)]  # permille of extra work: 500, 400, ..., 0
    branch(repo, "audited", extra(seed, shares[0], "step 0"))
    print(f"workdir {repo.parent}", flush=True)
    base = trial(repo, "baseline")
    print(f"baseline: exit {base.code} {base.seconds:.0f}s {base.verdict[:200]}", flush=True)
    for i, share in enumerate(shares[1:], 1):
        commit(repo, extra(seed, share, f"step {i}"), f"{share / 10:.0f}% extra work")
        t = trial(repo, f"step {i}")
        print(f"step {i}: exit {t.code} {t.seconds:.0f}s {t.verdict[:300]}", flush=True)
    data = os.environ.get("PQKERN_DATA", str(Path(__file__).resolve().parent.parent / "data"))
    for label in ("honest", "forged"):
        if label == "forged":  # a kept row's seed_speedup edited by hand
            path = repo / "results.tsv"
            lines = path.read_text().splitlines()
            header, cells = lines[0].split("\t"), lines[-1].split("\t")
            cells[header.index("seed_speedup")] = "9.999"
            path.write_text("\n".join([*lines[:-1], "\t".join(cells)]) + "\n")
        out = repo.parent / f"audit-{label}.json"
        start = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "pqkern.tools.audit", "--env", sys.executable, "--data", data,
                            "--json", str(out), "--workdir", str(repo.parent / f"audit-{label}"),
                            *(["--cpu-name", args.cpu_name] if args.cpu_name else [])],
                           cwd=repo, capture_output=True, text=True)
        seconds = time.monotonic() - start
        print(f"audit ({label}): exit {p.returncode} in {seconds:.0f} s", flush=True)
        print(p.stdout, flush=True)
        if out.is_file():
            report = json.loads(out.read_text())
            kernels = len(report["kernels"])
            print(f"SUMMARY audit ({label}): {kernels} kernels, {seconds / max(kernels, 1):.1f} s per kernel in all "
                  f"(the audit's own {report['seconds']:.0f} s, clone included); verdicts "
                  f"{[k['verdict'] for k in report['kernels']]}", flush=True)
        else:
            print(p.stderr[-3000:], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
