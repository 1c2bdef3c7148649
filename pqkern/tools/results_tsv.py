"""Read trial results files (``results.tsv``, versions 1 to 3) into runs: one branch on one machine.

The versions' columns are those of ``pqkern/bench/results.py``, which the trial writes; versions 2 and 3
name each row's branch and machine, and in version 3 ``seed_speedup`` is a direct measurement (keeps and
baselines only) where earlier versions chained it. A version 1 file names neither: its run is named after the file
(``runs/<machine>/<branch>.tsv`` as ``pqkern-runs gather`` writes them, else the file name). Missing values are ``-``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pqkern.bench.results import HEADER as V3
from pqkern.bench.results import HEADER_V1 as V1
from pqkern.bench.results import HEADER_V2 as V2

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
    """The rows of a results file as dicts over the version 3 columns (absent ones ``-``), each with its ``version``."""
    header, lines = split_lines(text, path)
    version = 3 if header[: len(V3)] == V3 else 2 if header[: len(V2)] == V2 else 1
    rows = []
    for line in lines:
        values = dict(zip(header, line.split("\t"), strict=False))
        row = {k: values.get(k, MISSING) or MISSING for k in [*V3, *header[len(V3):]]}
        row["version"] = str(version)
        rows.append(row)
    return rows


def split_by_branch(text: str, path: Path | str, default_branch: str) -> dict[str, str]:
    """One results file per run: the rows of each ``branch`` (``default_branch`` when unnamed), lines kept verbatim."""
    header, lines = split_lines(text, path)
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
    named = [(f, f.name, MISSING) for f in files]
    for d in run_dirs:
        for f in sorted(d.rglob("*.tsv")):
            machine = f.parent.name if f.parent != d else MISSING
            named.append((f, branch_of_file(f), machine))
    runs: dict[tuple[str, str], Run] = {}
    seen: set[tuple] = set()
    for path, branch, machine in named:
        for row in parse(path.read_text(encoding="utf-8"), path):
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
    return sorted(runs.values(), key=lambda r: (r.rows[0]["timestamp"], r.branch, r.machine))
