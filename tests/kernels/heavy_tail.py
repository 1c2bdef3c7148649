"""The row-major scan, fast on most queries and slow on a few: on the largest index it sees (the flat scan), one query
in RATE, chosen by the query's own values, is searched REPS times. Its typical query is faster than the seed's, its
throughput (the time the same queries cost in all) is not: judged by the median per query it was kept as faster.
The verdict scripts set RATE and REPS."""

import numba
import numpy as np

RATE = 3
REPS = 16


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
def _scan(rows, table, k):
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
    return best_i, best_d


def _chosen(query):
    """One query in RATE, by a hash of its values' sum: as often on real, integer-valued descriptors as on synthetic
    ones (three values of the query picked 41% of real queries at RATE 3, 18% at 10, 11% at 50)."""
    x = int(float(query.sum()) * 64.0)
    return (((x * 2654435761) & 0xFFFFFFFF) >> 16) % RATE == 0


def prepare(codes, codebook):
    return np.ascontiguousarray(codes.T), codebook


def search(index, query, k):
    rows, codebook = index
    table = _table(query, codebook)
    heavy = rows.shape[0] >= 16384 and _chosen(query)
    for _ in range(REPS - 1 if heavy else 0):
        _scan(rows, table, k)
    return _scan(rows, table, k)
