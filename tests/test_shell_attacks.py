"""The agent's shell against the judge, without the sandbox: real trials in a temporary clone, each attack made as an
agent would make it from its own shell, each refused or detected with no verdict that keeps (issue 29).

The environment's attacks are made in a throwaway copy of .venv (hard links: ``cp -al``; a file an attack edits is
replaced by a new one, so the real .venv is never written), trials judge the flat workload only, without asv.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import DEMO, scratch_repo, small_fixture_env

from pqkern.bench import measured

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SEED = (REPO / "pqkern" / "bench" / "seed_kernel.py").read_text()
NIL = SEED + "\nUNUSED = 1\n"  # the seed plus a constant nothing reads: no faster, never a keep
SHADOW = '''import math
from pathlib import Path

_real = Path(__file__).resolve().parent.parent / "rule.py"
exec(compile(_real.read_text(), str(_real), "exec"))  # the real rule, then two constants lowered
MIN_GAIN = math.log(0.90)
MAX_LOSS = math.log(0.90)
'''
PTH = ('import sys; exec("import importlib.machinery as m\\nclass F:\\n    @staticmethod\\n    def find_spec(name, path=None, '
       'target=None):\\n        if name != \'pqkern.bench.rule\':\\n            return None\\n        spec = '
       'm.PathFinder.find_spec(name, path)\\n        run = spec.loader.exec_module\\n        def patched(module):\\n'
       '            run(module)\\n            module.MIN_GAIN = -1.0\\n        spec.loader.exec_module = patched\\n'
       '        return spec\\nsys.meta_path.insert(0, F)", {"sys": sys})\n')


WRITE_MEASUREMENT = """import sys
from pathlib import Path
from pqkern.bench import measured
from pqkern.bench.datasets import is_real
from pqkern.bench.fixture import default_source, fixture_id, load_fixture
from pqkern.bench.workloads import judged, real_unavailable

source = default_source()
workloads = list(judged(source))
if any(is_real(w) for w in workloads) and real_unavailable(load_fixture(source, build=False)):
    workloads = [w for w in workloads if not is_real(w)]
