"""What the measuring scripts share: a scratch clone of this repository, real trials in it, and a CPU-bound load.

Not part of the product: ``verdict_power.py``, ``attack_trials.py``, ``trial_cost.py`` and
``seed_trajectory.py``, ``sandbox_cost.py``, ``two_agents.py``... import it from this folder.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "pqkern" / "bench" / "seed_kernel.py"
DEMO = REPO / "pqkern" / "tools" / "demo_kernels"
TESTS = REPO / "tests" / "kernels"


REPEAT = '''

def search(index, query, k):
    codes, codebook = index
    for _ in range(REPS - 1):
        _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
    return _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
'''

# The real trial, in the scratch clone, with the static policy switched off: for the attacks that need introspection.
WITHOUT_POLICY = ("import sys\nfrom pqkern.bench import trial\ntrial.violations = lambda source: []\n"
                  "sys.exit(trial.main(sys.argv[1:]))")


@dataclass
class Outcome:
    """One trial as the agent sees it, and the phase times its folder recorded."""

    code: int
    verdict: str
    seconds: float
    timings: dict

    def figure(self, name: str) -> float | None:
        """A ratio from the verdict line (``speedup``, ``flat``, ``ivf``, ``vs_seed``), or None."""
        m = re.search(rf" {name}=([\d.]+)x", self.verdict)
        return float(m.group(1)) if m else None

    @property
    def stop(self) -> str:
        m = re.search(r" stop=(\S+)", self.verdict)
        return m.group(1) if m else f"exit {self.code}"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=scratch", "-c", "user.email=scratch@example.invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def clone(workdir: str | None, prefix: str, revision: str | None = None) -> Path:
    """A fresh clone of this repository's committed state (at ``revision``: a commit to measure an older bench) in
    ``workdir`` (a new temporary folder by default)."""
    work = Path(workdir or tempfile.mkdtemp(prefix=prefix))
    repo = work / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    if revision:
        git(repo, "checkout", "-q", "-B", "main", revision)
        git(repo, "update-ref", "refs/remotes/origin/HEAD", revision)
    return repo


def repeated(reps: int, tag: str = "") -> str:
    """The seed kernel, its whole search repeated ``reps`` times per call (work exactly proportional), with a ``VARIANT``
    constant naming ``tag`` if given."""
    seed = SEED.read_text()
    return seed[: seed.index("\ndef search(")] + REPEAT.replace("REPS", str(reps)) + (f"\nVARIANT = {tag!r}\n" if tag
                                                                                       else "")


def copy_tree(dst: Path, message: str = "the working tree") -> Path:
    """This working tree's tracked and unignored files (the bench as it is now, uncommitted changes included) in a new
    git repository ``dst`` (branch main), committed."""
    for f in git(REPO, "ls-files", "-co", "--exclude-standard").splitlines():
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    git(dst, "init", "-q", "-b", "main")
    git(dst, "add", "-A")
    git(dst, "commit", "-qm", message)
    return dst


def branch(repo: Path, name: str, incumbent_source: str) -> str:
    """A new branch off the clone's origin with ``incumbent_source`` committed as its kernel and no results; its sha."""
    git(repo, "checkout", "-q", "-B", f"autoresearch/{name}", "origin/HEAD")
    (repo / "results.tsv").unlink(missing_ok=True)
    (repo / "pqkern" / "kernels.py").write_text(incumbent_source)
    git(repo, "commit", "-q", "--allow-empty", "-am", f"incumbent of {name}")  # the seed may be the committed kernel
    return git(repo, "rev-parse", "HEAD")


def commit(repo: Path, source: str, message: str) -> str:
    (repo / "pqkern" / "kernels.py").write_text(source)
    git(repo, "commit", "-qam", message)
    return git(repo, "rev-parse", "HEAD")


def trial(repo: Path, description: str, extra: list[str] | None = None, cpu: int | None = None,
          asv: bool = False, without_policy: bool = False) -> Outcome:
    """Run the real trial on HEAD (pinned to ``cpu`` if given; recording keeps in asv if ``asv``; with the static policy
    switched off if ``without_policy``, to attack what lies behind it); what it printed and its folder's phase times."""
    start = time.monotonic()
    head = git(repo, "rev-parse", "HEAD")[:10]
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    command = ["-c", WITHOUT_POLICY] if without_policy else ["-m", "pqkern.bench.trial"]
    p = subprocess.run([*pin, sys.executable, *command, description, *([] if asv else ["--no-asv"]), *(extra or [])],
                       cwd=repo, capture_output=True, text=True)
    line = next((x for x in p.stdout.splitlines() if x.startswith("verdict:")), (p.stdout + p.stderr).strip()[-300:])
    folders = sorted((repo / "trials").glob(f"*-{head}/comparison.json"))
    timings = json.loads(folders[-1].read_text()).get("timings", {}) if folders else {}
    return Outcome(p.returncode, line, time.monotonic() - start, timings)


def start_load() -> subprocess.Popen:
    """A CPU-bound process held on the second CPU."""
    return subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
