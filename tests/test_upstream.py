"""pqkern-upstream on a scratch clone: real paired runs, real Lance and FAISS on one IVF layout, the page and its Markdown."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import DEMO, SHARED_SIFTSMALL, SIFTSMALL_FILES, commit_all, scratch_repo, small_fixture_env

pytestmark = pytest.mark.slow


def test_upstream_page_for_a_kept_win(tmp_path, data_dir):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env)
    shutil.copyfile(DEMO / "relayout.py", repo / "pqkern" / "kernels.py")
    sha = commit_all(repo, env, "row-major re-layout")
    have_siftsmall = all((SHARED_SIFTSMALL / f).is_file() for f in SIFTSMALL_FILES)
    if have_siftsmall:
        (data_dir / "siftsmall").mkdir(exist_ok=True)
        for f in SIFTSMALL_FILES:
            if not (data_dir / "siftsmall" / f).exists():
                shutil.copyfile(SHARED_SIFTSMALL / f, data_dir / "siftsmall" / f)
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.upstream", "HEAD", "--rounds", "12", "--queries", "40"], cwd=repo,
                       env=env, capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stdout + p.stderr
    page = (repo / "trials" / f"upstream-{sha[:10]}.html").read_text()
    md = (repo / "trials" / f"upstream-{sha[:10]}.md").read_text()
    sources = ["synthetic"] + (["siftsmall"] if have_siftsmall else [])
    for source in sources:
        for workload in ("flat", "ivf"):
            for k in (10, 100):
                assert f"| {source} | {workload} | {k} | " in md, md
        assert f"| {source} | ivf | lance IVF_PQ |" in md and f"| {source} | ivf | faiss IndexIVFPQ |" in md
        assert f"| {source} | ivf | this kernel |" in md and f"| {source} | ivf | the seed |" in md
    assert page.count("<tr class=") == 4 * len(sources)
    assert "sift1m: its files are not installed" in page and "sift1m: its files are not installed" in md
    assert "+    return np.ascontiguousarray(codes.T), codebook" in md
    assert "-    return codes, codebook" in md
    assert "```diff" in md and 'id="diff"' in page


def test_upstream_says_what_is_wrong(tmp_path, data_dir):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env)
    p = subprocess.run([sys.executable, "-m", "pqkern.tools.upstream", "no-such-commit"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 1 and "'no-such-commit' is not a commit" in p.stderr
