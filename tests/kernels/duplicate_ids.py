"""Broken: repeats the best id k times."""

import numpy as np


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    best = int(np.argmin(dists))
    return np.full(k, best, np.int64), np.full(k, dists[best], np.float32)
