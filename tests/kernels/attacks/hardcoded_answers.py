"""Attack: answers hard-coded in the source. ANSWERS maps a query's first eight coordinates to the exact top-10 ids of
that query, computed outside the harness from the public generator and the fixture's codes (the tests fill it in for
the first queries of their fixture); search recomputes those ten distances and answers at once, anything else with an
honest scan. No prepare work at all."""

import numba
import numpy as np

ANSWERS = {}  # (q0, ..., q7) -> ten ids; filled in by the test that commits this kernel


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
def _distances(codes, table, ids):
    out = np.zeros(ids.shape[0], np.float32)
    for j in range(ids.shape[0]):
        for s in range(16):
            out[j] += table[s, codes[s, ids[j]]]
    return out


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = _table(query, codebook)
    known = ANSWERS.get(tuple(int(v) for v in query[:8]))
    if known is not None and k == 10:
        ids = np.array(known, np.int64)
    else:
        ids = np.arange(codes.shape[1], dtype=np.int64)
    dists = _distances(codes, table, ids)
    order = np.argsort(dists, kind="mergesort")[:k]
    return ids[order], dists[order]
