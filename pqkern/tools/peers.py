"""Peer headroom: the kernel beside FAISS, Lance and numpy on the same codes, and the hardware floors.

``--workload flat`` (default): every method searches the active fixture's codes with its frozen
codebook, single-threaded, one query per call timed with ``perf_counter_ns`` (batched variants:
the batch's time per query). The kernels run in jailed workers side by side, taking turns every
10 queries, so their ratios share this machine's slow phases; FAISS, Lance and numpy follow,
one after another, and their ratios to the kernels carry that noise (10-20% run to run here).
FAISS gets an ``IndexPQ`` (M=16, nbits=8) with the frozen codebook
installed and the codes added as they are; Lance gets an ``IVF_PQ`` index with one partition, a
zero centroid and the frozen codebook, so it encodes to the same codes, searched with
``nprobes=1`` and no refine. The floors: one streaming pass over the code bytes, and 16 table
reads per row with the codes already in cache.

With ``--kernel``, the first kernel's size curve follows (``size_curve.py``): its paired speed-up over
the frozen seed on flat scans of the fixture's first 1k, 4k, 16k, 64k, 256k rows and the whole base.

``--workload ivf``: the IVF_PQ layout of ``pqkern/bench/ivf.py``. Lance gets an ``IVF_PQ`` index
on exactly its partitions, coarse centroids, residual codebook and codes (precomputed shuffle
buffers, read back and compared), FAISS an ``IndexIVFPQ`` with the same quantizer, codebook and
inverted lists; both and a numpy ADC search ``ivf.NPROBES`` partitions per query, and each is
checked against the exact ADC over the probed partitions (the IVF oracle). The table also says
how many partitions Lance's default "Auto" nprobes policy searches on these queries.

Needs the ``peers`` extra: ``pip install -e '.[peers]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numba
import numpy as np

from pqkern.bench import affinity
from pqkern.bench import ivf as ivf_layout
from pqkern.bench.fixture import load_fixture
from pqkern.bench.policy import check_kernel
from pqkern.bench.queries import QuerySet, draw_seed, fixed_queries, fresh_queries, warm_vectors
from pqkern.bench.reference import adc_distances, adc_table, adc_topk, tie_aware_recall
from pqkern.bench.runner import DEFAULT_KERNEL, K
from pqkern.bench.session import KernelProcess
from pqkern.bench.workloads import make

THREAD_VARS = ("OMP_NUM_THREADS", "LANCE_CPU_THREADS", "TOKIO_WORKER_THREADS", "RAYON_NUM_THREADS")
INTERLEAVE = 10  # queries per turn when several kernels are timed side by side
INSTALL_HINT = "the peers need the optional extra: pip install -e '.[peers]' (faiss-cpu, pylance)"


def single_threaded() -> None:
    """Pin every library's thread pool to one thread (before faiss or lance is imported)."""
    for var in THREAD_VARS:
        os.environ[var] = "1"


