"""Reference benchmarks (immutable bench): FAISS and Lance on the same codes, to show machine drift.

They do not depend on the kernel; a jump here beside a jump in ``bench_kernel`` says the
machine changed, not the kernel. Skipped (``n/a``) where faiss or pylance is not installed
or the commit predates ``pqkern.tools.peers``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("PQKERN_DATA", str(Path(__file__).resolve().parent.parent / "data"))
for _var in ("OMP_NUM_THREADS", "LANCE_CPU_THREADS", "TOKIO_WORKER_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"

K = 10


def _peers():
    try:
        import faiss  # noqa: F401
        import lance  # noqa: F401

        from pqkern.tools import peers
    except ImportError as e:
        raise NotImplementedError(f"reference peers unavailable: {e}") from e
    return peers


class Reference:
    """Per-query search time of the peers on the default fixture (one query per call; Lance also batched)."""

    timeout = 1800

    def setup_cache(self):
        from pqkern.bench.fixture import load_fixture

        peers = _peers()
        fx = load_fixture()
        peers.lance_dataset(fx, fx.cache_dir / "lance")  # built once, outside any timing
        return fx.fixture_id

    setup_cache.timeout = 3600

    def setup(self, _):
        from pqkern.bench.fixture import load_fixture

        peers = _peers()
        fx = load_fixture()
        self.queries = [np.asarray(q) for q in fx.queries[:200]]
        self.batch = np.asarray(fx.queries[:100])
        self.faiss = peers.faiss_index(np.ascontiguousarray(fx.codes), np.ascontiguousarray(fx.codebook))
        self.lance = peers.lance_dataset(fx, fx.cache_dir / "lance")
        self.lance_search = peers.lance_search(self.lance)
        self.faiss.search(self.queries[0][None, :], K)
        self.lance_search(self.queries[0])
        self.turn = 0

    def _next(self):
        self.turn += 1
        return self.queries[self.turn % len(self.queries)]

    def time_faiss_search(self, _):
        self.faiss.search(self._next()[None, :], K)

    def time_lance_search(self, _):
        self.lance_search(self._next())

    def time_lance_batched_search_per_100(self, _):
        self.lance.to_table(nearest={"column": "vector", "q": self.batch, "k": K, "nprobes": 1}, columns=["_rowid"])
