"""Real asv over a real git history of kernel variants: throughput against the seed, recall gates, regressions, find,
the dashboard; series that do not apply are n/a; the retired series cost nothing.

The values of ``bench_throughput``'s series need a paired engine that measures throughput (``"estimand":
"throughput"``, issue 28); with an older engine every one of them is n/a, and the tests that read values are skipped.
``test_a_throughput_measurement_is_recorded_series_by_series`` feeds one such measurement to asv either way.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO, KERNELS, commit_all, dump_dom, scratch_repo, small_fixture_env

from pqkern.bench.paired import Comparison
from pqkern.bench.trial import asv_failures
from pqkern.tools.dashboard import NODE_MODULES

pytestmark = pytest.mark.slow
MACHINE = "pqkern-ci"
BENCH = r"^bench_throughput\."
WORKLOADS = ["flat", "ivf", "real", "real-ivf"]
SPEED = [["combined", *WORKLOADS], ["estimate", "low", "high"]]
THROUGHPUT = Comparison("measured", "measured", "", {}).to_json().get("estimand") == "throughput"
needs_engine = pytest.mark.skipif(not THROUGHPUT, reason='the paired engine writes no "estimand": "throughput" yet '
                                  "(issue 28): every bench_throughput series is n/a")
HISTORY = [("baseline", None), ("faster: unrolled row-major scan", DEMO / "unrolled.py"),  # relayout alone: noise at 20k
           ("broken: scans every fourth row", DEMO / "broken_recall.py"),
           ("slower: scans three times", DEMO / "slower.py"),
           ("attack: regenerates the old fixed queries in prepare", KERNELS / "attacks" / "predict_queries.py")]


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
    assert run.returncode in (0, 2), run.stdout[-4000:]  # 2: a failed gate, or the attack's failed measurement
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


def _cells(results: dict, sha: str, name: str, params: list[list[str]]) -> dict[tuple[str, ...], float | None]:
    """A benchmark's value per parameter combination (None: failed, NaN: n/a)."""
    values = results[sha][f"bench_throughput.{name}"]["result"]
    keys = list(itertools.product(*params))
    return dict(zip(keys, values if isinstance(values, list) else [None] * len(keys), strict=True))


def _speed(results: dict, sha: str, workload: str) -> tuple[float, float, float]:
    cells = _cells(results, sha, "Speed.track_time_vs_seed", SPEED)
    return tuple(cells[(workload, b)] for b in ("estimate", "low", "high"))


def _per_workload(results: dict, sha: str, name: str) -> dict[str, float | None]:
    return {w: v for (w,), v in _cells(results, sha, name, [WORKLOADS]).items()}


def _judged(results: dict, sha: str) -> list[str]:
    """The workloads a commit's measurement judged: those whose recall is a number."""
    return [w for w, v in _per_workload(results, sha, "Recall.track_recall_at_10").items() if v is not None
            and not math.isnan(v)]


def _flat_scan(judged: list[str]) -> str:
    return "flat" if "flat" in judged else "real"  # the synthetic fixture judges the real descriptors' flat scan


@needs_engine
def test_results_record_time_vs_seed_recall_and_memory_per_commit(history):
    results, shas = _results(history), history["shas"]
    for name in ("baseline", "faster", "slower"):
        judged = _judged(results, shas[name])  # real-ivf too once the real descriptors are built in the session's data
        assert "ivf" in judged and ("flat" in judged or "real" in judged), judged
        for workload in (*judged, "combined"):
            estimate, low, high = _speed(results, shas[name], workload)
            assert 0 < low <= estimate <= high, (name, workload)
        for workload, value in _per_workload(results, shas[name], "Latency.track_p50_ns").items():
            assert (value > 0) if workload in judged else math.isnan(value), (name, workload, value)
        for workload, value in _per_workload(results, shas[name], "Recall.track_recall_at_10").items():
            assert (0 <= value <= 1) if workload in judged else math.isnan(value)
        assert results[shas[name]]["bench_throughput.Run.track_kernel_peak_mem_mb"]["result"][0] is not None
        assert results[shas[name]]["bench_throughput.Run.track_measured_by_trial"]["result"][0] == 0.0  # asv measured
    flat = _flat_scan(_judged(results, shas["baseline"]))
    assert _speed(results, shas["baseline"], flat)[1] < 1 < _speed(results, shas["baseline"], flat)[2]
    assert _speed(results, shas["faster"], flat)[0] < 1  # faster than the seed
    assert _speed(results, shas["slower"], flat)[1] > 2  # about three times the seed's time
    for name in ("baseline", "faster", "slower"):  # exact kernels: recall moves with the fresh queries, its change does not
        judged = _judged(results, shas[name])
        delta = _per_workload(results, shas[name], "Recall.track_recall_delta")
        assert all(delta[w] == 0.0 for w in judged), delta
    # a kernel that knows the fixture's own queries ahead gains nothing on asv's fresh ones: no win is recorded (its
    # costly prepare fails the measurement, or it is measured as slow as its honest fallback)
    attack = results[shas["attack"]]["bench_throughput.Speed.track_time_vs_seed"]["result"]
    assert attack is None or all(v is None or math.isnan(v) or v > 0.9 for v in attack[:3]), attack


