"""Machine-wide CPU reservations (pqkern/bench/cpus.py): real processes, real flock, real trials in two clones."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import DEMO, REPO, commit_all, scratch_repo, small_fixture_env

from pqkern.bench import affinity, cpus

ALLOWED = sorted(os.sched_getaffinity(0))
TWO = ",".join(map(str, ALLOWED[:2]))  # the holders below are held to these, so that there is one set to take
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs this process may use")
# Prints when it holds its set (the reservation, its CPUs, its pid), sleeps argv[1] seconds, prints when it ends.
HOLD = ("import json, os, sys, time; print(json.dumps({'held': os.environ.get('PQKERN_CPUS_HELD'), 'got': time.time(), "
        "'affinity': sorted(os.sched_getaffinity(0)), 'pid': os.getpid()}), flush=True); time.sleep(float(sys.argv[1])); "
        "print(json.dumps({'end': time.time()}), flush=True)")


@pytest.fixture
def locks(tmp_path, monkeypatch) -> Path:
    """A lock directory of this test's own, for this process and the ones it starts."""
    path = tmp_path / "locks"
    monkeypatch.setenv(cpus.ENV_DIR, str(path))
    return path


def _hold(seconds: float, *args: str, taskset: str = TWO) -> subprocess.Popen:
    """``taskset -c TWO python -m pqkern.bench.cpus [args] -- python -c HOLD seconds``, started now."""
    cmd = [sys.executable, "-m", "pqkern.bench.cpus", *args, "--", sys.executable, "-c", HOLD, str(seconds)]
    return subprocess.Popen(["taskset", "-c", taskset, *cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _got(proc: subprocess.Popen) -> dict:
    """The holder's first line: it holds its set now."""
    line = proc.stdout.readline()
    assert line, proc.communicate()
    return json.loads(line)


def _held(info: dict) -> set[int]:
    return set(map(int, info["held"].partition(":")[2].split(",")))


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    """Read ``proc``'s stderr until a line holds ``text``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if text in line:
            return line
        assert line or proc.poll() is None, proc.communicate()
    raise AssertionError(f"no line with {text!r}")


@two_cpus
def test_two_reservations_in_two_processes_never_overlap(locks):
    first = _hold(1.5)
    a = _got(first)
    second = _hold(0.1)
    b = _got(second)
    a_end = json.loads(first.stdout.readline())["end"]
    first.communicate(), second.communicate()
    assert _held(a) == _held(b) == set(ALLOWED[:2]) | cpus.siblings(ALLOWED[1])
    assert b["got"] >= a_end  # the only set there is: the second had it once the first let go
    assert a["affinity"] == ALLOWED[:2]  # the holder and its children run on judge and workers


@two_cpus
def test_one_cpu_each_runs_at_once_and_a_set_needing_both_waits_for_both(locks):
    one, two = ALLOWED[0], ALLOWED[1]
    if cpus.siblings(one) & {two}:
        pytest.skip("the two CPUs are SMT siblings here: one of them would wait")
    a, b = _hold(3, taskset=str(one)), _hold(3, taskset=str(two))
    got_a, got_b = _got(a), _got(b)
    assert abs(got_a["got"] - got_b["got"]) < 2.5  # at the same time, each on its own CPU
    assert _held(got_a) & _held(got_b) == set() and got_a["affinity"] == [one] and got_b["affinity"] == [two]
    both = _hold(0.1)
    line = _wait_for_line(both, "waiting for a free CPU set")
    assert f"pid {a.pid}" in line or f"pid {b.pid}" in line
    got = _got(both)
    ends = [json.loads(p.stdout.readline())["end"] for p in (a, b)]
    assert got["got"] >= max(ends)
    for p in (a, b, both):
        p.communicate()


def test_the_second_waits_and_says_who_holds_the_cpus(locks):
    first = _hold(2)
    a = _got(first)
    t0 = time.time()
    second = _hold(0.1)
    line = _wait_for_line(second, "waiting for a free CPU set")
    assert f"pid {first.pid}" in line and f"in {REPO}" in line and "since " in line, line
    assert "user " in line and "on cpu " in line
    assert _got(second)["got"] >= a["got"] + 1.5 and time.time() - t0 < 10
    assert "CPUs free after" in second.communicate()[1]
    first.communicate()


def test_a_sigkilled_holder_frees_its_cpus_at_once(locks):
    holder = _hold(120)
    inner = _got(holder)["pid"]
    waiter = _hold(0.1)
    _wait_for_line(waiter, "waiting for a free CPU set")
    try:
        t0 = time.time()
        holder.kill()
        assert _got(waiter)["got"] - t0 < 1.0
    finally:
        os.kill(inner, signal.SIGKILL)  # the holder's child: it never held the lock
        holder.communicate(), waiter.communicate()


def test_cpus_with_a_busy_cpu_waits_for_it(locks):
    busy = ALLOWED[1] if len(ALLOWED) > 1 else ALLOWED[0]
    holder = _hold(2, "--cpus", str(busy))
    _got(holder)
    wanted = f"{ALLOWED[0]},{busy}" if len(ALLOWED) > 1 else str(busy)
    waiter = _hold(0.1, "--cpus", wanted)
    line = _wait_for_line(waiter, "waiting for a free CPU set")
    assert f"--cpus {','.join(map(str, sorted(map(int, wanted.split(',')))))}" in line and f"pid {holder.pid}" in line
    got = _got(waiter)
    assert got["held"].endswith(":" + wanted)
    holder.communicate(), waiter.communicate()


@pytest.mark.parametrize("given", ["9999", "a,b", "0,0", ""])
def test_invalid_cpus_is_refused_with_exit_5(tmp_path, locks, given):
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", "x", "--no-asv", "--cpus", given], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 5, p.stdout + p.stderr
    assert p.stdout.startswith("verdict: refused (--cpus") and ("not one this process may use" in p.stdout
                                                                or "e.g. --cpus 2,3" in p.stdout), p.stdout
    assert not locks.exists()  # nothing reserved, nothing waited for


@two_cpus
def test_a_child_works_under_its_parents_reservation_and_plans_on_its_cpus(locks):
    judge, workers = ALLOWED[1], ALLOWED[0]
    code = ("from pqkern.bench import affinity, cpus; r = cpus.reserve('child'); "
            "print(r.inherited, r.judge, r.workers, *affinity.plan())")
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.cpus", "--cpus", f"{judge},{workers}", "--", sys.executable,
                        "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert p.stdout.split() == ["True", str(judge), str(workers), str(judge), str(workers)], p.stdout + p.stderr
    assert "waiting" not in p.stderr


def test_a_reservation_named_in_the_environment_counts_only_for_its_holder_and_descendants(locks, monkeypatch):
    monkeypatch.setenv(cpus.ENV_HELD, f"1:{ALLOWED[0]},{ALLOWED[-1]}")  # init holds nothing: a stale or forged value
    assert cpus.current() is None
    with cpus.reserve("test") as res:
        assert cpus.current() == cpus.Reservation(res.judge, res.workers, res.held, since=res.since)
        if res.judge != res.workers:
            assert affinity.plan() == (res.judge, res.workers)
    assert os.environ[cpus.ENV_HELD].startswith("1:") and not any(cpus.taken(c) for c in ALLOWED)


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(locks, tmp_path):
    victim = tmp_path / "results.tsv"
    victim.write_text("a row\n")
    locks.mkdir()
    for cpu in ALLOWED:
        (locks / f"cpu{cpu}.lock").symlink_to(victim)
    with pytest.raises(cpus.Unusable, match=f"{locks}/cpu{ALLOWED[0]}.lock cannot be a CPU lock"):
        cpus.reserve("test")
    assert victim.read_text() == "a row\n"
    assert affinity.plan() in ((ALLOWED[0], ALLOWED[-1]), (None, None))  # pqkern-run still runs


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as a second user")
def test_two_users_share_the_lock_directory(monkeypatch):
    shared = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp itself is sticky and writable by all; pytest's folders are private
    os.chmod(shared, 0o1777)
    monkeypatch.setenv(cpus.ENV_DIR, str(shared / "pqkern-cpus"))
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # nobody makes the directory and the files, holds the CPUs, then lets go
        try:
            os.setgid(65534)
            os.setuid(65534)
            res = cpus.reserve("nobody's trial", Path("/nowhere"), "abc")
            os.write(ready_w, b"1")
            os.read(go_r, 1)
            res.release()
        except BaseException as e:
            os.write(ready_w, repr(e).encode())
        finally:
            os._exit(0)
    os.close(ready_w), os.close(go_r)
    try:
        said = os.read(ready_r, 1000)
        assert said == b"1", said
        seen: list[str] = []
        t0 = time.monotonic()
        threading.Timer(1.0, lambda: os.write(go_w, b"1")).start()
        with cpus.reserve("root's trial", say=seen.append) as res:
            assert time.monotonic() - t0 >= 0.9 and res.judge in ALLOWED
            assert "user nobody" in seen[0] and "in /nowhere" in seen[0], seen
            assert (shared / "pqkern-cpus").stat().st_mode & 0o7777 == 0o1777
            files = list((shared / "pqkern-cpus").glob("cpu*.lock"))
            assert files and all(p.stat().st_uid == 65534 and p.stat().st_mode & 0o777 == 0o666 for p in files)
    finally:
        os.close(go_w)
        os.waitpid(pid, 0)
        shutil.rmtree(shared)


def test_the_choice_keeps_the_workers_core_whole_and_pairs_judges_on_cores():
    core = lambda c: {c % 8, c % 8 + 8}  # noqa: E731  16 hardware threads, two per core: 8 and 0 share one
    free, sets = set(range(16)), []
    while choice := cpus._choose(list(range(16)), free, core):
        sets.append(choice)
        free -= choice[2]
    assert sets[0] == (0, 15, {0, 7, 15}) and sets[1] == (8, 14, {8, 6, 14})
    assert len(sets) == 5 and all(core(w) <= held and j not in core(w) for j, w, held in sets)
    assert cpus._choose([0, 4], {0, 4}, lambda c: {0, 4}) == (0, 4, {0, 4})  # two threads of one core: the only set
    assert cpus._choose([3], {3}, lambda c: {3}) == (3, 3, {3})


# ---------------------------------------------------------------- two agents' trials, end to end

NIL = "\nUNUSED = {}\n"  # a module constant the kernel never uses: the same scan


def _clone(root: Path, env: dict) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    scratch_repo(repo, env)
    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", "baseline", "--no-asv"], cwd=repo, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    return repo


def _commit(repo: Path, env: dict, source: str, message: str) -> str:
    (repo / "pqkern" / "kernels.py").write_text(source)
    return commit_all(repo, env, message)


def _start(repo: Path, env: dict, description: str) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", ",".join(map(str, ALLOWED[:2])), sys.executable, "-m", "pqkern.bench.trial",
                             description, "--no-asv"], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _trial_dir(repo: Path, commit: str) -> Path:
    return next((repo / "trials").glob(f"*-{commit[:10]}"))


def _holder_pids() -> set[int]:
    return set(cpus.holders())


@pytest.mark.slow
@two_cpus
def test_two_agents_trials_at_once_never_share_a_cpu(tmp_path, data_dir, locks):
    """Two clones, both trials restricted to the same two CPUs (taskset: on any machine one set, so one waits)."""
    env = small_fixture_env(data_dir, PQKERN_CPU_LOCKS=str(locks))
    nil_repo = _clone(tmp_path / "nil", env)
    fast_repo = tmp_path / "fast" / "repo"
    shutil.copytree(nil_repo, fast_repo, symlinks=True)  # a second clone, with the same baseline row
    seed = (nil_repo / "pqkern" / "kernels.py").read_text()
    nil = _commit(nil_repo, env, seed + NIL.format(1), "nil: an unused constant")
    fast = _commit(fast_repo, env, (DEMO / "unrolled.py").read_text(), "unrolled")
    procs = {"nil": _start(nil_repo, env, "nil"), "fast": _start(fast_repo, env, "unrolled")}
    outs = {k: p.communicate(timeout=900) for k, p in procs.items()}
    assert procs["nil"].returncode == 1, outs["nil"]  # a nil change is not kept
    assert procs["fast"].returncode == 0 and outs["fast"][0].startswith("verdict: keep"), outs["fast"]
    waited = [k for k in procs if "waiting for a free CPU set" in outs[k][1]]
    assert len(waited) == 1, outs
    other = "fast" if waited[0] == "nil" else "nil"
    line = next(x for x in outs[waited[0]][1].splitlines() if "waiting for a free CPU set" in x)
    assert f"pqkern-trial pid {procs[other].pid}" in line and str(tmp_path / other / "repo") in line, line
    dirs = {"nil": _trial_dir(nil_repo, nil), "fast": _trial_dir(fast_repo, fast)}
    held = {k: json.loads((d / "comparison.json").read_text())["cpus"] for k, d in dirs.items()}
    for k, d in dirs.items():
        assert (d / "progress.log").read_text().startswith(f"cpus: judge on cpu {held[k]['judge']}, workers on cpu "
                                                           f"{held[k]['workers']}")
    if set(held["nil"]["held"]) & set(held["fast"]["held"]):  # the same CPUs: one after the other
        assert held[waited[0]]["since"] > (dirs[other] / "verdict.json").stat().st_mtime

    # Killing the trial that holds the CPUs frees them at once for the one waiting.
    _commit(nil_repo, env, seed + NIL.format(2), "nil again")
    _commit(fast_repo, env, (DEMO / "unrolled.py").read_text() + NIL.format(3), "unrolled, nil")
    first = _start(nil_repo, env, "nil again")
    try:
        end = time.monotonic() + 120
        while first.pid not in _holder_pids():
            assert time.monotonic() < end and first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = _start(fast_repo, env, "unrolled, nil")
        try:
            _wait_for_line(second, "waiting for a free CPU set")
            t0 = time.monotonic()
            first.kill()
            while second.pid not in _holder_pids():
                assert time.monotonic() - t0 < 1.0, "the waiting trial did not get the CPUs within a second"
                time.sleep(0.02)
        finally:
            second.kill()
            second.communicate()
    finally:
        first.kill()
        first.communicate()
