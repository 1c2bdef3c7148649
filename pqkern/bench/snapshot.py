"""The judge's own copy of the bench (immutable bench): taken from git at the sandbox's start, out of the agent's reach.

``pqkern-sandbox`` judges with the bench of one commit (``--bench REV``, default HEAD): its
``pqkern/__init__.py``, ``pqkern/bench/``, ``benchmarks/`` and ``asv.conf.json``, read as verified
git objects (``gitsafe.py``: no git command runs in the agent's repository) and written to
``<judge's directory>/judge/bench-<id>/``, which the sandbox hides. The working tree's copies must
hold the same bytes (no file changed, none untracked beside them, ``__pycache__`` aside), so what
the agent reads and runs inside is what judges it; otherwise the sandbox does not start.

asv gets a configuration of the judge's: the snapshot's ``asv.conf.json`` with its benchmarks, its
environments, results and pages in the repository's ``.asv/`` (as before), and its repository a
mirror the judge owns (a bare repository whose objects are the agent's, through ``alternates``, and
whose configuration, hooks and refs are the judge's): asv's git commands never read the agent's
``.git/config``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pqkern.bench import gitsafe, seal

BENCH_DIRS = ("pqkern/bench/", "benchmarks/")
BENCH_FILES = ("asv.conf.json", "pqkern/__init__.py")
ASV_PATHS = ("env_dir", "results_dir", "html_dir")
REGULAR = ("100644", "100755")
MARKER = "source.json"  # in a snapshot: where it came from
STALE_SECONDS = 86400


class SnapshotError(RuntimeError):
    """The bench cannot be snapshot; the message names the path and says what to do."""


def judge_home_path() -> Path:
    return seal.home() / "judge"


def judge_home() -> Path:
    """The judge's private directory, beside its key (hidden inside the sandbox), made if needed."""
    path = judge_home_path()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def in_bench(path: str) -> bool:
    return path in BENCH_FILES or path.startswith(BENCH_DIRS)


def resolve(repo: gitsafe.Repo, rev: str | None) -> str:
    """The commit ``rev`` names (HEAD, a branch, a tag or a commit id, read without git's porcelain)."""
    if rev in (None, "HEAD"):
        return repo.head()[1]
    for ref in (f"refs/heads/{rev}", f"refs/tags/{rev}", rev):
        oid = repo._ref(ref) if ref.startswith("refs/") else ref
        if not oid:
            continue
        try:
            oid, kind, data = repo.object(oid)
        except gitsafe.GitError:
            continue
        while kind == "tag":  # an annotated tag: the object it names
            oid, kind, data = repo.object(data.split(b"\n", 1)[0].split()[1].decode())
        if kind == "commit":
            return oid
    raise SnapshotError(f"--bench {rev}: no such commit, branch or tag in {repo.root}")


def bench_files(repo: gitsafe.Repo, commit: str) -> dict[str, tuple[str, str]]:
    """The bench's paths in ``commit`` -> ``(mode, blob id)``; regular files only."""
    files = {p: e for p, e in repo.files(commit).items() if in_bench(p)}
    odd = [p for p, (mode, _) in files.items() if mode not in REGULAR]
    if odd:
        raise SnapshotError(f"the bench at {commit[:10]} holds {', '.join(odd)}, not a regular file: the judge copies "
                            f"regular files only")
    if "pqkern/bench/judge.py" not in files:
        raise SnapshotError(f"the bench at {commit[:10]} has no pqkern/bench/judge.py (it predates pqkern-sandbox): "
                            f"name a later commit with --bench")
    return files


def stray(root: Path, files: dict[str, tuple[str, str]]) -> list[str]:
    """Files under the bench's directories that ``files`` does not hold (``__pycache__`` aside)."""
    out = []
    for folder in BENCH_DIRS:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in filenames:
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                if rel not in files:
                    out.append(rel)
    return sorted(out)


def check_tree(repo: gitsafe.Repo, commit: str, files: dict[str, tuple[str, str]]) -> None:
    """Refuse a working tree whose bench is not ``commit``'s, byte for byte."""
    dirty = repo.tracked_dirty(commit, sorted(files))
    extra = stray(repo.root, files)
    if dirty or extra:
        what = [f"{p} (changed)" for p in dirty] + [f"{p} (untracked)" for p in extra]
        raise SnapshotError(f"the working tree's bench is not that of {commit[:10]}: {', '.join(what[:5])}"
                            f"{' ...' if len(what) > 5 else ''}; the agent would read and run another bench than the one "
                            f"that judges it: restore it (git checkout -- pqkern/bench benchmarks asv.conf.json; remove "
                            f"untracked files there) or name the commit it holds with --bench")


