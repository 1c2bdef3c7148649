"""A branch's kept history, as the trial reads it from git and results.tsv (immutable bench).

The incumbent is the newest kept (or baseline) commit in HEAD's history; the baseline the newest
baseline row there (git read through ``gitsafe.py``: verified objects, the repository's config
and replace refs ignored). A keep later found wrong is ``revoked`` (its own row): a branch whose history
holds a revoked commit must go back to the last good kept commit before it, and the trial says
how. The simpler keeps since the last faster keep (or the baseline) have spent part of the
margin a simpler candidate may lose (``rule.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pqkern.bench.gitsafe import GitError, Repo

__all__ = ["Chain", "GitError", "Repo", "column", "read_chain"]
KEPT = ("keep", "baseline")
NOT_FASTER = ("simpler", "same-code")  # keep stops that do not reset the simpler margin


def column(workload: str) -> str:
    """The results.tsv column prefix of a workload: ``real_ivf`` for ``real-ivf``, else its name (``flat``, ``ivf``,
    ``real``)."""
    return workload.partition("@")[0].replace("-", "_")


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
