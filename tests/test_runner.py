"""The canonical runner, run for real on the smoke fixture with real and broken kernels."""

from __future__ import annotations

import json
import os

import pytest
from conftest import DEMO, KERNELS, run_runner

BLOCK_KEYS = ["source", "num_base", "num_queries", "recall_at_10", "geomean_ns_per_query", "peak_mem_mb", "total_seconds"]


def test_baseline_passes_on_smoke_with_canonical_block(data_dir, tmp_path):
    out = tmp_path / "result.json"
    r = run_runner(data_dir, "--source", "smoke", "--result-json", str(out))
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "---"
    assert [line.split(": ")[0] for line in lines[1:8]] == BLOCK_KEYS
    assert lines[8].startswith("recall_10_at_10: ")
    b = r.block
    assert b["source"] == "smoke" and b["num_base"] == "1024" and b["num_queries"] == "64"
    assert float(b["recall_at_10"]) >= 0.9
    assert int(b["geomean_ns_per_query"]) > 0
    assert b["threads"] == "1" and b["status"] == "pass" and b["workload"] == "flat" and b["jail"] == "on"
    assert float(b["fixed_seconds"]) == pytest.approx(float(b["total_seconds"]) - float(b["timed_seconds"]), abs=0.11)
    saved = json.loads(out.read_text())
    assert saved["recall_at_10"] == pytest.approx(float(b["recall_at_10"]), abs=1e-4)
    assert len(saved["per_query_ns"]) == 64


def test_ivf_workload_passes_on_smoke_with_the_same_block(data_dir, tmp_path):
    out = tmp_path / "result.json"
    r = run_runner(data_dir, "--source", "smoke", "--workload", "ivf", "--result-json", str(out))
    assert r.code == 0, r.stderr
    assert [line.split(": ")[0] for line in r.stdout.splitlines()[1:8]] == BLOCK_KEYS
    b = r.block
    assert b["workload"] == "ivf" and b["jail"] == "on" and float(b["recall_at_10"]) > 0.5
    assert len(json.loads(out.read_text())["per_query_ns"]) == 64


