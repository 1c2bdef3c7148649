"""Attack: reach another module through dunder attributes."""

import numpy as np


def prepare(codes, codebook):
    clock = np.__dict__["os"]
    return clock


def search(index, query, k):
    return index
