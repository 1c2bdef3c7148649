"""Real asv over a real git history of kernel variants: results, recall gate, regressions, find, dashboard."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import DEMO, KERNELS, commit_all, scratch_repo, small_fixture_env

from pqkern.tools.dashboard import NODE_MODULES

MACHINE = "pqkern-ci"
BENCH = r"bench_kernel\.(Search|Quality)\."
HISTORY = [("baseline", None), ("faster: row-major re-layout", DEMO / "relayout.py"),
           ("broken: scans an eighth of the base", KERNELS / "slice_scan.py"),
           ("slower: scans three times", DEMO / "slower.py")]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _asv(repo: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "asv", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=1500)
    if check and p.returncode != 0:
        raise AssertionError(f"asv {' '.join(args)} exited {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


@pytest.fixture(scope="module")
def history(tmp_path_factory, data_dir):
    """A temporary clone with four kernel commits, benchmarked by asv and published."""
    tmp = tmp_path_factory.mktemp("asv")
    repo = tmp / "repo"
    env = small_fixture_env(data_dir, HOME=str(tmp / "home"), PIP_CACHE_DIR=str(Path.home() / ".cache" / "pip"))
    repo.mkdir()
    shas = {"baseline": scratch_repo(repo, env, without_peers=True)}
    for message, kernel in HISTORY[1:]:
        shutil.copyfile(kernel, repo / "pqkern" / "kernels.py")
        shas[message.split(":")[0]] = commit_all(repo, env, message)
    _asv(repo, env, "machine", "--yes", "--machine", MACHINE)
    run = _asv(repo, env, "run", "--machine", MACHINE, "--bench", BENCH, "-a", "processes=1", "--show-stderr", "ALL",
               check=False)
    assert run.returncode == 2, f"expected the broken commit's gate to fail asv run:\n{run.stdout[-4000:]}"
    publish = subprocess.run([sys.executable, "-m", "pqkern.tools.dashboard", "publish", "--node-modules", str(NODE_MODULES)],
                             cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    return {"repo": repo, "env": env, "shas": shas, "run": run, "publish": publish}


def _results(history) -> dict[str, dict]:
    out = {}
    for path in (history["repo"] / ".asv" / "results" / MACHINE).glob("*-*.json"):
        data = json.loads(path.read_text())
        names = data["result_columns"]
        out[data["commit_hash"]] = {b: dict(zip(names, row, strict=False)) for b, row in data["results"].items()}
    return out


def test_results_record_time_recall_and_memory_per_commit(history):
    results = _results(history)
    for name, sha in history["shas"].items():
        r = results[sha]
        assert r["bench_kernel.Search.time_search"]["result"][0] > 0, name
        assert r["bench_kernel.Quality.track_kernel_peak_mem_mb"]["result"][0] is not None, name
        recall = r["bench_kernel.Quality.track_recall_at_10"]["result"][0]
        assert 0 <= recall <= 1, name
    slow = results[history["shas"]["slower"]]["bench_kernel.Search.time_search"]["result"][0]
    fast = results[history["shas"]["faster"]]["bench_kernel.Search.time_search"]["result"][0]
    assert slow > 2 * fast


def test_broken_recall_commit_fails_the_gate(history):
    results = _results(history)
    broken = results[history["shas"]["broken"]]
    assert broken["bench_kernel.Quality.track_recall_at_10"]["result"][0] < 0.5
    assert broken["bench_kernel.Quality.track_recall_gate"]["result"] is None  # failed: shown as failed
    for name in ("baseline", "faster", "slower"):
        assert results[history["shas"][name]]["bench_kernel.Quality.track_recall_gate"]["result"][0] >= 0
    compare = _asv(history["repo"], history["env"], "compare", "--machine", MACHINE,
                   history["shas"]["faster"], history["shas"]["broken"])
    gate_line = next(line for line in compare.stdout.splitlines() if "track_recall_gate" in line)
    cells = [c.strip() for c in gate_line.strip(" |").split("|")]
    assert cells[0] == "!" and cells[2] == "failed", gate_line


def test_regressions_feed_names_the_slow_commit(history):
    assert history["publish"].returncode == 0, history["publish"].stderr
    html = history["repo"] / ".asv" / "html"
    index = json.loads((html / "index.json").read_text())
    regressions = json.loads((html / "regressions.json").read_text())["regressions"]
    timing = ("bench_kernel.Search.time_search", "bench_kernel.Quality.track_geomean_ns_per_query")
    after = {index["revision_to_hash"][str(jump[1])] for r in regressions if r[0] in timing for jump in r[6]}
    assert history["shas"]["slower"] in after, regressions  # asv may judge one of the two too noisy on a busy box
    assert history["shas"]["slower"][:8] in (html / "regressions.xml").read_text()


def test_bisect_names_the_slow_commit(history):
    shas = history["shas"]
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]  # the asv that runs these tests
    p = subprocess.run([str(history["repo"] / "scripts" / "bisect.sh"), f"{shas['baseline']}..{shas['slower']}"],
                       cwd=history["repo"], env=dict(history["env"], PATH=path), capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"Greatest regression found: {shas['slower'][:8]}" in p.stdout, p.stdout


def test_dashboard_renders_offline_in_chromium(history, tmp_path):
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    html = history["repo"] / ".asv" / "html"
    assert "cdn" not in (html / "index.html").read_text().lower().split("<body")[0]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/index.html#bench_kernel.Search.time_search"
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=15000", "--dump-dom", url]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    finally:
        server.shutdown()
    assert "continental origin" not in dom  # asv's error page
    assert 'class="flot-base"' in dom and 'id="main-graph"' in dom
