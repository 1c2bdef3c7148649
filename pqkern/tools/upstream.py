"""Is a kept win ready for Lance? One page per commit: speed-up over the seed, where it holds, and how it was reached.

``pqkern-upstream COMMIT`` measures the commit's ``pqkern/kernels.py`` against the frozen seed with the
bench's paired engine (``pqkern/bench/paired.py``, fresh queries, a fixed number of rounds) on every
fixture it can find (the synthetic set, ``imagesift`` when its packages are installed, ``siftsmall`` and
``sift1m`` when their files are), on both workloads, at k = 10 and k = 100, with the kernel's
``prepare`` time; the size curve (``size_curve.py``: flat scans of 1k to 1M rows, synthetic beside real
descriptors, and siftsmall beside the synthetic set at its own size); the kept steps that led to the
commit (``results.tsv``), each marked when its gain is below ``CODEGEN_STEP``, the size of step this
machine's code generation alone can fake; and, on the same fixtures and IVF layout, the kernel and the
seed beside Lance's own IVF_PQ search and FAISS's IndexIVFPQ (``pqkern/tools/peers.py``). It writes one
HTML page and the same content as Markdown to paste into a pull request, with the kernel's diff
against the seed, and says which rows are missing and why.
"""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pqkern.bench import datasets, imagesift
from pqkern.bench.fixture import FixtureError, load_fixture, sift_available
from pqkern.bench.history import GitError, Repo, read_chain
from pqkern.bench.paired import SEED_KERNEL, compare
from pqkern.bench.policy import violations
from pqkern.bench.results import ResultsError
from pqkern.tools import size_curve
from pqkern.tools.report import _ENV
from pqkern.tools.results_tsv import ResultsFileError, parse_verified

KS = (10, 100)
SOURCES = ("synthetic", "imagesift", "siftsmall", "sift1m")
ROUNDS = 40
# A kept step smaller than this may be code generation alone: never-executed code (a branch never taken in the hot
# loop, an unused function, padding) moved a kernel by up to this much here (scripts/verdict_power.py, codegen scenarios).
CODEGEN_STEP = 1.10  # code that never runs moved the pruned scan by up to 1.081x overall (scripts/verdict_power.py)
TEMPLATE = _ENV.get_template("upstream.html.j2")


