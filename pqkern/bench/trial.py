"""The trial runner (immutable bench): keep or revert the agent's last commit on a paired, sequential throughput verdict.

``pqkern-trial "description"`` after each commit that changes ``pqkern/kernels.py``:

1. Takes the working tree's lock (a second trial is refused at once, exit 5, touching nothing),
   then its CPUs, machine-wide (``cpus.py``: waiting, with one line on stderr, while other trials hold every free set),
   vouches for the code it would run (``integrity.py``: refused, exit 5, touching nothing), verifies
   results.tsv's seals (``results.py``: a row no trial wrote, an edited, deleted or cut row ends it
   ``tampered``, exit 8, touching nothing), reads git through ``gitsafe.py`` (verified objects; the
   repository's config, hooks and replace refs never used), and refuses (exit 5) a dirty tree
   (touching nothing), a re-trial of the incumbent (the last kept commit), a commit that changes
   anything but ``pqkern/kernels.py`` since the incumbent,
   or a kernel that breaks the static policy or its size limit (both reverted, with a ``refused``
   row). A branch whose history holds a revoked keep is told how to go back (exit 7).
2. A candidate whose syntax tree equals the incumbent's (only comments, docstrings or layout
   changed) is kept at once, as ``same-code``. Any other is judged against the incumbent side by
   side (``paired.py``): each in its own jailed worker, on fresh queries drawn for this trial
   (``queries.py``), query by query in random order, on the real descriptors' flat scan (beside a
   synthetic fixture; the fixture's own on a real one), the IVF workload and the real descriptors
   in their IVF layout, until the throughput confidence sequences (``throughput.py``) decide the
   keep rule (``rule.py``: faster; or, for a candidate with a smaller syntax tree, simpler) or the
   cap is reached. A candidate judged against this incumbent before continues that comparison
   (``retry.py``). ``prepare`` has a budget (``budget.py``). Every result of both kernels is then
   checked against the exact ADC top-k, and recall beside the exact ADC's on the same queries.
3. Before a keep (and a baseline): the rounds go on until each kernel has given
   ``exactness.CHECKED_ANSWERS`` answers, all checked (``exactness.py``), the keep is confirmed on
   all those rounds (``rule.confirm``), and the candidate is measured against the frozen seed
   directly (until +-2%, ``paired.SEED_MEASUREMENT``, fresh queries).
4. Appends one row to ``results.tsv`` (``results.py``) and keeps the inputs, every paired time and
   the verdict under ``trials/<time>-<commit>/``; the query seed is written there once the run is over.
5. Keep (and baseline): records the commit in asv (``asv run HEAD^!``; ``asv machine --yes`` first
   when this machine has none). Otherwise back to the incumbent (``gitsafe.Repo.reset_kernel``: the
   incumbent's files written, the branch moved by ``git update-ref``), only if HEAD is still the
   judged commit and the files it restores still hold its bytes (it never throws away work).
6. Prints one ``verdict:`` line and the candidate's result block; exits with the status's code.

An incumbent that fails (a wrong result, a crash, a time-out) is the incumbent's fault: it was kept
before its failure was seen. Its keep is ``revoked`` (a row of its own), nothing is reset, and the
verdict gives the command that puts the branch back on the last good commit (exit 7).

The first trial on a branch with no baseline in its history records HEAD as the ``baseline``,
measured against the frozen seed kernel (``pqkern/bench/seed_kernel.py``). Killing the trial (any
signal, SIGKILL included) ends its workers, writes no row and leaves HEAD at the unjudged
candidate, so running it again judges it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pqkern.bench import cpus, datasets, paired, phases, retry, rule, snapshot, wire
from pqkern.bench import measured as measured_module
from pqkern.bench.datasets import REAL_IVF, is_real, real_fixture
from pqkern.bench.gitsafe import Forged, find_root
from pqkern.bench.history import Chain, GitError, Repo, column, read_chain
from pqkern.bench.integrity import Refused, private_numba_cache, vouch
from pqkern.bench.lock import Busy, Neighbours, TrialLock
from pqkern.bench.paired import CAP_SECONDS, SEED_KERNEL, Comparison, Failed, Match, failure, plan, query_set, ratio_text
from pqkern.bench.policy import PolicyError, violations
from pqkern.bench.results import ResultsError, Tampered, append_row, read_rows
from pqkern.bench.results import verify as verify_results
from pqkern.bench.runner import STATUS, format_block
from pqkern.bench.session import die_with_parent
from pqkern.bench.simplicity import code_size, same_code
from pqkern.bench.workloads import REAL, REAL_SOURCE, WORKLOADS, judged, make, parse, real_rows

KERNEL_PATH = "pqkern/kernels.py"
EXIT = {"keep": 0, "baseline": 0, "discard": 1, "recall": 2, "timeout": 3, "crash": 4, "refused": 5, "harness": 6,
        "revoked": 7, "tampered": 8}
# The kernel's history in throughput (benchmarks/bench_throughput.py); bench_kernel.py's series are retired (docs/asv.md).
ASV_BENCH = r"^bench_throughput\."


class TrialError(RuntimeError):
    """The trial cannot be judged; ``status`` says how it ends (dirty: nothing touched; refused; revoked; harness)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class Interrupted(BaseException):
    """The trial received SIGTERM, SIGINT or SIGHUP."""


