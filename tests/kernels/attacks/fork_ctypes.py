"""Attack: call libc fork() through ctypes, past any Python-level guard."""

import ctypes

import numpy as np


def prepare(codes, codebook):
    libc = ctypes.CDLL(None)
    if libc.fork() == 0:
        libc._exit(0)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
