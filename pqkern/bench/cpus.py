"""The CPUs one trial times on, reserved machine-wide so no two trials share one (immutable bench).

A reservation is the judge's CPU and the workers' CPU (both timed workers share it, ``affinity.py``),
plus the workers' SMT siblings (``/sys/devices/system/cpu/cpuN/topology/thread_siblings_list``),
which stay idle: a sibling runs on the same core's execution units and caches. It is chosen
among the CPUs this process may use (``sched_getaffinity``: ``taskset`` restricts it), never
one another reservation holds: the workers' CPU from the last allowed down, on a core with
nothing held, the judge's from the first up, off that core; only when every allowed CPU is one
core's (``taskset -c 0,4`` on siblings) does the judge go on the workers' sibling. With one CPU
allowed, that CPU (and its siblings) is the whole reservation and nothing is pinned. ``--cpus
LIST`` names it instead: the first for the judge, the second for the workers, any others held
idle (the workers' siblings are added). The process and what it starts then run on the judge's
and the workers' CPUs only.

Each CPU is one lock file, ``cpuN.lock``, in a directory every user shares: ``/dev/shm/pqkern-cpus``
(a tmpfs on every Linux, emptied at boot; ``PQKERN_CPU_LOCKS`` names another, e.g. a directory
mounted into several containers). The directory is sticky and writable by all (``1777``), so no
user can delete another's lock file (a deleted and re-created file would be a second lock); the
files are never deleted and are created writable by all, so any user can take the lock and say in
the file who holds it. ``flock`` needs only a descriptor, read-only is enough, so a file another
user made read-only still locks (its holder is then "not said"). The operating system drops an
``flock`` when its holder exits by any route, ``SIGKILL`` included: a killed trial frees its CPUs
at once. A reservation that finds no free set waits, polling every ``POLL`` seconds, after one
line on stderr naming who holds the CPUs.

A process started by the holder (asv's benchmarks run under the trial that recorded them) works
under its reservation instead of waiting for it: the holder puts ``pid:judge,workers,idle...`` in
``PQKERN_CPUS_HELD``, which counts only in the holder and its descendants, while the CPUs are held.

``python -m pqkern.bench.cpus`` says who holds which CPU; ``python -m pqkern.bench.cpus [--cpus LIST]
-- COMMAND`` runs a command under a reservation (waiting like a trial).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pwd
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ENV_DIR = "PQKERN_CPU_LOCKS"
ENV_HELD = "PQKERN_CPUS_HELD"
POLL = 0.2  # seconds between looks while waiting
SYS = Path("/sys/devices/system/cpu")


class CpuError(ValueError):
    """An unusable CPU list (``--cpus``): not numbers, a CPU this process may not use, a repeat."""


class Unusable(RuntimeError):
    """The lock directory cannot be used; the message names it and says what to do."""


def lock_dir() -> Path:
    """The machine-wide directory of the CPUs' lock files."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    return Path("/dev/shm" if Path("/dev/shm").is_dir() else "/tmp") / "pqkern-cpus"


def allowed() -> list[int]:
    """The CPUs this process may use, in order."""
    return sorted(os.sched_getaffinity(0))


def siblings(cpu: int) -> set[int]:
    """The other hardware threads of ``cpu``'s core (none where SMT is off or not shown to this system)."""
    try:
        text = (SYS / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip()
    except OSError:
        return set()
    return set(_numbers(text)) - {cpu}


def _numbers(text: str) -> list[int]:
    """``"2,3"``, ``"0-3,8"`` as a list, in the order written."""
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        out.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
    return out


def parse(text: str | None) -> list[int] | None:
    """``--cpus LIST`` checked against the CPUs this process may use (None: none given)."""
    if text is None:
        return None
    try:
        cpus = _numbers(text)
    except ValueError:
        raise CpuError(f"--cpus {text!r}: give CPU numbers separated by commas, e.g. --cpus 2,3 (the first for the judge, "
                       "the second for the workers)") from None
    may = allowed()
    if not cpus or len(set(cpus)) != len(cpus):
        raise CpuError(f"--cpus {text!r}: name each CPU once, e.g. --cpus 2,3")
    outside = [c for c in cpus if c not in may]
    if outside:
        raise CpuError(f"--cpus {text!r}: CPU {','.join(map(str, outside))} is not one this process may use "
                       f"({_list(may)}; see taskset -p $$)")
    return cpus


def _list(cpus) -> str:
    return ",".join(map(str, sorted(cpus)))


@dataclass
class Reservation:
    """CPUs held for one trial: ``judge`` and ``workers`` (the same CPU when only one is held), ``held`` all of them."""

    judge: int | None
    workers: int | None
    held: tuple[int, ...]
    inherited: bool = False  # the holder is an ancestor of this process
    since: float | None = None  # when it was taken (epoch seconds)
    fds: list[int] = field(default_factory=list, repr=False)
    before: set[int] | None = field(default=None, repr=False)
    env_before: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.judge is None:
            return "none reserved (no CPU affinity on this system)"
        idle = [c for c in self.held if c not in (self.judge, self.workers)]
        text = (f"cpu {self.judge} for the judge and the workers (one CPU: nothing pinned)" if self.judge == self.workers
                else f"judge on cpu {self.judge}, workers on cpu {self.workers}")
        return (text + (f", cpu {_list(idle)} held idle" if idle else "")
                + f" (machine-wide, {lock_dir()}{', held by a parent process' if self.inherited else ''})")

    def to_json(self) -> dict:
        return {"judge": self.judge, "workers": self.workers, "held": list(self.held), "since": self.since,
                "lock_dir": str(lock_dir())}

    def release(self) -> None:
        """Free the CPUs (a no-op for an inherited reservation; exiting frees them too)."""
        if not self.fds:
            return
        for fd in self.fds:
            try:
                os.ftruncate(fd, 0)  # no stale holder in the file
            except OSError:
                pass
            os.close(fd)
        self.fds = []
        if self.env_before is None:
            os.environ.pop(ENV_HELD, None)
        else:
            os.environ[ENV_HELD] = self.env_before
        if self.before is not None:
            _restrict(self.before)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open(cpu: int, create: bool = True) -> int | None:
    """A descriptor on ``cpu``'s lock file (read-write where allowed); None when it does not exist and ``create`` is off.
    Never through a symlink, never anything but a regular file: the directory is writable by every user."""
    path = lock_dir() / f"cpu{cpu}.lock"
    safe = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    while True:
        try:
            try:
                fd = os.open(path, os.O_RDWR | safe)
            except PermissionError:
                fd = os.open(path, os.O_RDONLY | safe)  # another user's, not writable: flock works on it all the same
        except FileNotFoundError:
            if not create:
                return None
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | safe, 0o666)
            except FileExistsError:
                continue  # made meanwhile by another process
            os.fchmod(fd, 0o666)  # past the umask: every user writes who holds it
        except OSError as e:
            raise Unusable(f"{path} cannot be a CPU lock ({e.strerror}): remove it") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Unusable(f"{path} cannot be a CPU lock (not a regular file): remove it")
        return fd


