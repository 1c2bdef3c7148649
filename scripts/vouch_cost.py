"""What vouching (``pqkern/bench/integrity.py``) costs a trial: cold (no cache: every file hashed, every byte-code file
compiled again) and warm (the sealed cache: every file only stat-ed), in this working tree and environment.

    .venv/bin/python scripts/vouch_cost.py [--repeat N]

Prints one line per run: the seconds, the files checked against their RECORD, and the problems found (a tree with
work in progress has untracked files: they are counted, not fixed, and do not change the cost).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pqkern.bench.trial  # noqa: F401 - what a trial has imported when it vouches
from pqkern.bench import gitsafe, integrity


def once(root: Path, repo: gitsafe.Repo, head: str, cold: bool) -> tuple[float, int, int]:
    start = time.monotonic()
    v = integrity.Vouch(root, repo, head, integrity.Cache.load(use=not cold))
    v.environment()
    v.tree()
    v.check()
    v.cache.save()
    integrity.private_numba_cache()
    return time.monotonic() - start, v.files, len(v.problems)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="warm runs (default 3)")
    args = p.parse_args()
    root = gitsafe.find_root(Path.cwd())
    repo = gitsafe.Repo(root)
    head = repo.head()[1]
    for label, cold in [("cold", True)] + [("warm", False)] * args.repeat:
        seconds, files, problems = once(root, repo, head, cold)
        print(f"{label}: {seconds:.3f} s, {files} files against their RECORD, {problems} problems")


if __name__ == "__main__":
    main()
