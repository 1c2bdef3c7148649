"""Broken: raises in search."""


def prepare(codes, codebook):
    return codes


def search(index, query, k):
    raise RuntimeError("kernel bug")
