"""The judge measures, the kernel only computes: attacks on the worker's process, through the real trial.

Each attack kernel below needs Python's introspection (``sys``, ``time``, ``__code__``...), which the policy refuses; so
each trial here runs in this process with the policy switched off, to show that the defence that matters holds on its
own: the judge reads every figure from outside the worker, no worker can tell its role, and the check is the timed
rounds carried on. Each test asserts the reason the attack fails.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from conftest import DEMO, KERNELS, SMALL_FIXTURE, commit_all, scratch_repo, small_fixture_env

from pqkern.bench import trial as trial_module
from pqkern.bench.policy import violations
from pqkern.bench.results import append_row, read_rows

pytestmark = pytest.mark.slow
ATTACKS = KERNELS / "attacks"


@pytest.fixture(scope="module")
def repo(tmp_path_factory, data_dir):
    """A scratch clone whose baseline (the seed) is recorded."""
    path = tmp_path_factory.mktemp("outside") / "repo"
    path.mkdir()
    env = small_fixture_env(data_dir)
    head = scratch_repo(path, env)
    return {"path": path, "env": env, "baseline": head}


def _trial(repo: dict, monkeypatch, capsys, description: str, policy: bool = False) -> tuple[int, str]:
    """A real trial of HEAD, run in this process (``policy``: with the static policy on, as pqkern-trial runs it)."""
    monkeypatch.chdir(repo["path"])
    for key, value in SMALL_FIXTURE.items():
        monkeypatch.setenv(key, value)
    if not policy:
        monkeypatch.setattr(trial_module, "violations", lambda source: [])
    monkeypatch.setattr(trial_module, "vouch", lambda *args: None)  # this process's bench is not the clone's: by design
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = trial_module.main([description, "--no-asv", "--cap-seconds", "15", "--time-budget", "300"])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    out = capsys.readouterr().out
    return code, next(line for line in out.splitlines() if line.startswith("verdict: "))


def _commit(repo: dict, source: str, message: str) -> str:
    (repo["path"] / "pqkern" / "kernels.py").write_text(source)
    return commit_all(repo["path"], repo["env"], message)


def _rewrite(results, rows: list[dict]) -> None:
    """results.tsv holding ``rows``, each sealed by the judge's own append."""
    results.unlink()
    for row in rows:
        append_row(results, row)


def _reset(repo: dict, commit: str) -> None:
    subprocess.run(["git", "reset", "-q", "--hard", commit], cwd=repo["path"], check=True)


@pytest.fixture(scope="module")
def baseline(repo, tmp_path_factory):
    """The seed recorded as the branch's baseline (through the real CLI)."""
    import sys

    p = subprocess.run([sys.executable, "-m", "pqkern.bench.trial", "baseline", "--no-asv"], cwd=repo["path"],
                       env=repo["env"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    return repo["baseline"]


@pytest.mark.parametrize("name", ["patch_clocks.py", "infer_role.py", "phase_wrong.py", "between_calls.py"])
def test_the_policy_refuses_each_attack_naming_the_line(name):
    found = violations((ATTACKS / name).read_text())
    assert found and all(line > 0 for line, _ in found), found


def test_patched_clocks_and_messages_change_no_figure(repo, baseline, monkeypatch, capsys):
    """The seed's scan with the worker's clocks slowed to 60% and its messages claiming short times: the seed."""
    _commit(repo, (ATTACKS / "patch_clocks.py").read_text(), "patch the clocks")
    code, verdict = _trial(repo, monkeypatch, capsys, "patch the clocks")
    assert code == 1 and any(f" stop={s} " in verdict for s in ("within", "cap", "below-bar")), verdict
    _reset(repo, baseline)


def test_work_between_calls_is_a_crash(repo, baseline, monkeypatch, capsys):
    _commit(repo, (ATTACKS / "between_calls.py").read_text(), "work between calls")
    code, verdict = _trial(repo, monkeypatch, capsys, "work between calls")
    assert code == 4 and "between two requests" in verdict and "work outside the timed calls" in verdict, verdict


def test_a_kernel_wrong_only_before_the_first_pause_is_caught(repo, baseline, monkeypatch, capsys):
    """Fast, and wrong on 1 query in 100 until it sees a pause: the check has none, and checks every phase."""
    _commit(repo, (ATTACKS / "phase_wrong.py").read_text(), "wrong while timed")
    code, verdict = _trial(repo, monkeypatch, capsys, "wrong while timed")
    assert code == 4 and "is not the nearest by ADC" in verdict, verdict


def test_leaving_the_caches_cold_for_the_other_worker_buys_nothing(repo, baseline, monkeypatch, capsys):
    """A sweep of 64 MB after every call (the other kernel's next call would start cold): it pays for its own sweep, and
    every timed call, flat or IVF, follows the other kernel's own untimed call."""
    _commit(repo, (ATTACKS / "evict_after_return.py").read_text(), "evict after return")
    code, verdict = _trial(repo, monkeypatch, capsys, "evict after return", policy=True)
    assert code == 1 and any(f" stop={s} " in verdict for s in ("slower", "loss:flat", "loss:ivf", "loss:real-ivf")), verdict


def test_a_kernel_cannot_learn_its_role_to_sandbag_as_the_incumbent(repo, baseline, monkeypatch, capsys):
    """Kept honestly (faster than the seed), then the same code plus an unused constant: if it could tell it is now the
    incumbent it would search three times and the constant would be kept; it cannot, and it is not."""
    source = (ATTACKS / "infer_role.py").read_text()
    _commit(repo, source, "role-aware unrolled scan")
    code, verdict = _trial(repo, monkeypatch, capsys, "role-aware unrolled scan")
    assert code == 0 and verdict.startswith("verdict: keep"), verdict
    _commit(repo, source + "\nUNUSED = 1\n", "an unused constant")
    code, verdict = _trial(repo, monkeypatch, capsys, "an unused constant")
    assert code == 1 and not verdict.startswith("verdict: keep"), verdict
    assert any(f" stop={s} " in verdict for s in ("within", "cap", "below-bar")), verdict
    _reset(repo, baseline)


def test_a_keep_that_contradicts_the_chain_is_not_kept(repo, baseline, monkeypatch, capsys):
    """The incumbent's recorded speed-up over the seed is made implausible (as a sandbagging incumbent or a drift would
    make the chain disagree with itself): a real gain over it is then not kept, and the verdict gives both figures."""
    results = repo["path"] / "results.tsv"
    original = read_rows(results)
    at = max(i for i, row in enumerate(original) if row["commit"] == baseline[:12])
    assert original[at]["status"] == "baseline"
    edited = [dict(row) for row in original]
    edited[at].update(seed_speedup="3.000", seed_speedup_lo="2.900", seed_speedup_hi="3.100")
    _rewrite(results, edited)  # sealed again, as if a trial had recorded it: the seals are not what this tests
    try:
        _commit(repo, (DEMO / "unrolled.py").read_text(), "unrolled")
        code, verdict = _trial(repo, monkeypatch, capsys, "unrolled", policy=True)
    finally:
        _rewrite(results, original + read_rows(results)[len(original):])
    assert code == 1 and "the measurements contradict each other" in verdict and " stop=contradiction " in verdict, verdict
    assert "3.000x [2.900, 3.100]" in verdict
