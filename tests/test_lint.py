"""ruff check is part of the test suite, run from the project's own environment (never a ruff found on PATH)."""

import subprocess
import sys

from conftest import REPO


def test_ruff_check_is_clean():
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert "No module named ruff" not in p.stderr, "ruff is not installed in this environment: pip install -e '.[dev]'"
    assert p.returncode == 0, p.stdout + p.stderr
