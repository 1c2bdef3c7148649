"""Attack on the paired verdict: after each search, sweep a large buffer to evict the caches the other kernel relies on.

The sweep is inside the candidate's own call (it pays for it); the incumbent's next block starts
with an untimed warm-up call, so its working set is warm again: nothing is gained.
"""

import numba
import numpy as np


@numba.njit
def _table(query, codebook):
    t = np.empty((16, 256), np.float32)
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            t[s, c] = acc
    return t


@numba.njit
def _scan(rows, table, k, junk):
    best_d = np.full(k, np.inf, np.float32)
    best_i = np.full(k, -1, np.int64)
    for r in range(rows.shape[0]):
        d = np.float32(0.0)
        for s in range(16):
            d += table[s, rows[r, s]]
        if d < best_d[k - 1]:
            j = k - 1
            while j > 0 and best_d[j - 1] > d:
                best_d[j] = best_d[j - 1]
                best_i[j] = best_i[j - 1]
                j -= 1
            best_d[j] = d
            best_i[j] = r
    for i in range(0, junk.shape[0], 64):  # one write per cache line of a buffer larger than the caches
        junk[i] += 1
    return best_i, best_d


def prepare(codes, codebook):
    return np.ascontiguousarray(codes.T), codebook, np.zeros(64 << 20, np.uint8)


def search(index, query, k):
    rows, codebook, junk = index
    return _scan(rows, _table(query, codebook), k, junk)
