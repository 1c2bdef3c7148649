"""One trial at a time per working tree, and who else is timing on this machine (immutable bench).

``TrialLock`` holds an exclusive ``flock`` on ``<git dir>/pqkern-trial.lock`` for the trial's
whole life; the operating system releases it when the process dies, however it dies, so a
killed trial never leaves a stale lock. A second trial in the same working tree is refused at
once, with the running trial's pid and commit. Linked worktrees have their own git dir, so
two worktrees can run trials at the same time; ``Neighbours`` then lets each one see the
other (a registry of running trials per user, one locked file each) and say so in its
verdict, since two trials on one machine slow each other's kernels.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from pathlib import Path


class Busy(RuntimeError):
    """Another trial holds the lock; the message names it."""


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class TrialLock:
    """The per-working-tree lock, held until :meth:`release` or the process exits."""

    def __init__(self, git_dir: Path, commit: str):
        self.path = git_dir / "pqkern-trial.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(self.fd):
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
    """This trial's entry in the per-user registry of running trials, and the others seen while it ran."""

    def __init__(self, worktree: Path, commit: str, folder: Path | None = None):
        self.folder = folder or Path(os.environ.get("PQKERN_TRIALS_REGISTRY",
                                                    Path(tempfile.gettempdir()) / f"pqkern-trials-{os.getuid()}"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{os.getpid()}.json"
        self.path.write_text(json.dumps({"pid": os.getpid(), "worktree": str(worktree), "commit": commit}))
        self.fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.seen: dict[int, dict] = {}
        self.look()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self.look()

    def look(self) -> None:
        """Record every other live trial in the registry; remove entries whose trial has died."""
        for entry in self.folder.glob("*.json"):
            if entry == self.path:
                continue
            try:
                fd = os.open(entry, os.O_RDONLY)
            except OSError:
                continue
            try:
                if _try_lock(fd):
                    entry.unlink(missing_ok=True)  # its owner is gone
                else:
                    info = _read_info(entry)
                    self.seen[int(info.get("pid", 0))] = info
            finally:
                os.close(fd)

    def warning(self) -> str:
        if not self.seen:
            return ""
        others = ", ".join(f"pid {pid} in {info.get('worktree', '?')}" for pid, info in sorted(self.seen.items()))
        return f"warning: another trial ran on this machine at the same time ({others}); both kernels' timings shared the CPU"

    def close(self) -> None:
        self._stop.set()
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
