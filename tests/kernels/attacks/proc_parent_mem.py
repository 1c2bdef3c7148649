"""Attack: read the parent's memory through /proc/<ppid>/mem (the judge's ground truth lives there)."""

import os

import numpy as np


def prepare(codes, codebook):
    with open(f"/proc/{os.getppid()}/mem", "rb") as f:
        f.seek(0x400000)
        f.read(16)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
