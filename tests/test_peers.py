"""The peer headroom tables (flat on the smoke fixture, IVF on a 20k synthetic one), with real FAISS and real Lance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import small_fixture_env

pytestmark = pytest.mark.slow  # FAISS and Lance: CI runs them; the quick subset leaves them out

pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install -e '.[peers]')")
pytest.importorskip("lance", reason="pylance is not installed (pip install -e '.[peers]')")


def test_peers_agree_with_the_reference_adc(data_dir, tmp_path):
    out = tmp_path / "peers.json"
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.peers", "--source", "smoke", "--json", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows)[0] == "kernels.py" and rows["kernels.py"]["ratio_to_kernel"] == 1.0
    for name in ("kernels.py", "faiss IndexPQ", "lance IVF_PQ per call", "lance IVF_PQ batched", "numpy ADC"):
        assert rows[name]["agreement"] == 1.0, name  # the same ADC on the same codes
        assert rows[name]["recall_at_10"] == rows["kernels.py"]["recall_at_10"], name
    for name in ("floor: one pass over the codes", "floor: 16 table reads per row"):
        assert rows[name]["mean_ns"] > 0 and "recall_at_10" not in rows[name]
    assert "faiss IndexPQ" in p.stdout and "x kernel" in p.stdout


def test_ivf_peers_agree_with_the_ivf_oracle(data_dir, tmp_path):
    out = tmp_path / "peers-ivf.json"
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.peers", "--workload", "ivf", "--queries", "50", "--json", str(out)],
                       capture_output=True, text=True, timeout=900, env=small_fixture_env(data_dir))
    assert p.returncode == 0, p.stderr
    table = json.loads(out.read_text())
    assert table["workload"] == "ivf" and table["num_partitions"] == 2 and table["nprobes"] == 2
    rows = {r["method"]: r for r in table["rows"]}
    oracle = rows.pop("oracle: exact ADC, 2 probes")
    assert set(rows) == {"kernels.py", "lance IVF_PQ", "faiss IndexIVFPQ", "numpy IVF ADC"}  # the kernel, jailed
    for name, row in rows.items():
        assert row["agreement"] == 1.0, name  # the same residual ADC over the same probed partitions
        assert abs(row["recall_at_10"] - oracle["recall_at_10"]) <= 0.01, name
        assert row["mean_ns"] > 0
    assert table["lance_auto_nprobes"]["min"] >= 1
    assert "faiss IndexIVFPQ" in p.stdout and "Auto" in p.stdout


def test_peers_with_a_kernel_print_its_size_curve(data_dir, tmp_path):
    from conftest import DEMO

    p = subprocess.run([sys.executable, "-m", "pqkern.tools.peers", "--source", "smoke", "--fresh-queries", "--queries", "20",
                        "--kernel", str(DEMO / "unrolled.py"), "--json", str(tmp_path / "peers.json")],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert "fresh, seed 0x" in p.stdout and "size curve of unrolled.py" in p.stdout
    assert "    1,000 rows" in p.stdout and "    1,024 rows" in p.stdout  # the first 1,000 rows and the whole base
