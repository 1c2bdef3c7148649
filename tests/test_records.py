"""The judge's seals, results.tsv's chain, git read without trusting the repository, and vouching's parts: quick tests on
real files and real git (the trials that use them are in test_shell_attacks.py)."""

from __future__ import annotations

import importlib.util
import marshal
import os
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import GIT_ENV

from pqkern.bench import gitsafe, integrity, measured, results, seal

HEADER_V3 = "\t".join(results.HEADER_V3)


def _row(commit: str, status: str = "discard", **extra: str) -> dict:
    return {**dict.fromkeys(results.HEADER, "-"), "commit": commit, "status": status, "description": f"row {commit}",
            **extra}


def test_the_key_is_private_and_seals_verify():
    key = seal.home() / "judge.key"
    seal.key()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert seal.verify(b"abc", seal.sign(b"abc")) and not seal.verify(b"abd", seal.sign(b"abc"))
    record = seal.seal_record({"b": [1.5, "x"], "a": 1})
    assert seal.verify_record(record) == "" and seal.verify_record(dict(record, a=2)) == "its seal does not verify"
    assert seal.verify_record({"a": 1}) == "it has no seal"


@pytest.fixture()
def sealed(tmp_path) -> Path:
    path = tmp_path / "results.tsv"
    for c in ("aaa", "bbb", "ccc"):
        results.append_row(path, _row(c))
    assert results.verify(path) is None
    return path


@pytest.mark.parametrize("attack, line, why", [
    ("edit", 3, "its seal does not verify"), ("insert", 3, "its seal does not verify"),
    ("delete", 3, "a row before it was deleted"), ("truncate", 3, "deleted from the file's end"),
    ("columns", 2, "columns, not")])
def test_every_change_to_a_sealed_file_is_named_by_line_and_commit(sealed, attack, line, why):
    lines = sealed.read_text().splitlines(keepends=True)
    if attack == "edit":
        lines[2] = lines[2].replace("discard", "keep")
    elif attack == "insert":
        lines.insert(2, lines[1].replace("aaa", "zzz"))
    elif attack == "delete":
        del lines[2]
    elif attack == "truncate":
        del lines[3]
    else:
        lines[1] = lines[1].replace("\t", " ", 1)
    sealed.write_text("".join(lines))
    broken = results.verify(sealed)
    assert broken and broken.line == line and why in broken.why, broken
    with pytest.raises(results.Tampered, match=f"line {line}"):
        results.append_row(sealed, _row("ddd"))


def test_older_files_are_read_but_cannot_be_verified_or_appended_to(tmp_path):
    old = tmp_path / "results.tsv"
    cells = dict.fromkeys(results.HEADER_V3, "-") | {"commit": "abc", "status": "keep", "workloads": "flat,real-ivf@20000",
                                                    "real_speedup": "1.100", "real_recall_delta": "+0.0010"}
    old.write_text(HEADER_V3 + "\n" + "\t".join(cells[h] for h in results.HEADER_V3) + "\n")
    row = results.read_rows(old)[0]
    assert row["version"] == "3" and row["real_ivf_speedup"] == "1.100" and row["real_speedup"] == "-"
    assert row["real_ivf_recall_delta"] == "+0.0010"
    with pytest.raises(results.ResultsError, match="no trial can verify"):
        results.verify(old)
    with pytest.raises(results.ResultsError, match="older pqkern-trial"):
        results.append_row(old, _row("def"))


def test_a_measurement_is_taken_only_as_the_trial_sealed_it(tmp_path):
    kernel = tmp_path / "kernels.py"
    kernel.write_text("x = 1\n")
    path = tmp_path / measured.FILE
    measured.write(path, {"decision": "measured", "intervals": {}}, kernel.read_text(), "fx", "flat")
    assert measured.reusable(path, kernel, "fx", ["flat"])[0] is not None
    path.write_text(path.read_text().replace('"decision": "measured"', '"decision": "measured", "x": 1'))
    record, why = measured.reusable(path, kernel, "fx", ["flat"])
    assert record is None and "not written by a trial on this machine" in why


# ---------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=dict(os.environ, **GIT_ENV)).stdout.strip()


@pytest.fixture()
def repo(tmp_path) -> tuple[Path, list[str]]:
    """A repository with three commits of pqkern/kernels.py (and a README in the first)."""
    root = tmp_path / "repo"
    (root / "pqkern").mkdir(parents=True)
    _git(root.parent, "init", "-q", "-b", "main", str(root))
    (root / "README").write_text("r\n")
    commits = []
    for i in range(3):
        (root / "pqkern" / "kernels.py").write_text(f"V = {i}\n")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"v{i}")
        commits.append(_git(root, "rev-parse", "HEAD"))
    return root, commits


def test_head_refs_history_and_changes_are_read_from_verified_objects(repo, tmp_path):
    root, (a, b, c) = repo
    r = gitsafe.Repo(root)
    assert r.head() == ("main", c) and r.kernel(a) == "V = 0\n" and r.changed_paths(a, c) == ["pqkern/kernels.py"]
    assert r.is_ancestor(a[:12], c) and not r.is_ancestor(c[:12], a) and r.tracked_dirty(c) == []
    _git(root, "pack-refs", "--all")
    assert gitsafe.Repo(root).head() == ("main", c)
    other = tmp_path / "other"
    _git(root, "worktree", "add", "-q", "-b", "side", str(other), b)
    assert gitsafe.Repo(gitsafe.find_root(other / "pqkern")).head() == ("side", b)
    _git(root, "replace", a, b)  # git itself now reads b's kernel for a; the judge never does
    assert _git(root, "show", f"{a}:pqkern/kernels.py") == "V = 1" and gitsafe.Repo(root).kernel(a) == "V = 0\n"


