"""The import allowlist and the OS jail, attacked: each attack kernel is refused by the policy with its line
and, with the policy switched off, stopped by the jail in a real jailed worker-like process.

Run as a script to measure the jail's cost: ``.venv/bin/python tests/test_jail.py [--reps 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pqkern.bench.jail import describe_death
from pqkern.bench.policy import allowed_attributes, violations

REPO = Path(__file__).resolve().parent.parent
ATTACKS = REPO / "tests" / "kernels" / "attacks"
LEGIT = [*sorted((REPO / "tests" / "kernels" / "legit").glob("*.py")),
         *sorted((REPO / "pqkern" / "tools" / "demo_kernels").glob("*.py"))]
SIGSYS = int(signal.SIGSYS)
N, K = 2048, 10

# The worker's part that matters here: import numpy and numba, map the fixture, copy the kernels into the private
# tmp, enter the jail, then import each copy and call prepare/search. No policy check: the jail stands alone.
WORKER = r"""
import importlib.util, json, os, shutil, sys, time
import numpy as np
import numba
import numba.np.ufunc.parallel
from pqkern.bench import jail

cfg = json.loads(sys.argv[1])
numba.np.ufunc.parallel._launch_threads()  # load the threading layer before the jail (omp: no thread at 1 thread)
data = cfg["data"]
codes, codebook, queries = (np.load(os.path.join(data, f"{n}.npy"), mmap_mode="r") for n in ("codes", "codebook", "queries"))
copies = []
for path in cfg["kernels"]:
    copies.append(os.path.join(cfg["tmp"], "kernel_" + os.path.basename(path)))
    if not os.path.exists(copies[-1]):  # a later run in the same tmp keeps the copy, so numba's cache still matches
        shutil.copy2(path, copies[-1])
t0 = time.perf_counter()
if cfg["jail"]:
    jail.enter(cfg["tmp"], allow_threads=cfg["allow_threads"], forbid=cfg["forbid"])
