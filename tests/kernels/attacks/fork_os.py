"""Attack: fork a copy of the worker that outlives the run."""

import os

import numpy as np


def prepare(codes, codebook):
    if os.fork() == 0:
        os._exit(0)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