def test_the_working_tree_is_compared_byte_for_byte(repo, tmp_path):
    root, (_, _, c) = repo
    (root / "pqkern" / "kernels.py").write_text("V = 9\n")
    (root / "README").unlink()
    assert gitsafe.Repo(root).tracked_dirty(c) == ["README", "pqkern/kernels.py"]
    _git(root, "checkout", "--", ".")
    elsewhere = tmp_path / "elsewhere"
    (root / "pqkern").rename(elsewhere)
    (root / "pqkern").symlink_to(elsewhere)  # the same bytes, behind a symlinked folder
    assert gitsafe.Repo(root).tracked_dirty(c) == ["pqkern/kernels.py"]


def test_a_forged_loose_object_is_refused(repo):
    root, (a, _, _) = repo
    blob = _git(root, "rev-parse", f"{a}:pqkern/kernels.py")
    obj = root / ".git" / "objects" / blob[:2] / blob[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(zlib.compress(b"blob 7\0V = 42\n"))
    with pytest.raises(gitsafe.Forged, match=f"git object {blob} does not hash to its id"):
        gitsafe.Repo(root).kernel(a)


def test_the_revert_runs_no_hook_filter_or_fsmonitor_and_never_loses_work(repo, tmp_path):
    root, (_, b, c) = repo
    mark = tmp_path / "ran"
    trap = tmp_path / "trap.sh"
    trap.write_text(f"#!/bin/sh\necho \"$0 $* $(tr '\\0' ' ' < /proc/$PPID/cmdline)\" >> {mark}\ncat\n")
    trap.chmod(0o755)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("reference-transaction", "post-index-change", "post-checkout"):
        (hooks / hook).symlink_to(trap)
    for key, value in (("core.fsmonitor", str(trap)), ("core.hooksPath", str(hooks)), ("filter.t.smudge", str(trap)),
                       ("filter.t.clean", str(trap))):
        _git(root, "config", key, value)
    (root / ".git" / "info" / "attributes").write_text("* filter=t\n")
    r = gitsafe.Repo(root)
    (root / "pqkern" / "kernels.py").write_text("V = 9\n")  # the agent's work in progress
    assert r.reset_kernel("main", b, c).startswith("NOT reverted: pqkern/kernels.py changed")
    (root / "pqkern" / "kernels.py").write_text("V = 2\n")
    assert r.reset_kernel("main", b, c) == f"reverted to {b[:10]}"
    assert r.head() == ("main", b) and (root / "pqkern" / "kernels.py").read_text() == "V = 1\n"
    assert not mark.exists(), mark.read_text()
    assert r.reset_kernel("main", b, c).startswith("NOT reverted: HEAD moved")
    assert c in _git(root, "reflog", "--format=%H")  # the reverted commit is kept
    assert _git(root, "status", "--porcelain") == ""  # the index agrees with the tree and HEAD
    assert mark.exists()  # git itself runs them


# ---------------------------------------------------------------- vouching's parts


def test_variables_that_change_imports_are_named(monkeypatch, tmp_path):
    for name in ("PYTHONPATH", "NUMBA_DISABLE_JIT", "LD_PRELOAD", "PQKERN_MEASURED"):
        monkeypatch.setenv(name, "x")
    v = integrity.Vouch(tmp_path, None, "", integrity.Cache())
    v.environment()
    assert [p.split(" ")[0] for p in v.problems] == ["$LD_PRELOAD", "$NUMBA_DISABLE_JIT", "$PQKERN_MEASURED", "$PYTHONPATH"]


def test_byte_code_is_checked_against_its_source_only_when_python_would_load_it(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("X = 1\n")
    pyc = tmp_path / "__pycache__" / f"mod.{sys.implementation.cache_tag}.pyc"
    pyc.parent.mkdir()
    st = source.stat()
    header = importlib.util.MAGIC_NUMBER + bytes(4) + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") \
        + st.st_size.to_bytes(4, "little")
    pyc.write_bytes(header + marshal.dumps(compile(source.read_text(), str(source), "exec", dont_inherit=True)))
    assert integrity.pyc_problem(pyc, integrity.Cache()) == ""
    pyc.write_bytes(header + marshal.dumps(compile("X = 2\n", str(source), "exec", dont_inherit=True)))
    assert "byte code that is not its source's" in integrity.pyc_problem(pyc, integrity.Cache())
    pyc.write_bytes(header[:8] + bytes(8) + marshal.dumps(compile("X = 2\n", str(source), "exec", dont_inherit=True)))
    assert integrity.pyc_problem(pyc, integrity.Cache()) == ""  # stale: Python compiles the source again


def test_a_launcher_holds_nothing_but_its_entry_point(tmp_path):
    script = tmp_path / "pqkern-trial"
    good = ("#!/x/bin/python\nimport sys\nfrom pqkern.bench.trial import main\nif __name__ == '__main__':\n"
            "    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n    sys.exit(main())\n")
    v = integrity.Vouch(tmp_path, None, "", integrity.Cache())
    script.write_text(good)
    v.launcher(script)
    assert v.problems == []
    script.write_text(good.replace("import sys\n", "import sys\nimport evil\n"))
    v.launcher(script)
    assert "not a plain launcher" in v.problems[0] and "import evil" in v.problems[0]
