"""Where a win holds: the kernel's paired speed-up over the seed on flat scans of growing size, per fixture.

Lance runs the kernel inside IVF_PQ partitions of a few thousand rows, and a kernel tuned to one
benchmark can hide a size threshold (a pruning depth chosen by the scan's length) or lean on one
data set's structure. So for each fixture the kernel and the frozen seed are measured side by side
(``pqkern.bench.paired``, fresh queries, one jailed worker each) on the first 1k, 4k, 16k, 64k, 256k
rows and the whole base (``flat@N`` workloads), all sizes in each round; siftsmall's base (10,000 rows, or
8,000 when it holds rows out as its pool of fresh queries) is measured beside as many of the synthetic fixture's
first rows, so a difference at equal size is the data's.
"""

from __future__ import annotations

import math

from pqkern.bench import datasets
from pqkern.bench.paired import SEED_KERNEL, compare

SIZES = (1_000, 4_000, 16_000, 64_000, 256_000, 1_000_000)
ROUNDS = 40


def workloads(num_base: int, extra: tuple[int, ...] = ()) -> list[str]:
    """The flat workloads of the curve on a fixture of ``num_base`` rows: every size it holds, and the whole base."""
    sizes = sorted({n for n in (*SIZES, *extra) if n < num_base})
    return [f"flat@{n}" for n in sizes] + ["flat"]


def measure(fx, source: str, kernel: str, rounds: int = ROUNDS, extra: tuple[int, ...] = (), log=None) -> tuple[list, str]:
    """``(rows, problem)``: one row per size with the speed-up over the seed and its 99% interval."""
    names = workloads(fx.num_base, extra)
    datasets.extend(fx, names)
    cmp = compare(fx, SEED_KERNEL.read_text(encoding="utf-8"), kernel, names, mode="measure", rounds=rounds, log=log)
    if cmp.decision != "measured" or cmp.contract_problem:
        return [], f"{source} size curve: the kernel did not run cleanly ({cmp.contract_problem or cmp.reason})"
    rows = []
    for w in names:
        s, lo, hi = cmp.intervals[w].as_ratio()
        rows.append({"source": source, "rows": fx.num_base if w == "flat" else int(w.partition("@")[2]), "speedup": s,
                     "lo": lo, "hi": hi, "kernel_ns": cmp.candidate[w]["geomean_ns_per_query"],
                     "seed_ns": cmp.incumbent[w]["geomean_ns_per_query"], "queries": cmp.candidate[w]["queries"]})
    return rows, ""


def chart(rows: list[dict], width: int = 640, height: int = 280, pad: int = 48) -> dict:
    """SVG geometry for the curve: x the rows (log scale), y the speed-up (linear from 0); one series per source."""
    if not rows:
        return {"series": [], "xticks": [], "yticks": [], "width": width, "height": height, "pad": pad, "one_y": 0}
    lo_x, hi_x = math.log10(min(r["rows"] for r in rows)), math.log10(max(r["rows"] for r in rows))
    top = max([1.0] + [min(r["hi"], 2 * r["speedup"]) for r in rows]) * 1.1  # an open interval (few rounds) is clipped

    def x(n: int) -> float:
        return pad + (width - pad - 20) * (math.log10(n) - lo_x) / max(hi_x - lo_x, 1e-9)

    def y(s: float) -> float:
        return height - pad - (height - pad - 10) * min(s, top) / top

    colors = {"synthetic": "#2952a3", "siftsmall": "#b35900", "imagesift": "#1a7f37", "sift1m": "#8e44ad"}
    series = []
    for source in dict.fromkeys(r["source"] for r in rows):
        mine = sorted((r for r in rows if r["source"] == source), key=lambda r: r["rows"])
        series.append({"source": source, "color": colors.get(source, "#555"),
                       "line": " ".join(f"{x(r['rows']):.1f},{y(r['speedup']):.1f}" for r in mine),
                       "points": [{"x": x(r["rows"]), "y": y(r["speedup"]), "lo": y(r["lo"]), "hi": y(r["hi"]),
                                   "title": f"{source}, {r['rows']:,} rows: {r['speedup']:.3f}x [{r['lo']:.3f}, {r['hi']:.3f}]"}
                                  for r in mine]})
    step = next(s for s in (0.25, 0.5, 1, 2, 5, 10, 20, 50, 1e9) if s >= top / 6)
    sizes = sorted({r["rows"] for r in rows})
    return {"series": series, "width": width, "height": height, "pad": pad, "one_y": y(1.0),
            "xticks": [{"x": x(n), "label": f"{n / 1000:g}k" if n < 1_000_000 else f"{n / 1e6:g}M"} for n in sizes],
            "yticks": [{"y": y(v * step), "label": f"{v * step:g}x"} for v in range(int(top / step) + 1)]}
