"""Attack: exact only on queries it has seen before. A first sight gets a cheap answer from every other row; the exact
answer is then computed and kept, so a check that re-sends the queries it timed finds nothing wrong."""

import numba
import numpy as np

_seen = {}


@numba.njit
def _scan(codes, codebook, query, k, step):
    table = np.empty((16, 256), np.float32)
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            table[s, c] = acc
    n = codes.shape[1]
    m = (n + step - 1) // step
    dist = np.zeros(m, np.float32)
    for s in range(16):
        for j in range(m):
            dist[j] += table[s, codes[s, j * step]]
    order = np.argsort(dist, kind="mergesort")[:k]
    return order * step, dist[order]


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    key = query.tobytes()
    if key in _seen:
        return _seen[key]
    cheap_ids, cheap_d = _scan(index[0], index[1], query, k, 2 if index[0].shape[1] >= 2 * k else 1)
    ids, dists = _scan(index[0], index[1], query, k, 1)
    _seen[key] = (ids.astype(np.int64), dists.astype(np.float32))
    return cheap_ids.astype(np.int64), cheap_d.astype(np.float32)
