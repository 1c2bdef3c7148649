"""One trial at a time per working tree, and who else held CPUs on this machine meanwhile (immutable bench).

``TrialLock`` holds an exclusive ``flock`` on ``<git dir>/pqkern-trial.lock`` for the trial's
whole life; the operating system releases it when the process dies, however it dies, so a
killed trial never leaves a stale lock. A second trial in the same working tree is refused at
once, with the running trial's pid and commit. Linked worktrees and clones have their own git
dir, so their trials run at the same time, each on CPUs of its own (``cpus.py``: a trial that
finds none free waits). ``Neighbours`` sees the other reservations held while a trial runs and
notes them in its verdict: no CPU was shared, but the memory bus and the last-level cache were.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

from pqkern.bench import cpus


class Busy(RuntimeError):
    """Another trial holds the lock; the message names it."""


class TrialLock:
    """The per-working-tree lock, held until :meth:`release` or the process exits."""

    def __init__(self, git_dir: Path, commit: str):
        self.path = git_dir / "pqkern-trial.lock"
        try:  # never through a symlink, nor into anything but a file: the agent can write the git dir
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            if not stat.S_ISREG(os.fstat(self.fd).st_mode):
                os.close(self.fd)
                raise IsADirectoryError(0, "not a regular file")
        except OSError as e:
            raise Busy(f"{self.path} cannot be the trial lock ({e.strerror}): remove it, then run the trial again") from None
        if not cpus.try_lock(self.fd):
            info = _read_info(self.path)
            os.close(self.fd)
            since = time.strftime("%H:%M:%S", time.localtime(info.get("started", 0)))
            raise Busy(f"another pqkern-trial (pid {info.get('pid', '?')}, judging commit {str(info.get('commit', '?'))[:10]}, "
                       f"since {since}) is running in this working tree: wait for its verdict; do not start a second one")
        os.ftruncate(self.fd, 0)
        os.write(self.fd, json.dumps({"pid": os.getpid(), "commit": commit, "started": time.time()}).encode())

    def release(self) -> None:
        """Let the next trial in (closing the descriptor drops the flock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _read_info(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


class Neighbours:
    """The other CPU reservations (trials, screenings) held on this machine while this trial ran."""

    def __init__(self, judge: int | None = None):
        self.seen: dict[int, dict] = {}
        self.look()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, args=(judge,), daemon=True).start()

    def _watch(self, judge: int | None) -> None:
        if judge is not None:  # off the workers' CPU
            os.sched_setaffinity(0, {judge})
        while not self._stop.wait(1.0):
            self.look()

    def look(self) -> None:
        """Record every other live reservation."""
        for pid, info in cpus.holders().items():
            if pid != os.getpid():
                self.seen[pid] = info

    def warning(self) -> str:
        if not self.seen:
            return ""
        others = ", ".join(f"{info.get('what', '?')} pid {pid} in {info.get('worktree', '?')} on cpu "
                           f"{','.join(map(str, sorted(info['cpus'])))}" for pid, info in sorted(self.seen.items()))
        return (f"note: another reservation ran on this machine at the same time ({others}): no CPU was shared, the "
                "memory bus and the last-level cache were")

    def close(self) -> None:
        self._stop.set()
