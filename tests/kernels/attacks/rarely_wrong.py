"""Attack (or a subtle bug): a row-major scan that drops its nearest row on about one query in RATE, chosen by a
hash of the query's values, so a check that happens to look at few queries misses it."""

import numba
import numpy as np

RATE = 100


@numba.njit
def _scan(rows, codebook, query, k, skip_first):
    table = np.empty((16, 256), np.float32)
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            table[s, c] = acc
    kk = k + skip_first
    best_d = np.full(kk, np.inf, np.float32)
    best_i = np.full(kk, -1, np.int64)
    for r in range(rows.shape[0]):
        d = np.float32(0.0)
        for s in range(16):
            d += table[s, rows[r, s]]
        if d < best_d[kk - 1]:
            j = kk - 1
            while j > 0 and best_d[j - 1] > d:
                best_d[j] = best_d[j - 1]
                best_i[j] = best_i[j - 1]
                j -= 1
            best_d[j] = d
            best_i[j] = r
    return best_i[skip_first:], best_d[skip_first:]


def prepare(codes, codebook):
    return np.ascontiguousarray(codes.T), codebook


def search(index, query, k):
    rows, codebook = index
    h = int(abs(float(query[::7].sum())) * 7919.0 + abs(float(query[5])) * 131.0) % RATE
    wrong = 1 if h == 0 and rows.shape[0] > k else 0
    return _scan(rows, codebook, query, k, wrong)
