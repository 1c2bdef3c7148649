"""Every dataset a run needs, built and verified in one place (immutable bench, the data layer's entry point).

The judge only loads data (``workloads.py``: ``load_fixture(..., build=False)``, ``ivf.load_ivf``);
what it needs is built here, once, with progress lines on stderr, before any judging starts:

- the run's fixture (``fixture.py``: generated or read, codebook trained once, base encoded);
- ``ivf``: its IVF_PQ layout (``ivf.py``);
- ``flat@N``: the first N rows' codes as a file of their own (the size curve);
- ``real``: the ``imagesift`` fixture (``imagesift.py``), and its first ``PQKERN_REAL_ROWS`` rows' codes when set;
- ``real-ivf``: the same, and its IVF_PQ layout (of those first rows when set, in a cache of their own).

``pqkern-run`` (its first run on the default fixture builds all the trial needs), the trial (it
says what it builds, if anything is missing), the paired engine's entry points, asv and the tools
call :func:`ensure`; ``python -m pqkern.bench.datasets`` builds the trial's data on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pqkern.bench import ivf
from pqkern.bench.fixture import SYNTHETIC_SIZES, Fixture, FixtureError, load_fixture, prepared, save_npy

REAL = "real"  # the real descriptors, a flat scan
REAL_IVF = "real-ivf"  # the real descriptors in Lance's IVF_PQ layout
REAL_WORKLOADS = (REAL, REAL_IVF)
REAL_SOURCE = "imagesift"


def real_rows() -> int | None:
    """The real workload's prefix of rows (``PQKERN_REAL_ROWS``), or None for the whole imagesift base."""
    return int(os.environ["PQKERN_REAL_ROWS"]) if os.environ.get("PQKERN_REAL_ROWS") else None


def prefix_path(fx: Fixture, rows: int) -> Path:
    """The file of the first ``rows`` rows' codes (C-contiguous, mapped read-only by workers)."""
    return fx.cache_dir / f"codes-{fx.codebook_sha256[:16]}-first{rows}.npy"


def _prefix(fx: Fixture, rows: int) -> None:
    if rows < fx.num_base and not prefix_path(fx, rows).is_file():
        save_npy(prefix_path(fx, rows), fx.codes[:, :rows])


def real_data(fx: Fixture) -> Path:
    """The data directory that holds ``fx`` (the real workload's fixture lives beside it)."""
    return fx.cache_dir.parent.parent


def is_real(name: str) -> bool:
    """Whether workload ``name`` (``real``, ``real-ivf``, with or without ``@N``) searches the real descriptors."""
    return name.partition("@")[0] in REAL_WORKLOADS


def real_fixture(fx: Fixture, rows: int | None = None, build: bool = False) -> Fixture:
    """The real descriptors' fixture beside ``fx`` or, for ``rows``, its first rows as a fixture of their own (their
    codes, base and a cache folder of their own, where their IVF layout lives). Loaded only, unless ``build``."""
    real = load_fixture(REAL_SOURCE, data=real_data(fx), build=build)
    if not rows or rows >= real.num_base:
        return real
    if build:
        _prefix(real, rows)
    path = prefix_path(real, rows)
    if not path.is_file():
        raise FixtureError(f"{path} is not built yet: `python -m pqkern.bench.datasets --source {fx.source} --workload "
                           f"{REAL_IVF}@{rows}` (the run's entry points do that)")
    cache = real.cache_dir / f"first{rows}"
    cache.mkdir(exist_ok=True)
    return dataclasses.replace(real, fixture_id=f"{real.fixture_id}-first{rows}", base=real.base[:rows],
                               codes=np.load(path, mmap_mode="r"), cache_dir=cache)


def missing(source: str | None, workloads: Iterable[str], data: str | os.PathLike | None = None) -> list[str]:
    """What :func:`ensure` would build for these workloads on ``source``, in words ([] when everything is there)."""
    out = []
    if not prepared(source, data):
        out.append(f"the {source or 'default'} fixture")
    names = set(workloads)
    if "ivf" in names and (not prepared(source, data) or not ivf.built(load_fixture(source, data=data, build=False))):
        out.append("its IVF layout")
    if any(is_real(w) for w in names) and not prepared(REAL_SOURCE, data):
        out.append("the real descriptors (imagesift)")
    for w in names:
        if w.partition("@")[0] == REAL_IVF and (not prepared(REAL_SOURCE, data) or not _real_ivf_built(source, w, data)):
            out.append("their IVF layout")
    return out


def _real_ivf_built(source: str | None, name: str, data) -> bool:
    rows = int(name.partition("@")[2] or 0) or real_rows()
    try:
        return ivf.built(real_fixture(load_fixture(source, data=data, build=False), rows))
    except FixtureError:
        return False


def ensure(source: str | None, workloads: Iterable[str], *, data: str | os.PathLike | None = None,
           num_base: int | None = None, num_queries: int | None = None, num_learn: int | None = None) -> Fixture:
    """Build (once, progress on stderr) and verify everything these workloads need on ``source``; return its fixture."""
    fx = load_fixture(source, num_base, num_queries, num_learn, data=data)
    extend(fx, workloads)
    return fx


def extend(fx: Fixture, workloads: Iterable[str]) -> None:
    """Build (once) what these workloads need beside the loaded fixture ``fx``: its IVF layout, prefixes, the real one
    (and its IVF layout)."""
    for name in workloads:
        kind, _, rows = name.partition("@")
        if kind == "ivf":
            ivf.load_ivf(fx, build=True)
        elif kind == "flat" and rows:
            _prefix(fx, int(rows))
        elif kind in REAL_WORKLOADS:
            real = real_fixture(fx, int(rows) if rows else real_rows(), build=True)
            if kind == REAL_IVF:
                ivf.load_ivf(real, build=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqkern.bench.datasets",
                                description="Build every dataset a trial needs (once), with progress.")
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--workload", action="append", help="flat, ivf, real, real-ivf or flat@N (default: the trial's)")
    args = p.parse_args(argv)
    from pqkern.bench.fixture import default_source

    source = args.source or default_source()
    workloads = args.workload or (["flat", "ivf", REAL, REAL_IVF] if source in SYNTHETIC_SIZES else ["flat", "ivf"])
    start = time.monotonic()
    try:
        ensure(source, workloads)
    except FixtureError as e:
        print(f"datasets: {e}", file=sys.stderr)
        return 1
    print(f"datasets: ready for {', '.join(workloads)} on {source} in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