ROW_WRITTEN: list[str] = []  # the judged commit, once its row is in results.tsv


def judging(args: argparse.Namespace) -> dict[str, str]:
    """How this trial judges: the fixture (and the real descriptors' when they are a fixture of their own, not the
    reference extraction), the workloads and the jail (a branch keeps its baseline's)."""
    from pqkern.bench import imagesift
    from pqkern.bench.fixture import FixtureError, data_dir, default_source, fixture_id

    source = args.source or default_source()
    try:
        fid = fixture_id(source)
    except FixtureError as e:
        raise TrialError("harness", str(e)) from None
    workloads = [f"{w}@{real_rows()}" if is_real(w) and real_rows() else w for w in args.workload or judged(source)]
    real_fid = imagesift.fixture_id(data_dir() / imagesift.FOLDER)
    if any(is_real(w) for w in workloads) and real_fid != REAL_SOURCE:
        fid = f"{fid}+{real_fid}"
    return {"fixture_id": fid, "workloads": ",".join(workloads), "jail": "off" if args.no_jail else "on"}


def build_data(args: argparse.Namespace, config: dict[str, str]) -> tuple[float, str]:
    """Build what the trial's workloads need and is missing (once, with progress on stderr), before any judging; return
    the seconds it took and what was built ('' when everything was there: the trial only loads data)."""
    from pqkern.bench.fixture import FixtureError

    workloads = config["workloads"].split(",")
    start = time.monotonic()
    try:
        need = datasets.missing(args.source, workloads)
        if need:
            print(f"pqkern-trial: building {', '.join(need)}, once (later trials only load them)", file=sys.stderr,
                  flush=True)
        datasets.ensure(args.source, workloads)
    except FixtureError as e:
        raise TrialError("harness", str(e)) from None
    return time.monotonic() - start, ", ".join(need)


def same_judging(chain: Chain, config: dict[str, str]) -> None:
    """Refuse another way of judging than the branch's baseline's."""
    base = chain.baseline or {}
    other = {k: (base.get(k), v) for k, v in config.items() if base.get(k, "-") not in ("-", v)}
    if other:
        was = ", ".join(f"{k} {old}" for k, (old, _) in other.items())
        now = ", ".join(f"{k} {new}" for k, (_, new) in other.items())
        raise TrialError("dirty", f"this branch's baseline was judged with {was}; this trial would judge with {now}: "
                                  f"judge every trial of a branch the same way (drop the options that change it), or "
                                  f"start a new branch (program.md, Setup)")


def preconditions(repo: Repo, chain: Chain, head: str, config: dict[str, str]) -> None:
    """Refuse a dirty tree, another way of judging than the baseline's, a re-trial of the incumbent, a revoked history,
    bench edits and policy breaches."""
    dirty = repo.tracked_dirty(head)  # byte for byte against HEAD's blobs: no git status, no filter or fsmonitor runs
    if dirty:
        raise TrialError("dirty", f"uncommitted changes ({', '.join(dirty[:3])}{' ...' if len(dirty) > 3 else ''}): "
                                  f"commit or stash them first")
    same_judging(chain, config)
    bad = chain.first_revoked()
    if bad:
        raise TrialError("revoked", revoked_advice(chain, bad, chain.revoked[bad["commit"]]["description"]))
    incumbent = chain.incumbent
    if incumbent and head.startswith(incumbent["commit"]):
        raise TrialError("dirty", "HEAD is the incumbent: commit a change to pqkern/kernels.py first")
    if incumbent:
        changed = [f for f in repo.changed_paths(incumbent["commit"], head) if f != KERNEL_PATH]
        if changed:
            raise TrialError("refused", f"the commit changes {', '.join(changed)}: only {KERNEL_PATH} may change in a trial")
    found = violations(repo.kernel(head))
    if found:
        raise TrialError("refused", str(PolicyError(KERNEL_PATH, found)))


