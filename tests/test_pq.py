"""PQ training and encoding: the tiled, vectorised nearest-centroid search gives the scalar loop's exact bytes."""

from __future__ import annotations

import hashlib

import numba
import numpy as np
import pytest

from pqkern.bench import pq, synthetic

# pq.train_codebook and pq.encode on the inputs below, computed with the scalar loop (before tiling).
CODEBOOK_2048_DIGEST = "384798da72549868124a291ed9e3956320932fcbfbc6d63a27500f3ff2532b41"
CODES_3000_DIGEST = "c696794e1701dedd1b443f605e6fa13a52a9556a0fc0fd67729106c8cee51e1d"


@numba.njit(cache=True)
def scalar_assign(x, centroids, labels, dists):
    """The reference: the scalar assignment loop as it was before tiling (there over cores with prange)."""
    for i in range(x.shape[0]):
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


def scalar_encode(vectors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """The reference encoder: float64 rows, one sub-space at a time, through :func:`scalar_assign`."""
    x = np.asarray(vectors, np.float64)
    cb = np.asarray(codebook, np.float64)
    codes = np.empty((pq.M, x.shape[0]), np.uint8)
    labels, dists = np.empty(x.shape[0], np.int64), np.empty(x.shape[0])
    for m in range(pq.M):
        scalar_assign(np.ascontiguousarray(x[:, m * pq.DSUB : (m + 1) * pq.DSUB]), cb[m], labels, dists)
        codes[m] = labels
    return codes


def _both(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, ...]:
    out = [np.full(x.shape[0], -1, np.int64), np.full(x.shape[0], np.nan), np.full(x.shape[0], -1, np.int64),
           np.full(x.shape[0], np.nan)]
    scalar_assign(x, centroids, out[0], out[1])
    pq._assign(x, centroids, out[2], out[3])
    return tuple(out)


@pytest.mark.parametrize("rows", [1, 63, 64, 65, 1000, 4099])
def test_assign_matches_the_scalar_loop(rows):
    rng = np.random.default_rng(rows)
    x = rng.normal(50, 30, (rows, 8))
    centroids = rng.normal(50, 30, (256, 8))
    ref_labels, ref_d, labels, d = _both(x, centroids)
    assert np.array_equal(labels, ref_labels) and d.tobytes() == ref_d.tobytes()


def test_assign_ties_go_to_the_first_centroid():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, (2000, 8)).astype(np.float64)  # few distinct rows and centroids: exact ties everywhere
    centroids = rng.integers(0, 3, (256, 8)).astype(np.float64)
    ref_labels, ref_d, labels, d = _both(x, centroids)
    assert np.array_equal(labels, ref_labels) and np.array_equal(d, ref_d)
    full = ((x[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    assert np.array_equal(labels, full.argmin(axis=1))  # argmin: the first of equal minima


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_encode_matches_the_scalar_encoder(dtype):
    rng = np.random.default_rng(3)
    vectors = rng.integers(0, 256, (3001, 128)).astype(dtype)
    codebook = rng.uniform(0, 255, (16, 256, 8)).astype(np.float32)
    expected = scalar_encode(vectors, codebook)
    assert np.array_equal(pq.encode(vectors, codebook, chunk=1000), expected)
    padded = np.zeros((3001, 132), dtype)  # a strided view, as a memory-mapped vecs file gives
    padded[:, 4:] = vectors
    assert np.array_equal(pq.encode(padded[:, 4:], codebook, chunk=1000), expected)


def scalar_train(train: np.ndarray, seed: int) -> np.ndarray:
    """The reference trainer: one sub-space after another, 50 rounds of :func:`scalar_assign` and the update."""
    sample = np.sort(pq._permutation(train.shape[0], seed, 0)[: pq.SAMPLE_ROWS])
    x_all = np.asarray(train[sample], np.float64)
    init = pq._permutation(x_all.shape[0], seed, 1)[: pq.KSUB]
    codebook = np.empty((pq.M, pq.KSUB, pq.DSUB), np.float32)
    labels, dists = np.empty(x_all.shape[0], np.int64), np.empty(x_all.shape[0])
    for m in range(pq.M):
        x = np.ascontiguousarray(x_all[:, m * pq.DSUB : (m + 1) * pq.DSUB])
        centroids = x[init].copy()
        for _ in range(pq.ITERATIONS):
            scalar_assign(x, centroids, labels, dists)
            pq._update(x, labels, dists, centroids)
        codebook[m] = centroids
    return codebook


def test_training_matches_the_scalar_loop():
    rng = np.random.default_rng(5)
    train = rng.integers(0, 2, (700, 128)).astype(np.uint8)  # 256 distinct sub-vectors: ties, empty clusters
    assert pq.train_codebook(train, seed=0).tobytes() == scalar_train(train, seed=0).tobytes()


def test_codebook_and_codes_bytes_are_pinned():
    codebook = pq.train_codebook(synthetic.generate(0, "learn", 2048, 1_000_000), seed=0)
    assert hashlib.sha256(codebook.tobytes()).hexdigest() == CODEBOOK_2048_DIGEST
    codes = pq.encode(synthetic.generate(0, "base", 3000, 1_000_000), codebook, chunk=1000)
    assert hashlib.sha256(codes.tobytes()).hexdigest() == CODES_3000_DIGEST
