"""pqkern-report on results files of both versions and on gathered per-run files; its CSS-only filter in Chromium."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dump_dom

from pqkern.tools.results_tsv import V1, V2, V3


def v1_row(commit: str, status: str, geomean: str, t: int) -> list[str]:
    return [commit, "0.95", geomean, "-", "-", "-", "40.0", status, f"{status} {commit}", f"2025-11-27T10:{t:02d}:00Z"]


def v2_row(commit: str, status: str, seed: str, t: int, branch: str, machine: str) -> list[str]:
    lo, hi = (f"{float(seed) * 0.97:.3f}", f"{float(seed) * 1.03:.3f}") if seed != "-" else ("-", "-")
    extra = ["-", "-", "0.95", "900000", seed, lo, hi, "-", "30", branch, machine]
    return v1_row(commit, status, "500000", t) + extra


def v3_row(commit: str, status: str, seed: str, t: int, stop: str = "-", speedup: str = "-", delta: str = "+0.0000") -> list[str]:
    """A version 3 row: ``seed`` measured directly (keeps and baselines), ``speedup`` over the incumbent."""
    lo, hi = (f"{float(seed) * 0.96:.3f}", f"{float(seed) * 1.04:.3f}") if seed != "-" else ("-", "-")
    v2 = v2_row(commit, status, seed, t, "autoresearch/dec01", "box-2")
    v2[3] = speedup
    v2[14:17], v2[17] = [seed, lo, hi], stop
    extra = ["-"] * (len(V3) - len(V2))
    extra[V3.index("recall_delta") - len(V2)] = delta
    extra[V3.index("prepare_seconds") - len(V2)] = "0.012"
    return v2 + extra


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pqkern.tools.report", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A version 1 results.tsv, and a runs folder with two version 2 runs on two machines."""
    tmp = tmp_path_factory.mktemp("report")
    v1 = write_tsv(tmp / "old" / "results.tsv", V1, [v1_row("a1", "baseline", "1000", 0), v1_row("a2", "keep", "500", 1),
                                                     v1_row("a3", "crash", "-", 2), v1_row("a4", "discard", "800", 3)])
    runs = tmp / "runs"
    write_tsv(runs / "box-1" / "autoresearch__nov27.tsv", V2, [
        v2_row("b1", "baseline", "1.0", 0, "autoresearch/nov27", "box-1"),
        v2_row("b2", "keep", "1.5", 1, "autoresearch/nov27", "box-1"),
        v2_row("b3", "discard", "1.2", 2, "autoresearch/nov27", "box-1"),
        v2_row("b4", "timeout", "-", 3, "autoresearch/nov27", "box-1"),
        v2_row("b5", "keep", "2.5", 4, "autoresearch/nov27", "box-1")])
    write_tsv(runs / "box-2" / "autoresearch__dec01.tsv", V3, [
        v3_row("c1", "baseline", "1.0", 5, "measured"), v3_row("c2", "keep", "1.25", 6, "faster", "1.250"),
        v3_row("c3", "discard", "-", 7, "within", "0.990", "-0.0100"), v3_row("c4", "keep", "1.24", 8, "simpler", "0.995"),
        v3_row("c4", "revoked", "-", 9, "contract", "-", "-")])
    return {"tmp": tmp, "v1": v1, "runs": runs}


@pytest.fixture(scope="module")
def page(files) -> str:
    out = files["tmp"] / "report.html"
    again = files["runs"] / "box-1" / "autoresearch__nov27.tsv"  # the same rows twice count once
    p = report(str(files["v1"]), str(again), "--runs", str(files["runs"]), "-o", str(out), "--peers", "none")
    assert p.returncode == 0, p.stderr
    assert "(3 runs)" in p.stdout
    return out.read_text()


def _runs_table(page: str) -> list[list[str]]:
    table = page.split('id="runs"')[1].split("</table>")[0]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in table.split("<tr>")[2:]]


