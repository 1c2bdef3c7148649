"""The morning audit on a real branch: real trials record a baseline and two keeps in a temporary clone, then
``pqkern-audit`` re-judges them from git alone in a fresh clone of its own, and finds a forged row and a forged asv
point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import commit_all, repeated_seed, scratch_repo, small_fixture_env

pytestmark = pytest.mark.slow


def _trial(repo: Path, env: dict, description: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pqkern.bench.trial", description, "--no-asv"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)


def _audit(repo: Path, env: dict, data: Path, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.audit", "--env", sys.executable, "--data", str(data),
                        "--json", str(out), "--workdir", str(out.parent / f"work-{out.stem}")], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=1200)
    return p, (json.loads(out.read_text()) if out.is_file() else {})


@pytest.fixture(scope="module")
def night(tmp_path_factory, data_dir):
    """A branch the way an agent leaves it: a baseline on main's commit (the seed's search three times over), then two
    keeps, each clearly faster than the last whatever the machine's load (twice over, then the seed itself)."""
    root = tmp_path_factory.mktemp("audit")
    repo = root / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env)
    (repo / "pqkern" / "kernels.py").write_text(repeated_seed(3))
    commit_all(repo, env, "thrice")
    subprocess.run(["git", "checkout", "-q", "-b", "autoresearch/night"], cwd=repo, check=True)
    steps = [_trial(repo, env, "baseline")]
    for name, reps in (("twice", 2), ("once", 1)):
        (repo / "pqkern" / "kernels.py").write_text(repeated_seed(reps))
        commit_all(repo, env, name)
        steps.append(_trial(repo, env, name))
    assert [s.returncode for s in steps] == [0, 0, 0], "\n\n".join(s.stdout[-1500:] for s in steps)
    return {"repo": repo, "env": env, "data": data_dir, "root": root}


def test_every_honest_keep_agrees(night):
    p, report = _audit(night["repo"], night["env"], night["data"], night["root"] / "honest.json")
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    verdicts = [k["verdict"] for k in report["kernels"]]
    assert verdicts == ["agrees"] * 3, p.stdout
    assert [k["subject"] for k in report["kernels"]][1:] == ["twice", "once"]
    assert all("seed" in k["measured"] for k in report["kernels"]) and "predecessor" in report["kernels"][2]["measured"]
    assert report["where"]["host"] and report["where"]["cpu"] is not None and report["seconds"] > 0


def test_a_forged_row_and_a_forged_asv_point_are_flagged(night):
    repo = night["repo"]
    results = repo / "results.tsv"
    lines = results.read_text().splitlines()
    header = lines[0].split("\t")
    cells = lines[-1].split("\t")
    keep = dict(zip(header, cells, strict=True))
    cells[header.index("seed_speedup")] = "9.999"  # the last keep's figure, edited by hand
    results.write_text("\n".join([*lines[:-1], "\t".join(cells)]) + "\n")
    twice = dict(zip(header, lines[-2].split("\t"), strict=True))
    full = subprocess.run(["git", "rev-parse", twice["commit"]], cwd=repo, capture_output=True, text=True).stdout.strip()
    machine = repo / ".asv" / "results" / "night"
    machine.mkdir(parents=True)
    params = [["'combined'", "'flat'", "'ivf'", "'real'", "'real-ivf'"], ["'estimate'", "'low'", "'high'"]]
    forged = [0.1, 0.09, 0.11] + [float("nan")] * 12  # "10x the seed" for the first keep
    (machine / f"{full[:8]}-virtualenv-py3.11.json").write_text(json.dumps({
        "commit_hash": full, "result_columns": ["result", "params", "version"],
        "results": {"bench_throughput.Speed.track_time_vs_seed": [forged, params, "x"]}}))
    try:
        p, report = _audit(repo, night["env"], night["data"], night["root"] / "forged.json")
    finally:
        results.write_text("\n".join(lines) + "\n")
    assert p.returncode == 1
    by_subject = {k["subject"]: k for k in report["kernels"]}
    assert by_subject["twice"]["verdict"] == "differs" and "asv" in by_subject["twice"]["why"], p.stdout
    assert by_subject["once"]["verdict"] == "differs" and "does not verify" in by_subject["once"]["why"], p.stdout
    assert keep["commit"][:10] in p.stdout
