"""How ``pqkern-trial`` inside ``pqkern-sandbox`` asks the judge outside it (immutable bench): one request, a stream back.

Inside the sandbox ``PQKERN_JUDGE`` names a unix socket the judge listens on (bound read-only into
the sandbox, under the hidden judge's directory). ``pqkern-trial`` sees it and, instead of judging,
connects, sends one request (a JSON line: its arguments, working directory and HEAD as it sees it)
and copies what the judge streams back to its own stdout and stderr, then exits with the judge's
exit code: the verdict line, the block and the exit codes are the trial's own, written by the trial
the judge ran. A client that receives SIGTERM, SIGINT or SIGHUP passes the signal on and keeps
copying, so the verdict says ``interrupted`` as it does without the sandbox; a client that dies ends
its connection, and the judge interrupts the trial it ran for it.

Frames from the judge: one byte (``o`` stdout, ``e`` stderr, ``x`` the exit code), four bytes of
length (big-endian), the bytes. Nothing the client sends is run: the judge reads only the request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys

ENV = "PQKERN_JUDGE"
VERSION = 1
MAX_REQUEST = 1 << 16
HARNESS = 6  # trial.EXIT["harness"]; not imported, so that asking the judge loads nothing else
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def frame(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack(">I", len(data)) + data


def _read_exact(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        try:
            chunk = conn.recv(n - len(out))
        except InterruptedError:
            continue
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _head() -> str:
    """HEAD as the agent's own git sees it (only said back in a refusal: the judge reads git itself)."""
    p = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "?"


def ask(argv: list[str]) -> int:
    """Have the judge run ``pqkern-trial argv`` in this working tree; copy its output here; return its exit code."""
    path = os.environ[ENV]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError as e:
        print(f"verdict: error (the judge outside the sandbox does not answer at {ENV}={path}: {e}; the sandbox's "
              f"judge ended: quit and start pqkern-sandbox again)", flush=True)
        return HARNESS
    request = {"version": VERSION, "argv": list(argv), "cwd": os.getcwd(), "head": _head()}
    conn.sendall(json.dumps(request).encode() + b"\n")
    passed: list[int] = []

    def pass_on(signum, frame_):
        if not passed:
            passed.append(signum)
            try:
                conn.sendall(f"signal {signal.Signals(signum).name}\n".encode())
            except OSError:
                pass

    for sig in SIGNALS:
        signal.signal(sig, pass_on)
    out = {b"o": sys.stdout.buffer, b"e": sys.stderr.buffer}
    try:
        while True:
            kind = _read_exact(conn, 1)
            data = _read_exact(conn, struct.unpack(">I", _read_exact(conn, 4))[0])
            if kind == b"x":
                return int(data)
            if kind in out:
                out[kind].write(data)
                out[kind].flush()
    except (EOFError, ValueError, OSError) as e:
        print(f"verdict: error (the judge outside the sandbox ended without a verdict: {e or 'connection closed'})",
              flush=True)
        return HARNESS
    finally:
        conn.close()


def read_request(conn: socket.socket) -> dict:
    """The client's request (ValueError when it is not one)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ValueError("the connection closed before a whole request")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"a request over {MAX_REQUEST} bytes")
    request = json.loads(data)
    if not isinstance(request, dict) or request.get("version") != VERSION:
        raise ValueError("not a pqkern-trial request of this version")
    argv = request.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("a request without its arguments")
    if not isinstance(request.get("cwd"), str) or not isinstance(request.get("head", ""), str):
        raise ValueError("a request without its working directory")
    return request
