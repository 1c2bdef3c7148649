"""Every run on the dashboard: real git, real asv and Chromium on scratch repositories with a tiny asv suite.

One repository with a baseline on main and kept commits on two ``autoresearch/*`` branches; then two
machines (two clones, two asv machine names) that push their runs to a bare remote, a third clone that
gathers them into one dashboard and one report, and a worktree that shares its run without a remote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GIT_ENV, dump_dom
from test_report import v2_row, write_tsv

from pqkern.tools.dashboard import NODE_MODULES
from pqkern.tools.results_tsv import V2

pytestmark = pytest.mark.slow
BENCH = "bench_value.Kernel.track_value"
SUITE = '''"""The number in the benchmarked commit's kernel.txt (asv checks each commit out into its environment)."""
import os
from pathlib import Path


class Kernel:
    def track_value(self):
        return float(Path(os.environ["ASV_ENV_DIR"], "project", "kernel.txt").read_text())

    track_value.unit = "x"
'''


def sh(cwd: Path, env: dict, *cmd: str, code: int = 0) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == code, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def tool(cwd: Path, env: dict, module: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    node = ["--node-modules", str(NODE_MODULES)] if args[:1] in (("publish",), ("gather",)) else []
    return sh(cwd, env, sys.executable, "-m", f"pqkern.tools.{module}", *args, *node, code=code)


def asv(cwd: Path, env: dict, *args: str) -> None:
    sh(cwd, env, sys.executable, "-m", "asv", *args)


def machine_env(tmp: Path, name: str) -> dict:
    """A HOME of its own (asv keeps the machine name in ~/.asv-machine.json), a git identity."""
    home = tmp / f"home-{name}"
    home.mkdir(exist_ok=True)
    return dict(os.environ, HOME=str(home), **GIT_ENV)


def seed_repo(repo: Path, env: dict, env_dir: Path) -> None:
    """main: a tiny asv suite, an asv.conf.json with no build (one shared environment) and kernel.txt = 1.0."""
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_value.py").write_text(SUITE)
    conf = {"version": 1, "project": "scratch", "project_url": "#", "repo": ".", "dvcs": "git", "branches": ["main"],
            "environment_type": "virtualenv", "matrix": {}, "build_command": [], "install_command": [],
            "uninstall_command": [], "benchmark_dir": "benchmarks", "env_dir": str(env_dir),
            "results_dir": ".asv/results", "html_dir": ".asv/html"}
    (repo / "asv.conf.json").write_text(json.dumps(conf, indent=4) + "\n")
    (repo / ".gitignore").write_text(".asv/\nresults.tsv\ntrials/\n")
    (repo / "kernel.txt").write_text("1.0\n")
    sh(repo, env, "git", "init", "-q", "-b", "main")
    sh(repo, env, "git", "add", "-A")
    sh(repo, env, "git", "commit", "-qm", "seed")


def run(repo: Path, env: dict, branch: str, machine: str, steps: list[tuple[str, str]], t0: int = 0) -> list[str]:
    """An agent's run on ``branch``: a baseline, then (value, status) trials; the baseline and kept ones benchmarked
    with asv, discarded ones reverted; one version 2 row each in results.tsv. Returns the kept commits."""
    sh(repo, env, "git", "checkout", "-q", "-b", branch, "main")
    head = sh(repo, env, "git", "rev-parse", "HEAD").stdout.strip()
    rows, kept = [v2_row(head[:10], "baseline", "1.0", t0, branch, machine)], [head]
    for i, (value, status) in enumerate(steps, 1):
        (repo / "kernel.txt").write_text(value + "\n")
        sh(repo, env, "git", "commit", "-qam", f"{status} {value}")
        head = sh(repo, env, "git", "rev-parse", "HEAD").stdout.strip()
        rows.append(v2_row(head[:10], status, value, t0 + i, branch, machine))
        if status == "keep":
            kept.append(head)
        else:
            sh(repo, env, "git", "reset", "-q", "--hard", "HEAD~1")
    hashes = repo / ".asv" / "kept.txt"  # one asv run for the baseline and the kept commits (the trial runs HEAD^! each)
    hashes.parent.mkdir(exist_ok=True)
    hashes.write_text("\n".join(kept) + "\n")
    asv(repo, env, "run", "-a", "processes=1", "--skip-existing-commits", f"HASHFILE:{hashes}")
    write_tsv(repo / "results.tsv", V2, rows)
    return kept[1:]


def graph(repo: Path, branch: str, machine: str) -> list[float]:
    path = repo / ".asv" / "html" / "graphs" / f"branch-{branch.replace('/', '_')}" / f"machine-{machine}" / "python-3.11"
    return [v for _, v in json.loads((path / f"{BENCH}.json").read_text())]


def state(repo: Path, env: dict) -> tuple[str, str]:
    """HEAD and the index's tree: push and gather must leave both as they were."""
    return sh(repo, env, "git", "rev-parse", "HEAD").stdout, sh(repo, env, "git", "write-tree").stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def solo(scratch) -> dict:
    """One machine, one repository: a baseline on main, two runs on two autoresearch branches, published."""
    env = machine_env(scratch, "solo-box")
    repo = scratch / "solo"
    seed_repo(repo, env, scratch / "env")
    asv(repo, env, "machine", "--yes", "--machine", "solo-box")
    run(repo, env, "autoresearch/a", "solo-box", [("1.5", "keep"), ("0.9", "discard"), ("2.0", "keep")])
    run(repo, env, "autoresearch/b", "solo-box", [("3.0", "keep")])
    publish = tool(repo, env, "dashboard", "publish")
    return {"repo": repo, "env": env, "publish": publish}


def test_dashboard_draws_every_branch(solo):
    repo = solo["repo"]
    assert "branches: main, autoresearch/a, autoresearch/b" in solo["publish"].stdout
    index = json.loads((repo / ".asv" / "html" / "index.json").read_text())
    assert index["params"]["branch"] == ["main", "autoresearch/a", "autoresearch/b"]
    assert graph(repo, "main", "solo-box") == [1.0]
    assert graph(repo, "autoresearch/a", "solo-box") == [1.0, 1.5, 2.0]  # the discarded 0.9 was never benchmarked
    assert graph(repo, "autoresearch/b", "solo-box") == [1.0, 3.0]
    assert json.loads((repo / "asv.conf.json").read_text())["branches"] == ["main"]
    assert sh(repo, solo["env"], "git", "status", "--porcelain").stdout == ""


def test_dashboard_shows_each_branch_in_chromium(solo, tmp_path):
    html = solo["repo"] / ".asv" / "html"
    page = f"index.html#{BENCH}?branch=main&branch=autoresearch%2Fa&branch=autoresearch%2Fb"
    dom = dump_dom(html, page, tmp_path / "profile")
    assert "continental origin" not in dom and 'class="flot-base"' in dom
    selector = dom.split('id="graphdisplay-state-params"')[1].split('id="main-graph"')[0]
    for branch in ("main", "autoresearch/a", "autoresearch/b"):
        assert f'role="button">{branch}<' in selector  # asv's branch selector
        assert f'class="legendLabel">branch-{branch}<' in dom  # one loaded series per branch


@pytest.fixture(scope="module")
def shared(scratch, solo) -> dict:
    """Two machines run on two clones and push to a bare remote; a third clone gathers and publishes them."""
    remote = scratch / "shared.git"
    sh(scratch, solo["env"], "git", "init", "-q", "--bare", "-b", "main", str(remote))
    sh(solo["repo"], solo["env"], "git", "push", "-q", str(remote), "main")
    out = {"remote": remote}
    machines = [("box-1", "nov27", [("1.25", "keep"), ("1.75", "keep")], 10),
                ("box-2", "dec01", [("1.1", "discard"), ("2.5", "keep")], 20)]
    for name, tag, steps, t0 in machines:
        env = machine_env(scratch, name)
        clone = scratch / name
        sh(scratch, env, "git", "clone", "-q", str(remote), str(clone))
        asv(clone, env, "machine", "--yes", "--machine", name)
        kept = run(clone, env, f"autoresearch/{tag}", name, steps, t0)
        before = state(clone, env)
        push = tool(clone, env, "runs", "push")
        assert state(clone, env) == before and sh(clone, env, "git", "status", "--porcelain").stdout == ""
        out[name] = {"repo": clone, "env": env, "kept": kept, "push": push}
    env = machine_env(scratch, "desk")  # no asv machine: it only gathers
    desk = scratch / "desk"
    sh(scratch, env, "git", "clone", "-q", str(remote), str(desk))
    out["desk"] = {"repo": desk, "env": env, "gather": tool(desk, env, "runs", "gather")}
    return out


def test_push_commits_results_on_a_results_branch(shared):
    box = shared["box-1"]
    assert "pushed autoresearch/nov27 and pqkern-results/box-1 to origin" in box["push"].stdout
    files = sh(shared["remote"], box["env"], "git", "ls-tree", "-r", "--name-only", "pqkern-results/box-1").stdout.split()
    assert "runs/box-1/autoresearch__nov27.tsv" in files and "asv/benchmarks.json" in files
    assert "asv/box-1/machine.json" in files and sum(f.startswith("asv/box-1/") for f in files) == 1 + 3
    branches = sh(shared["remote"], box["env"], "git", "branch", "--list").stdout
    assert "autoresearch/nov27" in branches and "autoresearch/dec01" in branches


def test_push_says_what_is_wrong(shared):
    desk, env = shared["desk"]["repo"], shared["desk"]["env"]
    assert "which asv machine is this?" in tool(desk, env, "runs", "push", code=1).stderr
    p = tool(desk, env, "runs", "push", "--machine", "desk", code=1)
    assert "on main: push runs from the run's autoresearch/<tag> branch" in p.stderr
    box = shared["box-2"]
    p = tool(box["repo"], box["env"], "runs", "push", "--remote", "nowhere", code=1)
    assert "no git remote 'nowhere'" in p.stderr


def test_gather_publishes_every_machine_and_run(shared):
    desk = shared["desk"]["repo"]
    index = json.loads((desk / ".asv" / "html" / "index.json").read_text())
    assert index["params"]["machine"] == ["box-1", "box-2"]
    assert index["params"]["branch"] == ["main", "origin/autoresearch/dec01", "origin/autoresearch/nov27"]
    assert graph(desk, "origin/autoresearch/nov27", "box-1") == [1.0, 1.25, 1.75]
    assert graph(desk, "origin/autoresearch/dec01", "box-2") == [1.0, 2.5]
    page = (desk / "trials" / "report.html").read_text()
    assert "autoresearch/nov27 @ box-1" in page and "autoresearch/dec01 @ box-2" in page
    assert page.count('<tr class="') == 3 + 3 and '<g class="series run-1">' in page
    assert (desk / "trials" / "runs" / "box-2" / "autoresearch__dec01.tsv").is_file()


def test_gather_keeps_a_machines_newer_local_results(shared):
    box = shared["box-1"]
    repo, env = box["repo"], box["env"]
    seed = repo / ".asv" / "results" / "box-1" / next(p.name for p in (repo / ".asv/results/box-1").glob("*.json")
                                                      if p.name != "machine.json" and json.loads(p.read_text())["commit_hash"]
                                                      == sh(repo, env, "git", "rev-parse", "main").stdout.strip())
    asv(repo, env, "run", "-a", "processes=1", "main^!")  # measured again, after the push
    newer = seed.read_bytes()
    gather = tool(repo, env, "runs", "gather")
    assert seed.read_bytes() == newer, gather.stdout
    assert (repo / ".asv" / "results" / "box-2" / "machine.json").is_file()  # the other machine arrived
    assert "origin/autoresearch/dec01" in gather.stdout and "autoresearch/nov27," in gather.stdout


def test_gather_refuses_a_diverged_run_and_writes_nothing(shared):
    desk, env = shared["desk"]["repo"], shared["desk"]["env"]
    mine = desk / "trials" / "runs" / "box-1" / "autoresearch__nov27.tsv"
    original = mine.read_text()
    mine.write_text(original.replace("keep", "discard", 1))
    results = sorted((desk / ".asv" / "results").rglob("*"))
    p = tool(desk, env, "runs", "gather", code=1)
    assert "refused, nothing written" in p.stderr and "autoresearch__nov27.tsv" in p.stderr and "diverged" in p.stderr
    assert sorted((desk / ".asv" / "results").rglob("*")) == results and "discard" in mine.read_text()
    mine.write_text(original)


def test_worktrees_share_runs_without_a_remote(shared):
    box = shared["box-1"]
    repo, env = box["repo"], box["env"]
    tree = repo.parent / "box-1-worktree"
    sh(repo, env, "git", "worktree", "add", "-q", "--detach", str(tree), "main")
    run(tree, env, "autoresearch/jan05", "box-1", [("4.0", "keep")], 30)  # its own results.tsv and .asv/results
    push = tool(tree, env, "runs", "push", "--local").stdout
    assert "recorded autoresearch/jan05's results on pqkern-results/box-1 locally" in push
    gather = tool(repo, env, "runs", "gather", "--local")
    assert "autoresearch/jan05" in gather.stdout
    assert graph(repo, "autoresearch/jan05", "box-1") == [1.0, 4.0]
    assert graph(repo, "autoresearch/nov27", "box-1") == [1.0, 1.25, 1.75]
    page = (repo / "trials" / "report.html").read_text()
    assert "autoresearch/jan05 @ box-1" in page and "autoresearch/nov27 @ box-1" in page
    assert "older measurement kept in .asv/replaced/box-1/" in gather.stdout  # both measured the seed; the newer wins


STATES_SUITE = '''"""Series that apply, one that does not (n/a: its setup raises NotImplementedError) and one that fails."""
import os
from pathlib import Path


