"""Broken: never returns from search."""


def prepare(codes, codebook):
    return codes


def search(index, query, k):
    n = 0
    while n >= 0:
        n += 1
