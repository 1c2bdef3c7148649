"""Demo step 5 (slower): the baseline's scan done three times, and a full sort instead of a heap."""

import numba
import numpy as np


@numba.njit
def _search(codes, codebook, query, k):
    table = np.empty((16, 256), np.float32)
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            table[s, c] = acc
    n = codes.shape[1]
    for _ in range(3):
        dists = np.zeros(n, np.float32)
        for s in range(16):
            for r in range(n):
                dists[r] += table[s, codes[s, r]]
    ids = np.argsort(dists, kind="mergesort")[:k]
    return ids.astype(np.int64), dists[ids]


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    return _search(codes, codebook, query, k)
