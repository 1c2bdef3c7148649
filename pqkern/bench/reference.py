"""Reference computations the kernel is judged against (immutable bench).

Exact brute-force k-NN (BLAS, chunked; float32 where that is provably exact), the
reference ADC distance (vectorised numpy, float64), and tie-aware recall. Ties matter: SIFT values are integers, so exact
distance ties are common and an id that ties the true neighbour counts as a hit.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

M, KSUB, DSUB = 16, 256, 8


EXACT_F32 = 1 << 24  # float32 holds every integer of magnitude up to 2**24 exactly


def exact_knn(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    base_chunk: int | None = None,
    query_chunk: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 top-``k`` of each query: ``(ids int32 (nq, k), squared dists float64 (nq, k))``, ties ordered by id.

    Data whose values are all integers in ``0..v`` with ``dim * v**2 <= 2**24`` (SIFT and the
    synthetic data: 128 * 255**2 = 8,323,200) takes a float32 BLAS product, exact for such data
    (see :func:`_exact_knn_small_ints`); anything else float64 products. Both give the same answer.
    Memory stays at about ``query_chunk * base_chunk * 8`` bytes (16,384 x 1,024 and 65,536 x 256 by default).
    """
    vmax = max(_small_int_max(base), _small_int_max(queries))
    if vmax >= 0 and base.shape[1] * vmax * vmax <= EXACT_F32:
        return _exact_knn_small_ints(base, queries, k, base_chunk or 16384, query_chunk or 1024, progress)
    return _exact_knn_float64(base, queries, k, base_chunk or 65536, query_chunk or 256, progress)


def _small_int_max(a: np.ndarray, chunk: int = 8192) -> int:
    """The largest value of ``a`` if every value is a non-negative integer below 2**24, else -1."""
    vmax = 0
    for s in range(0, a.shape[0], chunk):
        c = np.asarray(a[s : s + chunk])
        if c.size == 0:
            continue
        lo, hi = c.min(), c.max()
        if not (lo >= 0 and hi < EXACT_F32):  # also false for NaN
            return -1
        if c.dtype.kind == "f" and not np.array_equal(c, np.floor(c)):
            return -1
        vmax = max(vmax, int(hi))
    return vmax


def _exact_knn_small_ints(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    base_chunk: int,
    query_chunk: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_knn` for integer values in ``0..v`` with ``dim * v**2 <= 2**24``, exact through float32 BLAS.

    Why it is exact: each product of two values is an integer in ``0..v**2``, and every partial
    sum of a dot product or squared norm, in whatever order BLAS adds them and with or without
    FMA, is a sum of some of those products (BLAS forms each entry that way; none uses
    Strassen-like schemes): an integer in ``0..dim * v**2``, at most 2**24, which float32
    represents exactly, so nothing is ever rounded. ``|q|**2 + |x|**2 - 2 q.x`` is then formed in
    float64 from exact integers. The survivors' distances are recomputed directly as a check.

    Base rows are visited in id order and each query keeps a running top-``k``: a row enters only
    when strictly nearer than the current ``k``-th, after any equal distance, so ties are ordered
    by id, as in the float64 path. Later blocks thus only collect rows below the ``k``-th so far.
    """
    nb, nq = base.shape[0], queries.shape[0]
    k = min(k, nb)
    q = np.asarray(queries, np.float32)
    q_norm = np.einsum("ij,ij->i", q, q).astype(np.float64)
    best_d = np.full((nq, k), np.inf)
    best_i = np.full((nq, k), -1, np.int64)
    for b0 in range(0, nb, base_chunk):
        x = np.asarray(base[b0 : b0 + base_chunk], np.float32)
        x_norm = np.einsum("ij,ij->i", x, x).astype(np.float64)
        for q0 in range(0, nq, query_chunk):
            q1 = min(q0 + query_chunk, nq)
            _fold(q[q0:q1] @ x.T, x_norm, q_norm[q0:q1], b0, best_d[q0:q1], best_i[q0:q1])
        if progress:
            progress(min(b0 + base_chunk, nb), nb)
    for q0 in range(0, nq, 256):  # the survivors' distances, recomputed directly, must agree
        rows = np.asarray(base[best_i[q0 : q0 + 256].ravel()], np.float64).reshape(-1, k, base.shape[1])
        diff = rows - np.asarray(queries[q0 : q0 + 256], np.float64)[:, None, :]
        if not np.array_equal(np.einsum("qkd,qkd->qk", diff, diff), best_d[q0 : q0 + 256]):
            raise RuntimeError("exact_knn: float32 BLAS products were not exact; this BLAS breaks the stated assumption")
    return best_i.astype(np.int32), best_d


@numba.njit(cache=True)
def insert_sorted(best_d: np.ndarray, best_i: np.ndarray, d: float, i: int) -> None:
    """Insert ``(d, i)`` into the sorted top list, dropping its last entry, after any equal distance."""
    j = best_d.shape[0] - 1
    while j > 0 and best_d[j - 1] > d:
        best_d[j] = best_d[j - 1]
        best_i[j] = best_i[j - 1]
        j -= 1
    best_d[j] = d
    best_i[j] = i


@numba.njit(cache=True)
def _fold(dots: np.ndarray, x_norm: np.ndarray, q_norm: np.ndarray, first_id: int, best_d: np.ndarray,
          best_i: np.ndarray) -> None:
    """Merge a block of base rows (ids from ``first_id``, given their dot products with each query) into each top list.

    ``d < k-th`` is tested as ``|x|**2 - 2 q.x < k-th - |q|**2``: the same test, as every term is an exact integer.
    """
    k = best_d.shape[1]
    for r in range(dots.shape[0]):
        limit = best_d[r, k - 1] - q_norm[r]
        hits = 0
        for c in range(dots.shape[1]):  # vectorised: does any row of the block beat the current k-th?
            hits += x_norm[c] - 2.0 * dots[r, c] < limit
        if hits == 0:
            continue
        for c in range(dots.shape[1]):
            e = x_norm[c] - 2.0 * dots[r, c]
            if e < limit:
                insert_sorted(best_d[r], best_i[r], e + q_norm[r], first_id + c)
                limit = best_d[r, k - 1] - q_norm[r]


def _exact_knn_float64(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    base_chunk: int = 65536,
    query_chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_knn` for any data: float64 products, chunked; memory about ``query_chunk * base_chunk * 8`` bytes."""
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