@needs_engine
def test_broken_recall_commit_fails_the_gate(history):
    results, shas = _results(history), history["shas"]
    assert _per_workload(results, shas["broken"], "Recall.track_recall_at_10")["ivf"] < 0.5
    assert _per_workload(results, shas["broken"], "Recall.track_recall_gate")["ivf"] is None  # shown as failed
    for name in ("baseline", "faster", "slower"):
        gates = _per_workload(results, shas[name], "Recall.track_recall_gate")
        assert all(gates[w] >= 0 for w in _judged(results, shas[name])), gates
    compare = _asv(history["repo"], history["env"], "compare", "--machine", MACHINE, shas["faster"], shas["broken"])
    gate_line = next(line for line in compare.stdout.splitlines() if "track_recall_gate('ivf')" in line)
    cells = [c.strip() for c in gate_line.strip(" |").split("|")]
    assert cells[0] == "!" and cells[2] == "failed", gate_line


@needs_engine
def test_regressions_feed_names_the_slow_commit(history):
    assert history["publish"].returncode == 0, history["publish"].stderr
    html = history["repo"] / ".asv" / "html"
    index = json.loads((html / "index.json").read_text())
    regressions = json.loads((html / "regressions.json").read_text())["regressions"]
    timing = ("bench_throughput.Speed.track_time_vs_seed", "bench_throughput.Latency.track_p50_ns")
    after = {index["revision_to_hash"][str(jump[1])] for r in regressions if r[0].split("(")[0] in timing for jump in r[6]}
    assert history["shas"]["slower"] in after, regressions  # asv may judge some of them too noisy on a busy box
    assert history["shas"]["slower"][:8] in (html / "regressions.xml").read_text()


