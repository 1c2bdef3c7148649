"""Attack: honest distances, but the last 2% of the base is never scanned (recall stays near the seed's)."""

import numpy as np


def prepare(codes, codebook):
    return codes[:, : codes.shape[1] - codes.shape[1] // 50], codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
