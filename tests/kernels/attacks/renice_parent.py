"""Attack: lower the priority of the parent (or of a rival kernel's worker), which the same user may do."""

import os

import numpy as np


def prepare(codes, codebook):
    os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
