"""The trial runner (immutable bench): keep or revert the agent's last commit on a paired, sequential verdict.

``pqkern-trial "description"`` after each commit that changes ``pqkern/kernels.py``:

1. Takes the working tree's lock (a second trial is refused at once, exit 5, touching nothing),
   and refuses (exit 5) a dirty tree (touching nothing), a re-trial of the incumbent (the last
   kept commit), a commit that changes anything but ``pqkern/kernels.py`` since the incumbent,
   or a kernel that breaks the static policy (both reverted, with a ``refused`` row).
2. Judges incumbent and candidate side by side (``pqkern/bench/paired.py``): each in its own
   jailed worker, query by query in random order, on the flat 1M scan and on the IVF workload,
   every result checked, until the confidence sequences decide or the cap is reached.
3. Keep rule: 99% confident that the geometric mean of the two workloads' speed-ups is above
   1%, and that neither workload lost more than 2%; recall@10 on each workload within 0.005
   (or one query) of the exact ADC's on the same queries, and at least 0.50.
4. Appends one row to ``results.tsv`` for the commit it judged (``pqkern/bench/results.py``) and
   keeps the inputs, every paired time and the verdict under ``trials/<time>-<commit>/``.
5. Keep (and baseline): records the commit in asv (``asv run HEAD^!``; ``asv machine --yes`` first
   when this machine has none). Otherwise ``git reset --hard`` to the incumbent, only if HEAD is
   still the judged commit and the tree is clean (it never throws away work).
6. Prints one ``verdict:`` line and the candidate's result block; exits with the status's code.

The first trial on a branch with no baseline in its history records HEAD as the ``baseline``,
measured once against the frozen seed kernel (``pqkern/bench/seed_kernel.py``). Killing the
trial (any signal, SIGKILL included) ends its workers, writes no row and leaves HEAD at the
unjudged candidate, so running it again judges it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pqkern.bench.lock import Busy, Neighbours, TrialLock
from pqkern.bench.paired import CAP_SECONDS, SEED_KERNEL, Comparison, compare
from pqkern.bench.policy import PolicyError, violations
from pqkern.bench.results import ResultsError, append_row, read_rows
from pqkern.bench.runner import format_block
from pqkern.bench.session import die_with_parent
from pqkern.bench.workloads import WORKLOADS

KERNEL_PATH = "pqkern/kernels.py"
EXIT = {"keep": 0, "baseline": 0, "discard": 1, "recall": 2, "timeout": 3, "crash": 4, "refused": 5, "harness": 6}
RECALL_BAND = 0.005
RECALL_FLOOR = 0.50
BASELINE_ROUNDS = 100
ASV_BENCH = r"bench_kernel\."


class TrialError(RuntimeError):
    """The trial cannot be judged; ``status`` says how it ends (dirty: nothing touched; refused; harness)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Interrupted(BaseException):
    """The trial received SIGTERM, SIGINT or SIGHUP."""


ROW_WRITTEN: list[str] = []  # the judged commit, once its row is in results.tsv


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

    def clean(self) -> bool:
        return not self.git("status", "--porcelain", "--untracked-files=no")


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


def below_floor(cmp: Comparison) -> str:
    """'' when the candidate's recall@10 on every workload is at or above the floor."""
    for w, fig in cmp.candidate.items():
        if fig["recall_at_10"] < RECALL_FLOOR:
            return f"{w} recall@10 {fig['recall_at_10']:.4f} is below the floor {RECALL_FLOOR}"
    return ""


def outside_band(cmp: Comparison) -> str:
    """'' when the candidate's recall@10 on every workload is within the band of the exact ADC's on the same queries."""
    for w, fig in cmp.candidate.items():
        n = max(fig["queries"], 1)
        band = max(RECALL_BAND, 1.0 / n + 1e-9)
        if abs(fig["recall_at_10"] - fig["reference_recall_at_10"]) > band:
            return (f"{w} recall@10 {fig['recall_at_10']:.4f} is more than {band:.4f} from the exact ADC's "
                    f"{fig['reference_recall_at_10']:.4f} on the same {n} queries")
    return ""


def asv_machine() -> str:
    """The machine name asv records under: the host name if ~/.asv-machine.json lists it, else its only entry."""
    host = socket.gethostname()
    try:
        names = [k for k in json.loads((Path.home() / ".asv-machine.json").read_text()) if k != "version"]
    except (OSError, ValueError):
        return host
    return names[0] if host not in names and len(names) == 1 else host