def kernel_at(commit: str, root: Path) -> tuple[str, str]:
    """``(full sha, pqkern/kernels.py at that commit)``; raises ValueError with what went wrong."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=root, capture_output=True, text=True)
    if sha.returncode:
        raise ValueError(f"{commit!r} is not a commit of {root}")
    show = subprocess.run(["git", "show", f"{sha.stdout.strip()}:pqkern/kernels.py"], cwd=root, capture_output=True,
                          text=True)
    if show.returncode:
        raise ValueError(f"commit {commit} has no pqkern/kernels.py")
    return sha.stdout.strip(), show.stdout


def measure(fx, source: str, kernel: str, seed: str, rounds: int, log) -> tuple[list[dict], list[str]]:
    """The speed-up and recall rows of one fixture (both workloads, both k), and what could not be measured."""
    rows, missing = [], []
    datasets.extend(fx, ("flat", "ivf"))
    for k in KS:
        log(f"{fx.fixture_id}: k={k}, paired against the seed ({rounds} rounds per workload)")
        cmp = compare(fx, seed, kernel, ("flat", "ivf"), mode="measure", rounds=rounds, k=k)
        if cmp.decision != "measured" or cmp.contract_problem:
            missing.append(f"{source}, k={k}: the kernel did not run cleanly ({cmp.contract_problem or cmp.reason})")
            continue
        for w in ("flat", "ivf"):
            s, lo, hi = cmp.intervals[w].as_ratio()
            cand, inc = cmp.candidate[w], cmp.incumbent[w]
            rows.append({"source": source, "fixture": fx.fixture_id, "workload": w, "k": k, "speedup": s, "lo": lo, "hi": hi,
                         "recall": cand["recall_at_10"], "seed_recall": inc["recall_at_10"],
                         "recall_delta": cand["recall_delta"], "exact_recall": cand["reference_recall_at_10"],
                         "kernel_ns": cand["geomean_ns_per_query"], "seed_ns": inc["geomean_ns_per_query"],
                         "prepare": cmp.prepare_seconds["candidate"][w], "queries": cand["queries"],
                         "query_set": cmp.queries})
    return rows, missing


PEERS_CAVEAT = ("These times cannot be compared with the speed-ups above, nor closely with each other: the two kernels "
                "take turns every 10 queries, but Lance and FAISS each run on their own, one after another, so a busy "
                "moment of the machine lands on one method and not another (10-20% on a shared 2-core machine, more "
                "under load). Read them as orders of magnitude; the speed-ups over the seed, measured side by side "
                "query by query, are the figures to compare.")


def peers(fx, source: str, kernel_file: Path, queries: int, log) -> tuple[list[dict], list[str]]:
    """Lance and FAISS beside the kernel and the seed, flat and IVF, k = 10, fresh queries (needs the peers extra)."""
    try:
        import faiss  # noqa: F401
        import lance  # noqa: F401

        from pqkern.tools import peers as p
    except ImportError as e:
        return [], [f"{source}: Lance and FAISS rows: {e.name} is not installed (pip install -e '.[peers]')"]
    p.single_threaded()
    log(f"{fx.fixture_id}: peers on the flat codes and on the IVF layout ({queries} queries)")
    out = []
    qset = p.query_set(fx, queries, fresh=True)
    flat = p.measure(fx, qset, [kernel_file, SEED_KERNEL], fx.cache_dir / "lance")
    ivf = p.measure_ivf(fx, qset, [kernel_file, SEED_KERNEL])
    for workload, table in (("flat", flat), ("ivf", ivf["rows"])):
        for r in table:
            if "mean_ns" in r and "recall_at_10" in r:
                plain = r["method"].split(" (")[0]
                name = {kernel_file.name: "this kernel", SEED_KERNEL.name: "the seed"}.get(plain, r["method"])
                out.append({"source": source, "workload": workload, "method": name, "ns": r["mean_ns"],
                            "recall": r["recall_at_10"], "agreement": r.get("agreement")})
    return out, []


def kept_steps(root: Path, sha: str, results: Path) -> tuple[list[dict], str]:
    """The kept steps from the baseline to ``sha`` in ``results`` (oldest first), each marked when its gain over its
    incumbent is below ``CODEGEN_STEP``; or why there are none. Only rows that verify count (``results_tsv.py``); the
    second value also says which were left out, or that an older file's rows carry no seal."""
    try:
        rows, note = parse_verified(results.read_text(encoding="utf-8"), results) if results.is_file() else ([], "")
    except (ResultsError, ResultsFileError, UnicodeDecodeError) as e:
        return [], f"kept steps: {e}"
    if rows and rows[0]["sealed"] != "yes":
        note = (f"{results} is of version {rows[0]['version']}: its rows carry no seal, nothing proves a trial wrote "
                f"the kept steps below")
    note = f"kept steps: {note}" if note else ""
    try:
        chain = read_chain(Repo(root), rows, sha)
    except GitError as e:
        return [], f"kept steps: {e}"
    if not chain.kept:
        return [], f"kept steps: {results} has no kept commit (that verifies) in the history of {sha[:10]}"
    steps = []
    for row in reversed(chain.kept):
        try:
            gain = float(row["speedup"])
        except ValueError:
            gain = None
        steps.append({"commit": row["commit"], "description": row["description"], "status": row["status"],
                      "stop": row["stop"], "speedup": row["speedup"], "lo": row["speedup_lo"], "hi": row["speedup_hi"],
                      "flat": row["flat_speedup"], "ivf": row["ivf_speedup"], "seed": row["seed_speedup"],
                      "small": gain is not None and row["stop"] == "faster" and gain < CODEGEN_STEP})
    return steps, note


