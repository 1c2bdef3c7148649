"""The trial's newer rules in temporary clones, with real workers: simpler keeps, a revoked incumbent, and what a kernel
may spend outside its timed calls."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO, KERNELS, commit_all, repeated_seed, scratch_repo, small_fixture_env

from pqkern.bench.results import HEADER, append_row
from pqkern.bench.simplicity import code_size, same_code

pytestmark = pytest.mark.slow
SEED = (Path(__file__).resolve().parent.parent / "pqkern" / "bench" / "seed_kernel.py").read_text()
HAND_TRANSPOSE = (DEMO / "relayout.py").read_text().replace(
    "def prepare(codes, codebook):\n    return np.ascontiguousarray(codes.T), codebook",
    "@numba.njit\ndef _transpose(codes):\n    n = codes.shape[1]\n    out = np.empty((n, 16), np.uint8)\n"
    "    for r in range(n):\n        for s in range(16):\n            out[r, s] = codes[s, r]\n    return out\n\n\n"
    "def prepare(codes, codebook):\n    return _transpose(codes), codebook")
DEAD = '''

@numba.njit
def _never_called(x):
    total = 0
    for i in range(x.shape[0]):
        total += x[i] * i
    return total
'''


def _repeated(reps: int, dead: bool = False) -> str:
    """The seed with its whole search repeated ``reps`` times per call (work exactly proportional), optionally with a
    function nothing calls."""
    return repeated_seed(reps, DEAD if dead else "")


def _trial(repo: Path, env: dict, description: str, *extra: str) -> dict:
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", description, "--no-asv", *extra], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=900)
    path = repo / "results.tsv"
    rows = [dict(zip(HEADER, line.split("\t"), strict=True)) for line in path.read_text().splitlines()[1:]]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    verdict = next((line for line in p.stdout.splitlines() if line.startswith("verdict: ")), p.stdout + p.stderr)
    return {"code": p.returncode, "out": p.stdout, "err": p.stderr, "verdict": verdict, "rows": rows, "head": head}


def _commit_kernel(repo: Path, env: dict, source: str, message: str) -> str:
    (repo / "pqkern" / "kernels.py").write_text(source)
    return commit_all(repo, env, message)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, data_dir):
    """A clone whose seed is recorded as the baseline, once for the module: ``(repo, env, baseline sha)``."""
    path = tmp_path_factory.mktemp("rules") / "repo"
    path.mkdir()
    env = small_fixture_env(data_dir)
    sha = scratch_repo(path, env)
    assert _trial(path, env, "baseline")["code"] == 0
    return path, env, sha


@pytest.fixture()
def repo(recorded, request):
    """A branch of its own off the recorded baseline."""
    path, env, sha = recorded
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]
    subprocess.run(["git", "checkout", "-q", "-B", f"autoresearch/{name}", sha], cwd=path, check=True)
    return path, env


def test_simplicity_is_measured_on_the_syntax_tree():
    relayout = (DEMO / "relayout.py").read_text()
    assert same_code(relayout, relayout.replace('"""Demo step 2', '"""A new docstring. Demo step 2') + "\n# a comment\n")
    assert not same_code(relayout, relayout + "\nUNUSED = 1\n")
    assert code_size(relayout) < code_size(HAND_TRANSPOSE) and code_size(_repeated(34)) < code_size(_repeated(33, True))


def test_a_simplification_is_kept(repo):
    path, env = repo
    kept = _commit_kernel(path, env, HAND_TRANSPOSE, "the hand-written transpose")
    _forge(path, kept, "keep", "kept earlier")  # as if a trial had kept it over the seed
    simpler = _commit_kernel(path, env, (DEMO / "relayout.py").read_text(), "numpy's transpose instead")
    s = _trial(path, env, "numpy's transpose instead", "--cap-seconds", "100",
               "--cap-rounds", "5000")  # a 2% margin on every workload needs a narrow interval: a few thousand rounds
    assert s["code"] == 0 and "verdict: keep (simpler:" in s["verdict"] and "stop=simpler" in s["verdict"], s["out"]
    row = s["rows"][-1]
    assert s["head"] == simpler and row["stop"] == "simpler" and row["seed_speedup"] != "-"
    lows = [float(row[f"{w}_speedup_lo"]) for w in ("flat", "ivf", "real", "real_ivf") if row[f"{w}_speedup_lo"] != "-"]
    assert len(lows) == 3 and min(lows) >= 0.979, row  # every judged workload within the 2% margin
    assert int(row["code_size"]) < code_size(HAND_TRANSPOSE)


def test_a_simpler_but_slower_candidate_is_not_kept(repo):
    path, env = repo
    incumbent = _commit_kernel(path, env, _repeated(33, dead=True), "the seed 33 times over, and a dead function")
    _forge(path, incumbent, "keep", "kept earlier")  # a trial of it would take a minute here
    _commit_kernel(path, env, _repeated(34), "no dead function, one more repetition: simpler and 3% slower")
    s = _trial(path, env, "simpler and 3% slower", "--cap-seconds", "15")
    assert s["code"] == 1 and s["verdict"].startswith("verdict: discard"), s["out"]
    assert s["head"] == incumbent and s["rows"][-1]["status"] == "discard"


def _forge(path: Path, commit: str, status: str, description: str) -> None:
    """Append a row for ``commit`` as an earlier trial would have (a keep whose bug it did not see, a baseline)."""
    row = {**dict.fromkeys(HEADER, "-"), "commit": commit[:12], "status": status,
           "stop": "faster" if status == "keep" else "measured", "description": description,
           "timestamp": "2026-12-01T00:00:00Z"}
    append_row(path / "results.tsv", row)  # sealed, as the trial's own append seals it


@pytest.mark.parametrize("broken, failure", [("attacks/skip_rows.py", "is not the nearest by ADC"),
                                             ("raises.py", "kernel bug")])
def test_a_kept_incumbent_that_fails_is_revoked_and_the_way_back_is_given(repo, broken, failure):
    path, env = repo
    baseline = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()
    bad = _commit_kernel(path, env, (KERNELS / broken).read_text(), "a kernel kept before its bug was seen")
    _forge(path, bad, "keep", "a kernel kept before its bug was seen")
    candidate = _commit_kernel(path, env, (DEMO / "relayout.py").read_text(), "an idea on top of it")
    s = _trial(path, env, "an idea on top of it")
    assert s["code"] == 7 and s["verdict"].startswith("verdict: revoked"), s["out"] + s["err"]
    assert f"the kept commit {bad[:10]}" in s["verdict"] and "kept before this failure was seen" in s["verdict"]
    assert failure in s["verdict"] and f"git reset --hard {baseline[:10]}" in s["verdict"]
    assert "harness" not in s["verdict"] and s["head"] == candidate  # nothing reset: the agent runs the command
    assert s["rows"][-1]["status"] == "revoked" and s["rows"][-1]["commit"] == bad[:12]
    again = _trial(path, env, "the same idea, not reset")
    assert again["code"] == 7 and "nothing was run" in again["verdict"] and len(again["rows"]) == len(s["rows"])
    command = re.search(r"git reset --hard (\w+)", s["verdict"]).group(1)
    subprocess.run(["git", "reset", "-q", "--hard", command], cwd=path, check=True)
    _commit_kernel(path, env, (DEMO / "relayout.py").read_text(), "the idea on the last good commit")
    after = _trial(path, env, "the idea on the last good commit")
    assert after["code"] in (0, 1), after["out"] + after["err"]


COSTLY = (KERNELS / "attacks" / "costly_setup.py").read_text()


@pytest.mark.parametrize("attack, message", [
    (COSTLY, "over the set-up budget"),  # an index built in prepare
    (COSTLY.replace('WHERE = "prepare"', 'WHERE = "first search"'), "more than searching costs"),  # ... lazily
    ((KERNELS / "attacks" / "untimed_work.py").read_text(), "work was done outside the timed calls")],
    ids=["in prepare", "in the first search", "in untimed calls"])
def test_work_outside_the_timed_calls_is_a_crash(repo, attack, message):
    path, env = repo
    incumbent = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()
    _commit_kernel(path, env, attack, "work outside the timed calls")
    s = _trial(path, env, "work outside the timed calls")
    assert s["code"] == 4 and s["verdict"].startswith("verdict: crash") and message in s["verdict"], s["out"]
    assert s["head"] == incumbent and s["rows"][-1]["status"] == "crash"


def test_a_branch_is_judged_the_way_its_baseline_was(repo):
    path, env = repo
    rows = (path / "results.tsv").read_text()
    candidate = _commit_kernel(path, env, (DEMO / "relayout.py").read_text(), "the re-layout")
    for options, what in ((["--workload", "flat"], "workloads flat"), (["--no-jail"], "jail off")):
        s = _trial(path, env, "the re-layout", *options)
        assert s["code"] == 5 and s["verdict"].startswith("verdict: refused (this branch's baseline was judged with"), s["out"]
        assert f"this trial would judge with {what}" in s["verdict"] and "start a new branch" in s["verdict"]
        assert s["head"] == candidate and (path / "results.tsv").read_text() == rows  # nothing touched, no row
    baseline = next(r for r in s["rows"] if r["status"] == "baseline")
    assert baseline["workloads"] == "real@20000,ivf,real-ivf@20000" and baseline["jail"] == "on"


def test_a_kernel_fast_on_most_queries_is_judged_by_its_throughput(repo):
    """One flat query in three searched 16 times: faster than the seed on two queries in three (the per-query median
    kept such kernels), a fraction of its throughput. Discarded; the per-query tail is in comparison.json."""
    path, env = repo
    heavy = (KERNELS / "heavy_tail.py").read_text()
    _commit_kernel(path, env, heavy, "row-major, one query in three searched 16 times")
    s = _trial(path, env, "heavy tail")
    assert s["code"] == 1 and s["rows"][-1]["status"] == "discard", s["out"] + s["err"]
    assert " stop=slower " in s["verdict"] or " stop=loss:real " in s["verdict"], s["verdict"]
    assert float(s["rows"][-1]["real_speedup_hi"]) < 1.0 and s["rows"][-1]["estimand"] == "throughput"
    record = json.loads(sorted((path / "trials").glob("*/comparison.json"))[-1].read_text())
    real = record["candidate"]["real"]
    assert real["p99_ns"] > 4 * real["p50_ns"]  # the tail shows in the verdict's files


def test_a_retry_continues_its_evidence_and_a_near_copy_spends_its_family_budget(repo):
    """The same code again continues the earlier comparison's rounds (a decided one decides again at once); a near-copy
    (another constant) is a new comparison at a stricter level."""
    path, env = repo
    nil = SEED + "\nUNUSED = 1\n"
    _commit_kernel(path, env, nil, "a nil change")
    first = _trial(path, env, "a nil change", "--cap-rounds", "40")
    assert first["code"] == 1, first["out"] + first["err"]
    _commit_kernel(path, env, nil + "# the same code, re-committed\n", "the same nil change again")
    again = _trial(path, env, "the same nil change again", "--cap-rounds", "40")
    assert again["code"] == 1 and "continues its rounds" in again["verdict"], again["verdict"]
    row, before = again["rows"][-1], first["rows"][-1]
    assert row["continued"] == before["trial"] and row["alpha"] == before["alpha"] and row["tree_sha"] == before["tree_sha"]
    assert int(row["rounds"]) >= int(before["rounds"])  # the earlier rounds count
    _commit_kernel(path, env, SEED + "\nUNUSED = 2\n", "a near-copy of the nil change")
    near = _trial(path, env, "a near-copy", "--cap-rounds", "40")
    assert near["code"] == 1 and "near-copy" in near["verdict"], near["verdict"]
    assert near["rows"][-1]["family_sha"] == before["family_sha"] and float(near["rows"][-1]["alpha"]) < float(before["alpha"])
    evidence = path / "trials" / row["trial"] / "comparison.json"  # the comparison a retry would continue
    evidence.write_text(evidence.read_text().replace('"rounds_data"', '"rounds_data" ', 1))  # altered by hand
    _commit_kernel(path, env, nil + "# once more\n", "the nil change a third time")
    forged = _trial(path, env, "once more")
    assert forged["code"] == 8 and "missing or altered" in forged["verdict"], forged["verdict"]
