"""Attack: a thread that keeps working after search returns, outside the timed calls."""

import threading

import numpy as np

_work = []


def _spin():
    while True:
        _work.append(len(_work))
        del _work[:]


def prepare(codes, codebook):
    threading.Thread(target=_spin, daemon=True).start()
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
