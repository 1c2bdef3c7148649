"""The trial report: one or several runs' results files rendered (jinja2) into one self-contained HTML page.

A progress chart in the style of autoresearch's, one line per run (branch and machine): each baseline
and keep at its speed-up over the frozen seed, measured directly, with its 99% interval, and the running
best as a step line through those measured figures only. Discarded trials have no speed-up over the
seed (only over their incumbent, shown on hover) and sit in a lane under the axis, failed ones (crash,
timeout, refused, revoked) as crosses. Older results files (versions 1 and 2) chained their keeps'
figures through the incumbent's: those are drawn as estimates (hollow diamonds), never as progress.
Then recall as what changes (each trial's recall minus the exact ADC's on the same queries, flat and
IVF), one line per run with its best measured keep, and the table of trials, filterable by run with
CSS alone. No scripts, no network: it opens from disk. Only rows that verify are shown (``results_tsv.py``):
the page says how many rows were left out and why, and marks the unsealed rows of versions 1 to 3.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jinja2

from pqkern.tools.results_tsv import MISSING, ResultsFileError, Run, read_verified_runs

W, H, PAD = 900, 360, 50
RH = 160  # the recall chart's height
COLORS = ["#1a7f37", "#2952a3", "#b35900", "#8e44ad", "#c0392b", "#16808a", "#7a6a00", "#555"]
FAILED = ("crash", "timeout", "refused", "revoked")
KEPT = ("keep", "baseline")
COLUMNS = ["commit", "status", "stop", "description", "seed_speedup", "speedup", "flat_speedup", "ivf_speedup", "real_speedup",
           "real_ivf_speedup", "recall_delta", "ivf_recall_delta", "real_recall_delta", "real_ivf_recall_delta",
           "recall_at_10", "ivf_recall_at_10", "real_recall_at_10", "real_ivf_recall_at_10", "prepare_seconds",
           "ivf_prepare_seconds", "real_prepare_seconds", "real_ivf_prepare_seconds", "trial_seconds", "asv_seconds",
           "checked_queries", "geomean_ns_per_query", "ivf_geomean_ns_per_query", "real_geomean_ns_per_query",
           "real_ivf_geomean_ns_per_query", "peak_mem_mb", "code_size", "queries", "timestamp", "sealed"]
RECALL = {"flat": "recall_delta", "ivf": "ivf_recall_delta", "real": "real_recall_delta",
          "real-ivf": "real_ivf_recall_delta"}
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True)
TEMPLATE = _ENV.get_template("report.html.j2")


def _float(v: str | None) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _signed(v: str | None) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def speedups(run: Run) -> list[tuple[str, tuple[float, float, float]] | None]:
    """Per row ``(kind, (y, lo, hi))`` over the seed, or None: ``measured`` for a version 3 keep or any baseline
    (direct paired measurements); ``estimate`` for an older version's chained keeps and discards and for version 1's
    baseline geomean over the trial's."""
    out: list[tuple[str, tuple[float, float, float]] | None] = []
    base = None
    for r in run.rows:
        s, lo, hi = (_float(r[k]) for k in ("seed_speedup", "seed_speedup_lo", "seed_speedup_hi"))
        g = _float(r["geomean_ns_per_query"])
        if r["status"] == "baseline" and g:
            base = g
        if r["status"] in FAILED:
            out.append(None)
        elif s is not None and (r["status"] == "baseline" or (r["version"] in ("3", "4") and r["status"] == "keep")):
            out.append(("measured", (s, lo or s, hi or s)))
        elif s is not None and r["version"] not in ("3", "4"):
            out.append(("estimate", (s, s, s)))
        elif r["version"] == "1" and base and g:
            out.append(("measured" if r["status"] == "baseline" else "estimate", (base / g,) * 3))
        else:
            out.append(None)
    return out


