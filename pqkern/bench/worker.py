"""The kernel's own process (immutable bench): the only place kernel code ever runs. It computes; it measures nothing.

Started by the judge (``pqkern/bench/session.py``) as ``python -m pqkern.bench.worker CMD_FD REPLY_FD``.
It reads its configuration from the judge, maps the fixture files read-only, enters the jail
(``pqkern/bench/jail.py``), and only then writes the kernel's source into its private
temporary directory (of a random name) and imports it. It compiles the kernel on a small slice
(so JIT memory is not the kernel's footprint), then runs ``prepare`` and one search on each
workload's largest index at full size (what a kernel compiles only for large inputs is compiled
here, at start-up, not in its budgeted set-up), and says ``loaded``. Then it answers the judge's
requests, one at a time: ``prepare`` (a workload's indexes), ``search`` (one query: the worker
never holds queries it has not been asked) and ``finish``. It reads no clock and reports no
time or memory: the judge measures every request from outside the process, so nothing a
kernel changes in here can alter its figures. Every request of every role looks the same.

Workloads: ``flat`` is one index over all codes; ``ivf`` is one index per IVF partition
(``prepare`` once per partition) and one ``search`` per probed partition with that
partition's residual query, the whole probe one request.
"""

from __future__ import annotations

import gc
import importlib.util
import resource
import sys
import traceback
from pathlib import Path

import numpy as np

from pqkern.bench.protocol import receive, send

COMPILE_ROWS = 4096
KERNEL_MODULE = "pqkern_kernel_under_test"


class ContractError(Exception):
    """The kernel returned something the interface does not allow."""