def revoked_advice(chain: Chain, bad: dict, why: str) -> str:
    """What a revoked keep means and the command that puts the branch back on the last good commit."""
    good = chain.last_good(bad)
    what = (f"the kept commit {bad['commit'][:10]} ({bad['description']!r}, kept at {bad['timestamp']}) fails a later "
            f"check: {why}. It was kept before this failure was seen; its keep is revoked")
    if good is None:
        return f"{what}. It is this branch's baseline: start a new branch from main (program.md, Setup)"
    return (f"{what}. Put the branch back on the last good commit, {good['commit'][:10]} ({good['description']!r}): "
            f"git reset --hard {good['commit'][:10]}")


def asv_machine() -> str:
    """The machine name asv records under: the host name if ~/.asv-machine.json lists it, else its only entry."""
    host = socket.gethostname()
    try:
        names = [k for k in json.loads((Path.home() / ".asv-machine.json").read_text()) if k != "version"]
    except (OSError, ValueError):
        return host
    return names[0] if host not in names and len(names) == 1 else host


def record_in_asv(repo: Repo, folder: Path, bench: str, measured: Path | None = None, commit: str = "HEAD") -> str:
    """``asv run <commit>^!`` for the kept commit (setting up this machine for asv first if needed); ``measured``: the
    trial's own measurement against the seed, which the benchmarks take instead of measuring again (``measured.py``).
    Under ``pqkern-sandbox``'s judge, asv runs with the judge's configuration (``snapshot.py``)."""
    if not (repo.root / "asv.conf.json").is_file():
        return "asv: no asv.conf.json, not recorded"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(private_numba_cache()),  # not the tree's __pycache__ (integrity.py)
               **({measured_module.ENV: str(measured)} if measured else {}))
    config = ["--config", str(snapshot.asv_config_file())] if snapshot.asv_config_file() else []
    with open(folder / "asv.log", "w") as log:
        if not (Path.home() / ".asv-machine.json").is_file():
            subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", *config], cwd=repo.root, stdout=log,
                           stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        code = subprocess.run([sys.executable, "-m", "asv", "run", *config, "--show-stderr", "--bench", bench, f"{commit}^!"],
                              cwd=repo.root, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                              env=env).returncode
    if code == 0:
        return "asv: recorded HEAD"
    failed = asv_failures((folder / "asv.log").read_text(errors="replace"))
    named = f" (failed: {', '.join(failed[:3])}{', ...' if len(failed) > 3 else ''})" if failed else ""
    return f"asv: run exited {code}{named}, see {folder / 'asv.log'}"


def asv_failures(log: str) -> list[str]:
    """The benchmarks an ``asv run`` log reports as failed (a series that does not apply is n/a, not failed)."""
    names = re.findall(r"··· (\S+)\s+(?:\d+/\d+ )?failed\s*$", log, flags=re.MULTILINE)
    names += re.findall(r"(\S+) skipped \(setup_cache failed\)", log)
    return list(dict.fromkeys(names))


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


