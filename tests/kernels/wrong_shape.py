"""Broken: returns k+1 results."""

import numpy as np


def prepare(codes, codebook):
    return codes


def search(index, query, k):
    return np.arange(k + 1, dtype=np.int64), np.zeros(k + 1, np.float32)
