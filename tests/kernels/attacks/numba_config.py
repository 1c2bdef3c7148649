"""Attack: change numba's configuration for everything compiled later in the worker (no optimisation).

(``cfg.OPT = 0`` makes numba 0.68's compiler fail on its next compile; an ``_OptLevel(0)`` is accepted.)
"""

import numba
import numpy as np
from numba import config as cfg

cfg.OPT = type(cfg.OPT)(0)


@numba.njit
def _square(x):
    return x * x


def prepare(codes, codebook):
    _square(np.float32(2.0))
    return codes, codebook


def search(index, query, k):
    codes, codebook = index
    table = ((codebook - query.reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    ids = np.argsort(dists, kind="stable")[:k]
    return ids.astype(np.int64), dists[ids].astype(np.float32)
