"""The benchmark fixture: vectors, frozen codebook, PQ codes and ground truth (immutable bench).

Sources, chosen by name (``--source`` / ``PQKERN_SOURCE``):

- ``sift1m``: TEXMEX ANN_SIFT1M in ``<data>/sift/`` (base 1M, query 10k, learn 100k, gt 10k x 100).
- ``siftsmall``: TEXMEX ANN_SIFT10K in ``<data>/siftsmall/`` (base 10k, query 100, gt 100 x 100, and the archive's
  learn set of 25k when its folder has ``siftsmall_learn.fvecs``: fresh queries are drawn from it). A folder without
  it holds out the base file's last 2,000 rows as the pool of fresh queries and judges on the first 8,000: fixture
  ``siftsmall-heldout2000``, its ground truth recomputed on those rows.
- ``synthetic``: deterministic SIFT-like data at SIFT1M's shape (sizes can be overridden).
- ``smoke``: the same generator at 1,024 base / 64 queries, for tests.
- ``imagesift``: real SIFT descriptors computed offline from the images the scikit-image wheel ships
  (``imagesift.py``): base 594,966, a held-out query pool of 27,003 from other images, in ``<data>/imagesift/``;
  extracted once (half a minute on 2 cores), verified against the reference digest on every load.

Default: ``sift1m`` when its files are present, else ``synthetic``. Everything derived
(codebook, codes, ground truth, generated vectors) is cached in
``<data>/cache/<fixture id>/``; the data directory is ``PQKERN_DATA`` or ``data/`` at the
repository root. The codebook is trained once, stored with its sha256 and verified on
every load; it is never retrained silently. Synthetic ground truth is computed on demand,
1,000 queries at a time (:class:`GroundTruth`): a first build computes the first 1,000
queries' only, which is all the runner uses by default. Each build step reports its time on stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pqkern.bench import imagesift, pq, reference, synthetic
from pqkern.bench.vecs import VecsError, read_vecs, write_vecs

DIM, M, KSUB, DSUB = 128, 16, 256, 8
GT_K = 100
GT_BLOCK = 1000  # queries whose synthetic ground truth is computed at a time; the first block at build time
SEED = 0
SOURCES = ("sift1m", "siftsmall", "synthetic", "smoke", "imagesift")
SIFT_FILES = {
    "sift1m": ("sift", "sift", {"base": 1_000_000, "query": 10_000, "learn": 100_000, "groundtruth": 10_000}),
    "siftsmall": ("siftsmall", "siftsmall", {"base": 10_000, "query": 100, "groundtruth": 100}),
}
# Optional files of a TEXMEX source, used only as its pool of fresh queries (never to train the codebook, so the
# fixture stays what it was without them): siftsmall's archive ships 25,000 learn vectors.
SIFT_POOL = {"siftsmall": ("learn", 25_000)}
# Without that file: the base file's last rows held out as the pool, never in the base set (fixture ``<source>-heldoutN``).
HELD_OUT = {"siftsmall": 2_000}
SYNTHETIC_SIZES = {"synthetic": (1_000_000, 10_000, 100_000), "smoke": (1_024, 64, 0)}
RUN_QUERIES = 1000  # the fixture's first queries, which pqkern-run searches by default: never drawn as fresh ones


class FixtureError(RuntimeError):
    """The fixture cannot be loaded; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Fixture:
    """Everything the runner and benchmarks need; all arrays are read-only."""

    source: str
    fixture_id: str
    base: np.ndarray  # (N, 128) float32 or uint8, memory-mapped
    queries: np.ndarray  # (nq, 128) float32, C-contiguous
    codebook: np.ndarray  # (16, 256, 8) float32
    codes: np.ndarray  # (16, N) uint8, C-contiguous (Lance's transposed layout)
    groundtruth: np.ndarray | GroundTruth  # (nq, >=10) int32 exact neighbour ids; computed on demand for synthetic
    codebook_sha256: str
    cache_dir: Path

    @property
    def num_base(self) -> int:
        return int(self.codes.shape[1])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """``PQKERN_DATA`` if set, else ``data/`` at the repository root (or the working directory when installed)."""
    env = os.environ.get("PQKERN_DATA")
    if env:
        return Path(env).expanduser().resolve()
    root = repo_root()
    return (root if (root / "pyproject.toml").is_file() else Path.cwd()) / "data"


