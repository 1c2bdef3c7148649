"""The keep rule's second path under measurement (``rule.single_workload``), on real confidence sequences."""

from __future__ import annotations

import math

import numpy as np

from pqkern.bench import rule, sequential

WORKLOADS = ["flat", "ivf", "real-ivf"]


def _intervals(gains: dict[str, float], alpha: float, rounds: int = 300, sd: float = 0.01) -> dict:
    rng = np.random.default_rng(7)
    return {w: sequential.interval(list(rng.normal(math.log(g), sd, rounds)), alpha) for w, g in gains.items()}


def _decide(gains: dict[str, float]):
    corrected = _intervals(gains, sequential.ALPHA / len(gains))
    return rule.single_workload(corrected, _intervals(gains, sequential.ALPHA), list(gains))


def test_one_workload_clearly_faster_and_none_slower_is_kept_as_faster_on_it():
    assert _decide({"flat": 1.0, "ivf": 1.06, "real-ivf": 1.0}) == ("keep", "faster:ivf")
    assert "faster on ivf" in rule.explain("faster:ivf")


def test_no_keep_when_another_workload_may_be_slower_by_one_percent():
    assert _decide({"flat": 0.985, "ivf": 1.06, "real-ivf": 1.0}) is None


def test_no_keep_below_three_percent_at_the_corrected_level():
    assert _decide({"flat": 1.0, "ivf": 1.02, "real-ivf": 1.0}) is None