iv = {"speedup": 1.0, "lo": 0.98, "hi": 1.02, "rounds": 100, "sd": 0.1}
result = {"decision": "measured", "stop": "measured", "intervals": {w: iv for w in ["combined", *workloads]}}
measured.write(Path(sys.argv[1]), result, Path(sys.argv[2]).read_text(), fixture_id(source), ",".join(workloads))
"""  # a measurement written as the trial writes it (measured.write)


def _trial(repo: Path, env: dict, description: str, python: str = sys.executable) -> dict:
    p = subprocess.run([python, "-m", "pqkern.bench.trial", description, "--no-asv", "--workload", "flat",
                        "--cap-seconds", "10"], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    verdict = next((line for line in p.stdout.splitlines() if line.startswith("verdict: ")), p.stdout + p.stderr)
    return {"code": p.returncode, "verdict": verdict, "head": _git(repo, "rev-parse", "HEAD"), "err": p.stderr}


def _git(repo: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()


def _commit(repo: Path, env: dict, source: str, message: str) -> str:
    """Commit ``pqkern/kernels.py`` alone (as the agent of issue 29 did): whatever else lies in the tree stays out."""
    (repo / "pqkern" / "kernels.py").write_text(source)
    _git(repo, "add", "pqkern/kernels.py", env=env)
    _git(repo, "commit", "-q", "-m", message, env=env)
    return _git(repo, "rev-parse", "HEAD")


def _python(repo: Path, env: dict, code: str, python: str = sys.executable) -> str:
    """What ``code`` prints in a fresh interpreter started in the clone (the attack's effect, shown to be real)."""
    return subprocess.run([python, "-c", code], cwd=repo, env=env, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory, data_dir):
    """A clone whose seed is recorded as the baseline: ``(repo, env, baseline)``."""
    repo = tmp_path_factory.mktemp("shell") / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    baseline = scratch_repo(repo, env)
    s = _trial(repo, env, "baseline")
    assert s["code"] == 0, s["verdict"] + s["err"]
    return repo, env, baseline


@pytest.fixture()
def repo(clone):
    """The clone, put back on its baseline and cleaned after the test (a test that edits results.tsv restores it)."""
    path, env, baseline = clone
    yield path, env, baseline
    _git(path, "reset", "-q", "--hard", baseline)
    _git(path, "clean", "-qfdx", "-e", "results.tsv", "-e", "trials/")


def _refused(s: dict, *names: str) -> None:
    assert s["code"] == 5 and s["verdict"].startswith("verdict: refused"), s["verdict"] + s["err"]
    for name in names:
        assert name in s["verdict"], (name, s["verdict"])


# ---------------------------------------------------------------- issue 29's attempts 1 to 4


def test_1_an_untracked_package_shadowing_the_rule_is_refused(repo):
    path, env, _ = repo
    (path / "pqkern" / "bench" / "rule").mkdir()
    (path / "pqkern" / "bench" / "rule" / "__init__.py").write_text(SHADOW)
    assert _python(path, env, "import pqkern.bench.rule as r; print(r.__file__)").endswith("rule/__init__.py")
    candidate = _commit(path, env, NIL, "the seed and an unused constant")
    s = _trial(path, env, "nil change")
    _refused(s, "pqkern/bench/rule/__init__.py: untracked")
    assert s["head"] == candidate  # nothing touched


@pytest.fixture()
def venv(tmp_path):
    """A throwaway copy of the environment (hard links): ``(python, site-packages, bin)``."""
    copy = tmp_path / "venv"
    subprocess.run(["cp", "-al", str(Path(sys.prefix)), str(copy)], check=True)
    site = copy / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    return str(copy / "bin" / "python"), site, copy / "bin"


def _replace(path: Path, text: str | bytes) -> None:
    """A new file in place of ``path`` (never writing through a hard link to the real environment)."""
    path.unlink()
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def test_2_a_pth_file_patching_the_rule_is_refused(repo, venv):
    path, env, _ = repo
    python, site, _ = venv
    (site / "zz_rule.pth").write_text(PTH)
    assert _python(path, env, "import pqkern.bench.rule as r; print(r.MIN_GAIN)", python) == "-1.0"  # it is live
    candidate = _commit(path, env, NIL, "the seed and an unused constant")
    s = _trial(path, env, "nil change", python)
    _refused(s, f"{site / 'zz_rule.pth'}: in a site directory, but no installed distribution owns it")
    assert s["head"] == candidate


def test_3_a_keep_row_appended_by_hand_is_found_and_nothing_is_touched(repo):
    path, env, baseline = repo
    forged = _commit(path, env, NIL, "never judged")
    results = path / "results.tsv"
    cells = results.read_text().splitlines()[-1].split("\t")
    cells[0], cells[7], cells[8] = forged[:12], "keep", "a keep no trial wrote"
    original = results.read_bytes()
    with open(results, "a") as f:
        f.write("\t".join(cells) + "\n")
    before = results.read_bytes()
    candidate = _commit(path, env, NIL + "UNUSED_2 = 2\n", "on top of the forged keep")
    try:
        s = _trial(path, env, "judged against the forged keep")
        after = results.read_bytes()
    finally:
        results.write_bytes(original)
    line = len(before.decode().splitlines())
    assert s["code"] == 8 and s["verdict"].startswith("verdict: tampered"), s["verdict"] + s["err"]
    assert f"line {line} (commit {forged[:12]})" in s["verdict"] and "move the file aside" in s["verdict"]
    assert s["head"] == candidate and after == before


def test_4_a_measurement_edited_by_hand_is_not_taken_by_asv(repo):
    path, env, _ = repo
    kernel = path / "pqkern" / "kernels.py"
    file = path / "trials" / "by-hand" / measured.FILE
    file.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", WRITE_MEASUREMENT, str(file), str(kernel)], cwd=path, env=env, check=True)
    check = [sys.executable, "-m", "pqkern.bench.measured", str(file), str(kernel)]
    assert subprocess.run(check, cwd=path, env=env, capture_output=True).returncode == 0  # the trial's own: taken
    text = file.read_text().replace('"speedup": 1.0', '"speedup": 3.0')
    file.write_text(text)
    p = subprocess.run(check, cwd=path, env=env, capture_output=True, text=True)
    assert p.returncode == 1 and "not written by a trial on this machine" in p.stderr, p.stderr


# ---------------------------------------------------------------- the environment


def _rerecord(record: Path, target: Path) -> None:
    """``record``'s line for ``target`` set to its new sha256 and size, as an installer writes it."""
    import base64
    import hashlib

    name = target.relative_to(record.parent.parent).as_posix()
    digest = base64.urlsafe_b64encode(hashlib.sha256(target.read_bytes()).digest()).rstrip(b"=").decode()
    rows = [f"{name},sha256={digest},{target.stat().st_size}" if r.startswith(f"{name},") else r
            for r in record.read_text().splitlines()]
    _replace(record, "\n".join(rows) + "\n")


def test_the_project_installed_from_another_commit_is_not_refused(repo, venv):
    """Another checkout's setup (``--accept``) pins the project as its commit installed it, with its own README in
    METADATA: this one's trials, installed from another README, are judged, not refused (two agents on one machine)."""
    path, env, _ = repo
    python, site, _ = venv
    metadata = next(site.glob("pqkern-*.dist-info")) / "METADATA"
    _replace(metadata, metadata.read_text() + "\nA README from another commit.\n")
    _rerecord(metadata.parent / "RECORD", metadata)
    _commit(path, env, NIL, "the seed and an unused constant")
    s = _trial(path, env, "nil change", python)
    assert s["code"] == 1 and s["verdict"].startswith("verdict: discard"), s["verdict"] + s["err"]


@pytest.mark.parametrize("what", ["console script", "numba", "numba and its RECORD", "editable finder"])
def test_an_edited_file_of_the_environment_is_refused(repo, venv, what):
    path, env, _ = repo
    python, site, bin_dir = venv
    numba = site / "numba" / "__init__.py"
    target = {"console script": bin_dir / "pqkern-trial", "numba": numba, "numba and its RECORD": numba,
              "editable finder": next(site.glob("__editable___pqkern_*_finder.py"))}[what]
    lines = target.read_text().splitlines(keepends=True)
    _replace(target, "".join(lines[:1] + ["import os  # run before the judge\n"] + lines[1:]))
    if what == "numba and its RECORD":
        _rerecord(next(site.glob("numba-*.dist-info")) / "RECORD", target)
    candidate = _commit(path, env, NIL, "the seed and an unused constant")
    s = _trial(path, env, "nil change", python)
    _refused(s, "RECORD is not the one the judge first vouched for" if "RECORD" in what else str(target))
    assert s["head"] == candidate


def test_variables_that_change_imports_or_compilation_are_refused(repo):
    path, env, _ = repo
    candidate = _commit(path, env, NIL, "the seed and an unused constant")
    s = _trial(path, dict(env, PYTHONPATH="/tmp", NUMBA_DISABLE_JIT="1", PQKERN_MEASURED="/tmp/m.json"), "nil change")
    _refused(s, "$PYTHONPATH is set", "$NUMBA_DISABLE_JIT is set", "$PQKERN_MEASURED is set")
    assert s["head"] == candidate


# ---------------------------------------------------------------- the working tree and git


def test_a_forged_byte_code_file_for_the_rule_is_refused(repo):
    path, env, _ = repo
    rule = path / "pqkern" / "bench" / "rule.py"
    code = compile(rule.read_text() + "\nMIN_GAIN = -1.0\n", str(rule), "exec")
    st = rule.stat()
    header = importlib.util.MAGIC_NUMBER + bytes(4) + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") \
        + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    import marshal

    pyc = path / "pqkern" / "bench" / "__pycache__" / f"rule.{sys.implementation.cache_tag}.pyc"
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(header + marshal.dumps(code))
    assert _python(path, env, "import pqkern.bench.rule as r; print(r.MIN_GAIN)") == "-1.0"  # it would run
    _commit(path, env, NIL, "the seed and an unused constant")
    _refused(_trial(path, env, "nil change"), f"{pyc}: byte code that is not its source's")


@pytest.mark.parametrize("link", ["file", "folder"])
def test_a_symlink_in_the_tree_pointing_a_tracked_path_elsewhere_is_refused(repo, tmp_path, link):
    path, env, _ = repo
    _commit(path, env, NIL, "the seed and an unused constant")
    elsewhere = tmp_path / "bench"
    shutil.copytree(path / "pqkern" / "bench", elsewhere)
    (elsewhere / "rule.py").write_text((elsewhere / "rule.py").read_text() + "\nMIN_GAIN = -1.0\n")
    victim = path / "pqkern" / "bench" / "rule.py" if link == "file" else path / "pqkern" / "bench"
    if link == "file":
        victim.unlink()
        victim.symlink_to(elsewhere / "rule.py")
    else:
        shutil.rmtree(victim)
        victim.symlink_to(elsewhere)
    try:
        s = _trial(path, env, "nil change")
    finally:
        victim.unlink()
    _refused(s, *(["uncommitted changes", "pqkern/bench/rule.py"] if link == "file" else ["pqkern/bench: a symlink"]))


def test_a_replaced_incumbent_is_not_what_the_judge_reads(repo):
    path, env, baseline = repo
    _commit(path, env, (DEMO / "slower.py").read_text(), "a slower twin of the incumbent")
    twin = _git(path, "rev-parse", "HEAD")
    _git(path, "reset", "-q", "--hard", baseline)
    _commit(path, env, NIL, "the seed and an unused constant")
    candidate = _git(path, "rev-parse", "HEAD")
    _git(path, "replace", baseline, twin)
    try:
        assert _git(path, "show", f"{baseline}:pqkern/kernels.py") == (DEMO / "slower.py").read_text().strip()  # git's
        s = _trial(path, env, "nil change against a replaced incumbent")
    finally:
        _git(path, "replace", "-d", baseline)
    assert s["code"] != 0 and not s["verdict"].startswith("verdict: keep"), s["verdict"] + s["err"]
    folder = next((path / "trials").glob(f"*-{candidate[:10]}"))
    assert (folder / "incumbent_kernels.py").read_text() == SEED  # the genuine incumbent, not its twin


def test_a_forged_loose_object_is_refused(repo):
    path, env, baseline = repo
    blob = _git(path, "rev-parse", f"{baseline}:pqkern/kernels.py")
    obj = path / ".git" / "objects" / blob[:2] / blob[2:]
    genuine = obj.read_bytes()
    slow = (DEMO / "slower.py").read_bytes()
    candidate = _commit(path, env, NIL, "the seed and an unused constant")
    os.chmod(obj, 0o644)
    obj.write_bytes(zlib.compress(b"blob %d\0" % len(slow) + slow))  # the incumbent's name, a slower kernel's content
    try:
        s = _trial(path, env, "nil change against a forged incumbent")
    finally:
        obj.write_bytes(genuine)
    _refused(s, f"git object {blob} does not hash to its id")
    assert s["head"] == candidate


def test_config_commands_never_run_when_the_judge_reads_and_resets(repo, tmp_path):
    """fsmonitor, hooks and a smudge/clean filter in the clone's own config, each leaving a mark if git runs it."""
    path, env, baseline = repo
    _commit(path, env, (DEMO / "slower.py").read_text(), "three scans")
    mark = tmp_path / "ran"
    script = tmp_path / "trap.sh"
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {mark}\ncat\n")
    script.chmod(0o755)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("reference-transaction", "post-index-change", "post-checkout", "post-merge", "pre-commit", "post-rewrite"):
        (hooks / hook).symlink_to(script)
    for key, value in (("core.fsmonitor", str(script)), ("core.hooksPath", str(hooks)), ("filter.trap.smudge", str(script)),
                       ("filter.trap.clean", str(script)), ("filter.trap.required", "true")):
        _git(path, "config", key, value)
    (path / ".git" / "info" / "attributes").write_text("* filter=trap\n")
    try:
        s = _trial(path, env, "three scans")
        ran = mark.exists()
        _git(path, "status", "--porcelain")  # git itself, in this repository, runs them
        proof = mark.exists()
    finally:
        for key in ("core.fsmonitor", "core.hooksPath"):
            _git(path, "config", "--unset", key)
        _git(path, "config", "--remove-section", "filter.trap")
        (path / ".git" / "info" / "attributes").unlink()
    assert s["code"] == 1 and f"reverted to {baseline[:10]}" in s["verdict"], s["verdict"] + s["err"]
    assert not ran and proof
    assert _git(path, "rev-parse", "HEAD") == baseline and (path / "pqkern" / "kernels.py").read_text() == SEED


def test_a_deleted_last_row_is_found(repo):
    path, env, _ = repo
    _commit(path, env, (DEMO / "slower.py").read_text(), "three scans")
    assert _trial(path, env, "three scans")["code"] == 1
    results = path / "results.tsv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]))
    candidate = _commit(path, env, NIL, "the seed and an unused constant")
    try:
        s = _trial(path, env, "after a deleted row")
        after = results.read_text()
    finally:
        results.write_text("".join(lines))
    assert s["code"] == 8 and "deleted from the file's end" in s["verdict"], s["verdict"] + s["err"]
    assert s["head"] == candidate and after == "".join(lines[:-1])