def sift_dir(source: str, data: Path | None = None) -> Path:
    return (data or data_dir()) / SIFT_FILES[source][0]


def sift_available(source: str, data: Path | None = None) -> bool:
    folder, prefix, parts = SIFT_FILES[source]
    d = (data or data_dir()) / folder
    return all((d / f"{prefix}_{p}.{'ivecs' if p == 'groundtruth' else 'fvecs'}").is_file() for p in parts)


def pool_file(source: str, data: Path | None = None) -> Path | None:
    """The optional file a TEXMEX source draws its fresh queries from (``SIFT_POOL``), None for other sources."""
    if source not in SIFT_POOL:
        return None
    folder, prefix, _ = SIFT_FILES[source]
    return (data or data_dir()) / folder / f"{prefix}_{SIFT_POOL[source][0]}.fvecs"


def held_out(source: str, data: Path | None = None) -> int:
    """Base rows the source holds out as its pool of fresh queries: ``HELD_OUT`` when its pool file is absent, else 0."""
    path = pool_file(source, data)
    return HELD_OUT[source] if path is not None and not path.is_file() else 0


def default_source(data: Path | None = None) -> str:
    env = os.environ.get("PQKERN_SOURCE")
    if env:
        return env
    return "sift1m" if sift_available("sift1m", data) else "synthetic"


