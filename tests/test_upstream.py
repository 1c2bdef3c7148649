"""pqkern-upstream on a scratch clone: real paired runs, real Lance and FAISS on one IVF layout, the size curve, the kept
steps, the page (in Chromium) and its Markdown."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from conftest import DEMO, SHARED_SIFTSMALL, SIFTSMALL_FILES, commit_all, dump_dom, scratch_repo, small_fixture_env

pytestmark = pytest.mark.slow


def _trial(repo, env, description):
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", description, "--no-asv"], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_upstream_page_for_a_kept_win(tmp_path, data_dir):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env)
    _trial(repo, env, "baseline")
    shutil.copyfile(DEMO / "unrolled.py", repo / "pqkern" / "kernels.py")
    sha = commit_all(repo, env, "unrolled row-major scan")
    _trial(repo, env, "unrolled row-major scan")
    have_siftsmall = all((SHARED_SIFTSMALL / f).is_file() for f in SIFTSMALL_FILES)
    if have_siftsmall:
        (data_dir / "siftsmall").mkdir(exist_ok=True)
        for f in SIFTSMALL_FILES:
            if not (data_dir / "siftsmall" / f).exists():
                shutil.copyfile(SHARED_SIFTSMALL / f, data_dir / "siftsmall" / f)
    sources = ["synthetic"] + (["siftsmall"] if have_siftsmall else [])
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.upstream", "HEAD", "--rounds", "12", "--queries", "40",
                        *[a for s in (*sources, "sift1m") for a in ("--source", s)]], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=1500)
    assert p.returncode == 0, p.stdout + p.stderr
    page = (repo / "trials" / f"upstream-{sha[:10]}.html").read_text()
    md = (repo / "trials" / f"upstream-{sha[:10]}.md").read_text()
    for source in sources:
        for workload in ("flat", "ivf"):
            for k in (10, 100):
                assert f"| {source} | {workload} | {k} | " in md, md
        assert f"| {source} | ivf | lance IVF_PQ |" in md and f"| {source} | ivf | faiss IndexIVFPQ |" in md
        assert f"| {source} | ivf | this kernel |" in md and f"| {source} | ivf | the seed |" in md
    assert page.split('id="speedup"')[1].split("</table>")[0].count("<tr class=") == 4 * len(sources)
    # the size curve: the synthetic fixture's first 1k, 4k, 16k rows and all 20k, and siftsmall beside its first 8k (its
    # last 2,000 rows held out as its fresh queries: the shared copy has no learn set)
    for rows in ("1,000", "4,000", "16,000", "20,000"):
        assert f"| synthetic | {rows} | " in md, md
    if have_siftsmall:
        assert "| synthetic | 8,000 | " in md and "| siftsmall | 8,000 | " in md
    # the kept steps, from this clone's results.tsv
    assert re.search(r"\| [0-9a-f]{10} \| baseline \(measured\) \|", md) and "| unrolled row-major scan (" in md
    assert "sift1m: its files are not installed" in page and "sift1m: its files are not installed" in md
    assert "+    return np.ascontiguousarray(codes.T), codebook" in md
    assert "-    return codes, codebook" in md
    assert "```diff" in md and 'id="diff"' in page
    dom = dump_dom(repo / "trials", f"upstream-{sha[:10]}.html", tmp_path / "profile")
    chart = dom.split('id="size-curve"')[1].split("</svg>")[0]
    assert chart.count('class="size-point"') == (5 + 3 if have_siftsmall else 4)  # siftsmall: its first 1k, 4k and 8k
    assert 'class="curve synthetic"' in chart and ('class="curve siftsmall"' in chart) == have_siftsmall
    assert dom.count("<tr") > 10 and "Where the win holds" in dom


def test_upstream_says_what_is_wrong(tmp_path, data_dir):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env)
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.upstream", "no-such-commit"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 1 and "'no-such-commit' is not a commit" in p.stderr
