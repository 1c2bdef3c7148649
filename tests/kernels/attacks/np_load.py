"""Attack: read a precomputed answer from disk with numpy's own file functions."""

import numpy as np


def prepare(codes, codebook):
    return np.load("answers.npy")


def search(index, query, k):
    return index[0], index[1]
