"""The IVF_PQ workload's data (immutable bench): pylance 14.0.2's default IVF_PQ layout of the fixture's base vectors.

Where Lance really runs the kernel: an IVF index whose partitions each hold PQ codes of
*residuals* (row minus its partition's centroid), searched per probed partition with the
residual query. Built the way pylance 14.0.2 builds IVF_PQ by default for L2 (the Rust files
and functions are those of the lance repository, as cited in each constant), except that
everything here is deterministic on every machine:

1. ``num_partitions``: ``clamp(num_rows // 8192, 1, 4096)``.
2. Coarse k-means: Lloyd on a fixed sample of ``num_partitions * 256`` base rows, random
   init from the sample, 50 iterations, float64, then stored as float32 centroids.
3. Every base row goes to its nearest centroid (exact float64 L2, ties to the lowest index).
4. The residual PQ codebook (16 x 256 x 8) is ``pq.train_codebook`` on the float32
   residuals of a fixed 65,536-row sample; every base row is encoded as its residual.
5. Storage as Lance keeps it: partition by partition, rows in increasing id, each partition's
   codes transposed (16, n_p).

The centroids and the residual codebook are trained once and frozen with their sha256, like
the fixture's codebook; codes, offsets and row ids are derived, cached in a folder named
after the parameters and both sha256 prefixes. ``load_ivf(fx)`` loads it; ``datasets.ensure`` builds it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from pqkern.bench import pq
from pqkern.bench.fixture import FixtureError, load_npy, save_npy, sha256_file
from pqkern.bench.oracle import SCREEN_MARGIN, load_block, save_block, screen_rows

DIM, M, KSUB, DSUB = 128, 16, 256, 8

# rust/lance-index/src/lib.rs, IndexType::target_partition_size(): IvfPq => 8192.
TARGET_PARTITION_SIZE = 8192
# rust/lance-index/src/vector/ivf/builder.rs, recommended_num_partitions(): clamp(rows / target, 1, 4096).
MAX_PARTITIONS = 4096
# rust/lance/src/index/vector/ivf.rs, IvfBuildParams::default(): sample_rate 256 rows per partition ("see faiss").
IVF_SAMPLE_RATE = 256
# rust/lance-index/src/vector/kmeans.rs (KMeansParams): max_iters 50, KMeanInit::Random (k distinct sample rows).
# Lance also stops early (tolerance 1e-4), adds a balance term and splits k > 256 hierarchically; we run the
# plain 50 Lloyd iterations (the default fixtures have at most 122 partitions).
IVF_ITERATIONS = 50
# rust/lance-index/src/vector/pq/builder.rs, PQBuildParams: 16 sub-vectors, 8 bits, 50 iterations, sample_rate 256,
# i.e. 256 * 256 = 65,536 residual rows (pq.SAMPLE_ROWS, pq.ITERATIONS); use_residual() is true for L2.
PQ_SAMPLE_ROWS = pq.SAMPLE_ROWS
# Lance 14's default nprobes is "Auto" (rust/lance/src/io/exec/knn/adaptive_probe.rs; the plan shows minimum_nprobes=1,
# maximum_nprobes=None): a centroid-distance heuristic, so the partitions searched vary per query. We fix nprobes to
# the median of Lance's own `partitions_searched` (from its analyze_plan) under that default policy, on our default
# layout: synthetic 1M, 122 partitions, the first 1,000 queries, Lance IVF_PQ on exactly these partitions and codes:
# median 15, mean 14.9, quartiles 7-22, range 6-24 (pylance 14.0.2; `pqkern-peers --workload ivf --queries 1000`
# prints the same figures).
NPROBES = 15
SEED = 0
STREAMS = {"coarse sample": 200, "coarse init": 201, "pq sample": 202}
# Bound on the gap between a BLAS-screened and the exact distance, relative to (|x| + max |c|)^2: see _nearest.
SCREEN_ERROR = 4.0 * (DIM + 4) * 2.0**-53
SCREEN_CELLS = 1 << 21  # (row, centroid) distances screened at a time: 16 MB per float64 matrix
K_ORACLE = 100
ORACLE_BLOCK = 1000
ENCODE_CHUNK = 1 << 16


@dataclass(frozen=True)
class IvfFixture:
    """One fixture's IVF_PQ layout; arrays are read-only memory maps."""

    fixture_id: str
    centroids: np.ndarray  # (P, 128) float32, the coarse quantizer
    codebook: np.ndarray  # (16, 256, 8) float32, trained on residuals
    codes: np.ndarray  # (16 * N,) uint8: partition p is codes[16 * offsets[p] : 16 * offsets[p + 1]].reshape(16, n_p)
    offsets: np.ndarray  # (P + 1,) int64
    row_ids: np.ndarray  # (N,) int64: global id of each stored row, in partition order
    queries: np.ndarray  # (nq, 128) float32, the fixture's queries
    files: dict  # {"codes", "offsets", "codebook"}: paths the worker maps
    centroids_sha256: str
    codebook_sha256: str
    nprobes: int
    folder: Path  # the derived files and the oracle's cache
    derived: dict = field(default_factory=dict, repr=False)  # made on first use: the codes row by row, stored order

    @property
    def num_partitions(self) -> int:
        return int(self.centroids.shape[0])

    def partition(self, p: int) -> np.ndarray:
        """Partition ``p``'s codes, ``(16, n_p)`` uint8, C-contiguous: what the kernel's ``prepare`` receives."""
        a, b = int(self.offsets[p]), int(self.offsets[p + 1])
        return self.codes[16 * a : 16 * b].reshape(16, b - a)

    def probes_of(self, vectors: np.ndarray) -> np.ndarray:
        """``(n, nprobes)`` int32: each vector's nearest centroids by exact float64 L2, ties by centroid index."""
        d = _exact_distances(np.asarray(vectors, np.float64), np.asarray(self.centroids, np.float64))
        return np.argsort(d, axis=1, kind="stable")[:, : self.nprobes].astype(np.int32)

    def residuals_of(self, vectors: np.ndarray, probes: np.ndarray) -> np.ndarray:
        """``(n, nprobes, 128)`` float32: vector minus each probed centroid, in float32 as Lance does (``q - c``)."""
        return np.asarray(vectors, np.float32)[:, None, :] - self.centroids[probes]

    def probes(self, query_ids: np.ndarray) -> np.ndarray:
        """:meth:`probes_of` the fixture's queries ``query_ids``."""
        return self.probes_of(self.queries[np.asarray(query_ids, np.int64)])

    def residuals(self, query_ids: np.ndarray) -> np.ndarray:
        """:meth:`residuals_of` the fixture's queries ``query_ids``."""
        q = self.queries[np.asarray(query_ids, np.int64)]
        return self.residuals_of(q, self.probes_of(q))

    def oracle_topk(self, query_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n, k) int64 global, dists (n, k) float64)``: the exact ADC top-k over each query's probed partitions.

        The table of a probed partition is built in float64 from its float32 residual query (the one
        the kernel receives), entry by entry over the 8 dimensions in order; a row's distance is the
        sum of its 16 entries, sub-space 0 to 15 in order; the top-k is ordered by (distance, global
        id), padded with id -1 and distance inf when the probed partitions hold fewer than k rows.
        For the fixture's queries ``query_ids``: computed in blocks of 1,000 queries, cached in ``folder/oracle``.
        """
        if k > K_ORACLE:
            raise ValueError(f"the IVF oracle keeps the top {K_ORACLE}, asked for {k}")
        query_ids = np.asarray(query_ids, np.int64)
        blocks = {}
        for b in np.unique(query_ids // ORACLE_BLOCK):
            blocks[int(b)] = self._oracle_block(int(b))
        ids = np.empty((len(query_ids), k), np.int64)
        dists = np.empty((len(query_ids), k))
        for j, qi in enumerate(query_ids):
            block_ids, block_d = blocks[int(qi) // ORACLE_BLOCK]
            ids[j], dists[j] = block_ids[qi % ORACLE_BLOCK, :k], block_d[qi % ORACLE_BLOCK, :k]
        return ids, dists

    def screened_topk(self, residuals: np.ndarray, probes: np.ndarray, k: int,
                      bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`oracle_topk` for any residual queries (n, nprobes, 128) on their probes, given an upper bound on each
        one's k-th distance (``inf``: none); exact for any valid bound (``pqkern/bench/oracle.py``), not cached."""
        if "rows" not in self.derived:
            self.derived["rows"] = np.ascontiguousarray(np.concatenate([self.partition(p).T for p in range(self.num_partitions)]))
        return _screened_probed_topk(self.derived["rows"], np.asarray(self.offsets), np.asarray(self.row_ids),
                                     np.asarray(self.codebook, np.float64), np.asarray(residuals, np.float64),
                                     np.asarray(probes), np.asarray(bounds, np.float64), k)

    def _oracle_block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = b * ORACLE_BLOCK, min((b + 1) * ORACLE_BLOCK, self.queries.shape[0])
        path = self.folder / "oracle" / f"n{self.nprobes}-k{K_ORACLE}-q{start}-{stop}.npz"
        block = load_block(path, stop - start)
        if block is not None:
            return block
        qids = np.arange(start, stop)
        ids, dists = self.screened_topk(self.residuals(qids), self.probes(qids), K_ORACLE, np.full(stop - start, np.inf))
        path.parent.mkdir(exist_ok=True)
        save_block(path, ids, dists)
        return ids, dists


