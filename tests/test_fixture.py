"""Fixture sources, the frozen codebook and ground truth, on real files."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from pqkern.bench import fixture, pq, reference, synthetic
from pqkern.bench.fixture import GT_BLOCK, FixtureError, GroundTruth, load_fixture
from pqkern.bench.vecs import read_vecs, write_vecs

# Pinned digests: the synthetic generator must give these bytes on every machine.
BASE_1000_DIGEST = "f73f6c344ef47c6a6298d1365e8dba3b2356f0731bb3a6fcf6a11ecd4400964b"
SMOKE_QUERY_DIGEST = "43a7375cb35b079da2e2aaa0e1e06e1a5185eb56db1e743f7940edac6a489f81"


def test_synthetic_bytes_are_pinned():
    assert hashlib.sha256(synthetic.generate(0, "base", 1000, 1_000_000).tobytes()).hexdigest() == BASE_1000_DIGEST
    assert hashlib.sha256(synthetic.generate(0, "query", 64, 1024).tobytes()).hexdigest() == SMOKE_QUERY_DIGEST


def test_synthetic_chunks_are_consistent_and_sift_like():
    whole = synthetic.generate(0, "base", 300, 1_000_000)
    assert np.array_equal(whole[100:], synthetic.generate(0, "base", 200, 1_000_000, start=100))
    assert whole.dtype == np.uint8 and whole.shape == (300, 128)
    assert 0.05 < (whole == 0).mean() < 0.5  # sparse-ish, like SIFT
    assert not np.array_equal(whole, synthetic.generate(0, "query", 300, 1_000_000))
    threaded = fixture._generate("base", 1000, 1_000_000, lambda done, total: None, step=96)  # chunks side by side
    assert hashlib.sha256(threaded.tobytes()).hexdigest() == BASE_1000_DIGEST


def test_smoke_fixture_shapes_and_readonly(data_dir):
    fx = load_fixture("smoke")
    assert fx.fixture_id.startswith("smoke-b1024-q64")
    assert fx.codes.shape == (16, 1024) and fx.codes.dtype == np.uint8 and fx.codes.flags.c_contiguous
    assert fx.codebook.shape == (16, 256, 8) and fx.codebook.dtype == np.float32
    assert fx.queries.shape == (64, 128) and fx.queries.dtype == np.float32
    assert fx.groundtruth.shape == (64, 100)
    for arr in (fx.codes, fx.codebook, fx.queries):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr.setflags(write=True)


def test_codes_are_the_nearest_centroids(data_dir):
    fx = load_fixture("smoke")
    row = np.asarray(fx.base[5], np.float64).reshape(16, 1, 8)
    expected = ((np.asarray(fx.codebook, np.float64) - row) ** 2).sum(axis=2).argmin(axis=1)
    assert np.array_equal(fx.codes[:, 5], expected)


def _copy_smoke(data_dir, tmp_path):
    fx = load_fixture("smoke")
    target = tmp_path / "data"
    shutil.copytree(data_dir / "cache" / fx.fixture_id, target / "cache" / fx.fixture_id)
    return target, target / "cache" / fx.fixture_id


def test_tampered_codebook_is_refused(data_dir, tmp_path):
    target, cache = _copy_smoke(data_dir, tmp_path)
    raw = bytearray((cache / "codebook.npy").read_bytes())
    raw[-1] ^= 1
    (cache / "codebook.npy").write_bytes(bytes(raw))
    with pytest.raises(FixtureError, match="codebook.npy: sha256 .* does not match the frozen"):
        load_fixture("smoke", data=target)


def test_codebook_is_never_retrained_silently(data_dir, tmp_path):
    target, cache = _copy_smoke(data_dir, tmp_path)
    (cache / "codebook.sha256").unlink()
    with pytest.raises(FixtureError, match="will not be retrained silently"):
        load_fixture("smoke", data=target)


def test_codebook_training_is_deterministic():
    train = synthetic.generate(0, "learn", 2048, 1_000_000)
    a, b = pq.train_codebook(train, seed=0), pq.train_codebook(train, seed=0)
    assert np.array_equal(a, b)


def test_sift_sources_refuse_size_overrides(data_dir):
    with pytest.raises(FixtureError, match="sizes are fixed"):
        load_fixture("siftsmall", num_base=100)
    with pytest.raises(FixtureError, match="unknown source"):
        load_fixture("sift2m")


def test_exact_knn_matches_naive_search():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 8, (3000, 16)).astype(np.float32)  # small range: many ties
    queries = rng.integers(0, 8, (7, 16)).astype(np.float32)
    ids, d = reference.exact_knn(base, queries, 20, base_chunk=700, query_chunk=3)
    for i, q in enumerate(queries):
        full = ((base.astype(np.float64) - q) ** 2).sum(axis=1)
        order = np.lexsort((np.arange(len(full)), full))[:20]
        assert np.array_equal(d[i], full[order])
        assert np.array_equal(ids[i], order)


def old_exact_knn(base, queries, k, base_chunk=65536, query_chunk=256):
    """The reference: exact_knn as it was before the float32 path (float64 products, lexsort merges), unchanged."""
    nb, nq = base.shape[0], queries.shape[0]
    k = min(k, nb)
    out_ids = np.empty((nq, k), np.int32)
    out_d = np.empty((nq, k), np.float64)
    q_all = np.asarray(queries, np.float64)
    q_norm = np.einsum("ij,ij->i", q_all, q_all)
    best_ids = np.empty((nq, 0), np.int64)
    best_d = np.empty((nq, 0), np.float64)
    for b0 in range(0, nb, base_chunk):
        x = np.asarray(base[b0 : b0 + base_chunk], np.float64)
        x_norm = np.einsum("ij,ij->i", x, x)
        ids = np.arange(b0, b0 + x.shape[0])
        new_ids, new_d = [], []
        for q0 in range(0, nq, query_chunk):
            q = q_all[q0 : q0 + query_chunk]
            d = (q_norm[q0 : q0 + query_chunk, None] - 2.0 * (q @ x.T)) + x_norm[None, :]
            i, dd = _old_smallest(d, np.broadcast_to(ids, d.shape), k)
            new_ids.append(i)
            new_d.append(dd)
        merged_d = np.concatenate([best_d, np.concatenate(new_d)], axis=1)
        best_ids, best_d = _old_smallest(merged_d, np.concatenate([best_ids, np.concatenate(new_ids)], axis=1), k)
    for i in range(nq):
        d = reference.exact_distances(base, q_all[i], best_ids[i])
        order = np.lexsort((best_ids[i], d))
        out_ids[i] = best_ids[i][order]
        out_d[i] = d[order]
    return out_ids, out_d


def _old_smallest(d, ids, k):
    kk = min(k, d.shape[1])
    kth = np.partition(d, kk - 1, axis=1)[:, kk - 1 : kk]
    rows, cols = np.nonzero(d <= kth)
    sel_ids, sel_d = ids[rows, cols], d[rows, cols]
    order = np.lexsort((sel_ids, sel_d, rows))
    rows, sel_ids, sel_d = rows[order], sel_ids[order], sel_d[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    keep = rank < kk
    return sel_ids[keep].reshape(-1, kk), sel_d[keep].reshape(-1, kk)


def _assert_same_knn(base, queries, k, **chunks):
    ids, d = reference.exact_knn(base, queries, k, **chunks)
    ref_ids, ref_d = old_exact_knn(base, queries, k)
    assert ids.dtype == np.int32 and d.dtype == np.float64
    assert np.array_equal(ids, ref_ids) and np.array_equal(d, ref_d)


@pytest.mark.parametrize("chunks", [{}, {"base_chunk": 700, "query_chunk": 3}, {"base_chunk": 64, "query_chunk": 1}])
def test_exact_knn_float32_path_matches_the_float64_brute_force(chunks):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 4, (3001, 32)).astype(np.uint8)  # few distinct distances: ties everywhere
    queries = rng.integers(0, 4, (17, 32)).astype(np.float32)
    assert reference._small_int_max(base) == 3
    _assert_same_knn(base, queries, 50, **chunks)
    sift_like = synthetic.generate(0, "base", 4000, 1_000_000)  # 128-d, values up to 255: the bound's edge
    sift_q = synthetic.generate(0, "query", 9, 1_000_000).astype(np.float32)
    _assert_same_knn(sift_like, sift_q, 100, **chunks)
    _assert_same_knn(np.full((300, 128), 255, np.float32), np.zeros((2, 128), np.float32), 10, **chunks)


def test_exact_knn_falls_back_to_float64_when_float32_would_round():
    rng = np.random.default_rng(4)
    fractional = rng.integers(0, 4, (2000, 16)) + rng.choice([0.0, 0.5], (2000, 16))
    large = rng.integers(0, 1000, (2000, 128)).astype(np.float32)  # integers, but 128 * 999**2 > 2**24
    negative = rng.integers(-3, 4, (2000, 16)).astype(np.float32)
    for base in (fractional, large, negative):
        queries = base[:5] + 1.0
        assert reference._small_int_max(base) < 0 or base.shape[1] * reference._small_int_max(base) ** 2 > 1 << 24
        _assert_same_knn(base, queries, 30)
    with_nan = fractional.copy()
    with_nan[7, 3] = np.nan
    assert reference._small_int_max(with_nan) == -1


def _fresh(tmp_path, **sizes):
    return load_fixture("synthetic", data=tmp_path / "data", **sizes)


def test_ground_truth_is_computed_on_demand_in_blocks(tmp_path, capfd):
    fx = _fresh(tmp_path, num_base=1500, num_queries=2 * GT_BLOCK + 500, num_learn=0)
    err = capfd.readouterr().err
    for step in ("generated base vectors in", "trained codebook in", "encoded base in", "ground truth for queries 0-1000 in"):
        assert step in err
    gt, path = fx.groundtruth, fx.cache_dir / "groundtruth.ivecs"
    assert isinstance(gt, GroundTruth) and gt.shape == (2500, 100) and len(gt) == 2500
    assert gt.cached_rows == GT_BLOCK and read_vecs(path, 100).shape == (GT_BLOCK, 100)
    assert gt[: GT_BLOCK, :10].shape == (GT_BLOCK, 10) and gt.cached_rows == GT_BLOCK  # the runner's default: no work
    expected, _ = old_exact_knn(fx.base, fx.queries, 100)
    assert np.array_equal(gt[1500], expected[1500]) and gt.cached_rows == 2 * GT_BLOCK  # one more whole block
    assert "ground truth for queries 1000-2000 in" in capfd.readouterr().err
    again = _fresh(tmp_path, num_base=1500, num_queries=2500, num_learn=0).groundtruth
    assert again.cached_rows == 2 * GT_BLOCK  # kept in the cache
    assert np.array_equal(again[np.array([4, 2499, 0]), :10], expected[[4, 2499, 0], :10])
    assert np.array_equal(np.asarray(again), expected) and read_vecs(path, 100).shape == (2500, 100)
    assert np.array_equal(gt[-1], expected[-1])  # the first object reads what the second one computed


def test_a_whole_ground_truth_from_before_is_used_as_it_is(tmp_path):
    fx = _fresh(tmp_path, num_base=1500, num_queries=1200, num_learn=0)
    whole, _ = old_exact_knn(fx.base, fx.queries, 100)
    whole[1100:, 0] = 0  # marked: served from the file, never recomputed
    write_vecs(fx.cache_dir / "groundtruth.ivecs", whole)
    again = _fresh(tmp_path, num_base=1500, num_queries=1200, num_learn=0).groundtruth
    assert again.cached_rows == 1200 and np.array_equal(np.asarray(again), whole)


def test_a_damaged_ground_truth_is_refused(tmp_path):
    fx = _fresh(tmp_path, num_base=1500, num_queries=300, num_learn=0)
    path = fx.cache_dir / "groundtruth.ivecs"
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])
    with pytest.raises(FixtureError, match="groundtruth.ivecs: .* truncated.*delete it to recompute"):
        _fresh(tmp_path, num_base=1500, num_queries=300, num_learn=0)
    path.write_bytes(raw + raw[:404])
    with pytest.raises(FixtureError, match="holds 301 records, more than the 300 queries"):
        _fresh(tmp_path, num_base=1500, num_queries=300, num_learn=0)


def test_siftsmall_loads_and_ground_truth_agrees(data_dir, siftsmall_dir):
    fx = load_fixture("siftsmall")  # no learn set in the shared copy: the last 2,000 base rows are held out
    assert fx.base.shape == (8_000, 128) and fx.queries.shape == (100, 128) and fx.groundtruth.shape == (100, 100)
    assert fx.fixture_id == "siftsmall-heldout2000"  # its ground truth recomputed on those 8,000 rows (checked below)
    assert float(np.asarray(fx.base).max()) <= 255 and float(np.asarray(fx.base).min()) >= 0
    ids, d = reference.exact_knn(fx.base, fx.queries[:20], 100)
    for i in range(20):  # ties allowed: compare distances rank by rank
        gt_d = reference.exact_distances(fx.base, fx.queries[i], fx.groundtruth[i])
        assert np.array_equal(np.sort(gt_d), d[i])