def _matches(folder: Path, files: dict[str, tuple[str, str]]) -> bool:
    """Whether ``folder`` holds exactly ``files`` (besides its own asv.conf.json and ``__pycache__``)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found |= {(Path(dirpath) / n).relative_to(folder).as_posix() for n in filenames}
    if found != set(files) | {"asv.conf.json", MARKER}:
        return False
    for path, (_, oid) in files.items():
        if path == "asv.conf.json":
            continue
        data = (folder / path).read_bytes()
        algo = "sha256" if len(oid) == 64 else "sha1"
        if hashlib.new(algo, f"blob {len(data)}\0".encode() + data).hexdigest() != oid:
            return False
    return True


def take(root: Path, rev: str | None, mirror_repo: Path) -> tuple[Path, str]:
    """Snapshot the bench of ``rev`` for the working tree at ``root`` (reused when already taken and intact); return its
    folder and the commit. Refuses a working tree whose bench differs from it."""
    repo = gitsafe.Repo(root)
    try:
        commit = resolve(repo, rev)
        files = bench_files(repo, commit)
        check_tree(repo, commit, files)
        home = judge_home()
        key = f"{root}\0{commit}".encode()
        folder = home / f"bench-{hashlib.sha256(key).hexdigest()[:16]}"
        if folder.is_dir() and _matches(folder, files):
            return folder, commit
        shutil.rmtree(folder, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=".new-", dir=home))
        try:
            for path, (_, oid) in files.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_bytes(repo.blob(oid))
            conf = json.loads((work / "asv.conf.json").read_text())
            (work / "asv.conf.json").write_text(json.dumps(asv_config(conf, root, folder, mirror_repo), indent=4) + "\n")
            (work / MARKER).write_text(json.dumps({"repository": str(root), "commit": commit}) + "\n")
            os.replace(work, folder)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return folder, commit
    except gitsafe.GitError as e:
        raise SnapshotError(str(e)) from None
    finally:
        repo.close()


def asv_config(conf: dict, root: Path, folder: Path, mirror: Path) -> dict:
    """The bench's asv configuration, for the judge: benchmarks from the snapshot, environments, results and pages in
    the repository's (paths as the bench names them, from its root), commits from the judge's mirror."""
    out = dict(conf, repo=str(mirror), benchmark_dir=str(folder / conf.get("benchmark_dir", "benchmarks")))
    for key in ASV_PATHS:
        if key in conf:
            out[key] = str((root / conf[key]).resolve())
    return out


def prune() -> None:
    """Remove the judge's snapshots and mirrors of repositories that are gone, the folders of sandboxes that ended
    without cleaning up (a day old, and nobody listens on their socket), and snapshots left half-written a day ago."""
    import socket

    home = judge_home()
    for folder in home.iterdir():
        try:
            if folder.name.startswith("bench-"):
                gone = not Path(json.loads((folder / MARKER).read_text())["repository"]).exists()
            elif folder.name.startswith("mirror-"):
                gone = not Path((folder / "objects" / "info" / "alternates").read_text().strip()).exists()
            elif folder.name.startswith("run-") and time.time() - folder.stat().st_mtime > STALE_SECONDS:
                with socket.socket(socket.AF_UNIX) as s:
                    gone = s.connect_ex(str(folder / "judge.sock")) != 0
            elif folder.name.startswith(".new-"):  # a snapshot being written, or left half-written
                gone = time.time() - folder.stat().st_mtime > STALE_SECONDS
            else:
                continue
        except (OSError, ValueError, KeyError):
            gone = folder.name.startswith(("bench-", "mirror-"))
        if gone:
            shutil.rmtree(folder, ignore_errors=True)


def mirror(root: Path) -> Path:
    """The judge's bare repository for asv, whose objects are those of the working tree at ``root`` (made once)."""
    _, common = gitsafe.git_dirs(root)
    path = judge_home() / f"mirror-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}.git"
    if not (path / "objects").is_dir():
        subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True, env=gitsafe.safe_env(),
                       capture_output=True)
    (path / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (path / "objects" / "info" / "alternates").write_text(str(common / "objects") + "\n")
    return path


def running() -> Path | None:
    """The root of the judge's snapshot this bench runs from (``pqkern-sandbox``'s judge), or None (a working tree's
    bench). Only a folder this module made, in the judge's directory, counts."""
    root = Path(__file__).resolve().parents[2]
    return root if root.parent == judge_home_path() and (root / MARKER).is_file() else None


def asv_config_file() -> Path | None:
    """The judge's asv configuration when the running bench is a snapshot (None otherwise: asv then reads the working
    tree's ``asv.conf.json``, as always)."""
    root = running()
    return root / "asv.conf.json" if root else None
