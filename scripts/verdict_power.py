#!/usr/bin/env python3
"""How often does pqkern-trial keep an identical kernel (A/A), a ~5% and a ~20% faster one?

In a scratch clone of this repository it seeds the branch with a deliberately slowed copy
of the seeded kernel (extra scan passes whose result is discarded), records the baseline,
then for each scenario commits a candidate, runs the real trial, reads the verdict, and
resets to the incumbent before the next try:

  aa     the incumbent's own kernel (a comment changed)         -> must never be kept
  5pct   the seed with fewer extra passes (about 5% less work)  -> kept how often?
  20pct  the seed with no extra passes (about 20% less work)    -> kept how often?

    scripts/verdict_power.py --aa 20 --small 10 --large 10 [--source synthetic] [--workdir DIR]

Fixture sizes come from the usual PQKERN_* variables (PQKERN_NUM_BASE etc.).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXTRA = '''

@numba.njit
def _extra(codes, table, passes):
    n = codes.shape[1]
    scratch = np.zeros(n, np.float32)
    for p in range(passes):
        s = p % M
        for r in range(n):
            scratch[r] += table[s, codes[s, r]]
    return scratch[n - 1] if passes else np.float32(0.0)


def search(index, query, k):
    codes, codebook = index
    table = _distance_table(query, codebook)
    if _extra(codes, table, EXTRA_PASSES) < -1.0:  # never: table entries are non-negative
        raise AssertionError
    return _top_k(_accumulate(codes, table), k)
'''


def variant(seed: str, passes: int, tag: str) -> str:
    body = seed[: seed.index("\ndef search(")]
    return body + EXTRA.replace("EXTRA_PASSES", str(passes)) + f"\n# variant {tag}\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def trial(repo: Path, description: str, extra: list[str]) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", description, "--no-asv", *extra], cwd=repo,
                       capture_output=True, text=True)
    line = next((x for x in p.stdout.splitlines() if x.startswith("verdict:")), p.stdout + p.stderr)
    return p.returncode, line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aa", type=int, default=20)
    ap.add_argument("--small", type=int, default=10, help="trials of the ~5%% faster kernel")
    ap.add_argument("--large", type=int, default=10, help="trials of the ~20%% faster kernel")
    ap.add_argument("--slow-passes", type=int, default=4, help="extra passes in the incumbent (default 4)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("trial_args", nargs="*", help="passed to pqkern-trial (after --)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="verdict-power-"))
    repo = work / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    env_git = ["-c", "user.name=power", "-c", "user.email=power@example.invalid"]
    seed = (repo / "pqkern" / "kernels.py").read_text()

    def commit(source: str, message: str) -> str:
        (repo / "pqkern" / "kernels.py").write_text(source)
        subprocess.run(["git", *env_git, "commit", "-qam", message], cwd=repo, check=True)
        return git(repo, "rev-parse", "HEAD")

    incumbent = commit(variant(seed, args.slow_passes, "incumbent"), "incumbent: slowed seed")
    code, line = trial(repo, "baseline", args.trial_args)
    print(f"baseline: exit {code}: {line}", flush=True)
    small = max(args.slow_passes - 1, 0)  # one extra pass is about 5% of the seed's scan
    scenarios = [("aa", args.aa, args.slow_passes), ("5pct", args.small, small), ("20pct", args.large, 0)]
    for name, count, passes in scenarios:
        kept, ratios = 0, []
        for i in range(count):
            commit(variant(seed, passes, f"{name}-{i}") if name != "aa" else
                   variant(seed, args.slow_passes, "incumbent") + f"# try {i}\n", f"{name} {i}")
            code, line = trial(repo, f"{name} {i}", args.trial_args)
            kept += code == 0
            m = re.search(r"speedup=([\d.]+)x", line)
            if m:
                ratios.append(float(m.group(1)))
            print(f"{name} {i}: exit {code}: {line}", flush=True)
            git(repo, "reset", "-q", "--hard", incumbent)
        if ratios:
            print(f"SUMMARY {name}: kept {kept}/{count}; speedup median {statistics.median(ratios):.3f} "
                  f"min {min(ratios):.3f} max {max(ratios):.3f}", flush=True)
    print(f"results: {repo / 'results.tsv'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
