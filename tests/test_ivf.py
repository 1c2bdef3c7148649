"""The IVF_PQ layout (pqkern/bench/ivf.py) on a 20k synthetic fixture: real files, real Lance, real FAISS."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from conftest import SMALL_FIXTURE

from pqkern.bench import ivf, pq
from pqkern.bench.fixture import FixtureError, load_fixture
from pqkern.bench.reference import adc_distances
from pqkern.bench.worker import Workload

SMALL = {"source": "synthetic", "num_base": int(SMALL_FIXTURE["PQKERN_NUM_BASE"]),
         "num_queries": int(SMALL_FIXTURE["PQKERN_NUM_QUERIES"]), "num_learn": int(SMALL_FIXTURE["PQKERN_NUM_LEARN"])}
PARTITION_SIZE = 1024  # 19 partitions on 20k rows, so probing chooses (Lance's default would give 2)


def _fresh_copy(data_dir, target):
    """A data directory holding a copy of the 20k fixture's own files (no IVF files yet)."""
    fx = load_fixture(**SMALL, data=data_dir)
    shutil.copytree(fx.cache_dir, target / "cache" / fx.fixture_id, ignore=shutil.ignore_patterns("ivf*"))
    return target


@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory):
    """A data dir with the 20k fixture, its IVF layout built with 1,024-row partitions."""
    target = _fresh_copy(data_dir, tmp_path_factory.mktemp("ivf-a"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ivf, "TARGET_PARTITION_SIZE", PARTITION_SIZE)
        ivf.load_ivf(load_fixture(**SMALL, data=target), build=True)
    return target


@pytest.fixture
def built(small_data, monkeypatch):
    monkeypatch.setattr(ivf, "TARGET_PARTITION_SIZE", PARTITION_SIZE)
    fx = load_fixture(**SMALL, data=small_data)
    return fx, ivf.load_ivf(fx, build=True)


def test_num_partitions_is_lances_default():
    assert [ivf.num_partitions(n) for n in (100, 10_000, 20_000, 100_000, 1_000_000, 10**9)] == [1, 1, 2, 12, 122, 4096]


def test_nearest_is_the_fixed_order_float64_minimum_whatever_the_blas():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (3000, 128)).astype(np.float64)
    centroids = np.repeat(rng.integers(0, 200, (8, 128)).astype(np.float64), 3, axis=0)  # exact ties: lowest index wins
    centroids[1::3] += 1e-12 * rng.standard_normal((8, 128))  # near-ties, below what BLAS can resolve
    labels, dists = ivf._nearest(x, centroids)
    exact = ivf._exact_distances(x, centroids)
    assert np.array_equal(labels, exact.argmin(axis=1)) and np.array_equal(dists, exact.min(axis=1))
    assert np.all(labels % 3 != 2)


def test_layout_is_nearest_centroid_partitions_of_residual_codes(built):
    fx, lay = built
    n, parts = fx.num_base, lay.num_partitions
    assert parts == 19 and lay.nprobes == min(ivf.NPROBES, parts)
    assert lay.centroids.dtype == np.float32 and lay.centroids.shape == (parts, 128)
    assert lay.codebook.dtype == np.float32 and lay.codebook.shape == (16, 256, 8)
    assert lay.codes.dtype == np.uint8 and lay.codes.shape == (16 * n,)
    assert lay.offsets.dtype == np.int64 and lay.offsets[0] == 0 and lay.offsets[-1] == n
    assert np.array_equal(np.sort(lay.row_ids), np.arange(n))
    base = np.asarray(fx.base, np.float64)
    d = ((base[:, None, :] - np.asarray(lay.centroids, np.float64)[None]) ** 2).sum(axis=2)
    labels = d.argmin(axis=1)  # first minimum: ties to the lowest index, as ivf.py
    residuals = np.asarray(fx.base, np.float32) - lay.centroids[labels]
    codes = pq.encode(residuals, lay.codebook)
    for p in range(parts):
        rows = lay.row_ids[lay.offsets[p] : lay.offsets[p + 1]]
        assert np.all(labels[rows] == p) and np.all(np.diff(rows) > 0)
        assert np.array_equal(lay.partition(p), codes[:, rows])
    assert np.array_equal(np.bincount(labels, minlength=parts), np.diff(lay.offsets))


