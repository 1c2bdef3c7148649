#!/usr/bin/env python3
"""Two agents' trials at once on one machine, beside one agent alone: each verdict's interval and how long it waited.

    scripts/two_agents.py [--repeats 2] [--workdir DIR] [--json FILE]

In scratch copies of this working tree (tracked and unignored files: the bench as it is now) on
the runner's default fixture (1M; ``PQKERN_DATA``, default ``data/``), with the kernel of this tree
recorded as the baseline once, two candidates are judged (``--no-asv``): a change of 10% or more
(the unrolled demo kernel: kept) and a nil change (the same kernel plus a module constant it never
uses: not kept), each in a fresh copy of the baselined clone, ``--repeats`` times in each setting:

- ``alone``: one trial at a time, the machine otherwise left to it;
- ``together``: both started at once with every CPU allowed: they reserve their CPUs machine-wide
  (``pqkern/bench/cpus.py``), so on a machine with a single set (2 CPUs) the second waits;
- ``one CPU each``: both at once, each restricted by ``taskset`` to one CPU of its own (the first
  and the second allowed CPU): a stand-in for a larger machine, where each would have a set of its
  own. Each then runs with nothing pinned (judge and workers on its one CPU).

Prints, per trial, the verdict, its stop, rounds, the combined interval and its width (hi - lo),
the trial's own time (``time=``, from its start to its verdict, without the wait) and the seconds
it waited for CPUs, then the median width per setting and kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import copy_tree

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "pqkern" / "tools" / "demo_kernels"
GIT = {"GIT_AUTHOR_NAME": "two-agents", "GIT_AUTHOR_EMAIL": "two-agents@example.invalid",
       "GIT_COMMITTER_NAME": "two-agents", "GIT_COMMITTER_EMAIL": "two-agents@example.invalid"}
SETTINGS = ("alone", "together", "one CPU each")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=dict(os.environ, **GIT), check=True, capture_output=True,
                          text=True).stdout.strip()


def start(repo: Path, description: str, env: dict, cpu: int | None = None) -> subprocess.Popen:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return subprocess.Popen([*pin, sys.executable, "-m", "pqkern.bench.trial", description, "--no-asv"], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(repo: Path, proc: subprocess.Popen, setting: str, kernel: str) -> dict:
    """The trial's figures, from its output and its folder (the candidate's sha is in ``.git/CANDIDATE``)."""
    out, err = proc.communicate()
    verdict = next((x for x in out.splitlines() if x.startswith("verdict:")), (out + err).strip()[-300:])
    head = (repo / ".git" / "CANDIDATE").read_text()[:10]
    folders = sorted((repo / "trials").glob(f"*-{head}/comparison.json"))
    record = json.loads(folders[-1].read_text()) if folders else {}
    comb = record.get("intervals", {}).get("combined", {})
    waited = re.search(r"CPUs free after (\d+) s", err)
    time_s = re.search(r" time=(\d+)s", verdict)
    stop = re.search(r" stop=(\S+)", verdict)
    return {"setting": setting, "kernel": kernel, "code": proc.returncode, "stop": stop.group(1) if stop else "-",
            "rounds": record.get("rounds"), "speedup": comb.get("speedup"), "lo": comb.get("lo"), "hi": comb.get("hi"),
            "width": comb["hi"] - comb["lo"] if comb else None, "trial_s": int(time_s.group(1)) if time_s else None,
            "waited_s": int(waited.group(1)) if waited else 0, "cpus": record.get("cpus"), "verdict": verdict,
            "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir")
    ap.add_argument("--json", type=Path, help="also write every trial's figures here")
    args = ap.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        print("two_agents: needs two CPUs this process may use", file=sys.stderr)
        return 1
    work = Path(args.workdir or tempfile.mkdtemp(prefix="two-agents-"))
    env = dict(os.environ, **GIT)
    env.setdefault("PQKERN_DATA", str(REPO / "data"))
    base = copy_tree(work / "base", "baseline")
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", "baseline", "--no-asv"], cwd=base, env=env,
                       capture_output=True, text=True)
    if p.returncode:
        print(p.stdout + p.stderr, file=sys.stderr)
        return 1
    seed = (base / "pqkern" / "kernels.py").read_text()
    kernels = {"unrolled": (DEMO / "unrolled.py").read_text(), "nil": seed + "\nUNUSED = 1\n"}
    n = 0

    def candidate(kernel: str) -> Path:
        nonlocal n
        n += 1
        repo = work / f"t{n}"
        shutil.copytree(base, repo, symlinks=True)
        (repo / "pqkern" / "kernels.py").write_text(kernels[kernel])
        _git(repo, "commit", "-qam", kernel)
        (repo / ".git" / "CANDIDATE").write_text(_git(repo, "rev-parse", "HEAD"))  # a discard resets HEAD
        return repo

    rows = []
    for r in range(args.repeats):
        for setting in SETTINGS:
            order = ("unrolled", "nil") if r % 2 == 0 else ("nil", "unrolled")  # who starts first, alternated
            repos = {k: candidate(k) for k in order}
            if setting == "alone":
                for k in order:
                    rows.append(outcome(repos[k], start(repos[k], k, env), setting, k))
            else:
                procs = {}
                for i, k in enumerate(order):
                    procs[k] = start(repos[k], k, env, allowed[i] if setting == "one CPU each" else None)
                    time.sleep(0.2)
                rows.extend(outcome(repos[k], procs[k], setting, k) for k in order)
            for row in rows[-2:]:
                print(f"{row['setting']:>13} {row['kernel']:>8}: exit {row['code']} stop={row['stop']:<10} "
                      f"rounds={row['rounds']} combined={row['speedup'] or 0:.3f}x [{row['lo'] or 0:.3f}, {row['hi'] or 0:.3f}] "
                      f"width={row['width'] or 0:.4f} time={row['trial_s']}s waited={row['waited_s']}s "
                      f"cpus={(row['cpus'] or {}).get('held')} load={row['load']:.1f}", flush=True)
    print("\nmedian width of the combined 99% interval (rounds; trial seconds; seconds waited):")
    for setting in SETTINGS:
        for k in kernels:
            got = [x for x in rows if x["setting"] == setting and x["kernel"] == k and x["width"] is not None]
            if got:
                print(f"  {setting:>13} {k:>8}: {statistics.median(x['width'] for x in got):.4f} "
                      f"({statistics.median(x['rounds'] for x in got):.0f}; "
                      f"{statistics.median(x['trial_s'] or 0 for x in got):.0f} s; "
                      f"{statistics.median(x['waited_s'] for x in got):.0f} s) over {len(got)}; exits "
                      f"{[x['code'] for x in got]}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
