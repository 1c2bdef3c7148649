#!/usr/bin/env python3
"""Does a win on the synthetic data hold on real SIFT descriptors? The same kernels against the seed on both, at equal sizes.

    scripts/real_vs_synthetic.py [--rounds 60] [--kernel PATH ...] [--no-faiss]

For each kernel (default: the demo kernels, a pruned unrolled scan and the legitimate test kernels)
one paired measurement against the frozen seed (``pqkern.bench.paired``, fresh queries) per
fixture, all of its workloads in the same rounds:

- synthetic 1M: flat scans of its first 65,536 and 594,966 rows;
- imagesift (594,966 real descriptors): flat scans of its first 65,536 rows and of all of it, and IVF;
- synthetic at 594,966 rows (its own fixture, so its IVF layout has imagesift's 72 partitions): IVF.

Then FAISS (IndexPQ on the flat codes, IndexIVFPQ on the IVF layout) beside the seed, timed
one after the other (``pqkern.tools.peers``; its ratios carry 10-20% of run-to-run noise).
Prints one table: speed-up over the seed with its 99% interval per kernel and workload, and the
ratio real / synthetic at each size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pqkern.bench import datasets
from pqkern.bench.fixture import load_fixture
from pqkern.bench.paired import SEED_KERNEL, compare

REPO = Path(__file__).resolve().parent.parent
KERNELS = [REPO / "pqkern" / "tools" / "demo_kernels" / n for n in ("relayout.py", "unrolled.py")] + [
    REPO / "tests" / "kernels" / "legit" / n for n in ("pruned_unrolled.py", "pruned_scan.py", "u16_table.py")]
REAL_ROWS = 594_966
PLAN = [("synthetic", {}, ("flat@65536", f"flat@{REAL_ROWS}")), ("imagesift", {}, ("flat@65536", "flat", "ivf")),
        ("synthetic", {"num_base": REAL_ROWS, "num_queries": 10_000, "num_learn": 100_000}, ("ivf",))]
LABELS = {("synthetic", "flat@65536"): "synthetic flat 64k", ("synthetic", f"flat@{REAL_ROWS}"): "synthetic flat 595k",
          ("imagesift", "flat@65536"): "real flat 64k", ("imagesift", "flat"): "real flat 595k",
          ("synthetic", "ivf"): "synthetic ivf 595k", ("imagesift", "ivf"): "real ivf 595k"}
PAIRS = [("synthetic flat 64k", "real flat 64k"), ("synthetic flat 595k", "real flat 595k"),
         ("synthetic ivf 595k", "real ivf 595k")]


def faiss_ratios(fixtures: dict, queries: int) -> dict[str, float]:
    """FAISS's time as a fraction of the seed's (timed one after the other), per column."""
    from pqkern.tools import peers

    peers.single_threaded()
    out = {}
    for (source, kwargs), fx in fixtures.items():
        qset = peers.query_set(fx, queries, fresh=True)
        if source == "imagesift" or not kwargs:
            rows = {r["method"]: r for r in peers.measure(fx, qset, [SEED_KERNEL], fx.cache_dir / "lance")}
            column = "real flat 595k" if source == "imagesift" else "synthetic flat 1M"
            out[column] = rows["faiss IndexPQ"]["median_ns"] / rows["seed_kernel.py"]["median_ns"]
        if source == "imagesift" or kwargs:
            rows = {r["method"]: r for r in peers.measure_ivf(fx, qset, [SEED_KERNEL])["rows"] if "median_ns" in r}
            column = "real ivf 595k" if source == "imagesift" else "synthetic ivf 595k"
            out[column] = rows["faiss IndexIVFPQ"]["median_ns"] / rows["seed_kernel.py"]["median_ns"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--kernel", type=Path, action="append")
    ap.add_argument("--faiss-queries", type=int, default=100)
    ap.add_argument("--no-faiss", action="store_true")
    args = ap.parse_args()
    fixtures = {(source, tuple(sorted(kw.items()))): load_fixture(source, **kw) for source, kw, _ in PLAN}
    seed = SEED_KERNEL.read_text(encoding="utf-8")
    table: dict[str, dict[str, tuple[float, float, float]]] = {}
    for path in args.kernel or KERNELS:
        source = path.read_text(encoding="utf-8")
        table[path.name] = {}
        for name, kw, workloads in PLAN:
            fx = fixtures[(name, tuple(sorted(kw.items())))]
            datasets.extend(fx, workloads)
            cmp = compare(fx, seed, source, workloads, mode="measure", rounds=args.rounds)
            if cmp.decision != "measured" or cmp.contract_problem:
                print(f"{path.name} on {fx.fixture_id}: {cmp.contract_problem or cmp.reason}", file=sys.stderr)
                continue
            for w in workloads:
                table[path.name][LABELS[(name, w)]] = cmp.intervals[w].as_ratio()
        print(f"measured {path.name}", file=sys.stderr, flush=True)
    columns = list(LABELS.values())
    print("speed-up over the seed, 99% interval (paired, fresh queries, "
          f"{args.rounds} rounds)\n{'kernel':20} " + " ".join(f"{c:>26}" for c in columns))
    for kernel, cells in table.items():
        print(f"{kernel:20} " + " ".join(f"{cells[c][0]:7.3f}x [{cells[c][1]:.3f},{cells[c][2]:.3f}]".rjust(26)
                                          if c in cells else f"{'-':>26}" for c in columns))
    print("\nreal / synthetic at equal size (above 1: the kernel gains more on real descriptors)")
    for kernel, cells in table.items():
        print(f"{kernel:20} " + " ".join(f"{b}/{a.split()[1]}: {cells[b][0] / cells[a][0]:.3f}" for a, b in PAIRS
                                          if a in cells and b in cells))
    if not args.no_faiss:
        ratios = faiss_ratios(fixtures, args.faiss_queries)
        print("\nFAISS time / the seed's time (one after the other, not paired): "
              + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
