"""The trial report: one or several runs' results files rendered (jinja2) into one self-contained HTML page.

A progress chart in the style of autoresearch's, one line per run (branch and machine): every trial a
point, kept ones highlighted with their interval, the running best as a step line; failed trials (crash,
timeout, refused) sit on the x axis as crosses. The y axis is the speed-up over the frozen seed kernel
(``seed_speedup``); runs whose files predate it (version 1) fall back to the branch baseline's wall-clock
geomean over the trial's. Then one line per run with its best kept speed-up, and the table of trials,
filterable by run with CSS alone. No scripts, no network: it opens from disk.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jinja2

from pqkern.tools.results_tsv import MISSING, V1, ResultsFileError, Run, read_runs

W, H, PAD = 900, 360, 50
COLORS = ["#1a7f37", "#2952a3", "#b35900", "#8e44ad", "#c0392b", "#16808a", "#7a6a00", "#555"]
FAILED = ("crash", "timeout", "refused")
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True)
TEMPLATE = _ENV.get_template("report.html.j2")


def _float(v: str | None) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def speedups(run: Run) -> tuple[str, list[tuple[float, float, float] | None]]:
    """``(metric, per row (y, lo, hi) or None)``: over the seed when the run's rows have it, else the old ratio.

    A row without ``seed_speedup`` in a seed run is chained from the incumbent's: seed x speed-up over the incumbent.
    """
    out: list[tuple[float, float, float] | None] = []
    if any(_float(r["seed_speedup"]) for r in run.rows):
        incumbent = None
        for r in run.rows:
            s, lo, hi = (_float(r[k]) for k in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi"))
            if s is None and r["status"] == "baseline":
                s = 1.0
            elif s is None and incumbent and _float(r["speedup"]):
                s = incumbent * _float(r["speedup"])
            if r["status"] in FAILED or s is None:
                out.append(None)
                continue
            out.append((s, lo or s, hi or s))
            if r["status"] in ("keep", "baseline"):
                incumbent = s
        return "seed", out
    base = None
    for r in run.rows:
        g = _float(r["geomean_ns_per_query"])
        if r["status"] == "baseline" and g:
            base = g
        out.append((base / g,) * 3 if base and g and r["status"] not in FAILED else None)
    return "baseline geomean", out


def render(runs: list[Run], source: str = "results.tsv", peers: dict | None = None) -> str:
    """The report page for ``runs``, with the peers table when given."""
    series = [speedups(run) for run in runs]
    values = [v for _, ys in series for v in ys if v]
    top = max([max(v[0], v[2]) for v in values] + [1.0]) * 1.1
    n = max([len(run.rows) for run in runs] + [2])

    def x(i: int) -> float:
        return PAD + (W - PAD - 20) * i / (n - 1)

    def y(s: float) -> float:
        return H - PAD - (H - PAD - 10) * min(s, top) / top

    charts, summaries, table = [], [], []
    for k, (run, (metric, ys)) in enumerate(zip(runs, series, strict=True)):
        color, points, line, best, best_row = COLORS[k % len(COLORS)], [], [], None, None
        for i, (r, v) in enumerate(zip(run.rows, ys, strict=True)):
            title = f"{run.label} #{i} {r['status']} {r['commit']}: {r['description']}" + (f" ({v[0]:.3f}x)" if v else "")
            points.append({"x": x(i), "y": y(v[0]) if v else 0, "lo": y(v[1]) if v else 0, "hi": y(v[2]) if v else 0,
                           "status": r["status"], "failed": v is None and r["status"] in FAILED, "shown": v is not None,
                           "title": title})
            if v and (r["status"] == "baseline" or (r["status"] == "keep" and (best is None or v[0] > best[0]))):
                best, best_row = v, r
            if best:
                line.append(f"{x(i):.1f},{y(best[0]):.1f} {x(i + 1) if i + 1 < len(run.rows) else x(i):.1f},{y(best[0]):.1f}")
            table.append({"run": k, "label": run.label, "row": r})
        kept = sum(r["status"] == "keep" for r in run.rows)
        summaries.append({"run": k, "color": color, "branch": run.branch, "machine": run.machine, "trials": len(run.rows),
                          "kept": kept, "metric": metric, "best": best, "best_commit": best_row["commit"] if best_row else "-",
                          "last": run.rows[-1]["timestamp"], "sources": ", ".join(run.sources)})
        charts.append({"run": k, "color": color, "points": points, "best_line": " ".join(line)})
    step = next(s for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50, 100, 1e9) if s >= top / 6)
    yticks = [{"y": y(v * step), "label": f"{v * step:.2g}x"} for v in range(int(top / step) + 1)]
    keys = [h for h in (runs[0].rows[0] if runs else {}) if h not in ("branch", "machine")]
    header = ["run", *[h for h in keys if h in V1 or any(t["row"][h] != MISSING for t in table)]]
    metrics = {s["metric"] for s in summaries}
    axis = "speed-up over the seed" if metrics == {"seed"} else (
        "speed-up over the baseline" if metrics == {"baseline geomean"} else "speed-up over the seed (v1 runs: baseline)")
    return TEMPLATE.render(runs=summaries, charts=charts, table=table, header=header, yticks=yticks, axis=axis,
                           trials=len(table), kept=sum(s["kept"] for s in summaries), source=source,
                           one_y=y(1.0), W=W, H=H, PAD=PAD, peers=peers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-report", description="Render trial results files into one HTML report.")
    p.add_argument("results", nargs="*", type=Path, help="results files (default: ./results.tsv unless --runs is given)")
    p.add_argument("--runs", action="append", type=Path, default=[], metavar="DIR",
                   help="a folder of per-run files, <machine>/<branch>.tsv (pqkern-runs gather writes trials/runs/)")
    p.add_argument("-o", "--output", default="trials/report.html", help="output page (default: trials/report.html)")
    p.add_argument("--peers", default="trials/peers.json", help="pqkern-peers table to include, if present")
    args = p.parse_args(argv)
    files = args.results or ([] if args.runs else [Path("results.tsv")])
    missing = [str(f) for f in files if not f.is_file()] + [str(d) for d in args.runs if not d.is_dir()]
    if missing:
        print(f"pqkern-report: {', '.join(missing)} not found: run pqkern-trial (or pqkern-runs gather) first", file=sys.stderr)
        return 1
    try:
        runs = read_runs(files, args.runs)
    except (ResultsFileError, UnicodeDecodeError) as e:
        print(f"pqkern-report: {e}", file=sys.stderr)
        return 1
    if not runs:
        print(f"pqkern-report: no trials in {', '.join(map(str, files + args.runs))}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    peers = json.loads(Path(args.peers).read_text()) if Path(args.peers).is_file() else None
    out.write_text(render(runs, ", ".join(map(str, files + args.runs)), peers), encoding="utf-8")
    print(f"report: {out.resolve()} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
