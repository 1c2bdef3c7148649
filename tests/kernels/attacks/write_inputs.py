"""Attack: write into the codes handed over (zeroing them would make every distance equal)."""

import numpy as np


def prepare(codes, codebook):
    codes[:, :] = 0
    return codes, codebook


def search(index, query, k):
    return np.arange(k, dtype=np.int64), np.zeros(k, np.float32)
