"""``pqkern-sandbox [--write PATH]... [--scratch DIR] [--bench REV] -- COMMAND...``: the agent in a box, the judge outside.

Run from the repository's working tree. It snapshots the bench of ``REV`` (default HEAD) out of the
agent's reach (``snapshot.py``), starts the judge from that snapshot (``judge.py``), then runs
COMMAND (the agent's CLI, or any command) under bubblewrap: it can read everything the user can
(but the judge's directory, ``~/.local/share/pqkern``, hidden), and write only the working tree,
``.git``, a private ``/tmp`` (``--scratch DIR``, or a temporary directory removed at the end), and
each ``--write PATH`` (the agent's own configuration). The bench (``pqkern/bench/``,
``benchmarks/``, ``asv.conf.json``), the environment (this Python's), ``results.tsv``, ``trials/``,
asv's ``.asv/`` and the data directory stay read-only: every write there fails. ``pqkern-trial``
inside asks the judge (``wire.py``), which judges with its own bench and environment and writes the
records. The network stays. No process outside is visible inside (a PID namespace): none can be
signalled or traced. What it cannot stop, and how to run Claude Code and Codex in it:
``docs/sandbox.md``.

Exit status: COMMAND's, or 125 when the sandbox could not start (the message says why and what to do).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from pqkern.bench import gitsafe, judge, seal, snapshot, wire

FAILED = 125
USAGE = "usage: pqkern-sandbox [--write PATH]... [--scratch DIR] [--bench REV] -- COMMAND [ARGS...]"
TIOCSTI, TIOCLINUX = 0x5412, 0x541C  # type into the terminal's input; the console's own commands


class SandboxError(RuntimeError):
    """The sandbox cannot start; the message says what to do."""


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def parse(argv: list[str]) -> tuple[list[Path], Path | None, str | None, list[str]]:
    """``(write paths, scratch, bench rev, command)`` from the command line."""
    if "--" not in argv:
        raise SandboxError(USAGE)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    writes, scratch, bench = [], None, None
    i = 0
    while i < len(options):
        name, _, value = options[i].partition("=")
        if name in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if name not in ("--write", "--scratch", "--bench"):
            raise SandboxError(f"unknown option {options[i]}\n{USAGE}")
        if not value:
            i += 1
            if i == len(options):
                raise SandboxError(f"{name} needs a value\n{USAGE}")
            value = options[i]
        if name == "--write":
            writes.append(Path(value).expanduser())
        elif name == "--scratch":
            scratch = Path(value).expanduser()
        else:
            bench = value
        i += 1
    if not command:
        raise SandboxError(f"no COMMAND after --\n{USAGE}")
    return writes, scratch, bench, command


def find_bwrap() -> str:
    """bubblewrap's path, once it is known to make the namespaces the sandbox needs here."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise SandboxError("bubblewrap (bwrap) is not installed: Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf "
                           "install bubblewrap; Arch: pacman -S bubblewrap (docs/sandbox.md)")
    probe = subprocess.run([bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--ro-bind", "/", "/", "--proc",
                            "/proc", "--dev", "/dev", "true"], capture_output=True, text=True)
    if probe.returncode:
        raise SandboxError(f"bubblewrap cannot make a user and PID namespace here ({probe.stderr.strip()}): unprivileged "
                           f"user namespaces are off. Turn them on (as root): sysctl -w user.max_user_namespaces=15000; "
                           f"on Debian before 11, sysctl -w kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 and "
                           f"later, sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for "
                           f"bwrap; in a container, run it with user namespaces allowed (docs/sandbox.md). bubblewrap "
                           f"0.8 or later is needed for --disable-userns")
    return bwrap


