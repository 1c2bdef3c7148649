"""Read trial results files (``results.tsv``, versions 1 to 4) into runs: one branch on one machine.

The versions' columns are those of ``pqkern/bench/results.py``, which the trial writes; versions 2 to 4
name each row's branch and machine, and from version 3 on ``seed_speedup`` is a direct measurement (keeps and
baselines only) where earlier versions chained it. A version 1 file names neither: its run is named after the file
(``runs/<machine>/<branch>.tsv`` as ``pqkern-runs gather`` writes them, else the file name). Missing values are ``-``.

Only rows that verify are shown. A version 4 file's rows are sealed, each over the one before it, under the judge's
key of the machine that wrote them (``pqkern/bench/seal.py``): the rows up to the first that does not verify are
read (``sealed``: ``yes``), the rest are left out and the run says how many and why (an edited or hand-written row, a
deleted one, rows cut from the file's end, or a file sealed on another machine: rows verify only where they were
judged). Rows of versions 1 to 3 carry no seal, so nothing says a trial wrote them: they are read, marked ``sealed``:
``no (version N)``, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pqkern.bench import results as bench_results
from pqkern.bench import seal
from pqkern.bench.results import HEADER as V4
from pqkern.bench.results import HEADER_V1 as V1
from pqkern.bench.results import HEADER_V2 as V2
from pqkern.bench.results import HEADER_V3 as V3

MISSING = "-"


class ResultsFileError(ValueError):
    """A results file cannot be read; the message names it and says why."""


@dataclass
class Run:
    """The rows of one agent run, in the order they were appended."""

    branch: str
    machine: str
    rows: list[dict] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.branch if self.machine == MISSING else f"{self.branch} @ {self.machine}"


def run_file_name(branch: str) -> str:
    """The per-run file name of ``branch`` (``autoresearch/nov27`` -> ``autoresearch__nov27.tsv``)."""
    return branch.replace("/", "__") + ".tsv"


def branch_of_file(path: Path) -> str:
    return path.stem.replace("__", "/")


def split_lines(text: str, path: Path | str) -> tuple[list[str], list[str]]:
    """``(header, data lines)`` of a results file; refuses a header that is neither version."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split("\t") if lines else []
    if header[: len(V1)] != V1:
        raise ResultsFileError(f"{path}: not a results.tsv (its header should start with {' '.join(V1[:3])} ...)")
    return header, lines[1:]


def parse(text: str, path: Path | str) -> list[dict]:
    """The rows of a results file that verify (a version 4 file) or carry no seal (versions 1 to 3), as dicts over the
    version 4 columns (absent ones ``-``), each with its ``version`` and ``sealed``."""
    return parse_verified(text, path)[0]


def parse_verified(text: str, path: Path | str) -> tuple[list[dict], str]:
    """``(rows, why some were left out or '')`` of a results file: a version 4 file's rows up to the first that does
    not verify, or every row of an unsealed older version."""
    header, lines = split_lines(text, path)
    version = 4 if header == V4 else 3 if header[: len(V3)] == V3 else 2 if header[: len(V2)] == V2 else 1
    note = ""
    if version == 4:
        good, broken = bench_results.check(text, Path(path))
        if broken:
            note = (f"{len(lines) - good} row(s) of {path} left out, from line {broken.line} (commit {broken.commit}) on: "
                    f"{broken.why}" + (" (or the file was sealed on another machine: rows verify only there)"
                                       if good == 0 else ""))
        elif lines and Path(path).is_file() and seal.last_seal(Path(path)) not in (None, lines[-1].split("\t")[-1]):
            note = f"{path}: rows were deleted from its end (the last row a trial wrote there is gone)"
        lines = lines[:good]
    rows = []
    for line in lines:
        row = {k: v or MISSING for k, v in bench_results.as_v4(header, line.split("\t"), version).items()}
        row["version"], row["sealed"] = str(version), "yes" if version == 4 else f"no (version {version})"
        rows.append(row)
    return rows, note


def split_by_branch(text: str, path: Path | str, default_branch: str) -> dict[str, str]:
    """One results file per run: the rows of each ``branch`` (``default_branch`` when unnamed), lines kept verbatim. A
    version 4 file stays whole, under ``default_branch``: its rows are sealed in a chain, each over the one before, and
    only the whole file verifies (its rows name their branches)."""
    header, lines = split_lines(text, path)
    if header == V4:
        return {default_branch: text if text.endswith("\n") else text + "\n"}
    at = header.index("branch") if "branch" in header else None
    out: dict[str, list[str]] = {}
    for line in lines:
        cells = line.split("\t")
        branch = cells[at] if at is not None and at < len(cells) and cells[at] not in ("", MISSING) else default_branch
        out.setdefault(branch, []).append(line)
    return {b: "\n".join(["\t".join(header), *rows]) + "\n" for b, rows in out.items()}


def read_runs(files: list[Path], run_dirs: list[Path]) -> list[Run]:
    """The runs in ``files`` (named after the file) and in ``run_dirs``' ``<machine>/<branch>.tsv`` files.

    The same row read twice (from a results.tsv and its gathered copy) counts once.
    """
    return read_verified_runs(files, run_dirs)[0]


def read_verified_runs(files: list[Path], run_dirs: list[Path]) -> tuple[list[Run], list[str]]:
    """``(runs, notes)``: the runs of :func:`read_runs`, of the rows that verify or carry no seal, and why any rows
    were left out."""
    named = [(f, f.name, MISSING) for f in files]
    for d in run_dirs:
        for f in sorted(d.rglob("*.tsv")):
            machine = f.parent.name if f.parent != d else MISSING
            named.append((f, branch_of_file(f), machine))
    runs: dict[tuple[str, str], Run] = {}
    seen: set[tuple] = set()
    notes: list[str] = []
    for path, branch, machine in named:
        rows, note = parse_verified(path.read_text(encoding="utf-8"), path)
        notes += [note] if note else []
        for row in rows:
            b = row["branch"] if row["branch"] != MISSING else branch
            m = row["machine"] if row["machine"] != MISSING else machine
            key = (b, m, row["commit"], row["timestamp"], row["status"], row["description"])
            if key in seen:
                continue
            seen.add(key)
            run = runs.setdefault((b, m), Run(b, m))
            run.rows.append(row)
            if str(path) not in run.sources:
                run.sources.append(str(path))
    return sorted(runs.values(), key=lambda r: (r.rows[0]["timestamp"], r.branch, r.machine)), notes
