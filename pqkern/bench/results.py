"""results.tsv (immutable bench): one row per trial, tab-separated, append-only, never rewritten.

Version 3 (written now) appends to version 2's columns the per-workload intervals over the
incumbent, the per-workload speed-ups over the seed, recall as what changes (the kernel's minus
the exact ADC's on the same queries), how many results were checked, ``prepare``'s time, the asv
recording's time, the kernel's size and which queries were searched, and the same figures of the
``real`` workload (real descriptors, judged beside a synthetic fixture), and how the trial judged (fixture,
workloads, jail: a branch keeps its baseline's). In version 3, ``seed_speedup``
(and its interval) is a direct paired measurement against the frozen seed, made for the baseline
and every keep (a same-code keep carries its incumbent's); other rows have none. In versions 1 and
2 it was chained through the incumbent's. All versions are read; rows are only appended to a
version 3 file. Missing values are ``-``.

Time columns: ``trial_seconds`` is the trial's wall time from its start to its verdict, asv
excluded; ``asv_seconds`` the asv recording's wall time after a keep.
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER_V1 = ["commit", "recall_at_10", "geomean_ns_per_query", "speedup", "speedup_lo", "speedup_hi",
             "peak_mem_mb", "status", "description", "timestamp"]
HEADER_V2 = HEADER_V1 + ["flat_speedup", "ivf_speedup", "ivf_recall_at_10", "ivf_geomean_ns_per_query", "seed_speedup",
                         "seed_speedup_lo", "seed_speedup_hi", "stop", "trial_seconds", "branch", "machine"]
HEADER = HEADER_V2 + ["flat_speedup_lo", "flat_speedup_hi", "ivf_speedup_lo", "ivf_speedup_hi", "flat_seed_speedup",
                      "ivf_seed_speedup", "recall_delta", "ivf_recall_delta", "checked_queries", "prepare_seconds",
                      "ivf_prepare_seconds", "asv_seconds", "code_size", "queries", "query_seed", "real_speedup",
                      "real_speedup_lo", "real_speedup_hi", "real_seed_speedup", "real_recall_at_10", "real_recall_delta",
                      "real_geomean_ns_per_query", "real_prepare_seconds", "fixture_id", "workloads", "jail"]
HEADER_V3 = HEADER
HEADER = HEADER_V3 + ["real_ivf_speedup", "real_ivf_speedup_lo", "real_ivf_speedup_hi", "real_ivf_seed_speedup",
                      "real_ivf_recall_at_10", "real_ivf_recall_delta", "real_ivf_geomean_ns_per_query",
                      "real_ivf_prepare_seconds", "estimand", "rounds", "tree_sha", "family_sha", "alpha", "continued",
                      "evidence_sha256", "seal", "incumbent", "trial"]
HEADERS = {4: HEADER, 3: HEADER_V3, 2: HEADER_V2, 1: HEADER_V1}
STATUSES = ("baseline", "keep", "discard", "crash", "timeout", "refused", "revoked")


class ResultsError(RuntimeError):
    """results.tsv cannot be read or appended to; the message says what to do."""


def version(header: list[str]) -> int | None:
    return next((v for v, h in HEADERS.items() if header == h), None)


def read_rows(path: Path) -> list[dict]:
    """Every row of a version 1, 2 or 3 file as a dict over the version 3 columns (missing values are '-')."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if version(header) is None:
        raise ResultsError(f"{path}: unexpected header; move the file aside (rows are never rewritten)")
    rows = []
    for line in lines[1:]:
        if line.strip():
            row = dict.fromkeys(HEADER, "-")
            row.update(zip(header, line.split("\t"), strict=False))
            row["version"] = str(version(header))
            rows.append(row)
    return rows


def append_row(path: Path, row: dict) -> None:
    """Append one row (writing the header first if the file is new), fsynced; refuse an older version's file."""
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
        old = version(header)
        if old is None:
            raise ResultsError(f"{path}: unexpected header; move the file aside (rows are never rewritten)")
        if old < 4:
            raise ResultsError(f"{path} was written by an older pqkern-trial (version {old}, {len(header)} columns): move "
                               f"it aside, e.g. to results-v{old}.tsv (pqkern-report reads every version), and start a "
                               f"new branch (program.md, Setup)")
    clean = {k: str(row.get(k, "-")).replace("\t", " ").replace("\n", " ") for k in HEADER}
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(HEADER) + "\n")
        f.write("\t".join(clean[k] for k in HEADER) + "\n")
        f.flush()
        os.fsync(f.fileno())