def try_lock(fd: int) -> bool:
    """Take ``fd``'s exclusive ``flock`` if no one holds it (never waits): whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def taken(cpu: int) -> bool:
    """Whether a reservation holds ``cpu`` now."""
    fd = _open(cpu, create=False)
    if fd is None:
        return False
    try:
        if try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        return True
    finally:
        os.close(fd)


def _holder(cpu: int) -> dict:
    try:
        info = json.loads((lock_dir() / f"cpu{cpu}.lock").read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def holders() -> dict[int, dict]:
    """Every live reservation, by its holder's pid (``{}`` for a holder that said nothing), with ``cpus`` held."""
    out: dict[int, dict] = {}
    try:
        names = [p.name for p in lock_dir().glob("cpu*.lock")]
    except OSError:
        return out
    for name in names:
        try:
            cpu = int(name[3:-5])
            held = taken(cpu)
        except (ValueError, Unusable):
            continue
        if held:
            info = _holder(cpu)
            entry = out.setdefault(int(info.get("pid", -1)), {**info, "cpus": []})
            entry["cpus"].append(cpu)
    return out


def who(info: dict) -> str:
    """One holder, as the waiting line names it."""
    if not info.get("pid"):
        return f"an unnamed holder (cpu {_list(info.get('cpus', []))}: its lock file says nothing)"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    commit = f", commit {str(info['commit'])[:10]}" if info.get("commit") else ""
    return (f"{info.get('what', '?')} pid {info['pid']} (user {info.get('user', '?')}) in {info.get('worktree', '?')}"
            f"{commit}, since {since}, on cpu {_list(info.get('cpus', []))}")


def _ancestors() -> set[int]:
    """This process and its ancestors."""
    out, pid = set(), os.getpid()
    while pid > 0 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


def current() -> Reservation | None:
    """The reservation this process works under: its own or an ancestor's (``PQKERN_CPUS_HELD``), still held; else None."""
    text = os.environ.get(ENV_HELD, "")
    pid, _, cpus = text.partition(":")
    try:
        pid_n, listed = int(pid), _numbers(cpus)
    except ValueError:
        return None
    try:
        if len(listed) < 2 or pid_n not in _ancestors() or not all(taken(c) for c in set(listed)):
            return None
    except Unusable:
        return None
    return Reservation(listed[0], listed[1], tuple(dict.fromkeys(listed)), inherited=pid_n != os.getpid(),
                       since=_holder(listed[0]).get("since"))


def _core(cpu: int) -> set[int]:
    return {cpu} | siblings(cpu)


def _choose(may: list[int], free: set[int], core: Callable[[int], set[int]] = _core) -> tuple[int, int, set[int]] | None:
    """The first free set among ``may``: the workers' CPU from the last down, on a core with nothing held (``core``: a
    CPU's hardware threads); the judge's from the first up, off that core, on a core already partly held if there is
    one (a core a judge leaves half free can hold no trial's workers, so judges pair up on cores)."""
    cores = {c: core(c) for c in may}
    if len(may) == 1:
        return (may[0], may[0], cores[may[0]]) if cores[may[0]] <= free else None
    apart = not set(may) <= cores[may[0]]  # a set with the judge off the workers' core exists
    judges = sorted((c for c in may if c in free), key=lambda c: (cores[c] <= free, c))
    for w in reversed(may):
        if cores[w] <= free:
            j = next((j for j in judges if (j not in cores[w] if apart else j != w)), None)
            if j is not None:
                return j, w, cores[w] | {j}
    return None