class Trial:
    """One trial of HEAD: its folder, its judgement and its row."""

    def __init__(self, args: argparse.Namespace, repo: Repo, head: str, chain: Chain, config: dict[str, str],
                 rows: list[dict] | None = None):
        self.args, self.repo, self.head, self.chain, self.config = args, repo, head, chain, config
        self.rows = rows or []  # results.tsv's rows (for the retry's evidence, retry.py)
        self.workloads = [w.partition("@")[0] for w in config["workloads"].split(",")]  # judged, by name
        self.incumbent = chain.incumbent
        self.branch = repo.head()[0]  # the branch judged (None: a detached HEAD), the one a revert moves back
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.dir = repo.root / "trials" / f"{stamp}-{head[:10]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start = time.monotonic()
        self.cmp: Comparison | None = None  # against the incumbent (the seed, for a baseline)
        self.seed_cmp: Comparison | None = None  # the keep's direct measurement against the seed
        self.note = ""  # said in the verdict: fixed queries, a spent simpler margin
        self.decided = None  # seconds from the start to the verdict
        self.data = (0.0, "")  # seconds spent building data before the judging, and what was built
        self.plan: retry.Plan | None = None  # the candidate's tree, family, level and the rounds it continues

    def judge(self) -> tuple[str, str]:
        """Judge HEAD; return ``(status, reason)``; ``self.cmp`` and ``self.seed_cmp`` hold the figures."""
        from pqkern.bench.fixture import FixtureError, load_fixture

        try:
            fx = load_fixture(self.args.source, build=False)  # built by build_data, before the judging
        except FixtureError as e:
            raise TrialError("harness", str(e)) from None
        self.fixture = {"source": fx.source, "num_base": fx.num_base, "fixture_id": fx.fixture_id,
                        "codebook_sha256": fx.codebook_sha256}
        candidate = self.repo.kernel(self.head)
        incumbent = self.repo.kernel(self.incumbent["commit"]) if self.incumbent else SEED_KERNEL.read_text(encoding="utf-8")
        (self.dir / "candidate_kernels.py").write_text(candidate, encoding="utf-8")
        (self.dir / "incumbent_kernels.py").write_text(incumbent, encoding="utf-8")
        if self.incumbent and same_code(incumbent, candidate):
            return "keep", rule.explain("same-code")
        workloads = self.workloads
        margin = None
        if self.incumbent and code_size(candidate) < code_size(incumbent):
            margin = rule.spent_margin(self.chain.simpler_lows(workloads), workloads)
            if max(margin.values()) < rule.MIN_SIMPLER_MARGIN:
                margin, self.note = None, "simpler, but the margin simpler keeps may lose since the last faster keep is spent"
        total = paired.rows_needed([parse(w)[0] for w in self.config["workloads"].split(",")], self.args.cap_rounds)
        queries = query_set(fx, total)
        if not queries.fresh:
            self.note = f"fixed queries: {queries.note}"
        rows = plan(queries, {"trial": total})["trial"]
        self.cmp = cmp = Comparison("measured", "measured", "", {})
        self.plan = retry.Plan(retry.tree_sha(candidate), retry.family_sha(candidate), cmp.alpha)
        if self.incumbent:
            try:
                self.plan = retry.plan(self.rows, self.incumbent["commit"], candidate, self.repo.root / "trials", workloads)
            except retry.EvidenceError as e:
                raise TrialError("tampered", str(e)) from None
            cmp.alpha = self.plan.alpha
            if self.plan.prior:
                cmp.rounds_data = self.plan.prior
                cmp.rounds = cmp.prior_rounds = min(len(v) for v in self.plan.prior.values())
            if self.plan.note:
                self.note = "; ".join(filter(None, [self.note, self.plan.note]))
        try:
            wls = {w: make(w, fx, queries) for w in workloads}
        except (FixtureError, ValueError) as e:
            raise TrialError("harness", str(e)) from None
        log = open(self.dir / "progress.log", "w")
        held = cpus.current()
        print(f"cpus: {held.describe() if held else 'none reserved'}", file=log, flush=True)
        try:
            with Match(wls, queries, time_budget=self.args.time_budget, jail=not self.args.no_jail,
                       log=lambda m: print(m, file=log, flush=True)) as match:
                try:
                    decided = phases.decided_already(cmp, workloads, margin)
                    status, reason = decided or phases.run(match, cmp, rows, incumbent, candidate, margin, self)
                except Failed as e:
                    failure(cmp, e)
                    status, reason = self._failed(cmp)
                cmp.records = match.records
        finally:
            log.close()
            cmp.queries, cmp.query_seed = queries.describe(), (f"{queries.seed:#x}" if queries.fresh else "")
            cmp.seconds = time.monotonic() - self.start
            record = dict(cmp.to_json(), incumbent_label=self.incumbent["commit"] if self.incumbent else "seed",
                          cpus=held.to_json() if held else None, tree_sha=self.plan.tree if self.plan else "-",
                          family_sha=self.plan.family if self.plan else "-",
                          continued=self.plan.continued if self.plan else "")
            if self.seed_cmp:
                record["seed_measurement"] = {k: v for k, v in self.seed_cmp.to_json().items() if k != "records"}
            (self.dir / "comparison.json").write_text(json.dumps(record) + "\n")
        return status, reason

    def write_seed_measurement(self) -> Path | None:
        """The keep's (or baseline's) measurement against the seed, written for asv to reuse; None if there is none."""
        if self.incumbent is None and self.cmp is not None and self.cmp.decision == "measured":
            result = self.cmp.to_json()
        elif self.seed_cmp is not None:
            result = dict(self.seed_cmp.to_json(), peak_mem_mb=dict(self.cmp.peak_mem_mb))
        else:
            return None
        path = self.dir / measured_module.FILE
        measured_module.write(path, result, self.repo.kernel(self.head), self.config["fixture_id"], self.config["workloads"])
        return path

    def _failed(self, cmp: Comparison) -> tuple[str, str]:
        if cmp.decision == "incumbent" and self.incumbent is None:
            raise TrialError("harness", f"the frozen seed failed: {cmp.reason}")
        if cmp.decision == "incumbent":
            return "revoked", revoked_advice(self.chain, self.incumbent, cmp.reason)
        if cmp.decision == "harness":
            raise TrialError("harness", cmp.reason)
        return cmp.decision, cmp.reason

    def revoked_row(self, reason: str) -> dict:
        """The row that revokes the incumbent's keep: the candidate was not judged, so it has no figures."""
        row = dict.fromkeys(self.row("crash"), "-")
        row.update(commit=self.incumbent["commit"], status="revoked", description=f"revoked: {reason}",
                   timestamp=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   stop=self.cmp.stop if self.cmp else "-", trial_seconds=f"{time.monotonic() - self.start:.0f}",
                   branch=self.repo.branch() or "-", machine=asv_machine())
        return row

    def _tree_sha(self, status: str) -> str:
        """The candidate's syntax-tree sha256 (retry.py), '-' for a refused commit (it may not even parse)."""
        if self.plan:
            return self.plan.tree
        try:
            return retry.tree_sha(self.repo.kernel(self.head)) if status != "refused" else "-"
        except (SyntaxError, ValueError, GitError):
            return "-"

    def row(self, status: str) -> dict:
        cmp, seed = self.cmp, self.seed_cmp
        iv = cmp.intervals if cmp else {}
        cand = cmp.candidate if cmp else {}
        flat = cand.get("flat", {})
        same = status == "keep" and cmp is None  # a same-code keep: nothing was run
        comb = iv.get("combined")
        speed = comb.as_ratio() if comb and self.incumbent else (None, None, None)
        if status == "baseline" and comb:
            versus = {w: v.as_ratio() for w, v in iv.items()}
        elif status == "keep" and seed:
            versus = {w: v.as_ratio() for w, v in seed.intervals.items()}
        else:
            versus = {}
        inc = self.incumbent or {}
        row = {"commit": self.head[:12], "recall_at_10": _fmt(flat.get("recall_at_10"), ".4f"),
               "geomean_ns_per_query": _fmt(flat.get("geomean_ns_per_query"), "d"),
               "speedup": _fmt(speed[0], ".3f"), "speedup_lo": _fmt(speed[1], ".3f"), "speedup_hi": _fmt(speed[2], ".3f"),
               "peak_mem_mb": _fmt(cmp.peak_mem_mb.get("candidate") if cmp else None, ".1f"),
               "status": {"recall": "discard"}.get(status, status), "description": self.args.description,
               "timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "stop": "same-code" if same else (cmp.stop if cmp else "-"),
               "trial_seconds": f"{self.decided if self.decided is not None else time.monotonic() - self.start:.0f}",
               "branch": self.repo.branch() or "-", "machine": asv_machine(),
               "recall_delta": _fmt(flat.get("recall_delta"), "+.4f"),
               "checked_queries": str(sum(f.get("checked_queries", 0) for f in cand.values())) if cand else "-",
               "prepare_seconds": _fmt((cmp.prepare_seconds.get("candidate", {}) if cmp else {}).get("flat"), ".3f"),
               "code_size": str(code_size(self.repo.kernel(self.head))) if status != "refused" else "-",
               "queries": ("fresh" if cmp.query_seed else "fixed") if cmp and cmp.queries else "-",
               "query_seed": cmp.query_seed if cmp and cmp.query_seed else "-", **self.config,
               "estimand": "throughput", "rounds": str(cmp.rounds) if cmp else "-",
               "tree_sha": self._tree_sha(status), "family_sha": self.plan.family if self.plan else "-",
               "alpha": f"{self.plan.alpha:.3g}" if self.plan else "-",
               "continued": (self.plan.continued or "-") if self.plan else "-",
               "incumbent": inc.get("commit", "-") if self.incumbent else "seed", "trial": self.dir.name,
               "evidence_sha256": (retry.file_sha256(self.dir / "comparison.json")
                                   if (self.dir / "comparison.json").is_file() else "-")}
        prepared = cmp.prepare_seconds.get("candidate", {}) if cmp else {}
        for w in (*WORKLOADS, REAL, REAL_IVF):  # real_*: the real descriptors' flat scan; real_ivf_*: their IVF layout
            c = column(w)
            s, lo, hi = iv[w].as_ratio() if w in iv and self.incumbent else (None, None, None)
            row.update({f"{c}_speedup": _fmt(s, ".3f"), f"{c}_speedup_lo": _fmt(lo, ".3f"), f"{c}_speedup_hi": _fmt(hi, ".3f"),
                        f"{c}_seed_speedup": _fmt(versus[w][0] if w in versus else None, ".3f")})
            if w != "flat":
                fig = cand.get(w, {})
                row.update({f"{c}_recall_at_10": _fmt(fig.get("recall_at_10"), ".4f"),
                            f"{c}_recall_delta": _fmt(fig.get("recall_delta"), "+.4f"),
                            f"{c}_geomean_ns_per_query": _fmt(fig.get("geomean_ns_per_query"), "d"),
                            f"{c}_prepare_seconds": _fmt(prepared.get(w), ".3f")})
        combined = versus.get("combined", (None, None, None))
        row.update(seed_speedup=_fmt(combined[0], ".3f"), seed_speedup_lo=_fmt(combined[1], ".3f"),
                   seed_speedup_hi=_fmt(combined[2], ".3f"))
        if same:  # the incumbent's code: its measurement, its memory and its prepare
            for key in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi", "peak_mem_mb", "recall_at_10", "recall_delta",
                        "geomean_ns_per_query", "prepare_seconds", "flat_seed_speedup",
                        *(f"{column(w)}_{f}" for w in ("ivf", REAL, REAL_IVF)
                          for f in ("seed_speedup", "prepare_seconds", "recall_at_10", "recall_delta",
                                    "geomean_ns_per_query"))):
                row[key] = inc.get(key, "-")
        return row


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(wire.ENV):  # inside pqkern-sandbox: the judge outside it runs this trial (docs/sandbox.md)
        return wire.ask(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="pqkern-trial", description="Judge the last commit to pqkern/kernels.py: keep or revert.",
                                epilog="exit codes: 0 keep/baseline; 1 discard (slower, not significant, below the bar); "
                                "2 recall; 3 timeout; 4 crash; 5 refused (or another trial is running); 6 the harness could "
                                "not run; 7 revoked (a kept incumbent failed: the verdict says how to go back); 8 tampered "
                                "(a results.tsv row does not verify: nothing touched, stop and report)")
    p.add_argument("description", help="a short description of the change, for results.tsv")
    p.add_argument("--source", help="fixture source (default: the runner's default)")
    p.add_argument("--workload", action="append", choices=(*WORKLOADS, REAL_IVF, REAL),
                   help="judge only this workload (repeatable; default flat and ivf, and real-ivf beside a synthetic "
                        "fixture)")
    p.add_argument("--cap-seconds", type=float, default=CAP_SECONDS,
                   help=f"paired timing stops undecided after this long (default {CAP_SECONDS:g})")
    p.add_argument("--cap-rounds", type=int, default=paired.CAP_ROUNDS,
                   help=f"... or after this many rounds, whichever comes first (default {paired.CAP_ROUNDS})")
    p.add_argument("--time-budget", type=float, default=600, help="seconds for each worker's whole life (default 600)")
    p.add_argument("--no-asv", action="store_true", help="do not record a kept commit in asv")
    p.add_argument("--asv-bench", default=ASV_BENCH, help=f"asv benchmarks to record (regex, default {ASV_BENCH!r})")
    p.add_argument("--no-jail", action="store_true",
                   help="run workers without the operating-system jail (see docs/guarantees.md)")
    p.add_argument("--cpus", help="the CPUs to reserve (e.g. 2,3: the judge's, then the workers'; any others held idle); "
                                  "default: a free set of those this process may use (docs/trial.md)")
    args = p.parse_args(argv)
    try:
        wanted = cpus.parse(args.cpus)
    except cpus.CpuError as e:
        print(f"verdict: refused ({e})")
        return EXIT["refused"]
    try:  # git read without running it in the agent's repository (gitsafe.py)
        repo = Repo(find_root(Path.cwd()))
        root, head = repo.root, repo.head()[1]
    except (GitError, OSError) as e:
        print(f"verdict: error ({e})")
        return EXIT["harness"]
    try:
        lock = TrialLock(repo.git_dir, head)
    except Busy as e:
        print(f"verdict: refused ({e})")
        return EXIT["refused"]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    reservation = neighbours = None
    try:  # machine-wide: no other trial times on these CPUs (waits, saying for whom, until a set is free)
        reservation = cpus.reserve("pqkern-trial", root, head, wanted)
        neighbours = Neighbours(reservation.judge)
        return _run(args, repo, head, neighbours)
    except (cpus.CpuError, cpus.Unusable) as e:
        print(f"verdict: {'refused' if isinstance(e, cpus.CpuError) else 'error'} ({e})")
        return EXIT["refused" if isinstance(e, cpus.CpuError) else "harness"]
    except Interrupted as e:
        if ROW_WRITTEN:
            print(f"pqkern-trial: interrupted ({e}) after the verdict on {head[:10]} was written to results.tsv",
                  file=sys.stderr, flush=True)
        else:
            print(f"verdict: interrupted ({e}): no row written, nothing reset; HEAD is the unjudged candidate {head[:10]}: "
                  f"run pqkern-trial again to judge it", flush=True)
        return EXIT["harness"]
    finally:
        if neighbours:
            neighbours.close()
        if reservation:
            reservation.release()
        lock.release()