@needs_engine
def test_bisect_names_the_slow_commit(history):
    shas = history["shas"]
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]  # the asv that runs these tests
    p = subprocess.run([str(history["repo"] / "scripts" / "bisect.sh"), f"{shas['baseline']}..{shas['slower']}"],
                       cwd=history["repo"], env=dict(history["env"], PATH=path), capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"Greatest regression found: {shas['slower'][:8]}" in p.stdout, p.stdout


def test_series_that_do_not_apply_are_na_never_failed(history):
    results, shas = _results(history), history["shas"]
    for name in ("baseline", "faster", "slower", "broken"):
        judged = _judged(results, shas[name])
        for (workload, bound), value in _cells(results, shas[name], "Speed.track_time_vs_seed", SPEED).items():
            if workload != "combined" and workload not in judged:
                assert value is not None and math.isnan(value), (name, workload, bound, value)
        for bench, row in results[shas[name]].items():  # only the broken kernel's recall gates fail
            failed = row["result"] is None or None in row["result"]
            assert not failed or (name, bench, THROUGHPUT) == ("broken", "bench_throughput.Recall.track_recall_gate",
                                                               True), (name, bench, row["result"])
    assert (len(_judged(results, shas["faster"])) >= 2) if THROUGHPUT else _judged(results, shas["faster"]) == []


def test_the_retired_series_cost_nothing_and_write_no_point(history, tmp_path):
    repo, env = history["repo"], history["env"]
    _asv(repo, env, "machine", "--yes", "--machine", "retired")
    run = _asv(repo, env, "run", "--machine", "retired", "--bench", r"^bench_kernel\.", "-a", "processes=1",
               f"{history['shas']['faster']}^!")
    path = next((repo / ".asv" / "results" / "retired").glob(f"{history['shas']['faster'][:8]}-*.json"))
    data = json.loads(path.read_text())
    assert len(data["results"]) == 17 and asv_failures(run.stdout) == []  # every series of bench_kernel.Kernel
    for name, row in data["results"].items():
        assert name.startswith("bench_kernel.Kernel.") and all(math.isnan(v) for v in row[0]), (name, row[0])
    setup = next(v for k, v in data["durations"].items() if k.startswith("<setup_cache bench_kernel:"))
    assert setup < 15, data["durations"]  # no paired run: a process that returns at once
    assert "measured against the seed" not in run.stdout


def test_a_throughput_measurement_is_recorded_series_by_series(history, tmp_path):
    """A real paired measurement, written as the trial writes it for asv and marked as a throughput one, is what every
    series reads: the intervals, recall, memory; the workloads it did not judge are n/a."""
    repo, env, sha = history["repo"], history["env"], history["shas"]["faster"]
    kernel = tmp_path / "kernels.py"  # byte for byte the commit's: the measurement names its sha256
    kernel.write_bytes(subprocess.run(["git", "show", f"{sha}:pqkern/kernels.py"], cwd=repo, check=True,
                                      capture_output=True).stdout)
    out = tmp_path / "paired.json"
    subprocess.run([sys.executable, "-m", "pqkern.bench.paired", "--candidate", str(kernel), "--mode", "measure",
                    "--rounds", "8", "--result-json", str(out)], cwd=repo, env=env, check=True, capture_output=True,
                   timeout=900)
    measured = dict(json.loads(out.read_text()), estimand="throughput")
    file = tmp_path / "seed_measurement.json"
    script = ("import json, sys; from pathlib import Path; from pqkern.bench import measured, workloads; "
              "from pqkern.bench.fixture import default_source, fixture_id; r = json.loads(Path(sys.argv[1]).read_text()); "
              "measured.write(Path(sys.argv[2]), r, Path(sys.argv[3]).read_text(), fixture_id(default_source()), "
              "','.join(r['candidate']))")
    (tmp_path / "m.json").write_text(json.dumps(measured))
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.json"), str(file), str(kernel)], cwd=repo, env=env,
                   check=True)
    _asv(repo, env, "machine", "--yes", "--machine", "measured")
    run = _asv(repo, dict(env, PQKERN_MEASURED=str(file)), "run", "--machine", "measured", "--bench", BENCH,
               "-a", "processes=1", "--show-stderr", f"{sha}^!")
    assert asv_failures(run.stdout) == []
    assert run.stdout.count("Setting up bench_throughput:") == 1  # one measurement feeds every class
    path = next((repo / ".asv" / "results" / "measured").glob(f"{sha[:8]}-*.json"))
    results = {sha: {n: dict(zip(["result"], row, strict=False)) for n, row in json.loads(path.read_text())["results"].items()}}
    judged = list(measured["candidate"])
    for workload in ["combined", *WORKLOADS]:
        got = _speed(results, sha, workload)
        if workload in measured["intervals"]:  # an end the interval leaves open (few rounds) is n/a
            iv = measured["intervals"][workload]
            want = [1 / iv[k] if 0 < iv[k] < math.inf else math.nan for k in ("speedup", "hi", "lo")]
            assert all(g == pytest.approx(w) or math.isnan(g) and math.isnan(w) for g, w in zip(got, want, strict=True)), \
                (workload, got, want)
        else:
            assert all(math.isnan(v) for v in got), (workload, got)
    for name, key in (("Recall.track_recall_at_10", "recall_at_10"), ("Recall.track_recall_delta", "recall_delta"),
                      ("Latency.track_p99_ns", "p99_ns")):
        for workload, value in _per_workload(results, sha, name).items():
            want = measured["candidate"].get(workload, {}).get(key)
            assert (math.isnan(value) if want is None else value == pytest.approx(want)), (name, workload, value)
    assert set(judged) <= set(WORKLOADS) and "ivf" in judged
    run_values = {n.split(".")[-1]: r["result"][0] for n, r in results[sha].items() if ".Run." in n}
    assert run_values == {"track_kernel_peak_mem_mb": pytest.approx(measured["peak_mem_mb"]["candidate"]),
                          "track_measured_by_trial": 1.0}


@needs_engine
def test_dashboard_renders_offline_in_chromium(history, tmp_path):
    html = history["repo"] / ".asv" / "html"
    assert "cdn" not in (html / "index.html").read_text().lower().split("<body")[0]
    dom = dump_dom(html, "index.html#bench_throughput.Speed.track_time_vs_seed", tmp_path / "profile")
    assert "continental origin" not in dom  # asv's error page
    assert 'class="flot-base"' in dom and 'id="main-graph"' in dom


def test_dashboard_lists_a_state_where_a_series_has_no_value(history):
    """n/a (or failed, when the newest commit's whole measurement failed) where a series never had a value on main;
    tests/test_dashboard.py checks the page shows it."""
    assert history["publish"].returncode == 0, history["publish"].stderr
    html = history["repo"] / ".asv" / "html"
    summary = json.loads(next((html / "graphs" / "branch-main").glob("**/machine-pqkern-ci/**/summary.json")).read_text())
    speed = {r["pretty_name"]: r["last_value"] for r in summary if r["name"] == "bench_throughput.Speed.track_time_vs_seed"}
    judged = _judged(_results(history), history["shas"]["faster"])
    for workload in WORKLOADS:
        value = speed[f"bench_throughput.Speed.track_time_vs_seed('{workload}', 'estimate')"]
        assert value in ("n/a", "failed") if workload not in judged else isinstance(value, float), (workload, value)
