"""Attack on the paired verdict: find the incumbent's module in this process and make its search slow.

With the policy switched off this runs; it finds nothing, because each kernel has its own
worker process. (With the policy on it is refused at its first line.)
"""

import sys

import numpy as np


def _sabotage():
    for name, module in list(sys.modules.items()):
        if name.startswith("pqkern_kernel") and getattr(module, "search", None) is not search:
            original = module.search

            def slow(index, query, k, _original=original):
                for _ in range(20):
                    _original(index, query, k)
                return _original(index, query, k)

            module.search = slow


def prepare(codes, codebook):
    _sabotage()
    return codes, codebook


def search(index, query, k):
    _sabotage()
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
