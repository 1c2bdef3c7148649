"""Reading the agent's repository without trusting it (immutable bench).

The agent can write its repository: its config (hooks, ``core.fsmonitor``, filters, which git
runs from the judge's own commands), its replace refs, and the object store itself. So the judge
never runs git in it to read. Objects are read by ``git cat-file --batch`` in a private bare
repository of the judge's whose ``objects/info/alternates`` names the agent's object store: the
agent's config, hooks and replace refs are never read (and ``GIT_NO_REPLACE_OBJECTS=1``,
``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL=/dev/null``, no other ``GIT_*`` variable). Every
commit, tree and blob read is hashed (sha1 or sha256, as the repository's ids are) and must hash
to its id, so a forged object (a loose object file whose content is not what its name says) is
refused, not read. Refs (HEAD, loose and packed branches, linked worktrees) are read from their
files. The working tree is compared with HEAD byte for byte (no ``git status``: no filter or
fsmonitor runs). The only writes are :meth:`Repo.reset_kernel`'s: the files that differ (after a
judged trial, ``pqkern/kernels.py`` alone), one ref and their index entries, with git's plumbing
(``update-ref``, ``update-index``) and hooks and fsmonitor switched off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

KERNEL_PATH = "pqkern/kernels.py"
REGULAR = ("100644", "100755")
SYMLINK = "120000"
GITLINK = "160000"
PER_WORKTREE = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")  # a linked worktree's own refs; others are shared


class GitError(RuntimeError):
    """The repository cannot be read as git would; the message names what and says what to do."""


class Forged(GitError):
    """An object of the repository does not hash to its id: the object store was altered."""


def safe_env(**extra: str) -> dict[str, str]:
    """An environment for git with no system or global config, no replace objects, and no variable of the caller's."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_NO_REPLACE_OBJECTS": "1", "GIT_TERMINAL_PROMPT": "0",
            "HOME": tempfile.gettempdir(), **extra}


