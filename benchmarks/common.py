"""What every benchmark shares: the commit's kernel, measured against the frozen seed by the bench's paired engine.

asv installs each commit's package into its environment, but runs the benchmarks of the
checkout it is started from. The benchmarks take only the commit's ``pqkern/kernels.py`` (found
in the installed package) and judge it with this checkout's immutable bench (``pqkern/bench``,
put first on ``PYTHONPATH`` of a subprocess), so every past kernel is measured the same way.

The bench measures throughput (``"estimand": "throughput"``: the ratio of the two kernels' CPU
time over the same queries). ``bench_throughput.py`` records it (:func:`measure_throughput`).
``bench_kernel.py`` recorded the median of per-query log ratios and is retired, its source
unchanged so that its old points stay readable: its entry point, :func:`measure_against_seed`,
measures nothing and hands back a :class:`Retired` measurement, every figure of which is n/a.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:  # a benchmark's body that raises it is skipped (n/a), not failed
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # outside asv
    class SkipNotImplemented(NotImplementedError):
        """asv_runner's skip, for use outside asv."""

REPO = Path(__file__).resolve().parent.parent
RETIRED = ("bench_kernel.py's series recorded the median of per-query log ratios; this bench measures throughput, "
           "recorded by bench_throughput.py (docs/asv.md)")


class Retired:
    """The measurement a retired benchmark class is handed: reading any figure of it skips the benchmark (n/a).

    asv fails every benchmark of a class whose ``setup_cache`` raises, whatever the exception, and
    fails a benchmark whose body raises ``NotImplementedError``; it skips one whose body raises
    ``SkipNotImplemented``, which every read of this object does."""

    def __init__(self, why: str = RETIRED) -> None:
        self.why = why

    def get(self, *_args):
        raise SkipNotImplemented(self.why)

    __getitem__ = get


def installed_kernel() -> Path:
    """The commit's kernels.py as asv installed it (NotImplementedError, shown as n/a, if it has none)."""
    spec = importlib.util.find_spec("pqkern.kernels")
    if spec is None or not spec.origin:
        raise NotImplementedError("this commit has no pqkern/kernels.py")
    return Path(spec.origin)


def measure_against_seed() -> Retired:
    """The retired entry point of ``bench_kernel.py``: measures nothing (a ``Retired`` measurement, all n/a), so that
    ``asv run`` over any history costs nothing for the retired series and writes no point into them."""
    return Retired()


def measure_throughput() -> dict:
    """One paired run of the commit's kernel against the frozen seed on the trial's workloads (``pqkern.bench.paired``),
    on fresh queries drawn for this run; their seed is printed on stderr afterwards (``asv run --show-stderr``), to
    replay the run with ``python -m pqkern.bench.paired --query-seed``. When the trial that kept this commit has just
    measured exactly this kernel with this bench (``PQKERN_MEASURED``, set by the trial only; ``pqkern/bench/measured.py``
    takes the file only if its seal verifies), that measurement is taken instead (``measured_by_trial``: 1). A commit
    with no kernel gives ``{"skip": why}`` (its series n/a)."""
    try:
        kernel = installed_kernel()
    except NotImplementedError as e:
        return {"skip": str(e)}
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("PQKERN_DATA", str(REPO / "data"))
    if os.environ.get("PQKERN_MEASURED"):
        proc = subprocess.run([sys.executable, "-m", "pqkern.bench.measured", os.environ["PQKERN_MEASURED"], str(kernel)],
                              cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            result = json.loads(proc.stdout)
            print(f"pqkern: the trial's measurement against the seed, on {result.get('queries')}", file=sys.stderr)
            return dict(result, measured_by_trial=1)
        print(f"pqkern: measuring again: {proc.stderr.strip()[-500:]}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "paired.json"
        cmd = [sys.executable, "-m", "pqkern.bench.paired", "--candidate", str(kernel), "--seed-measurement",
               "--result-json", str(out)]  # as the trial measures a keep: until +-2%, fresh queries
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if not out.is_file():
            raise RuntimeError(f"the paired run wrote no result (exit {proc.returncode}): {proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
    result.pop("records", None)
    print(f"pqkern: measured against the seed on {result.get('queries')}", file=sys.stderr)
    return dict(result, measured_by_trial=0)
