"""The trial runner: keep or revert the agent's last commit on a noise-aware A/B verdict.

``pqkern-trial "description"`` after each commit that changes ``pqkern/kernels.py``:

1. Refuses (exit 5) a dirty tree, a commit that changes anything but ``pqkern/kernels.py``
   since the incumbent (the last kept commit), or a kernel that breaks the static policy.
2. Runs incumbent and candidate interleaved, A B A B ..., each run a fresh runner process
   that times every query once. The verdict reads only the runner's ``--result-json`` file.
   It compares the per-query CPU time of the worker process (``geomean_cpu_ns_per_query``):
   on a shared machine, time spent descheduled inflates wall-clock runs by tens of percent
   at random, which CPU time does not see. ``results.tsv`` still reports the wall-clock geomean.
3. Keep rule, with ``n`` pairs (``--pairs``, default 5): per pair, ``x = ln(cpu_geomean_A / cpu_geomean_B)``;
   ``m`` is their mean, ``se = max(sd(x), noise) / sqrt(n)`` where ``noise`` is the pair-to-pair
   sd measured when the baseline was recorded; ``lo, hi = m -/+ t(0.99, n-1) * se``.
   Keep only when recall@10 is within 0.005 of the baseline's and at or above the floor,
   every run finished within the budget, and ``lo > ln(1.01)``: at least 99% confident
   that the candidate is at least 1% faster. Otherwise discard: "slower" when
   ``hi < 0``, else "not significant".
4. Appends one row to ``results.tsv`` and keeps every run's result under ``trials/``.
5. On keep (and for the baseline): records the commit in asv (``asv run HEAD^!``) if asv is set up. Otherwise:
   ``git reset --hard`` to the incumbent (untracked files, ``results.tsv`` included, are untouched).
6. Prints one ``verdict:`` line and the candidate's result block; exits with the status's code.

The first trial on a branch with no baseline in its history records HEAD as the ``baseline``,
running it ``2 * pairs`` times to measure the noise floor later verdicts use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pqkern.bench.policy import PolicyError, violations
from pqkern.bench.runner import format_block

KERNEL_PATH = "pqkern/kernels.py"
HEADER = ["commit", "recall_at_10", "geomean_ns_per_query", "speedup", "speedup_lo", "speedup_hi",
          "peak_mem_mb", "status", "description", "timestamp"]
EXIT = {"keep": 0, "baseline": 0, "discard": 1, "recall": 2, "timeout": 3, "crash": 4, "refused": 5, "harness": 6}
RECALL_BAND = 0.005
VERDICT_FIGURE = "geomean_cpu_ns_per_query"
MIN_SPEEDUP = 1.01
DEFAULT_NOISE = 0.03
# One-sided 99% quantiles of Student's t, by degrees of freedom.
T99 = [31.821, 6.965, 4.541, 3.747, 3.365, 3.143, 2.998, 2.896, 2.821, 2.764, 2.718, 2.681, 2.650, 2.624, 2.602,
       2.583, 2.567, 2.552, 2.539, 2.528, 2.518, 2.508, 2.500, 2.492, 2.485, 2.479, 2.473, 2.467, 2.462, 2.457]


class TrialError(RuntimeError):
    """The trial cannot be judged; ``status`` says how it ends (refused or harness)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Run:
    kernel: str  # "A" (incumbent) or "B" (candidate)
    code: int
    result: dict


def t99(df: int) -> float:
    return T99[df - 1] if df <= len(T99) else 2.326


def paired_verdict(inc_ns: list[float], cand_ns: list[float], noise: float) -> dict:
    """The keep rule on per-run geomeans of interleaved pairs (see the module docstring)."""
    x = [math.log(a / b) for a, b in zip(inc_ns, cand_ns, strict=True)]
    n = len(x)
    sd = statistics.stdev(x) if n > 1 else noise
    se = max(sd, noise) / math.sqrt(n)
    m = statistics.fmean(x)
    lo, hi = m - t99(max(n - 1, 1)) * se, m + t99(max(n - 1, 1)) * se
    if lo > math.log(MIN_SPEEDUP):
        decision, why = "keep", f"faster with 99% confidence (lower bound {math.exp(lo):.3f}x > {MIN_SPEEDUP}x)"
    elif hi < 0:
        decision, why = "discard", "slower"
    else:
        decision, why = "discard", "not significant"
    return {"speedup": math.exp(m), "lo": math.exp(lo), "hi": math.exp(hi), "pairs": n, "sd": sd, "noise": noise,
            "log_ratios": x, "decision": decision, "why": why}


