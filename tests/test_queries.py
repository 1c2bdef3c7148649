"""Fresh queries: drawn from the fixture's own distribution, different every run, replayable from their seed, never the
fixture's own; and the exact answers the judge computes for them."""

from __future__ import annotations

import numpy as np
import pytest

from pqkern.bench import fixture, oracle, queries
from pqkern.bench.fixture import load_fixture
from pqkern.bench.reference import adc_distances
from pqkern.bench.vecs import write_vecs
from pqkern.bench.workloads import make


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return load_fixture("synthetic", num_base=4000, num_queries=1200, num_learn=0, data=tmp_path_factory.mktemp("q"))


def test_fresh_queries_are_replayable_and_new_every_seed(fx):
    a, b = queries.fresh_queries(fx, 12345, 300), queries.fresh_queries(fx, 12345, 300)
    c = queries.fresh_queries(fx, queries.draw_seed(), 300)
    assert a.fresh and a.vectors.flags.writeable is False and a.vectors.dtype == np.float32
    assert np.array_equal(a.vectors, b.vectors) and not np.array_equal(a.vectors, c.vectors)
    own = {q.tobytes() for q in np.asarray(fx.queries)}
    assert not any(q.tobytes() in own for q in a.vectors)  # never one of the fixture's own queries
    assert abs(float(a.vectors.mean()) - float(np.asarray(fx.queries).mean())) < 2.0  # the same distribution
    assert a.describe() == "fresh, seed 0x3039" and "secret start" in a.note and "0x3039" not in a.note


def test_warm_vectors_and_order_come_from_the_seed(fx):
    assert np.array_equal(queries.warm_vectors(fx, 7), queries.warm_vectors(fx, 7))
    assert not np.array_equal(queries.warm_vectors(fx, 7), queries.warm_vectors(fx, 8))
    middle = queries.warm_vectors(fx, None)
    assert np.array_equal(middle, np.asarray(fx.base[2000:2008], np.float32))  # pqkern-run's fixed warm-up
    first, second = queries.rng(7, "order").permutation(50), queries.rng(7, "pairs").permutation(50)
    assert not np.array_equal(first, second) and np.array_equal(first, queries.rng(7, "order").permutation(50))
    with pytest.raises(ValueError, match="not a number"):
        queries.parse_seed("seven")
    assert queries.parse_seed("0x10") == queries.parse_seed("16") == 16


def test_ground_truth_of_fresh_queries_is_exact(fx):
    qs = queries.fresh_queries(fx, 99, 40)
    got = qs.groundtruth(np.array([3, 1, 3]), 10)
    base = np.asarray(fx.base, np.float64)
    for j, r in enumerate((3, 1, 3)):
        d = ((base - qs.vectors[r].astype(np.float64)) ** 2).sum(axis=1)
        assert np.allclose(np.sort(d)[:10], d[got[j]])


def test_sift1m_draws_from_its_queries_and_learn_set_beyond_the_fixed_block(tmp_path, monkeypatch):
    parts = {"base": 3000, "query": 1100, "learn": 1500, "groundtruth": 1100}
    monkeypatch.setitem(fixture.SIFT_FILES, "sift1m", ("sift", "sift", parts))
    rng = np.random.default_rng(0)
    folder = tmp_path / "sift"
    folder.mkdir()
    for name, n in (("base", 3000), ("query", 1100), ("learn", 1500)):
        write_vecs(folder / f"sift_{name}.fvecs", rng.integers(0, 60, (n, 128)).astype(np.float32))
    write_vecs(folder / "sift_groundtruth.ivecs", rng.integers(0, 3000, (1100, 100)).astype(np.int32))
    fx = load_fixture("sift1m", data=tmp_path)
    qs = queries.fresh_queries(fx, 5, 300)
    pool = {v.tobytes() for v in np.asarray(fx.queries[1000:])} | {
        v.tobytes() for v in np.asarray(fixture.read_vecs(folder / "sift_learn.fvecs", 128))}
    fixed = {v.tobytes() for v in np.asarray(fx.queries[:1000])}
    assert qs.fresh and len(qs) == 300 and all(v.tobytes() in pool and v.tobytes() not in fixed for v in qs.vectors)
    assert len({v.tobytes() for v in qs.vectors}) == 300 and "1,600 held-out vectors" in qs.note


def test_a_source_with_too_few_queries_says_so(siftsmall_dir):
    fx = load_fixture("siftsmall", data=siftsmall_dir.parent)
    qs = queries.fresh_queries(fx, 5, 4000)
    assert not qs.fresh and len(qs) == 100
    assert qs.describe() == "fixed, siftsmall has only 100 queries, too few to draw fresh ones"


@pytest.mark.parametrize("k", [10, 100])
def test_the_screened_oracle_is_exact_for_any_valid_bound(fx, k):
    qs = queries.fresh_queries(fx, 3, 30)
    exact_ids, exact_d = oracle.flat_topk(fx.codes, fx.codebook, qs.vectors, k)
    rows = np.ascontiguousarray(np.asarray(fx.codes).T)
    tables = oracle.tables_of(fx.codebook, qs.vectors)
    for bounds in (np.full(len(qs), np.inf), exact_d[:, -1], exact_d[:, -1] * 1.5):
        ids, d = oracle.screened_topk(rows, np.arange(rows.shape[0]), tables, bounds, k)
        assert np.array_equal(ids, exact_ids) and np.array_equal(d, exact_d)


def test_the_screened_oracle_orders_ties_by_id():
    codes = np.tile(np.arange(16, dtype=np.uint8)[:, None], (1, 64))  # 64 identical rows: every distance ties
    codes[:, 5] = 200  # one row apart
    codebook = np.random.default_rng(1).normal(size=(16, 256, 8)).astype(np.float32)
    q = np.zeros((1, 128), np.float32)
    rows = np.ascontiguousarray(codes.T)
    ids, d = oracle.screened_topk(rows, np.arange(64), oracle.tables_of(codebook, q), np.array([np.inf]), 10)
    exact_ids, exact_d = oracle.flat_topk(codes, codebook, q, 10)
    assert np.array_equal(ids, exact_ids) and np.array_equal(d, exact_d)
    assert list(ids[0]) == sorted(ids[0]) or 5 in ids[0]


def test_a_workload_checks_fresh_results_against_answers_bounded_by_the_kernels(fx):
    qs = queries.fresh_queries(fx, 11, 20)
    wl = make("flat", fx, qs)
    rows = np.arange(20)
    exact_ids, exact_d = oracle.flat_topk(fx.codes, fx.codebook, qs.vectors, 10)
    good = wl.check(rows, exact_ids[:, None, :], exact_d[:, None, :].astype(np.float32), 0.01)
    assert wl.rank_problem(good, 0.01) == "" and np.array_equal(wl.oracle(rows)[0], exact_ids)
    found = exact_ids.copy()
    far = np.argsort(adc_distances(fx.codes, fx.codebook, qs.vectors[4]))[-1]
    found[4, 0] = far  # query 4 misses its nearest row: an honest distance for a row that is not in the top-10
    dists = np.stack([adc_distances(fx.codes, fx.codebook, qs.vectors[j], found[j]) for j in rows])
    order = np.argsort(dists, axis=1, kind="stable")
    found, dists = np.take_along_axis(found, order, 1), np.take_along_axis(dists, order, 1)
    wl = make("flat", fx, qs)  # a fresh judge: its answers are computed with this kernel's bounds
    bad = wl.check(rows, found[:, None, :], dists[:, None, :].astype(np.float32), 0.01)
    assert "query 4: the top-10 is not the nearest by ADC" in wl.rank_problem(bad, 0.01)