def record_in_asv(repo: Repo, folder: Path, bench: str) -> str:
    """``asv run HEAD^!`` for the kept commit (setting up this machine for asv first if needed)."""
    if not (repo.root / "asv.conf.json").is_file():
        return "asv: no asv.conf.json, not recorded"
    with open(folder / "asv.log", "w") as log:
        if not (Path.home() / ".asv-machine.json").is_file():
            subprocess.run([sys.executable, "-m", "asv", "machine", "--yes"], cwd=repo.root, stdout=log,
                           stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        code = subprocess.run([sys.executable, "-m", "asv", "run", "--bench", bench, "HEAD^!"], cwd=repo.root, stdout=log,
                              stderr=subprocess.STDOUT, preexec_fn=die_with_parent).returncode
    return "asv: recorded HEAD" if code == 0 else f"asv: run exited {code}, see {folder / 'asv.log'}"


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


class Trial:
    """One trial of HEAD: its folder, its judgement and its row."""

    def __init__(self, args: argparse.Namespace, repo: Repo, head: str, incumbent: dict | None, baseline: dict | None):
        self.args, self.repo, self.head = args, repo, head
        self.incumbent, self.baseline = incumbent, baseline
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.dir = repo.root / "trials" / f"{stamp}-{head[:10]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start = time.monotonic()

    def source(self, commit: str) -> str:
        return self.repo.git("show", f"{commit}:{KERNEL_PATH}") + "\n"

    def judge(self) -> tuple[str, str, Comparison]:
        """Run the comparison; return ``(status, reason, comparison)``."""
        from pqkern.bench.fixture import FixtureError, load_fixture

        try:
            fx = load_fixture(self.args.source)
        except FixtureError as e:
            raise TrialError("harness", str(e)) from None
        candidate = self.source(self.head)
        if self.incumbent is None:
            label, incumbent = "seed", SEED_KERNEL.read_text(encoding="utf-8")
        else:
            label, incumbent = self.incumbent["commit"], self.source(self.incumbent["commit"])
        (self.dir / "candidate_kernels.py").write_text(candidate, encoding="utf-8")
        (self.dir / "incumbent_kernels.py").write_text(incumbent, encoding="utf-8")
        log = open(self.dir / "progress.log", "w")
        try:
            cmp = compare(fx, incumbent, candidate, tuple(self.args.workload or WORKLOADS),
                          mode="measure" if self.incumbent is None else "decide",
                          rounds=BASELINE_ROUNDS if self.incumbent is None else None, cap_seconds=self.args.cap_seconds,
                          time_budget=self.args.time_budget, jail=not self.args.no_jail,
                          log=lambda m: print(m, file=log, flush=True))
        finally:
            log.close()
        self.fixture = {"source": fx.source, "num_base": fx.num_base, "fixture_id": fx.fixture_id,
                        "codebook_sha256": fx.codebook_sha256}
        (self.dir / "comparison.json").write_text(json.dumps(dict(cmp.to_json(), incumbent_label=label)) + "\n")
        if cmp.decision == "harness":
            raise TrialError("harness", cmp.reason)
        if cmp.decision in ("crash", "timeout"):
            return cmp.decision, cmp.reason, cmp
        if below_floor(cmp):  # the clearest message for a kernel that skips most rows
            return "recall", below_floor(cmp), cmp
        if cmp.contract_problem:  # rows skipped, recall still above the floor
            return "crash", cmp.contract_problem, cmp
        if outside_band(cmp):
            return "recall", outside_band(cmp), cmp
        if self.incumbent is None:
            return "baseline", f"measured against the frozen seed in {cmp.rounds} rounds", cmp
        return cmp.decision, cmp.reason, cmp

    def row(self, status: str, cmp: Comparison | None) -> dict:
        iv = cmp.intervals if cmp else {}
        cand = cmp.candidate if cmp else {}
        flat, ivf = cand.get("flat", {}), cand.get("ivf", {})
        comb = iv.get("combined")
        speed = comb.as_ratio() if comb else (None, None, None)
        seed = self._seed_speedup(status, speed)
        return {"commit": self.head[:12], "recall_at_10": _fmt(flat.get("recall_at_10"), ".4f"),
                "geomean_ns_per_query": _fmt(flat.get("geomean_ns_per_query"), "d"),
                "speedup": _fmt(speed[0], ".3f") if self.incumbent else "-",
                "speedup_lo": _fmt(speed[1], ".3f") if self.incumbent else "-",
                "speedup_hi": _fmt(speed[2], ".3f") if self.incumbent else "-",
                "peak_mem_mb": _fmt(cmp.peak_mem_mb.get("candidate") if cmp else None, ".1f"),
                "status": {"recall": "discard"}.get(status, status), "description": self.args.description,
                "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "flat_speedup": _fmt(iv["flat"].speedup if "flat" in iv else None, ".3f"),
                "ivf_speedup": _fmt(iv["ivf"].speedup if "ivf" in iv else None, ".3f"),
                "ivf_recall_at_10": _fmt(ivf.get("recall_at_10"), ".4f"),
                "ivf_geomean_ns_per_query": _fmt(ivf.get("geomean_ns_per_query"), "d"),
                "seed_speedup": _fmt(seed[0], ".3f"), "seed_speedup_lo": _fmt(seed[1], ".3f"),
                "seed_speedup_hi": _fmt(seed[2], ".3f"), "stop": cmp.stop if cmp else "-",
                "trial_seconds": f"{time.monotonic() - self.start:.0f}", "branch": self.repo.git("branch", "--show-current",
                                                                                                check=False) or "-",
                "machine": asv_machine()}

    def _seed_speedup(self, status: str, speed: tuple) -> tuple:
        """Over the frozen seed: measured directly for the baseline, chained through the incumbent's otherwise."""
        if self.incumbent is None:
            same = self.source(self.head) == SEED_KERNEL.read_text(encoding="utf-8")
            return (1.0, 1.0, 1.0) if same and speed[0] is not None else speed  # the seed itself: 1 by definition
        try:
            base = [float(self.incumbent[k]) for k in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi")]
        except (ValueError, KeyError):
            return (None, None, None)
        if speed[0] is None or status not in ("keep", "discard"):
            return (None, None, None)
        return tuple(b * s for b, s in zip(base, speed, strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-trial", description="Judge the last commit to pqkern/kernels.py: keep or revert.",
                                epilog="exit codes: 0 keep/baseline; 1 discard (slower or not significant); 2 recall; "
                                "3 timeout; 4 crash; 5 refused (or another trial is running); 6 the harness could not run")
    p.add_argument("description", help="a short description of the change, for results.tsv")
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--workload", action="append", choices=WORKLOADS, help="judge only this workload (repeatable; default both)")
    p.add_argument("--cap-seconds", type=float, default=CAP_SECONDS,
                   help=f"paired timing stops undecided after this long (default {CAP_SECONDS:g})")
    p.add_argument("--time-budget", type=float, default=600, help="seconds for each worker's whole life (default 600)")
    p.add_argument("--no-asv", action="store_true", help="do not record a kept commit in asv")
    p.add_argument("--asv-bench", default=ASV_BENCH, help=f"asv benchmarks to record (regex, default {ASV_BENCH!r})")
    p.add_argument("--no-jail", action="store_true", help="run workers without the operating-system jail (see README)")
    args = p.parse_args(argv)
    try:
        root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                                   check=True).stdout.strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        print("verdict: error (not inside a git repository)")
        return EXIT["harness"]
    repo = Repo(root)
    head = repo.git("rev-parse", "HEAD")
    try:
        lock = TrialLock(Path(repo.git("rev-parse", "--absolute-git-dir")), head)
    except Busy as e:
        print(f"verdict: refused ({e})")
        return EXIT["refused"]
    neighbours = Neighbours(root, head)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return _run(args, repo, head, neighbours)
    except Interrupted as e:
        if ROW_WRITTEN:
            print(f"pqkern-trial: interrupted ({e}) after the verdict on {head[:10]} was written to results.tsv; "
                  f"the asv record may be incomplete (asv run HEAD^! to redo it)", file=sys.stderr, flush=True)
        else:
            print(f"verdict: interrupted ({e}): no row written, nothing reset; HEAD is the unjudged candidate {head[:10]}: "
                  f"run pqkern-trial again to judge it", flush=True)
        return EXIT["harness"]
    finally:
        neighbours.close()
        del lock


def _interrupt(signum, frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _run(args: argparse.Namespace, repo: Repo, head: str, neighbours: Neighbours) -> int:
    results = repo.root / "results.tsv"
    trial = None
    try:
        incumbent, baseline = find_incumbent(repo, read_rows(results), head)
        if incumbent and not baseline:
            raise TrialError("harness", f"{results} has kept commits in this history but no baseline row: start a new branch")
        preconditions(repo, incumbent, head)
        trial = Trial(args, repo, head, incumbent, baseline)
        status, reason, cmp = trial.judge()
    except ResultsError as e:
        print(f"verdict: error ({e})")
        return EXIT["harness"]
    except TrialError as e:
        if e.status == "refused":
            return _finish(repo, results, trial or Trial(args, repo, head, incumbent, baseline), e.status, str(e), None,
                           neighbours)
        print(f"verdict: {'refused' if e.status == 'dirty' else 'error'} ({e})")
        return EXIT["refused" if e.status == "dirty" else "harness"]
    neighbours.look()
    return _finish(repo, results, trial, status, reason, cmp, neighbours)


def _finish(repo: Repo, results: Path, trial: Trial, status: str, reason: str, cmp: Comparison | None,
            neighbours: Neighbours) -> int:
    row = trial.row(status, cmp)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    try:  # the row and the revert happen together or not at all, whatever signal arrives
        append_row(results, row)
        ROW_WRITTEN.append(trial.head)
        reverted = _revert(repo, trial, status)
    except ResultsError as e:
        print(f"verdict: error ({e})")
        return EXIT["harness"]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    (trial.dir / "verdict.json").write_text(json.dumps({"status": row["status"], "reason": reason, "row": row}, indent=1) + "\n")
    notes = [reverted] if reverted else []
    if status in ("keep", "baseline") and not trial.args.no_asv:
        notes.append(record_in_asv(repo, trial.dir, trial.args.asv_bench))
    warning = neighbours.warning()
    if warning:
        notes.append(warning)
    label = "discard" if status == "recall" else status
    print(f"verdict: {label} ({reason}){_figures(cmp, trial)} commit={trial.head[:10]}" + "".join(f"; {n}" for n in notes))
    if cmp and "flat" in cmp.candidate:
        print(format_block(_block(cmp, trial, row)))
    return EXIT[status]


def _revert(repo: Repo, trial: Trial, status: str) -> str:
    """Reset to the incumbent after anything but a keep, unless that would lose work; say what was done."""
    if status in ("keep", "baseline") or not trial.incumbent:
        return ""
    if repo.git("rev-parse", "HEAD") == trial.head and repo.clean():
        repo.git("reset", "--hard", trial.incumbent["commit"])
        return f"reverted to {trial.incumbent['commit'][:10]}"
    return (f"NOT reverted: HEAD moved or the tree changed during the trial; to revert: "
            f"git reset --hard {trial.incumbent['commit'][:10]}")


def _figures(cmp: Comparison | None, trial: Trial) -> str:
    if not cmp or "combined" not in cmp.intervals:
        return ""
    parts = []
    for w in ("combined", *WORKLOADS):
        if w in cmp.intervals:
            s, lo, hi = cmp.intervals[w].as_ratio()
            name = "speedup" if w == "combined" else w
            parts.append(f"{name}={s:.3f}x [{lo:.3f}, {hi:.3f}]")
    if trial.incumbent is None:
        parts[0] = parts[0].replace("speedup=", "vs_seed=")
    return (" " + " ".join(parts) + f" stop={cmp.stop} rounds={cmp.rounds} "
            f"time={time.monotonic() - trial.start:.0f}s")


def _block(cmp: Comparison, trial: Trial, row: dict) -> dict:
    flat = cmp.candidate["flat"]
    return {**trial.fixture, "num_queries": flat["queries"], "recall_at_10": flat["recall_at_10"],
            "geomean_ns_per_query": flat["geomean_ns_per_query"], "peak_mem_mb": cmp.peak_mem_mb.get("candidate"),
            "total_seconds": time.monotonic() - trial.start, "recall_10_at_10": flat["recall_10_at_10"],
            "status": row["status"], "geomean_cpu_ns_per_query": flat["geomean_cpu_ns_per_query"],
            "prepare_seconds": cmp.prepare_seconds.get("candidate", {}).get("flat"),
            "max_rel_error": flat["max_rel_error"], "threads": 1, "workload": "flat",
            "kernel_sha256": hashlib.sha256(trial.source(trial.head).encode()).hexdigest()}


if __name__ == "__main__":
    sys.exit(main())
