"""The PQ L2 search kernel: the ONLY file the optimising agent edits.

Shape (fixed): 128-d float32 queries, 16 sub-vectors x 256 centroids of 8 dims,
8-bit codes, squared L2, top-k (k = 10).

Interface (every version of this file keeps it; the runner and benchmarks call only this):

    prepare(codes, codebook) -> index
        codes:    uint8 (16, N), C-contiguous, read-only: Lance's transposed layout code[sub, row]
        codebook: float32 (16, 256, 8), read-only
        Returns anything `search` understands; re-lay the codes out here if you like.
        Its time is reported separately and counts toward the total.

    search(index, query, k) -> (ids, dists)
        query: float32 (128,), read-only
        ids:   int64 (k,)   distinct row numbers
        dists: float32 (k,) ascending; each within 1% of the exact ADC distance of its id

You may change anything here as long as the interface and the verified result hold.
You may use numpy, numba and math only. This seed is Lance's 8-bit path, plain and
scalar: distance table, sub-vector-outer accumulation, bounded max-heap top-k.
"""

import numba
import numpy as np

M, KSUB, DSUB = 16, 256, 8


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
    codes, codebook = index
    table = _distance_table(query, codebook)
    return _top_k(_accumulate(codes, table), k)