def test_one_line_per_run_with_its_best_measured_keep(page):
    rows = {r[1]: r for r in _runs_table(page)}
    assert set(rows) == {"results.tsv", "autoresearch/nov27", "autoresearch/dec01"}
    nov, dec, old = rows["autoresearch/nov27"], rows["autoresearch/dec01"], rows["results.tsv"]
    assert dec[2:6] == ["box-2", "5", "2", "1.250x"] and dec[6] == "[1.200, 1.300]" and dec[7] == "c2" and dec[8] == ""
    # versions 1 and 2 chained their keeps: only the baseline is a measurement; the keeps are estimates beside it
    assert nov[2:6] == ["box-1", "5", "2", "1.000x"] and nov[7] == "b1" and nov[8] == "~2.500x"
    assert old[2:6] == ["-", "4", "1", "1.000x"] and old[8] == "~2.000x"  # version 1: baseline geomean / geomean


def test_chart_draws_measured_figures_as_progress_and_nothing_else(page):
    assert page.count('<tr class="') == 4 + 5 + 5
    assert page.count('<g class="series run-') == 2 * 3  # the progress and the recall charts
    chart = page.split('id="progress"')[1].split("</svg>")[0]
    assert chart.count("<circle") == 1 + 1 + 3  # the three baselines and the two measured keeps
    assert chart.count('class="point estimate"') == 2 + 3  # v1: a keep, a discard; v2: two keeps, a discard
    assert chart.count('class="point discarded"') == 1 and chart.count('class="point failed"') == 3
    assert chart.count('class="whisker"') == 1 + 3  # v2's baseline and v3's measured figures have intervals
    assert "0.990x over its incumbent" in chart  # a discard says its speed-up over its incumbent, nowhere on the axis


def test_recall_chart_and_table_lead_with_the_change(page):
    chart = page.split('id="recall"')[1].split("</svg>")[0]
    assert chart.count('class="recall flat"') == 4 and "flat -0.0100" in chart  # the v3 rows that have a delta
    header = re.findall(r"<th>(.*?)</th>", page.split('id="trials"')[1].split("</tr>")[0])
    assert header.index("recall_delta") < header.index("recall_at_10") and "prepare_seconds" in header
    assert "1.25 [1.200, 1.300]" in page


def test_page_is_self_contained(page):
    assert "<script" not in page.lower() and "http" not in page.lower() and "<link" not in page.lower()


def test_bad_or_missing_files_are_refused_clearly(tmp_path):
    bad = tmp_path / "results.tsv"
    bad.write_text("commit\tspeed\nabc\t1\n")
    p = report(str(bad), "-o", str(tmp_path / "r.html"))
    assert p.returncode == 1 and "not a results.tsv" in p.stderr and not (tmp_path / "r.html").exists()
    p = report("--runs", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r.html"))
    assert p.returncode == 1 and "not found" in p.stderr


HARNESS = """<!doctype html><html><body><script>
const f = document.createElement('iframe');
f.src = 'report.html';
f.onload = () => {
  const d = f.contentDocument, w = f.contentWindow;
  const shown = () => [...d.querySelectorAll('#trials tr.trial')].filter(r => w.getComputedStyle(r).display !== 'none')
    .map(r => r.classList[2]);
  const out = {all: shown()};
  d.querySelector('label[for="show-run-1"]').click();
  out.one = shown();
  out.opacity = [...d.querySelectorAll('#progress g.series')].map(g => w.getComputedStyle(g).opacity);
  d.querySelector('label[for="show-all"]').click();
  out.back = shown();
  const pre = document.createElement('pre');
  pre.id = 'out';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
};
document.body.appendChild(f);
</script></body></html>"""


def test_css_filter_shows_one_run_in_chromium(page, tmp_path):
    (tmp_path / "report.html").write_text(page)
    (tmp_path / "harness.html").write_text(HARNESS)  # the test's script drives the page; the page itself has none
    dom = dump_dom(tmp_path, "harness.html", tmp_path / "profile")
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    out = json.loads(html.unescape(found.group(1)))
    assert len(out["all"]) == 14 and out["back"] == out["all"]
    assert out["one"] == ["run-1"] * len(out["one"]) and len(out["one"]) in (4, 5)
    assert out["opacity"] == ["1" if i == 1 else "0.08" for i in range(3)]
