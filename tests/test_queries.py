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


def test_siftsmall_without_its_learn_set_holds_out_the_last_base_rows(siftsmall_dir):
    fx = load_fixture("siftsmall", data=siftsmall_dir.parent)
    assert fx.fixture_id == "siftsmall-heldout2000" and fx.num_base == 8000 and fx.groundtruth.shape == (100, 100)
    qs = queries.fresh_queries(fx, 5, 4000)  # more than the pool: all of it, in a secret order
    held = np.asarray(fixture.read_vecs(siftsmall_dir / "siftsmall_base.fvecs", 128))[8000:]
    assert qs.fresh and len(qs) == 2000 and "2,000 held-out vectors not in the base set" in qs.note
    assert {v.tobytes() for v in qs.vectors} == {v.tobytes() for v in held}
    assert not {v.tobytes() for v in np.asarray(fx.base)} & {v.tobytes() for v in qs.vectors}
    assert not np.array_equal(qs.vectors, held) and np.array_equal(qs.vectors, queries.fresh_queries(fx, 5, 4000).vectors)


def _texmex_small(folder, rng, base: int, learn: int) -> None:
    """A synthetic stand-in for siftsmall's files (integer vectors like SIFT's), ``learn`` learn vectors if any."""
    folder.mkdir(parents=True)
    for name, n in (("base", base), ("query", 100)) + ((("learn", learn),) if learn else ()):
        write_vecs(folder / f"siftsmall_{name}.fvecs", rng.integers(0, 60, (n, 128)).astype(np.float32))
    write_vecs(folder / "siftsmall_groundtruth.ivecs", rng.integers(0, base, (100, 100)).astype(np.int32))


def test_siftsmall_draws_from_its_learn_set_when_its_folder_has_it(tmp_path, monkeypatch):
    monkeypatch.setitem(fixture.SIFT_FILES, "siftsmall", ("siftsmall", "siftsmall",
                                                          {"base": 3000, "query": 100, "groundtruth": 100}))
    monkeypatch.setitem(fixture.SIFT_POOL, "siftsmall", ("learn", 1500))
    _texmex_small(tmp_path / "siftsmall", np.random.default_rng(1), 3000, 1500)
    fx = load_fixture("siftsmall", data=tmp_path)
    assert fx.fixture_id == "siftsmall" and fx.num_base == 3000  # the whole base, its shipped ground truth
    shipped = fixture.read_vecs(tmp_path / "siftsmall" / "siftsmall_groundtruth.ivecs", 100)
    assert np.array_equal(np.asarray(fx.groundtruth), shipped)
    qs = queries.fresh_queries(fx, 9, 300)
    learn = {v.tobytes() for v in np.asarray(fixture.read_vecs(tmp_path / "siftsmall" / "siftsmall_learn.fvecs", 128))}
    assert qs.fresh and len(qs) == 300 and all(v.tobytes() in learn for v in qs.vectors)
    assert "1,500 held-out vectors" in qs.note


def test_a_source_with_too_few_held_out_vectors_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(fixture.SIFT_FILES, "siftsmall", ("siftsmall", "siftsmall",
                                                          {"base": 1200, "query": 100, "groundtruth": 100}))
    monkeypatch.setitem(fixture.HELD_OUT, "siftsmall", 500)
    _texmex_small(tmp_path / "siftsmall", np.random.default_rng(2), 1200, 0)
    fx = load_fixture("siftsmall", data=tmp_path)
    assert fx.fixture_id == "siftsmall-heldout500" and fx.num_base == 700
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
