"""The judge outside ``pqkern-sandbox`` (immutable bench): it runs every trial the sandbox asks for, one at a time.

``pqkern-sandbox`` starts it, from the bench snapshot (``snapshot.py``), before the agent's command;
it runs until the sandbox ends (its stdin closes). It first prepares what the sandbox mounts
read-only: ``results.tsv`` (header only, when missing), ``trials/``, ``.asv/``, every dataset the
trial and ``pqkern-run`` load (:func:`build_data`, once), and asv's machine file. Then it listens
on its unix socket (``wire.py``). For each request it runs ``python -m pqkern.bench.trial ARGS`` in
the repository's working tree with its own environment (:func:`environment`: the snapshot first on
the import path, the working directory never on it, no variable of the agent's) and streams the
trial's output back. The trial reads git through ``gitsafe.py`` and records in asv through a mirror
of the judge's own (``snapshot.py``): nothing the agent can write is run.

Refused at once, exit 5, nothing run: a second request while a trial runs (the trial lock's own
message), ``--no-jail`` (the kernel would run unjailed outside the sandbox), and a working directory
outside the repository this judge judges. A client that goes away has its trial interrupted
(SIGTERM), as killing ``pqkern-trial`` does without the sandbox.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from pqkern.bench import wire
from pqkern.bench.lock import Busy, TrialLock

REFUSED = 5
HARNESS = 6
REQUEST_SECONDS = 30  # for the client to send its request
SEND_SECONDS = 60  # for a client to take the next piece of output before it counts as gone
RUNNER_QUERIES = 1000  # pqkern-run's --queries default
KEPT = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "SHELL")
NOT_KEPT = ("PQKERN_JUDGE", "PQKERN_MEASURED", "PQKERN_CPUS_HELD")
# git, for whatever the trial still runs in the agent's repository: no hooks, no fsmonitor, no commit-graph (it could lie
# about parents), no replace objects, no system or global configuration.
GIT_OVERRIDES = {"core.hooksPath": "/dev/null", "core.fsmonitor": "false", "core.commitGraph": "false",
                 "core.untrackedCache": "false", "log.showSignature": "false"}


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def environment(base: dict[str, str], snapshot: Path, data: Path, writable: list[Path],
                protected: list[Path]) -> dict[str, str]:
    """The judge's environment: the locale, home and temporary directory of ``base``, its ``PQKERN_*`` (the fixture the
    researcher chose), a ``PATH`` without a directory the agent can write, and the bench snapshot first on the import
    path, the working directory never on it; nothing else (no ``PYTHONPATH``, ``NUMBA_*``, ``LD_*`` or ``GIT_*``)."""
    env = {k: v for k, v in base.items() if k in KEPT or k.startswith("LC_")
           or (k.startswith("PQKERN_") and k not in NOT_KEPT)}
    path = []
    for entry in base.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        p = Path(entry)
        if p.is_absolute() and (not _within(p.resolve(), writable) or _within(p.resolve(), protected)):
            path.append(entry)
    env.update(PATH=os.pathsep.join(path) or "/usr/bin:/bin", PYTHONPATH=str(snapshot), PYTHONSAFEPATH="1",
               PYTHONNOUSERSITE="1", PQKERN_DATA=str(data), GIT_NO_REPLACE_OBJECTS="1", GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_COUNT=str(len(GIT_OVERRIDES)))
    for i, (key, value) in enumerate(GIT_OVERRIDES.items()):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def prepare(repo: Path, asv_conf: Path) -> None:
    """Make what the sandbox mounts read-only, and build the data the trial and the agent's own runs load."""
    from pqkern.bench import results, seal

    (repo / "trials").mkdir(exist_ok=True)
    (repo / ".asv").mkdir(exist_ok=True)
    path = repo / "results.tsv"
    if not path.exists():  # a file to mount; a new file has no row, so its last seal is none
        path.write_text("\t".join(results.HEADER) + "\n", encoding="utf-8")
        seal.remember_seal(path, "")
    code = subprocess.run([sys.executable, "-m", "pqkern.bench.judge", "--build-data"], cwd=repo,
                          stdout=sys.stderr).returncode  # in a process of its own: the judge keeps none of it in memory
    if code:
        raise SystemExit(f"pqkern-sandbox: building the data failed (exit {code}; see above)")
    if not (Path.home() / ".asv-machine.json").is_file():
        subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--config", str(asv_conf)], cwd=repo,
                       stdout=subprocess.DEVNULL, stderr=sys.stderr)


def build_data() -> None:
    """What the trial loads, and what ``pqkern-run`` loads on its fixed queries (``flat`` and ``ivf``, on the default
    fixture and on ``smoke``: the fixture, its IVF layout and the cached exact answers), built once, so that the data
    directory can be read-only inside the sandbox."""
    import numpy as np

    from pqkern.bench import datasets
    from pqkern.bench.fixture import default_source
    from pqkern.bench.queries import fixed_queries
    from pqkern.bench.workloads import judged, make

    source = default_source()
    datasets.ensure(source, judged(source))
    for src in (source, "smoke"):
        for workload in ("flat", "ivf"):
            fx = datasets.ensure(src, [workload])
            queries = fixed_queries(fx, RUNNER_QUERIES)
            make(workload, fx, queries).oracle(np.arange(len(queries)))
    print("pqkern-sandbox: the data is ready", file=sys.stderr, flush=True)