def test_the_worker_reads_the_same_partitions(built):
    _, lay = built
    assert set(lay.files) == {"codes", "offsets", "codebook"}
    wl = Workload("ivf", {"kind": "ivf", "files": lay.files})
    assert np.array_equal(wl.codebook, lay.codebook) and len(wl.parts) == lay.num_partitions
    for p, part in enumerate(wl.parts):
        assert part.flags.c_contiguous and np.array_equal(part, lay.partition(p))


def test_probes_residuals_and_oracle(built):
    fx, lay = built
    qids = np.arange(0, 200, 7)
    probes = lay.probes(qids)
    assert probes.dtype == np.int32 and probes.shape == (len(qids), lay.nprobes)
    q = np.asarray(fx.queries[qids], np.float64)
    d = ((q[:, None, :] - np.asarray(lay.centroids, np.float64)[None]) ** 2).sum(axis=2)
    assert np.array_equal(probes, np.argsort(d, axis=1, kind="stable")[:, : lay.nprobes])
    res = lay.residuals(qids)
    assert res.dtype == np.float32 and np.array_equal(res, fx.queries[qids][:, None, :] - lay.centroids[probes])
    ids, dists = lay.oracle_topk(qids, 10)
    for j in range(len(qids)):  # brute force: the reference ADC over each probed partition with its residual query
        cand_d = np.concatenate([adc_distances(lay.partition(p), lay.codebook, res[j, i]) for i, p in enumerate(probes[j])])
        cand_i = np.concatenate([lay.row_ids[lay.offsets[p] : lay.offsets[p + 1]] for p in probes[j]])
        order = np.lexsort((cand_i, cand_d))[:10]
        assert np.array_equal(ids[j], cand_i[order])
        assert np.allclose(dists[j], cand_d[order], rtol=1e-12)
    for bounds in (np.full(len(qids), np.inf), dists[:, -1], dists[:, -1] * 1.3):  # any valid bound: the same answer
        screened = lay.screened_topk(res, probes, 10, bounds)
        assert np.array_equal(screened[0], ids) and np.array_equal(screened[1], dists)
    again = lay.oracle_topk(qids[::-1], 10)  # now from the cache, in another order
    assert np.array_equal(again[0], ids[::-1]) and np.array_equal(again[1], dists[::-1])


def test_build_is_deterministic(small_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ivf, "TARGET_PARTITION_SIZE", PARTITION_SIZE)
    first = ivf.load_ivf(load_fixture(**SMALL, data=small_data), build=True)
    second = ivf.load_ivf(load_fixture(**SMALL, data=_fresh_copy(small_data, tmp_path)), build=True)
    assert (first.centroids_sha256, first.codebook_sha256) == (second.centroids_sha256, second.codebook_sha256)
    assert first.folder.name == second.folder.name and first.folder != second.folder
    for name in ("codes", "offsets", "row_ids"):
        digests = {hashlib.sha256((lay.folder / f"{name}.npy").read_bytes()).hexdigest() for lay in (first, second)}
        assert len(digests) == 1, name


@pytest.mark.parametrize("name, what", [("centroids", "coarse quantizer"), ("codebook", "residual codebook")])
def test_a_tampered_quantizer_is_refused(small_data, tmp_path, monkeypatch, name, what):
    monkeypatch.setattr(ivf, "TARGET_PARTITION_SIZE", PARTITION_SIZE)
    shutil.copytree(small_data, tmp_path / "data")
    fx = load_fixture(**SMALL, data=tmp_path / "data")
    path = fx.cache_dir / f"ivf_{name}.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(FixtureError, match=f"ivf_{name}.npy: sha256 .* does not match the frozen .* IVF {what} was modified"):
        ivf.load_ivf(fx, build=True)


