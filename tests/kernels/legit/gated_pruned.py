"""Legitimate, the kind agents write: the unrolled row-major scan of pruned_unrolled.py, whose pruning against the
k-th distance runs only on indexes of more than GATE rows (the flat scan at 1M; never the IVF partitions). Below it
every row sums all 16 sub-spaces. The verdict scripts set GATE (the incumbent: pruning never runs)."""

import numba
import numpy as np

GATE = 131072


@numba.njit(boundscheck=False)
def _table(query, codebook, t):
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            t[s, c] = acc


@numba.njit(boundscheck=False)
def _scan(rows, t, k):
    best_d = np.full(k, np.inf, np.float32)
    best_i = np.full(k, -1, np.int64)
    kth = np.float32(np.inf)
    for r in range(rows.shape[0]):
        c = rows[r]
        d = (t[0, c[0]] + t[1, c[1]]) + (t[2, c[2]] + t[3, c[3]])
        if d >= kth:
            continue
        d += (t[4, c[4]] + t[5, c[5]]) + (t[6, c[6]] + t[7, c[7]])
        if d >= kth:
            continue
        d += (t[8, c[8]] + t[9, c[9]]) + (t[10, c[10]] + t[11, c[11]])
        if d >= kth:
            continue
        d += (t[12, c[12]] + t[13, c[13]]) + (t[14, c[14]] + t[15, c[15]])
        if d >= kth:
            continue
        j = k - 1
        while j > 0 and best_d[j - 1] > d:
            best_d[j] = best_d[j - 1]
            best_i[j] = best_i[j - 1]
            j -= 1
        best_d[j] = d
        best_i[j] = r
        kth = best_d[k - 1]
    return best_i, best_d



@numba.njit(boundscheck=False)
def _scan_full(rows, t, k):
    best_d = np.full(k, np.inf, np.float32)
    best_i = np.full(k, -1, np.int64)
    kth = np.float32(np.inf)
    for r in range(rows.shape[0]):
        c = rows[r]
        d = (t[0, c[0]] + t[1, c[1]]) + (t[2, c[2]] + t[3, c[3]])
        d += (t[4, c[4]] + t[5, c[5]]) + (t[6, c[6]] + t[7, c[7]])
        d += (t[8, c[8]] + t[9, c[9]]) + (t[10, c[10]] + t[11, c[11]])
        d += (t[12, c[12]] + t[13, c[13]]) + (t[14, c[14]] + t[15, c[15]])
        if d >= kth:
            continue
        j = k - 1
        while j > 0 and best_d[j - 1] > d:
            best_d[j] = best_d[j - 1]
            best_i[j] = best_i[j - 1]
            j -= 1
        best_d[j] = d
        best_i[j] = r
        kth = best_d[k - 1]
    return best_i, best_d



def prepare(codes, codebook):
    return np.ascontiguousarray(codes.T), np.ascontiguousarray(codebook), np.empty((16, 256), np.float32)


def search(index, query, k):
    rows, codebook, table = index
    _table(query, codebook, table)
    if rows.shape[0] > GATE:
        return _scan(rows, table, k)
    return _scan_full(rows, table, k)
