"""Attack: import the clock to fake the timing."""

import time

import numpy as np


def prepare(codes, codebook):
    time.perf_counter_ns = lambda: 0
    return codes


def search(index, query, k):
    return np.arange(k, dtype=np.int64), np.zeros(k, np.float32)
