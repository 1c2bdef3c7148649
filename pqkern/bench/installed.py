"""What the installed distributions say about their files, checked without trusting them (immutable bench).

A distribution's ``RECORD`` lists its files with their sha256; :func:`distributions` reads every one
of a site directory. Since anyone who edits a file can edit its ``RECORD`` line too, :func:`pin_of`
sums what a ``RECORD`` says about the files in its site directory (the same for any install of that
version), and the judge trusts the first it sees (``Cache.pins``). Byte code (``__pycache__``) has no
hash in ``RECORD``: :func:`pyc_problem` compiles the source again and compares the code when Python
would load it. What was hashed or compiled is cached per file and stat key in the judge's directory,
sealed (``seal.py``): :class:`Cache`. Used by ``integrity.py``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import marshal
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pqkern.bench import seal

CACHE = "vouch-cache.json"
# dist-info files an installer writes its own way, and METADATA: inert text that, for the project itself, holds the
# README, which differs from commit to commit (two checkouts of the project on one machine must not refuse each other).
# Each is still checked against its RECORD line; a RECORD edited to match is caught by the lines that are pinned.
UNPINNED = ("INSTALLER", "REQUESTED", "RECORD", "direct_url.json", "METADATA")


def _key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@dataclass
class Cache:
    """What was hashed or compiled, per file and stat key, and the trusted RECORDs; sealed in the judge's directory."""

    files: dict[str, list] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def load(cls, use: bool = True) -> Cache:
        record = seal.read_sealed(CACHE)
        return cls(record.get("files", {}) if use else {}, record.get("pins", {}))

    def get(self, path: str, st: os.stat_result) -> str | None:
        entry = self.files.get(path)
        return entry[5] if entry and entry[:5] == _key(st) else None

    def put(self, path: str, st: os.stat_result, value: str) -> None:
        self.files[path] = [*_key(st), value]
        self.changed = True

    def save(self) -> None:
        """Write the cache when anything was added, without the entries of files that are gone."""
        if self.changed:
            files = {p: e for p, e in self.files.items() if os.path.lexists(p)}
            seal.write_sealed(CACHE, {"files": files, "pins": self.pins})


def record_hash(path: Path, st: os.stat_result, cache: Cache) -> str:
    """``sha256=<urlsafe base64>`` of a file, as RECORD writes it (cached by stat key)."""
    got = cache.get(str(path), st)
    if got is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        got = "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        cache.put(str(path), st, got)
    return got


def pyc_problem(pyc: Path, cache: Cache) -> str:
    """'' unless Python would load ``pyc`` (``__pycache__/<name>.<tag>[.opt-N].pyc``) for its source and its code is not
    the source's."""
    parts = pyc.name.split(".")
    if len(parts) < 3 or parts[1] != sys.implementation.cache_tag:
        return ""
    source = pyc.parent.parent / f"{parts[0]}.py"
    try:
        st, src = os.stat(pyc), os.stat(source)
    except OSError:
        return ""  # no source: Python never looks in __pycache__ for it
    stamp = f"pyc:{'.'.join(map(str, _key(src)))}"
    if cache.get(str(pyc), st) == stamp:
        return ""
    data = pyc.read_bytes()
    flags = int.from_bytes(data[4:8], "little") if len(data) >= 16 else 0
    if data[:4] != importlib.util.MAGIC_NUMBER or (
            not flags & 1 and (int.from_bytes(data[8:12], "little"), int.from_bytes(data[12:16], "little"))
            != (int(src.st_mtime) & 0xFFFFFFFF, src.st_size & 0xFFFFFFFF)):
        return ""  # stale: Python compiles the source again
    opt = int(parts[2].removeprefix("opt-") or 0) if len(parts) == 4 and parts[2].startswith("opt-") else 0
    code = compile(source.read_bytes(), str(source), "exec", dont_inherit=True, optimize=opt)
    if marshal.dumps(code) != data[16:]:
        try:
            same = marshal.loads(data[16:]) == code
        except (ValueError, EOFError, TypeError):
            same = False
        if not same:
            return f"{pyc}: byte code that is not its source's ({source.name}) and would run in its place: delete it"
    cache.put(str(pyc), st, stamp)
    return ""


@dataclass
class Dist:
    """An installed distribution: its RECORD's entries (absolute path -> hash, '' when none) and its site directory."""

    name: str
    version: str
    record: Path
    entries: dict[str, str]

    @property
    def site(self) -> Path:
        return self.record.parent.parent

    def top_level(self) -> set[str]:
        """The site directory's entries this distribution installed (its packages, modules and dist-info)."""
        base = str(self.site) + os.sep
        return {p[len(base):].split(os.sep)[0] for p in self.entries if p.startswith(base)}


def distributions(site_dir: Path) -> dict[str, Dist]:
    """Every distribution installed in ``site_dir``, by normalised name."""
    out = {}
    for info in site_dir.glob("*.dist-info"):
        record = info / "RECORD"
        if not record.is_file():
            continue
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        entries = {}
        for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))):
            if row:
                entries[os.path.normpath(site_dir / row[0])] = row[1] if len(row) > 1 else ""
        out[re.sub(r"[-_.]+", "_", name).lower()] = Dist(name, version, record, entries)
    return out


def pin_of(dist: Dist) -> str:
    """sha256 of what a RECORD says about the files in its site directory (what any install of this version says)."""
    base = str(dist.site) + os.sep
    lines = sorted(f"{p[len(base):]},{h}" for p, h in dist.entries.items()
                   if p.startswith(base) and h and not p.endswith(".pyc") and os.path.basename(p) not in UNPINNED
                   and not re.fullmatch(r"__editable___.*_finder\.py", os.path.basename(p)))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def finder_pin(path: Path) -> str:
    """sha256 of an editable finder with its ``MAPPING`` line (the clone's path) left out."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("MAPPING"))
    return hashlib.sha256(text.encode()).hexdigest()
