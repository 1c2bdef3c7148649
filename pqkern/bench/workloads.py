"""The workloads, as the judge sees them (immutable bench): what to send, and how to check what comes back.

- ``flat``: one index over all N codes; a query is one ``search`` call (the loop's scan of 1M rows).
- ``flat@N``: the same over the fixture's first N rows only (the size curve of the upstream page).
- ``ivf``: Lance's IVF_PQ (``pqkern/bench/ivf.py``): one index per partition; a query is one ``search``
  per probed partition with that partition's residual query (query minus centroid), timed
  as one probe; the judge merges the per-partition top-k by (distance, id), as Lance does.
- ``real-ivf``: real SIFT descriptors, the ``imagesift`` fixture (594,966 rows; its first
  ``PQKERN_REAL_ROWS`` rows when that is set), in Lance's IVF_PQ layout (72 partitions, 15 probed),
  with fresh queries of its own from the same seed: judged beside a synthetic fixture, so no win is
  kept on synthetic data alone, judged where Lance runs the kernel.
- ``real``: the same descriptors (their first ``PQKERN_REAL_ROWS`` when set) in one flat index:
  beside a synthetic fixture the trial judges this flat scan instead of the synthetic one, so that
  every path a kernel takes at a judged size runs on real vectors (results.tsv's ``workloads``
  column says which workloads a row judged).

A workload searches the rows of one query set (``queries.py``). Every result is checked twice:
at once and cheaply (``check``: ids in range and distinct, distances finite and ascending, each
within ``tolerance`` (relative) of the float64 reference ADC distance of its id), and then
against the exact ADC top-k (``rank_problem``: rank by rank, ties and tolerance allowed, so a
kernel cannot skip rows). For fresh queries the exact top-k is computed only then, with the
kernels' own k-th distances as bounds (``oracle.py``); for the fixture's own queries it is cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pqkern.bench.datasets import REAL, REAL_IVF, REAL_SOURCE, is_real, prefix_path, real_data, real_fixture, real_rows
from pqkern.bench.fixture import SYNTHETIC_SIZES, FixtureError
from pqkern.bench.oracle import FlatOracle
from pqkern.bench.queries import QuerySet, fixed_queries, fresh_queries
from pqkern.bench.worker import ContractError

K = 10
WORKLOADS = ("flat", "ivf")


@dataclass
class Checked:
    """One block of one kernel's results after the cheap check: what the rank check and recall need later."""

    rows: np.ndarray  # (n,) rows of the query set
    ids: np.ndarray  # (n, k) the ids found (global; merged over the probes for ivf)
    ref: np.ndarray  # (n, k) their reference ADC distances, sorted
    worst: float  # the largest relative distance error

    @classmethod
    def join(cls, parts: list[Checked]) -> Checked:
        """Blocks of results as one, in order (at least one block)."""
        return cls(np.concatenate([c.rows for c in parts]), np.concatenate([c.ids for c in parts]),
                   np.concatenate([c.ref for c in parts]), max(c.worst for c in parts))


def judged(source: str) -> tuple[str, ...]:
    """The workloads a trial (and asv) judge on a fixture of ``source``: on real data (siftsmall, sift1m) its flat scan
    and its IVF layout; beside a synthetic fixture, the real descriptors' flat scan instead of the synthetic one (a
    trick gated on the index's size is then judged on real vectors at that size), the synthetic IVF layout, and the
    real descriptors' IVF layout."""
    return (REAL, "ivf", REAL_IVF) if source in SYNTHETIC_SIZES else WORKLOADS


def parse(name: str) -> tuple[str, int | None]:
    """``(kind, rows)`` of a workload name: ``flat``, ``ivf``, ``flat@N`` (the first N rows), ``real``, ``real-ivf``, or
    either with ``@N`` (the real descriptors' first N rows; ``rows`` is then None: they are another fixture's)."""
    if is_real(name):
        return ("ivf" if name.partition("@")[0] == REAL_IVF else "flat"), None
    kind, _, rows = name.partition("@")
    if kind not in WORKLOADS or (rows and (kind != "flat" or not rows.isdigit() or int(rows) < 1)):
        raise ValueError(f"unknown workload {name!r}: choose flat, ivf, real, real-ivf or flat@N (the first N rows)")
    return kind, int(rows) if rows else None


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