def _interrupt(signum, frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _run(args: argparse.Namespace, repo: Repo, head: str, neighbours: Neighbours) -> int:
    results = repo.root / "results.tsv"
    trial = None
    try:
        vouch(repo.root, repo, head)  # before anything is judged: refused (exit 5), nothing touched
        broken = verify_results(results)  # every row a trial wrote, as it wrote it, none missing
        if broken:
            raise Tampered(broken)
        rows = read_rows(results)
        chain = read_chain(repo, rows, head)
        if chain.incumbent and not chain.baseline:
            raise TrialError("harness", f"{results} has kept commits in this history but no baseline row: start a new branch")
        config = judging(args)
        preconditions(repo, chain, head, config)
        data_seconds, built = build_data(args, config)
        if judging(args) != config:  # the real descriptors' fixture is known once they are extracted
            config = judging(args)
            same_judging(chain, config)
        trial = Trial(args, repo, head, chain, config, rows)
        trial.data = (data_seconds, built)
        status, reason = trial.judge()
    except Tampered as e:
        print(f"verdict: tampered ({e})")
        return EXIT["tampered"]
    except (Refused, Forged) as e:
        print(f"verdict: refused ({e})")
        return EXIT["refused"]
    except (ResultsError, GitError) as e:
        print(f"verdict: error ({e})")
        return EXIT["harness"]
    except TrialError as e:
        if e.status == "refused":
            return _finish(repo, results, trial or Trial(args, repo, head, chain, config), e.status, str(e), neighbours)
        if e.status == "revoked":
            print(f"verdict: revoked ({e}); nothing was run or reset")
            return EXIT["revoked"]
        if e.status == "tampered":
            print(f"verdict: tampered ({e}); nothing was run or reset: stop and report it (docs/trial.md)")
            return EXIT["tampered"]
        print(f"verdict: {'refused' if e.status == 'dirty' else 'error'} ({e})")
        return EXIT["refused" if e.status == "dirty" else "harness"]
    trial.decided = time.monotonic() - trial.start
    neighbours.look()
    return _finish(repo, results, trial, status, reason, neighbours)


def _finish(repo: Repo, results: Path, trial: Trial, status: str, reason: str, neighbours: Neighbours) -> int:
    """Record a keep in asv (timed), then write the row and revert together; print the verdict and the block."""
    row = trial.revoked_row(trial.cmp.reason) if status == "revoked" else trial.row(status)
    notes = []
    asv_seconds = None
    broken = verify_results(results)  # changed while the trial ran: nothing recorded, nothing reset
    if broken:
        print(f"verdict: tampered ({Tampered(broken)})")
        return EXIT["tampered"]
    if status in ("keep", "baseline") and not trial.args.no_asv:
        if trial.cmp is None:
            notes.append(f"asv: not recorded (the same code as {trial.incumbent['commit'][:10]}, whose record stands)")
        else:
            t0 = time.monotonic()
            notes.append(record_in_asv(repo, trial.dir, trial.args.asv_bench, trial.write_seed_measurement(), trial.head))
            asv_seconds = time.monotonic() - t0
            row["asv_seconds"] = f"{asv_seconds:.0f}"
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    try:  # the row and the revert happen together or not at all, whatever signal arrives
        append_row(results, row)
        ROW_WRITTEN.append(trial.head)
        reverted = _revert(repo, trial, status)
    except Tampered as e:
        print(f"verdict: tampered ({e})")
        return EXIT["tampered"]
    except ResultsError as e:
        print(f"verdict: error ({e})")
        return EXIT["harness"]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    notes = ([reverted] if reverted else []) + notes
    (trial.dir / "verdict.json").write_text(json.dumps({"status": row["status"], "reason": reason, "row": row}, indent=1)
                                            + "\n")
    if trial.note:
        notes.append(f"note: {trial.note}")
    if trial.data[1]:
        notes.append(f"data: built {trial.data[1]} first, in {trial.data[0]:.0f} s (once: later trials only load them)")
    warning = neighbours.warning()
    if warning:
        notes.append(warning)
    label = {"recall": "discard"}.get(status, status)
    print(f"verdict: {label} ({reason}){_figures(trial, row, asv_seconds)} commit={trial.head[:10]}"
          + "".join(f"; {n}" for n in notes))
    if (status != "revoked" and trial.cmp and _block_workload(trial.cmp) in trial.cmp.candidate
            and "candidate" in trial.cmp.peak_mem_mb):
        print(format_block(_block(trial, status), omit_missing=True))
    return EXIT[status]


def _revert(repo: Repo, trial: Trial, status: str) -> str:
    """Reset to the incumbent after anything but a keep (or a revoke), unless that would lose work; say what was done."""
    if status in ("keep", "baseline", "revoked") or not trial.incumbent:
        return ""
    # only when HEAD and every file it restores are still the candidate's; no porcelain, hook, filter or fsmonitor runs
    return repo.reset_kernel(trial.branch, trial.incumbent["commit"], trial.head)


def _figures(trial: Trial, row: dict, asv_seconds: float | None) -> str:
    """The verdict line's figures: speed-ups with their 99% intervals, the direct one over the seed, what was checked."""
    cmp = trial.cmp
    parts = []
    if cmp and "combined" in cmp.intervals:
        for w in ("combined", "flat", REAL, "ivf", REAL_IVF):
            if w in cmp.intervals:
                name = ("vs_seed" if trial.incumbent is None else "speedup") if w == "combined" else w
                parts.append(f"{name}={ratio_text(cmp.intervals[w])}")
    if trial.incumbent and row["seed_speedup"] != "-":
        parts.append(f"vs_seed={row['seed_speedup']}x [{row['seed_speedup_lo']}, {row['seed_speedup_hi']}]")
    if row["checked_queries"] != "-":
        parts.append(f"checked={row['checked_queries']}")
    parts.append(f"stop={row['stop']}")
    if cmp:
        parts.append(f"rounds={cmp.rounds}")
    parts.append(f"time={row['trial_seconds']}s")
    if asv_seconds is not None:
        parts.append(f"asv={asv_seconds:.0f}s")
    return " " + " ".join(parts)


def _block(trial: Trial, status: str) -> dict:
    """The candidate's result block, each field meaning what pqkern-run's field of that name means, on the flat scan the
    trial judged (the fixture's, or the real descriptors' beside a synthetic fixture)."""
    cmp = trial.cmp
    w = _block_workload(cmp)
    flat = cmp.candidate[w]
    run_status = {"recall": 2, "crash": 4, "timeout": 3}.get(status, 0)
    total = time.monotonic() - trial.start
    timed = sum(r["candidate_wall_ns"] for r in cmp.records if r["workload"] == w and "candidate_wall_ns" in r) / 1e9
    where = trial.fixture if w == "flat" else _real_fixture_fields(trial)
    return {**where, "num_queries": flat["queries"], "recall_at_10": flat["recall_at_10"],
            "geomean_ns_per_query": flat["geomean_ns_per_query"], "peak_mem_mb": cmp.peak_mem_mb.get("candidate"),
            "total_seconds": total, "recall_10_at_10": flat["recall_10_at_10"], "status": STATUS[run_status],
            "exit_code": run_status, "geomean_cpu_ns_per_query": flat["geomean_cpu_ns_per_query"],
            "prepare_seconds": round(cmp.prepare_seconds.get("candidate", {}).get(w, 0.0), 3),
            "timed_seconds": round(timed, 3), "fixed_seconds": total - timed,
            "max_rel_error": float(f"{flat['max_rel_error']:.3g}"), "threads": 1, "workload": w,
            "jail": "off" if trial.args.no_jail else "on", "queries": cmp.queries,
            "recall_delta": flat["recall_delta"],
            "kernel_sha256": hashlib.sha256(trial.repo.kernel(trial.head).encode()).hexdigest()}


def _block_workload(cmp: Comparison) -> str:
    """The flat scan whose figures the result block shows: ``flat``, else ``real``."""
    return "flat" if "flat" in cmp.candidate else REAL


def _real_fixture_fields(trial: Trial) -> dict:
    """The block's fixture fields for the real descriptors' flat scan."""
    from pqkern.bench.fixture import load_fixture

    try:
        real = real_fixture(load_fixture(trial.args.source, build=False), real_rows())
    except Exception:  # noqa: BLE001 - the block then names the main fixture, as before
        return trial.fixture
    return {"source": real.source, "num_base": real.num_base, "fixture_id": trial.config["fixture_id"],
            "codebook_sha256": real.codebook_sha256}


if __name__ == "__main__":
    sys.exit(main())