def noise_floor(geomeans: list[float]) -> float:
    """Pair-to-pair sd of ln(ratio) over disjoint consecutive pairs of runs of the same kernel."""
    x = [math.log(a / b) for a, b in zip(geomeans[0::2], geomeans[1::2], strict=False)]
    return max(statistics.stdev(x) if len(x) > 1 else DEFAULT_NOISE, 0.002)


class Repo:
    def __init__(self, root: Path):
        self.root = root

    def git(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True)
        if check and p.returncode:
            raise TrialError("harness", f"git {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout.strip()

    def is_ancestor(self, commit: str, of: str) -> bool:
        return subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], cwd=self.root,
                              capture_output=True).returncode == 0


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != HEADER:
        raise TrialError("harness", f"{path}: unexpected header; move the file aside (rows are never rewritten)")
    return [dict(zip(HEADER, line.split("\t"), strict=False)) for line in lines[1:] if line.strip()]


def append_row(path: Path, row: dict) -> None:
    """Append one row (writing the header first if the file is new); never rewrites the file."""
    new = not path.is_file()
    clean = {k: str(row.get(k, "-")).replace("\t", " ").replace("\n", " ") for k in HEADER}
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(HEADER) + "\n")
        f.write("\t".join(clean[k] for k in HEADER) + "\n")
        f.flush()
        os.fsync(f.fileno())


def find_incumbent(repo: Repo, rows: list[dict], head: str) -> tuple[dict | None, dict | None]:
    """``(incumbent row, baseline row)``: the last kept/baseline rows whose commits are in HEAD's history."""
    incumbent = baseline = None
    for row in reversed(rows):
        if row["status"] not in ("keep", "baseline") or not repo.is_ancestor(row["commit"], head):
            continue
        incumbent = incumbent or row
        if row["status"] == "baseline":
            baseline = row
            break
    return incumbent, baseline


class Trial:
    def __init__(self, args: argparse.Namespace, repo: Repo):
        self.args, self.repo = args, repo
        self.head = repo.git("rev-parse", "HEAD")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.dir = repo.root / "trials" / f"{stamp}-{self.head[:10]}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def kernel_file(self, commit: str, name: str) -> Path:
        path = self.dir / f"{name}_kernels.py"
        path.write_text(self.repo.git("show", f"{commit}:{KERNEL_PATH}") + "\n", encoding="utf-8")
        return path

    def run(self, kernel: Path, label: str, i: int) -> Run:
        out = self.dir / f"run{i:02d}_{label}.json"
        cmd = [sys.executable, "-m", "pqkern.bench.runner", "--kernel", str(kernel), "--result-json", str(out),
               "--queries", str(self.args.queries), "--time-budget", str(self.args.time_budget)]
        if self.args.source:
            cmd += ["--source", self.args.source]
        with open(self.dir / f"run{i:02d}_{label}.log", "w") as log:
            code = subprocess.run(cmd, cwd=self.repo.root, stdout=log, stderr=subprocess.STDOUT).returncode
        result = json.loads(out.read_text()) if out.is_file() else {}
        if code == 1 or not result:
            reason = result.get("reason", "no result")
            raise TrialError("harness", f"the runner could not run ({reason}); see {out.with_suffix('.log')}")
        return Run(label, code, result)


def _status_for(run: Run) -> tuple[str, str]:
    reason = run.result.get("reason", "")
    return {2: ("recall", reason), 3: ("timeout", reason), 4: ("crash", reason)}[run.code]