class Workload:
    """What every workload shares: its query set, the exact answers it has computed, and the rank check."""

    name = kind = ""
    calls_per_query = 1  # search calls one timed query makes
    num_rows = 0  # rows the kernel is prepared on

    def __init__(self, fx, queries: QuerySet, k: int = K):
        self.fx, self.queries, self.k = fx, queries, k
        self.answers: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # row -> the exact top-k (ids, dists)

    def spec(self) -> dict:
        """What the worker needs: the kind and the files it maps read-only (and, for ivf, how many partitions)."""
        return {"kind": self.kind, "files": self.files, **({"partitions": self.partitions} if self.kind == "ivf" else {})}

    def oracle(self, rows: np.ndarray, bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The exact ADC top-k ``(ids (n, k), dists (n, k))`` of these rows; ``bounds`` (upper bounds on their k-th
        distances) speed up fresh rows, which are computed once and kept."""
        rows = np.asarray(rows, np.int64)
        todo = np.array(sorted({int(r) for r in rows if int(r) not in self.answers}), np.int64)
        if todo.size:
            if self.queries.fixture_ids is not None:
                ids, dists = self._fixed(self.queries.fixture_ids[todo])
            else:
                limit = np.full(todo.size, np.inf) if bounds is None else _bounds_for(rows, bounds, todo)
                ids, dists = self._compute(todo, limit)
            self.answers.update({int(r): (ids[j], dists[j]) for j, r in enumerate(todo)})
        got = [self.answers[int(r)] for r in rows]
        return (np.stack([g[0] for g in got]), np.stack([g[1] for g in got])) if got else (
            np.empty((0, self.k), np.int64), np.empty((0, self.k)))

    def rank_problem(self, checked: Checked, tolerance: float, bounds: np.ndarray | None = None) -> str:
        """'' when every found top-k is as close as the exact ADC top-k, rank by rank (ties and tolerance allowed);
        else what is wrong with the first query where it is not."""
        oracle = self.oracle(checked.rows, checked.ref[:, -1] if bounds is None else bounds)[1]
        worse = checked.ref > oracle * (1 + tolerance) + 1e-6
        if not worse.any():
            return ""
        j, i = np.argwhere(worse)[0]
        return (f"query {checked.rows[j]}: the top-{self.k} is not the nearest by ADC: rank {i + 1} has ADC distance "
                f"{checked.ref[j, i]:.6g}, the exact ADC top-{self.k} has {oracle[j, i]:.6g} there (rows were skipped?)")


def _bounds_for(rows: np.ndarray, bounds: np.ndarray, todo: np.ndarray) -> np.ndarray:
    """Each ``todo`` row's smallest bound among its entries in ``rows``."""
    best = {}
    for r, b in zip(rows.tolist(), np.asarray(bounds, np.float64).tolist(), strict=True):
        best[r] = min(b, best.get(r, np.inf))
    return np.array([best[int(r)] for r in todo])


class FlatWorkload(Workload):
    """The fixture's codes (or their first ``rows``) in one index."""

    kind = "flat"

    def __init__(self, fx, queries: QuerySet, k: int = K, rows: int | None = None, name: str | None = None):
        super().__init__(fx, queries, k)
        self.rows = self.num_rows = fx.num_base if rows is None or rows >= fx.num_base else rows
        if self.rows < 1:
            raise ValueError(f"flat@{rows}: the fixture has {fx.num_base} rows")
        self.name = name or ("flat" if self.rows == fx.num_base else f"flat@{rows}")
        self.codes = np.asarray(fx.codes)
        self.codebook64 = np.asarray(fx.codebook, np.float64)
        self.flat_oracle = FlatOracle(fx, self.rows)
        codes_file = fx.cache_dir / f"codes-{fx.codebook_sha256[:16]}.npy"
        if self.rows != fx.num_base:
            codes_file = prefix_path(fx, self.rows)  # the prefix as its own C-contiguous file (datasets.ensure builds it)
            if not codes_file.is_file():
                raise FixtureError(f"{self.name}: {codes_file} is not built yet: `python -m pqkern.bench.datasets "
                                   f"--source {fx.source} --workload flat@{self.rows}` (the run's entry points do that)")
        self.files = {"codes": str(codes_file), "codebook": str(fx.cache_dir / "codebook.npy")}

    def _fixed(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.flat_oracle.fixed(qids, self.k)

    def _compute(self, rows: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.flat_oracle.compute(self.queries.vectors[rows], self.k, bounds)

    def request(self, rows: np.ndarray) -> tuple[np.ndarray, None]:
        """The block to send for these rows: their query vectors."""
        return self.queries.vectors[rows], None

    def check(self, rows: np.ndarray, ids: np.ndarray, dists: np.ndarray, tolerance: float) -> Checked:
        """Check results (n, 1, k) at once; raises ContractError for a broken one."""
        n, at = self.rows, np.arange(len(rows))[:, None]
        q = np.asarray(self.queries.vectors[rows], np.float64).reshape(len(rows), 16, 1, 8)
        tables = ((self.codebook64[None] - q) ** 2).sum(axis=3)  # (n, 16, 256), as reference.adc_table
        safe = np.clip(ids[:, 0, :], 0, n - 1)
        ref = tables[at, 0, self.codes[0][safe]]
        for s in range(1, 16):  # sub-spaces in order, as reference.adc_distances
            ref = ref + tables[at, s, self.codes[s][safe]]
        worst = max((_check_calls(f"query {r}", ids[j], dists[j], ref[j][None, :], np.array([n]), tolerance)
                     for j, r in enumerate(rows)), default=0.0)
        return Checked(np.asarray(rows, np.int64), ids[:, 0, :].copy(), np.sort(ref, axis=1), worst)


class IvfWorkload(Workload):
    """One index per IVF partition, ``nprobes`` residual searches per query, merged by the judge."""

    kind = "ivf"

    def __init__(self, fx, queries: QuerySet, k: int = K, name: str = "ivf"):
        from pqkern.bench.ivf import load_ivf

        super().__init__(fx, queries, k)
        self.name = name
        self.ivf = load_ivf(fx)  # loaded only: datasets.ensure builds it
        self.num_rows, self.calls_per_query = fx.num_base, self.ivf.nprobes
        self.files = self.ivf.files
        self.partitions = len(self.ivf.offsets) - 1
        self.sizes = np.diff(self.ivf.offsets)
        self.codebook64 = np.asarray(self.ivf.codebook, np.float64)
        self.codes = np.asarray(self.ivf.codes)
        self._probes = self.ivf.probes_of(queries.vectors)
        self._residuals = self.ivf.residuals_of(queries.vectors, self._probes)

    def _fixed(self, qids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.ivf.oracle_topk(qids, self.k)

    def _compute(self, rows: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.ivf.screened_topk(self._residuals[rows], self._probes[rows], self.k, bounds)

    def request(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The block to send for these rows: each query's residuals on its probed partitions, and the partitions."""
        return self._residuals[rows], self._probes[rows]

    def check(self, rows: np.ndarray, ids: np.ndarray, dists: np.ndarray, tolerance: float) -> Checked:
        """As FlatWorkload.check, for (n, nprobes, k) results in partition-local ids; merges them by (distance, id)."""
        probes, residuals = self._probes[rows], np.asarray(self._residuals[rows], np.float64)
        worst = 0.0
        merged = np.empty((len(rows), self.k), np.int64)
        merged_ref = np.empty((len(rows), self.k))
        for j, qi in enumerate(rows):
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
        return Checked(np.asarray(rows, np.int64), merged, merged_ref, worst)


def real_unavailable(fx) -> str:
    """'' when the real workloads' fixture is built or can be (it needs the imagesift extra), else why."""
    from pqkern.bench import imagesift
    from pqkern.bench.fixture import prepared

    return "" if prepared(REAL_SOURCE, real_data(fx)) else imagesift.available()


def real_workload(name: str, queries: QuerySet, k: int = K, rows: int | None = None) -> Workload:
    """A real workload (``real``: a flat scan; ``real-ivf``: the IVF_PQ layout) of the imagesift fixture's (first
    ``rows``, or ``PQKERN_REAL_ROWS``) rows, on queries of its own drawn from the same seed. Loaded only:
    ``datasets.ensure`` builds it."""
    rows = rows or real_rows()
    try:
        fx = real_fixture(queries.fx, rows if name == REAL_IVF else None)  # beside the main fixture
        mine = fresh_queries(fx, queries.seed, len(queries)) if queries.fresh else fixed_queries(fx, len(queries))
        return IvfWorkload(fx, mine, k, name) if name == REAL_IVF else FlatWorkload(fx, mine, k, rows, name=REAL)
    except FixtureError as e:
        raise FixtureError(f"the real-descriptor workload (the trial's third when its fixture is synthetic) needs the "
                           f"imagesift fixture and its IVF layout: {e}. Build them with `python -m pqkern.bench.datasets`"
                           f", or judge without it: --workload flat --workload ivf") from None


def make(name: str, fx, queries: QuerySet, k: int = K) -> Workload:
    """The judge's side of workload ``name`` on fixture ``fx``, searching ``queries`` (``real``: its own fixture)."""
    kind, rows = parse(name)
    if is_real(name):
        return real_workload(name.partition("@")[0], queries, k, int(name.partition("@")[2] or 0) or None)
    if kind == "ivf":
        return IvfWorkload(fx, queries, k)
    return FlatWorkload(fx, queries, k, rows)
