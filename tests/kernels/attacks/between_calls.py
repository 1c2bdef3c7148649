"""Attack (needs the policy bypassed): work done between calls, where an inside timer would not look. It wraps
the worker's ``receive`` so that after each reply the process first sleeps a millisecond (it looks idle), then
computes (here: the same scan again, as a lazily built index would), and only then waits for the next request.

The judge reads the worker's CPU from the operating system when it sends each request: CPU used since the worker last
went idle is work outside the timed calls, a crash."""

import sys
import time

import numba
import numpy as np

M, KSUB, DSUB = 16, 256, 8

STATE = {"index": None, "query": None}
_worker = next((m for m in (sys.modules.get("__main__"), sys.modules.get("pqkern.bench.worker")) if hasattr(m, "serve")), None)
if _worker is not None:
    _receive = _worker.receive

    def _receive_later(fd, deadline=None):
        if STATE["query"] is not None:
            time.sleep(0.001)
            codes, codebook = STATE["index"]
            _top_k(_accumulate(codes, _distance_table(STATE["query"], codebook)), 10)
        return _receive(fd, deadline)

    _worker.receive = _receive_later


@numba.njit
def _distance_table(query, codebook):
    table = np.empty((M, KSUB), np.float32)
    for s in range(M):
        for c in range(KSUB):
            acc = np.float32(0.0)
            for d in range(DSUB):
                diff = query[s * DSUB + d] - codebook[s, c, d]
                acc += diff * diff
            table[s, c] = acc
    return table


@numba.njit
def _accumulate(codes, table):
    n = codes.shape[1]
    dists = np.zeros(n, np.float32)
    for s in range(M):
        for r in range(n):
            dists[r] += table[s, codes[s, r]]
    return dists


@numba.njit
def _sift_down(heap_d, heap_i, k):
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            return
        if child + 1 < k and heap_d[child + 1] > heap_d[child]:
            child += 1
        if heap_d[child] <= heap_d[pos]:
            return
        heap_d[pos], heap_d[child] = heap_d[child], heap_d[pos]
        heap_i[pos], heap_i[child] = heap_i[child], heap_i[pos]
        pos = child


@numba.njit
def _top_k(dists, k):
    heap_d = np.full(k, np.inf, np.float32)  # max-heap: heap_d[0] is the current k-th best
    heap_i = np.full(k, -1, np.int64)
    for r in range(dists.shape[0]):
        if dists[r] < heap_d[0]:
            heap_d[0] = dists[r]
            heap_i[0] = r
            _sift_down(heap_d, heap_i, k)
    order = np.argsort(heap_d, kind="mergesort")
    return heap_i[order], heap_d[order]


def prepare(codes, codebook):
    return codes, codebook


def search(index, query, k):
    STATE["index"], STATE["query"] = index, query
    codes, codebook = index
    return _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
