"""One measurement, recorded twice (immutable bench): a trial's measurement against the seed, reused by asv.

A keep (and a baseline) is measured against the frozen seed by the trial, on fresh queries, in
paired rounds (``phases.py``). The trial writes that measurement, in the form
``python -m pqkern.bench.paired --result-json`` writes, to ``trials/<trial>/seed_measurement.json``
with what it measured: the kernel's sha256, the immutable bench's sha256 (``pqkern/bench/`` and
``benchmarks/``), the fixture and the workloads. It then runs ``asv run HEAD^!`` with
``PQKERN_MEASURED`` naming that file, and the benchmarks (``benchmarks/common.py``) take it instead
of measuring again, if :func:`reusable` finds every one of those the same as what they would
measure and the file's seal verifies (``seal.py``: HMAC under the judge's key over the record).
The checks above are hashes anyone can recompute; the seal is not: a file edited or made by hand
is not a trial's, and asv measures again. Any other asv run (a bisection, an older history, another machine) measures as always.
The benchmark ``track_measured_by_trial`` says which points came from where (1: the trial's).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from pqkern.bench import seal

FILE = "seed_measurement.json"
ENV = "PQKERN_MEASURED"
REPO = Path(__file__).resolve().parents[2]


def bench_sha256(root: Path = REPO) -> str:
    """sha256 over the immutable bench's source files (``pqkern/bench/*.py``, ``benchmarks/*.py``), names and bytes."""
    h = hashlib.sha256()
    for path in sorted([*(root / "pqkern" / "bench").glob("*.py"), *(root / "benchmarks").glob("*.py")]):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def write(path: Path, result: dict, kernel_source: str, fixture_id: str, workloads: str) -> None:
    """Record a paired measurement of ``kernel_source`` against the seed for asv."""
    record = dict(result, kernel_sha256=hashlib.sha256(kernel_source.encode()).hexdigest(), bench_sha256=bench_sha256(),
                  fixture_id=fixture_id, workloads=workloads)
    record.pop("records", None)
    path.write_text(json.dumps(seal.seal_record(record)) + "\n")


def reusable(path: Path, kernel: Path, fixture_id: str, workloads: list[str]) -> tuple[dict | None, str]:
    """The recorded measurement if it measured exactly this kernel, with this bench, on this fixture and these
    workloads; else None and why not."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable ({e})"
    why = seal.verify_record(record) if isinstance(record, dict) else "not a record"
    if why:
        return None, f"{path}: not written by a trial on this machine ({why})"
    checks = {"kernel": (record.get("kernel_sha256"), hashlib.sha256(kernel.read_bytes()).hexdigest()),
              "bench": (record.get("bench_sha256"), bench_sha256()),
              "fixture": (str(record.get("fixture_id", "")).split("+")[0], fixture_id),
              "workloads": (sorted(w.partition("@")[0] for w in str(record.get("workloads", "")).split(",")),
                            sorted(workloads))}
    other = [name for name, (was, now) in checks.items() if was != now]
    if other:
        return None, f"{path}: another {', '.join(other)} than this run's"
    if record.get("decision") != "measured":
        return None, f"{path}: not a completed measurement ({record.get('decision')})"
    return record, ""


def main(argv: list[str] | None = None) -> int:
    """``python -m pqkern.bench.measured FILE KERNEL``: print the reusable measurement, or why not (exit 1)."""
    from pqkern.bench.datasets import is_real
    from pqkern.bench.fixture import default_source, fixture_id
    from pqkern.bench.workloads import judged, real_unavailable

    path, kernel = (Path(a) for a in (argv or sys.argv[1:]))
    source = default_source()
    workloads = list(judged(source))
    if any(is_real(w) for w in workloads):
        from pqkern.bench.fixture import load_fixture

        if real_unavailable(load_fixture(source, build=False)):
            workloads = [w for w in workloads if not is_real(w)]
    record, why = reusable(path, kernel, fixture_id(source), workloads)
    if record is None:
        print(why, file=sys.stderr)
        return 1
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
