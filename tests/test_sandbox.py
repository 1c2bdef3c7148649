"""pqkern-sandbox for real: bubblewrap around a command in a temporary clone, the judge outside it, real trials.

Each sandboxed command here is a small Python program run inside (``python -c``) that tries its
attacks and prints what each one got; the checks are made outside, on the files themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import GIT_ENV, scratch_repo, small_fixture_env

from pqkern.bench import gitsafe, judge, results, seal, snapshot

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap is not installed (apt-get install bubblewrap; .ci/run installs it)")
PY = sys.executable
VENV = Path(sys.prefix).resolve()
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))
UNROLLED = "pqkern/tools/demo_kernels/unrolled.py"  # the clone's own copy: the tests' folders under /tmp are not seen inside
VERDICT = r"^verdict: (baseline|keep|discard) \(.+\) .*commit=[0-9a-f]{10}"

# Inside: try every way of writing each protected path (and of moving it, or its parent, away); print what each got.
ATTACKS = r'''
import errno, json, os, sys
out = {}
def attempt(name, fn, undo=None):
    try:
        fn()
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
        return
    out[name] = "ok"
    if undo:
        undo()
targets, movable_parents = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for p in targets:
    parent = os.path.dirname(p)
    if os.path.isdir(p):
        attempt(f"{p}: create a file", lambda: open(os.path.join(p, "evil.pth"), "w").close(),
                lambda: os.remove(os.path.join(p, "evil.pth")))
        files = sorted(f for f in os.listdir(p) if os.path.isfile(os.path.join(p, f)))
        if files:
            attempt(f"{p}: remove a file in it", lambda: os.remove(os.path.join(p, files[0])))
    else:
        attempt(f"{p}: append", lambda: open(p, "a").write("forged\n"))
        attempt(f"{p}: truncate", lambda: os.truncate(p, 0))
        attempt(f"{p}: remove", lambda: os.remove(p))
    attempt(f"{p}: chmod", lambda: os.chmod(p, os.stat(p).st_mode & 0o7777))
    attempt(f"{p}: move away", lambda: os.rename(p, p + ".moved"), lambda: os.rename(p + ".moved", p))
    if p in movable_parents:
        attempt(f"{p}: move its parent away", lambda: os.rename(parent, parent + ".moved"),
                lambda: os.rename(parent + ".moved", parent))
    link = os.path.join(parent, ".swap")
    try:
        os.symlink("/tmp", link)
    except OSError:
        link = "/tmp/.swap"
        if not os.path.lexists(link):
            os.symlink("/tmp", link)
    attempt(f"{p}: swap for a symlink", lambda: os.replace(link, p))
    if os.path.lexists(link):
        os.remove(link)
print(json.dumps(out))
'''

# Inside: read the judge's key, signal the judge, then show the judge is still there.
REACH = r'''
import json, os, signal, subprocess, sys, time
key, pidfile = sys.argv[1], sys.argv[2]
got = {}
try:
    open(key, "rb").read()
    got["read key"] = "ok"
except OSError as e:
    got["read key"] = type(e).__name__
got["key dir"] = sorted(os.listdir(os.path.dirname(key)))
for _ in range(600):
    if os.path.exists(pidfile):
        break
    time.sleep(0.1)
pid = int(open(pidfile).read())
got["judge visible"] = os.path.exists(f"/proc/{pid}")
for sig in (signal.SIGKILL, signal.SIGSTOP):
    try:
        os.kill(pid, sig)
        got[f"kill {sig.name}"] = "ok"
    except OSError as e:
        got[f"kill {sig.name}"] = type(e).__name__
got["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", "--help"], capture_output=True, text=True)
got["judge answers"] = p.returncode == 0 and "usage: pqkern-trial" in p.stdout
print(json.dumps(got))
'''


def _state(paths: list[Path]) -> list:
    """What each path holds: a file's mode and bytes; a folder's entries, each with its mode, size and times."""
    out = []
    for top in paths:
        if top.is_file():
            out.append((str(top), top.stat().st_mode, hashlib.sha256(top.read_bytes()).hexdigest()))
        else:
            for p in sorted(top.rglob("*")):
                st = p.lstat()
                out.append((str(p), st.st_mode, st.st_size, st.st_mtime_ns))
    return out


def _sandbox(repo: Path, env: dict, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pqkern.bench.sandbox", "--", *command], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _py(script: str, *args: str) -> list[str]:
    return [PY, "-c", script, *args]


def _verdicts(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("verdict: ")]


def _rows(repo: Path) -> list[dict]:
    return results.read_rows(repo / "results.tsv")


@pytest.fixture(scope="module")
def clone(tmp_path_factory, data_dir):
    repo = tmp_path_factory.mktemp("sandbox") / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env, without_peers=True)
    subprocess.run(["git", "checkout", "-q", "-b", "autoresearch/sandbox"], cwd=repo, check=True)
    return repo, env


# -- what needs no trial -----------------------------------------------------------------------------------------------

def test_without_bubblewrap_it_says_what_to_install(clone, tmp_path):
    repo, env = clone
    (tmp_path / "git").symlink_to(shutil.which("git"))
    p = _sandbox(repo, dict(env, PATH=str(tmp_path)), "true")
    assert p.returncode == 125 and "apt-get install bubblewrap" in p.stderr, p.stderr


@pytest.mark.parametrize("write, says", [("benchmarks", "which the agent must not write"),
                                         ("~", "holds the home directory"),
                                         ("no-such-dir", "create it first")])
def test_a_write_path_over_what_the_judge_keeps_is_refused(clone, write, says):
    repo, env = clone
    path = os.path.expanduser(write) if write.startswith("~") else str(repo / write)
    p = subprocess.run([PY, "-m", "pqkern.bench.sandbox", "--write", path, "--", "true"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 125 and says in p.stderr, p.stderr


def test_a_bench_that_is_not_the_commits_is_refused(clone, tmp_path):
    repo = tmp_path / "dirty"
    repo.mkdir()
    env = clone[1]
    scratch_repo(repo, env)
    (repo / "pqkern" / "bench" / "rule.py").write_text((repo / "pqkern" / "bench" / "rule.py").read_text() + "\n# edit\n")
    (repo / "benchmarks" / "extra.py").write_text("")
    p = _sandbox(repo, env, "true")
    assert p.returncode == 125 and "pqkern/bench/rule.py (changed)" in p.stderr, p.stderr
    assert "benchmarks/extra.py (untracked)" in p.stderr


def test_the_judge_imports_its_snapshot_only(clone, tmp_path):
    """The judge's interpreter, its workers' and asv's find the bench in the snapshot, never in the working tree, even
    with a package planted at the tree's root where ``python -m`` would look first."""
    repo, env = clone
    snap, commit = snapshot.take(repo, None, snapshot.mirror(repo))
    assert commit == gitsafe.Repo(repo).head()[1] and (snap / snapshot.MARKER).is_file()
    conf = json.loads((snap / "asv.conf.json").read_text())
    assert conf["benchmark_dir"] == str(snap / "benchmarks") and Path(conf["repo"]).parent == snapshot.judge_home()
    assert conf["results_dir"] == str(repo / ".asv" / "results")
    jenv = judge.environment(env, snap, Path(env["PQKERN_DATA"]), [repo], [VENV])
    assert not any(k.startswith(("NUMBA_", "GIT_AUTHOR")) for k in jenv) and jenv["PYTHONPATH"] == str(snap)
    planted = repo / "asv"
    planted.mkdir()
    try:
        (planted / "__init__.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
        where = ("import pqkern.bench.worker as w, pqkern.bench.trial as t, benchmarks.common as c; "
                 "print(w.__file__, t.__file__, c.__file__)")
        p = subprocess.run([PY, "-c", where], cwd=repo, env=jenv, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert all(f.startswith(str(snap) + "/") for f in p.stdout.split()), p.stdout
        p = subprocess.run([PY, "-m", "asv", "--version"], cwd=repo, env=jenv, capture_output=True, text=True)
        assert p.returncode == 0 and not (tmp_path / "ran").exists(), p.stderr
    finally:
        shutil.rmtree(planted)


def test_bench_rev_names_a_commit_a_branch_or_a_tag(clone):
    repo, env = clone
    git = gitsafe.Repo(repo)
    head = git.head()[1]
    main = subprocess.run(["git", "rev-parse", "main"], cwd=repo, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "tag", "-a", "-m", "t", "bench-tag", "main"], cwd=repo, env=env, check=True)
    try:
        for rev in (None, "HEAD", "autoresearch/sandbox", head[:10], head):
            assert snapshot.resolve(git, rev) == head, rev
        assert snapshot.resolve(git, "main") == snapshot.resolve(git, "bench-tag") == main
        with pytest.raises(snapshot.SnapshotError, match="no such commit, branch or tag"):
            snapshot.resolve(git, "no-such-branch")
    finally:
        subprocess.run(["git", "tag", "-d", "bench-tag"], cwd=repo, capture_output=True)
        git.close()


def test_the_sandbox_mounts_protected_paths_read_only_over_the_writable_ones(clone, tmp_path):
    from pqkern.bench.sandbox import Layout

    repo, _ = clone
    layout = Layout(repo, [], tmp_path, repo / "data", VENV)
    args = layout.bwrap("bwrap", tmp_path / "judge.sock", ["claude"], repo, 3)
    text = " ".join(args)
    for p in layout.protected:
        assert f"--ro-bind {p} {p}" in text
        assert text.index(f"--ro-bind {p} {p}") > text.index(f"--bind {repo} {repo}")
    assert f"--bind {repo / 'pqkern'} {repo / 'pqkern'}" in text  # pqkern/bench's parent cannot be moved away either
    assert text.index(f"--tmpfs {seal.home()}") > max(text.index(f"--ro-bind {p} {p}") for p in layout.protected)
    assert args[-2:] == ["--", "claude"] and "--disable-userns" in args and "--unshare-pid" in args


# -- inside the sandbox --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_write_to_a_protected_path_fails(clone):
    repo, env = clone
    data = Path(env["PQKERN_DATA"])
    (repo / "results.tsv").unlink(missing_ok=True)
    p = _sandbox(repo, env, "true")  # prepares: the data built, results.tsv made for the agent to read, not to write
    assert p.returncode == 0, p.stderr[-3000:]
    assert (repo / "results.tsv").read_text() == "\t".join(results.HEADER) + "\n"
    assert results.verify(repo / "results.tsv") is None
    (repo / "trials" / "old").mkdir(exist_ok=True)
    (repo / "trials" / "old" / "seed_measurement.json").write_text("{}\n")
    targets = [repo / "pqkern" / "bench", repo / "pqkern" / "bench" / "rule.py", repo / "benchmarks",
               repo / "benchmarks" / "common.py", repo / "asv.conf.json", repo / "results.tsv", repo / "trials",
               repo / "trials" / "old" / "seed_measurement.json", repo / ".asv", data, SITE,
               SITE / "__editable__.pqkern-0.1.0.pth"]
    movable = [str(t) for t in targets if t != data]  # the data folder's parent here is a temporary one: its own view
    watched = [t for t in targets if t != SITE]
    before, site_before = _state(watched), sorted(os.listdir(SITE))
    p = _sandbox(repo, env, *_py(ATTACKS, json.dumps([str(t) for t in targets]), json.dumps(movable)), timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(got) >= 6 * len(targets), got
    assert not {k: v for k, v in got.items() if v == "ok"}, got
    assert _state(watched) == before
    assert sorted(os.listdir(SITE)) == site_before
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    shutil.rmtree(repo / "trials" / "old")


@pytest.mark.slow
def test_the_key_is_hidden_and_the_judge_out_of_reach(clone, tmp_path):
    repo, env = clone
    pidfile = repo / ".git" / "judge-pid"
    pidfile.unlink(missing_ok=True)
    key = seal.home() / "judge.key"
    proc = subprocess.Popen([PY, "-m", "pqkern.bench.sandbox", "--", *_py(REACH, str(key), str(pidfile))], cwd=repo,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = None
    for _ in range(1200):  # the judge is the sandbox's child whose command line names pqkern.bench.judge
        for entry in Path("/proc").iterdir():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if entry.name.isdigit() and b"pqkern.bench.judge" in cmd and str(repo).encode() in cmd:
                found = int(entry.name)
        if found:
            break
        time.sleep(0.1)
    assert found, "the judge did not start"
    pidfile.write_text(str(found))
    out, err = proc.communicate(timeout=600)
    pidfile.unlink()
    assert proc.returncode == 0, err[-3000:]
    got = json.loads(out.strip().splitlines()[-1])
    assert got["read key"] == "FileNotFoundError" and "judge.key" not in got["key dir"], got
    assert key.is_file() and len(key.read_bytes()) == seal.KEY_BYTES  # it exists, outside
    assert got["judge visible"] is False and got["kill SIGKILL"] == "ProcessLookupError", got
    assert got["kill SIGSTOP"] == "ProcessLookupError" and max(got["processes"]) < 100, got
    assert got["judge answers"] is True, got


OWN_RUNS = r'''
import subprocess, sys
py, unrolled = sys.argv[1], sys.argv[2]
for extra in (["--source", "smoke"], ["--source", "smoke", "--workload", "ivf"], [], ["--workload", "ivf"]):
    p = subprocess.run([py, "-m", "pqkern.bench.runner", *extra], capture_output=True, text=True)
    print("RUN", " ".join(extra) or "default", p.returncode, p.stderr.strip().splitlines()[-1:] if p.returncode else "")
kernel = open("pqkern/kernels.py").read()
open("pqkern/kernels.py", "w").write(open(unrolled).read())
p = subprocess.run([py, "-m", "pqkern.bench.paired", "--incumbent", "HEAD", "--candidate", "pqkern/kernels.py", "--mode",
                    "decide", "--summary"], capture_output=True, text=True)
open("pqkern/kernels.py", "w").write(kernel)
print("SCREEN", p.returncode, p.stdout.strip().splitlines()[:1], p.stderr.strip().splitlines()[-1:])
'''


@pytest.mark.slow
def test_the_agents_own_runs_work_inside(clone):
    """pqkern-run on the fixture's own queries (smoke and the default fixture, flat and ivf) and the screening command
    run inside, on data built before the sandbox mounted it read-only."""
    repo, env = clone
    p = _sandbox(repo, env, *_py(OWN_RUNS, PY, str(repo / UNROLLED)))
    assert p.returncode == 0, p.stderr[-3000:]
    runs = [line for line in p.stdout.splitlines() if line.startswith("RUN ")]
    assert len(runs) == 4 and all(" 0 " in line for line in runs), runs
    screen = next(line for line in p.stdout.splitlines() if line.startswith("SCREEN "))
    assert screen.startswith("SCREEN 0 ['decision: "), screen


TRIALS = r'''
import subprocess, sys
py, seed, unrolled = sys.argv[1], sys.argv[2], sys.argv[3]
def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)
def trial(description, *extra):
    p = subprocess.run([py, "-m", "pqkern.bench.trial", description, "--no-asv", *extra], capture_output=True, text=True)
    print(p.stdout, end="")
    print(f"EXIT {p.returncode}", flush=True)
trial("baseline")
open("pqkern/kernels.py", "w").write(open(seed).read() + "\nUNUSED = 0\n")
sh("git", "commit", "-qam", "nil change")
trial("nil change", "--cap-seconds", "10")
open("pqkern/kernels.py", "w").write(open(unrolled).read())
sh("git", "commit", "-qam", "unrolled")
trial("unrolled")
'''


@pytest.mark.slow
def test_trials_inside_keep_the_unrolled_kernel_and_discard_a_nil_change(clone):
    repo, env = clone
    head = gitsafe.Repo(repo).head()[1]
    seed = repo / "pqkern" / "kernels.py"
    seed_copy = repo / ".git" / "seed_kernels.py"
    shutil.copy(seed, seed_copy)
    p = _sandbox(repo, env, *_py(TRIALS, PY, str(seed_copy), str(repo / UNROLLED)))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    codes = [int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("EXIT ")]
    verdicts = _verdicts(p.stdout)
    assert codes == [0, 1, 0], p.stdout[-4000:]
    assert all(re.match(VERDICT, v) for v in verdicts), verdicts
    assert verdicts[0].startswith("verdict: baseline") and verdicts[1].startswith("verdict: discard")
    assert verdicts[2].startswith("verdict: keep (faster") and f"commit={head[:10]}" in verdicts[0]
    assert "---\nsource: imagesift\n" in p.stdout  # the result block (the real flat scan), as without the sandbox
    rows = _rows(repo)
    assert [r["status"] for r in rows] == ["baseline", "discard", "keep"]
    assert results.verify(repo / "results.tsv") is None  # sealed by the judge's key
    assert len(list((repo / "trials").glob("*/verdict.json"))) == 3
    assert gitsafe.Repo(repo).head()[1][:12] == rows[-1]["commit"]  # the keep stands; the nil change was reverted


CONCURRENT = r'''
import os, subprocess, sys, time
py = sys.argv[1]
open("pqkern/kernels.py", "a").write("\nSECOND = 2\n")
subprocess.run(["git", "commit", "-qam", "another nil change"], check=True)
first = subprocess.Popen([py, "-m", "pqkern.bench.trial", "first", "--no-asv", "--cap-seconds", "20"],
                         stdout=subprocess.PIPE, text=True)
before = set(os.listdir("trials"))
for _ in range(600):
    if set(os.listdir("trials")) - before:
        break
    time.sleep(0.1)
second = subprocess.run([py, "-m", "pqkern.bench.trial", "second", "--no-asv"], capture_output=True, text=True)
print("SECOND", second.returncode, second.stdout.strip())
out = first.communicate()[0]
print("FIRST", first.returncode, [l for l in out.splitlines() if l.startswith("verdict:")])
'''


@pytest.mark.slow
def test_a_second_trial_inside_is_refused_while_one_runs(clone):
    repo, env = clone
    rows = len(_rows(repo))
    p = _sandbox(repo, env, *_py(CONCURRENT, PY))
    assert p.returncode == 0, p.stderr[-3000:]
    second = next(line for line in p.stdout.splitlines() if line.startswith("SECOND"))
    assert second.startswith("SECOND 5 verdict: refused (another pqkern-trial"), second
    assert "wait for its verdict" in second
    first = next(line for line in p.stdout.splitlines() if line.startswith("FIRST"))
    assert "verdict: discard" in first, first
    assert len(_rows(repo)) == rows + 1


ATTACK_TRIALS = r'''
import os, subprocess, sys
py, site, repo = sys.argv[1], sys.argv[2], sys.argv[3]
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as e:
        print(name, type(e).__name__)
def trial(description, *extra):
    p = subprocess.run([py, "-m", "pqkern.bench.trial", description, "--no-asv", *extra], capture_output=True, text=True)
    print("TRIAL", description, p.returncode, [l for l in p.stdout.splitlines() if l.startswith("verdict:")])
def git(*args):
    subprocess.run(["git", *args], check=True, capture_output=True)
if len(open("results.tsv").read().splitlines()) < 2:  # a baseline first, so that the last trial is judged
    trial("baseline")
# 1. an untracked package shadowing the keep rule; 2. a .pth in the environment; 3. a forged row; 4. a forged measurement
attempt("shadow package", lambda: os.makedirs("pqkern/bench/rule"))
attempt("pth", lambda: open(os.path.join(site, "zz-evil.pth"), "w").write("import os\n"))
attempt("forged row", lambda: open("results.tsv", "a").write("\t".join(["deadbeef"] * 5) + "\n"))
folder = sorted(os.listdir("trials"))[-1]
attempt("forged measurement", lambda: open(os.path.join("trials", folder, "seed_measurement.json"), "w").write("{}"))
p = subprocess.run([py, "-m", "asv", "run", "--bench", "nothing", "HEAD^!"], capture_output=True, text=True,
                   env=dict(os.environ, PQKERN_MEASURED=os.path.join("trials", folder, "comparison.json")))
print("asv inside", p.returncode)
# the judge asked to run the kernel unjailed, and a working directory elsewhere
trial("no jail", "--no-jail")
# what the judge's git would run if it read this repository's configuration or hooks: each one leaves a file in trials/,
# which only a process outside the sandbox can write
marker = os.path.join(repo, "trials", "pwned")
for key, value in [("core.fsmonitor", f"touch {marker}-fsmonitor; false"), ("core.hooksPath", ".git/evil-hooks"),
                   ("log.showSignature", "true"), ("gpg.program", f"sh -c 'touch {marker}-gpg'"),
                   ("filter.evil.smudge", f"sh -c 'touch {marker}-filter; cat'"), ("core.pager", f"touch {marker}-pager"),
                   ("diff.external", f"touch {marker}-diff")]:
    git("config", key, value)
os.makedirs(".git/evil-hooks", exist_ok=True)
for hook in ("reference-transaction", "post-checkout", "post-index-change", "pre-auto-gc"):
    path = os.path.join(".git/evil-hooks", hook)
    open(path, "w").write(f"#!/bin/sh\ntouch {marker}-hook-{hook} 2>/dev/null\nexit 0\n")
    os.chmod(path, 0o755)
open(".git/info/attributes", "w").write("* filter=evil\n")
open("pqkern/kernels.py", "w").write(open("pqkern/tools/demo_kernels/slower.py").read())
git("commit", "-qam", "a slower kernel under a hostile git configuration: discarded and reverted")
# the trial lock made a symlink to results.tsv: the judge must not write through it
if os.path.lexists(".git/pqkern-trial.lock"):
    os.remove(".git/pqkern-trial.lock")
os.symlink(os.path.join(repo, "results.tsv"), ".git/pqkern-trial.lock")
trial("lock through a symlink")
os.remove(".git/pqkern-trial.lock")
# an importable package at the root, where python -m looks first
os.makedirs("asv", exist_ok=True)
open("asv/__init__.py", "w").write(f"open({marker + '-asv'!r}, 'w')\n")
trial("shadow at the root")
import shutil
shutil.rmtree("asv")
trial("slower, hostile git")
'''


@pytest.mark.slow
def test_the_agents_attacks_from_inside_fail_or_are_refused(clone):
    repo, env = clone
    rows = _rows(repo)
    p = _sandbox(repo, env, *_py(ATTACK_TRIALS, PY, str(SITE), str(repo)))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    for name in ("shadow package", "pth", "forged row", "forged measurement"):  # each write failed
        assert f"{name} OSError" in out or f"{name} PermissionError" in out, (name, out[-3000:])
    assert "asv inside 0" not in out  # asv cannot record from inside (its results are read-only)
    trials = {}
    for line in out.splitlines():
        if line.startswith("TRIAL "):
            name, code, verdict = re.match(r"TRIAL (.+?) (\d+) \[['\"](.*)['\"]\]$", line).groups()
            trials[name] = (int(code), verdict)
    assert trials["no jail"][0] == 5 and "the judge always jails the kernel: drop --no-jail" in trials["no jail"][1]
    assert trials["lock through a symlink"][0] == 5 and "cannot be the trial lock" in trials["lock through a symlink"][1]
    assert trials["shadow at the root"][0] == 5
    assert "asv: an untracked module at the repository's root" in trials["shadow at the root"][1]
    code, verdict = trials["slower, hostile git"]
    assert code == 1 and verdict.startswith("verdict: discard (slower)") and "reverted to" in verdict, verdict
    assert not list((repo / "trials").glob("pwned*")), list((repo / "trials").glob("pwned*"))
    assert not (repo / "trials" / "pwned-asv").exists()
    new = _rows(repo)
    assert len(new) == len(rows) + (1 if rows else 2) and new[-1]["status"] == "discard"
    assert results.verify(repo / "results.tsv") is None
    for key in ("core.fsmonitor", "core.hooksPath", "log.showSignature", "gpg.program", "filter.evil.smudge",
                "core.pager", "diff.external"):
        subprocess.run(["git", "config", "--unset", key], cwd=repo)
    (repo / ".git" / "info" / "attributes").unlink()


ASV = r'''
import subprocess, sys
py, unrolled = sys.argv[1], sys.argv[2]
subprocess.run([py, "-m", "pqkern.bench.trial", "baseline", "--no-asv"], check=True, capture_output=True)
open("pqkern/kernels.py", "w").write(open(unrolled).read())
subprocess.run(["git", "commit", "-qam", "unrolled"], check=True)
p = subprocess.run([py, "-m", "pqkern.bench.trial", "unrolled"], capture_output=True, text=True)
print(p.stdout, end="")
print("EXIT", p.returncode)
'''


@pytest.mark.slow
def test_a_keep_through_the_judge_is_recorded_in_asv(tmp_path, data_dir):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = small_fixture_env(data_dir)
    scratch_repo(repo, env, without_peers=True)
    subprocess.run(["git", "checkout", "-q", "-b", "autoresearch/asv"], cwd=repo, check=True)
    p = _sandbox(repo, env, *_py(ASV, PY, str(repo / UNROLLED)), timeout=1800)
    assert "EXIT 0" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
    verdict = _verdicts(p.stdout)[-1]
    assert verdict.startswith("verdict: keep") and "asv: recorded" in verdict, verdict
    head = gitsafe.Repo(repo).head()[1]
    recorded = [json.loads(f.read_text()) for f in (repo / ".asv" / "results").glob(f"*/{head[:8]}-*.json")]
    assert recorded and recorded[0]["commit_hash"] == head
    assert not (repo / "asv.conf.json").read_text().count(str(snapshot.judge_home()))  # the tree's own is untouched


def test_the_client_passes_its_signal_on_and_reads_the_verdict(tmp_path):
    """The wire alone, against a judge stand-in: the client sends its request, forwards SIGTERM, and prints what comes
    back until the exit frame."""
    import socket

    from pqkern.bench import wire

    path = tmp_path / "j.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    seen = {}

    def serve():
        conn, _ = server.accept()
        seen["request"] = wire.read_request(conn)
        conn.sendall(wire.frame(b"e", b"working\n"))
        seen["signal"] = conn.recv(100)
        conn.sendall(wire.frame(b"o", b"verdict: interrupted (signal SIGTERM)\n") + wire.frame(b"x", b"6"))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client = subprocess.Popen([PY, "-c", "import sys; from pqkern.bench import wire; sys.exit(wire.ask(['d', '--no-asv']))"],
                              env=dict(os.environ, **{wire.ENV: str(path)}, **GIT_ENV), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for _ in range(100):
        if "request" in seen:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    client.send_signal(signal.SIGTERM)
    out, err = client.communicate(timeout=30)
    assert client.returncode == 6 and out == "verdict: interrupted (signal SIGTERM)\n" and err == "working\n"
    assert seen["request"]["argv"] == ["d", "--no-asv"] and seen["request"]["cwd"] == str(tmp_path)
    assert seen["signal"] == b"signal SIGTERM\n"

