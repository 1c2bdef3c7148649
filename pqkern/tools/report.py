"""The trial report: results.tsv rendered (jinja2) into one self-contained HTML page.

A progress chart in the style of autoresearch's: every trial a point, kept ones
highlighted, the running best as a step line, speed-up over the branch's baseline on
the y axis; failed trials (crash, timeout, refused) sit on the x axis as crosses.
Then the table of trials. No scripts, no network: it opens from disk.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import jinja2

from pqkern.bench.trial import TrialError, read_rows

W, H, PAD = 900, 360, 50
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True)
TEMPLATE = _ENV.get_template("report.html.j2")


def _float(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def render(rows: list[dict], source: str = "results.tsv", peers: dict | None = None) -> str:
    """The report page for ``rows`` (as read from results.tsv), with the peers table when given."""
    speedups: list[float | None] = []
    base = None
    for r in rows:
        g = _float(r.get("geomean_ns_per_query"))
        if r["status"] == "baseline" and g:
            base = g
        speedups.append(base / g if base and g and r["status"] not in ("crash", "timeout", "refused") else None)
    top = max([s for s in speedups if s] + [1.0]) * 1.1
    n = max(len(rows), 2)

    def x(i: int) -> float:
        return PAD + (W - PAD - 20) * i / (n - 1)

    def y(s: float) -> float:
        return H - PAD - (H - PAD - 10) * s / top

    points, line, best = [], [], None
    for i, (r, s) in enumerate(zip(rows, speedups, strict=True)):
        title = f"#{i} {r['status']} {r['commit']}: {r['description']}" + (f" ({s:.3f}x)" if s else "")
        points.append({"x": x(i), "y": y(s) if s else 0, "status": r["status"], "failed": s is None, "title": title})
        if r["status"] == "baseline" and s:
            best = s
        elif r["status"] == "keep" and s:
            best = max(best or s, s)
        if best:
            line.append(f"{x(i):.1f},{y(best):.1f}")
            line.append(f"{x(i + 1) if i + 1 < len(rows) else x(i):.1f},{y(best):.1f}")
    step = next(s for s in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50, 100, 1e9) if s >= top / 6)
    yticks = [{"y": y(v * step), "label": f"{v * step:.2g}x"} for v in range(int(top / step) + 1)]
    kept = sum(r["status"] == "keep" for r in rows)
    return TEMPLATE.render(rows=rows, header=list(rows[0]) if rows else [], points=points, best_line=" ".join(line),
                           yticks=yticks, kept=kept, best=best or 1.0, source=html.escape(source), W=W, H=H, PAD=PAD,
                           peers=peers)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-report", description="Render results.tsv into an HTML trial report.")
    p.add_argument("results", nargs="?", default="results.tsv", help="results file (default: ./results.tsv)")
    p.add_argument("-o", "--output", default="trials/report.html", help="output page (default: trials/report.html)")
    p.add_argument("--peers", default="trials/peers.json", help="pqkern-peers table to include, if present")
    args = p.parse_args(argv)
    path = Path(args.results)
    if not path.is_file():
        print(f"pqkern-report: {path} not found: run pqkern-trial first", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        rows = read_rows(path)
    except TrialError as e:
        print(f"pqkern-report: {e}", file=sys.stderr)
        return 1
    peers = json.loads(Path(args.peers).read_text()) if Path(args.peers).is_file() else None
    out.write_text(render(rows, str(path), peers), encoding="utf-8")
    print(f"report: {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