def _median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.result["geomean_ns_per_query"])
    return ordered[len(ordered) // 2]


def judge(trial: Trial, incumbent: dict | None, baseline: dict | None) -> tuple[str, str, dict, Run | None]:
    """Run the trial; return ``(status, reason, verdict figures, candidate's representative run)``."""
    args, repo = trial.args, trial.repo
    cand_file = trial.kernel_file(trial.head, "candidate")
    if incumbent is None:  # the baseline: the same kernel 2 * pairs times
        runs = []
        for i in range(2 * args.pairs):
            run = trial.run(cand_file, "B", i)
            if run.code:
                return *_status_for(run), {}, run
            runs.append(run)
        noise = noise_floor([r.result[VERDICT_FIGURE] for r in runs])
        return "baseline", f"noise floor +/-{noise:.1%} per pair over {len(runs)} runs", {"noise": noise}, _median_run(runs)
    inc_file = trial.kernel_file(incumbent["commit"], "incumbent")
    noise = _baseline_noise(repo, baseline)
    pairs: list[tuple[Run, Run]] = []
    for i in range(args.pairs):
        a = trial.run(inc_file, "A", 2 * i)
        if a.code:
            raise TrialError("harness", f"the incumbent {incumbent['commit'][:10]} failed to run ({a.result.get('reason')})")
        b = trial.run(cand_file, "B", 2 * i + 1)
        if b.code:
            return *_status_for(b), {}, b
        pairs.append((a, b))
    cand = _median_run([b for _, b in pairs])
    verdict = paired_verdict([a.result[VERDICT_FIGURE] for a, _ in pairs], [b.result[VERDICT_FIGURE] for _, b in pairs], noise)
    recall, base_recall = cand.result["recall_at_10"], float(baseline["recall_at_10"])
    if abs(recall - base_recall) > RECALL_BAND:
        return "recall", f"recall@10 {recall:.4f} is more than {RECALL_BAND} from the baseline's {base_recall:.4f}", verdict, cand
    return verdict["decision"], verdict["why"], verdict, cand


def _baseline_noise(repo: Repo, baseline: dict) -> float:
    for path in sorted((repo.root / "trials").glob(f"*-{baseline['commit'][:10]}/verdict.json"), reverse=True):
        data = json.loads(path.read_text())
        if data.get("status") == "baseline":
            return float(data["noise"])
    print(f"pqkern-trial: no recorded noise floor for baseline {baseline['commit'][:10]}; assuming {DEFAULT_NOISE:.0%}",
          file=sys.stderr)
    return DEFAULT_NOISE


def preconditions(repo: Repo, incumbent: dict | None, head: str) -> None:
    """Refuse a dirty tree, a re-trial of the incumbent, bench edits and policy breaches."""
    dirty = repo.git("status", "--porcelain", "--untracked-files=no")
    if dirty:
        raise TrialError("dirty", f"uncommitted changes ({dirty.splitlines()[0].strip()} ...): commit or stash them first")
    if incumbent and head.startswith(incumbent["commit"]):
        raise TrialError("dirty", "HEAD is the incumbent: commit a change to pqkern/kernels.py first")
    if incumbent:
        changed = [f for f in repo.git("diff", "--name-only", incumbent["commit"], head).splitlines() if f != KERNEL_PATH]
        if changed:
            raise TrialError("refused", f"the commit changes {', '.join(changed)}: only {KERNEL_PATH} may change in a trial")
    found = violations(repo.git("show", f"{head}:{KERNEL_PATH}"))
    if found:
        raise TrialError("refused", str(PolicyError(KERNEL_PATH, found)))


def record_in_asv(repo: Repo, trial: Trial) -> str:
    if not (repo.root / "asv.conf.json").is_file() or not (Path.home() / ".asv-machine.json").is_file():
        return "asv: not set up (asv machine --yes), not recorded"
    bench = ["--bench", trial.args.asv_bench] if trial.args.asv_bench else []
    with open(trial.dir / "asv.log", "w") as log:
        code = subprocess.run([sys.executable, "-m", "asv", "run", *bench, "HEAD^!"], cwd=repo.root, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    return "asv: recorded HEAD" if code == 0 else f"asv: run exited {code}, see {trial.dir / 'asv.log'}"


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-trial", description="Judge the last commit to pqkern/kernels.py: keep or revert.",
                                epilog="exit codes: 0 keep/baseline; 1 discard (slower or not significant); 2 recall; "
                                "3 timeout; 4 crash; 5 refused; 6 the harness could not run")
    p.add_argument("description", help="a short description of the change, for results.tsv")
    p.add_argument("--pairs", type=int, default=5, help="interleaved incumbent/candidate pairs (default 5)")
    p.add_argument("--queries", type=int, default=1000, help="timed queries per run (default 1000)")
    p.add_argument("--time-budget", type=float, default=600, help="seconds per runner run (default 600)")
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--no-asv", action="store_true", help="do not record a kept commit in asv")
    p.add_argument("--asv-bench", help="record only the asv benchmarks matching this regex (default: all)")
    args = p.parse_args(argv)
    if args.pairs < 2:
        p.error("--pairs must be at least 2")
    try:
        root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                   check=True).stdout.strip())
    except subprocess.CalledProcessError:
        print("pqkern-trial: not inside a git repository", file=sys.stderr)
        return EXIT["harness"]
    repo = Repo(root)
    results = root / "results.tsv"
    try:
        head = repo.git("rev-parse", "HEAD")
        incumbent, baseline = find_incumbent(repo, read_rows(results), head)
        if incumbent and not baseline:
            raise TrialError("harness", f"{results} has kept commits in this history but no baseline row: start a new branch")
        preconditions(repo, incumbent, head)
        trial = Trial(args, repo)
        status, reason, verdict, cand = judge(trial, incumbent, baseline)
    except TrialError as e:
        if e.status == "refused":
            return _finish(repo, results, None, args, e.status, str(e), {}, None, incumbent)
        print(f"verdict: {'refused' if e.status == 'dirty' else 'error'} ({e})")
        return EXIT["refused" if e.status == "dirty" else "harness"]
    return _finish(repo, results, trial, args, status, reason, verdict, cand, incumbent)


