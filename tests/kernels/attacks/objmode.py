"""Attack: escape numba's nopython mode to run arbitrary Python inside a kernel."""

import numba
import numpy as np


@numba.njit
def _escape(x):
    with numba.objmode(y="int64"):
        y = 0
    return x + y


def prepare(codes, codebook):
    return codes


def search(index, query, k):
    return np.arange(k, dtype=np.int64) + _escape(0), np.zeros(k, np.float32)
