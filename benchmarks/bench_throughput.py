"""The kernel's history (immutable bench): its throughput against the frozen seed, recall and memory, per workload.

Every series here reads one paired run of the commit's kernel against the frozen seed, shared
by all the classes (the module's ``setup_cache``, ``common.measure_throughput``): the trial's own
measurement of a keep when it is exactly this kernel and this bench, else a run of its own on
fresh queries. The estimand is throughput: ``Speed.track_time_vs_seed`` is the sum of the
commit's CPU time over the run's queries divided by the seed's over the same queries (0.8 is a
1.25x speed-up; ``combined``: over every judged workload, the trial's ``vs_seed``), both timed
side by side, so a new machine or a noisy neighbour moves it far less than the absolute times.
It is a time, lower is better, because asv's regression detection and ``asv find`` read every
benchmark that way; parameter ``bound`` draws the estimate and its 99% interval (``low``,
``high``). ``Latency`` gives the commit's per-query p50 and p99 (absolute:
they move with the machine). The recall gate fails (failed in the dashboard, ``!`` in ``asv
compare``, a regression for ``asv continuous``) when recall@10 is below the floor, differs from
the exact ADC's on the same queries by more than the band, or the kernel skipped rows.

A series is skipped (n/a), never failed, where it does not apply: a workload the run did not
judge (``real`` and ``real-ivf`` beside a real fixture, ``flat`` beside the synthetic one), a
measurement that is not a throughput one, a commit with no kernel. The series before this file,
``bench_kernel.py``, recorded medians of per-query log ratios; it is retired (docs/asv.md).

Editing this file changes the benchmarks' version hashes, and ``asv publish`` then drops every
older point: treat it like the rest of the immutable bench.
"""

from __future__ import annotations

import math

from .common import measure_throughput

ESTIMAND = "throughput"
WORKLOADS = ["flat", "ivf", "real", "real-ivf"]
RECALL_FLOOR = 0.50
RECALL_BAND = 0.005
BOUNDS = {"estimate": "speedup", "low": "hi", "high": "lo"}  # time ratio = 1 / speed-up: the bounds swap


def setup_cache():
    return measure_throughput()


setup_cache.timeout = 3600


def _applies(result: dict, workload: str | None = None, *keys: str) -> None:
    """Skip (NotImplementedError: n/a) a series that does not apply to this measurement; raise when the run failed."""
    if "skip" in result:
        raise NotImplementedError(result["skip"])
    if result.get("decision") not in ("measured", "keep", "discard"):
        raise RuntimeError(f"the paired run ended in {result.get('decision')}: {result.get('reason')}")
    if result.get("estimand") != ESTIMAND:
        raise NotImplementedError(f"not a throughput measurement (estimand {result.get('estimand')!r}): "
                                  f"its figures belong to bench_kernel.py's retired series")
    if workload is not None and workload not in result.get("candidate", {}):
        raise NotImplementedError(f"no {workload} workload in this run")
    missing = [k for k in keys if result["candidate"][workload].get(k) is None]
    if missing:
        raise NotImplementedError(f"no {', '.join(missing)} for {workload} in this run")


def _figure(result: dict, workload: str, key: str) -> float:
    return float(result["candidate"][workload][key])


class Speed:
    """The commit's CPU time as a fraction of the seed's over the same queries, with its 99% interval: per workload, and
    over every judged workload (``combined``, the trial's ``vs_seed``)."""

    timeout = 1800
    params = (["combined", *WORKLOADS], list(BOUNDS))
    param_names = ["workload", "bound"]

    def setup(self, result, workload, bound):
        _applies(result, None if workload == "combined" else workload)
        if workload not in result.get("intervals", {}):
            raise NotImplementedError(f"no {workload} interval in this run")
        if not 0 < float(result["intervals"][workload][BOUNDS[bound]]) < math.inf:
            raise NotImplementedError(f"the {workload} interval is open at this end (too few rounds to bound it)")

    def track_time_vs_seed(self, result, workload, bound):
        return 1.0 / float(result["intervals"][workload][BOUNDS[bound]])

    track_time_vs_seed.unit = "x the seed's time"


class Recall:
    """recall@10 on the run's queries, its difference from the exact ADC's on the same queries, and the gate."""

    timeout = 1800
    params = (WORKLOADS,)
    param_names = ["workload"]

    def setup(self, result, workload):
        _applies(result, workload, "recall_at_10", "recall_delta")

    def track_recall_at_10(self, result, workload):
        return _figure(result, workload, "recall_at_10")

    track_recall_at_10.unit = "recall@10"

    def track_recall_delta(self, result, workload):
        return _figure(result, workload, "recall_delta")

    track_recall_delta.unit = "recall@10 - exact ADC's"

    def track_recall_gate(self, result, workload):
        """The margin left in the band around the exact ADC's recall@10 (or above the floor, if that is nearer); raises
        when outside the floor or the band, or when the kernel skipped rows."""
        recall, delta = _figure(result, workload, "recall_at_10"), _figure(result, workload, "recall_delta")
        band = max(RECALL_BAND, 1.0 / max(float(result["candidate"][workload].get("delta_queries", 1)), 1.0) + 1e-9)
        if recall < RECALL_FLOOR or abs(delta) > band:
            raise AssertionError(f"{workload} recall gate: recall@10 {recall:.4f} (floor {RECALL_FLOOR}), {delta:+.4f} "
                                 f"from the exact ADC's on the same queries (band {band:.4f})")
        if result.get("contract_problem"):
            raise AssertionError(f"{workload} recall gate: {result['contract_problem']}")
        return min(band - abs(delta), recall - RECALL_FLOOR)

    track_recall_gate.unit = "recall@10 margin"


class Latency:
    """The commit's per-query CPU time, median and 99th percentile (absolute: moves with the machine)."""

    timeout = 1800
    params = (WORKLOADS,)
    param_names = ["workload"]

    def setup(self, result, workload):
        _applies(result, workload, "p50_ns", "p99_ns")

    def track_p50_ns(self, result, workload):
        return _figure(result, workload, "p50_ns")

    track_p50_ns.unit = "ns"

    def track_p99_ns(self, result, workload):
        return _figure(result, workload, "p99_ns")

    track_p99_ns.unit = "ns"


class Run:
    """Of the run as a whole: the kernel's own peak memory, and where the measurement came from."""

    timeout = 1800

    def setup(self, result):
        _applies(result)

    def track_kernel_peak_mem_mb(self, result):
        return float(result["peak_mem_mb"]["candidate"])

    track_kernel_peak_mem_mb.unit = "MB"

    def track_measured_by_trial(self, result):
        return float(result.get("measured_by_trial", 0))

    track_measured_by_trial.unit = "1: the trial's own measurement, 0: measured by asv"
