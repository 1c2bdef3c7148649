"""Is a kept win ready for Lance? One page per commit: speed-up over the seed and recall, flat and IVF, k = 10 and 100.

``pqkern-upstream COMMIT`` measures the commit's ``pqkern/kernels.py`` against the frozen seed with
the bench's paired engine (``pqkern/bench/paired.py``, a fixed number of rounds, a fixed query
order) on every fixture it can find (the synthetic set, ``siftsmall`` and ``sift1m`` when their
files are installed), on both workloads, at k = 10 and k = 100; then, on the same fixtures and
IVF layout, it times the kernel and the seed beside Lance's own IVF_PQ search and FAISS's
IndexIVFPQ (``pqkern/tools/peers.py``: same partitions, codebook and codes). It writes one HTML
page (through the report's templates) and the same content as Markdown to paste into a pull
request, with the kernel's diff against the seed, and says which rows are missing and why.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

from pqkern.bench.fixture import FixtureError, load_fixture, sift_available
from pqkern.bench.paired import SEED_KERNEL, compare
from pqkern.bench.policy import violations
from pqkern.tools.report import _ENV

KS = (10, 100)
SOURCES = ("synthetic", "siftsmall", "sift1m")
ROUNDS = 40
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
    for k in KS:
        log(f"{fx.fixture_id}: k={k}, paired against the seed ({rounds} rounds per workload)")
        cmp = compare(fx, seed, kernel, ("flat", "ivf"), mode="measure", rounds=rounds, seed=0, k=k)
        if cmp.decision != "measured" or cmp.contract_problem:
            missing.append(f"{source}, k={k}: the kernel did not run cleanly ({cmp.contract_problem or cmp.reason})")
            continue
        for w in ("flat", "ivf"):
            s, lo, hi = cmp.intervals[w].as_ratio()
            cand, inc = cmp.candidate[w], cmp.incumbent[w]
            rows.append({"source": source, "fixture": fx.fixture_id, "workload": w, "k": k, "speedup": s, "lo": lo, "hi": hi,
                         "recall": cand["recall_at_10"], "seed_recall": inc["recall_at_10"],
                         "exact_recall": cand["reference_recall_at_10"], "kernel_ns": cand["geomean_ns_per_query"],
                         "seed_ns": inc["geomean_ns_per_query"], "queries": cand["queries"]})
    return rows, missing


def peers(fx, source: str, kernel_file: Path, queries: int, log) -> tuple[list[dict], list[str]]:
    """Lance and FAISS beside the kernel and the seed, flat and IVF, k = 10 (needs the peers extra)."""
    try:
        import faiss  # noqa: F401
        import lance  # noqa: F401

        from pqkern.tools import peers as p
    except ImportError as e:
        return [], [f"{source}: Lance and FAISS rows: {e.name} is not installed (pip install -e '.[peers]')"]
    p.single_threaded()
    log(f"{fx.fixture_id}: peers on the flat codes and on the IVF layout ({queries} queries)")
    out = []
    flat = p.measure(fx, queries, [kernel_file, SEED_KERNEL], fx.cache_dir / "lance")
    ivf = p.measure_ivf(fx, queries, [kernel_file, SEED_KERNEL])
    for workload, table in (("flat", flat), ("ivf", ivf["rows"])):
        for r in table:
            if "median_ns" in r and "recall_at_10" in r:
                plain = r["method"].split(" (")[0]
                name = {kernel_file.name: "this kernel", SEED_KERNEL.name: "the seed"}.get(plain, r["method"])
                out.append({"source": source, "workload": workload, "method": name, "ns": r["median_ns"],
                            "recall": r["recall_at_10"], "agreement": r.get("agreement")})
    return out, []


def markdown(ctx: dict) -> str:
    lines = [f"### `{ctx['sha'][:10]}`: {ctx['subject']}", "",
             "Speed-up over the seed kernel (paired, same machine, same moment; 99% interval) and recall@k:", "",
             "| fixture | workload | k | speed-up | 99% interval | recall@k | seed | exact ADC | kernel ns/q | seed ns/q |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in ctx["rows"]:
        lines.append(f"| {r['source']} | {r['workload']} | {r['k']} | {r['speedup']:.3f}x | [{r['lo']:.3f}, {r['hi']:.3f}] | "
                     f"{r['recall']:.4f} | {r['seed_recall']:.4f} | {r['exact_recall']:.4f} | {r['kernel_ns']:,} | "
                     f"{r['seed_ns']:,} |")
    if ctx["peers"]:
        lines += ["", "Beside Lance and FAISS on the same codes (IVF: same partitions, codebook and codes), k = 10, "
                  "single-threaded, median ns/query:", "", "| fixture | workload | method | ns/query | recall@10 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['source']} | {r['workload']} | {r['method']} | {r['ns']:,} | {r['recall']:.4f} |" for r in ctx["peers"]]
    if ctx["missing"]:
        lines += ["", "Not measured:", ""] + [f"- {m}" for m in ctx["missing"]]
    lines += ["", f"Measured on `{ctx['machine']}`. The kernel against the seed:", "", "```diff", ctx["diff"].rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pqkern-upstream", description=__doc__.split("\n")[0])
    ap.add_argument("commit", nargs="?", default="HEAD", help="the commit to describe (default HEAD)")
    ap.add_argument("--source", action="append", choices=SOURCES, help="fixtures (default: every one installed)")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help=f"paired rounds per workload (default {ROUNDS})")
    ap.add_argument("--queries", type=int, default=100, help="queries per method in the Lance/FAISS table (default 100)")
    ap.add_argument("--no-peers", action="store_true", help="skip the Lance and FAISS rows")
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
    with tempfile.TemporaryDirectory() as tmp:
        kernel_file = Path(tmp) / "kernels.py"
        kernel_file.write_text(kernel, encoding="utf-8")
        for source in args.source or SOURCES:
            if source in ("siftsmall", "sift1m") and not sift_available(source):
                missing.append(f"{source}: its files are not installed (scripts/prepare_fixtures.sh --source {source})")
                continue
            try:
                fx = load_fixture(source)
            except FixtureError as e:
                missing.append(f"{source}: {e}")
                continue
            got, lost = measure(fx, source, kernel, seed, args.rounds, log)
            rows += got
            missing += lost
            if args.no_peers:
                missing.append(f"{source}: Lance and FAISS rows skipped (--no-peers)")
            else:
                got, lost = peers(fx, source, kernel_file, min(args.queries, fx.queries.shape[0]), log)
                peer_rows += got
                missing += lost
    subject = subprocess.run(["git", "log", "-1", "--format=%s", sha], cwd=root, capture_output=True, text=True).stdout.strip()
    diff = "".join(difflib.unified_diff(seed.splitlines(True), kernel.splitlines(True), "seed_kernel.py",
                                        f"{sha[:10]}:pqkern/kernels.py"))
    from pqkern.bench.trial import asv_machine

    ctx = {"sha": sha, "subject": subject, "rows": rows, "peers": peer_rows, "missing": missing,
           "diff": diff or "(identical to the seed)\n", "machine": asv_machine()}
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