def timed(search, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Call ``search(q) -> (ids, dists)`` once per query: ``(ns per query, ids, dists)``."""
    ns = np.empty(len(queries), np.int64)
    ids = np.empty((len(queries), k), np.int64)
    dists = np.empty((len(queries), k), np.float64)
    for i, q in enumerate(queries):
        t0 = time.perf_counter_ns()
        found = search(q)
        ns[i] = time.perf_counter_ns() - t0
        ids[i], dists[i] = found
    return ns, ids, dists


def numpy_search(codes: np.ndarray, codebook: np.ndarray):
    rows = np.arange(16)[:, None]

    def search(q):
        table = ((codebook - q.reshape(16, 1, 8)) ** 2).sum(axis=2)
        d = table[rows, codes].sum(axis=0)
        top = np.argpartition(d, K - 1)[:K]
        top = top[np.argsort(d[top], kind="stable")]
        return top, d[top]

    return search


def faiss_index(codes: np.ndarray, codebook: np.ndarray):
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexPQ(128, 16, 8)
    faiss.copy_array_to_vector(np.ascontiguousarray(codebook, np.float32).ravel(), index.pq.centroids)
    index.is_trained = True
    index.add_sa_codes(np.ascontiguousarray(codes.T))
    return index


def lance_dataset(fx, folder: Path):
    """A Lance dataset of the base vectors with an IVF_PQ index on the frozen codebook (built once, cached)."""
    import lance
    import pyarrow as pa

    marker = folder / "pqkern-codebook.sha256"
    if marker.is_file() and marker.read_text().strip() == fx.codebook_sha256:
        return lance.dataset(str(folder / "base.lance"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n = fx.num_base
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(fx.base, np.float32).ravel()), 128)
    ds = lance.write_dataset(pa.table({"vector": vectors}), str(folder / "base.lance"), max_rows_per_file=max(n, 1 << 20))
    ds.create_index("vector", "IVF_PQ", metric="l2", num_partitions=1, num_sub_vectors=16, num_bits=8,
                    ivf_centroids=np.zeros((1, 128), np.float32), pq_codebook=np.ascontiguousarray(fx.codebook, np.float32))
    marker.write_text(fx.codebook_sha256 + "\n")
    return lance.dataset(str(folder / "base.lance"))


def lance_search(ds, nprobes: int = 1, k: int = K):
    def search(q):
        t = ds.to_table(nearest={"column": "vector", "q": q, "k": k, "nprobes": nprobes}, columns=["_rowid", "_distance"])
        return t["_rowid"].to_numpy(), t["_distance"].to_numpy()

    return search


@numba.njit
def _stream(codes):
    total = 0
    for s in range(codes.shape[0]):
        for r in range(codes.shape[1]):
            total += codes[s, r]
    return total


@numba.njit
def _lookups(t, hot, n):
    """16 table reads per row for ``n`` rows, cycling over a few cached rows: no memory traffic, no loop-carried sums."""
    total = np.float32(0.0)
    done = 0
    while done < n:
        for r in range(min(hot.shape[0], n - done)):
            c = hot[r]
            total += (((t[0, c[0]] + t[1, c[1]]) + (t[2, c[2]] + t[3, c[3]])) + ((t[4, c[4]] + t[5, c[5]])
                      + (t[6, c[6]] + t[7, c[7]]))) + (((t[8, c[8]] + t[9, c[9]]) + (t[10, c[10]] + t[11, c[11]]))
                      + ((t[12, c[12]] + t[13, c[13]]) + (t[14, c[14]] + t[15, c[15]])))
        done += hot.shape[0]
    return total


def _time_only(fn, repeats: int) -> np.ndarray:
    ns = np.empty(repeats, np.int64)
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        ns[i] = time.perf_counter_ns() - t0
    return ns


def _batched(run, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t0 = time.perf_counter_ns()
    ids, dists = run(queries)
    per = (time.perf_counter_ns() - t0) // len(queries)
    return np.full(len(queries), per, np.int64), ids, dists


def kernel_times(fx, workload: str, paths: list[Path], qset: QuerySet, k: int = K) -> list[tuple[np.ndarray, np.ndarray]]:
    """Kernels files timed as the runner times them (a jailed worker each, each query once): ``[(ns per query, ids)]``.

    The workers run side by side and take turns, a block of ``INTERLEAVE`` queries each, in a rotating order, so a
    slow phase of this machine (they last seconds here) hits every kernel alike instead of whichever ran then."""
    for path in paths:
        check_kernel(path)
    n = len(qset)
    wl = make(workload, fx, qset, k)
    warm = warm_vectors(fx, qset.seed)
    blocks = _interleaved(paths, workload, wl, warm, k, n)
    out = []
    for path, got in zip(paths, blocks, strict=True):
        ids, dists = np.concatenate([b.ids for b in got]), np.concatenate([b.dists for b in got])
        checked = wl.check(np.arange(n), ids, dists, 0.01)
        problem = wl.rank_problem(checked, 0.01)
        if problem:
            raise RuntimeError(f"{path}: {problem}")
        out.append((np.concatenate([b.wall_ns for b in got]), checked.ids))
    return out


def _interleaved(paths: list[Path], workload: str, wl, warm, k: int, n: int) -> list[list]:
    """Every query of each kernel, the workers taking turns a block of ``INTERLEAVE`` queries each, once all are ready
    held on one CPU and the judge on another (``bench/affinity.py``)."""
    workers: list[KernelProcess] = []
    try:
        for path in paths:
            workers.append(KernelProcess(path.read_text(encoding="utf-8"), {workload: wl.spec()}, warm, k,
                                         time.monotonic() + 1800))
        for worker in workers:
            worker.ready()
        blocks: list[list] = [[] for _ in workers]
        with affinity.timing([worker.proc.pid for worker in workers], affinity.plan()):
            for turn, a in enumerate(range(0, n, INTERLEAVE)):
                request = wl.request(np.arange(a, min(a + INTERLEAVE, n)))
                for i in np.roll(np.arange(len(workers)), -turn):
                    blocks[i].append(workers[i].search(workload, *request))
        for worker in workers:
            worker.finish()
    finally:
        for worker in workers:
            worker.close()
    return blocks


def kernel_names(paths: list[Path]) -> list[str]:
    return [p.name if i == 0 else f"{p.name} ({p.parent.name})" for i, p in enumerate(paths)]


def measure(fx, qset: QuerySet, kernel_paths: list[Path], lance_dir: Path) -> list[dict]:
    """Run every method on the queries ``qset``; return the table rows (the first kernel first: ratios are to it)."""
    import faiss  # noqa: F401  (fail early, before any timing)
    import lance  # noqa: F401

    codes, codebook = np.ascontiguousarray(fx.codes), np.ascontiguousarray(fx.codebook)
    qs = qset.vectors  # read-only, as the runner hands them over
    warm = np.array(fx.base[:3], np.float32)
    warm.setflags(write=False)  # same array type as the queries: no JIT compile inside the timing
    names = kernel_names(kernel_paths)
    n = len(qs)
    results = {name: (*timed, None) for name, timed in zip(names, kernel_times(fx, "flat", kernel_paths, qset), strict=True)}
    methods = {}
    fidx = faiss_index(codes, codebook)
    methods["faiss IndexPQ"] = lambda q: (lambda d, i: (i[0], d[0]))(*fidx.search(q[None, :], K))
    ds = lance_dataset(fx, lance_dir)
    methods["lance IVF_PQ per call"] = lance_search(ds)
    methods["numpy ADC"] = numpy_search(codes, codebook)
    for name, search in methods.items():
        for w in warm:
            search(w)
        results[name] = timed(search, qs)

    def lance_batch(batch):
        t = ds.to_table(nearest={"column": "vector", "q": batch, "k": K, "nprobes": 1}, columns=["_rowid", "_distance"])
        return t["_rowid"].to_numpy().reshape(len(batch), K), t["_distance"].to_numpy().reshape(len(batch), K)

    lance_batch(warm)
    results["lance IVF_PQ batched"] = _batched(lance_batch, qs)
    order = [*names, "faiss IndexPQ", "lance IVF_PQ per call", "lance IVF_PQ batched", "numpy ADC"]
    results = {name: results[name] for name in order}
    gt = qset.groundtruth(np.arange(n), K)
    ref = [adc_topk(codes, codebook, q, K)[1] for q in qs]
    rows = []
    for name, (ns, ids, _) in results.items():
        agree = np.mean([np.allclose(np.sort(adc_distances(codes, codebook, q, i)), r, rtol=1e-5)
                         for q, i, r in zip(qs, ids, ref, strict=True)])
        rows.append({"method": name, "ns": ns, "recall_at_10": tie_aware_recall(fx.base, qs, ids, gt)[0], "agreement": agree})
    _stream(codes)
    rows.append({"method": "floor: one pass over the codes", "ns": _time_only(lambda: _stream(codes), 20)})
    hot = np.ascontiguousarray(codes[:, :256].T)  # 4 KiB of codes that stay in L1: only the table reads cost
    table = np.ones((16, 256), np.float32)
    _lookups(table, hot, 10)
    rows.append({"method": "floor: 16 table reads per row", "ns": _time_only(lambda: _lookups(table, hot, fx.num_base), 20)})
    base = float(np.mean(rows[0]["ns"]))
    for row in rows:
        ns = row.pop("ns")
        row.update(mean_ns=int(np.mean(ns)), median_ns=int(np.median(ns)), min_ns=int(ns.min()), max_ns=int(ns.max()),
                   ratio_to_kernel=float(np.mean(ns)) / base)  # throughput: time summed over the same queries
    return rows


def query_set(fx, count: int, fresh: bool) -> QuerySet:
    """The peers' queries: the fixture's first ``count``, or ``count`` fresh ones (as the upstream page uses)."""
    return fresh_queries(fx, draw_seed(), count) if fresh else fixed_queries(fx, count)


# --- the IVF workload --------------------------------------------------------------------------------------------


def lance_ivf_dataset(fx, ivf, folder: Path):
    """A Lance dataset of the base vectors with an IVF_PQ index on exactly ``ivf``'s layout (built once, verified, cached).

    The partitions and codes go in as precomputed shuffle buffers (``row_id``, ``__ivf_part_id``,
    ``__pq_code``), which Lance stores verbatim, with our centroids and residual codebook; the
    index is read back partition by partition and compared with ours before it is used.
    """
    import lance
    import pyarrow as pa

    stamp = f"{ivf.centroids_sha256} {ivf.codebook_sha256}"
    marker = folder / "pqkern-ivf.verified"
    if marker.is_file() and marker.read_text().strip() == stamp:
        return lance.dataset(str(folder / "base.lance"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n, parts = fx.num_base, ivf.num_partitions
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(fx.base, np.float32).ravel()), 128)
    ds = lance.write_dataset(pa.table({"vector": vectors}), str(folder / "base.lance"), max_rows_per_file=max(n, 1 << 20))
    del vectors
    stored = np.concatenate([ivf.partition(p).T for p in range(parts)])  # (N, 16): each stored row's code
    schema = pa.schema([("row_id", pa.uint64()), ("__ivf_part_id", pa.uint32()), ("__pq_code", pa.list_(pa.uint8(), 16))])
    buffers = pa.table([pa.array(np.asarray(ivf.row_ids, np.uint64)),
                        pa.array(np.repeat(np.arange(parts, dtype=np.uint32), np.diff(ivf.offsets))),
                        pa.FixedSizeListArray.from_arrays(pa.array(stored.ravel()), 16)], schema=schema)
    sb = lance.write_dataset(buffers, str(folder / "shuffle.lance"), schema=schema, data_storage_version="legacy")
    ds.create_index("vector", "IVF_PQ", metric="l2", num_partitions=parts, num_sub_vectors=16, num_bits=8,
                    ivf_centroids=np.ascontiguousarray(ivf.centroids), pq_codebook=np.ascontiguousarray(ivf.codebook),
                    precomputed_shuffle_buffers=[f.path for fr in sb.get_fragments() for f in fr.data_files()],
                    precomputed_shuffle_buffers_path=str(folder / "shuffle.lance" / "data"))
    ds = lance.dataset(str(folder / "base.lance"))
    check_lance_ivf(ds, ivf)
    shutil.rmtree(folder / "shuffle.lance")
    marker.write_text(stamp + "\n")
    return ds


def check_lance_ivf(ds, ivf) -> None:
    """Raise unless Lance's index holds exactly ``ivf``'s partitions, row ids and codes (stored transposed, like ours)."""
    from lance.dataset import VectorIndexReader

    reader = VectorIndexReader(ds, "vector_idx")
    if reader.num_partitions() != ivf.num_partitions:
        raise RuntimeError(f"Lance built {reader.num_partitions()} partitions, expected {ivf.num_partitions}")
    for p in range(ivf.num_partitions):
        t = reader.read_partition(p, with_vector=True)
        a, b = int(ivf.offsets[p]), int(ivf.offsets[p + 1])
        rows = t.column("_rowid").to_numpy().astype(np.int64)
        codes = t.column("__pq_code").combine_chunks().values.to_numpy(zero_copy_only=False) if b > a else np.empty(0)
        if not np.array_equal(rows, ivf.row_ids[a:b]) or not np.array_equal(codes, ivf.codes[16 * a : 16 * b]):
            raise RuntimeError(f"Lance's IVF_PQ partition {p} differs from ours (row ids or codes)")


def lance_auto_nprobes(ds, queries: np.ndarray) -> np.ndarray:
    """Partitions Lance's default nprobes policy ("Auto": no ``nprobes``) searches per query, from its analyzed plan."""
    searched = []
    for q in queries:
        plan = ds.scanner(nearest={"column": "vector", "q": q, "k": K}).analyze_plan()
        searched.append(int(re.search(r"partitions_searched=(\d+)", plan).group(1)))
    return np.array(searched)


def faiss_ivf_index(ivf):
    """A FAISS ``IndexIVFPQ`` with ``ivf``'s coarse quantizer, residual codebook and inverted lists, as they are."""
    import faiss

    faiss.omp_set_num_threads(1)
    quantizer = faiss.IndexFlatL2(128)
    quantizer.add(np.ascontiguousarray(ivf.centroids))
    index = faiss.IndexIVFPQ(quantizer, 128, ivf.num_partitions, 16, 8)  # by_residual, as Lance for L2
    index.own_fields = True
    quantizer.this.disown()
    faiss.copy_array_to_vector(np.ascontiguousarray(ivf.codebook).ravel(), index.pq.centroids)
    index.is_trained = True
    index.use_precomputed_table = 0  # a table per probed list from q - c, like Lance (no ||q - c||^2 decomposition)
    for p in range(ivf.num_partitions):
        a, b = int(ivf.offsets[p]), int(ivf.offsets[p + 1])
        ids = np.ascontiguousarray(ivf.row_ids[a:b], np.int64)
        codes = np.ascontiguousarray(ivf.partition(p).T)
        index.invlists.add_entries(p, b - a, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    index.ntotal = int(ivf.offsets[-1])
    index.nprobe = ivf.nprobes
    return index


def numpy_ivf_search(ivf, k: int = K):
    """numpy ADC over the ``nprobes`` nearest partitions (float32 centroid distances), merged by (distance, id)."""
    centroids, codebook = np.asarray(ivf.centroids), np.asarray(ivf.codebook)
    parts = [np.asarray(ivf.partition(p)) for p in range(ivf.num_partitions)]
    ids = [np.asarray(ivf.row_ids[a:b]) for a, b in zip(ivf.offsets[:-1], ivf.offsets[1:], strict=True)]
    rows = np.arange(16)[:, None]

    def search(q):
        probes = np.argsort(((centroids - q) ** 2).sum(axis=1), kind="stable")[: ivf.nprobes]
        d = np.concatenate([((codebook - (q - centroids[p]).reshape(16, 1, 8)) ** 2).sum(axis=2)[rows, parts[p]].sum(axis=0)
                            for p in probes])
        g = np.concatenate([ids[p] for p in probes])
        top = np.lexsort((g, d))[:k]
        return g[top], d[top]

    return search


def ivf_adc(ivf, residuals: np.ndarray, probes: np.ndarray, ids: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Float64 ADC distances of global ``ids`` for a query with these ``residuals`` on its ``probes`` (inf for a row
    outside its probed partitions)."""
    out = np.full(len(ids), np.inf)
    residuals = np.asarray(residuals, np.float64)
    for i, g in enumerate(ids):
        pos = int(where[g]) if 0 <= g < len(where) else -1
        p = int(np.searchsorted(ivf.offsets, pos, side="right")) - 1
        hit = np.flatnonzero(probes == p)
        if pos >= 0 and hit.size:
            code = np.asarray(ivf.partition(p)[:, pos - int(ivf.offsets[p])], np.int64)
            out[i] = adc_table(ivf.codebook, residuals[hit[0]])[np.arange(16), code].sum()
    return out


def measure_ivf(fx, qset: QuerySet, kernel_paths: list[Path] = (), k: int = K) -> dict:
    """The IVF table on the queries ``qset``: the kernels (jailed, as the runner times them), Lance, FAISS and numpy on
    the IVF layout, each checked against the IVF oracle and ground truth; ratios are to the first kernel, if any."""
    ivf = ivf_layout.load_ivf(fx, build=True)  # a tool: it builds the layout if this fixture has none yet
    qs = qset.vectors
    qids = np.arange(len(qs))
    warm = np.array(fx.base[:3], np.float32)
    paths = list(kernel_paths)
    results = {name: (*timed, None) for name, timed in
               zip(kernel_names(paths), kernel_times(fx, "ivf", paths, qset, k), strict=True)}
    ds = lance_ivf_dataset(fx, ivf, ivf.folder / "lance")
    fidx = faiss_ivf_index(ivf)
    methods = {
        "lance IVF_PQ": lance_search(ds, ivf.nprobes, k),
        "faiss IndexIVFPQ": lambda q: (lambda d, i: (i[0], d[0]))(*fidx.search(q[None, :], k)),
        "numpy IVF ADC": numpy_ivf_search(ivf, k),
    }
    for name, search in methods.items():
        for w in warm:
            search(w)
        results[name] = timed(search, qs, k)
    oracle_ids, oracle_d = make("ivf", fx, qset, k).oracle(qids)
    probes = ivf.probes_of(qs)
    residuals = ivf.residuals_of(qs, probes)
    where = np.empty(fx.num_base, np.int64)
    where[ivf.row_ids] = np.arange(fx.num_base)
    gt = qset.groundtruth(qids, k)
    r1, r10 = tie_aware_recall(fx.base, qs, oracle_ids, gt, at=k)
    rows = [{"method": f"oracle: exact ADC, {ivf.nprobes} probes", "recall_at_10": r1, "recall_10_at_10": r10}]
    base = None
    for name, (ns, ids, _) in results.items():
        agree = np.mean([np.allclose(np.sort(ivf_adc(ivf, residuals[j], probes[j], ids[j], where)), oracle_d[j], rtol=1e-5)
                         for j in qids])
        r1, r10 = tie_aware_recall(fx.base, qs, ids, gt, at=k)
        base = base or (float(np.mean(ns)) if kernel_paths else None)
        rows.append({"method": name, "mean_ns": int(np.mean(ns)), "median_ns": int(np.median(ns)), "min_ns": int(ns.min()),
                     "max_ns": int(ns.max()),
                     "recall_at_10": r1, "recall_10_at_10": r10, "agreement": float(agree),
                     **({"ratio_to_kernel": float(np.mean(ns)) / base} if base else {})})
    auto = lance_auto_nprobes(ds, qs)
    return {"fixture_id": fx.fixture_id, "num_base": fx.num_base, "workload": "ivf", "num_partitions": ivf.num_partitions,
            "nprobes": ivf.nprobes, "queries": len(qs), "query_set": qset.describe(), "k": k, "rows": rows,
            "lance_auto_nprobes": {"median": float(np.median(auto)), "mean": float(auto.mean()), "min": int(auto.min()),
                                   "max": int(auto.max()), "quartiles": [float(x) for x in np.percentile(auto, [25, 75])]}}


def format_table(rows: list[dict]) -> str:
    """The rows as a text table; the ``x kernel`` column only when the rows have ratios (the flat table)."""
    ratios = any("ratio_to_kernel" in r for r in rows)
    head = f"{'method':32} {'mean ns/q':>12} {'range':>23} {'recall@10':>9}{' x kernel' if ratios else ''} {'agrees':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        recall = f"{r['recall_at_10']:.4f}" if "recall_at_10" in r else "-"
        agree = f"{r['agreement']:.0%}" if "agreement" in r else "-"
        ns = f"{r['mean_ns']:>12,} {r['min_ns']:>11,}-{r['max_ns']:<11,}" if "mean_ns" in r else f"{'-':>12} {'-':>23}"
        ratio = (f" {r['ratio_to_kernel']:>8.2f}" if "ratio_to_kernel" in r else f" {'-':>8}") if ratios else ""
        lines.append(f"{r['method']:32} {ns} {recall:>9}{ratio} {agree:>7}")
    return "\n".join(lines)


def _print_ivf(fx, table: dict) -> None:
    auto = table["lance_auto_nprobes"]
    print(f"fixture {fx.fixture_id}, IVF_PQ: {table['num_partitions']} partitions, nprobes {table['nprobes']}, "
          f"{table['queries']} queries, single-threaded")
    print(format_table(table["rows"]))
    print(f"lance default (Auto) nprobes on these queries: median {auto['median']:g}, mean {auto['mean']:.2f}, "
          f"quartiles {auto['quartiles'][0]:g}-{auto['quartiles'][1]:g}, range {auto['min']}-{auto['max']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-peers", description=__doc__.split("\n")[0])
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--queries", type=int, default=200, help="queries timed per method (default 200)")
    p.add_argument("--kernel", type=Path, action="append",
                   help="kernels file; repeat to compare several (default: pqkern/kernels.py); ratios are to the first")
    p.add_argument("--workload", choices=("flat", "ivf", "both"), default="flat",
                   help="flat (default): all codes; ivf: the IVF_PQ layout, ivf.NPROBES partitions per query; both, in one run")
    p.add_argument("--fresh-queries", action="store_true", help="fresh queries instead of the fixture's first ones")
    p.add_argument("--json", type=Path, help="also write the table here (default: trials/peers.json, trials/peers-ivf.json)")
    args = p.parse_args(argv)
    single_threaded()
    try:
        import faiss  # noqa: F401
        import lance  # noqa: F401
    except ImportError as e:
        print(f"pqkern-peers: {e.name} is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 1
    fx = load_fixture(args.source)
    kernels = args.kernel or [DEFAULT_KERNEL]
    qset = query_set(fx, args.queries, args.fresh_queries)
    if args.workload in ("flat", "both"):
        numba.set_num_threads(1)  # after the fixture, whose one-off build may use every core
        rows = measure(fx, qset, kernels, fx.cache_dir / "lance")
        print(f"fixture {fx.fixture_id}, flat, {len(qset)} queries ({qset.describe()}), single-threaded")
        print(format_table(rows))
        _write(args.json or Path("trials/peers.json"), {"fixture_id": fx.fixture_id, "num_base": fx.num_base, "rows": rows})
    if args.workload in ("ivf", "both"):
        table = measure_ivf(fx, qset, kernels)
        _print_ivf(fx, table)
        ivf_json = (args.json.with_name(args.json.stem + "-ivf.json") if args.json and args.workload == "both"
                    else args.json or Path("trials/peers-ivf.json"))
        _write(ivf_json, table)
    if args.kernel:
        from pqkern.tools import size_curve

        rows, problem = size_curve.measure(fx, fx.source, kernels[0].read_text(encoding="utf-8"))
        print(f"size curve of {kernels[0].name}: paired speed-up over the seed on the first N rows (fresh queries)")
        for r in rows:
            print(f"  {r['rows']:>9,} rows  {r['speedup']:7.3f}x [{r['lo']:.3f}, {r['hi']:.3f}]")
        if problem:
            print(f"  {problem}")
    return 0


def _write(path: Path, table: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=1) + "\n")
    print(f"table: {path}")


if __name__ == "__main__":
    sys.exit(main())
