"""The judge's secret and its seals (immutable bench): records no trial wrote cannot pass as the trial's.

The key is 32 random bytes in ``<home>/.local/share/pqkern/judge.key``, where ``<home>`` is the home
directory the password database gives this process's user (never ``$HOME``, which whoever starts
the judge sets; there is no override). It is made on first use, 0600 in a 0700 directory. A seal
is HMAC-SHA256 under that key, in hex: results.tsv rows (``results.py``), the measurement a trial
hands to asv (``measured.py``) and the vouching cache (``integrity.py``) carry one. The same
directory keeps the last seal of each results file (keyed by its real path), so that rows deleted
from a file's end are seen too.

What a seal proves depends on who can read the key. Inside ``pqkern-sandbox`` the directory is
hidden from the agent, so only the judge can seal. Without the sandbox the agent runs with the
judge's user id and can read the key, and so forge any seal: the seals then stop only a forger who
does not look for the key, and the morning audit (which re-judges every keep from git alone) is
the defence.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import pwd
import tempfile
from pathlib import Path

KEY_BYTES = 32
_KEY: list[bytes] = []  # the key, once read


def home() -> Path:
    """The judge's directory: ``<the user's home from the password database>/.local/share/pqkern``."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".local" / "share" / "pqkern"


def key() -> bytes:
    """The judge's key, made on first use (32 random bytes, 0600, in a 0700 directory)."""
    if _KEY:
        return _KEY[0]
    folder = home()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / "judge.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
    data = path.read_bytes()
    if len(data) != KEY_BYTES:
        raise OSError(f"{path}: not a judge key ({len(data)} bytes, not {KEY_BYTES}); move it aside and run again (a new "
                      f"key makes every earlier seal of this machine unverifiable: start a new branch)")
    _KEY.append(data)
    return data


def sign(data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under the judge's key, in hex."""
    return hmac.new(key(), data, hashlib.sha256).hexdigest()


def verify(data: bytes, tag: str) -> bool:
    """True when ``tag`` is the seal of ``data`` (compared in constant time)."""
    return isinstance(tag, str) and hmac.compare_digest(sign(data), tag)


def _canonical(record: dict) -> bytes:
    return json.dumps({k: v for k, v in record.items() if k != "seal"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def seal_record(record: dict) -> dict:
    """``record`` with a ``seal`` over its canonical JSON (sorted keys, the ``seal`` field excluded)."""
    return dict(record, seal=sign(_canonical(record)))


def verify_record(record: dict) -> str:
    """'' when ``record``'s seal verifies; else why not."""
    if "seal" not in record:
        return "it has no seal"
    return "" if verify(_canonical(record), record["seal"]) else "its seal does not verify"


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) atomically: a temporary file beside it, renamed over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_sealed(name: str) -> dict:
    """The sealed JSON store ``name`` in the judge's directory; {} when it is missing or its seal does not verify."""
    key()
    try:
        tag, _, body = (home() / name).read_bytes().partition(b"\n")
        record = json.loads(body) if verify(body, tag.decode()) else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_sealed(name: str, record: dict) -> None:
    """Write ``record`` as the store ``name`` in the judge's directory: its seal, a newline, its JSON."""
    body = json.dumps(record, separators=(",", ":")).encode()
    write_private(home() / name, sign(body).encode() + b"\n" + body)


SEALS = "results-seals.json"


def last_seal(path: Path) -> str | None:
    """The seal of the last row a trial wrote to the results file at ``path`` (its real path), or None."""
    return read_sealed(SEALS).get("files", {}).get(str(Path(path).resolve()))


def remember_seal(path: Path, seal: str) -> None:
    """Record ``seal`` as the last row's of the results file at ``path``; entries of files gone are dropped."""
    key()
    with open(home() / f"{SEALS}.lock", "a") as lock:  # two trials in two worktrees: one update at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = read_sealed(SEALS)
        files = {p: s for p, s in store.get("files", {}).items() if os.path.exists(p)}
        files[str(Path(path).resolve())] = seal
        write_sealed(SEALS, {"files": files})