@pytest.mark.parametrize("missing", ["ivf_centroids.sha256", "ivf_centroids.npy", "ivf_codebook.npy"])
def test_a_half_missing_quantizer_is_never_retrained(small_data, tmp_path, monkeypatch, missing):
    monkeypatch.setattr(ivf, "TARGET_PARTITION_SIZE", PARTITION_SIZE)
    shutil.copytree(small_data, tmp_path / "data")
    fx = load_fixture(**SMALL, data=tmp_path / "data")
    (fx.cache_dir / missing).unlink()
    with pytest.raises(FixtureError, match=f"{missing} missing, .* will not be retrained silently"):
        ivf.load_ivf(fx, build=True)
    assert not (fx.cache_dir / missing).exists()


def test_a_quantizer_of_another_shape_is_refused(small_data, tmp_path):
    shutil.copytree(small_data, tmp_path / "data")  # built with 19 partitions; Lance's default here is 2
    with pytest.raises(FixtureError, match=r"ivf_centroids.npy: expected float32 \(2, 128\), found float32 \(19, 128\)"):
        ivf.load_ivf(load_fixture(**SMALL, data=tmp_path / "data"), build=True)


def test_lance_and_faiss_search_the_same_layout_as_the_oracle(built):
    pytest.importorskip("faiss", reason="faiss-cpu is not installed (pip install -e '.[peers]')")
    pytest.importorskip("lance", reason="pylance is not installed (pip install -e '.[peers]')")
    from pqkern.tools import peers

    fx, lay = built
    qids = np.arange(60)
    ds = peers.lance_ivf_dataset(fx, lay, lay.folder / "lance")  # reads Lance's partitions back and compares
    peers.check_lance_ivf(ds, lay)
    index = peers.faiss_ivf_index(lay)
    oracle_ids, oracle_d = lay.oracle_topk(qids, 10)
    probes, residuals = lay.probes(qids), lay.residuals(qids)
    where = np.empty(fx.num_base, np.int64)
    where[lay.row_ids] = np.arange(fx.num_base)
    lance, faiss_ = peers.lance_search(ds, lay.nprobes), lambda q: (lambda d, i: (i[0], d[0]))(*index.search(q[None], 10))
    for search in (lance, faiss_, peers.numpy_ivf_search(lay)):
        for j in qids:
            ids, dists = search(np.asarray(fx.queries[j]))
            ref = peers.ivf_adc(lay, residuals[j], probes[j], ids, where)
            assert np.allclose(np.sort(ref), oracle_d[j], rtol=1e-5), (j, ids, oracle_ids[j])  # ties allowed
            assert np.allclose(dists, ref, rtol=1e-5)


def test_the_judge_only_loads_the_layout(data_dir, tmp_path, monkeypatch):
    """Nothing on the judge's path builds data: an unbuilt layout is an error naming the command that builds it, and
    datasets.ensure (the data layer's entry point) builds it."""
    from pqkern.bench import datasets
    from pqkern.bench.queries import fixed_queries
    from pqkern.bench.workloads import make

    target = _fresh_copy(data_dir, tmp_path)
    fx = load_fixture(**SMALL, data=target, build=False)
    with pytest.raises(FixtureError, match=r"IVF layout is not built yet.*pqkern\.bench\.datasets"):
        make("ivf", fx, fixed_queries(fx))
    for key in ("num_base", "num_queries", "num_learn"):
        monkeypatch.setenv(f"PQKERN_{key.upper()}", str(SMALL[key]))
    assert datasets.missing(SMALL["source"], ["flat", "ivf"], data=target) == ["its IVF layout"]
    with pytest.raises(FixtureError, match="not built yet"):
        load_fixture(**SMALL, data=tmp_path / "empty", build=False)
