"""results.tsv (immutable bench): one row per trial, tab-separated, append-only, never rewritten.

Versions (each header extends the one before; missing values are ``-``):

1. commit, recall, geomean time, speed-up over the incumbent and its interval, memory, status,
   description, timestamp.
2. adds the flat and IVF speed-ups, IVF recall and time, ``seed_speedup`` (chained through the
   incumbent's), the stop, the trial's time, branch and machine.
3. adds the per-workload intervals over the incumbent and speed-ups over the seed, recall as what
   changes (the kernel's minus the exact ADC's on the same queries), how many results were
   checked, ``prepare``'s time, the asv recording's time, the kernel's size, which queries were
   searched, the same figures of one real-descriptor workload (``real_*``: the flat scan, or the
   IVF layout when ``workloads`` names ``real-ivf``), and how the trial judged (fixture,
   workloads, jail). ``seed_speedup`` is a direct paired measurement against the frozen seed,
   made for the baseline and every keep (a same-code keep carries its incumbent's).
4. (written now) adds the real descriptors' IVF layout (``real_ivf_*``; ``real_*`` is then always
   their flat scan, and the unprefixed flat columns are ``-`` when flat was not judged), the
   estimand, the rounds, the kernel's syntax-tree sha256 (docstrings removed), the kernel
   family's, the error level, whether the trial continued earlier evidence, the sha256 of the
   trial folder's ``comparison.json``, the incumbent it was judged against (its commit, or
   ``seed``), the trial folder's name, and ``seal``: HMAC-SHA256 under the judge's key
   (``seal.py``) over a fixed prefix, the previous row's seal and this row's values, so each row
   vouches for every row before it.

All versions are read (a version 3 row of ``real-ivf`` has its ``real_*`` values moved to
``real_ivf_*``); rows are only appended to a version 4 file. Only version 4 can be verified
(:func:`verify`): a row no trial wrote, an edited row, a deleted row and a file cut short (the
judge's directory keeps each file's last seal) are found, and named by line and commit. Rows of
versions 1 to 3 carry no seal: nothing says a trial wrote them.

Time columns: ``trial_seconds`` is the trial's wall time from its start to its verdict, asv
excluded; ``asv_seconds`` the asv recording's wall time after a keep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pqkern.bench import seal

HEADER_V1 = ["commit", "recall_at_10", "geomean_ns_per_query", "speedup", "speedup_lo", "speedup_hi",
             "peak_mem_mb", "status", "description", "timestamp"]
HEADER_V2 = HEADER_V1 + ["flat_speedup", "ivf_speedup", "ivf_recall_at_10", "ivf_geomean_ns_per_query", "seed_speedup",
                         "seed_speedup_lo", "seed_speedup_hi", "stop", "trial_seconds", "branch", "machine"]
HEADER_V3 = HEADER_V2 + ["flat_speedup_lo", "flat_speedup_hi", "ivf_speedup_lo", "ivf_speedup_hi", "flat_seed_speedup",
                         "ivf_seed_speedup", "recall_delta", "ivf_recall_delta", "checked_queries", "prepare_seconds",
                         "ivf_prepare_seconds", "asv_seconds", "code_size", "queries", "query_seed", "real_speedup",
                         "real_speedup_lo", "real_speedup_hi", "real_seed_speedup", "real_recall_at_10",
                         "real_recall_delta", "real_geomean_ns_per_query", "real_prepare_seconds", "fixture_id",
                         "workloads", "jail"]
REAL_IVF_COLUMNS = ["real_ivf_speedup", "real_ivf_speedup_lo", "real_ivf_speedup_hi", "real_ivf_seed_speedup",
                    "real_ivf_recall_at_10", "real_ivf_recall_delta", "real_ivf_geomean_ns_per_query",
                    "real_ivf_prepare_seconds"]
HEADER = HEADER_V3 + REAL_IVF_COLUMNS + ["estimand", "rounds", "tree_sha", "family_sha", "alpha", "continued",
                                         "evidence_sha256", "incumbent", "trial", "seal"]
HEADERS = {4: HEADER, 3: HEADER_V3, 2: HEADER_V2, 1: HEADER_V1}
STATUSES = ("baseline", "keep", "discard", "crash", "timeout", "refused", "revoked")
PREFIX = b"pqkern results.tsv version 4\n"


class ResultsError(RuntimeError):
    """results.tsv cannot be read or appended to; the message says what to do."""


@dataclass
class Broken:
    """The first row of a results file that does not verify: its line, its commit and why."""

    path: Path
    line: int
    commit: str
    why: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line} (commit {self.commit}): {self.why}"


class Tampered(ResultsError):
    """A results file holds a row no trial wrote, an edited row, or lost rows; ``broken`` names the first."""

    def __init__(self, broken: Broken):
        super().__init__(f"{broken}: nothing was run or touched; move the file aside (e.g. mv {broken.path.name} "
                         f"{broken.path.stem}-tampered.tsv) and start a new branch (program.md, Setup), or run the audit "
                         f"(pqkern-audit) to see which keeps hold")
        self.broken = broken


def version(header: list[str]) -> int | None:
    return next((v for v, h in HEADERS.items() if header == h), None)


def row_seal(previous: str, values: list[str]) -> str:
    """The seal of a version 4 row: over the fixed prefix, the previous row's seal ('' for the first) and its values."""
    return seal.sign(PREFIX + previous.encode() + b"\n" + "\t".join(values).encode())


