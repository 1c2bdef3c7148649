"""Attack: return an ndarray subclass, the kind that could defer work past the timed call."""

import numpy as np


class Deferred(np.ndarray):
    pass


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64).view(Deferred), dists[ids].astype(np.float32)
