"""asv on the real sources: a keep's ``asv run`` exits 0 on siftsmall and on SIFT1M (its download path), each on its own
``autoresearch/*`` branch of one scratch clone; series that do not apply are n/a, never failed. (The default fixture's
keeps are recorded by ``tests/test_demo.py``; ``tests/test_asv.py`` runs asv over a history on it.)

SIFT1M comes through ``scripts/prepare_fixtures.sh --url`` from a local HTTP server, as a ``sift.tar.gz`` of a stand-in
for its four TEXMEX files at SIFT1M's counts (the fixture checks them): synthetic SIFT-like vectors, the 10,000 queries
being the first 1,000 ten times over so that their exact ground truth costs seconds. With SIFT1M's files in the data
folder, it is the default fixture: the trials there are run with no ``--source``, as a researcher would.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, commit_all, scratch_repo, small_fixture_env
from test_prepare import serve
from test_trial import TWICE

from pqkern.bench import reference, synthetic
from pqkern.bench.fixture import SIFT_FILES
from pqkern.bench.paired import CHECKED_ANSWERS
from pqkern.bench.trial import asv_failures
from pqkern.bench.vecs import write_vecs

pytestmark = pytest.mark.slow
MACHINE = "pqkern-sources"


def sift1m_archive(folder: Path) -> bytes:
    """``sift.tar.gz`` of SIFT1M-format files at SIFT1M's counts, written to ``folder`` first (see the docstring)."""
    n = SIFT_FILES["sift1m"][2]
    base = synthetic.generate(7, "base", n["base"], n["base"])
    query = synthetic.generate(7, "query", 1000, n["base"])
    arrays = {"base": base, "query": np.tile(query, (n["query"] // 1000, 1)),
              "learn": synthetic.generate(7, "learn", n["learn"], n["base"]),
              "groundtruth": np.tile(reference.exact_knn(base, query, 100)[0], (n["groundtruth"] // 1000, 1))}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, array in arrays.items():
            path = folder / f"sift_{name}.{'ivecs' if name == 'groundtruth' else 'fvecs'}"
            write_vecs(path, np.asarray(array, np.int32 if name == "groundtruth" else np.float32))
            tar.add(path, arcname=f"sift/{path.name}")
            path.unlink()
    return buf.getvalue()


def _trial(repo: Path, env: dict, description: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pqkern.bench.trial", description], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1500)


def _verdict(p: subprocess.CompletedProcess) -> str:
    return next((line for line in p.stdout.splitlines() if line.startswith("verdict: ")), p.stdout + p.stderr)


def _keep(repo: Path, env: dict, branch: str) -> dict:
    """On a new branch from the scratch clone's first commit: a baseline of a kernel twice the seed's cost, then the
    row-major re-layout, kept; both recorded in asv by the trial."""
    subprocess.run(["git", "checkout", "-q", "-b", branch, "main"], cwd=repo, check=True)
    (repo / "pqkern" / "kernels.py").write_text(TWICE)
    base = commit_all(repo, env, "seed: the frozen seed's search twice per call")
    baseline = _trial(repo, env, "baseline")
    shutil.copyfile(DEMO / "relayout.py", repo / "pqkern" / "kernels.py")
    sha = commit_all(repo, env, "row-major re-layout")
    keep = _trial(repo, env, "row-major re-layout")
    dirs = [max((repo / "trials").glob(f"*-{c[:10]}"), default=None) for c in (base, sha)]
    assert all(dirs), (baseline.stdout + baseline.stderr + keep.stdout + keep.stderr)[-3000:]
    return {"baseline": baseline, "keep": keep, "sha": sha, "baseline_dir": dirs[0], "dir": dirs[1]}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, data_dir, siftsmall_dir) -> dict:
    tmp = tmp_path_factory.mktemp("sources")
    repo = tmp / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir, HOME=str(tmp / "home"), PIP_CACHE_DIR=str(Path.home() / ".cache" / "pip"))
    scratch_repo(repo, env, without_peers=True)
    subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--machine", MACHINE], cwd=repo, env=env,
                   check=True, capture_output=True)
    out = {"repo": repo, "siftsmall": _keep(repo, dict(env, PQKERN_SOURCE="siftsmall"), "autoresearch/siftsmall")}
    (tmp / "standin-files").mkdir()
    sift_data = tmp / "sift1m-data"  # its own: with SIFT1M's files present, the default source is sift1m
    sift_env = {k: v for k, v in env.items() if k != "PQKERN_SOURCE"}
    sift_env.update(PQKERN_DATA=str(sift_data), PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    server, _, url = serve(sift1m_archive(tmp / "standin-files"))
    try:
        out["prepare"] = subprocess.run([str(repo / "scripts" / "prepare_fixtures.sh"), "--url",
                                         url.replace("siftsmall", "sift")], cwd=repo, env=sift_env, capture_output=True,
                                        text=True, timeout=900)
    finally:
        server.shutdown()
    assert out["prepare"].returncode == 0, out["prepare"].stderr
    out["sift1m"] = _keep(repo, sift_env, "autoresearch/sift1m")
    return out


def _results(repo: Path, sha: str) -> dict[str, list]:
    path = next(p for p in (repo / ".asv" / "results" / MACHINE).glob(f"{sha[:8]}-*.json"))
    data = json.loads(path.read_text())
    return {name: row[0] for name, row in data["results"].items()}


def _cells(values: list | None, params: list[list[str]]) -> dict[tuple[str, ...], object]:
    keys = list(itertools.product(*params))
    return dict(zip(keys, values if isinstance(values, list) else [None] * len(keys), strict=True))


@pytest.mark.parametrize("source", ["siftsmall", "sift1m"])
def test_a_keep_is_recorded_in_asv_on_every_source(sources, source):
    run = sources[source]
    for step in ("baseline", "keep"):
        verdict = _verdict(run[step])
        assert run[step].returncode == 0 and "asv: recorded HEAD" in verdict and "asv: run exited" not in verdict, verdict
    assert _verdict(run["keep"]).startswith("verdict: keep")
    log = (run["dir"] / "asv.log").read_text()
    assert asv_failures(log) == [], log[-3000:]
    assert log.count("Setting up bench_throughput:") == 1  # one measurement feeds every class
    assert "bench_kernel.Kernel" not in log  # the retired series are not recorded


@pytest.mark.parametrize("source", ["siftsmall", "sift1m"])
def test_series_that_do_not_apply_are_na_and_the_others_hold_the_measurement(sources, source):
    run = sources[source]
    measured = json.loads((run["dir"] / "seed_measurement.json").read_text())
    judged = set(measured["candidate"])
    assert judged == {"flat", "ivf"}  # a real fixture's own vectors: no real-descriptor workloads beside them
    throughput = measured.get("estimand") == "throughput"
    results = _results(sources["repo"], run["sha"])
    speed = _cells(results["bench_throughput.Speed.track_time_vs_seed"],
                   [["combined", "flat", "ivf", "real", "real-ivf"], ["estimate", "low", "high"]])
    for (workload, bound), value in speed.items():
        applies = throughput and (workload == "combined" or workload in judged)
        assert (value is not None and not math.isnan(value)) == applies, (workload, bound, value)
        assert value is not None  # n/a (NaN), never failed (null)
        if applies:
            iv = measured["intervals"][workload]
            key = {"estimate": "speedup", "low": "hi", "high": "lo"}[bound]
            assert value == pytest.approx(1 / iv[key])
    for name in ("recall_at_10", "recall_delta", "recall_gate"):
        cells = _cells(results[f"bench_throughput.Recall.track_{name}"], [["flat", "ivf", "real", "real-ivf"]])
        for (workload,), value in cells.items():
            assert value is not None and (not math.isnan(value)) == (throughput and workload in judged), (name, workload)
    for name in ("kernel_peak_mem_mb", "measured_by_trial"):
        value = results[f"bench_throughput.Run.track_{name}"][0]
        assert value is not None and (not math.isnan(value)) == throughput
    if throughput:
        assert results["bench_throughput.Run.track_measured_by_trial"][0] == 1.0  # the trial's own measurement


def test_siftsmall_judges_fresh_queries_from_its_held_out_rows(sources):
    rows = [line.split("\t") for line in (sources["repo"] / "results.tsv").read_text().splitlines()]
    header, rows = rows[0], [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]
    assert "fixture_id" in header
    small = [r for r in rows if r["branch"] == "autoresearch/siftsmall"]
    assert [r["status"] for r in small] == ["baseline", "keep"]
    assert all(r["fixture_id"] == "siftsmall-heldout2000" and r["queries"] == "fresh" for r in small), small
    verdict = _verdict(sources["siftsmall"]["keep"])
    assert "fixed queries" not in verdict and "too few" not in verdict
    for folder in (sources["siftsmall"]["baseline_dir"], sources["siftsmall"]["dir"]):
        assert json.loads((folder / "comparison.json").read_text())["queries"].startswith("fresh, seed 0x")
    baseline = json.loads((sources["siftsmall"]["baseline_dir"] / "comparison.json").read_text())
    assert baseline["rounds"] == -(-CHECKED_ANSWERS // 6) > 25  # flat and ivf: 6 answers a round; fixed queries stopped at 25


def test_sift1m_comes_through_its_download_path(sources):
    assert "downloading http://127.0.0.1:" in sources["prepare"].stderr
    rows = [line.split("\t") for line in (sources["repo"] / "results.tsv").read_text().splitlines()]
    rows = [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]
    big = [r for r in rows if r["branch"] == "autoresearch/sift1m"]
    assert [r["status"] for r in big] == ["baseline", "keep"]
    assert all(r["fixture_id"] == "sift1m" and r["workloads"] == "flat,ivf" and r["queries"] == "fresh" for r in big), big
