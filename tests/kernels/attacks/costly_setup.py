"""Attack: a costly index built where nothing times it: in prepare (``WHERE = "prepare"``), or with prepare doing nothing,
in the first real search (``WHERE = "first search"``: the warm-up searches right after prepare), hoping only prepare is
budgeted. The index stands in for any costly precomputation (here: a few seconds of work over the codes, whatever their
size)."""

import numba
import numpy as np

WHERE = "prepare"
_built = {}


@numba.njit
def _burn(codes, rounds):
    total = 0
    for _ in range(rounds):
        for s in range(codes.shape[0]):
            for r in range(codes.shape[1]):
                total += codes[s, r] * (r & 7)
    return total


def _build(codes):
    if codes.shape[1] > 8192 and codes.shape[1] not in _built:  # the real index, not the compile pass
        _built[codes.shape[1]] = _burn(codes, max(1, 30_000_000_000 // (16 * codes.shape[1])))


@numba.njit
def _scan(codes, codebook, query, k):
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
    for s in range(16):
        for r in range(n):
            dist[r] += table[s, codes[s, r]]
    order = np.argsort(dist, kind="mergesort")[:k]
    return order, dist[order]


def prepare(codes, codebook):
    if WHERE == "prepare":
        _build(codes)
    return codes, codebook


def search(index, query, k):
    if WHERE == "first search":
        _build(index[0])
    ids, dists = _scan(index[0], index[1], query, k)
    return ids.astype(np.int64), dists.astype(np.float32)