def find_root(start: Path) -> Path:
    """The working tree holding ``start``: the nearest directory with a ``.git`` (``GIT_DIR`` and config ignored)."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    raise GitError(f"{start} is not inside a git repository")


def git_dirs(root: Path) -> tuple[Path, Path]:
    """``(git dir, common dir)`` of the working tree at ``root`` (a linked worktree's ``.git`` is a file)."""
    dot = root / ".git"
    if dot.is_file():
        text = dot.read_text().strip()
        if not text.startswith("gitdir: "):
            raise GitError(f"{dot}: not a gitdir file")
        git_dir = (root / text[len("gitdir: "):]).resolve()
    else:
        git_dir = dot.resolve()
    common = git_dir / "commondir"
    common_dir = (git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir
    if (common_dir / "reftable").exists():
        raise GitError(f"{common_dir}: reftable refs are not supported; use a repository with files refs")
    return git_dir, common_dir


@dataclass
class Commit:
    tree: str
    parents: list[str]


class Repo:
    """The agent's repository at ``root``, read through verified objects."""

    def __init__(self, root: Path):
        self.root = root
        self.git_dir, self.common_dir = git_dirs(root)
        self._batch: subprocess.Popen | None = None
        self._private: str | None = None
        self._objects: dict[str, tuple[str, bytes]] = {}
        self._ancestors: dict[str, set[str]] = {}

    # refs

    def ref(self, name: str) -> str | None:
        """The id a ref names (``HEAD``, ``refs/heads/main``, ``refs/tags/v1``: loose, then packed), or None."""
        return self._ref(name)

    def _ref(self, name: str, depth: int = 0) -> str | None:
        if depth > 5:
            raise GitError(f"{name}: symbolic refs nested too deep")
        base = self.git_dir if name == "HEAD" or name.startswith(PER_WORKTREE) else self.common_dir
        path = base / name
        if path.is_file():
            text = path.read_text().strip()
            return self._ref(text[5:].strip(), depth + 1) if text.startswith("ref:") else text
        packed = self.common_dir / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                oid, _, ref = line.partition(" ")
                if ref == name and not line.startswith(("#", "^")):
                    return oid
        return None

    def head(self) -> tuple[str | None, str]:
        """``(branch, commit)`` of HEAD (branch None when detached)."""
        text = (self.git_dir / "HEAD").read_text().strip()
        branch = text[5:].strip() if text.startswith("ref:") else None
        oid = self._ref(branch) if branch else text
        if not oid or len(oid) not in (40, 64):
            raise GitError(f"HEAD ({branch or text}) names no commit: commit something first")
        return (branch.removeprefix("refs/heads/") if branch else None), oid

    def branch(self) -> str:
        """HEAD's branch, or '' when detached."""
        return self.head()[0] or ""

    # objects

    def _start(self, oid_length: int) -> subprocess.Popen:
        if self._batch is None:
            self._private = tempfile.mkdtemp(prefix="pqkern-git-")
            fmt = "sha256" if oid_length == 64 else "sha1"
            subprocess.run(["git", "init", "-q", "--bare", f"--object-format={fmt}", self._private], check=True,
                           env=safe_env(), capture_output=True)
            Path(self._private, "objects", "info", "alternates").write_text(str(self.common_dir / "objects") + "\n")
            self._batch = subprocess.Popen(["git", "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, cwd=self._private,
                                           env=safe_env(GIT_DIR=self._private))
        return self._batch

    def close(self) -> None:
        if self._batch is not None:
            self._batch.stdin.close()
            self._batch.wait()
            self._batch = None
        if self._private:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def object(self, name: str) -> tuple[str, str, bytes]:
        """``(id, type, content)`` of the object ``name`` (a full id or a unique prefix), verified: its content hashes
        to its id."""
        if name in self._objects:
            return (name, *self._objects[name])
        proc = self._start(64 if len(name) == 64 else 40)
        proc.stdin.write(name.encode() + b"\n")
        proc.stdin.flush()
        header = proc.stdout.readline().decode().split()
        if len(header) != 3:
            raise GitError(f"git object {name}: {' '.join(header[1:]) or 'unreadable'}")
        oid, kind, size = header[0], header[1], int(header[2])
        data = proc.stdout.read(size + 1)[:-1]
        algo = "sha256" if len(oid) == 64 else "sha1"
        if hashlib.new(algo, f"{kind} {size}\0".encode() + data).hexdigest() != oid:
            raise Forged(f"git object {oid} does not hash to its id: {self.common_dir / 'objects'} was altered (a forged "
                         f"object); nothing was run or touched: restore the object (git fsck names it) or work in a "
                         f"fresh clone")
        self._objects[oid] = (kind, data)
        return oid, kind, data

    def _typed(self, name: str, kind: str) -> tuple[str, bytes]:
        oid, got, data = self.object(name)
        if got != kind:
            raise GitError(f"git object {name} is a {got}, not a {kind}")
        return oid, data

    def commit(self, name: str) -> tuple[str, Commit]:
        oid, data = self._typed(name, "commit")
        tree, parents = "", []
        for line in data.split(b"\n\n", 1)[0].decode(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
        return oid, Commit(tree, parents)

    def tree(self, oid: str) -> dict[str, tuple[str, str]]:
        """``name -> (mode, id)`` of a tree."""
        _, data = self._typed(oid, "tree")
        width = len(oid) // 2
        out, i = {}, 0
        while i < len(data):
            space = data.index(b" ", i)
            nul = data.index(b"\0", space)
            mode = data[i:space].decode().rjust(6, "0")
            out[data[space + 1:nul].decode(errors="surrogateescape")] = (mode, data[nul + 1:nul + 1 + width].hex())
            i = nul + 1 + width
        return out

    def files(self, commit: str) -> dict[str, tuple[str, str]]:
        """Every path of ``commit``'s tree (blobs, symlinks, gitlinks) -> ``(mode, id)``."""
        out: dict[str, tuple[str, str]] = {}
        stack = [("", self.commit(commit)[1].tree)]
        while stack:
            prefix, tree = stack.pop()
            for name, (mode, oid) in self.tree(tree).items():
                if mode == "040000":
                    stack.append((f"{prefix}{name}/", oid))
                else:
                    out[prefix + name] = (mode, oid)
        return out

    def blob(self, oid: str) -> bytes:
        return self._typed(oid, "blob")[1]

    def kernel(self, commit: str) -> str:
        """``pqkern/kernels.py`` as ``commit`` holds it (a regular file)."""
        entry = self.files(commit).get(KERNEL_PATH)
        if entry is None:
            raise GitError(f"commit {commit[:10]} has no {KERNEL_PATH}")
        if entry[0] not in REGULAR:
            raise GitError(f"{KERNEL_PATH} in commit {commit[:10]} is not a regular file (mode {entry[0]})")
        return self.blob(entry[1]).decode("utf-8")

    def changed_paths(self, a: str, b: str) -> list[str]:
        """The paths whose mode or content differ between commits ``a`` and ``b`` (added and removed included)."""
        fa, fb = self.files(a), self.files(b)
        return sorted(p for p in fa.keys() | fb.keys() if fa.get(p) != fb.get(p))

    def ancestors(self, commit: str) -> set[str]:
        """``commit`` and every commit its verified parents reach (missing parents, as in a shallow clone, end a line)."""
        oid = self.commit(commit)[0]
        if oid not in self._ancestors:
            seen, todo = set(), [oid]
            while todo:
                c = todo.pop()
                if c in seen:
                    continue
                try:
                    parents = self.commit(c)[1].parents
                except Forged:
                    raise
                except GitError:
                    continue
                seen.add(c)
                todo.extend(parents)
            self._ancestors[oid] = seen
        return self._ancestors[oid]

    def is_ancestor(self, commit: str, of: str) -> bool:
        """True when ``commit`` (a full id or a prefix of one) is ``of`` or one of its ancestors."""
        return any(c.startswith(commit) for c in self.ancestors(of))

    # the working tree

    def _real_dirs(self, path: str, checked: dict[str, bool]) -> bool:
        """True when every directory on ``path`` under the root is a directory, not a symlink to one."""
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in checked:
                try:
                    checked[d] = stat.S_ISDIR(os.lstat(self.root / d).st_mode)
                except OSError:
                    checked[d] = False
            if not checked[d]:
                return False
        return True

    def _matches(self, path: str, mode: str, oid: str, dirs: dict[str, bool]) -> bool:
        """True when the working tree's ``path`` holds exactly what the tree entry says (type, mode, bytes)."""
        if mode == GITLINK:
            return True
        if not self._real_dirs(path, dirs):
            return False
        full = self.root / path
        try:
            st = os.lstat(full)
            if mode == SYMLINK:
                data = os.readlink(full).encode(errors="surrogateescape") if stat.S_ISLNK(st.st_mode) else None
            elif stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o100) == (mode == "100755"):
                data = full.read_bytes()
            else:
                data = None
        except OSError:
            return False
        algo = "sha256" if len(oid) == 64 else "sha1"
        return data is not None and hashlib.new(algo, f"blob {len(data)}\0".encode() + data).hexdigest() == oid

    def tracked_dirty(self, commit: str, paths: list[str] | None = None) -> list[str]:
        """The tracked paths (or those of ``paths``) whose working-tree bytes, type or mode differ from ``commit``'s:
        byte for byte, no ``git status`` (no filter or fsmonitor runs). A path under a symlinked directory differs."""
        files = self.files(commit)
        dirs: dict[str, bool] = {}
        return sorted(p for p in (paths if paths is not None else files)
                      if p not in files or not self._matches(p, *files[p], dirs))

    def _git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Plumbing in the agent's repository with hooks and fsmonitor off, only its local config read, and an empty
        folder as its working tree: git re-reads a "racily clean" file when it writes the index, through the clean
        filter the repository's config names; with no file to read, it only marks the entry to be looked at again."""
        cmd = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false",
               "-c", "core.logAllRefUpdates=true", *args]
        with tempfile.TemporaryDirectory(prefix="pqkern-empty-") as empty:
            env = safe_env(GIT_DIR=str(self.git_dir), GIT_WORK_TREE=empty, GIT_COMMITTER_NAME="pqkern-trial",
                           GIT_COMMITTER_EMAIL="pqkern-trial@localhost", GIT_AUTHOR_NAME="pqkern-trial",
                           GIT_AUTHOR_EMAIL="pqkern-trial@localhost")
            return subprocess.run(cmd, cwd=empty, env=env, capture_output=True, text=True, input=stdin)

    def _as_in(self, files: dict[str, tuple[str, str]], path: str, dirs: dict[str, bool]) -> bool:
        """True when the working tree's ``path`` is as ``files`` has it (absent when they have none)."""
        if path in files:
            return self._matches(path, *files[path], dirs)
        parts = path.split("/")
        for i in range(1, len(parts)):  # folders that exist are folders, not symlinks to one; missing ones are made
            d = self.root.joinpath(*parts[:i])
            if not os.path.lexists(d):
                return True
            if not stat.S_ISDIR(os.lstat(d).st_mode):
                return False
        return not os.path.lexists(self.root / path)

    def _write(self, path: str, mode: str, oid: str) -> None:
        """The working tree's ``path`` made the blob ``oid`` (a file, or a symlink), written beside and renamed over."""
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        data = self.blob(oid)
        fd, tmp = tempfile.mkstemp(dir=full.parent, prefix=f".{full.name}.")  # a new file: no symlink is followed
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode == SYMLINK:
            os.unlink(tmp)
            os.symlink(data.decode(errors="surrogateescape"), tmp)
        else:
            os.chmod(tmp, 0o755 if mode == "100755" else 0o644)
        os.replace(tmp, full)

    def _remove(self, path: str) -> None:
        """Remove the working tree's ``path`` and the folders it leaves empty."""
        full = self.root / path
        full.unlink()
        for d in full.parents:
            if d == self.root or any(d.iterdir()):
                break
            d.rmdir()

    def reset_kernel(self, branch: str | None, incumbent: str, candidate: str) -> str:
        """Put the branch (HEAD when ``branch`` is None) back on ``incumbent``, only when HEAD is still ``candidate`` and
        every path the two commits hold differently (``pqkern/kernels.py`` after a judged trial; any, after a refused
        commit) still holds the candidate's bytes in the working tree: move the ref (the candidate stays in its reflog),
        write the incumbent's files, update their index entries. No porcelain, hook, filter or fsmonitor runs; other
        uncommitted work is left as it is. Say what was done, or why nothing was."""
        incumbent, candidate = self.commit(incumbent)[0], self.commit(candidate)[0]
        undo = f"to revert: git reset --hard {incumbent[:10]}"
        now_branch, now = self.head()
        if now != candidate or now_branch != branch:
            return f"NOT reverted: HEAD moved during the trial (now {now[:10]}); {undo}"
        old, new = self.files(candidate), self.files(incumbent)
        changed = self.changed_paths(incumbent, candidate)
        odd = [p for p in changed if any(part in ("", ".", "..") or part.lower() == ".git" for part in p.split("/"))
               or GITLINK in (old.get(p, ("",))[0], new.get(p, ("",))[0])]
        if odd:
            return f"NOT reverted: the commit holds paths a plain revert does not handle ({', '.join(odd[:3])}); {undo}"
        dirs: dict[str, bool] = {}
        moved = [p for p in changed if not self._as_in(old, p, dirs)]
        if moved:
            return f"NOT reverted: {', '.join(moved[:3])} changed during the trial; {undo}"
        ref = ["update-ref", "-m", f"pqkern-trial: back to the incumbent {incumbent[:10]}"]
        ref += [f"refs/heads/{branch}", incumbent, candidate] if branch else ["--no-deref", "HEAD", incumbent, candidate]
        p = self._git(*ref)
        if p.returncode:
            return f"NOT reverted: git update-ref failed ({p.stderr.strip()}); {undo}"
        for path in sorted(changed, key=lambda q: q in new):  # removals first: a file may give way to a folder
            if path in new:
                self._write(path, *new[path])
            else:
                self._remove(path)
        zero = "0" * len(incumbent)
        info = "".join(f"{new[q][0]} {new[q][1]}\t{q}\n" if q in new else f"0 {zero}\t{q}\n" for q in changed)
        p = self._git("update-index", "--index-info", stdin=info)
        if p.returncode:
            return (f"reverted to {incumbent[:10]}, but the index was not updated ({p.stderr.strip()}): git status will "
                    f"show {', '.join(changed[:3])} staged")
        return f"reverted to {incumbent[:10]}"

def kernel(root: Path, commit: str) -> str:
    """``pqkern/kernels.py`` of ``commit`` in the repository at ``root``, verified."""
    return Repo(root).kernel(commit)


def changed_paths(root: Path, a: str, b: str) -> list[str]:
    return Repo(root).changed_paths(a, b)


def is_ancestor(root: Path, a: str, b: str) -> bool:
    return Repo(root).is_ancestor(a, b)


def tracked_dirty(root: Path, head: str) -> list[str]:
    return Repo(root).tracked_dirty(head)


def reset_kernel(root: Path, branch: str | None, incumbent: str, candidate: str) -> str:
    return Repo(root).reset_kernel(branch, incumbent, candidate)
