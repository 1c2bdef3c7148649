"""Attack: attach to the parent with ptrace through ctypes syscall(), to read or rewrite the judge."""

import ctypes
import os

import numpy as np


def prepare(codes, codebook):
    ctypes.CDLL(None, use_errno=True).syscall(101, 16, os.getppid(), 0, 0)  # ptrace(PTRACE_ATTACH, ppid)
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
