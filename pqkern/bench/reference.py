"""Reference computations the kernel is judged against (immutable bench).

Exact brute-force k-NN (BLAS, chunked), the reference ADC distance (vectorised numpy,
float64), and tie-aware recall. Ties matter: SIFT values are integers, so exact
distance ties are common and an id that ties the true neighbour counts as a hit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

M, KSUB, DSUB = 16, 256, 8


def exact_knn(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    base_chunk: int = 65536,
    query_chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 top-``k`` of each query: ``(ids int32 (nq, k), squared dists float64 (nq, k))``.

    Distances are float64 (exact for integer-valued data such as SIFT); ties are
    ordered by id. Memory stays at about ``query_chunk * base_chunk * 8`` bytes.
    """
    nb, nq = base.shape[0], queries.shape[0]
    k = min(k, nb)
    out_ids = np.empty((nq, k), np.int32)
    out_d = np.empty((nq, k), np.float64)
    q_all = np.asarray(queries, np.float64)
    q_norm = np.einsum("ij,ij->i", q_all, q_all)
    best_ids = np.empty((nq, 0), np.int64)
    best_d = np.empty((nq, 0), np.float64)
    for b0 in range(0, nb, base_chunk):
        x = np.asarray(base[b0 : b0 + base_chunk], np.float64)
        x_norm = np.einsum("ij,ij->i", x, x)
        ids = np.arange(b0, b0 + x.shape[0])
        new_ids, new_d = [], []
        for q0 in range(0, nq, query_chunk):
            q = q_all[q0 : q0 + query_chunk]
            d = (q_norm[q0 : q0 + query_chunk, None] - 2.0 * (q @ x.T)) + x_norm[None, :]
            i, dd = _smallest(d, np.broadcast_to(ids, d.shape), k)
            new_ids.append(i)
            new_d.append(dd)
        merged_d = np.concatenate([best_d, np.concatenate(new_d)], axis=1)
        best_ids, best_d = _smallest(merged_d, np.concatenate([best_ids, np.concatenate(new_ids)], axis=1), k)
        if progress:
            progress(min(b0 + base_chunk, nb), nb)
    # Recompute the survivors' distances directly (no cancellation error), then order by (dist, id).
    for i in range(nq):
        d = exact_distances(base, q_all[i], best_ids[i])
        order = np.lexsort((best_ids[i], d))
        out_ids[i] = best_ids[i][order]
        out_d[i] = d[order]
    return out_ids, out_d


def _smallest(d: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``d``, the ``k`` smallest ``(dist, id)`` pairs in lexicographic order (deterministic on ties)."""
    kk = min(k, d.shape[1])
    kth = np.partition(d, kk - 1, axis=1)[:, kk - 1 : kk]
    rows, cols = np.nonzero(d <= kth)
    sel_ids, sel_d = ids[rows, cols], d[rows, cols]
    order = np.lexsort((sel_ids, sel_d, rows))
    rows, sel_ids, sel_d = rows[order], sel_ids[order], sel_d[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    keep = rank < kk
    return sel_ids[keep].reshape(-1, kk), sel_d[keep].reshape(-1, kk)


def exact_distances(base: np.ndarray, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact squared L2 distances (float64) from ``query`` to the base rows ``ids``."""
    rows = np.asarray(base[np.asarray(ids, np.int64)], np.float64)
    diff = rows - np.asarray(query, np.float64)[None, :]
    return np.einsum("ij,ij->i", diff, diff)


def adc_table(codebook: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The ``(16, 256)`` float64 table of squared distances from each query sub-vector to each centroid."""
    q = np.asarray(query, np.float64).reshape(M, 1, DSUB)
    diff = np.asarray(codebook, np.float64) - q
    return np.einsum("mkd,mkd->mk", diff, diff)


def adc_distances(codes: np.ndarray, codebook: np.ndarray, query: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Reference ADC distances (float64) of rows ``ids`` (all rows when None); ``codes`` is ``(16, N)``."""
    table = adc_table(codebook, query)
    cols = codes if ids is None else codes[:, np.asarray(ids, np.int64)]
    dist = table[0][cols[0]]
    for m in range(1, M):  # one sub-space at a time: no (16, N) temporary
        dist += table[m][cols[m]]
    return dist


def adc_topk(codes: np.ndarray, codebook: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference ADC top-``k``: ``(ids int64, dists float64)`` ordered by (dist, id)."""
    d = adc_distances(codes, codebook, query)
    part = np.argpartition(d, k - 1)[:k]
    order = np.lexsort((part, d[part]))
    return part[order].astype(np.int64), d[part[order]]


def tie_aware_recall(base: np.ndarray, queries: np.ndarray, found: np.ndarray, true_ids: np.ndarray,
                     at: int = 10) -> tuple[float, float]:
    """:func:`recall_at_k` with the exact distances of the found and true ids looked up in ``base`` (ties count)."""
    found, true_ids = np.asarray(found)[:, :at], np.asarray(true_ids)[:, :at]
    found_d = np.stack([exact_distances(base, q, i) for q, i in zip(queries, found, strict=True)])
    true_d = np.stack([exact_distances(base, q, i) for q, i in zip(queries, true_ids, strict=True)])
    return recall_at_k(found, true_ids, found_d, true_d, at=at)


def recall_at_k(
    found: np.ndarray,
    true_ids: np.ndarray,
    found_dists: np.ndarray | None = None,
    true_dists: np.ndarray | None = None,
    at: int = 10,
) -> tuple[float, float]:
    """``(R@at, at-recall@at)`` averaged over queries.

    ``R@at`` (FAISS's convention) is the share of queries whose exact nearest neighbour is
    among the first ``at`` found ids; ``at-recall@at`` (ann-benchmarks) is the mean overlap
    of the found ``at`` with the true ``at``. With exact distances of the found ids
    (``found_dists``) and of the true neighbours (``true_dists``), a found id whose distance
    ties the true one counts as a hit.
    """
    found = np.asarray(found)[:, :at]
    true_ids = np.asarray(true_ids)[:, :at]
    if found_dists is None or true_dists is None:
        r1 = np.mean([true_ids[i, 0] in found[i] for i in range(found.shape[0])])
        overlap = np.mean([len(np.intersect1d(found[i], true_ids[i])) for i in range(found.shape[0])])
        return float(r1), float(overlap) / at
    found_dists = np.asarray(found_dists)[:, :at]
    true_dists = np.asarray(true_dists)[:, :at]
    hit1 = (found == true_ids[:, :1]) | (found_dists <= true_dists[:, :1])
    within = np.array([np.isin(found[i], true_ids[i]) for i in range(found.shape[0])]) | (found_dists <= true_dists[:, -1:])
    r1 = float(hit1.any(axis=1).mean())
    overlap = float(np.minimum(within.sum(axis=1), at).mean()) / at
    return r1, overlap