def num_partitions(num_rows: int) -> int:
    """Lance's default partition count for IVF_PQ (``recommended_num_partitions``)."""
    return int(min(max(num_rows // TARGET_PARTITION_SIZE, 1), MAX_PARTITIONS))


def built(fx) -> bool:
    """Whether ``fx``'s IVF layout is trained and built (it may still fail its checks when loaded)."""
    if _frozen_state(fx.cache_dir) == "absent":
        return False
    parts = num_partitions(fx.num_base)
    return any((folder / "codes.npy").is_file() for folder in fx.cache_dir.glob(f"ivf-p{parts}-c*"))


def load_ivf(fx, build: bool = False) -> IvfFixture:
    """The IVF_PQ layout of fixture ``fx``, loaded and verified; with ``build``, trained and built first if it is not
    (progress on stderr: ``datasets.ensure`` does that, never the judge)."""
    if not build and not built(fx):
        raise FixtureError(f"{fx.fixture_id}: the IVF layout is not built yet: build it first with "
                           f"`python -m pqkern.bench.datasets --source {fx.source} --workload ivf` (pqkern-run and "
                           f"pqkern-trial do that themselves)")
    n = fx.num_base
    parts = num_partitions(n)
    labels = None
    if _frozen_state(fx.cache_dir) == "absent":
        labels = _train(fx, parts)
    centroids, c_sha = _load_frozen(fx.cache_dir, "centroids", (parts, DIM))
    codebook, r_sha = _load_frozen(fx.cache_dir, "codebook", (M, KSUB, DSUB))
    folder = fx.cache_dir / f"ivf-p{parts}-c{c_sha[:16]}-r{r_sha[:16]}"
    files = {"codes": folder / "codes.npy", "offsets": folder / "offsets.npy", "row_ids": folder / "row_ids.npy"}
    if not all(f.is_file() for f in files.values()):
        _build_layout(fx, centroids, codebook, labels, folder)
    codes, offsets, row_ids = (load_npy(files[key]) for key in ("codes", "offsets", "row_ids"))
    _check_layout(folder, codes, offsets, row_ids, n, parts)
    worker_files = {"codes": str(files["codes"]), "offsets": str(files["offsets"]),
                    "codebook": str(_frozen_paths(fx.cache_dir, "codebook")[0])}
    return IvfFixture(fx.fixture_id, centroids, codebook, codes, offsets, row_ids, fx.queries, worker_files,
                      c_sha, r_sha, min(NPROBES, parts), folder)


# --- training (once per fixture) -------------------------------------------------------------------------------


def _train(fx, parts: int) -> np.ndarray:
    """Train and freeze the coarse centroids and the residual codebook; return every base row's partition."""
    n = fx.num_base
    say = _stepper(fx.fixture_id)
    say(f"no frozen IVF quantizer yet: training it once on the base set ({n} rows, {parts} partitions)")
    coarse_rows, pq_rows = min(n, parts * IVF_SAMPLE_RATE), min(n, PQ_SAMPLE_ROWS)
    sample = np.sort(_permutation(n, "coarse sample")[:coarse_rows])
    centroids = coarse_kmeans(np.asarray(fx.base[sample], np.float64), parts)
    say(f"coarse k-means: {coarse_rows} sample rows, {IVF_ITERATIONS} iterations")
    labels = assign(fx.base, centroids)
    say("assigned every base row to its nearest centroid")
    sample = np.sort(_permutation(n, "pq sample")[:pq_rows])
    codebook = pq.train_codebook(_residuals(fx.base, sample, centroids, labels), SEED)
    say(f"residual PQ codebook: {pq_rows} sample rows, {pq.ITERATIONS} iterations")
    for name, array in (("centroids", centroids), ("codebook", codebook)):
        path, sha_path = _frozen_paths(fx.cache_dir, name)
        save_npy(path, array)
        sha_path.write_text(sha256_file(path) + "\n")
    (fx.cache_dir / "ivf.json").write_text(json.dumps({
        "trained_on": f"the base set, {n} rows", "num_partitions": parts, "seed": SEED, "streams": STREAMS,
        "coarse_sample_rows": coarse_rows, "coarse_iterations": IVF_ITERATIONS,
        "pq_sample_rows": pq_rows, "pq_iterations": pq.ITERATIONS}, indent=1) + "\n")
    return labels


def coarse_kmeans(x: np.ndarray, parts: int) -> np.ndarray:
    """``(parts, 128)`` float32 centroids: Lloyd's k-means on float64 rows ``x``, random init from ``x``."""
    centroids = x[_permutation(x.shape[0], "coarse init")[:parts]].copy()
    for _ in range(IVF_ITERATIONS):
        labels, _ = _nearest(x, centroids)
        _update(x, labels, centroids)
    return centroids.astype(np.float32)


def assign(base: np.ndarray, centroids: np.ndarray, chunk: int = ENCODE_CHUNK) -> np.ndarray:
    """Each row's nearest centroid (int64), by exact float64 L2, ties to the lowest index."""
    c = np.asarray(centroids, np.float64)
    return np.concatenate([_nearest(np.asarray(base[s : s + chunk], np.float64), c)[0]
                           for s in range(0, base.shape[0], chunk)])


def _permutation(n: int, stream: str) -> np.ndarray:
    """A fixed permutation of ``range(n)``: PCG64's raw output, sorted (the same bytes on every machine)."""
    raw = np.random.PCG64(np.random.SeedSequence([SEED, STREAMS[stream]])).random_raw(n)
    return np.argsort(raw, kind="stable")


def _residuals(base: np.ndarray, rows: np.ndarray | slice, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``base[rows] - centroids[labels[rows]]`` in float32, as Lance's ``compute_residual`` does."""
    return np.asarray(base[rows], np.float32) - centroids[labels[rows]]


def _nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, dists)``: nearest of ``centroids`` to each row of ``x`` (both float64), by exact L2.

    The exact distance is ``sum((x[j] - c[j]) ** 2 for j in 0..127)`` in float64, in that order
    (``_exact_nearest``). To go fast, BLAS screens first with ``|c|^2 - 2 x.c``, the distance less
    ``|x|^2`` (the same for every centroid of a row, so never computed). Whatever the BLAS's
    summation order or use of FMA, the screen and the exact sum each lie within
    gamma_(n+2) * (|x| + |c|)^2 of the true distance (gamma_n = n u / (1 - n u), u = 2^-53,
    |x.c| <= |x| |c|), so they differ by less than ``SCREEN_ERROR * (|x| + max |c|)^2`` (twice
    that bound, which also absorbs the screen's own roundings). Every centroid screened within
    twice that of the row's screened minimum is recomputed exactly, and the exact minimum wins,
    the lowest index on ties: the labels never depend on the BLAS.
    """
    c_norm = np.einsum("ij,ij->i", centroids, centroids)
    c_max = float(np.sqrt(c_norm.max()))
    minus_2c = -2.0 * centroids  # exact: a power of two
    labels, dists = np.empty(x.shape[0], np.int64), np.empty(x.shape[0])
    step = max(1, SCREEN_CELLS // centroids.shape[0])
    for s in range(0, x.shape[0], step):
        xs = x[s : s + step]
        screen = xs @ minus_2c.T
        screen += c_norm
        slack = 2.0 * SCREEN_ERROR * (np.sqrt(np.einsum("ij,ij->i", xs, xs)) + c_max) ** 2
        candidates = screen <= (screen.min(axis=1) + slack)[:, None]
        _exact_nearest(xs, centroids, candidates, labels[s : s + step], dists[s : s + step])
    return labels, dists


@numba.njit(parallel=True, cache=True)
def _exact_nearest(x, centroids, candidates, labels, dists) -> None:
    for i in numba.prange(x.shape[0]):
        best, best_d = -1, np.inf
        for c in range(centroids.shape[0]):
            if candidates[i, c]:
                d = 0.0
                for j in range(x.shape[1]):
                    t = x[i, j] - centroids[c, j]
                    d += t * t
                if d < best_d:
                    best, best_d = c, d
        labels[i] = best
        dists[i] = best_d


@numba.njit(cache=True)
def _exact_distances(x, centroids):
    """``(n, P)`` float64 squared L2, each summed over the dimensions in order."""
    out = np.empty((x.shape[0], centroids.shape[0]))
    for i in range(x.shape[0]):
        for c in range(centroids.shape[0]):
            d = 0.0
            for j in range(x.shape[1]):
                t = x[i, j] - centroids[c, j]
                d += t * t
            out[i, c] = d
    return out


@numba.njit(cache=True)
def _update(x, labels, centroids) -> None:
    """Centroids become the means of their rows (summed in row order); an empty one splits the largest cluster.

    The split is Lance's (and FAISS's) ``split_clusters``: copy the largest cluster's centroid and push the two
    apart by a relative 1/1024, with alternating signs over the dimensions.
    """
    k, dim = centroids.shape
    sums = np.zeros((k, dim))
    counts = np.zeros(k, np.int64)
    for i in range(x.shape[0]):
        counts[labels[i]] += 1
        for j in range(dim):
            sums[labels[i], j] += x[i, j]
    for c in range(k):
        if counts[c] > 0:
            for j in range(dim):
                centroids[c, j] = sums[c, j] / counts[c]
    eps = 1.0 / 1024.0
    for c in range(k):
        if counts[c] == 0:
            big = int(np.argmax(counts))
            for j in range(dim):
                sign = 1.0 if j % 2 == 0 else -1.0
                centroids[c, j] = centroids[big, j] * (1.0 + sign * eps)
                centroids[big, j] = centroids[big, j] * (1.0 - sign * eps)
            counts[c] = counts[big] // 2
            counts[big] -= counts[c]


# --- the derived layout -------------------------------------------------------------------------------------------


def _build_layout(fx, centroids: np.ndarray, codebook: np.ndarray, labels: np.ndarray | None, folder: Path) -> None:
    """Encode every row's residual and store codes, offsets and row ids in Lance's per-partition layout."""
    n, parts = fx.num_base, centroids.shape[0]
    say = _stepper(fx.fixture_id)
    if labels is None:
        labels = assign(fx.base, centroids)
        say("assigned every base row to its nearest centroid")
    codes = np.empty((M, n), np.uint8)
    for s in range(0, n, ENCODE_CHUNK):
        rows = slice(s, min(s + ENCODE_CHUNK, n))
        codes[:, rows] = pq.encode(_residuals(fx.base, rows, centroids, labels), codebook)
    say(f"encoded {n} residuals")
    row_ids = np.argsort(labels, kind="stable").astype(np.int64)  # partition by partition, ids increasing
    offsets = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=parts))]).astype(np.int64)
    flat = np.empty(M * n, np.uint8)
    for p in range(parts):
        a, b = offsets[p], offsets[p + 1]
        flat[M * a : M * b] = codes[:, row_ids[a:b]].ravel()  # (16, n_p), C order: Lance's transposed storage
    folder.mkdir(exist_ok=True)
    for name, array in (("offsets", offsets), ("row_ids", row_ids), ("codes", flat)):
        save_npy(folder / f"{name}.npy", array)
    say(f"stored {parts} partitions in {folder.name}")


def _check_layout(folder: Path, codes, offsets, row_ids, n: int, parts: int) -> None:
    problems = []
    if codes.dtype != np.uint8 or codes.shape != (M * n,):
        problems.append(f"codes.npy is {codes.dtype} {codes.shape}, expected uint8 ({M * n},)")
    if offsets.dtype != np.int64 or offsets.shape != (parts + 1,):
        problems.append(f"offsets.npy is {offsets.dtype} {offsets.shape}, expected int64 ({parts + 1},)")
    elif offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        problems.append(f"offsets.npy does not run from 0 to {n} in order")
    if row_ids.dtype != np.int64 or row_ids.shape != (n,):
        problems.append(f"row_ids.npy is {row_ids.dtype} {row_ids.shape}, expected int64 ({n},)")
    if problems:
        raise FixtureError(f"{folder}: {'; '.join(problems)}; delete the folder to rebuild it (derived data)")


# --- frozen files ----------------------------------------------------------------------------------------------------


def _frozen_paths(cache: Path, name: str) -> tuple[Path, Path]:
    return cache / f"ivf_{name}.npy", cache / f"ivf_{name}.sha256"


def _frozen_state(cache: Path) -> str:
    """'absent' (train), 'present' (verify), or a FixtureError for a half-missing set, never retrained silently."""
    paths = [p for name in ("centroids", "codebook") for p in _frozen_paths(cache, name)]
    present = [p.is_file() for p in paths]
    if not any(present):
        return "absent"
    if not all(present):
        missing = ", ".join(p.name for p, ok in zip(paths, present, strict=True) if not ok)
        raise FixtureError(
            f"{cache}: {missing} missing, but the rest of the frozen IVF quantizer is present; it will not be retrained "
            f"silently. Restore the files, or delete every ivf_* file and ivf-* folder in {cache} deliberately to retrain "
            f"(IVF results will no longer compare with history)")
    return "present"


def _load_frozen(cache: Path, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    path, sha_path = _frozen_paths(cache, name)
    expected, actual = sha_path.read_text().strip(), sha256_file(path)
    if actual != expected:
        raise FixtureError(
            f"{path}: sha256 {actual[:16]}... does not match the frozen {expected[:16]}... in {sha_path.name}: the IVF "
            f"{'coarse quantizer' if name == 'centroids' else 'residual codebook'} was modified. Restore it, or delete "
            f"every ivf_* file and ivf-* folder in {cache} deliberately to retrain")
    array = load_npy(path)
    if array.dtype != np.float32 or array.shape != shape:
        raise FixtureError(f"{path}: expected float32 {shape}, found {array.dtype} {array.shape}")
    return array, actual


def _stepper(fid: str):
    """``say(message)``: one progress line on stderr with the step's time."""
    last = [time.perf_counter()]

    def say(message: str) -> None:
        now = time.perf_counter()
        print(f"[pqkern] {fid}: ivf: {message} ({now - last[0]:.1f}s)", file=sys.stderr, flush=True)
        last[0] = now

    return say


# --- the oracle ------------------------------------------------------------------------------------------------------


@numba.njit(parallel=True, nogil=True, cache=True)
def _screened_probed_topk(rows, offsets, row_ids, codebook, residuals, probes, bounds, k):
    """For each query: the ADC top-k (distance, global id) over its probed partitions (``IvfFixture.oracle_topk``), the
    row-major stored codes ``rows`` (N, 16) screened by the query's bound (``inf``: every row)."""
    nq, nprobes = probes.shape
    out_i = np.full((nq, k), -1, np.int64)
    out_d = np.full((nq, k), np.inf)
    for q in numba.prange(nq):
        table = np.empty((M, KSUB))
        limit = np.float32(bounds[q] * (1.0 + SCREEN_MARGIN))
        for j in range(nprobes):
            for m in range(M):
                for c in range(KSUB):
                    d = 0.0
                    for t in range(DSUB):
                        e = codebook[m, c, t] - residuals[q, j, m * DSUB + t]
                        d += e * e
                    table[m, c] = d
            a, b = offsets[probes[q, j]], offsets[probes[q, j] + 1]
            screen_rows(rows[a:b], row_ids[a:b], table, table.astype(np.float32), limit, out_d[q], out_i[q])
    return out_i, out_d
