"""The two workloads, as the judge sees them (immutable bench): what to send, and how to check what comes back.

- ``flat``: one index over all N codes; a query is one ``search`` call (the loop's scan of 1M rows).
- ``ivf``: Lance's IVF_PQ (``pqkern/bench/ivf.py``): one index per partition; a query is one ``search``
  per probed partition with that partition's residual query (query minus centroid), timed
  as one probe; the judge merges the per-partition top-k by (distance, id), as Lance does.

Every result is checked: ids in range and distinct, distances finite and ascending, each
distance within ``tolerance`` (relative) of the float64 reference ADC distance of its id,
and the (merged) top-k as close as the exact ADC top-k (the oracle), rank by rank, so a
kernel cannot skip rows. Recall is then measured against exact ground truth.
"""

from __future__ import annotations

import numpy as np

from pqkern.bench.oracle import BLOCK as ORACLE_BLOCK
from pqkern.bench.oracle import FlatOracle
from pqkern.bench.worker import ContractError

K = 10
WORKLOADS = ("flat", "ivf")


def _check_calls(where: str, ids: np.ndarray, dists: np.ndarray, ref: np.ndarray, sizes: np.ndarray, tolerance: float) -> float:
    """Check one query's calls (``ids``/``dists``/``ref``: (calls, k), ``sizes``: rows per call); return the worst error.

    All calls are checked at once; only when something is wrong are they walked one by one, to say what."""
    k = ids.shape[1]
    slot = np.arange(k)[None, :]
    live = slot < np.minimum(k, sizes)[:, None]
    inside = (ids >= 0) & (ids < sizes[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(live, dists.astype(np.float64), np.inf)
        steps = np.diff(np.where(live, d, np.inf), axis=1)
        unique = np.sort(np.where(live, ids, -1 - slot), axis=1)
        err = np.where(live, np.abs(d - ref) / np.maximum(ref, 1e-6), 0.0)
    if (np.all(np.where(live, inside, ids == -1)) and not np.any(unique[:, 1:] == unique[:, :-1])
            and np.all(np.isfinite(d[live])) and not np.any(steps[live[:, 1:]] < 0) and err.max(initial=0.0) <= tolerance):
        return float(err.max(initial=0.0))
    worst = 0.0
    for c in range(ids.shape[0]):
        kk = min(ids.shape[1], int(sizes[c]))
        row_ids, row_d, pad = ids[c, :kk], dists[c, :kk], ids[c, kk:]
        at = f"{where}" if ids.shape[0] == 1 else f"{where} (probe {c})"
        if pad.size and np.any(pad != -1):
            raise ContractError(f"{at}: more results than rows")
        if kk == 0:
            continue
        if row_ids.min() < 0 or row_ids.max() >= sizes[c]:
            raise ContractError(f"{at}: id out of range 0..{int(sizes[c]) - 1}: {row_ids.tolist()}")
        if np.unique(row_ids).size != kk:
            raise ContractError(f"{at}: duplicate ids {row_ids.tolist()}")
        if not np.all(np.isfinite(row_d)):
            raise ContractError(f"{at}: non-finite distance {row_d.tolist()}")
        if np.any(np.diff(row_d) < 0):
            raise ContractError(f"{at}: distances not ascending {row_d.tolist()}")
        err = np.abs(row_d.astype(np.float64) - ref[c, :kk]) / np.maximum(ref[c, :kk], 1e-6)
        bad = int(np.argmax(err))
        if err[bad] > tolerance:
            raise ContractError(
                f"{at}: distance {float(row_d[bad]):.6g} for id {int(row_ids[bad])} is off by {err[bad]:.2%} "
                f"from the reference ADC {ref[c, bad]:.6g} (tolerance {tolerance:.2%})")
        worst = max(worst, float(err[bad]))
    return worst


def _first_rank_problem(qids: np.ndarray, ref_sorted: np.ndarray, oracle: np.ndarray, tolerance: float) -> str:
    """'' when every found top-k (sorted reference ADC distances, (n, k)) is as close as the exact ADC top-k, rank by
    rank (ties and tolerance allowed); else what is wrong with the first query where it is not."""
    worse = ref_sorted > oracle * (1 + tolerance) + 1e-6
    if not worse.any():
        return ""
    j, i = np.argwhere(worse)[0]
    k = ref_sorted.shape[1]
    return (f"query {qids[j]}: the top-{k} is not the nearest by ADC: rank {i + 1} has ADC distance "
            f"{ref_sorted[j, i]:.6g}, the exact ADC top-{k} has {oracle[j, i]:.6g} there (rows were skipped?)")


class FlatWorkload:
    """All N codes in one index."""

    name = "flat"

    def __init__(self, fx, k: int = K):
        self.fx, self.k = fx, k
        self.codes = np.asarray(fx.codes)
        self.codebook64 = np.asarray(fx.codebook, np.float64)
        self.oracle = FlatOracle(fx)
        self.files = {"codes": str(fx.cache_dir / f"codes-{fx.codebook_sha256[:16]}.npy"),
                      "codebook": str(fx.cache_dir / "codebook.npy")}

    def oracle_topk(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact ADC top-k of these queries (computed once per fixture, then cached)."""
        return self.oracle.topk(qids, self.k)

    def request(self, qids: np.ndarray, warm: np.ndarray | None) -> tuple[np.ndarray, None]:
        """The block to send: the query vectors, after the warm-up vector when there is one."""
        queries = np.asarray(self.fx.queries[qids], np.float32)
        return (queries if warm is None else np.concatenate([warm[None, :], queries])), None

    def judge(self, qids: np.ndarray, ids: np.ndarray, dists: np.ndarray, tolerance: float) -> tuple[np.ndarray, float, str]:
        """Check results (n, 1, k): ``(ids (n, k), worst relative distance error, first rank problem or '')``.

        Raises ContractError for a broken result; a top-k that is not the nearest comes back as a
        problem, so the caller can report low recall first (it is the clearer message)."""
        n, rows = self.fx.num_base, np.arange(len(qids))[:, None]
        q = np.asarray(self.fx.queries[qids], np.float64).reshape(len(qids), 16, 1, 8)
        tables = ((self.codebook64[None] - q) ** 2).sum(axis=3)  # (n, 16, 256), as reference.adc_table
        safe = np.clip(ids[:, 0, :], 0, n - 1)
        ref = tables[rows, 0, self.codes[0][safe]]
        for s in range(1, 16):  # sub-spaces in order, as reference.adc_distances
            ref = ref + tables[rows, s, self.codes[s][safe]]
        worst = max((_check_calls(f"query {qi}", ids[j], dists[j], ref[j][None, :], np.array([n]), tolerance)
                     for j, qi in enumerate(qids)), default=0.0)
        problem = _first_rank_problem(qids, np.sort(ref, axis=1), self.oracle_topk(qids)[1], tolerance)
        return ids[:, 0, :], worst, problem


class IvfWorkload:
    """One index per IVF partition, ``nprobes`` residual searches per query, merged by the judge."""

    name = "ivf"

    def __init__(self, fx, k: int = K):
        from pqkern.bench.ivf import load_ivf

        self.fx, self.k = fx, k
        self.ivf = load_ivf(fx)
        self.files = self.ivf.files
        self.sizes = np.diff(self.ivf.offsets)
        self.codebook64 = np.asarray(self.ivf.codebook, np.float64)
        self.codes = np.asarray(self.ivf.codes)
        self.oracle_blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def oracle_topk(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The exact ADC top-k over the probed partitions of these queries (cached on disk, and here per block)."""
        qids = np.asarray(qids, np.int64)
        for b in np.unique(qids // ORACLE_BLOCK):
            if b not in self.oracle_blocks:
                rows = np.arange(b * ORACLE_BLOCK, min((b + 1) * ORACLE_BLOCK, self.fx.queries.shape[0]))
                self.oracle_blocks[int(b)] = self.ivf.oracle_topk(rows, self.k)
        got = [self.oracle_blocks[int(q) // ORACLE_BLOCK] for q in qids]
        return (np.stack([g[0][q % ORACLE_BLOCK] for g, q in zip(got, qids, strict=True)]),
                np.stack([g[1][q % ORACLE_BLOCK] for g, q in zip(got, qids, strict=True)]))

    def request(self, qids: np.ndarray, warm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The block to send: each query's residuals on its probed partitions, and the partitions."""
        residuals, probes = self.ivf.residuals(qids), self.ivf.probes(qids)
        if warm is not None:
            warm_probes = np.argsort(((self.ivf.centroids - warm[None, :]) ** 2).sum(axis=1), kind="stable")
            warm_probes = warm_probes[: probes.shape[1]].astype(np.int32)
            warm_res = (warm[None, :] - self.ivf.centroids[warm_probes]).astype(np.float32)
            residuals = np.concatenate([warm_res[None], residuals])
            probes = np.concatenate([warm_probes[None], probes])
        return residuals, probes

    def judge(self, qids: np.ndarray, ids: np.ndarray, dists: np.ndarray, tolerance: float) -> tuple[np.ndarray, float, str]:
        """As FlatWorkload.judge, for (n, nprobes, k) results in partition-local ids; merges them by (distance, id)."""
        probes, residuals = self.ivf.probes(qids), np.asarray(self.ivf.residuals(qids), np.float64)
        worst = 0.0
        merged = np.empty((len(qids), self.k), np.int64)
        merged_ref = np.empty((len(qids), self.k))
        for j, qi in enumerate(qids):
            sizes = self.sizes[probes[j]]
            local = np.where(ids[j] >= 0, ids[j], 0)
            local = np.minimum(local, np.maximum(sizes[:, None] - 1, 0))
            start = self.ivf.offsets[probes[j]]
            sub = np.arange(16)
            # code of (probe c, candidate i, sub-space s) sits at 16 * start[c] + s * size[c] + local[c, i]
            pos = 16 * start[:, None, None] + sub[None, None, :] * sizes[:, None, None] + local[:, :, None]
            codes = self.codes[pos]  # (calls, k, 16)
            centroid_parts = self.codebook64[sub[None, None, :], codes]  # (calls, k, 16, 8)
            diff = centroid_parts - residuals[j].reshape(-1, 1, 16, 8)
            ref = (diff * diff).sum(axis=3)
            ref = np.cumsum(ref, axis=2)[:, :, -1]  # sum over sub-spaces 0..15 in order
            worst = max(worst, _check_calls(f"query {qi}", ids[j], dists[j], ref, sizes, tolerance))
            valid = ids[j] >= 0
            gids = self.ivf.row_ids[(start[:, None] + local)[valid]]
            cand_d, cand_ref = dists[j][valid].astype(np.float64), ref[valid]
            order = np.lexsort((gids, cand_d))[: self.k]
            if order.size < self.k:
                raise ContractError(f"query {qi}: the probed partitions returned {order.size} rows, fewer than k={self.k}")
            merged[j], merged_ref[j] = gids[order], np.sort(cand_ref[order])
        return merged, worst, _first_rank_problem(qids, merged_ref, self.oracle_topk(qids)[1], tolerance)


def make(name: str, fx, k: int = K):
    """The judge's side of workload ``name`` on fixture ``fx``."""
    if name == "flat":
        return FlatWorkload(fx, k)
    if name == "ivf":
        return IvfWorkload(fx, k)
    raise ValueError(f"unknown workload {name!r}: choose flat or ivf")
