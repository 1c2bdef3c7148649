"""Deterministic SIFT-like vectors: clustered, non-negative, integer-valued, 128-d.

Part of the immutable bench. Only the raw 64-bit output of PCG64 seeded through
SeedSequence (both fixed by numpy's stream-compatibility policy) and integer
arithmetic are used, so the bytes are identical on every machine and numpy version.
"""

from __future__ import annotations

import numpy as np

DIM = 128
GENERATOR_VERSION = 1
_LATENT = 8  # shared latent directions: gives neighbourhoods some low-dimensional structure
_STREAMS = {"centers": 0, "latent": 1, "base": 2, "query": 3, "learn": 4}


def _raw(seed: int, stream: str, n: int, skip: int = 0) -> np.ndarray:
    """``n`` raw uint64 draws of one named stream, after skipping ``skip`` draws."""
    bitgen = np.random.PCG64(np.random.SeedSequence([seed, _STREAMS[stream]]))
    if skip:
        bitgen.advance(skip)
    return bitgen.random_raw(n)


def _bytes(words: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return words.astype("<u8").view(np.uint8)[: int(np.prod(shape))].reshape(shape)


def num_clusters(num_base: int) -> int:
    return int(min(1024, max(16, num_base // 1000)))


def _model(seed: int, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster centres (skewed towards small values, like SIFT) and latent directions."""
    b = _bytes(_raw(seed, "centers", clusters * DIM // 8 + 1), (clusters, DIM)).astype(np.int32)
    centers = (b * b) >> 9  # 0..127, most mass near zero
    lat = _bytes(_raw(seed, "latent", _LATENT * DIM // 8 + 1), (_LATENT, DIM)).astype(np.int32)
    directions = (lat & 31) - 15  # -15..16
    return centers, directions


def generate(seed: int, stream: str, count: int, num_base: int, start: int = 0) -> np.ndarray:
    """Rows ``start .. start+count`` of a stream (``base``, ``query`` or ``learn``) as uint8 ``(count, 128)``.

    Each row costs 1 + 2 + 16 raw draws: cluster, latent coefficients, per-value noise.
    """
    per_row = 19
    centers, directions = _model(seed, num_clusters(num_base))
    words = _raw(seed, stream, count * per_row, skip=start * per_row).reshape(count, per_row)
    cluster = (words[:, 0] % np.uint64(centers.shape[0])).astype(np.intp)
    coef_bytes = _bytes(words[:, 1:3].copy(), (count, 16)).astype(np.int32)
    coef = (coef_bytes[:, :_LATENT] & 15) - (coef_bytes[:, _LATENT:] & 15)  # -15..15, triangular
    nib = _bytes(words[:, 3:].copy(), (count, 128)).astype(np.int32)
    noise = ((nib & 15) - (nib >> 4)) >> 1  # -8..7, triangular
    values = centers[cluster] + ((coef @ directions) >> 3) + noise
    return np.clip(values, 0, 255).astype(np.uint8)