def as_v4(header: list[str], cells: list[str], v: int) -> dict:
    """A row of a version ``v`` file as a dict over the version 4 columns (and any column of ``header`` beyond them)."""
    row = dict.fromkeys(HEADER, "-")
    row.update(zip(header, cells, strict=False))
    if v == 3 and any(w.partition("@")[0] == "real-ivf" for w in row["workloads"].split(",")):
        for c in REAL_IVF_COLUMNS:  # version 3 kept the one real workload judged in real_*
            old = "real_" + c.removeprefix("real_ivf_")
            row[c], row[old] = row[old], "-"
    row["version"] = str(v)
    return row


def parse(text: str, path: Path) -> tuple[int, list[dict]]:
    """``(version, rows)`` of a results file's text, rows as dicts over the version 4 columns, each with its ``version``."""
    lines = text.splitlines()
    header = lines[0].split("\t") if lines else []
    v = version(header)
    if v is None:
        raise ResultsError(f"{path}: unexpected header; move the file aside (rows are never rewritten)")
    return v, [as_v4(header, line.split("\t"), v) for line in lines[1:] if line.strip()]


def read_rows(path: Path) -> list[dict]:
    """Every row of a version 1 to 4 file as a dict over the version 4 columns (missing values are '-')."""
    if not path.is_file():
        return []
    return parse(path.read_text(encoding="utf-8"), path)[1]


def check(text: str, path: Path) -> tuple[int, Broken | None]:
    """``(rows that verify, the first that does not)`` of a version 4 file's text, its chain of seals alone."""
    lines = text.splitlines()
    previous, good = "", 0
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        commit = cells[0] if cells else "-"
        if len(cells) != len(HEADER):
            return good, Broken(path, n, commit, f"{len(cells)} columns, not {len(HEADER)}: the row was edited or "
                                                 f"written by hand")
        values, tag = cells[:-1], cells[-1]
        if row_seal(previous, values) != tag:
            return good, Broken(path, n, commit, "its seal does not verify: no trial wrote this row as it stands here "
                                                 "(edited, written by hand, or a row before it was deleted)")
        previous = tag
        good += 1
    return good, None


def verify(path: Path) -> Broken | None:
    """The first row of the version 4 file at ``path`` that no trial wrote as it is (an edited or hand-written row, a
    deleted row, or rows cut from the end, by the last seal the judge recorded for this file); None when all verify
    or there is no file. Raises :class:`ResultsError` for a file of version 1 to 3 (no seals: cannot be verified)."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    v = version(lines[0].split("\t") if lines else [])
    if v is None and text:
        raise ResultsError(f"{path}: unexpected header; move the file aside (rows are never rewritten)")
    if v is not None and v < 4:
        raise ResultsError(f"{path} was written by an older pqkern-trial (version {v}: rows without seals, which no "
                           f"trial can verify): move it aside, e.g. to results-v{v}.tsv (pqkern-report still reads it, "
                           f"marked unsealed), and start a new branch (program.md, Setup)")
    _, broken = check(text, path)
    if broken:
        return broken
    expected = seal.last_seal(path)
    last = next((line.split("\t") for line in reversed(lines[1:]) if line.strip()), None)
    if expected and (last is None or last[-1] != expected):
        n = len(lines) if last else 1
        return Broken(path, n, last[0] if last else "-", "rows a trial wrote after this one are gone: rows were "
                                                         "deleted from the file's end, or the file was replaced")
    return None


def append_row(path: Path, row: dict) -> dict:
    """Append one sealed row (writing the header first if the file is new), fsynced, and record its seal as the file's
    last; refuse an older version's file, and a file that does not verify (:class:`Tampered`). Returns the row."""
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
        broken = verify(path)
        if broken:
            raise Tampered(broken)
    lines = [] if new else path.read_text(encoding="utf-8").splitlines()
    previous = next((line.split("\t")[-1] for line in reversed(lines[1:]) if line.strip()), "")
    clean = {k: str(row.get(k, "-")).replace("\t", " ").replace("\n", " ") for k in HEADER[:-1]}
    values = [clean[k] for k in HEADER[:-1]]
    clean["seal"] = row_seal(previous, values)
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(HEADER) + "\n")
        f.write("\t".join([*values, clean["seal"]]) + "\n")
        f.flush()
        os.fsync(f.fileno())
    seal.remember_seal(path, clean["seal"])
    return clean
