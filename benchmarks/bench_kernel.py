"""asv benchmarks for pqkern/kernels.py (part of the immutable bench).

They call only the kernel interface (``prepare``, ``search``), the immutable fixture and
the immutable runner, so they run unchanged against every past commit. Editing this file
changes the benchmarks' version hashes, and ``asv publish`` then drops every older point:
treat it like the rest of the bench and change it only deliberately.

- ``Search.time_search``: one query per call on the default fixture (``SearchQuick``: a
  100k synthetic fixture), JIT warmed in ``setup``, queries taken in turn.
- ``Quality.track_*``: one real run of the runner per commit (``setup_cache``), so recall,
  geomean and memory are exactly the result block's numbers. ``track_recall_gate`` fails
  (shown as failed in the dashboard, ``!`` in ``asv compare``, a regression for
  ``asv continuous``) when recall@10 is below the floor or outside the band around the
  seeded baseline's, which is the reference ADC's recall on the same queries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("PQKERN_DATA", str(Path(__file__).resolve().parent.parent / "data"))

K = 10
RECALL_FLOOR = 0.50
RECALL_BAND = 0.005
RUNNER_QUERIES = 1000
QUICK = {"source": "synthetic", "num_base": 100_000, "num_queries": 1_000, "num_learn": 20_000}
_fixtures: dict = {}


def _fixture(spec: dict):
    key = tuple(sorted(spec.items()))
    if key not in _fixtures:
        from pqkern.bench.fixture import load_fixture

        _fixtures[key] = load_fixture(**spec)
    return _fixtures[key]


def _kernel():
    try:
        from pqkern import kernels
    except ImportError as e:
        raise NotImplementedError(f"this commit has no importable pqkern.kernels: {e}") from e
    if not (callable(getattr(kernels, "prepare", None)) and callable(getattr(kernels, "search", None))):
        raise NotImplementedError("this commit's kernels.py predates prepare()/search()")
    return kernels


class Search:
    """Per-query search time, JIT warmed, on the default fixture."""

    spec: dict = {}
    timeout = 600
    warmup_time = 0.5

    def setup_cache(self):
        return _fixture(self.spec).fixture_id  # builds the fixture once, outside any timing (asv passes None to no one)

    setup_cache.timeout = 3600

    def setup(self, _):
        self.kernel = _kernel()
        fx = _fixture(self.spec)
        self.index = self.kernel.prepare(np.asarray(fx.codes), np.asarray(fx.codebook))
        warm = np.asarray(fx.base[:3], np.float32)  # not queries: nothing to remember
        for row in warm:
            row.setflags(write=False)
            self.kernel.search(self.index, row, K)
        self.queries = [np.asarray(q) for q in fx.queries[:200]]
        self.turn = 0

    def time_search(self, _):
        self.turn += 1
        self.kernel.search(self.index, self.queries[self.turn % len(self.queries)], K)


class SearchQuick(Search):
    """The same on a 100k synthetic fixture, for quick runs."""

    spec = QUICK


def _reference_recall(queries: int) -> float:
    """R@10 of the exact reference ADC top-10 on the runner's queries (the seeded baseline's recall), cached."""
    from pqkern.bench.reference import adc_topk, tie_aware_recall

    fx = _fixture({})
    n = min(queries, fx.queries.shape[0])
    path = fx.cache_dir / f"reference_recall-q{n}.json"
    if path.is_file():
        return json.loads(path.read_text())["recall_at_10"]
    found = np.stack([adc_topk(fx.codes, fx.codebook, fx.queries[i], K)[0] for i in range(n)])
    gt = np.asarray(fx.groundtruth[:n, :K])
    recall = tie_aware_recall(fx.base, fx.queries[:n], found, gt, at=K)[0]
    path.write_text(json.dumps({"recall_at_10": recall, "queries": n}) + "\n")
    return recall


class Quality:
    """Recall, geomean time and the kernel's own memory, exactly as the runner reports them."""

    timeout = 3600

    def setup_cache(self):
        _kernel()
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            cmd = [sys.executable, "-m", "pqkern.bench.runner", "--queries", str(RUNNER_QUERIES), "--result-json", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if not out.is_file():
                raise RuntimeError(f"runner wrote no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
            result = json.loads(out.read_text())
        result["reference_recall"] = _reference_recall(RUNNER_QUERIES)
        return result

    setup_cache.timeout = 3600

    def _value(self, result: dict, key: str) -> float:
        if result.get(key) is None:
            raise RuntimeError(f"runner {result.get('status')}: {result.get('reason')}")
        return float(result[key])

    def track_recall_at_10(self, result):
        return self._value(result, "recall_at_10")

    track_recall_at_10.unit = "recall@10"

    def track_recall_gate(self, result):
        """Recall@10 minus the lowest it may be; fails when outside the floor or the seeded band."""
        recall, ref = self._value(result, "recall_at_10"), result["reference_recall"]
        lowest = max(RECALL_FLOOR, ref - RECALL_BAND)
        if recall < lowest or recall > ref + RECALL_BAND:
            raise AssertionError(
                f"recall gate: recall@10 {recall:.4f} is outside [{lowest:.4f}, {ref + RECALL_BAND:.4f}] "
                f"(floor {RECALL_FLOOR}, seeded baseline {ref:.4f} +/- {RECALL_BAND})"
            )
        return recall - lowest

    track_recall_gate.unit = "recall@10 margin"

    def track_geomean_ns_per_query(self, result):
        return self._value(result, "geomean_ns_per_query")

    track_geomean_ns_per_query.unit = "ns"

    def track_kernel_peak_mem_mb(self, result):
        return self._value(result, "peak_mem_mb")

    track_kernel_peak_mem_mb.unit = "MB"
