"""The throughput estimand, its confidence sequence and the keep rule's stops, on simulated rounds (no timing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pqkern.bench import chain, retry, rule, throughput

WORKLOADS = ["real", "ivf", "real-ivf"]


def _rounds(rng, n: int, speedups: dict[str, float], noise: float = 0.05, tail: tuple[float, float] = (0.0, 1.0)):
    """Simulated rounds: incumbent time ~1 (noisy), candidate time 1/speed-up, a fraction ``tail[0]`` of the candidate's
    queries ``tail[1]`` times slower."""
    out = {}
    for w, s in speedups.items():
        a = np.exp(rng.normal(0, noise, n)) * 1e6
        b = np.exp(rng.normal(0, noise, n)) * 1e6 / s
        slow = rng.random(n) < tail[0]
        b[slow] *= tail[1]
        out[w] = [[float(x), float(y)] for x, y in zip(a, b, strict=True)]
    return out


def test_the_estimate_is_the_ratio_of_summed_times_not_the_typical_query():
    rng = np.random.default_rng(1)
    rounds = _rounds(rng, 400, {"real": 1.4}, noise=0.01, tail=(0.1, 16.0))  # 1 query in 10 searched 16 times
    iv = throughput.intervals(rounds)["real"]
    assert math.exp(iv.mean) == pytest.approx(throughput.ratio_of_sums(rounds["real"]))
    assert math.exp(iv.mean) < 0.7 and iv.hi < 0  # throughput about 0.56 of the incumbent's; nine queries in ten 1.4x faster
    assert rule.decide({**throughput.intervals(rounds), "ivf": iv, "real-ivf": iv}, WORKLOADS)[0] == "discard"


def test_the_interval_narrows_and_covers_a_nil_change_at_every_round():
    rng = np.random.default_rng(2)
    missed = 0
    for _ in range(200):
        rounds = _rounds(rng, 150, dict.fromkeys(WORKLOADS, 1.0), noise=0.08)
        for t in range(throughput.MIN_ROUNDS, 151, 10):
            ivs = throughput.intervals({w: r[:t] for w, r in rounds.items()})
            if not ivs["combined"].lo <= 0 <= ivs["combined"].hi:
                missed += 1
                break
    assert missed <= 4  # a 99% sequence: about 1% of runs ever miss, looked at every 10 rounds
    ivs = throughput.intervals(rounds)
    assert ivs["combined"].hi - ivs["combined"].lo < ivs["real"].hi - ivs["real"].lo  # the mean of three is narrower


def test_stops_name_what_was_decided_and_what_was_not():
    rng = np.random.default_rng(3)
    ivs = throughput.intervals(_rounds(rng, 200, {"real": 1.15, "ivf": 1.0, "real-ivf": 1.0}, noise=0.01))
    assert rule.decide(ivs, WORKLOADS) == ("keep", "faster")
    noisy = throughput.intervals(_rounds(rng, 40, {"real": 1.5, "ivf": 1.0, "real-ivf": 1.0}, noise=0.12))
    assert rule.decide(noisy, WORKLOADS) == ("confirm", "faster")  # the combined gain is decided, the margins are not
    assert rule.at_cap(noisy, WORKLOADS).startswith("cap:")
    assert rule.confirm(noisy, WORKLOADS)[1].startswith("cap:")
    assert "not shown to be within" in rule.explain(rule.at_cap(noisy, WORKLOADS))
    undecided = throughput.intervals(_rounds(rng, 30, dict.fromkeys(WORKLOADS, 1.01), noise=0.08))
    assert rule.at_cap(undecided, WORKLOADS) == "cap"
    small = throughput.intervals(_rounds(rng, 300, dict.fromkeys(WORKLOADS, 1.005), noise=0.005))
    assert rule.decide(small, WORKLOADS) == ("discard", "below-bar")
    slow_ivf = throughput.intervals(_rounds(rng, 200, {"real": 1.2, "ivf": 0.95, "real-ivf": 1.0}, noise=0.01))
    assert rule.decide(slow_ivf, WORKLOADS) == ("discard", "loss:ivf")


def test_a_gain_on_one_workload_keeps_and_nothing_slower_overall_does():
    rng = np.random.default_rng(2)
    one = throughput.intervals(_rounds(rng, 200, {"real": 1.05, "ivf": 1.0, "real-ivf": 1.0}, noise=0.03))
    assert not one["combined"].lo > rule.MIN_GAIN and one["real"].lo > rule.ONE_WORKLOAD_GAIN  # the combined bar alone
    assert rule.decide(one, WORKLOADS) == ("keep", "faster")  # would not keep it
    traded = throughput.intervals(_rounds(rng, 200, {"real": 1.035, "ivf": 0.982, "real-ivf": 0.982}, noise=0.005))
    assert traded["real"].lo > rule.ONE_WORKLOAD_GAIN and not traded["combined"].lo > 0  # no gain overall
    assert not rule.gain_decided(traded, WORKLOADS) and (rule.decide(traded, WORKLOADS) or ("go on",))[0] != "keep"
    small = throughput.intervals(_rounds(rng, 200, {"real": 1.02, "ivf": 1.0, "real-ivf": 1.0}, noise=0.005))
    assert rule.decide(small, WORKLOADS) != ("keep", "faster")  # 2% on one workload is below its bar
    aa = [throughput.intervals(_rounds(rng, 120, dict.fromkeys(WORKLOADS, 1.0), noise=0.03)) for _ in range(200)]
    assert sum(rule.gain_decided(ivs, WORKLOADS) for ivs in aa) <= 2  # an A/A gain: the combined interval's 1% at most


def test_a_simpler_candidate_keeps_only_within_its_margin():
    rng = np.random.default_rng(4)
    margin = rule.spent_margin([], WORKLOADS)
    equal = throughput.intervals(_rounds(rng, 300, dict.fromkeys(WORKLOADS, 1.0), noise=0.01))
    assert rule.decide(equal, WORKLOADS) == ("discard", "within")
    assert rule.decide(equal, WORKLOADS, margin) == ("keep", "simpler")
    slower = throughput.intervals(_rounds(rng, 300, {"real": 0.97, "ivf": 1.02, "real-ivf": 1.01}, noise=0.01))
    assert rule.decide(slower, WORKLOADS, margin) == ("discard", "loss:real")


def test_near_copies_share_one_error_budget_and_the_same_code_continues():
    base = "import numba\n\n\ndef prepare(codes, codebook):\n    return codes\n\n\ndef search(index, query, k):\n    x = 1\n"
    near = base.replace("x = 1", "x = 2")
    renamed = base.replace("x = 1", "y = 1")
    assert retry.tree_sha(base) != retry.tree_sha(near) and retry.family_sha(base) == retry.family_sha(near)
    assert retry.family_sha(base) == retry.family_sha(renamed)
    assert retry.tree_sha(base) == retry.tree_sha(base.replace("x = 1", "x = 1  # a comment"))
    assert sum(retry.family_alpha(k) for k in range(1, 10_000)) < throughput.ALPHA
    rows = [{"incumbent": "abc", "status": "discard", "stop": "cap", "tree_sha": retry.tree_sha(base),
             "family_sha": retry.family_sha(base), "alpha": "0.00608", "trial": "t1", "evidence_sha256": "0" * 64}]
    plan = retry.plan(rows, "abc", near, __import__("pathlib").Path("/nonexistent"), WORKLOADS)
    assert plan.alpha == pytest.approx(retry.family_alpha(2)) and not plan.prior and "near-copy" in plan.note
    with pytest.raises(retry.EvidenceError, match="missing or altered"):
        retry.plan(rows, "abc", base, __import__("pathlib").Path("/nonexistent"), WORKLOADS)


def test_the_untimed_budget_compares_like_with_like():
    """An honest kernel whose cost depends on the query meets its slow queries in the warm-up calls by chance, never a
    crash; a kernel doing its work in the untimed calls is."""
    from pqkern.bench import budget

    rng = np.random.default_rng(5)
    slow = rng.random(60) < 0.1  # one query in ten searched 16 times, in either kind of call
    timed = np.where(rng.random(60) < 0.1, 16e6, 1e6)
    untimed = np.where(slow, 16e6, 1e6)
    untimed[:4] = 16e6  # more of the slow ones fell in the warm-up calls: their mean is over 3x the median timed call
    assert untimed.mean() > 3 * np.median(timed)  # what the old budget compared, and called a cheat
    assert budget.untimed_problem("ivf", list(untimed), list(timed)) == ""
    cheat = budget.untimed_problem("ivf", list(np.full(200, 5e6)), list(np.full(200, 1e6)))
    assert "confidently more than 3 times its timed calls" in cheat


def _ratio_interval(estimate: float, lo: float, hi: float) -> throughput.Interval:
    return throughput.Interval(math.log(estimate), math.log(lo), math.log(hi), 208, 0.05)


def test_the_chain_allows_the_drift_of_two_honest_measurements_and_not_a_sandbagging_incumbent():
    """A CI run's honest figures (the seed's code at HEAD and the frozen seed, the same code, measured seconds apart)
    agree within the tolerance; an incumbent recorded 3x over the seed makes any real gain over it contradict."""
    speedup, vs_seed = _ratio_interval(1.232, 1.216, 1.247), _ratio_interval(1.176, 1.153, 1.199)
    assert chain.contradiction((1.002, 0.991, 1.014), speedup, vs_seed) == ""
    found = chain.contradiction((3.0, 2.9, 3.1), speedup, vs_seed)
    assert "the measurements contradict each other" in found and "3.000x [2.900, 3.100]" in found
    drift = 1 + 2.5 * chain.AGREE_TOLERANCE  # further off than both widenings allow
    assert chain.contradiction((1.014 * drift, 0.991 * drift, 1.014 * drift), speedup, vs_seed) != ""
    assert chain.agree(1.0, 1.0, 1.05, 1.05) and not chain.agree(1.0, 1.0, 1.07, 1.07)