def progress(label: str):
    """A progress callback ``(done, total)`` that reports on stderr about every 10%."""
    start = time.perf_counter()
    last = [-1]

    def report(done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth != last[0] or done == total:
            last[0] = tenth
            print(f"[pqkern] {label}: {done}/{total} ({time.perf_counter() - start:.1f}s)", file=sys.stderr, flush=True)

    return report


def _step(fid: str, what: str, start: float) -> None:
    """One line per build step on stderr: ``[pqkern] <fixture>: <what> in <seconds> s``."""
    print(f"[pqkern] {fid}: {what} in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.ascontiguousarray(array))
    os.replace(tmp, path)


def load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise FixtureError(f"{path}: unreadable cache file ({e}); delete it and load the fixture again to rebuild it") from e


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise FixtureError(f"{name}={value!r} is not a whole number") from None


def _sizes(source: str, num_base: int | None, num_queries: int | None, num_learn: int | None) -> tuple[int, int, int]:
    """Generated sizes: explicit arguments, else PQKERN_NUM_BASE / _QUERIES / _LEARN, else the source's defaults."""
    nb, nq, nl = SYNTHETIC_SIZES[source]
    num_base = num_base or _env_int("PQKERN_NUM_BASE")
    num_queries = num_queries or _env_int("PQKERN_NUM_QUERIES")
    num_learn = _env_int("PQKERN_NUM_LEARN") if num_learn is None else num_learn
    nb, nq, nl = (num_base or nb), (num_queries or nq), (nl if num_learn is None else num_learn)
    if nb < KSUB and nl < KSUB:
        raise FixtureError(f"{source}: need at least {KSUB} base or learn vectors to train the codebook, got {nb}")
    return nb, nq, nl


def fixture_id(source: str, num_base: int | None = None, num_queries: int | None = None, num_learn: int | None = None,
               data: Path | None = None) -> str:
    """The fixture's id: its cache folder's name, recorded with every result (a source's files can give two: siftsmall
    with and without its learn set)."""
    if source in SIFT_FILES or source == "imagesift":
        if num_base or num_queries or num_learn is not None:
            raise FixtureError(f"{source}: sizes are fixed by its files; --num-base/--num-queries apply to synthetic and smoke")
        if source == "imagesift":
            return imagesift.fixture_id((data or data_dir()) / imagesift.FOLDER)
        rows = held_out(source, data)
        return f"{source}-heldout{rows}" if rows else source
    if source not in SYNTHETIC_SIZES:
        raise FixtureError(f"unknown source {source!r}: choose one of {', '.join(SOURCES)}")
    nb, nq, nl = _sizes(source, num_base, num_queries, num_learn)
    return f"{source}-b{nb}-q{nq}-l{nl}-s{SEED}-g{synthetic.GENERATOR_VERSION}"


def _generate(stream: str, count: int, num_base: int, report, step: int = 1 << 16) -> np.ndarray:
    """``count`` rows of a synthetic stream, generated in chunks side by side (numpy releases the GIL)."""
    out = np.empty((count, DIM), np.uint8)

    def fill(s: int) -> int:
        out[s : s + step] = synthetic.generate(SEED, stream, min(step, count - s), num_base, start=s)
        return min(s + step, count)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for done in pool.map(fill, range(0, count, step)):
            report(done, count)
    return out


def _raw_vectors(source: str, fid: str, cache: Path, data: Path, sizes: tuple[int, int, int] | None):
    """``(base, queries, learn or None, groundtruth or None)`` as memory-mapped arrays, generating synthetic data once."""
    if source == "imagesift":
        start = time.perf_counter()
        try:
            base, queries = imagesift.load(data / imagesift.FOLDER, progress(f"{fid}: extracting SIFT (images)"),
                                           say=lambda msg: print(f"[pqkern] {msg}", file=sys.stderr, flush=True))
        except (imagesift.ImagesiftError, VecsError, OSError) as e:
            raise FixtureError(str(e)) from e
        _step(fid, "descriptors ready", start)
        return base, queries, None, None
    if source in SIFT_FILES:
        folder, prefix, parts = SIFT_FILES[source]
        d = data / folder
        if not sift_available(source, data):
            raise FixtureError(
                f"{source}: files not found in {d} (need {', '.join(prefix + '_' + p for p in parts)}); "
                f"get them from the TEXMEX corpus as docs/fixtures.md says, or choose --source synthetic"
            )
        try:
            base = read_vecs(d / f"{prefix}_base.fvecs", DIM, parts["base"])
            queries = read_vecs(d / f"{prefix}_query.fvecs", DIM, parts["query"])
            learn = read_vecs(d / f"{prefix}_learn.fvecs", DIM, parts["learn"]) if "learn" in parts else None
            gt = read_vecs(d / f"{prefix}_groundtruth.ivecs", GT_K, parts["groundtruth"])
        except VecsError as e:
            raise FixtureError(f"{e}") from e
        rows = held_out(source, data)
        if rows:  # the last rows are the pool of fresh queries: judged on the rest, the shipped ground truth no longer holds
            return base[: parts["base"] - rows], queries, learn, None
        return base, queries, learn, gt
    nb, nq, nl = sizes
    files = {"base": nb, "query": nq, "learn": nl}
    for stream, count in files.items():
        path = cache / f"{stream}.bvecs"
        if count and not path.is_file():
            start = time.perf_counter()
            write_vecs(path, _generate(stream, count, nb, progress(f"{fid}: generating {stream} vectors")))
            _step(fid, f"generated {stream} vectors", start)
    try:
        loaded = {s: read_vecs(cache / f"{s}.bvecs", DIM, c) if c else None for s, c in files.items()}
    except VecsError as e:
        raise FixtureError(f"{e}; delete {cache} to regenerate") from e
    return loaded["base"], loaded["query"], loaded["learn"], None


def _frozen_codebook(cache: Path, fid: str, train: np.ndarray, trained_on: str) -> tuple[np.ndarray, str]:
    path, sha_path = cache / "codebook.npy", cache / "codebook.sha256"
    if not path.exists() and not sha_path.exists():
        print(f"[pqkern] {fid}: no frozen codebook yet: training it once on {trained_on}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        cb = pq.train_codebook(train, SEED, progress(f"{fid}: training codebook (sub-spaces)"))
        save_npy(path, cb)
        sha_path.write_text(sha256_file(path) + "\n")
        (cache / "codebook.json").write_text(
            json.dumps({"trained_on": trained_on, "rows": int(train.shape[0]), "seed": SEED,
                        "iterations": pq.ITERATIONS, "sample_rows": pq.SAMPLE_ROWS}, indent=1) + "\n"
        )
        _step(fid, "trained codebook", start)
    if not path.is_file() or not sha_path.is_file():
        missing = path if not path.is_file() else sha_path
        raise FixtureError(
            f"{missing}: missing, but its partner is present; the frozen codebook will not be retrained silently. "
            f"Restore the file, or delete {cache} deliberately to retrain (results will no longer compare with history)"
        )
    expected = sha_path.read_text().strip()
    actual = sha256_file(path)
    if actual != expected:
        raise FixtureError(
            f"{path}: sha256 {actual[:16]}... does not match the frozen {expected[:16]}... in {sha_path.name}: "
            f"the codebook was modified. Restore it, or delete {cache} deliberately to retrain"
        )
    cb = load_npy(path)
    if cb.shape != (M, KSUB, DSUB) or cb.dtype != np.float32:
        raise FixtureError(f"{path}: expected float32 {(M, KSUB, DSUB)}, found {cb.dtype} {cb.shape}")
    return cb, actual


def _cached(path: Path, build, expect_shape: tuple[int, ...], step: tuple[str, str] | None = None) -> np.ndarray:
    """``path``'s array, built and saved first if missing (``step``: (fixture id, what) to report the build's time)."""
    if not path.is_file():
        start = time.perf_counter()
        save_npy(path, build())
        if step:
            _step(*step, start)
    arr = load_npy(path)
    if arr.shape != expect_shape:
        raise FixtureError(f"{path}: expected shape {expect_shape}, found {arr.shape}; delete it to rebuild")
    return arr


def prepared(source: str | None, data: str | os.PathLike | None = None, num_base: int | None = None,
             num_queries: int | None = None, num_learn: int | None = None) -> bool:
    """Whether the fixture is built: its vectors, its frozen codebook and its codes (it is verified when loaded)."""
    data = Path(data).resolve() if data else data_dir()
    source = source or default_source(data)
    if source == "imagesift":
        if not (data / imagesift.FOLDER / "imagesift.json").is_file():
            return False
        fid = imagesift.fixture_id(data / imagesift.FOLDER)
    else:
        try:
            fid = fixture_id(source, num_base, num_queries, num_learn, data)
        except FixtureError:
            return False
    cache = data / "cache" / fid
    return (cache / "codebook.npy").is_file() and any(cache.glob("codes-*.npy")) and (cache / "queries.npy").is_file()


def load_fixture(
    source: str | None = None,
    num_base: int | None = None,
    num_queries: int | None = None,
    num_learn: int | None = None,
    data: str | os.PathLike | None = None,
    build: bool = True,
) -> Fixture:
    """Load (building once, with progress on stderr) the named fixture; with ``build=False`` (the judge), refuse one that
    is not built yet instead."""
    data = Path(data).resolve() if data else data_dir()
    source = source or default_source(data)
    if not build and not prepared(source, data, num_base, num_queries, num_learn):
        raise FixtureError(f"the {source} fixture is not built yet in {data}: build it first with `python -m "
                           f"pqkern.bench.datasets --source {source}` (pqkern-run and pqkern-trial do that themselves)")
    fid = fixture_id(source, num_base, num_queries, num_learn, data)
    if source == "imagesift":  # its id depends on what the extraction gives on this machine
        base, raw_queries, learn, gt = _raw_vectors(source, fid, data, data, None)
        fid = imagesift.fixture_id(data / imagesift.FOLDER)
    cache = data / "cache" / fid
    cache.mkdir(parents=True, exist_ok=True)
    sizes = None if source in SIFT_FILES or source == "imagesift" else _sizes(source, num_base, num_queries, num_learn)
    if source != "imagesift":
        base, raw_queries, learn, gt = _raw_vectors(source, fid, cache, data, sizes)
    train, trained_on = (learn, "the learn set") if learn is not None else (base, "the base set (no learn set)")
    codebook, cb_sha = _frozen_codebook(cache, fid, train, f"{trained_on}, {train.shape[0]} rows")
    nb, nq = base.shape[0], raw_queries.shape[0]
    queries = _cached(cache / "queries.npy", lambda: np.asarray(raw_queries, np.float32), (nq, DIM))

    def encode() -> np.ndarray:
        return pq.encode(base, codebook, progress=progress(f"{fid}: encoding base"))

    codes = _cached(cache / f"codes-{cb_sha[:16]}.npy", encode, (M, nb), (fid, "encoded base"))
    if gt is None:
        gt = GroundTruth(cache / "groundtruth.ivecs", base, queries, fid)
        gt.rows(GT_BLOCK)  # what the runner and benchmarks use by default; the rest when asked
    return Fixture(source, fid, base, queries, codebook, codes, gt, cb_sha, cache)


class GroundTruth:
    """Exact top-100 neighbour ids of a synthetic fixture's queries, computed on demand and cached.

    A read-only ``(nq, k)`` int32 array for its users: ``gt[rows, cols]``, ``np.asarray(gt)``,
    ``shape``, ``len``. Rows are computed when first asked for, in whole blocks of
    :data:`GT_BLOCK` queries, and kept in ``groundtruth.ivecs``, which holds the first rows
    computed so far (all of them in caches built before ground truth on demand, read unchanged).
    Each query's row depends on that query only, so a prefix is as exact as the whole.
    """

    dtype = np.dtype(np.int32)
    ndim = 2

    def __init__(self, path: Path, base: np.ndarray, queries: np.ndarray, fid: str) -> None:
        self.path, self._base, self._queries, self._fid = path, base, queries, fid
        self.shape = (queries.shape[0], min(GT_K, base.shape[0]))
        self._done = self._load()

    def _load(self) -> np.ndarray:
        if not self.path.is_file():
            return np.empty((0, self.shape[1]), np.int32)
        try:
            done = read_vecs(self.path, self.shape[1])
        except VecsError as e:
            raise FixtureError(f"{e}; delete it to recompute") from e
        if done.shape[0] > self.shape[0]:
            raise FixtureError(f"{self.path}: holds {done.shape[0]} records, more than the {self.shape[0]} queries; "
                               f"delete it to recompute")
        return done

    @property
    def cached_rows(self) -> int:
        """How many leading rows are computed and cached."""
        return self._done.shape[0]

    def rows(self, n: int) -> np.ndarray:
        """The first ``n`` rows (read-only), computing and caching the missing blocks first."""
        n = min(max(int(n), 0), self.shape[0])
        if n > self._done.shape[0]:
            self._done = self._load()  # another process may have computed them meanwhile
        if n > self._done.shape[0]:
            have, stop = self._done.shape[0], min(-(-n // GT_BLOCK) * GT_BLOCK, self.shape[0])
            start = time.perf_counter()
            ids, _ = reference.exact_knn(self._base, self._queries[have:stop], GT_K,
                                         progress=progress(f"{self._fid}: exact ground truth, queries {have}-{stop}"))
            write_vecs(self.path, np.concatenate([self._done, ids]))
            self._done = self._load()
            _step(self._fid, f"ground truth for queries {have}-{stop}", start)
        return self._done[:n]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        index = np.arange(self.shape[0])[rows]  # rows as absolute indices: slices, negatives and masks resolved
        return self.rows(int(index.max()) + 1 if index.size else 0)[(index, *rest)]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.rows(self.shape[0])
        return np.array(whole, dtype=dtype) if copy else np.asarray(whole, dtype=dtype)


def held_out_vectors(fx: Fixture) -> list[np.ndarray] | None:
    """Vectors of the fixture's query distribution that are not in its base set and not among the first
    ``RUN_QUERIES`` queries (``pqkern-run``'s fixed ones): what fresh queries are sampled from. None when the source
    has none to spare (synthetic sources draw fresh queries from their generator instead)."""
    if fx.source == "imagesift":
        return [fx.queries[RUN_QUERIES:]]
    if fx.source not in SIFT_FILES:
        return None
    data = fx.cache_dir.parent.parent
    folder, prefix, parts = SIFT_FILES[fx.source]
    try:
        if fx.source == "sift1m":
            return [fx.queries[RUN_QUERIES:], read_vecs(data / folder / f"{prefix}_learn.fvecs", DIM, parts["learn"])]
        if fx.fixture_id == fx.source:  # siftsmall with its learn set
            return [read_vecs(pool_file(fx.source, data), DIM, SIFT_POOL[fx.source][1])]
        base = read_vecs(data / folder / f"{prefix}_base.fvecs", DIM, parts["base"])
        return [base[fx.num_base:]]  # the rows held out of the base set
    except VecsError as e:
        raise FixtureError(f"{e}; fresh queries are drawn from it (docs/fixtures.md)") from e