def check_result(res, k: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, dists)`` if ``res`` is exactly a tuple of an int64 (k,) and a float32 (k,) ndarray."""
    if type(res) is not tuple or len(res) != 2:
        raise ContractError(f"{where}: search must return a tuple (ids, dists), got {type(res).__name__}")
    ids, dists = res
    for name, arr, dtype in (("ids", ids, np.int64), ("dists", dists, np.float32)):
        if type(arr) is not np.ndarray:
            raise ContractError(f"{where}: {name} must be a numpy.ndarray, got {type(arr).__module__}.{type(arr).__name__}")
        if arr.dtype != dtype or arr.shape != (k,):
            raise ContractError(f"{where}: {name} must be {np.dtype(dtype).name} ({k},), got {arr.dtype} {arr.shape}")
    return ids, dists


def load_kernel(source: str, folder: Path):
    """Write the kernel's source into ``folder`` and import it under a registered module name (numba's cache needs one)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kernels.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(KERNEL_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[KERNEL_MODULE] = module
    spec.loader.exec_module(module)
    for name in ("prepare", "search"):
        if not callable(getattr(module, name, None)):
            raise ContractError(f"kernels.py defines no callable {name}()")
    return module


class Workload:
    """One workload's data as the kernel sees it, and its indexes once prepared."""

    def __init__(self, name: str, spec: dict):
        self.name, self.kind = name, spec["kind"]
        load = {key: np.load(path, mmap_mode="r") for key, path in spec["files"].items()}
        self.codebook = np.asarray(load["codebook"])
        if self.kind == "flat":
            self.parts = [np.asarray(load["codes"])]
        else:
            codes, offsets = np.asarray(load["codes"]), np.asarray(load["offsets"])
            self.parts = [codes[16 * int(a): 16 * int(b)].reshape(16, int(b) - int(a))
                          for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        self.indexes: list = []

    def compile_prepare(self, kernel):
        """``prepare`` on a small copy (same dtype, layout and flags), so compiling is not the kernel's time or memory."""
        part = max(self.parts, key=lambda p: p.shape[1])
        small = np.ascontiguousarray(part[:, :COMPILE_ROWS])
        small.setflags(write=False)
        return kernel.prepare(small, self.codebook)

    def compile_search(self, kernel, small, warm: np.ndarray, k: int) -> None:
        rows = min(max(p.shape[1] for p in self.parts), COMPILE_ROWS)
        check_result(kernel.search(small, warm[0], min(k, rows)), min(k, rows), f"{self.name} compile pass")

    def compile_full_size(self, kernel, warm: np.ndarray, k: int) -> None:
        """``prepare`` and one ``search`` on the largest part at its full size, so that whatever a kernel compiles only
        for large inputs (a path gated on the index's size) is compiled at start-up too, not in its budgeted set-up."""
        part = max(self.parts, key=lambda p: p.shape[1])
        if part.shape[1] <= COMPILE_ROWS:
            return
        index = kernel.prepare(part, self.codebook)
        check_result(kernel.search(index, warm[-1], k), k, f"{self.name} full-size compile pass")

    def prepare(self, kernel) -> None:
        self.indexes = [kernel.prepare(p, self.codebook) if p.shape[1] else None for p in self.parts]


def search(kernel, wl: Workload, k: int, queries: np.ndarray, probes: np.ndarray | None):
    """Each query's results, ``(n, calls, k)``: one call on the flat index, or one per probed partition (``probes``)."""
    n = queries.shape[0]
    width = 1 if probes is None else probes.shape[1]
    out_ids = np.full((n, width, k), -1, np.int64)
    out_d = np.full((n, width, k), np.inf, np.float32)
    for j in range(n):
        calls = [(0, queries[j])] if probes is None else [(int(p), queries[j, i]) for i, p in enumerate(probes[j])]
        for i, (p, q) in enumerate(calls):
            if wl.indexes[p] is None:
                continue
            kk = min(k, wl.parts[p].shape[1])
            ids, dists = check_result(kernel.search(wl.indexes[p], q, kk), kk, f"{wl.name} query {j} call {i}")
            out_ids[j, i, :kk], out_d[j, i, :kk] = ids, dists
    return out_ids, out_d


def _enter_jail(tmp: Path, threads: int, forbid: list[str]) -> None:
    """Load what numba needs later while files are still readable, then lock this process in (jail.py)."""
    import numba.np.ufunc.parallel

    from pqkern.bench import jail

    numba.np.ufunc.parallel._launch_threads()  # the threading layer, now: inside it would want /dev/shm
    jail.enter(tmp, allow_threads=threads > 1, forbid=forbid)


def serve(cmd: int, reply: int) -> int:
    """The worker's whole life: configure, jail, import, compile, then answer requests until ``finish``."""
    cfg, arrays = receive(cmd)
    warm = arrays[0]
    k = int(cfg["k"])
    stage = "start-up"
    try:
        workloads = {name: Workload(name, spec) for name, spec in cfg["workloads"].items()}
        tmp = Path(cfg["tmp"])
        if cfg["jail"]:
            stage = "jail"
            _enter_jail(tmp, int(cfg["threads"]), cfg["forbid"])
        stage = "import"
        kernel = load_kernel(cfg["kernel_source"], tmp / "kernel")
        with open("/proc/self/status") as f:
            vm_kb = next((int(line.split()[1]) for line in f if line.startswith("VmSize:")), 0)
        cap = vm_kb * 1024 + int(cfg["memory_limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        for wl in workloads.values():
            stage = f"prepare ({wl.name} compile pass)"
            small = wl.compile_prepare(kernel)
            stage = f"search ({wl.name} compile pass)"
            wl.compile_search(kernel, small, warm, k)
            del small
            stage = f"prepare and search ({wl.name} full-size compile pass)"
            wl.compile_full_size(kernel, warm, k)
        gc.collect()
        gc.disable()  # no collection pause inside a timed request: the worker's own objects hold no cycles
        send(reply, {"op": "loaded"})
        while True:
            stage = "waiting"
            req, arrays = receive(cmd)
            if req["op"] == "finish":
                send(reply, {"op": "done"})
                return 0
            wl = workloads[req["workload"]]
            if req["op"] == "prepare":
                stage = f"prepare ({wl.name})"
                wl.prepare(kernel)
                send(reply, {"op": "prepared"})
                continue
            stage = f"search ({wl.name})"
            ids, dists = search(kernel, wl, k, arrays[0], arrays[1] if len(arrays) > 1 else None)
            send(reply, {"op": "result"}, ids, dists)
    except ContractError as e:
        send(reply, {"op": "error", "kind": "contract", "message": str(e)})
    except BaseException as e:  # the kernel raised (or the jail refused it): say where, traceback on stderr
        traceback.print_exc()
        kind = "harness" if stage == "jail" else "raised"
        hint = f" (the kernel may add {cfg['memory_limit_mb']} MB: --memory-limit-mb)" if isinstance(e, MemoryError) else ""
        send(reply, {"op": "error", "kind": kind, "message": f"kernel raised in {stage}: {type(e).__name__}: {e}{hint}"
                     if kind == "raised" else f"the jail could not be entered on this machine: {e}. It needs Linux with "
                     f"Landlock and libseccomp (docs/guarantees.md); --no-jail runs kernels unconfined"})
    return 1


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
