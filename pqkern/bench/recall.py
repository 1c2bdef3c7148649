"""Recall as what changes (immutable bench): a kernel's recall beside the exact ADC's on the same queries.

Recall against exact ground truth moves with the queries a run happens to search (fresh ones
every run), so it is reported two ways for each kernel and workload:

- absolute: R@10 (``recall_at_10``) and 10-recall@10 (``recall_10_at_10``) of the kernel and of the
  exact ADC top-k, on the first ``sample`` rows searched (ground truth, over the rows the workload
  searches, costs a BLAS scan per fresh query);
- delta: the kernel's recall minus the exact ADC's (``recall_delta``, ``recall_10_delta``) on every row
  it returned and had checked. Where the kernel returned exactly the exact ADC's ids, the two agree
  by definition, so ground truth is needed only where the ids differ: 0 for an exact kernel, at
  no cost, and a drop shows however few queries it touches.
"""

from __future__ import annotations

import numpy as np

from pqkern.bench.reference import tie_aware_recall


def figures(wl, rows: np.ndarray, found: np.ndarray, sample: int | None) -> dict:
    """Recall figures of one kernel's results ``found`` (n, k) on query-set ``rows`` of workload ``wl``."""
    rows = np.asarray(rows, np.int64)
    n, k = found.shape if found.ndim == 2 else (0, wl.k)
    if n == 0:
        return {"recall_at_10": None, "recall_10_at_10": None, "reference_recall_at_10": None, "recall_delta": None,
                "recall_10_delta": None, "recall_queries": 0, "delta_queries": 0}
    exact = wl.oracle(rows)[0]
    qs, base = wl.queries, wl.fx.base
    first = np.arange(n) if sample is None else np.arange(min(sample, n))
    truth = qs.groundtruth(rows[first], k, wl.num_rows)
    mine = tie_aware_recall(base, qs.vectors[rows[first]], found[first], truth, at=k)
    ref = tie_aware_recall(base, qs.vectors[rows[first]], exact[first], truth, at=k)
    differ = np.flatnonzero(np.any(np.sort(found, axis=1) != np.sort(exact, axis=1), axis=1))
    delta = (0.0, 0.0)
    if differ.size:
        truth = qs.groundtruth(rows[differ], k, wl.num_rows)
        a = tie_aware_recall(base, qs.vectors[rows[differ]], found[differ], truth, at=k)
        b = tie_aware_recall(base, qs.vectors[rows[differ]], exact[differ], truth, at=k)
        delta = ((a[0] - b[0]) * differ.size / n, (a[1] - b[1]) * differ.size / n)
    return {"recall_at_10": mine[0], "recall_10_at_10": mine[1], "reference_recall_at_10": ref[0],
            "recall_delta": delta[0], "recall_10_delta": delta[1], "recall_queries": int(first.size), "delta_queries": n}
