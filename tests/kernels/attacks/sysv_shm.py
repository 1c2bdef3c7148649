"""Attack: keep answers in System V shared memory, which outlives the process, for the next run to find."""

import ctypes

import numpy as np


def prepare(codes, codebook):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget(0x5150, 1 << 20, 0o1600)  # IPC_CREAT | 0600
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
