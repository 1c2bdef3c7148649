"""The peer headroom table on the smoke fixture, with real FAISS and real Lance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
        assert rows[name]["median_ns"] > 0 and "recall_at_10" not in rows[name]
    assert "faiss IndexPQ" in p.stdout and "x kernel" in p.stdout
