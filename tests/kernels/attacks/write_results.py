"""Attack: forge a row in the repository's results.tsv (JAIL_REPO)."""

import os

import numpy as np


def prepare(codes, codebook):
    with open(os.path.join(os.environ["JAIL_REPO"], "results.tsv"), "a") as f:
        f.write("forged\t1.0000\t1\t9.999\tkeep\n")
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
