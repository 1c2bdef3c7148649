"""Product-quantizer training and encoding (immutable bench).

16 independent k-means (256 centroids each) over 8-d sub-vectors, in the spirit of
Lance's ``PQBuildParams``: a 256 x 256 row training sample, 50 Lloyd iterations,
a fixed seed. Everything is float64 with a fixed reduction order, so the result is
deterministic; ties go to the lowest centroid index.

The nearest-centroid search works on tiles of rows, transposed so that the innermost
loop runs across rows: LLVM vectorises it. Threads (numba's count, the GIL released) take
whole sub-spaces when training and chunks of rows when encoding. Each (row, centroid) distance is still ``d = 0.0;
d += (x[j] - c[j]) ** 2`` for j = 0..7 in order, in float64 without fast-math (no
reassociation, no FMA contraction), and a centroid replaces the best only when strictly
nearer, so labels, distances and the codebook are bit-identical to a plain scalar loop
over rows and centroids.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

M, KSUB, DSUB = 16, 256, 8
ITERATIONS = 50
SAMPLE_ROWS = 256 * KSUB
TILE = 64  # rows per tile: small enough for L1, long enough for the vectorised row loop


@numba.njit(cache=True, nogil=True)
def _tile_nearest(xt: np.ndarray, j0: int, centroids: np.ndarray, best_d: np.ndarray, best_c: np.ndarray) -> None:
    """Nearest centroid of each column of ``xt[j0 : j0 + 8]`` (a transposed tile of rows), first minimum winning."""
    rows = xt.shape[1]
    for r in range(rows):
        best_d[r] = np.inf
        best_c[r] = 0
    for c in range(centroids.shape[0]):
        for r in range(rows):  # vectorised across rows
            d = 0.0
            for j in range(DSUB):
                t = xt[j0 + j, r] - centroids[c, j]
                d += t * t
            if d < best_d[r]:
                best_d[r] = d
                best_c[r] = c


@numba.njit(cache=True, nogil=True)
def _load_tile(x: np.ndarray, r0: int, rows: int) -> np.ndarray:
    """Rows ``r0 .. r0+rows`` of ``x`` as a float64 ``(dim, rows)`` array (values converted exactly)."""
    xt = np.empty((x.shape[1], rows))
    for r in range(rows):
        for j in range(x.shape[1]):
            xt[j, r] = x[r0 + r, j]
    return xt


@numba.njit(cache=True, nogil=True)
def _assign(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray, dists: np.ndarray) -> None:
    """Label each row of ``x`` (n, 8) with its nearest centroid; ``dists`` gets the squared distance."""
    best_d = np.empty(TILE)
    best_c = np.empty(TILE, np.int64)
    for r0 in range(0, x.shape[0], TILE):
        rows = min(TILE, x.shape[0] - r0)
        _tile_nearest(_load_tile(x, r0, rows), 0, centroids, best_d, best_c)
        for r in range(rows):
            labels[r0 + r] = best_c[r]
            dists[r0 + r] = best_d[r]


@numba.njit(cache=True, nogil=True)
def _encode(x: np.ndarray, codebook: np.ndarray, codes: np.ndarray, start: int) -> None:
    """Write the codes of the rows of ``x`` (n, 128), any real dtype, into ``codes[:, start : start + n]``."""
    best_d = np.empty(TILE)
    best_c = np.empty(TILE, np.int64)
    for r0 in range(0, x.shape[0], TILE):
        rows = min(TILE, x.shape[0] - r0)
        xt = _load_tile(x, r0, rows)
        for m in range(codebook.shape[0]):
            _tile_nearest(xt, m * DSUB, codebook[m], best_d, best_c)
            for r in range(rows):
                codes[m, start + r0 + r] = best_c[r]


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _lloyd(x: np.ndarray, centroids: np.ndarray) -> None:
    """Lloyd's iterations of one sub-space's k-means: ``centroids`` (256, 8) float64 refined in place."""
    labels = np.empty(x.shape[0], np.int64)
    dists = np.empty(x.shape[0])
    for _ in range(ITERATIONS):
        _assign(x, centroids, labels, dists)
        _update(x, labels, dists, centroids)


def _threads() -> int:
    return max(1, numba.get_num_threads())


def train_codebook(
    train: np.ndarray, seed: int = 0, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Train the ``(16, 256, 8)`` float32 codebook on ``(n, 128)`` rows (a fixed sample of at most 65,536).

    The 16 k-means are independent: they run side by side, one per numba thread.
    """
    n = train.shape[0]
    if n < KSUB:
        raise ValueError(f"need at least {KSUB} training rows, got {n}")
    sample = np.sort(_permutation(n, seed, 0)[:SAMPLE_ROWS])
    x_all = np.asarray(train[sample], np.float64)
    init = _permutation(x_all.shape[0], seed, 1)[:KSUB]
    subspaces = [np.ascontiguousarray(x_all[:, m * DSUB : (m + 1) * DSUB]) for m in range(M)]
    centroids = [x[init].copy() for x in subspaces]
    codebook = np.empty((M, KSUB, DSUB), np.float32)
    with ThreadPoolExecutor(_threads()) as pool:
        for m, _ in enumerate(pool.map(_lloyd, subspaces, centroids)):  # in order, as they finish
            codebook[m] = centroids[m]
            if progress:
                progress(m + 1, M)
    return codebook


def encode(
    vectors: np.ndarray, codebook: np.ndarray, chunk: int = 1 << 16, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """PQ-encode ``(n, 128)`` vectors into Lance's transposed ``(16, n)`` uint8 layout."""
    n = vectors.shape[0]
    codes = np.empty((M, n), np.uint8)
    cb = np.ascontiguousarray(codebook, np.float64)

    def encode_chunk(start: int) -> int:
        rows = np.asarray(vectors[start : start + chunk])  # a plain view of a memory map: read in place, no float64 copy
        _encode(rows, cb, codes, start)
        return start + rows.shape[0]

    with ThreadPoolExecutor(_threads()) as pool:
        for done in pool.map(encode_chunk, range(0, n, chunk)):
            if progress:
                progress(done, n)
    return codes
