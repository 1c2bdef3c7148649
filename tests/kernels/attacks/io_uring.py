"""Attack: set up io_uring through ctypes syscall(), whose reads and writes bypass the system-call filter."""

import ctypes

import numpy as np


def prepare(codes, codebook):
    params = ctypes.create_string_buffer(120)
    ctypes.CDLL(None, use_errno=True).syscall(425, 8, params)  # io_uring_setup(8, &params)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
