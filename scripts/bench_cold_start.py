"""Cold start, before and after: a fresh clone's first ``pqkern-run`` and SIFT1M preparation from files.

    .venv/bin/python scripts/bench_cold_start.py                       # afba0b9 against the working tree
    .venv/bin/python scripts/bench_cold_start.py --before REV --after REV --skip-sift1m

For each revision (``--after`` defaults to the working tree: its tracked and unignored files)
an export is made with ``git archive`` into a scratch folder, so nothing is cached: no numba
cache, an empty data directory. Every command runs with this venv's python and PYTHONPATH at
the export, the two revisions one after the other in the same run, so the machine is the same:

- ``first run``: the runner module of ``pqkern-run`` (from the export's pyproject.toml) on the
  default synthetic fixture, which it builds first; wall time, peak RSS (the process tree's
  largest), and the build's steps as reported on stderr (per-step lines, or the last progress
  line of each step for revisions that print none, which leaves out a step's final writes);
- ``runner fixed cost``: then three more runs on the now warm fixture, and (when the real siftsmall
  files are in ``../shared/data/siftsmall``) a build and three runs on ``siftsmall``: the runner's
  time beyond its timed queries (``total_seconds - timed_seconds`` of ``--result-json``), median;
  for revisions whose worker reports it, that cost without the kernel's own JIT compile;
- ``sift1m prepare``: SIFT1M-shaped files (1M base, 10k query, 100k learn fvecs of the synthetic
  generator's integer values, a 10k x 100 ivecs ground truth) are written once, then the module
  that ``scripts/prepare_fixtures.sh`` runs is timed with ``--from`` them and an empty data directory.

Prints a table: step, before, after, ratio (before / after). Logs stay in ``--workdir`` with ``--keep``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIFT_SIZES = {"base": 1_000_000, "query": 10_000, "learn": 100_000}
SIFTSMALL = REPO.parent / "shared" / "data" / "siftsmall"
WARM_RUNS = 3
STEP_LINE = re.compile(r"^\[pqkern\] [^:]+: (?P<what>.+) in (?P<sec>[\d.]+) s$")
PROGRESS_LINE = re.compile(r"^\[pqkern\] [^:]+: (?P<what>.+): \d+/\d+ \((?P<sec>[\d.]+)s\)$")
STEPS = (("generat", "base", "generate base"), ("generat", "learn", "generate learn"), ("codebook", "", "train codebook"),
         ("encod", "", "encode base"), ("ground truth", "", "ground truth"))


@dataclass
class Run:
    """One timed command: wall seconds, peak RSS of its process tree (MB), exit code, build steps (seconds)."""

    wall: float
    rss_mb: float
    code: int
    steps: dict[str, float] = field(default_factory=dict)


def export(rev: str | None, target: Path) -> Path:
    """``rev`` (or the working tree's tracked and unignored files when None) as plain files in ``target``."""
    target.mkdir(parents=True)
    if rev is None:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for name in filter(None, files):
            if (REPO / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target / name)
    else:
        tar = subprocess.run(["git", "archive", rev], cwd=REPO, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(target, filter="data")
    return target


def runner_module(src: Path) -> str:
    """The module behind the export's ``pqkern-run`` console script."""
    found = re.search(r'^pqkern-run\s*=\s*"([\w.]+):\w+"', (src / "pyproject.toml").read_text(), re.M)
    if not found:
        raise SystemExit(f"{src}/pyproject.toml: no pqkern-run script")
    return found.group(1)


def prepare_module(src: Path) -> str:
    """The module that the export's ``scripts/prepare_fixtures.sh`` runs."""
    found = re.search(r"-m\s+([\w.]+)", (src / "scripts" / "prepare_fixtures.sh").read_text())
    if not found:
        raise SystemExit(f"{src}/scripts/prepare_fixtures.sh: no python -m command")
    return found.group(1)


def canonical(what: str) -> str | None:
    what = what.lower()
    for a, b, name in STEPS:
        if a in what and b in what:
            return name
    return None


def parse_steps(stderr: str) -> dict[str, float]:
    """Per-step seconds: per-step lines when the revision prints them, else the last progress line of each step."""
    steps, progress = {}, {}
    for line in stderr.splitlines():
        for pattern, into in ((STEP_LINE, steps), (PROGRESS_LINE, progress)):
            m = pattern.match(line.strip())
            name = canonical(m["what"]) if m else None
            if name and into is steps:
                into[name] = into.get(name, 0.0) + float(m["sec"])
            elif name:
                into[name] = float(m["sec"])
    return {**progress, **steps}


def timed(cmd: list[str], env: dict[str, str], log: Path) -> Run:
    """Run ``cmd``, stdout and stderr to ``log``; wall time and the peak RSS of its process tree (wait4)."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=env["PYTHONPATH"])
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    run = Run(wall, usage.ru_maxrss / 1024, proc.returncode, parse_steps(log.read_text()))
    if run.code:
        print(f"warning: {' '.join(cmd[1:])} exited with {run.code}; see {log}", file=sys.stderr)
    return run


def environment(src: Path, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PQKERN_", "NUMBA_", "PYTHONPATH"))}
    data.mkdir(parents=True)
    return dict(env, PYTHONPATH=str(src), PQKERN_DATA=str(data))


def write_fvecs(path: Path, stream: str, count: int, num_base: int, chunk: int = 1 << 16) -> None:
    """``count`` rows of the synthetic generator's ``stream`` as float32 fvecs records, written a chunk at a time."""
    sys.path.insert(0, str(REPO))
    from pqkern.bench import synthetic

    with open(path, "wb") as f:
        for s in range(0, count, chunk):
            values = synthetic.generate(0, stream, min(chunk, count - s), num_base, start=s)
            records = np.empty((values.shape[0], 129), "<f4")
            records[:, 0].view("<i4")[:] = 128
            records[:, 1:] = values
            records.tofile(f)


def fabricate_sift1m(folder: Path) -> None:
    """SIFT1M-shaped files in ``folder``; the ground truth's ids are arbitrary (preparation only checks its shape)."""
    folder.mkdir(parents=True)
    for stream, count in SIFT_SIZES.items():
        write_fvecs(folder / f"sift_{stream}.fvecs", stream, count, SIFT_SIZES["base"])
    gt = np.empty((SIFT_SIZES["query"], 101), "<i4")
    gt[:, 0] = 100
    gt[:, 1:] = np.arange(SIFT_SIZES["query"] * 100).reshape(-1, 100) % SIFT_SIZES["base"]
    gt.tofile(folder / "sift_groundtruth.ivecs")


def table(rows: list[tuple[str, float | None, float | None, str]]) -> str:
    lines = [f"{'step':<34}{'before':>12}{'after':>12}{'ratio':>9}"]
    for name, before, after, unit in rows:
        b = f"{before:.1f} {unit}" if before is not None else "-"
        a = f"{after:.1f} {unit}" if after is not None else "-"
        ratio = f"{before / after:.2f}x" if before and after else "-"
        lines.append(f"{name:<34}{b:>12}{a:>12}{ratio:>9}")
    return "\n".join(lines)


def rows_for(title: str, runs: dict[str, Run]) -> list[tuple[str, float | None, float | None, str]]:
    b, a = runs.get("before"), runs.get("after")
    names = [n for _, _, n in STEPS if any(n in r.steps for r in runs.values())]
    rows = [(f"{title}: wall", b and b.wall, a and a.wall, "s"), (f"{title}: peak RSS", b and b.rss_mb, a and a.rss_mb, "MB")]
    rows += [(f"  {n}", b.steps.get(n) if b else None, a.steps.get(n) if a else None, "s") for n in names]
    total = {label: sum(r.steps.values()) or None for label, r in runs.items()}
    return rows + [("  build: sum of the steps", total.get("before"), total.get("after"), "s")]


def fixed_costs(src: Path, env: dict[str, str], work: Path, label: str) -> dict[str, float]:
    """Median runner time beyond the timed queries over WARM_RUNS warm runs (and without the kernel's compile, if known:
    a worker that times itself reports its compile; one timed from outside, its start-up up to the compiled kernel)."""
    fixed, harness = [], []
    for i in range(WARM_RUNS):
        out = work / f"fixed-{label}-{i}.json"
        timed([sys.executable, "-m", runner_module(src), "--result-json", str(out)], env, work / f"fixed-{label}-{i}.log")
        r = json.loads(out.read_text())
        fixed.append(r["total_seconds"] - r["timed_seconds"])
        if "worker_steps_seconds" in r:
            steps = r["worker_steps_seconds"]  # the worker's compile alone (before) or its start-up to compiled (after)
            harness.append(fixed[-1] - steps.get("compile", steps.get("start-up to compiled", 0.0)))
    result = {"fixed": statistics.median(fixed)}
    if harness:
        result["without the kernel's compile"] = statistics.median(harness)
    return result


def fixed_rows(title: str, costs: dict[str, dict[str, float]]) -> list[tuple[str, float | None, float | None, str]]:
    keys = sorted({k for c in costs.values() for k in c}, key=lambda k: k != "fixed")
    return [(f"{title}: {k}", costs.get("before", {}).get(k), costs.get("after", {}).get(k), "s") for k in keys]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default="afba0b9", help="git revision (default afba0b9, the last before the cold-start work)")
    p.add_argument("--after", default=None, help="git revision (default: the working tree)")
    p.add_argument("--skip-run", action="store_true", help="omit the first pqkern-run")
    p.add_argument("--skip-sift1m", action="store_true", help="omit SIFT1M preparation")
    p.add_argument("--skip-fixed", action="store_true", help="omit the warm runs (the runner's fixed cost)")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary one, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (exports, data, logs)")
    args = p.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pqkern-cold-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sources = {"before": export(args.before, work / "src-before"), "after": export(args.after, work / "src-after")}
        print(f"before: {args.before}, after: {args.after or 'the working tree'}; scratch in {work}", file=sys.stderr)
        first, prep, fixed_1m, fixed_small = {}, {}, {}, {}
        if not args.skip_run:
            for label, src in sources.items():
                print(f"first pqkern-run, {label} ...", file=sys.stderr, flush=True)
                env = dict(environment(src, work / f"data-run-{label}"), PQKERN_SOURCE="synthetic")
                first[label] = timed([sys.executable, "-m", runner_module(src)], env, work / f"run-{label}.log")
                if not args.skip_fixed:
                    print(f"warm runs, {label} ...", file=sys.stderr, flush=True)
                    fixed_1m[label] = fixed_costs(src, env, work, f"1m-{label}")
                    if SIFTSMALL.is_dir():
                        shutil.copytree(SIFTSMALL, work / f"data-run-{label}" / "siftsmall")
                        small = dict(env, PQKERN_SOURCE="siftsmall")
                        timed([sys.executable, "-m", runner_module(src)], small, work / f"build-siftsmall-{label}.log")
                        fixed_small[label] = fixed_costs(src, small, work, f"siftsmall-{label}")
        if not args.skip_sift1m:
            print("writing SIFT1M-shaped files ...", file=sys.stderr, flush=True)
            fabricate_sift1m(work / "sift-files")
            for label, src in sources.items():
                print(f"sift1m preparation, {label} ...", file=sys.stderr, flush=True)
                env = environment(src, work / f"data-prep-{label}")
                cmd = [sys.executable, "-m", prepare_module(src), "--from", str(work / "sift-files")]
                prep[label] = timed(cmd, env, work / f"prepare-{label}.log")
                shutil.rmtree(work / f"data-prep-{label}")  # 700 MB each
        rows = (rows_for("first run", first) if first else []) + (rows_for("sift1m prepare", prep) if prep else [])
        rows += fixed_rows("runner fixed cost, 1M", fixed_1m) + fixed_rows("runner fixed cost, siftsmall", fixed_small)
        print(table(rows))
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
