"""A trial runs only code it can vouch for (immutable bench): checked at every trial, before anything is judged.

:func:`vouch` refuses (exit 5, nothing touched), naming the path or variable and what to do:

- an untracked file under ``pqkern/`` or ``benchmarks/``, or an untracked module or package at
  the repository's root (``python -m`` puts the working directory first on ``sys.path``); a bench
  imported from anywhere but this working tree, unless it is a copy of this tree's bench byte for
  byte (the sandbox's judge runs from one, first on ``PYTHONPATH``);
- a byte-code file (``__pycache__/*.pyc``) that Python would load in place of its source but
  whose code is not its source's (a forged ``.pyc`` runs instead of a clean ``.py``);
- on ``sys.path``, a file no installed distribution owns (its ``RECORD``), other than the
  standard library's; a ``.pth``, ``sitecustomize`` or ``usercustomize`` no distribution owns,
  in any site directory (the user site included);
- a file of the distributions the judge and the workers import (numpy, numba, llvmlite,
  pyseccomp, threadpoolctl, asv, asv_runner, jinja2, markupsafe, pqkern, any other the judge has
  loaded, and the owner of each ``.pth``) whose sha256 is not its ``RECORD``'s, a ``RECORD``
  file that is missing, a file in their folders that ``RECORD`` does not list, a ``RECORD``
  that changed since the judge first vouched for that version (``--accept`` after a reinstall),
  and a ``pqkern`` console script that is not a plain launcher;
- variables that change imports or compilation: ``PYTHONPATH`` and the other ``ENV``, any
  ``NUMBA_*`` (the bench sets its own for its workers), ``PQKERN_MEASURED`` (only the trial
  hands asv a measurement, sealed), and a ``-X pycache_prefix``.

What was hashed or compiled (``installed.py``) is cached per file, keyed by ``(st_dev, st_ino, st_size,
st_mtime_ns, st_ctime_ns)`` (a changed file has a new ctime, which an unprivileged user cannot
set back), in the judge's directory, sealed (``seal.py``): a quiet trial only stats the files. The
judge's own numba functions cache there too (a numba cache file is a pickle: loading one runs
code), so the ``.nbi``/``.nbc`` files in the tree's ``__pycache__`` are never loaded by a trial.
``python -m pqkern.bench.integrity`` prints the problems and the cost; ``--accept`` records the
environment's current ``RECORD`` files as the ones to trust (the researcher, after reinstalling).

What it cannot stop: code that runs before it in the judge's own process. A ``.pth`` or a
launcher that patched this module, an edited interpreter or standard library, or a wrapper the
agent runs instead of the trial defeat an in-process check; inside ``pqkern-sandbox`` the agent
cannot write them, and the morning audit re-judges every keep from git alone.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import site
import sys
import sysconfig
import time
from pathlib import Path

from pqkern.bench import gitsafe, seal
from pqkern.bench.installed import Cache, Dist, distributions, finder_pin, pin_of, pyc_problem, record_hash

__all__ = ["Cache", "Refused", "Vouch", "private_numba_cache", "pyc_problem", "vouch"]

ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE", "PYTHONPLATLIBDIR",
       "PYTHONINSPECT", "PYTHONBREAKPOINT", "PYTHONWARNINGS", "PYTHONPYCACHEPREFIX", "LD_PRELOAD", "LD_LIBRARY_PATH",
       "LD_AUDIT", "PQKERN_MEASURED")
ENV_PREFIXES = ("NUMBA_",)
DISTRIBUTIONS = ("numpy", "numba", "llvmlite", "pyseccomp", "threadpoolctl", "asv", "asv_runner", "jinja2", "markupsafe",
                 "pqkern")
JUDGED_DIRS = ("pqkern", "benchmarks")
STARTUP = ("sitecustomize", "usercustomize")
LAUNCHER = [re.compile(p) for p in (r"# -\*- coding: utf-8 -\*-", r"import (re|sys)", r"from pqkern(\.\w+)+ import \w+",
                                    r"if __name__ == ['\"]__main__['\"]:",
                                    r"    sys\.argv\[0\] = sys\.argv\[0\]\.removesuffix\('\.exe'\)",
                                    r"    sys\.argv\[0\] = re\.sub\(r'\(-script\\\.pyw\|\\\.exe\)\?\$', '', sys\.argv\[0\]\)",
                                    r"    sys\.exit\(\w+\(\)\)", r"")]
SUFFIXES = tuple(importlib.machinery.all_suffixes())


class Refused(RuntimeError):
    """The trial cannot vouch for what it would run; the message names each path or variable and what to do."""


class Vouch:
    """One vouching: the problems found, the cache, what was checked."""

    def __init__(self, root: Path, repo: gitsafe.Repo, head: str, cache: Cache):
        self.root, self.repo, self.head, self.cache = root, repo, head, cache
        self.problems: list[str] = []
        self.files = 0
        self.seconds = 0.0

    def say(self, problem: str) -> None:
        if problem and problem not in self.problems:
            self.problems.append(problem)

    def bench_root(self) -> Path:
        """The folder the bench was imported from (this working tree, or a copy of its bench, as the sandbox's judge
        runs from)."""
        return Path(sys.modules["pqkern"].__file__).resolve().parent.parent

    def environment(self) -> None:
        outside = self.bench_root() != self.root.resolve()
        for name in sorted(os.environ):
            if name == "PYTHONPATH" and outside and {Path(p).resolve() for p in os.environ[name].split(os.pathsep)
                                                     if p} == {self.bench_root()}:
                continue  # the bench's own copy first on the path: tree() checks it is this tree's, byte for byte
            if name in ENV or name.startswith(ENV_PREFIXES):
                what = "the trial hands asv its own measurement" if name == "PQKERN_MEASURED" else \
                    "it changes what the judge or its workers import or compile"
                self.say(f"${name} is set ({what}): unset it (env -u {name} ...)")
        if sys.pycache_prefix:
            self.say(f"-X pycache_prefix={sys.pycache_prefix}: byte code is read from outside the tree; run without it")

    def tree(self) -> None:
        """Untracked files where the judge imports from, and forged byte code there."""
        tracked = set(self.repo.files(self.head))
        for top in JUDGED_DIRS:
            for folder, dirs, files in os.walk(self.root / top):
                rel = Path(folder).relative_to(self.root).as_posix()
                for d in dirs:
                    if os.path.islink(os.path.join(folder, d)):
                        self.say(f"{rel}/{d}: a symlink, where the bench imports from: remove it (git checkout "
                                 f"restores a tracked folder)")
                for f in files:
                    path = f"{rel}/{f}"
                    if path in tracked:
                        continue
                    if os.path.basename(folder) == "__pycache__" and f.endswith(".pyc"):
                        self.say(pyc_problem(Path(folder) / f, self.cache))
                    elif os.path.basename(folder) == "__pycache__" and f.endswith((".nbi", ".nbc")):
                        continue  # numba's cache: the judge keeps its own (private_numba_cache), never loads these
                    else:
                        self.say(f"{path}: untracked, where the bench imports from: delete it (or move it out of the "
                                 f"repository)")
        tops = {p.split("/")[0] for p in tracked}
        for entry in os.scandir(self.root):
            if entry.name not in tops and _importable(entry):
                self.say(f"{entry.name}: an untracked module at the repository's root (python -m imports from there "
                         f"first): delete it or move it out of the repository")
        bench = self.bench_root()
        if bench != self.root.resolve():
            for path in self.differing_bench(bench):
                self.say(f"{bench / path}: the bench was imported from {bench}, whose {path} is not this working tree's: "
                         f"run the trial with this clone's own environment, or as python -m pqkern.bench.trial from "
                         f"{self.root}")

    def differing_bench(self, bench: Path) -> list[str]:
        """The files of the bench (``pqkern/__init__.py``, ``pqkern/bench/``, ``benchmarks/``) in the folder ``bench``
        that are not byte for byte this working tree's (missing on either side included; byte code checked apart)."""
        def files(top: Path) -> dict[str, Path]:
            out = {"pqkern/__init__.py": top / "pqkern" / "__init__.py"}
            for sub in ("pqkern/bench", *JUDGED_DIRS[1:]):
                for folder, _, names in os.walk(top / sub):
                    for n in names:
                        path = Path(folder) / n
                        if path.parent.name == "__pycache__":
                            if top == bench and n.endswith(".pyc"):
                                self.say(pyc_problem(path, self.cache))
                            continue
                        out[path.relative_to(top).as_posix()] = path
            return out

        mine, theirs = files(self.root), files(bench)
        return sorted(p for p in mine.keys() | theirs.keys() if p not in mine or p not in theirs
                      or not theirs[p].is_file() or theirs[p].read_bytes() != mine[p].read_bytes())

    def site_dirs(self) -> list[Path]:
        dirs = [*site.getsitepackages(), site.getusersitepackages(),
                *(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))]
        return list(dict.fromkeys(Path(d) for d in dirs if os.path.isdir(d)))

    def check(self) -> None:
        sites = {d: distributions(d) for d in self.site_dirs()}
        owned = {p for dists in sites.values() for d in dists.values() for p in d.entries}
        verify = {re.sub(r"[-_.]+", "_", n).lower() for n in DISTRIBUTIONS}
        for site_dir, dists in sites.items():
            tops = {t for d in dists.values() for t in d.top_level()} | {"__pycache__"}
            for entry in os.scandir(site_dir):
                path = os.path.normpath(entry.path)
                startup = entry.name.endswith(".pth") or entry.name.split(".")[0] in STARTUP
                if entry.name not in tops or (startup and path not in owned):
                    self.say(f"{path}: in a site directory, but no installed distribution owns it (runs or imports at "
                             f"every start): delete it")
                if startup and path in owned:
                    verify |= {n for n, d in dists.items() if path in d.entries}
            for pyc in (site_dir / "__pycache__").glob("*.pyc"):
                self.say(pyc_problem(pyc, self.cache))
        stdlib = tuple(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib"))
        for name in STARTUP:  # the interpreter's own (Debian ships a sitecustomize) is trusted as its library is
            spec = importlib.util.find_spec(name) if name not in sys.modules else sys.modules[name].__spec__
            if spec and spec.origin and os.path.normpath(spec.origin) not in owned \
                    and not os.path.normpath(spec.origin).startswith(stdlib):
                self.say(f"{spec.origin}: a {name} no installed distribution owns (runs at every start): delete it")
        for path in sys.path:
            self.path_entry(Path(path or "."), set(sites), owned)
        loaded = {os.path.normpath(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
        for dists in sites.values():
            verify |= {n for n, d in dists.items() if not loaded.isdisjoint(d.entries)}
            for n in sorted(verify & set(dists)):
                self.distribution(dists[n])
        missing = {re.sub(r"[-_.]+", "_", n).lower() for n in DISTRIBUTIONS} - {n for ds in sites.values() for n in ds}
        for n in sorted(missing):
            self.say(f"{n}: not installed in this environment (pip install -e . installs it)")

    def path_entry(self, path: Path, sites: set[Path], owned: set[str]) -> None:
        """A ``sys.path`` folder that is neither a site directory nor the standard library: only owned modules."""
        stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
        real = path.resolve()
        if real in sites or real in (self.root.resolve(), self.bench_root()) or not real.is_dir() \
                or any(str(real).startswith(s) for s in stdlib):
            return  # the root and the bench's copy: tree()
        if self.root.resolve() in real.parents:
            tracked = {p for p in self.repo.files(self.head)}
            rel = real.relative_to(self.root.resolve()).as_posix()
            for entry in os.scandir(real):
                name = entry.name if rel == "." else f"{rel}/{entry.name}"
                if name not in tracked and _importable(entry) and not any(t.startswith(name + "/") for t in tracked):
                    self.say(f"{entry.path}: an untracked module on the judge's import path: delete it")
            return
        for entry in os.scandir(real):
            if _importable(entry) and os.path.normpath(entry.path) not in owned:
                self.say(f"{entry.path}: on the judge's import path, but no installed distribution owns it: delete it")

    def distribution(self, dist: Dist) -> None:
        """Every file of ``dist`` as its RECORD says, nothing else in its folders, and its RECORD the trusted one."""
        base = str(dist.site) + os.sep
        label = f"{dist.name} {dist.version}"
        # "/2": pinned without METADATA (installed.UNPINNED); a checkout whose bench pins the older way keeps its own
        pin, key = pin_of(dist), f"{dist.name}=={dist.version}/2"
        if key not in self.cache.pins:  # the first time the judge sees this version: trusted from now on
            self.cache.pins[key] = pin
            self.cache.changed = True
        if self.cache.pins[key] != pin:
            self.say(f"{dist.record}: {label}'s RECORD is not the one the judge first vouched for: if you (the "
                     f"researcher) reinstalled it, run python -m pqkern.bench.integrity --accept; otherwise the "
                     f"environment was edited: set it up again (scripts/setup.sh)")
        for path, digest in dist.entries.items():
            name = os.path.basename(path)
            if name == "RECORD" or not digest:
                continue
            try:
                st = os.stat(path)
            except OSError:
                self.say(f"{path}: listed in {label}'s RECORD but missing: reinstall {dist.name}")
                continue
            self.files += 1
            if record_hash(Path(path), st, self.cache) != digest:
                self.say(f"{path}: not the file {label} installed (its sha256 differs from RECORD's): reinstall "
                         f"{dist.name} (pip install --force-reinstall --no-deps {dist.name}=={dist.version})")
            elif dist.name == "pqkern" and not path.startswith(base):
                self.launcher(Path(path))
            elif re.fullmatch(r"__editable___.*_finder\.py", name):
                if f"finder:{key}" not in self.cache.pins:
                    self.cache.pins[f"finder:{key}"] = finder_pin(Path(path))
                    self.cache.changed = True
                if self.cache.pins[f"finder:{key}"] != finder_pin(Path(path)):
                    self.say(f"{path}: not the editable finder the judge first vouched for: set the environment up "
                             f"again (scripts/setup.sh), then python -m pqkern.bench.integrity --accept")
        for top in sorted(dist.top_level()):
            folder = dist.site / top
            if not folder.is_dir() or top.endswith(".dist-info"):
                continue
            for here, _, files in os.walk(folder):
                for f in files:
                    path = os.path.normpath(os.path.join(here, f))
                    if path in dist.entries and not path.endswith(".pyc"):
                        continue
                    if os.path.basename(here) == "__pycache__" and f.endswith(".pyc"):
                        self.say(pyc_problem(Path(path), self.cache))
                    elif path not in dist.entries:
                        self.say(f"{path}: in {label}'s folder but not in its RECORD (it may be imported in place of "
                                 f"an installed module): delete it")

    def launcher(self, path: Path) -> None:
        """A console script of pqkern's holds only the launcher of its entry point (its RECORD line can be edited)."""
        lines = path.read_text(errors="replace").splitlines()
        bad = [line for line in lines[1:] if not any(p.fullmatch(line) for p in LAUNCHER)]
        if not lines or not lines[0].startswith("#!") or bad:
            self.say(f"{path}: not a plain launcher of pqkern ({(bad or lines or [''])[0][:60]!r}): reinstall it (pip "
                     f"install -e .)")


def _importable(entry: os.DirEntry) -> bool:
    """True when Python could import ``entry`` by a name: a module file, or a package (a folder with an __init__)."""
    stem = entry.name.split(".")[0]
    if not stem.isidentifier():
        return False
    if entry.is_dir():
        return any(os.path.exists(os.path.join(entry.path, "__init__" + s)) for s in SUFFIXES)
    return entry.name.endswith(SUFFIXES)


def private_numba_cache() -> Path:
    """The judge's own compiled functions (``cache=True``) cache in the judge's directory, never in the tree's
    ``__pycache__``, where anyone could leave a numba cache file (a pickle: loading it runs code)."""
    from numba.core import config
    from numba.core.caching import FunctionCache
    from numba.core.dispatcher import Dispatcher

    folder = seal.home() / "numba-cache"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.CACHE_DIR = str(folder)
    for name, module in list(sys.modules.items()):
        if name.startswith("pqkern.") and module is not None:
            for obj in list(vars(module).values()):
                if isinstance(obj, Dispatcher) and isinstance(obj._cache, FunctionCache):
                    obj.enable_caching()  # the cache locator is chosen when the cache is made: made again, here
    return folder


def vouch(root: Path, repo: gitsafe.Repo, head: str, use_cache: bool = True) -> Vouch:
    """Every check above, for the working tree at ``root`` whose HEAD is ``head``; raises :class:`Refused` naming each
    problem. Returns the vouching (its ``seconds`` and how many files it checked)."""
    start = time.monotonic()
    v = Vouch(root, repo, head, Cache.load(use_cache))
    v.environment()
    v.tree()
    v.check()
    v.cache.save()
    private_numba_cache()
    v.seconds = time.monotonic() - start
    if v.problems:
        shown = v.problems[:8] + ([f"and {len(v.problems) - 8} more"] if len(v.problems) > 8 else [])
        raise Refused("the trial cannot vouch for the code it would run: " + "; ".join(shown)
                      + " (nothing was run or touched)")
    return v


def main(argv: list[str] | None = None) -> int:
    """``python -m pqkern.bench.integrity [--accept] [--cold]``: vouch for this working tree and environment."""
    args = argv if argv is not None else sys.argv[1:]
    import pqkern  # noqa: F401 - the bench whose origin is checked

    root = gitsafe.find_root(Path.cwd())
    repo = gitsafe.Repo(root)
    head = repo.head()[1]
    if "--accept" in args:
        cache = Cache.load()
        cache.pins = {}
        cache.changed = True
        cache.save()
    try:
        v = vouch(root, repo, head, use_cache="--cold" not in args)
    except Refused as e:
        print(f"refused: {e}")
        return 5
    print(f"vouched: {v.files} files of {root} and {sys.prefix} in {v.seconds:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