def render(runs: list[Run], source: str = "results.tsv", peers: dict | None = None, left_out: list[str] | None = None) -> str:
    """The report page for ``runs``, with the peers table when given, and why rows were left out (``left_out``)."""
    series = [speedups(run) for run in runs]
    values = [v for ys in series for kv in ys if kv for v in kv[1]]
    top = max(values + [1.0]) * 1.1
    n = max([len(run.rows) for run in runs] + [2])
    deltas = [abs(d) for run in runs for r in run.rows for d in (_signed(r[key]) for key in RECALL.values()) if d is not None]
    span = max(deltas + [0.01]) * 1.2

    def x(i: int) -> float:
        return PAD + (W - PAD - 20) * i / (n - 1)

    def y(s: float) -> float:
        return H - PAD - (H - PAD - 10) * min(s, top) / top

    def ry(d: float) -> float:
        return RH / 2 - (RH / 2 - 12) * max(-span, min(span, d)) / span

    charts, summaries, table = [], [], []
    for k, (run, ys) in enumerate(zip(runs, series, strict=True)):
        color, points, line, best, best_row = COLORS[k % len(COLORS)], [], [], None, None
        recall_points = []
        for i, (r, kv) in enumerate(zip(run.rows, ys, strict=True)):
            kind, v = kv if kv else (None, None)
            over = f", {r['speedup']}x over its incumbent" if r["speedup"] != MISSING else ""
            title = (f"{run.label} #{i} {r['status']} {r['commit']}: {r['description']}"
                     + (f" ({v[0]:.3f}x the seed, {kind})" if v else over))
            lane = kv is None and r["status"] not in FAILED
            points.append({"x": x(i), "y": y(v[0]) if v else 0, "lo": y(v[1]) if v else 0, "hi": y(v[2]) if v else 0,
                           "status": r["status"], "kind": kind, "failed": r["status"] in FAILED, "lane": lane,
                           "title": title})
            if kind == "measured" and (best is None or v[0] > best[0]):
                best, best_row = v, r
            if best:
                line.append(f"{x(i):.1f},{y(best[0]):.1f} {x(i + 1) if i + 1 < len(run.rows) else x(i):.1f},{y(best[0]):.1f}")
            for w, key in RECALL.items():
                d = _signed(r[key])
                if d is not None:
                    recall_points.append({"x": x(i), "y": ry(d), "workload": w, "title": f"{title}: {w} {d:+.4f}"})
            table.append({"run": k, "label": run.label, "row": r})
        kept = sum(r["status"] == "keep" for r in run.rows)
        estimates = [kv[1] for r, kv in zip(run.rows, ys, strict=True) if kv and kv[0] == "estimate" and r["status"] in KEPT]
        summaries.append({"run": k, "color": color, "branch": run.branch, "machine": run.machine, "trials": len(run.rows),
                          "kept": kept, "best": best, "best_commit": best_row["commit"] if best_row else "-",
                          "estimate": max(estimates, default=None), "last": run.rows[-1]["timestamp"],
                          "sources": ", ".join(run.sources)})
        charts.append({"run": k, "color": color, "points": points, "best_line": " ".join(line), "recall": recall_points})
    step = next(s for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50, 100, 1e9) if s >= top / 6)
    yticks = [{"y": y(v * step), "label": f"{v * step:.2g}x"} for v in range(int(top / step) + 1)]
    rticks = [{"y": ry(d), "label": f"{d:+.3f}"} for d in (-span / 1.2, 0.0, span / 1.2)]
    present = {h for t in table for h, v in t["row"].items() if v != MISSING}
    header = ["run", *[h for h in COLUMNS if h in present or h in ("commit", "status", "description")]]
    return TEMPLATE.render(runs=summaries, charts=charts, table=table, header=header, yticks=yticks, rticks=rticks,
                           trials=len(table), kept=sum(s["kept"] for s in summaries), source=source, one_y=y(1.0),
                           zero_y=ry(0.0), W=W, H=H, RH=RH, PAD=PAD, peers=peers, interval=_interval,
                           left_out=left_out or [], unsealed=sum(t["row"].get("sealed", "yes") != "yes" for t in table))


def _interval(row: dict, key: str) -> str:
    """``1.234 [1.200, 1.270]`` from a row's figure and its bounds, or the figure alone."""
    lo, hi = row.get(f"{key}_lo", MISSING), row.get(f"{key}_hi", MISSING)
    return row[key] if MISSING in (lo, hi) or row[key] == MISSING else f"{row[key]} [{lo}, {hi}]"


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
        runs, left_out = read_verified_runs(files, args.runs)
    except (ResultsFileError, UnicodeDecodeError) as e:
        print(f"pqkern-report: {e}", file=sys.stderr)
        return 1
    if not runs:
        print(f"pqkern-report: no trials in {', '.join(map(str, files + args.runs))}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    peers = json.loads(Path(args.peers).read_text()) if Path(args.peers).is_file() else None
    for note in left_out:
        print(f"pqkern-report: {note}", file=sys.stderr)
    out.write_text(render(runs, ", ".join(map(str, files + args.runs)), peers, left_out), encoding="utf-8")
    print(f"report: {out.resolve()} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