def _fixed(wanted: list[int]) -> tuple[int, int, set[int]]:
    judge = wanted[0]
    workers = wanted[1] if len(wanted) > 1 else judge
    return judge, workers, set(wanted) | siblings(workers)


def _take(cpus: set[int]) -> list[int] | None:
    """Lock every CPU of ``cpus`` or none."""
    fds: list[int] = []
    for cpu in sorted(cpus):
        fd = _open(cpu)
        if not try_lock(fd):
            os.close(fd)
            for f in fds:
                os.close(f)
            return None
        fds.append(fd)
    return fds


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o1777)
        os.chmod(path, 0o1777)  # past the umask: every user's trials lock here
    except FileExistsError:
        pass
    except OSError as e:
        raise Unusable(f"cannot make the CPU lock directory {path}: {e}; set {ENV_DIR} to a directory every agent's "
                       "user can write") from None
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise Unusable(f"the CPU lock directory {path} is not a directory (a symlink?): remove it, or set {ENV_DIR}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise Unusable(f"the CPU lock directory {path} is not writable by this user: its owner can run chmod 1777 {path}, "
                       f"or set {ENV_DIR} to a directory every agent's user can write")


def _restrict(cpus: set[int]) -> None:
    """Every thread of this process on ``cpus``."""
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except (ProcessLookupError, PermissionError):
            pass


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def reserve(what: str, worktree: Path | None = None, commit: str = "", wanted: list[int] | None = None,
            say: Callable[[str], None] = _say) -> Reservation:
    """Hold a CPU set for ``what`` (e.g. ``pqkern-trial``), waiting until one is free; ``wanted``: from :func:`parse`.

    Under an ancestor's reservation, that one is returned at once (releasing it is a no-op). Otherwise the process's
    threads, and what it starts, run on the judge's and the workers' CPUs until :meth:`Reservation.release`."""
    if not hasattr(os, "sched_getaffinity"):
        return Reservation(None, None, ())
    mine = current()
    if mine is not None:
        if wanted and (wanted[0], wanted[1] if len(wanted) > 1 else wanted[0]) != (mine.judge, mine.workers):
            raise CpuError(f"--cpus {_list(wanted)}: this process already runs under {mine.describe()}")
        return mine
    may = wanted or allowed()
    directory = lock_dir()
    _ensure_dir(directory)
    seen: frozenset[int] | None = None
    t0 = time.monotonic()
    while True:
        consider = set(may) | {s for c in may for s in siblings(c)}
        free = {c for c in consider if not taken(c)}
        choice = _fixed(wanted) if wanted else _choose(may, free)
        if choice and choice[2] <= free:
            fds = _take(choice[2])
            if fds is not None:
                break
        busy = {pid: info for pid, info in holders().items()
                if pid != os.getpid() and set(info["cpus"]) & (choice[2] if wanted and choice else consider)}
        if busy and frozenset(busy) != seen:
            seen = frozenset(busy)
            say(f"{what}: waiting for a free CPU set ({'--cpus ' + _list(wanted) if wanted else 'allowed: ' + _list(may)}), "
                f"held by {'; '.join(who(i) for i in busy.values())}")
        time.sleep(POLL)
    judge, workers, held = choice
    order = (judge, workers, *sorted(held - {judge, workers}))
    res = Reservation(judge, workers, tuple(dict.fromkeys(order)), since=time.time(), fds=fds,
                      env_before=os.environ.get(ENV_HELD))
    info = json.dumps({"pid": os.getpid(), "user": _user(), "what": what, "worktree": str(worktree or Path.cwd()),
                       "commit": commit, "since": res.since, "judge": judge, "workers": workers}).encode()
    for fd in fds:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:
            pass  # another user's read-only file: held, not said
    os.environ[ENV_HELD] = f"{os.getpid()}:{','.join(map(str, order))}"  # judge, workers (once each), idle
    res.before = os.sched_getaffinity(0)
    _restrict({judge, workers})
    if seen is not None:
        say(f"{what}: CPUs free after {time.monotonic() - t0:.0f} s: {res.describe()}")
    return res


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqkern.bench.cpus",
                                description="Say who holds which CPU, or run COMMAND under a CPU reservation.")
    p.add_argument("--cpus", help="the set to hold (first: the judge's, second: the workers'); default: chosen")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS]: run it holding a set, waiting for one")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        found = holders()
        for info in found.values():
            print(who(info))
        if not found:
            print(f"no CPU is held ({lock_dir()})")
        return 0
    try:
        res = reserve(repr(" ".join(command)[:60]), wanted=parse(args.cpus))
    except (CpuError, Unusable) as e:
        print(f"cpus: {e}", file=sys.stderr)
        return 5
    with res:
        print(f"cpus: {res.describe()}", file=sys.stderr, flush=True)
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
