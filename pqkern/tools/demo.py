"""The whole loop once, for a newcomer: a scripted agent trajectory in a scratch clone.

``pqkern-demo`` clones this repository into a scratch folder, records the baseline, then
commits five real kernel variants one by one (``pqkern/tools/demo_kernels/``) and runs the real
trial runner on each, as an agent would: the re-layout that un-transposes the codes, an
unrolled accumulation, a variant that breaks recall, and a slower one. Kept commits are
recorded in asv (unless ``--no-asv``); then it publishes the offline dashboard and the trial
report and prints where to open them. The fixture is a 100k-row synthetic set by default
(``--num-base``), built once in the data directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pqkern.bench.fixture import data_dir, repo_root
from pqkern.bench.paired import CAP_SECONDS
from pqkern.tools.dashboard import NODE_MODULES

KERNELS = Path(__file__).resolve().parent / "demo_kernels"
TRAJECTORY = [
    ("relayout.py", "un-transpose the codes in prepare: row-major, 16 lookups summed in a register"),
    ("unrolled.py", "unroll the 16 lookups and keep the k-th distance in a register"),
    ("broken_recall.py", "scan every fourth row only (breaks recall)"),
    ("slower.py", "three scans and a full sort (slower)"),
]


def _run(cmd: list[str], cwd: Path, env: dict, log: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if log:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n")
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-demo", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary folder)")
    p.add_argument("--num-base", type=int, default=100_000, help="synthetic base vectors (default 100000)")
    p.add_argument("--default-fixture", action="store_true",
                   help="use the runner's default fixture instead (the 1M synthetic set, or SIFT1M when installed)")
    p.add_argument("--cap-seconds", type=float, default=CAP_SECONDS,
                   help=f"each trial's paired timing cap (default {CAP_SECONDS:g})")
    p.add_argument("--no-asv", action="store_true", help="skip asv (no environment build, no dashboard)")
    args = p.parse_args(argv)
    start = time.monotonic()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="pqkern-demo-"))).resolve()
    repo = work / "repo"
    if repo.exists():
        print(f"pqkern-demo: {repo} exists; choose an empty --workdir", file=sys.stderr)
        return 1
    source = repo_root()
    if not (source / ".git").exists():
        print(f"pqkern-demo: {source} is not a git checkout; run the demo from a clone of the repository", file=sys.stderr)
        return 1
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    env = dict(os.environ, PQKERN_DATA=str(data_dir()), GIT_AUTHOR_NAME="pqkern demo agent",
               GIT_AUTHOR_EMAIL="demo@example.invalid", GIT_COMMITTER_NAME="pqkern demo agent",
               GIT_COMMITTER_EMAIL="demo@example.invalid")
    sizes = {"PQKERN_SOURCE": "synthetic", "PQKERN_NUM_BASE": str(args.num_base), "PQKERN_NUM_QUERIES": "1000",
             "PQKERN_NUM_LEARN": "20000", "PQKERN_REAL_ROWS": str(args.num_base)}  # the real workload at the same size
    for key, value in sizes.items():
        if args.default_fixture:
            env.pop(key, None)
        else:
            env[key] = value
    subprocess.run(["git", "clone", "-q", str(source), str(repo)], check=True)
    _run(["git", "checkout", "-q", "-b", "autoresearch/demo"], repo, env, log)
    what = "the default fixture" if args.default_fixture else f"fixture synthetic {args.num_base:,} rows"
    print(f"demo: scratch clone {repo}; {what} in {env['PQKERN_DATA']}", flush=True)
    use_asv = not args.no_asv
    if use_asv:
        env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
        env["HOME"] = str(work / "home")  # asv's machine file for the demo only
        _run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", "demo"], repo, env, log)
    trial = [sys.executable, "-m", "pqkern.bench.trial", "--cap-seconds", str(args.cap_seconds)]
    if not use_asv:
        trial.append("--no-asv")
    steps = [(None, "baseline: the seeded scalar kernel")] + TRAJECTORY
    codes = []
    for kernel, description in steps:
        if kernel:
            shutil.copyfile(KERNELS / kernel, repo / "pqkern" / "kernels.py")
            _run(["git", "commit", "-qam", description], repo, env, log)
        t = time.monotonic()
        result = _run(trial + [description], repo, env, log)
        verdict = next((line for line in result.stdout.splitlines() if line.startswith("verdict:")), result.stderr.strip())
        codes.append(result.returncode)
        print(f"  [{time.monotonic() - t:5.0f}s] exit {result.returncode}  {verdict}", flush=True)
        if result.returncode == 6:
            print(f"pqkern-demo: the harness could not run; see {log}", file=sys.stderr)
            return 1
    report = work / "report.html"
    _run([sys.executable, "-m", "pqkern.tools.report", str(repo / "results.tsv"), "-o", str(report)], repo, env, log)
    print(f"demo: trial report   {report}")
    if use_asv:
        published = _run([sys.executable, "-m", "pqkern.tools.dashboard", "publish", "--node-modules", str(NODE_MODULES)],
                         repo, env, log)
        if published.returncode == 0:
            print(f"demo: dashboard      {repo / '.asv' / 'html' / 'index.html'}")
            print(f"      view it with   pqkern-dashboard preview --config {repo / 'asv.conf.json'}")
        else:
            print(f"demo: dashboard not published ({published.stderr.strip().splitlines()[-1:]}); see {log}")
    print(f"demo: results.tsv    {repo / 'results.tsv'}   (log: {log}; {time.monotonic() - start:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
