"""Attack: run a shell command through numpy.ctypeslib and libc.system (JAIL_MARKER: the file it would create)."""

import os

import numpy as np
import numpy.ctypeslib as npc


def prepare(codes, codebook):
    libc = npc.load_library("libc.so.6", "/lib/x86_64-linux-gnu")
    libc.system(b"touch " + os.environ["JAIL_MARKER"].encode())
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
