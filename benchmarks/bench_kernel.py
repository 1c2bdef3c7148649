"""The kernel's history (immutable bench): speed-up over the frozen seed, time, recall and memory, flat, IVF and real.

The real descriptors were judged as a flat scan (``track_real_*``) until the trial's third
workload became their IVF_PQ layout (``real-ivf``, ``track_real_ivf_*``): a commit measured since
has points on the second series only, each series its own measurement.

One paired run per commit (``setup_cache``, see ``common.py``) feeds every benchmark here, so
they all describe the same measurement. ``track_*_time_vs_seed`` is the drift-immune line: the
commit's time as a fraction of the frozen seed's (1 / the speed-up over the seed; 0.8 is a
1.25x speed-up), both kernels timed side by side on the same machine at the same moment, so a
new machine or a noisy neighbour moves it far less than the absolute times. It is a time, lower
is better, because asv's regression detection and ``asv find`` take every benchmark that way.
Its 99% interval is drawn as the ``low`` and ``high`` lines beside the ``estimate``. The recall
gates fail (failed in the dashboard, ``!`` in ``asv compare``, a regression for ``asv
continuous``) when recall@10 is below the floor or differs from the exact ADC's on the same
queries by more than the band, or when the kernel skipped rows.

Editing this file changes the benchmarks' version hashes, and ``asv publish`` then drops every
older point: treat it like the rest of the immutable bench.
"""

from __future__ import annotations

from .common import measure_against_seed

RECALL_FLOOR = 0.50
RECALL_BAND = 0.005
BOUNDS = {"estimate": "speedup", "low": "hi", "high": "lo"}  # time ratio = 1 / speed-up: the bounds swap


def _figure(result: dict, side: str, workload: str, key: str) -> float:
    """A figure of the paired run (a kernel that skipped rows still has its figures: its recall gate fails instead,
    so that ``asv find`` can step over it); a workload the run did not measure (``real`` without the imagesift extra,
    or beside a real fixture) is n/a."""
    if result.get("decision") not in ("measured", "keep", "discard"):
        raise RuntimeError(f"the paired run ended in {result.get('decision')}: {result.get('reason')}")
    if workload not in result[side]:
        raise NotImplementedError(f"no {workload} workload in this run")
    return float(result[side][workload][key])


def _time_vs_seed(result: dict, workload: str, bound: str) -> float:
    _figure(result, "candidate", workload, "queries")
    return 1.0 / float(result["intervals"][workload][BOUNDS[bound]])


def _gate(result: dict, workload: str) -> float:
    """The margin left in the band around the exact ADC's recall@10 on the same queries (or above the floor, if that is
    nearer); raises when outside the floor or the band, or when the kernel skipped rows."""
    recall = _figure(result, "candidate", workload, "recall_at_10")
    delta = _figure(result, "candidate", workload, "recall_delta")
    band = max(RECALL_BAND, 1.0 / max(_figure(result, "candidate", workload, "delta_queries"), 1.0) + 1e-9)
    if recall < RECALL_FLOOR or abs(delta) > band:
        raise AssertionError(f"{workload} recall gate: recall@10 {recall:.4f} (floor {RECALL_FLOOR}), {delta:+.4f} from the "
                             f"exact ADC's on the same queries (band {band:.4f})")
    if result.get("contract_problem"):
        raise AssertionError(f"{workload} recall gate: {result['contract_problem']}")
    return min(band - abs(delta), recall - RECALL_FLOOR)


class Kernel:
    """The commit's kernel against the frozen seed, on the flat 1M scan, on Lance's IVF_PQ layout and on real SIFT
    descriptors (the trial's three workloads)."""

    timeout = 1800

    def setup_cache(self):
        return measure_against_seed()

    setup_cache.timeout = 3600

    def track_flat_time_vs_seed(self, result, bound):
        return _time_vs_seed(result, "flat", bound)

    track_flat_time_vs_seed.params = list(BOUNDS)
    track_flat_time_vs_seed.param_names = ["bound"]
    track_flat_time_vs_seed.unit = "x the seed's time"

    def track_ivf_time_vs_seed(self, result, bound):
        return _time_vs_seed(result, "ivf", bound)

    track_ivf_time_vs_seed.params = list(BOUNDS)
    track_ivf_time_vs_seed.param_names = ["bound"]
    track_ivf_time_vs_seed.unit = "x the seed's time"

    def track_real_time_vs_seed(self, result, bound):
        return _time_vs_seed(result, "real", bound)

    track_real_time_vs_seed.params = list(BOUNDS)
    track_real_time_vs_seed.param_names = ["bound"]
    track_real_time_vs_seed.unit = "x the seed's time"

    def track_real_recall_delta(self, result):
        return _figure(result, "candidate", "real", "recall_delta")

    track_real_recall_delta.unit = "recall@10 - exact ADC's"

    def track_flat_geomean_ns_per_query(self, result):
        return _figure(result, "candidate", "flat", "geomean_ns_per_query")

    track_flat_geomean_ns_per_query.unit = "ns"

    def track_ivf_geomean_ns_per_query(self, result):
        return _figure(result, "candidate", "ivf", "geomean_ns_per_query")

    track_ivf_geomean_ns_per_query.unit = "ns"

    def track_flat_recall_at_10(self, result):
        return _figure(result, "candidate", "flat", "recall_at_10")

    track_flat_recall_at_10.unit = "recall@10"

    def track_ivf_recall_at_10(self, result):
        return _figure(result, "candidate", "ivf", "recall_at_10")

    track_ivf_recall_at_10.unit = "recall@10"

    def track_flat_recall_delta(self, result):
        return _figure(result, "candidate", "flat", "recall_delta")

    track_flat_recall_delta.unit = "recall@10 - exact ADC's"

    def track_ivf_recall_delta(self, result):
        return _figure(result, "candidate", "ivf", "recall_delta")

    track_ivf_recall_delta.unit = "recall@10 - exact ADC's"

    def track_flat_recall_gate(self, result):
        return _gate(result, "flat")

    track_flat_recall_gate.unit = "recall@10 margin"

    def track_ivf_recall_gate(self, result):
        return _gate(result, "ivf")

    track_ivf_recall_gate.unit = "recall@10 margin"

    def track_kernel_peak_mem_mb(self, result):
        return float(result["peak_mem_mb"]["candidate"])

    track_kernel_peak_mem_mb.unit = "MB"

    def track_measured_by_trial(self, result):
        return float(result.get("measured_by_trial", 0))

    track_measured_by_trial.unit = "1: the trial's own measurement, 0: measured by asv"

    # The real descriptors in Lance's IVF_PQ layout, the trial's third workload since it replaced their flat scan.
    def track_real_ivf_time_vs_seed(self, result, bound):
        return _time_vs_seed(result, "real-ivf", bound)

    track_real_ivf_time_vs_seed.params = list(BOUNDS)
    track_real_ivf_time_vs_seed.param_names = ["bound"]
    track_real_ivf_time_vs_seed.unit = "x the seed's time"

    def track_real_ivf_recall_delta(self, result):
        return _figure(result, "candidate", "real-ivf", "recall_delta")

    track_real_ivf_recall_delta.unit = "recall@10 - exact ADC's"

    def track_real_ivf_recall_gate(self, result):
        return _gate(result, "real-ivf")

    track_real_ivf_recall_gate.unit = "recall@10 margin"
