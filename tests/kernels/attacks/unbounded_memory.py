"""Attack: allocate without bound."""

import numpy as np


def prepare(codes, codebook):
    hoard = []
    while True:
        hoard.append(np.empty(1 << 30, np.uint8))


def search(index, query, k):
    return np.arange(k, dtype=np.int64), np.zeros(k, np.float32)
