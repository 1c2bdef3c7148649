"""Attack: reach a forbidden function through getattr with a computed name."""

import numpy as np


def prepare(codes, codebook):
    return getattr(np, "lo" + "ad")("answers.npy")


def search(index, query, k):
    return index
