"""Fixture sources, the frozen codebook and ground truth, on real files."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from pqkern.bench import pq, reference, synthetic
from pqkern.bench.fixture import FixtureError, load_fixture

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


def test_siftsmall_loads_and_ground_truth_agrees(data_dir, siftsmall_dir):
    fx = load_fixture("siftsmall")
    assert fx.base.shape == (10_000, 128) and fx.queries.shape == (100, 128) and fx.groundtruth.shape == (100, 100)
    assert float(np.asarray(fx.base).max()) <= 255 and float(np.asarray(fx.base).min()) >= 0
    ids, d = reference.exact_knn(fx.base, fx.queries[:20], 100)
    for i in range(20):  # ties allowed: compare distances rank by rank
        gt_d = reference.exact_distances(fx.base, fx.queries[i], fx.groundtruth[i])
        assert np.array_equal(np.sort(gt_d), d[i])
