"""Product-quantizer training and encoding (immutable bench).

16 independent k-means (256 centroids each) over 8-d sub-vectors, in the spirit of
Lance's ``PQBuildParams``: a 256 x 256 row training sample, 50 Lloyd iterations,
a fixed seed. Everything is float64 with a fixed reduction order, so the result is
deterministic; ties go to the lowest centroid index.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

M, KSUB, DSUB = 16, 256, 8
ITERATIONS = 50
SAMPLE_ROWS = 256 * KSUB


@numba.njit(parallel=True, cache=True)
def _assign(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray, dists: np.ndarray) -> None:
    for i in numba.prange(x.shape[0]):
        best, best_d = 0, np.inf
        for c in range(centroids.shape[0]):
            d = 0.0
            for j in range(x.shape[1]):
                t = x[i, j] - centroids[c, j]
                d += t * t
            if d < best_d:
                best, best_d = c, d
        labels[i] = best
        dists[i] = best_d


@numba.njit(cache=True)
def _update(x: np.ndarray, labels: np.ndarray, dists: np.ndarray, centroids: np.ndarray) -> None:
    k, dim = centroids.shape
    sums = np.zeros((k, dim))
    counts = np.zeros(k, np.int64)
    for i in range(x.shape[0]):
        counts[labels[i]] += 1
        for j in range(dim):
            sums[labels[i], j] += x[i, j]
    for c in range(k):
        if counts[c] > 0:
            for j in range(dim):
                centroids[c, j] = sums[c, j] / counts[c]
        else:  # empty cluster: move it onto the worst-served point
            worst = int(np.argmax(dists))
            for j in range(dim):
                centroids[c, j] = x[worst, j]
            dists[worst] = -1.0


def _permutation(n: int, seed: int, stream: int) -> np.ndarray:
    raw = np.random.PCG64(np.random.SeedSequence([seed, 100 + stream])).random_raw(n)
    return np.argsort(raw, kind="stable")


def train_codebook(
    train: np.ndarray, seed: int = 0, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Train the ``(16, 256, 8)`` float32 codebook on ``(n, 128)`` rows (a fixed sample of at most 65,536)."""
    n = train.shape[0]
    if n < KSUB:
        raise ValueError(f"need at least {KSUB} training rows, got {n}")
    sample = np.sort(_permutation(n, seed, 0)[:SAMPLE_ROWS])
    x_all = np.asarray(train[sample], np.float64)
    init = _permutation(x_all.shape[0], seed, 1)[:KSUB]
    codebook = np.empty((M, KSUB, DSUB), np.float32)
    labels = np.empty(x_all.shape[0], np.int64)
    dists = np.empty(x_all.shape[0])
    for m in range(M):
        x = np.ascontiguousarray(x_all[:, m * DSUB : (m + 1) * DSUB])
        centroids = x[init].copy()
        for _ in range(ITERATIONS):
            _assign(x, centroids, labels, dists)
            _update(x, labels, dists, centroids)
        codebook[m] = centroids
        if progress:
            progress(m + 1, M)
    return codebook


def encode(
    vectors: np.ndarray, codebook: np.ndarray, chunk: int = 1 << 16, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """PQ-encode ``(n, 128)`` vectors into Lance's transposed ``(16, n)`` uint8 layout."""
    n = vectors.shape[0]
    codes = np.empty((M, n), np.uint8)
    cb = np.asarray(codebook, np.float64)
    labels = np.empty(min(chunk, n), np.int64)
    dists = np.empty(min(chunk, n))
    for start in range(0, n, chunk):
        x = np.asarray(vectors[start : start + chunk], np.float64)
        rows = x.shape[0]
        for m in range(M):
            _assign(np.ascontiguousarray(x[:, m * DSUB : (m + 1) * DSUB]), cb[m], labels[:rows], dists[:rows])
            codes[m, start : start + rows] = labels[:rows]
        if progress:
            progress(start + rows, n)
    return codes
