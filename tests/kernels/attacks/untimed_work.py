"""Attack: work slipped into the untimed calls. After the eight warm-up searches that follow prepare, a paired
comparison makes an untimed warm-up call before each timed flat call, so the kernel counts the calls on its index and
spends its effort on the untimed ones (here: the same scan, repeated), as if an index were being built where nothing
times it, and answers the timed ones with a plain scan."""

import numba
import numpy as np


@numba.njit
def _scan(codes, codebook, query, k, reps):
    table = np.empty((16, 256), np.float32)
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            table[s, c] = acc
    n = codes.shape[1]
    dist = np.zeros(n, np.float32)
    for _ in range(reps):
        dist[:] = 0.0
        for s in range(16):
            for r in range(n):
                dist[r] += table[s, codes[s, r]]
    order = np.argsort(dist, kind="mergesort")[:k]
    return order, dist[order]


def prepare(codes, codebook):
    return codes, codebook, np.zeros(1, np.int64)


def search(index, query, k):
    codes, codebook, calls = index
    calls[0] += 1
    untimed = codes.shape[1] > 8192 and calls[0] > 8 and calls[0] % 2 == 1  # the warm-up call before a timed one
    ids, dists = _scan(codes, codebook, query, k, 40 if untimed else 1)
    return ids.astype(np.int64), dists.astype(np.float32)
