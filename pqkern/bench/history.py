"""A branch's kept history, as the trial reads it from git and results.tsv (immutable bench).

The incumbent is the newest kept (or baseline) commit in HEAD's history; the baseline the newest
baseline row there. A keep later found wrong is ``revoked`` (its own row): a branch whose history
holds a revoked commit must go back to the last good kept commit before it, and the trial says
how. The simpler keeps since the last faster keep (or the baseline) have spent part of the
margin a simpler candidate may lose (``rule.py``).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

KEPT = ("keep", "baseline")
NOT_FASTER = ("simpler", "same-code")  # keep stops that do not reset the simpler margin


def column(workload: str) -> str:
    """The results.tsv column prefix of a workload (version 4): ``flat``, ``ivf``, ``real`` (the real descriptors' flat
    scan) or ``real_ivf`` (their IVF layout); ``@N`` ignored."""
    return workload.partition("@")[0].replace("-", "_")


class GitError(RuntimeError):
    """A git command failed; the message is git's."""


class Repo:
    def __init__(self, root: Path):
        self.root = root

    def git(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True)
        if check and p.returncode:
            raise GitError(f"git {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout.strip()

    def is_ancestor(self, commit: str, of: str) -> bool:
        return subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], cwd=self.root,
                              capture_output=True).returncode == 0

    def clean(self) -> bool:
        return not self.git("status", "--porcelain", "--untracked-files=no")

    def kernel(self, commit: str) -> str:
        return self.git("show", f"{commit}:pqkern/kernels.py") + "\n"


@dataclass
class Chain:
    """The kept rows in HEAD's history, newest first, and what follows from them."""

    kept: list[dict] = field(default_factory=list)  # keep and baseline rows, newest first, up to the baseline
    revoked: dict[str, dict] = field(default_factory=dict)  # commit -> its revoked row, for commits in the chain

    @property
    def incumbent(self) -> dict | None:
        return self.kept[0] if self.kept else None

    @property
    def baseline(self) -> dict | None:
        return next((r for r in self.kept if r["status"] == "baseline"), None)

    def first_revoked(self) -> dict | None:
        """The oldest kept row of the chain that was later revoked, or None."""
        return next((r for r in reversed(self.kept) if r["commit"] in self.revoked), None)

    def last_good(self, bad: dict) -> dict | None:
        """The newest kept row older than ``bad`` (None when ``bad`` is the baseline)."""
        older = self.kept[self.kept.index(bad) + 1:]
        return older[0] if older else None

    def simpler_lows(self, workloads: list[str]) -> list[dict[str, float]]:
        """The per-workload 99% lower bounds of the simpler keeps since the last faster keep or the baseline."""
        lows = []
        for row in self.kept:
            if row["status"] != "keep" or row["stop"] not in NOT_FASTER:
                break
            low = {}
            for w in workloads:
                try:
                    low[w] = float(row[f"{column(w)}_speedup_lo"])
                except (KeyError, ValueError):
                    pass
            lows.append(low)
        return lows


def read_chain(repo: Repo, rows: list[dict], head: str) -> Chain:
    """The chain of kept rows in ``head``'s history, newest first, ending at the newest baseline."""
    chain = Chain()
    revoked = {r["commit"]: r for r in rows if r["status"] == "revoked"}
    seen = set()
    for row in reversed(rows):
        if row["status"] not in KEPT or row["commit"] in seen or not repo.is_ancestor(row["commit"], head):
            continue
        seen.add(row["commit"])
        chain.kept.append(row)
        if row["commit"] in revoked:
            chain.revoked[row["commit"]] = revoked[row["commit"]]
        if row["status"] == "baseline":
            break
    return chain