def with_audit(steps: list[dict], path: Path | None) -> tuple[str, str]:
    """Add to each step the audit's verdict and figures from ``pqkern-audit --json`` (``path``); return where the audit
    ran, and why it is not shown (or '')."""
    if path is None:
        return "", ""
    try:
        audit = json.loads(path.read_text())
        found = {k["commit"][:12]: k for k in audit["kernels"]}
        where = audit["where"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return "", f"audit: {path}: unreadable ({e})"
    for s in steps:
        k = next((v for c, v in found.items() if c.startswith(s["commit"]) or s["commit"].startswith(c)), None)
        seed = (k or {}).get("measured", {}).get("seed", {}).get("combined")
        s["audit"] = "-" if k is None else (k["verdict"] + (f", {seed[0]:.3f}x [{seed[1]:.3f}, {seed[2]:.3f}]" if seed else ""))
    return (f"{where.get('host')} ({where.get('cpu')}; {', '.join(where.get('simd', []))}; numba target "
            f"{where.get('numba_cpu_name')}), {audit.get('timestamp', '')}"), ""


def curves(fixtures: dict, kernel: str, rounds: int, log) -> tuple[list[dict], list[str]]:
    """The size curve of every fixture measured (synthetic with as many first rows as siftsmall's base too, beside it)."""
    rows, missing = [], []
    for source, fx in fixtures.items():
        log(f"{fx.fixture_id}: size curve, paired against the seed ({rounds} rounds)")
        extra = (fixtures["siftsmall"].num_base,) if source == "synthetic" and "siftsmall" in fixtures else ()
        got, problem = size_curve.measure(fx, source, kernel, rounds, extra)
        rows += got
        if problem:
            missing.append(problem)
    return rows, missing


def markdown(ctx: dict) -> str:
    lines = [f"### `{ctx['sha'][:10]}`: {ctx['subject']}", "",
             "Speed-up over the seed kernel (paired, same machine, same moment, fresh queries; 99% interval), recall@k "
             "and its difference from the exact ADC's on the same queries, and `prepare`:", "",
             "| fixture | workload | k | speed-up | 99% interval | recall@k | vs exact ADC | seed | kernel ns/q | seed ns/q | "
             "prepare s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in ctx["rows"]:
        lines.append(f"| {r['source']} | {r['workload']} | {r['k']} | {r['speedup']:.3f}x | [{r['lo']:.3f}, {r['hi']:.3f}] | "
                     f"{r['recall']:.4f} | {r['recall_delta']:+.4f} | {r['seed_recall']:.4f} | {r['kernel_ns']:,} | "
                     f"{r['seed_ns']:,} | {r['prepare']:.3f} |")
    if ctx["curve"]:
        lines += ["", "Where the win holds: speed-up over the seed on flat scans of the first N rows:", "",
                  "| fixture | rows | speed-up | 99% interval |", "|---|---|---|---|"]
        lines += [f"| {r['source']} | {r['rows']:,} | {r['speedup']:.3f}x | [{r['lo']:.3f}, {r['hi']:.3f}] |"
                  for r in ctx["curve"]]
    if ctx["steps"]:
        audit = ctx.get("audited")
        lines += ["", f"Kept steps (a gain below {ctx['codegen'] - 1:.0%} can be code generation alone on this machine: "
                  "marked *)" + (f"; the audit's re-judgement on {audit}" if audit else "") + ":", "",
                  "| commit | step | speed-up over its incumbent | over the seed |" + (" audit |" if audit else ""),
                  "|---|---|---|---|" + ("---|" if audit else "")]
        lines += [f"| {s['commit'][:10]} | {s['description']} ({s['stop']}) | {s['speedup']}{' *' if s['small'] else ''} | "
                  f"{s['seed']} |" + (f" {s.get('audit', '-')} |" if audit else "") for s in ctx["steps"]]
    if ctx["peers"]:
        lines += ["", "Beside Lance and FAISS on the same codes (IVF: same partitions, codebook and codes), k = 10, "
                  "single-threaded, mean ns/query (throughput).", "", PEERS_CAVEAT, "",
                  "| fixture | workload | method | ns/query | recall@10 |", "|---|---|---|---|---|"]
        lines += [f"| {r['source']} | {r['workload']} | {r['method']} | {r['ns']:,} | {r['recall']:.4f} |" for r in ctx["peers"]]
    if ctx["missing"]:
        lines += ["", "Not measured:", ""] + [f"- {m}" for m in ctx["missing"]]
    lines += ["", f"Measured on `{ctx['machine']}`. The kernel against the seed:", "", "```diff", ctx["diff"].rstrip(), "```", ""]
    return "\n".join(lines)


def _fixtures(sources: list[str], missing: list[str]) -> dict:
    """The fixtures that can be loaded, by source; why the others cannot goes to ``missing``."""
    out = {}
    for source in sources:
        if source in ("siftsmall", "sift1m") and not sift_available(source):
            missing.append(f"{source}: its files are not installed (scripts/prepare_fixtures.sh --source {source})")
            continue
        if source == "imagesift" and imagesift.available():
            missing.append(f"imagesift: {imagesift.available()}")
            continue
        try:
            out[source] = load_fixture(source)
        except FixtureError as e:
            missing.append(f"{source}: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pqkern-upstream", description=__doc__.split("\n")[0])
    ap.add_argument("commit", nargs="?", default="HEAD", help="the commit to describe (default HEAD)")
    ap.add_argument("--source", action="append", choices=SOURCES, help="fixtures (default: every one installed)")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"paired rounds per workload (default {ROUNDS})")
    ap.add_argument("--queries", type=int, default=100, help="queries per method in the Lance/FAISS table (default 100)")
    ap.add_argument("--no-peers", action="store_true", help="skip the Lance and FAISS rows")
    ap.add_argument("--results", type=Path, help="the results file with the kept steps (default: results.tsv at the root)")
    ap.add_argument("--audit", type=Path, help="an audit's JSON (pqkern-audit --json): its figures beside the night's")
    ap.add_argument("-o", "--output", type=Path, help="HTML page (default trials/upstream-<sha>.html; the .md beside it)")
    args = ap.parse_args(argv)
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip() or ".")
    try:
        sha, kernel = kernel_at(args.commit, root)
    except ValueError as e:
        print(f"pqkern-upstream: {e}", file=sys.stderr)
        return 1
    found = violations(kernel)
    if found:
        print(f"pqkern-upstream: {sha[:10]}:pqkern/kernels.py breaks the kernel policy: {found[:3]}", file=sys.stderr)
        return 1
    seed = SEED_KERNEL.read_text(encoding="utf-8")

    def log(msg: str) -> None:
        print(f"[upstream] {msg}", file=sys.stderr, flush=True)

    rows, peer_rows, missing = [], [], []
    fixtures = _fixtures(args.source or list(SOURCES), missing)
    with tempfile.TemporaryDirectory() as tmp:
        kernel_file = Path(tmp) / "kernels.py"
        kernel_file.write_text(kernel, encoding="utf-8")
        for source, fx in fixtures.items():
            got, lost = measure(fx, source, kernel, seed, args.rounds, log)
            rows += got
            missing += lost
            if args.no_peers:
                missing.append(f"{source}: Lance and FAISS rows skipped (--no-peers)")
            else:
                got, lost = peers(fx, source, kernel_file, min(args.queries, fx.queries.shape[0]), log)
                peer_rows += got
                missing += lost
    curve, lost = curves(fixtures, kernel, args.rounds, log)
    missing += lost
    steps, why = kept_steps(root, sha, args.results or root / "results.tsv")
    if why:
        missing.append(why)
    audited, why = with_audit(steps, args.audit)
    if why:
        missing.append(why)
    subject = subprocess.run(["git", "log", "-1", "--format=%s", sha], cwd=root, capture_output=True, text=True).stdout.strip()
    diff = "".join(difflib.unified_diff(seed.splitlines(True), kernel.splitlines(True), "seed_kernel.py",
                                        f"{sha[:10]}:pqkern/kernels.py"))
    from pqkern.bench.trial import asv_machine

    ctx = {"sha": sha, "subject": subject, "rows": rows, "peers": peer_rows, "peers_caveat": PEERS_CAVEAT,
           "missing": missing, "curve": curve,
           "chart": size_curve.chart(curve), "steps": steps, "codegen": CODEGEN_STEP,
           "diff": diff or "(identical to the seed)\n", "machine": asv_machine(), "audited": audited}
    out = args.output or root / "trials" / f"upstream-{sha[:10]}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(TEMPLATE.render(**ctx), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(ctx), encoding="utf-8")
    print(f"upstream page: {out}\nmarkdown:      {out.with_suffix('.md')}")
    for m in missing:
        print(f"missing: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
