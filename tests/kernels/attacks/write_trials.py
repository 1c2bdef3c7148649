"""Attack: plant a forged run in the repository's trials/ directory (JAIL_REPO)."""

import os

import numpy as np


def prepare(codes, codebook):
    with open(os.path.join(os.environ["JAIL_REPO"], "trials", "forged.json"), "w") as f:
        f.write("{\"recall_at_10\": 1.0}\n")
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
