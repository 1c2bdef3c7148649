"""The trial runner on a scripted trajectory in a temporary clone: real git, real runner, real kernels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO, KERNELS, commit_all, scratch_repo, small_fixture_env

from pqkern.bench.trial import paired_verdict

PAIRS = "3"


def _trial(repo: Path, env: dict, description: str, *extra: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", description, "--pairs", PAIRS, "--queries", "200",
                        "--no-asv", *extra], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    rows = (repo / "results.tsv").read_text().splitlines()[1:] if (repo / "results.tsv").exists() else []
    return {"code": p.returncode, "out": p.stdout, "err": p.stderr, "head": head, "rows": [r.split("\t") for r in rows]}


def _commit_kernel(repo: Path, env: dict, source: str, message: str) -> str:
    (repo / "pqkern" / "kernels.py").write_text(source)
    return commit_all(repo, env, message)


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory, data_dir):
    repo = tmp_path_factory.mktemp("trial") / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env)
    seed = _commit_kernel(repo, env, (DEMO / "slower.py").read_text(), "seed: a slow kernel")
    steps = {"seed": seed}
    steps["baseline"] = _trial(repo, env, "baseline")
    fast_src = (DEMO / "relayout.py").read_text()
    steps["fast_commit"] = _commit_kernel(repo, env, fast_src, "row-major re-layout")
    steps["faster"] = _trial(repo, env, "row-major re-layout")
    steps["again"] = _trial(repo, env, "the same commit again")
    steps["aa"] = []
    for i in range(3):
        _commit_kernel(repo, env, fast_src + f"\n# identical kernel, try {i}\n", f"A/A {i}")
        steps["aa"].append(_trial(repo, env, f"identical kernel {i}"))
    _commit_kernel(repo, env, (DEMO / "slower.py").read_text(), "three scans")
    steps["slower"] = _trial(repo, env, "three scans")
    _commit_kernel(repo, env, (KERNELS / "slice_scan.py").read_text(), "scan an eighth")
    steps["recall"] = _trial(repo, env, "scan an eighth")
    _commit_kernel(repo, env, (KERNELS / "raises.py").read_text(), "raises")
    steps["crash"] = _trial(repo, env, "raises")
    _commit_kernel(repo, env, (KERNELS / "spin.py").read_text(), "spins")
    steps["timeout"] = _trial(repo, env, "spins", "--time-budget", "10")
    bench_file = repo / "pqkern" / "bench" / "reference.py"
    bench_file.write_text(bench_file.read_text() + "\n# tweak\n")
    commit_all(repo, env, "edit the bench")
    steps["bench"] = _trial(repo, env, "edit the bench")
    _commit_kernel(repo, env, "import os\n" + fast_src, "import os")
    steps["policy"] = _trial(repo, env, "import os")
    (repo / "pqkern" / "kernels.py").write_text(fast_src + "\n# uncommitted\n")
    steps["dirty"] = _trial(repo, env, "dirty")
    steps["dirty_file"] = (repo / "pqkern" / "kernels.py").read_text()
    subprocess.run(["git", "checkout", "pqkern/kernels.py"], cwd=repo, check=True)
    steps.update(repo=repo, env=env)
    return steps


def _verdict(step: dict) -> str:
    return next(line for line in step["out"].splitlines() if line.startswith("verdict: "))


def test_baseline_is_recorded_with_its_noise_floor(trajectory):
    s = trajectory["baseline"]
    assert s["code"] == 0, s["out"] + s["err"]
    assert _verdict(s).startswith("verdict: baseline (noise floor")
    assert s["rows"][0][7] == "baseline" and s["rows"][0][0] == trajectory["seed"][:12]
    assert "---\nsource: synthetic\nnum_base: 20000\n" in s["out"]


def test_faster_kernel_is_kept(trajectory):
    s = trajectory["faster"]
    assert s["code"] == 0, s["out"] + s["err"]
    assert _verdict(s).startswith("verdict: keep")
    assert s["head"] == trajectory["fast_commit"]
    row = s["rows"][-1]
    assert row[7] == "keep" and row[8] == "row-major re-layout" and float(row[4]) > 1.01
    assert len(s["rows"]) == 2


def test_retrying_the_incumbent_is_refused_without_a_row(trajectory):
    s = trajectory["again"]
    assert s["code"] == 5 and "HEAD is the incumbent" in s["out"], s["out"]
    assert s["head"] == trajectory["fast_commit"] and len(s["rows"]) == 2


def test_identical_kernel_is_never_kept(trajectory):
    for i, s in enumerate(trajectory["aa"]):
        assert s["code"] == 1, s["out"] + s["err"]
        assert "discard (not significant)" in _verdict(s) or "discard (slower)" in _verdict(s)
        assert s["head"] == trajectory["fast_commit"]
        assert s["rows"][-1][7] == "discard" and len(s["rows"]) == 3 + i


def test_slower_kernel_is_discarded(trajectory):
    s = trajectory["slower"]
    assert s["code"] == 1 and "discard (slower)" in _verdict(s), s["out"]
    assert s["head"] == trajectory["fast_commit"] and s["rows"][-1][7] == "discard"


def test_broken_recall_is_discarded_with_exit_2(trajectory):
    s = trajectory["recall"]
    assert s["code"] == 2 and "below the floor" in _verdict(s), s["out"]
    assert s["head"] == trajectory["fast_commit"] and s["rows"][-1][7] == "discard"


def test_raising_kernel_is_a_crash(trajectory):
    s = trajectory["crash"]
    assert s["code"] == 4 and _verdict(s).startswith("verdict: crash"), s["out"]
    assert s["head"] == trajectory["fast_commit"] and s["rows"][-1][7] == "crash"


def test_hanging_kernel_is_a_timeout(trajectory):
    s = trajectory["timeout"]
    assert s["code"] == 3 and _verdict(s).startswith("verdict: timeout"), s["out"]
    assert s["head"] == trajectory["fast_commit"] and s["rows"][-1][7] == "timeout"


def test_bench_edit_and_policy_breach_are_refused(trajectory):
    s = trajectory["bench"]
    assert s["code"] == 5 and "changes pqkern/bench/reference.py" in _verdict(s), s["out"]
    assert s["head"] == trajectory["fast_commit"] and s["rows"][-1][7] == "refused"
    s = trajectory["policy"]
    assert s["code"] == 5 and "line 1: import os" in _verdict(s), s["out"]
    assert s["head"] == trajectory["fast_commit"] and s["rows"][-1][7] == "refused"


def test_dirty_tree_is_refused_and_nothing_is_lost(trajectory):
    s = trajectory["dirty"]
    assert s["code"] == 5 and "uncommitted changes" in s["out"]
    assert len(s["rows"]) == len(trajectory["policy"]["rows"])  # no row for a trial that never started
    assert trajectory["dirty_file"].endswith("# uncommitted\n")


def test_rows_are_exactly_the_expected_ones(trajectory):
    statuses = [r[7] for r in trajectory["dirty"]["rows"]]
    assert statuses == ["baseline", "keep", "discard", "discard", "discard", "discard", "discard", "crash", "timeout",
                        "refused", "refused"]


def test_report_renders_every_trial(trajectory, tmp_path):
    repo = trajectory["repo"]
    out = tmp_path / "report.html"
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps({"fixture_id": "smoke", "num_base": 1024, "rows": [
        {"method": "kernels.py", "median_ns": 40000, "min_ns": 35000, "max_ns": 60000, "recall_at_10": 1.0,
         "agreement": 1.0, "ratio_to_kernel": 1.0},
        {"method": "floor: one pass over the codes", "median_ns": 2000, "min_ns": 1900, "max_ns": 3000,
         "ratio_to_kernel": 0.05}]}))
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.report", str(repo / "results.tsv"), "-o", str(out),
                        "--peers", str(peers)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert 'id="peers"' in page and "floor: one pass over the codes" in page and "40,000" in page
    assert page.count('class="point keep"') == 1 and page.count('class="point failed"') == 4
    assert page.count("<tr class=") == 11
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1000,800",
                    out.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", out.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'id="progress"' in dom and dom.count("<circle") == 7


def test_keep_rule_statistics():
    same = paired_verdict([100.0, 102.0, 99.0, 101.0, 100.0], [101.0, 100.0, 100.0, 100.0, 101.0], noise=0.01)
    assert same["decision"] == "discard" and same["why"] == "not significant" and same["lo"] < 1 < same["hi"]
    fast = paired_verdict([120.0, 121.0, 119.0, 120.0, 122.0], [100.0, 101.0, 99.0, 100.0, 100.0], noise=0.01)
    assert fast["decision"] == "keep" and 1.15 < fast["speedup"] < 1.25
    slow = paired_verdict([100.0] * 5, [130.0, 131.0, 129.0, 130.0, 130.0], noise=0.01)
    assert slow["why"] == "slower"
    noisy = paired_verdict([120.0, 121.0, 119.0, 120.0, 122.0], [100.0, 101.0, 99.0, 100.0, 100.0], noise=0.30)
    assert noisy["decision"] == "discard"  # the baseline's noise floor makes a lucky quiet sample count for less
