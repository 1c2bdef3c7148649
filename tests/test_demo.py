"""pqkern-demo end to end at a small size: real trials, real asv, the dashboard and the report; run from a checkout on a
run's branch, on a machine whose git calls its default branch something else than main."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GIT_ENV, REPO, copy_working_tree

from pqkern.tools.dashboard import NODE_MODULES


def run_checkout(tmp: Path) -> tuple[Path, dict]:
    """This checkout's files (tracked and unignored, and the dashboard's npm assets) committed in a new repository where
    git's default branch is ``trunk`` (``init.defaultBranch``), then renamed ``autoresearch/x``: no ``main`` anywhere, as
    in a researcher's checkout after a night on such a machine. Returns it and the environment that names that git
    configuration."""
    config = tmp / "gitconfig"
    config.write_text("[init]\n\tdefaultBranch = trunk\n")
    env = dict(os.environ, GIT_CONFIG_GLOBAL=str(config), **GIT_ENV)
    repo = tmp / "checkout"
    copy_working_tree(repo)
    if NODE_MODULES.is_dir():  # git-ignored: setup.sh installs it
        shutil.copytree(NODE_MODULES, repo / NODE_MODULES.relative_to(REPO))
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "this checkout"], ["branch", "-m", "autoresearch/x"]):
        subprocess.run(["git", *cmd], cwd=repo, env=env, check=True, capture_output=True)
    branches = subprocess.run(["git", "branch", "--list"], cwd=repo, env=env, capture_output=True, text=True).stdout
    assert branches.split() == ["*", "autoresearch/x"], branches
    return repo, env


@pytest.mark.slow
def test_demo_replays_the_loop(tmp_path, data_dir):
    work = tmp_path / "demo"
    checkout, env = run_checkout(tmp_path)
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.demo", "--workdir", str(work), "--num-base", "20000",
                        "--cap-seconds", "10"], cwd=checkout, env=dict(env, PQKERN_DATA=str(data_dir)),
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout + p.stderr
    verdicts = [line for line in p.stdout.splitlines() if "verdict:" in line]
    assert len(verdicts) == 5, p.stdout
    assert "exit 0  verdict: baseline" in verdicts[0]
    assert "exit 2  verdict: discard" in verdicts[3] and "below the floor" in verdicts[3]
    assert "exit 1  verdict: discard (slower)" in verdicts[4]
    for line in verdicts:  # the baseline and every keep recorded in asv, nothing failed there
        assert ("asv: recorded HEAD" in line) == ("verdict: baseline" in line or "verdict: keep" in line), line
        assert "asv: run exited" not in line, line
    rows = [r.split("\t") for r in (work / "repo" / "results.tsv").read_text().splitlines()[1:]]
    statuses = [r[7] for r in rows]
    assert statuses[0] == "baseline" and statuses[3:] == ["discard", "discard"]
    assert set(statuses[1:3]) <= {"keep", "discard"}
    assert (work / "report.html").read_text().count('class="point') == 5
    kept = [r[0] for r in rows if r[7] in ("baseline", "keep")]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work / "repo", capture_output=True, text=True).stdout
    assert head.startswith(kept[-1])  # the branch ends at the last kept commit
    results = [r for r in (work / "repo" / ".asv" / "results" / "demo").glob("*.json") if r.name != "machine.json"]
    assert {r.name[:8] for r in results} == {c[:8] for c in kept}  # every kept commit recorded in asv
    if NODE_MODULES.is_dir():
        html = work / "repo" / ".asv" / "html"
        assert "vendor/jquery" in (html / "index.html").read_text()
        assert "dashboard" in p.stdout and "pqkern-dashboard preview" in p.stdout
        index = json.loads((html / "index.json").read_text())
        assert "autoresearch/demo" in index["params"]["branch"]  # the demo's branch is its own line on the dashboard
        assert "main" not in index["params"]["branch"]  # nor here nor in the checkout it cloned: not drawn