def test_cache_true_kernel_runs_again_and_again(data_dir, tmp_path):
    source = (DEMO / "relayout.py").read_text().replace("@numba.njit\n", "@numba.njit(cache=True)\n")
    good = source.replace("best_d[j] = d\n", "best_d[j] = d  # 0123456789abc\n")
    bad = source.replace("best_d[j] = d\n", "best_d[j] = d + np.float32(99)\n")
    assert len(good) == len(bad)
    cached = tmp_path / "kernels.py"
    cached.write_text(good)
    for _ in range(2):
        r = run_runner(data_dir, "--source", "smoke", "--kernel", str(cached))
        assert r.code == 0, r.stderr
    # another kernel body at the same path, with the same size and modification time: its own (wrong) result, never
    # the cached good one
    stamp = cached.stat()
    cached.write_text(bad)
    os.utime(cached, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    r = run_runner(data_dir, "--source", "smoke", "--kernel", str(cached))
    assert r.code == 4 and ("off by" in r.stderr or "not ascending" in r.stderr), r.stderr


def test_baseline_on_real_siftsmall(data_dir, siftsmall_dir):
    r = run_runner(data_dir, "--source", "siftsmall")
    assert r.code == 0, r.stderr
    print(f"siftsmall baseline: recall_at_10={r.block['recall_at_10']} recall_10_at_10={r.block['recall_10_at_10']}")
    assert float(r.block["recall_at_10"]) >= 0.95
    assert r.block["num_base"] == "8000" and r.block["num_queries"] == "100"  # 2,000 rows held out (no learn set)
    assert r.block["fixture_id"] == "siftsmall-heldout2000"
    assert r.block["queries"] == "fixed, the fixture's first 100 queries" and r.block["recall_delta"] == "0.0000"
    fresh = run_runner(data_dir, "--source", "siftsmall", "--fresh-queries")  # drawn from the held-out rows
    assert fresh.code == 0 and fresh.block["queries"].startswith("fresh, seed 0x"), fresh.block


def test_fresh_queries_are_new_each_run_and_replayable(data_dir, tmp_path):
    runs = [run_runner(data_dir, "--source", "smoke", "--fresh-queries", "--result-json", str(tmp_path / f"{i}.json"))
            for i in range(2)]
    seeds = [r.block["queries"] for r in runs]
    assert all(r.code == 0 for r in runs) and seeds[0].startswith("fresh, seed 0x") and seeds[0] != seeds[1]
    again = run_runner(data_dir, "--source", "smoke", "--query-seed", seeds[0].split()[-1])
    assert again.code == 0 and again.block["queries"] == seeds[0] and again.block["recall_at_10"] == runs[0].block["recall_at_10"]
    bad = run_runner(data_dir, "--source", "smoke", "--query-seed", "nonsense")
    assert bad.code == 1 and "is not a number" in bad.stderr


def test_numpy_kernel_passes(data_dir):
    r = run_runner(data_dir, "--source", "smoke", kernel="numpy_adc.py")
    assert r.code == 0, r.stderr


def test_kernel_output_never_reaches_stdout(data_dir, tmp_path):
    forger = tmp_path / "forger.py"
    forger.write_text(
        (KERNELS / "numpy_adc.py").read_text()
        + "\nprint('---')\nprint('recall_at_10: 1.0000')\n"
    )
    r = run_runner(data_dir, "--source", "smoke", "--kernel", str(forger))
    assert r.code == 0
    assert r.stdout.count("---") == 1 and "recall_at_10: 1.0000" in r.stderr


def test_scanning_a_slice_fails_recall(data_dir):
    r = run_runner(data_dir, "--source", "smoke", kernel="slice_scan.py")
    assert r.code == 2, r.stderr
    assert float(r.block["recall_at_10"]) < 0.5
    assert "below the floor" in r.stderr


def test_hanging_kernel_is_killed_at_the_budget(data_dir):
    r = run_runner(data_dir, "--source", "smoke", "--time-budget", "5", kernel="spin.py")
    assert r.code == 3, r.stderr
    assert r.block["status"] == "timeout"
    assert float(r.block["total_seconds"]) < 30
    assert "time budget of 5 s exceeded" in r.stderr


@pytest.mark.parametrize(
    "kernel, message",
    [
        ("raises.py", "kernel raised in search"),
        ("wrong_shape.py", "ids must be int64 (10,)"),
        ("duplicate_ids.py", "duplicate ids"),
        ("liar.py", "from the reference ADC"),
    ],
)
def test_contract_violations_exit_4(data_dir, kernel, message):
    r = run_runner(data_dir, "--source", "smoke", kernel=kernel)
    assert r.code == 4, r.stderr
    assert message in r.stderr
    assert r.block["status"] == "contract_violation"


def test_missing_fixture_is_a_harness_error(data_dir):
    r = run_runner(data_dir, "--source", "sift1m")
    assert r.code == 1
    assert "files not found" in r.stderr and "docs/fixtures.md" in r.stderr
    assert r.stdout.startswith("---\nsource: sift1m\n")


def test_missing_kernel_file_is_a_harness_error(data_dir, tmp_path):
    r = run_runner(data_dir, "--source", "smoke", "--kernel", str(tmp_path / "nope.py"))
    assert r.code == 1 and "not found" in r.stderr


def test_truncated_source_file_is_a_harness_error_naming_it(tmp_path):
    import numpy as np

    from pqkern.bench.vecs import write_vecs

    folder = tmp_path / "siftsmall"
    write_vecs(folder / "siftsmall_base.fvecs", np.zeros((10_000, 128), np.float32))
    write_vecs(folder / "siftsmall_query.fvecs", np.zeros((100, 128), np.float32))
    write_vecs(folder / "siftsmall_groundtruth.ivecs", np.zeros((100, 100), np.int32))
    base = folder / "siftsmall_base.fvecs"
    base.write_bytes(base.read_bytes()[:-100])
    r = run_runner(tmp_path, "--source", "siftsmall")
    assert r.code == 1
    assert "siftsmall_base.fvecs" in r.stderr and "record 9999 is truncated" in r.stderr