out = {"ids": [], "cache_hits": 0, "enter_s": time.perf_counter() - t0}
for copy in copies:
    spec = importlib.util.spec_from_file_location(os.path.basename(copy)[:-3], copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache=True finds the module again by name
    try:
        spec.loader.exec_module(module)
        ids, dists = module.search(module.prepare(codes, codebook), queries[0], 10)
    except Exception as e:
        print(f"RAISED {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    out["ids"].append([int(x) for x in ids])
    out["cache_hits"] += sum(sum(f.stats.cache_hits.values()) for f in vars(module).values() if hasattr(f, "stats"))
out["opt"], out["threads"] = int(numba.config.OPT), len(os.listdir("/proc/self/task"))
out["status"] = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
print("RESULT " + json.dumps(out), flush=True)
"""
# A sacrificial parent between pytest and the worker: the attacks aim at their parent.
PARENT = "import subprocess, sys\nrc = subprocess.call(sys.argv[1:])\nprint(f'CHILD_RC {rc}', flush=True)\n"

CACHED_KERNEL = '''"""Legitimate: cache=True, fastmath, no bounds checks, numpy error model, a prange scan, argpartition."""

import math

import numba
import numpy as np
from numba import njit, prange, types


@njit(cache=True, fastmath=True, boundscheck=False, error_model="numpy")
def _table(query, codebook):
    t = np.empty((16, 256), np.float32)
    for s in range(16):
        for c in range(256):
            acc = np.float32(0.0)
            for d in range(8):
                x = query[s * 8 + d] - codebook[s, c, d]
                acc += x * x
            t[s, c] = acc
    return t


@numba.njit(cache=True, parallel=True)
def _scan(codes, table):
    n = codes.shape[1]
    dists = np.empty(n, np.float32)
    for r in prange(n):
        acc = np.float32(0.0)
        for s in range(16):
            acc += table[s, codes[s, r]]
        dists[r] = acc
    return dists


@numba.njit(cache=True)
def _top(dists, k):
    part = np.argpartition(dists, k)[:k]
    order = np.argsort(dists[part], kind="mergesort")
    return part[order].astype(np.int64), dists[part[order]]


def prepare(codes, codebook):
    return np.ascontiguousarray(codes), np.ascontiguousarray(codebook, dtype=types.float32.name)


def search(index, query, k):
    codes, codebook = index
    ids, dists = _top(_scan(codes, _table(query, codebook)), k)
    assert math.isfinite(float(dists[0]))
    return ids, dists
'''


DENIED = "PermissionError: [Errno 13] Permission denied: '"


@dataclass
class Attack:
    snippet: str  # the line the policy must name ...
    refusal: str  # ... and what it must say about it
    outcome: str  # "sigsys", "runs", or the text of the exception the kernel must raise


ATTACK_TABLE = {
    "shell_ctypeslib.py": Attack("import numpy.ctypeslib as npc", "import numpy.ctypeslib", "sigsys"),
    "shell_attribute.py": Attack("np.ctypeslib.load_library", "attribute .ctypeslib", "sigsys"),
    "numba_config.py": Attack("from numba import config as cfg", "from numba import config", "runs"),
    "socket_connect.py": Attack("import socket", "import socket", "sigsys"),
    "fork_os.py": Attack("import os", "import os", "sigsys"),
    "spawn_subprocess.py": Attack("import subprocess", "import subprocess", "sigsys"),
    "fork_ctypes.py": Attack("import ctypes", "import ctypes", "sigsys"),
    "read_groundtruth.py": Attack("with open(", "name 'open'", DENIED + "{data}"),
    "write_results.py": Attack("with open(", "name 'open'", DENIED + "{repo}/results.tsv'"),
    "write_trials.py": Attack("with open(", "name 'open'", DENIED + "{repo}/trials/"),
    "truncate_results.py": Attack("import os", "import os", DENIED + "{repo}/results.tsv'"),
    "signal_parent.py": Attack("import signal", "import signal", "sigsys"),
    "proc_parent_environ.py": Attack("with open(", "name 'open'", DENIED + "/proc/"),
    "proc_parent_mem.py": Attack("with open(", "name 'open'", DENIED + "/proc/"),
    "background_thread.py": Attack("import threading", "import threading", "sigsys"),
    "io_uring.py": Attack("import ctypes", "import ctypes", "sigsys"),
    "ptrace_parent.py": Attack("import ctypes", "import ctypes", "sigsys"),
    "renice_parent.py": Attack("import os", "import os", "sigsys"),
    "limit_parent.py": Attack("import resource", "import resource", "sigsys"),
    "sigio_parent.py": Attack("import fcntl", "import fcntl", "sigsys"),
    "sysv_shm.py": Attack("import ctypes", "import ctypes", "sigsys"),
}


@dataclass
class Run:
    parent_rc: int
    child_rc: int | None
    stdout: str
    stderr: str

    @property
    def result(self) -> dict:
        lines = [line for line in self.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, self.stdout + self.stderr
        return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory) -> dict:
    """A small fixture in a data directory outside the jail, the reference answer, and a repo-like directory."""
    root = tmp_path_factory.mktemp("jail")
    data, repo = root / "data", root / "repo"
    (repo / "trials").mkdir(parents=True)
    data.mkdir()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (16, N), dtype=np.uint8)
    codebook = (rng.random((16, 256, 8)) * 10).astype(np.float32)
    queries = (rng.random((4, 128)) * 10).astype(np.float32)
    for name, arr in (("codes", codes), ("codebook", codebook), ("queries", queries), ("groundtruth", np.arange(40))):
        np.save(data / f"{name}.npy", arr)
    (repo / "results.tsv").write_text("commit\trecall_at_10\n")
    table = ((codebook.astype(np.float64) - queries[0].astype(np.float64).reshape(16, 1, 8)) ** 2).sum(axis=2)
    dists = table[np.arange(16)[:, None], codes].sum(axis=0)
    return {"data": data, "repo": repo, "reference": np.argsort(dists, kind="stable")[:K].tolist()}


def run_worker(files: dict, private: Path, kernels: list[Path], *, jail: bool = True, threads: int = 1,
               env: dict | None = None) -> Run:
    """Run the worker-like process (through a sacrificial parent) on ``kernels``; ``private`` is its private tmp."""
    private.mkdir(exist_ok=True)
    cfg = {"data": str(files["data"]), "tmp": str(private), "kernels": [str(k) for k in kernels], "jail": jail,
           "allow_threads": threads > 1, "forbid": [str(files["repo"]), str(files["data"])]}
    full_env = dict(os.environ, NUMBA_CACHE_DIR=str(private / "numba_cache"), TMPDIR=str(private),
                    NUMBA_NUM_THREADS=str(threads), NUMBA_THREADING_LAYER="omp", OMP_NUM_THREADS="1",
                    OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", **(env or {}))
    worker = private.parent / "worker.py"
    worker.write_text(WORKER)
    p = subprocess.run([sys.executable, "-c", PARENT, sys.executable, str(worker), json.dumps(cfg)], cwd=files["repo"],
                       env=full_env, capture_output=True, text=True, timeout=300)
    rcs = [line.split()[1] for line in p.stdout.splitlines() if line.startswith("CHILD_RC ")]
    return Run(p.returncode, int(rcs[0]) if rcs else None, p.stdout, p.stderr)


def _line_of(source: str, snippet: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if snippet in line)


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize("name", sorted(ATTACK_TABLE))
def test_policy_refuses_each_attack_with_its_line(name):
    source = (ATTACKS / name).read_text()
    attack, found = ATTACK_TABLE[name], violations(source)
    line = _line_of(source, attack.snippet)
    assert any(n == line and attack.refusal in what for n, what in found), found


def test_policy_allows_what_kernels_legitimately_write():
    source = '''
import math
from math import sqrt
import numba
import numba as nb
import numba.types
import numpy as np
from numba import float32, njit, prange, types, uint8
from numba.typed import Dict, List


@numba.njit(cache=True, fastmath=True, boundscheck=False, parallel=True, error_model="numpy")
def f(a, k):
    out = np.empty(a.shape[0], np.float32)
    for i in numba.prange(a.shape[0]):
        out[i] = math.sqrt(a[i]) + sqrt(np.float32(2.0))
    part = np.argpartition(out, k)[:k]
    return part[np.argsort(out[part])].astype(np.int64), np.full(k, np.inf, dtype=np.float32), np.iinfo(np.uint32).max


@njit(types.float32(types.float32[:]), nogil=True)
def g(a):
    return a.sum()


@nb.njit
def h(a):
    items = List.empty_list(numba.types.int64)
    items.append(uint8(1))
    return items, float32(a.T.shape[0]), a.reshape(-1).astype(np.float32), a.dtype.itemsize


def prepare(codes, codebook):
    table = Dict.empty(key_type=types.int64, value_type=types.float32)
    return np.ascontiguousarray(codes.T), codebook, table


def search(index, query, k):
    rows, codebook = index[0], index[1]
    return f(query, k)[:2]
'''
    assert violations(source) == [], violations(source)
    for path in [REPO / "pqkern" / "kernels.py", *LEGIT]:
        assert violations(path.read_text()) == [], path


@pytest.mark.parametrize("source, fragment", [
    ("import numpy.ctypeslib", "import numpy.ctypeslib"),
    ("from numpy import ctypeslib", "from numpy import ctypeslib"),
    ("import numba.config as cfg", "import numba.config"),
    ("from numba import config", "from numba import config"),
    ("from numba.core import config", "from numba.core import ..."),
    ("import numba.misc", "import numba.misc"),
    ("import numpy.testing", "import numpy.testing"),
    ("import numpy.f2py", "import numpy.f2py"),
    ("import numpy.linalg", "import numpy.linalg"),
    ("from numpy import *", "from numpy import *"),
    ("from . import kernels", "from . import ..."),
    ("from .numpy import empty", "from .numpy import ..."),
    ("__import__('os')", "name '__import__'"),
    ("import importlib", "import importlib"),
    ("import numpy as np\nnp.ndarray = list", "np.ndarray cannot be assigned"),
    ("import math\ndel math.sqrt", "math.sqrt cannot be assigned"),
    ("import numpy as np\nm = np", "module np may only be used as np.<attribute>"),
    ("import numpy as np\nprint(np)", "module np may only be used as np.<attribute>"),
    ("import numba\nt = numba.types", "module numba.types may only be used"),
    ("from numba import types\ntypes.float32 = 1", "types.float32 cannot be assigned"),
    ("import numba\nnumba.config.OPT = 0", "attribute .config"),
    ("import numba\nnumba.core.config", "attribute .core"),
    ("import numba\nnumba.np.numpy_support", "attribute .np"),
    ("import numpy as np\nnp._core.multiarray", "attribute ._core"),
    ("import numpy as np\nnp.lib.format.open_memmap('x')", "attribute .lib"),
    ("import numpy as np\nnp.rec.fromfile('x')", "attribute .rec"),
    ("import numpy as np\na = np.empty(3)\na.ctypes.data", "attribute .ctypes"),
    ("import numba\nnumba.objmode()", "attribute .objmode"),
    ("import numba\nnumba.set_num_threads(2)", "attribute .set_num_threads"),
    ("import numba\n@numba.njit\ndef f(): pass\nf.targetctx", "attribute .targetctx"),
    ("match x:\n    case C(ctypeslib=m): pass", "attribute .ctypeslib"),
    ("import numpy as np\nvars(np)", "name 'vars'"),
])
def test_policy_refuses_every_other_route(source, fragment):
    assert any(fragment in what for _, what in violations(source)), violations(source)


def test_the_allow_list_reaches_no_other_module_and_no_introspection():
    """No attribute of numpy, numba, math, numba.types or numba.typed that yields another module is allowed, nor any
    name through which Python's introspection reaches frames, code, globals or the harness."""
    import math

    import numba
    import numba.typed

    numba.typed.List, numba.typed.Dict  # noqa: B018  (load numba.typed's lazy submodules)
    allowed = (np, numba, math, numba.types, numba.typed)
    leaks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in allowed:
            for name in dir(module):
                value = getattr(module, name, None)
                if isinstance(value, types.ModuleType) and not any(value is m for m in allowed):
                    alias = {"numpy": "np"}.get(module.__name__, module.__name__)
                    source = f"import numba\nimport numba.types\nimport numba.typed\nimport numpy as np\nimport math\n" \
                             f"x = {alias}.{name}"
                    if not violations(source):
                        leaks.append(f"{module.__name__}.{name}")
    assert not leaks, f"modules reachable through the allow-list: {leaks}"
    introspection = {"f_globals", "f_locals", "f_back", "f_code", "gi_frame", "gi_code", "cr_frame", "ag_frame",
                     "tb_frame", "tb_next", "co_filename", "co_consts", "cell_contents", "mro", "py_func", "modules",
                     "datetime64", "timedelta64", "busday_count", "format", "ctypes", "base", "data", "load", "memmap"}
    assert not introspection & allowed_attributes(), introspection & allowed_attributes()


# ---------------------------------------------------------------- the jail


@pytest.mark.parametrize("name", sorted(ATTACK_TABLE))
def test_jail_stops_each_attack_without_the_policy(fixture_files, tmp_path, name):
    attack = ATTACK_TABLE[name]
    marker, listener = tmp_path / "marker", socket.create_server(("127.0.0.1", 0))
    results_before = (fixture_files["repo"] / "results.tsv").read_bytes()
    try:
        r = run_worker(fixture_files, tmp_path / "private", [ATTACKS / name],
                       env={"JAIL_MARKER": str(marker), "JAIL_PORT": str(listener.getsockname()[1]),
                            "JAIL_GROUNDTRUTH": str(fixture_files["data"] / "groundtruth.npy"),
                            "JAIL_REPO": str(fixture_files["repo"])})
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # no connection arrived, not even one left waiting in the backlog
    finally:
        listener.close()
    assert r.parent_rc == 0 and r.child_rc is not None, r.stdout + r.stderr  # the parent lives
    if attack.outcome == "sigsys":
        assert r.child_rc == -SIGSYS, r.stdout + r.stderr
        assert "forbidden system call" in describe_death(r.child_rc)
    elif attack.outcome == "runs":  # numba_config: nothing outside the process to stop; only the policy refuses it
        assert r.child_rc == 0 and r.result["opt"] == 0 and r.result["ids"] == [fixture_files["reference"]], r.stdout
    else:
        expected = "RAISED " + attack.outcome.format(data=fixture_files["data"], repo=fixture_files["repo"])
        assert r.child_rc == 3 and expected in r.stdout, r.stdout + r.stderr
    assert not marker.exists() and not (tmp_path / "private" / "jail-marker").exists()
    assert (fixture_files["repo"] / "results.tsv").read_bytes() == results_before
    assert list((fixture_files["repo"] / "trials").iterdir()) == []


@pytest.mark.parametrize("name", ["shell_ctypeslib.py", "socket_connect.py", "read_groundtruth.py", "write_trials.py"])
def test_attacks_work_without_the_jail(fixture_files, tmp_path, name):
    """Control: unjailed, the same kernels do reach outside (so the jailed tests are not vacuous)."""
    marker, listener, repo = tmp_path / "marker", socket.create_server(("127.0.0.1", 0)), tmp_path / "repo"
    (repo / "trials").mkdir(parents=True)
    try:
        r = run_worker(fixture_files, tmp_path / "private", [ATTACKS / name], jail=False,
                       env={"JAIL_MARKER": str(marker), "JAIL_PORT": str(listener.getsockname()[1]),
                            "JAIL_GROUNDTRUTH": str(fixture_files["data"] / "groundtruth.npy"),
                            "JAIL_REPO": str(repo)})
        listener.settimeout(5)
        if name == "socket_connect.py":
            listener.accept()[0].close()
    finally:
        listener.close()
    assert r.child_rc == 0 and r.result["ids"] == [fixture_files["reference"]], r.stdout + r.stderr
    assert marker.exists() or name != "shell_ctypeslib.py"
    assert (repo / "trials" / "forged.json").exists() or name != "write_trials.py"


@pytest.fixture(scope="module")
def legit_run(fixture_files, tmp_path_factory) -> dict:
    """One jailed process compiles and runs every legitimate kernel (numba's first compile is paid once)."""
    root = tmp_path_factory.mktemp("legit")
    cached = root / "cached.py"
    cached.write_text(CACHED_KERNEL)
    kernels = [REPO / "pqkern" / "kernels.py", *LEGIT, cached]
    return {"run": run_worker(fixture_files, root / "private", kernels), "kernels": kernels, "private": root / "private",
            "cached": cached}


def test_legitimate_kernels_compile_and_run_in_the_jail(fixture_files, legit_run):
    """The seed, the legit and demo kernels and a cache=True prange kernel: lazily imported numba modules still load."""
    r = legit_run["run"]
    assert r.child_rc == 0, r.stdout + r.stderr
    assert r.result["threads"] == 1 and "Warning" not in r.stderr, r.stderr  # prange ran without a thread
    assert r.result["enter_s"] < 0.5, r.result["enter_s"]
    status = r.result["status"]
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000" and status["NoNewPrivs"] == "1", status
    assert status["Seccomp"] == "2" and status["Speculation_Store_Bypass"] != "thread force mitigated", status
    for path, ids in zip(legit_run["kernels"], r.result["ids"], strict=True):
        if path.name != "broken_recall.py":  # it skips rows on purpose
            assert ids == fixture_files["reference"], path


def test_cache_true_kernel_writes_its_cache_and_loads_it_again_in_the_jail(fixture_files, legit_run):
    assert legit_run["run"].result["cache_hits"] == 0
    assert len(list((legit_run["private"] / "numba_cache").rglob("kernel_cached*.nbi"))) == 3
    r = run_worker(fixture_files, legit_run["private"], [legit_run["cached"]])  # a second jailed process, same tmp dir
    assert r.child_rc == 0 and r.result["ids"] == [fixture_files["reference"]], r.stdout + r.stderr
    assert r.result["cache_hits"] == 3 and "Warning" not in r.stderr, r.stderr


def test_threads_allowed_for_more_than_one_numba_thread_but_never_processes(fixture_files, legit_run, tmp_path):
    r = run_worker(fixture_files, legit_run["private"], [legit_run["cached"]], threads=2)
    assert r.child_rc == 0 and r.result["ids"] == [fixture_files["reference"]], r.stdout + r.stderr
    assert r.result["threads"] == 2, r.result  # the jail let numba's second thread start
    for name in ("fork_ctypes.py", "spawn_subprocess.py"):
        r = run_worker(fixture_files, tmp_path / f"private-{name}", [ATTACKS / name], threads=2,
                       env={"JAIL_MARKER": str(tmp_path / "marker")})
        assert r.child_rc == -SIGSYS, r.stdout + r.stderr
    assert not (tmp_path / "marker").exists()


def _enter_in_subprocess(tmp_path: Path, before: str, **kwargs) -> subprocess.CompletedProcess:
    code = f"{before}\nfrom pqkern.bench import jail\njail.enter({str(tmp_path)!r}, **{kwargs!r})\nprint('jailed')\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))


@pytest.mark.parametrize("before, kwargs, message", [
    ("import threading, time\nthreading.Thread(target=time.sleep, args=(5,), daemon=True).start()", {},
     "enter the jail before any thread starts: 2 threads"),
    ("import sys", {"forbid": [sys.prefix + "/lib"]}, "must stay unreadable but lies within the allowed"),
    ("import ctypes.util\nctypes.util.find_library = lambda name: None", {}, "seccomp is unavailable: Unable to find libseccomp"),
    ("import pqkern.bench.jail as j\nj.landlock_abi = lambda: 0", {}, "Landlock is not available"),
])
def test_jail_refuses_to_start_when_it_cannot_hold(tmp_path, before, kwargs, message):
    p = _enter_in_subprocess(tmp_path, before, **kwargs)
    assert p.returncode == 1 and "JailError" in p.stderr and message in p.stderr and "jailed" not in p.stdout, p.stderr


def test_describe_death():
    assert describe_death(-SIGSYS) == describe_death(SIGSYS) and "jail stopped a forbidden system call" in describe_death(SIGSYS)
    assert describe_death(-9) == "killed by SIGKILL"


# ---------------------------------------------------------------- the cost

# Each process times the scan before and after enter() (a sham process skips enter()): within one process the
# memory layout is the same, so after/before isolates the jail; the sham's after/before cancels the order effect.
BENCH = r"""
import json, sys, time
import numpy as np
import numba
import numba.np.ufunc.parallel
from pqkern.bench import jail

cfg = json.loads(sys.argv[1])
numba.np.ufunc.parallel._launch_threads()


@numba.njit
def scan(codes, table, dists):
    dists[:] = 0
    for s in range(16):
        for r in range(codes.shape[1]):
            dists[r] += table[s, codes[s, r]]


def timed():
    cpu = []
    for _ in range(cfg["calls"]):
        c0 = time.process_time_ns()
        scan(codes, table, dists)
        cpu.append(time.process_time_ns() - c0)
    t0 = time.perf_counter_ns()
    for _ in range(20_000):
        time.process_time_ns()
    return min(cpu) / 1e9, (time.perf_counter_ns() - t0) / 20_000  # the least disturbed call; one clock read


codes = np.random.default_rng(0).integers(0, 256, (16, cfg["rows"]), dtype=np.uint8)
table = np.random.default_rng(1).random((16, 256)).astype(np.float32)
dists = np.zeros(cfg["rows"], np.float32)
scan(codes, table, dists)
before = timed()
t0 = time.perf_counter()
if cfg["jail"]:
    jail.enter(cfg["tmp"])
enter_s = time.perf_counter() - t0
after = timed()
print(json.dumps({"enter_s": enter_s, "scan": after[0] / before[0], "clock_ns": after[1] - before[1]}))
"""


def measure_cost(tmp: Path, reps: int, rows: int = 4_000_000, calls: int = 9) -> dict:
    """Interleaved jailed and sham processes (the order alternates per pair): after/before scan time and clock cost."""
    script = tmp / "bench.py"
    script.write_text(BENCH)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", NUMBA_THREADING_LAYER="omp", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", NUMBA_CACHE_DIR=str(tmp / "numba_cache"))
    pairs = []
    for rep in range(reps):
        runs = {}
        for jailed in ([False, True] if rep % 2 == 0 else [True, False]):
            private = tmp / f"private-{rep}-{jailed}"
            private.mkdir()
            cfg = {"jail": jailed, "tmp": str(private), "rows": rows, "calls": calls}
            p = subprocess.run([sys.executable, str(script), json.dumps(cfg)], env=env, capture_output=True, text=True,
                               timeout=300)
            assert p.returncode == 0, p.stderr
            runs[jailed] = json.loads(p.stdout.splitlines()[-1])
        pairs.append(runs)
    effect = [p[True]["scan"] / p[False]["scan"] for p in pairs]
    return {"pairs": pairs, "enter_s_max": max(p[True]["enter_s"] for p in pairs),
            "enter_s_median": statistics.median(p[True]["enter_s"] for p in pairs),
            "scan_effect_median": statistics.median(effect), "scan_effect_mean": statistics.fmean(effect),
            "clock_ns_median": statistics.median(p[True]["clock_ns"] - p[False]["clock_ns"] for p in pairs)}


def test_cost_measurement_runs(tmp_path):
    """One small pair, so the script keeps working; ``python tests/test_jail.py`` measures the cost properly."""
    cost = measure_cost(tmp_path, reps=1, rows=100_000, calls=3)
    assert cost["enter_s_max"] < 0.5 and 0 < cost["scan_effect_median"], cost


def _main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description="Measure the jail's cost: interleaved jailed and sham processes.")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cost = measure_cost(Path(tmp), args.reps)
    print("pair  after/before(sham)  after/before(jail)  effect  enter_ms")
    for i, p in enumerate(cost["pairs"]):
        print(f"{i:4d}  {p[False]['scan']:18.4f}  {p[True]['scan']:18.4f}  {p[True]['scan'] / p[False]['scan']:6.4f}"
              f"  {p[True]['enter_s'] * 1e3:8.1f}")
    print(f"jail's effect on the scan's CPU time: median {cost['scan_effect_median']:.4f}x, "
          f"mean {cost['scan_effect_mean']:.4f}x")
    print(f"enter(): median {cost['enter_s_median'] * 1e3:.1f} ms, max {cost['enter_s_max'] * 1e3:.1f} ms")
    print(f"one time.process_time_ns() call (a system call): {cost['clock_ns_median']:+.0f} ns in the jail")


if __name__ == "__main__":
    _main()