def _finish(repo: Repo, results: Path, trial: Trial | None, args, status: str, reason: str, verdict: dict,
            cand: Run | None, incumbent: dict | None) -> int:
    head = repo.git("rev-parse", "HEAD")
    r = cand.result if cand else {}
    row_status = {"recall": "discard"}.get(status, status)
    row = {"commit": head[:12], "recall_at_10": _fmt(r.get("recall_at_10"), ".4f"),
           "geomean_ns_per_query": _fmt(r.get("geomean_ns_per_query"), "d"),
           "speedup": _fmt(verdict.get("speedup"), ".3f"), "speedup_lo": _fmt(verdict.get("lo"), ".3f"),
           "speedup_hi": _fmt(verdict.get("hi"), ".3f"), "peak_mem_mb": _fmt(r.get("peak_mem_mb"), ".1f"),
           "status": row_status, "description": args.description,
           "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    append_row(results, row)
    if trial:
        (trial.dir / "verdict.json").write_text(json.dumps(dict(verdict, status=row_status, reason=reason, row=row),
                                                           indent=1) + "\n")
    notes = []
    if status in ("keep", "baseline") and not args.no_asv:
        notes.append(record_in_asv(repo, trial))
    elif status not in ("keep", "baseline") and incumbent:
        repo.git("reset", "--hard", incumbent["commit"])
        notes.append(f"reverted to {incumbent['commit'][:10]}")
    figures = ""
    if verdict.get("speedup"):
        figures = (f" speedup={verdict['speedup']:.3f}x [{verdict['lo']:.3f}, {verdict['hi']:.3f}]"
                   f" pairs={verdict['pairs']} sd={verdict['sd']:.1%} noise={verdict['noise']:.1%}")
    label = "discard" if status == "recall" else status
    print(f"verdict: {label} ({reason}){figures} commit={head[:10]}" + "".join(f"; {n}" for n in notes))
    if r:
        print(format_block(r))
    return EXIT[status]


if __name__ == "__main__":
    sys.exit(main())
