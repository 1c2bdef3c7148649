"""ruff check is part of the test suite."""

import shutil
import subprocess

from conftest import REPO


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[dev]'"
    p = subprocess.run([ruff, "check", "."], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