def setup_cache():
    return float(Path(os.environ["ASV_ENV_DIR"], "project", "kernel.txt").read_text())


class Kernel:
    params = (["here", "elsewhere"],)
    param_names = ["workload"]

    def setup(self, value, workload):
        if workload == "elsewhere":
            raise NotImplementedError("no such workload in this run")

    def track_value(self, value, workload):
        return value

    def track_broken(self, value, workload):
        raise AssertionError("a failed gate")
'''


def default_branch_env(tmp: Path, name: str, default: str) -> dict:
    """A machine whose git names its default branch ``default`` (init.defaultBranch), with a HOME of its own."""
    env = machine_env(tmp, name)
    config = tmp / f"gitconfig-{name}"
    config.write_text(f"[init]\n\tdefaultBranch = {default}\n")
    return dict(env, GIT_CONFIG_GLOBAL=str(config))


@pytest.fixture(scope="module")
def elsewhere(scratch) -> dict:
    """A run's checkout with no ``main``: made where git's default branch is ``trunk``, that branch renamed to
    autoresearch/x, then cloned (as pqkern-demo clones the checkout it runs from) onto autoresearch/demo; two commits
    benchmarked and published."""
    env = default_branch_env(scratch, "elsewhere", "trunk")
    origin = scratch / "elsewhere-origin"
    seed_repo(origin, env, scratch / "env")
    shutil.rmtree(origin / ".git")
    (origin / "benchmarks" / "bench_value.py").write_text(STATES_SUITE)
    sh(origin, env, "git", "init", "-q")  # on git's default branch: trunk
    sh(origin, env, "git", "add", "-A")
    sh(origin, env, "git", "commit", "-qm", "a suite with states")
    sh(origin, env, "git", "branch", "-m", "autoresearch/x")
    clone = scratch / "elsewhere-clone"
    sh(scratch, env, "git", "clone", "-q", str(origin), str(clone))
    sh(clone, env, "git", "checkout", "-q", "-b", "autoresearch/demo")
    (clone / "kernel.txt").write_text("2.0\n")
    sh(clone, env, "git", "commit", "-qam", "keep 2.0")
    asv(clone, env, "machine", "--yes", "--machine", "elsewhere-box")
    for commit in ("HEAD~1^!", "HEAD^!"):  # as the trial records each keep
        p = subprocess.run([sys.executable, "-m", "asv", "run", "-a", "processes=1", commit], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 2 and "track_broken" in p.stdout, p.stdout  # the gate fails, as it should
    return {"repo": clone, "origin": origin, "env": env, "publish": tool(clone, env, "dashboard", "publish")}


def test_publish_works_on_a_run_branch_whatever_the_default_branch(elsewhere):
    repo, env = elsewhere["repo"], elsewhere["env"]
    assert sh(elsewhere["origin"], env, "git", "branch", "--list").stdout.split() == ["*", "autoresearch/x"]
    assert sh(repo, env, "git", "branch", "--list", "main", "trunk").stdout == ""
    out = elsewhere["publish"].stdout
    assert "no branch 'main' here (asv.conf.json names it): not drawn" in out
    assert "branches: autoresearch/demo, autoresearch/x;" in out
    index = json.loads((repo / ".asv" / "html" / "index.json").read_text())
    assert index["params"]["branch"] == ["autoresearch/demo", "autoresearch/x"]
    graph = repo / ".asv" / "html" / "graphs" / "branch-autoresearch_demo" / "machine-elsewhere-box" / "python-3.11"
    assert [v for _, v in json.loads((graph / f"{BENCH}.json").read_text())] == [[1.0, None], [2.0, None]]


def test_the_list_view_says_n_a_and_failed(elsewhere, tmp_path):
    html = elsewhere["repo"] / ".asv" / "html"
    summary = next((html / "graphs" / "branch-autoresearch_demo").glob("**/summary.json"))
    values = {r["pretty_name"]: r["last_value"] for r in json.loads(summary.read_text())}
    assert values == {f"{BENCH}('here')": 2.0, f"{BENCH}('elsewhere')": "n/a",
                      "bench_value.Kernel.track_broken('here')": "failed",
                      "bench_value.Kernel.track_broken('elsewhere')": "n/a"}
    assert "series marked n/a or failed" in elsewhere["publish"].stdout
    dom = dump_dom(html, "index.html#summarylist?branch=autoresearch%2Fdemo", tmp_path / "profile")
    cells = dom.split('id="summarylist-body"')[1]
    assert cells.count(">n/a</span></td>") == 2 and cells.count(">failed</span></td>") == 1, cells[:3000]
    assert ">2.00</span></td>" in cells  # a value, formatted by asv as always
