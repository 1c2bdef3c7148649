"""The morning audit: re-judge every keep of a branch from git alone, and compare with what was recorded.

    pqkern-audit [BRANCH] [--base REV] [--env PYTHON] [--data DIR] [--cpu-name NAME] [--json FILE]

It trusts nothing the agent could write. It clones the repository afresh (``git clone --no-local``:
git's own transfer checks every object's hash; replace refs, hooks and the repository's config are
not copied), takes the branch's chain of kernels from git alone (the commit where the branch left
another branch, then every first-parent commit that changed ``pqkern/kernels.py``: a discarded
commit was reset away, so what is left was kept), and judges them in the clone, with the clone's
bench and an environment it sets up itself (``scripts/setup.sh`` in the clone) or the Python given
with ``--env``. Per kernel, in one set of jailed workers, on fresh queries: against the frozen seed
(paired, throughput, until +-2%: ``paired.SEED_MEASUREMENT``), against its predecessor in the
chain (the same), and every answer checked against the exact ADC top-k. Then it compares with
results.tsv (only rows whose seal verifies count as recorded) and with asv's results, and prints
one line per kernel: ``agrees``, ``differs`` (both figures), ``not reproducible`` (it crashes,
returns a wrong answer or breaks its recall band now) or ``never judged`` (no verified row; ``base`` for the commit
the branch starts from when its baseline was recorded on a later commit). It
writes the same as JSON, with where it ran (host, CPU, the instruction sets numba compiled for:
``--cpu-name haswell`` compiles for AVX2 on an AVX-512 machine), which ``pqkern-upstream --audit``
shows beside the night's figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIT_ENV = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_TERMINAL_PROMPT": "0"}
KERNEL = "pqkern/kernels.py"
SPEED_SERIES = "bench_throughput.Speed.track_time_vs_seed"
BATCH = 6  # kernels judged by one set of workers (each measurement takes its own fresh queries)


class AuditError(RuntimeError):
    """The audit cannot run; the message says why and what to do."""


def git(root: Path, *args: str) -> str:
    p = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env=dict(os.environ, **GIT_ENV))
    if p.returncode:
        raise AuditError(f"git {' '.join(args)} failed in {root}: {p.stderr.strip()}")
    return p.stdout.strip()


def fresh_clone(repo: Path, branch: str, into: Path) -> Path:
    """A clone of ``branch`` that shares nothing with ``repo`` but verified objects."""
    clone = into / "clone"
    git(into, "clone", "-q", "--no-local", "--no-hardlinks", "--branch", branch, str(repo), str(clone))
    return clone


def chain_of(clone: Path, branch: str, base: str | None, repo: Path) -> list[dict]:
    """The branch's kernels, oldest first: the base (where the branch left another branch, or ``base``) and each
    first-parent commit after it that changed pqkern/kernels.py."""
    if base is None:
        others = [b for b in git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").splitlines() if b != branch]
        forks = [git(repo, "merge-base", branch, b) for b in others]
        forks = [f for f in forks if f]
        if not forks:
            raise AuditError(f"{branch} shares history with no other branch of {repo}: say where it starts with --base REV")
        line = git(clone, "rev-list", "--first-parent", "HEAD").splitlines()
        base = next((c for c in line if c in forks), None)
        if base is None:
            raise AuditError(f"no fork point of {branch} lies on its first-parent line: give --base REV")
    base = git(clone, "rev-parse", f"{base}^{{commit}}")
    commits = [base, *git(clone, "rev-list", "--first-parent", "--reverse", f"{base}..HEAD").splitlines()]
    out, last = [], None
    for sha in commits:
        source = git(clone, "show", f"{sha}:{KERNEL}") + "\n"
        if source != last:
            out.append({"commit": sha, "subject": git(clone, "log", "-1", "--format=%s", sha), "source": source,
                        "same_kernel": []})
            last = source
        out[-1]["same_kernel"].append(sha)  # a row recorded on a later commit of the same kernel counts for it
    return out


def records(repo: Path) -> tuple[dict[str, dict], object | None]:
    """results.tsv's kept rows whose seal verifies, by commit prefix (empty when there is no file), and the first row
    that does not verify (``results.Broken``) or None."""
    from pqkern.bench import results

    path = repo / "results.tsv"
    if not path.is_file():
        return {}, None
    try:
        broken = results.verify(path)
    except results.ResultsError as e:  # an older version's file: no row can be verified
        print(f"audit: {e}", file=sys.stderr)
        return {}, None
    rows = results.read_rows(path)
    if broken:
        print(f"audit: {broken}: only the rows before it count as recorded", file=sys.stderr)
        rows = rows[: max(0, broken.line - 2)]
    return {r["commit"]: r for r in rows if r.get("status") in ("keep", "baseline")}, broken


def asv_points(repo: Path, commit: str) -> dict[str, tuple[float, float]]:
    """asv's recorded combined speed-up over the seed for ``commit``, per machine: ``(low, high)`` (from the series
    ``bench_throughput.Speed.track_time_vs_seed``, a time ratio: the bounds swap)."""
    out = {}
    for path in (repo / ".asv" / "results").glob(f"*/{commit[:8]}-*.json"):
        try:
            data = json.loads(path.read_text())
            row = dict(zip(data["result_columns"], data["results"][SPEED_SERIES], strict=False))
            cells = dict(zip(itertools.product(*row["params"]), row["result"], strict=True))
            low_time, high_time = cells[("'combined'", "'low'")], cells[("'combined'", "'high'")]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(low_time, float) and isinstance(high_time, float) and low_time > 0 and high_time > 0:
            out[path.parent.name] = (1.0 / high_time, 1.0 / low_time)
    return out


def where() -> dict:
    """Where the audit ran: host, CPU, and what numba compiled for."""
    model = ""
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split() if f in ("avx2", "avx512f", "avx512bw", "avx512vl")]
    except OSError:
        pass
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpu": model, "simd": flags,
            "numba_cpu_name": os.environ.get("NUMBA_CPU_NAME", "host"), "python": platform.python_version()}


def setup_env(clone: Path) -> str:
    """The clone's own environment, set up with its README's command."""
    print("audit: setting up the clone's environment (scripts/setup.sh)", file=sys.stderr, flush=True)
    p = subprocess.run(["./scripts/setup.sh"], cwd=clone, capture_output=True, text=True)
    if p.returncode:
        raise AuditError(f"scripts/setup.sh failed in the clone: {p.stderr.strip()[-500:]}; pass --env PYTHON instead")
    return str(clone / ".venv" / "bin" / "python")


def judge(python: str, clone: Path, chain: list[dict], env: dict, work: Path) -> list[dict]:
    """Every kernel of the chain judged in the clone by ``python -m pqkern.tools.audit --inner``, in batches."""
    out = []
    for start in range(0, len(chain), BATCH):
        batch = chain[max(0, start - 1): start + BATCH]  # each batch begins with its first kernel's predecessor
        spec = work / f"batch{start}.json"
        spec.write_text(json.dumps({"kernels": [{"commit": k["commit"], "source": k["source"]} for k in batch],
                                    "first_has_predecessor": start > 0}))
        result = work / f"batch{start}.out.json"
        p = subprocess.run([python, "-m", "pqkern.tools.audit", "--inner", str(spec), str(result)], cwd=clone, env=env,
                           text=True, stdout=subprocess.PIPE, stderr=sys.stderr)
        if p.returncode or not result.is_file():
            raise AuditError(f"the audit's measurement failed in {clone} (exit {p.returncode}); see above")
        out.extend(json.loads(result.read_text()))
    return out


def inner(spec_path: Path, out_path: Path) -> int:
    """In the clone: one set of workers (the seed and the batch's kernels), each kernel measured against the seed and its
    predecessor, every answer checked."""
    from pqkern.bench import datasets, phases
    from pqkern.bench.fixture import load_fixture
    from pqkern.bench.paired import SEED_KERNEL, SEED_MEASUREMENT, Comparison, Failed, Match, plan, query_set, rows_per_round
    from pqkern.bench.workloads import judged, make, real_unavailable

    spec = json.loads(spec_path.read_text())
    kernels = spec["kernels"]
    fx = load_fixture()
    names = list(judged(fx.source))
    if real_unavailable(fx):
        names = ["flat", "ivf"]
    datasets.extend(fx, names)
    per = rows_per_round() * SEED_MEASUREMENT["rounds"]
    todo = [(i, what) for i in range(len(kernels)) for what in ("seed", "predecessor")
            if not (what == "predecessor" and i == 0)]
    queries = query_set(fx, per * len(todo))
    rows = plan(queries, {f"{i}-{what}": per for i, what in todo})
    wls = {w: make(w, fx, queries) for w in names}
    results = []
    with Match(wls, queries, log=lambda m: print(f"audit: {m}", file=sys.stderr, flush=True)) as match:
        match.start_all({"seed": SEED_KERNEL.read_text(encoding="utf-8"),
                         **{f"k{i}": k["source"] for i, k in enumerate(kernels)}})
        broken: dict[str, str] = {}
        for label in match.started:
            try:
                match.ready(label, Comparison("measured", "measured", "", {}), enforce_budget=label != "seed")
            except Failed as e:
                broken[label] = str(e)
        for i, k in enumerate(kernels):
            if i == 0 and spec["first_has_predecessor"]:
                continue  # measured in the previous batch; here only the next kernel's predecessor
            entry = {"commit": k["commit"], "measured": {}}
            for what in ("seed", "predecessor"):
                if what == "predecessor" and i == 0:
                    continue
                first = "seed" if what == "seed" else f"k{i - 1}"
                if f"k{i}" in broken or first in broken:
                    entry["problem"] = broken.get(f"k{i}") or f"its predecessor failed: {broken[first]}"
                    break
                cmp = Comparison("measured", "measured", "", {})
                try:
                    match.pair(first, f"k{i}", rows[f"{i}-{what}"], cmp, mode="measure", **{
                        k2: v for k2, v in SEED_MEASUREMENT.items()})
                    match.settle([first, f"k{i}"])
                    match.summaries(cmp, candidate=f"k{i}", incumbent=first)
                except Failed as e:
                    entry["problem"] = f"{e.label}: {e}"
                    broken[e.label] = str(e)
                    break
                found = phases.problem(cmp)
                if found:
                    entry["problem"] = found[1]
                entry["measured"][what] = {w: list(iv.as_ratio()) for w, iv in cmp.intervals.items()}
                entry["rounds"] = entry.get("rounds", 0) + cmp.rounds
            results.append(entry)
    out_path.write_text(json.dumps(results))
    return 0


def _overlap(a: list[float], lo: float, hi: float) -> bool:
    """Whether the interval ``a`` (estimate, lo, hi) and ``[lo, hi]`` agree (``chain.agree``: the trial's own test)."""
    from pqkern.bench import chain

    return chain.agree(a[1], a[2], lo, hi)


def _fig(v: list[float]) -> str:
    return f"{v[0]:.3f}x [{v[1]:.3f}, {v[2]:.3f}]"


def verdicts(chain: list[dict], judged: list[dict], recorded: dict[str, dict], broken, repo: Path) -> list[dict]:
    """One verdict per kernel: agrees, differs, not reproducible, or never judged (``broken``: results.tsv's first row
    that does not verify, which makes its commit's verdict ``differs``)."""
    out = []
    for i, (k, j) in enumerate(zip(chain, judged, strict=True)):
        commits = [c[:12] for c in k.get("same_kernel", [k["commit"]])]
        row = next((recorded[c] for c in commits if c in recorded), None)
        line = {"commit": k["commit"], "subject": k["subject"], **j}
        notes = []
        if j.get("problem"):
            line["verdict"], line["why"] = "not reproducible", j["problem"]
        elif row is None and broken is not None and str(broken.commit)[:12] in commits:
            line["verdict"], line["why"] = "differs", f"the recorded row (line {broken.line}) does not verify: {broken.why}"
        elif row is None and i == 0:
            line["verdict"], line["why"] = "base", "where the branch starts; the baseline was recorded on a later commit"
        elif row is None:
            line["verdict"] = "never judged"
        else:
            seed = j["measured"].get("seed", {}).get("combined")
            pred = j["measured"].get("predecessor", {}).get("combined")
            for name, got, keys in (("vs_seed", seed, ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi")),
                                    ("speedup", pred, ("speedup", "speedup_lo", "speedup_hi"))):
                try:
                    rec = [float(row[key]) for key in keys]
                except (KeyError, ValueError):
                    continue
                if got and not _overlap(got, rec[1], rec[2]):
                    notes.append(f"{name} {_fig(got)} here, {_fig(rec)} recorded")
            if pred and pred[2] < 1.0 and row.get("status") == "keep":
                notes.append(f"kept, but slower than its predecessor here: {_fig(pred)}")
            for machine, (lo, hi) in asv_points(repo, k["commit"]).items():
                if seed and not _overlap(seed, lo, hi):
                    notes.append(f"asv ({machine}) vs_seed [{lo:.3f}, {hi:.3f}], here {_fig(seed)}")
            line["verdict"] = "differs" if notes else "agrees"
            line["why"] = "; ".join(notes)
            line["recorded"] = {key: row.get(key) for key in ("status", "stop", "speedup", "seed_speedup")}
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--inner"]:
        return inner(Path(argv[1]), Path(argv[2]))
    p = argparse.ArgumentParser(prog="pqkern-audit", description=__doc__.split("\n")[0])
    p.add_argument("branch", nargs="?", help="the branch to audit (default: the checkout's current branch)")
    p.add_argument("--repo", type=Path, default=Path.cwd(), help="the repository (default: the working directory)")
    p.add_argument("--base", help="where the branch's chain starts (default: where it left another branch)")
    p.add_argument("--env", help="a Python with the project's dependencies (default: set one up in the clone)")
    p.add_argument("--data", type=Path, help="PQKERN_DATA for the clone (default: the clone builds its own)")
    p.add_argument("--cpu-name", help="compile kernels for this CPU (numba's NUMBA_CPU_NAME, e.g. haswell for AVX2)")
    p.add_argument("--json", type=Path, help="write the audit here (default: audit-<branch>-<time>.json in the repo)")
    p.add_argument("--workdir", type=Path, help="keep the clone and its files here (default: a temporary directory)")
    args = p.parse_args(argv)
    start = time.monotonic()
    try:
        repo = Path(git(args.repo, "rev-parse", "--show-toplevel"))
        branch = args.branch or git(repo, "branch", "--show-current")
        if not branch:
            raise AuditError("HEAD is detached: name the branch to audit")
        work = args.workdir or Path(tempfile.mkdtemp(prefix="pqkern-audit-"))
        work.mkdir(parents=True, exist_ok=True)
        clone = fresh_clone(repo, branch, work)
        chain = chain_of(clone, branch, args.base, repo)
        python = args.env or setup_env(clone)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NUMBA_"))}
        env["PQKERN_DATA"] = str((args.data or clone / "data").resolve())
        if args.cpu_name:
            env["NUMBA_CPU_NAME"], env["NUMBA_CPU_FEATURES"] = args.cpu_name, ""
        print(f"audit: {branch}: {len(chain)} kernels from git alone, judged in {clone}", file=sys.stderr, flush=True)
        judged = judge(python, clone, chain, env, work)
        lines = verdicts(chain, judged, *records(repo), repo)
    except AuditError as e:
        print(f"audit: {e}", file=sys.stderr)
        return 1
    here = dict(where(), numba_cpu_name=args.cpu_name or "host")
    for line in lines:
        figures = " ".join(f"{what}={_fig(v['combined'])}" for what, v in line.get("measured", {}).items())
        why = f" ({line['why']})" if line.get("why") else ""
        print(f"{line['commit'][:10]} {line['verdict']}{why} {figures} {line['subject']!r}")
    seconds = time.monotonic() - start
    report = {"branch": branch, "repo": str(repo), "where": here, "seconds": round(seconds, 1), "kernels": lines,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    target = args.json or repo / f"audit-{branch.replace('/', '-')}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    target.write_text(json.dumps(report, indent=1) + "\n")
    print(f"audit: {len(lines)} kernels in {seconds:.0f} s on {here['host']} ({here['cpu']}, {', '.join(here['simd'])}, "
          f"numba target {here['numba_cpu_name']}); {target}")
    bad = [x for x in lines if x["verdict"] not in ("agrees", "base")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
