"""Attack: remember the first answer and return it for every later query."""

import numpy as np

_memory = []


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    if not _memory:
        codes, codebook = index
        table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
        dists = table[np.arange(16)[:, None], codes].sum(axis=0)
        ids = np.argsort(dists, kind="stable")[:k]
        _memory.append((ids.astype(np.int64), dists[ids].astype(np.float32)))
    return _memory[0]
