"""results.tsv (immutable bench): one row per trial, tab-separated, append-only, never rewritten.

Version 2 (written now) appends to version 1's ten columns the per-workload speed-ups, the
IVF figures, the speed-up over the frozen seed, how the sequential test stopped, the trial's
wall time, and the run (branch and machine). Both versions are read; rows are only ever
appended to a version 2 file.
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER_V1 = ["commit", "recall_at_10", "geomean_ns_per_query", "speedup", "speedup_lo", "speedup_hi",
             "peak_mem_mb", "status", "description", "timestamp"]
HEADER = HEADER_V1 + ["flat_speedup", "ivf_speedup", "ivf_recall_at_10", "ivf_geomean_ns_per_query", "seed_speedup",
                      "seed_speedup_lo", "seed_speedup_hi", "stop", "trial_seconds", "branch", "machine"]
STATUSES = ("baseline", "keep", "discard", "crash", "timeout", "refused")


class ResultsError(RuntimeError):
    """results.tsv cannot be read or appended to; the message says what to do."""


def read_rows(path: Path) -> list[dict]:
    """Every row of a version 1 or 2 file as a dict over the version 2 columns (missing values are '-')."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if header not in (HEADER, HEADER_V1):
        raise ResultsError(f"{path}: unexpected header; move the file aside (rows are never rewritten)")
    rows = []
    for line in lines[1:]:
        if line.strip():
            row = dict.fromkeys(HEADER, "-")
            row.update(zip(header, line.split("\t"), strict=False))
            rows.append(row)
    return rows


def append_row(path: Path, row: dict) -> None:
    """Append one row (writing the header first if the file is new), fsynced; refuse a version 1 file."""
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
        if header == HEADER_V1:
            raise ResultsError(f"{path} was written by an older pqkern-trial (10 columns): move it aside, e.g. to "
                               f"results-v1.tsv (pqkern-report reads both), and run the trial again")
        if header != HEADER:
            raise ResultsError(f"{path}: unexpected header; move the file aside (rows are never rewritten)")
    clean = {k: str(row.get(k, "-")).replace("\t", " ").replace("\n", " ") for k in HEADER}
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(HEADER) + "\n")
        f.write("\t".join(clean[k] for k in HEADER) + "\n")
        f.flush()
        os.fsync(f.fileno())