class Judge:
    """The server: one thread per connection, one trial at a time."""

    def __init__(self, repo: Path, state: Path, listener: socket.socket):
        self.repo, self.state, self.listener = repo, state, listener
        self.trials: list[subprocess.Popen] = []

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                if peer_uid(conn) != os.getuid():
                    return
                conn.settimeout(REQUEST_SECONDS)
                request = wire.read_request(conn)
            except (OSError, ValueError):
                return
            conn.settimeout(SEND_SECONDS)
            code = self.judge(conn, request)
            try:
                conn.sendall(wire.frame(b"x", str(code).encode()))
            except OSError:
                pass

    def _refuse(self, conn: socket.socket, why: str) -> int:
        try:
            conn.sendall(wire.frame(b"o", f"verdict: refused ({why})\n".encode()))
        except OSError:
            pass
        return REFUSED

    def judge(self, conn: socket.socket, request: dict) -> int:
        argv = request["argv"]
        options = argv[:argv.index("--")] if "--" in argv else argv
        if any(a.startswith("--no-j") for a in options):
            return self._refuse(conn, "inside pqkern-sandbox the judge always jails the kernel: drop --no-jail")
        cwd = Path(request["cwd"])
        if not cwd.is_absolute() or not (cwd.resolve() == self.repo or self.repo in cwd.resolve().parents):
            return self._refuse(conn, f"this sandbox's judge judges {self.repo} only, not {cwd}: run pqkern-trial there")
        try:
            lock = TrialLock(self.state, request.get("head", "?"))
        except Busy as e:
            return self._refuse(conn, str(e))
        try:
            return self._run(conn, argv)
        finally:
            lock.release()

    def _run(self, conn: socket.socket, argv: list[str]) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "pqkern.bench.trial", *argv], cwd=self.repo,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=_interrupted_with_judge)
        self.trials.append(proc)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, b"o")
        sel.register(proc.stderr, selectors.EVENT_READ, b"e")
        sel.register(conn, selectors.EVENT_READ, None)
        client, signalled = True, False
        open_pipes = 2
        while open_pipes:
            for key, _ in sel.select():
                if key.data is None:  # the client: a signal to pass on, or gone
                    try:
                        said = conn.recv(256)
                    except OSError:
                        said = b""
                    name = said.decode(errors="replace").strip().removeprefix("signal ")
                    if not said:
                        client = False
                        sel.unregister(conn)
                    if not signalled:
                        signalled = True
                        sig = signal.Signals[name] if name in ("SIGTERM", "SIGINT", "SIGHUP") else signal.SIGTERM
                        proc.send_signal(sig)
                    continue
                data = os.read(key.fileobj.fileno(), 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                if client:
                    try:
                        conn.sendall(wire.frame(key.data, data))
                    except OSError:  # gone, or not reading: its trial is interrupted as if it had been killed
                        client = False
                        sel.unregister(conn)
                        if not signalled:
                            signalled = True
                            proc.send_signal(signal.SIGTERM)
        sel.close()
        code = proc.wait()
        self.trials.remove(proc)
        return code if code >= 0 else HARNESS

    def stop(self) -> None:
        """Interrupt any trial still running (its client is gone with the sandbox) and wait for it."""
        for proc in list(self.trials):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in list(self.trials):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _interrupted_with_judge() -> None:
    """In a trial: SIGTERM when the judge's thread that started it dies (the trial's own handling then says so)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pqkern.bench.judge", description="The judge outside pqkern-sandbox "
                                "(started by it; not run by hand).")
    p.add_argument("--repo", type=Path)
    p.add_argument("--state", type=Path, help="the judge's private directory (its socket and lock)")
    p.add_argument("--asv-config", type=Path)
    p.add_argument("--socket", type=Path)
    p.add_argument("--build-data", action="store_true", help="only build the data (in the working directory's)")
    args = p.parse_args(argv)
    if args.build_data:
        build_data()
        return 0
    if None in (args.repo, args.state, args.asv_config, args.socket):
        p.error("--repo, --state, --asv-config and --socket are needed")
    prepare(args.repo, args.asv_config)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    args.socket.unlink(missing_ok=True)
    listener.bind(str(args.socket))
    listener.listen(16)
    judge = Judge(args.repo.resolve(), args.state, listener)
    threading.Thread(target=judge.serve, daemon=True).start()
    print("ready", flush=True)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.stdin.buffer.read()  # until pqkern-sandbox closes it: the sandbox has ended (or pqkern-sandbox died)
    listener.close()
    args.socket.unlink(missing_ok=True)
    judge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