def tty_filter() -> tempfile.TemporaryFile | None:
    """A seccomp filter (BPF, for ``bwrap --seccomp``) that refuses TIOCSTI and TIOCLINUX: text typed into the
    terminal would run in the researcher's shell once the sandbox ends. None when libseccomp is missing."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError):
        return None
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(38))  # 32-bit calls would name other system calls: ENOSYS
    for request in (TIOCSTI, TIOCLINUX):  # the kernel reads the request as 32 bits: compare only those
        f.add_rule(sc.ERRNO(1), "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    out = tempfile.TemporaryFile()
    f.export_bpf(out)
    out.seek(0)
    return out


class Layout:
    """What the sandbox mounts, and where."""

    def __init__(self, root: Path, writes: list[Path], scratch: Path, data: Path, venv: Path):
        self.root, self.scratch, self.data, self.venv = root, scratch, data, venv
        git_dir, common = gitsafe.git_dirs(root)
        self.git = [d for d in dict.fromkeys((git_dir, common)) if not _within(d, root)]  # a linked worktree's
        self.writes = writes
        self.hidden = seal.home()
        self.protected = [root / "pqkern" / "bench", root / "benchmarks", root / "asv.conf.json", root / "results.tsv",
                          root / "trials", root / ".asv", data, venv]

    def writable(self) -> list[Path]:
        return [self.root, *self.git, self.scratch, *self.writes]

    def check(self) -> None:
        """Refuse a --write path that would let the agent write what the judge reads, or read what it hides."""
        home = Path(os.path.expanduser("~")).resolve()
        base = Path(sys.base_prefix).resolve()
        for w in self.writes:
            if not w.exists():
                raise SandboxError(f"--write {w}: no such file or directory: create it first (mkdir -p {w}, or touch {w} "
                                   f"for a file)")
        for w in [*self.writes, self.scratch]:
            if _within(home, w):
                raise SandboxError(f"{w} holds the home directory {home}: name the agent's own paths in it instead "
                                   f"(e.g. --write ~/.claude)")
            for p in [*self.protected, self.hidden, base]:
                if _within(p, w) or _within(w, p):
                    raise SandboxError(f"{w} holds or lies in {p}, which the agent must not write (or read): name a "
                                       f"narrower path")
        from pqkern.bench import cpus

        for what, path in (("the judge's temporary directory (TMPDIR)", Path(tempfile.gettempdir()).resolve()),
                           ("the CPU lock directory (PQKERN_CPU_LOCKS)", cpus.lock_dir().resolve())):
            if any(_within(path, w) for w in self.writable()):
                raise SandboxError(f"{what}, {path}, would be writable inside the sandbox: the judge keeps files there "
                                   f"that it trusts; set it to a directory outside the working tree and the --write paths")

    def bwrap(self, bwrap: str, sock: Path, command: list[str], cwd: Path, seccomp_fd: int | None) -> list[str]:
        """bubblewrap's command line: read-only root, the writable paths, the protected ones read-only over them (and
        their parents mount points, so that they cannot be moved away), the judge's directory hidden."""
        args = [bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-cgroup-try",
                "--cap-drop", "ALL", "--die-with-parent"]
        args += ["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else ["--new-session"]
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", str(self.scratch), "/tmp"]
        for w in self.writable():
            if w != self.scratch:
                args += ["--bind", str(w), str(w)]
        parents = {a for p in self.protected if _within(p, self.root) for a in p.parents if self.root in a.parents}
        for a in sorted(parents, key=lambda x: len(x.parts)):
            args += ["--bind", str(a), str(a)]
        for p in self.protected:
            args += ["--ro-bind", str(p), str(p)]
        for runtime in self.runtime_dirs():
            args += ["--tmpfs", str(runtime)]
        for other in self.sockets():
            args += ["--ro-bind", os.devnull, str(other)]
        args += ["--tmpfs", str(self.hidden), "--ro-bind", str(sock), str(sock), "--remount-ro", str(self.hidden),
                 "--chdir", str(cwd), "--", *command]
        return args

    def runtime_dirs(self) -> list[Path]:
        """The user's runtime directory (its session bus, ``systemd --user``, agents' sockets), hidden: through them a
        command could ask a service outside to run anything."""
        found = {Path(os.environ["XDG_RUNTIME_DIR"])} if os.environ.get("XDG_RUNTIME_DIR") else set()
        found.add(Path(f"/run/user/{os.getuid()}"))
        return sorted(d.resolve() for d in found if d.is_dir() and not _within(d.resolve(), self.root))

    def sockets(self, top: Path = Path("/run"), depth: int = 5) -> list[Path]:
        """The unix sockets under ``/run`` (docker's, the system bus, ``systemd``'s...): each covered by an empty device,
        for the same reason. Those made after the start, and abstract ones, stay reachable (docs/sandbox.md)."""
        out = []
        hidden = self.runtime_dirs()
        for folder, dirs, files in os.walk(top):
            here = Path(folder)
            if len(here.parts) - len(top.parts) >= depth or any(_within(here, h) for h in hidden):
                dirs[:] = []
                continue
            for name in files:
                try:
                    if stat.S_ISSOCK(os.lstat(here / name).st_mode):
                        out.append(here / name)
                except OSError:
                    pass
        return sorted(out)


def start_judge(layout: Layout, snap: Path, state: Path, sock: Path, python: str) -> subprocess.Popen:
    """The judge, from the snapshot, with its own environment; returns once it is ready (it prepared the data)."""
    env = judge.environment(dict(os.environ), snap, layout.data, layout.writable(), layout.protected)
    proc = subprocess.Popen([python, "-m", "pqkern.bench.judge", "--repo", str(layout.root), "--state", str(state),
                             "--asv-config", str(snap / "asv.conf.json"), "--socket", str(sock)],
                            cwd=snap, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    if proc.stdout.readline().strip() != b"ready":
        proc.wait()
        raise SandboxError(f"the judge did not start (exit {proc.returncode}; see above)")
    return proc


def run(argv: list[str]) -> int:
    writes, scratch, bench, command = parse(argv)
    if not sys.platform.startswith("linux"):
        raise SandboxError(f"pqkern-sandbox needs Linux (bubblewrap), not {sys.platform}")
    if os.environ.get(wire.ENV):
        raise SandboxError("already inside pqkern-sandbox: run COMMAND directly")
    bwrap = find_bwrap()
    try:
        root = gitsafe.find_root(Path.cwd())
    except gitsafe.GitError as e:
        raise SandboxError(f"{e}: run pqkern-sandbox in the repository's working tree") from None
    if not (root / "pqkern" / "bench" / "trial.py").is_file():
        raise SandboxError(f"{root} is not a lance-autoresearch working tree (no pqkern/bench/trial.py)")
    data = Path(os.environ["PQKERN_DATA"]).expanduser() if os.environ.get("PQKERN_DATA") else root / "data"
    data.mkdir(parents=True, exist_ok=True)
    data = data.resolve()  # the judge reads the folder itself, never through a symlink the agent could replace
    venv = Path(sys.prefix).resolve()
    python = str(venv / "bin" / Path(sys.executable).name)
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="pqkern-sandbox-")) if own_scratch else scratch.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    state = None
    judge_proc = None
    try:
        try:
            layout = Layout(root, [w.resolve() for w in writes], scratch, data, venv)
            layout.check()
            snapshot.prune()
            snap, commit = snapshot.take(root, bench, snapshot.mirror(root))
        except (snapshot.SnapshotError, gitsafe.GitError) as e:
            raise SandboxError(str(e)) from None
        state = Path(tempfile.mkdtemp(prefix="run-", dir=snapshot.judge_home()))
        sock = state / "judge.sock"
        print(f"pqkern-sandbox: judging with the bench of {commit[:10]}; preparing the data (once)", file=sys.stderr,
              flush=True)
        judge_proc = start_judge(layout, snap, state, sock, python)
        tty = tty_filter()
        args = layout.bwrap(bwrap, sock, command, Path.cwd(), tty.fileno() if tty else None)
        env = dict(os.environ, **{wire.ENV: str(sock)}, TMPDIR="/tmp")
        env.setdefault("NUMBA_CACHE_DIR", "/tmp/numba-cache")  # the bench's __pycache__ is read-only inside
        env.pop("PQKERN_CPUS_HELD", None)
        return _wait(subprocess.Popen(args, env=env, pass_fds=(tty.fileno(),) if tty else ()))
    finally:
        if judge_proc is not None:
            judge_proc.stdin.close()  # the judge ends: any trial still running (its client is gone) is interrupted
            judge_proc.wait()
        if state is not None:
            shutil.rmtree(state, ignore_errors=True)
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _wait(proc: subprocess.Popen) -> int:
    """COMMAND's exit status; the terminal's interrupts are COMMAND's to handle, a SIGTERM or SIGHUP ends the sandbox."""
    def forward(signum, frame):
        proc.send_signal(signum)

    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    old.update({s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)})
    try:
        code = proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except SandboxError as e:
        print(f"pqkern-sandbox: {e}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
