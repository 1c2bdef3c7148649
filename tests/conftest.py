"""Shared test helpers: one data directory per session, and a real runner in a subprocess."""

from __future__ import annotations

import atexit
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KERNELS = Path(__file__).resolve().parent / "kernels"
DEMO = REPO / "pqkern" / "tools" / "demo_kernels"
SHARED_SIFTSMALL = REPO.parent / "shared" / "data" / "siftsmall"
SIFTSMALL_FILES = ("siftsmall_base.fvecs", "siftsmall_query.fvecs", "siftsmall_groundtruth.ivecs")
# A session's trials reserve CPUs among themselves (pqkern/bench/cpus.py), neither waiting for the machine's other
# trials nor making them wait.
if "PQKERN_CPU_LOCKS" not in os.environ:
    os.environ["PQKERN_CPU_LOCKS"] = tempfile.mkdtemp(prefix="pqkern-test-cpus-")
    atexit.register(shutil.rmtree, os.environ["PQKERN_CPU_LOCKS"], True)


@dataclass
class RunResult:
    code: int
    stdout: str
    stderr: str

    @property
    def block(self) -> dict[str, str]:
        lines = self.stdout.split("---\n", 1)[1].splitlines()
        return dict(line.split(": ", 1) for line in lines if ": " in line)


def _import_opencv_once() -> None:
    """Importing OpenCV (cv2) prepends its library folder to LD_LIBRARY_PATH in os.environ, for its own child processes,
    once per process. The trials the tests start would inherit it, and a trial refuses that variable (integrity.py): so
    import it now, before any test, and put the variable back as it was."""
    before = os.environ.get("LD_LIBRARY_PATH")
    try:
        import cv2  # noqa: F401
    except ImportError:
        return
    if before is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = before


_import_opencv_once()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A session-wide PQKERN_DATA, so the smoke fixture is built once."""
    path = tmp_path_factory.mktemp("pqkern-data")
    os.environ["PQKERN_DATA"] = str(path)
    return path


@pytest.fixture(scope="session")
def siftsmall_dir(data_dir) -> Path:
    """The real siftsmall files linked into the test data directory, or skip."""
    if not all((SHARED_SIFTSMALL / f).is_file() for f in SIFTSMALL_FILES):
        pytest.skip(f"real siftsmall files not found in {SHARED_SIFTSMALL} (see docs/fixtures.md)")
    target = data_dir / "siftsmall"
    target.mkdir(exist_ok=True)
    for f in SIFTSMALL_FILES:
        if not (target / f).exists():
            shutil.copyfile(SHARED_SIFTSMALL / f, target / f)
    return target


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


SMALL_FIXTURE = {"PQKERN_SOURCE": "synthetic", "PQKERN_NUM_BASE": "20000", "PQKERN_NUM_QUERIES": "1000",
                 "PQKERN_NUM_LEARN": "0", "PQKERN_REAL_ROWS": "20000"}  # the trial's real workload: imagesift's first 20k


REPEAT_SEARCH = '''

def search(index, query, k):
    codes, codebook = index
    for _ in range(REPS - 1):
        _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
    return _top_k(_accumulate(codes, _distance_table(query, codebook)), k)
'''


def repeated_seed(reps: int, extra: str = "") -> str:
    """The seed with its whole search repeated ``reps`` times per call (work exactly proportional), ``extra`` source
    added before ``search``."""
    seed = (REPO / "pqkern" / "bench" / "seed_kernel.py").read_text()
    return seed[: seed.index("\ndef search(")] + extra + REPEAT_SEARCH.replace("REPS", str(reps))


def small_fixture_env(data_dir: Path, **extra: str) -> dict:
    """Environment for subprocesses: the session's data dir, a 20k synthetic default fixture (and the first 20k rows of
    the real descriptors beside it), a git identity."""
    return dict(os.environ, PQKERN_DATA=str(data_dir), **SMALL_FIXTURE, **GIT_ENV, **extra)


def copy_working_tree(dst: Path) -> None:
    """This working tree's tracked and unignored files, as they are now, copied into ``dst``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)


def scratch_repo(repo: Path, env: dict, without_peers: bool = False) -> str:
    """Copy this working tree (tracked and unignored files) into ``repo``, ``git init -b main``, commit; return the sha.

    ``without_peers`` drops faiss and pylance from the asv matrix, so asv builds its environment faster.
    """
    copy_working_tree(repo)
    if without_peers:
        conf = json.loads((repo / "asv.conf.json").read_text())
        for name in ("faiss-cpu", "pylance"):
            conf["matrix"]["req"].pop(name)
        (repo / "asv.conf.json").write_text(json.dumps(conf, indent=4) + "\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    return commit_all(repo, env, "baseline")


def commit_all(repo: Path, env: dict, message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def run_runner(data_dir: Path, *args: str, kernel: str | None = None, timeout: float = 300) -> RunResult:
    """Run ``python -m pqkern.bench.runner`` for real; ``kernel`` names a file in tests/kernels."""
    cmd = [sys.executable, "-m", "pqkern.bench.runner", *args]
    if kernel:
        cmd += ["--kernel", str(KERNELS / kernel)]
    env = dict(os.environ, PQKERN_DATA=str(data_dir))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    return RunResult(p.returncode, p.stdout, p.stderr)


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--virtual-time-budget=15000", "--dump-dom"]


def dump_dom(directory: Path, page: str, profile: Path) -> str:
    """The DOM of ``page`` served from ``directory`` on 127.0.0.1, after headless Chromium ran it; skips without Chromium."""
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{page}"
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url], capture_output=True, text=True,
                              timeout=120).stdout
    finally:
        server.shutdown()
