"""The kernel's own process (immutable bench): the only place kernel code ever runs.

Started by the judge (``pqkern/bench/session.py``) as ``python -m pqkern.bench.worker CMD_FD REPLY_FD``.
It reads its configuration from the judge, maps the fixture files read-only, enters the jail
(``pqkern/bench/jail.py``), and only then writes the kernel's source into its private
temporary directory and imports it. It compiles the kernel on a small slice (so JIT memory
is not the kernel's footprint), calls ``prepare`` for each workload, warms up on base vectors,
and then answers the judge's requests: each ``search`` request brings its query vectors (the
worker never holds queries it has not been asked), and each call is timed with the wall and
the CPU clock, bound before the kernel was imported; every result goes back, the untimed
warm-up call's too. The judge checks everything it returns.

Workloads: ``flat`` is one index over all codes; ``ivf`` is one index per IVF partition
(``prepare`` once per partition) and one ``search`` per probed partition with that
partition's residual query, the whole probe timed as one query.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import traceback
from pathlib import Path
from time import perf_counter_ns as _clock
from time import process_time_ns as _cpu_clock
from time import thread_time_ns as _thread_clock

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


class Memory:
    """The worker's resident memory, read through descriptors opened before the jail."""

    def __init__(self) -> None:
        self.status = os.open("/proc/self/status", os.O_RDONLY)
        try:
            self.clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:
            self.clear = -1  # without clear_refs the peak is the lifetime peak: an over-estimate

    def kb(self, field: str) -> int:
        for line in os.pread(self.status, 1 << 16, 0).decode().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def reset_peak(self) -> None:
        if self.clear >= 0:
            try:
                os.write(self.clear, b"5")
            except OSError:
                pass


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

    def prepare(self, kernel) -> int:
        t0 = _clock()
        self.indexes = [kernel.prepare(p, self.codebook) if p.shape[1] else None for p in self.parts]
        return _clock() - t0

    def warm_up(self, kernel, warm: np.ndarray, k: int) -> tuple[int, int]:
        """Search the warm-up vectors (on the first four partitions for ivf); return the ns it took and the calls."""
        t0, calls = _clock(), 0
        for i, vector in enumerate(warm):
            for p, index in enumerate(self.indexes[:4] if self.kind == "ivf" else self.indexes):
                if index is not None:
                    kk = min(k, self.parts[p].shape[1])
                    check_result(kernel.search(index, vector, kk), kk, f"{self.name} warm-up vector {i}")
                    calls += 1
        return _clock() - t0, calls


def _search_block(kernel, wl: Workload, k: int, queries: np.ndarray, probes: np.ndarray | None, warm: bool):
    """Time each query of the block (the judge treats the first one as untimed when ``warm``); return every query's
    ids, dists, wall and CPU ns, and the CPU this (main) thread spent inside the calls, which the judge checks against
    what the operating system accounted to this thread."""
    inside = 0
    n = queries.shape[0]
    width = 1 if probes is None else probes.shape[1]
    out_ids = np.full((n, width, k), -1, np.int64)
    out_d = np.full((n, width, k), np.inf, np.float32)
    wall, cpu = np.empty(n, np.int64), np.empty(n, np.int64)
    search = kernel.search
    for j in range(n):
        if probes is None:
            index = wl.indexes[0]
            q = queries[j]
            h0 = _thread_clock()
            t0, c0 = _clock(), _cpu_clock()
            res = search(index, q, k)
            ids, dists = res
            c1, t1 = _cpu_clock(), _clock()
            inside += _thread_clock() - h0
            results = [(res, k)]
        else:
            parts = probes[j]
            calls = [(wl.indexes[p], queries[j, i], min(k, wl.parts[p].shape[1])) for i, p in enumerate(parts)]
            results = []
            h0 = _thread_clock()
            t0, c0 = _clock(), _cpu_clock()
            for index, q, kk in calls:
                if index is not None:
                    res = search(index, q, kk)
                    ids, dists = res
                    results.append((res, kk))
                else:
                    results.append((None, 0))
            c1, t1 = _cpu_clock(), _clock()
            inside += _thread_clock() - h0
        wall[j], cpu[j] = t1 - t0, c1 - c0
        for i, (res, kk) in enumerate(results):
            if res is not None:
                ids, dists = check_result(res, kk, f"{wl.name} query {j} call {i}")
                out_ids[j, i, :kk], out_d[j, i, :kk] = ids, dists
    return out_ids, out_d, wall, cpu, inside


def _enter_jail(tmp: Path, threads: int, forbid: list[str]) -> None:
    """Load what numba needs later while files are still readable, then lock this process in (jail.py)."""
    import numba.np.ufunc.parallel

    from pqkern.bench import jail

    numba.np.ufunc.parallel._launch_threads()  # the threading layer, now: inside it would want /dev/shm
    jail.enter(tmp, allow_threads=threads > 1, forbid=forbid)


def serve(cmd: int, reply: int) -> int:
    """The worker's whole life: configure, jail, import, prepare, answer requests until ``finish``."""
    born = _clock()
    cfg, arrays = receive(cmd)
    warm = arrays[0]
    memory = Memory()
    k = int(cfg["k"])
    stage = "start-up"
    try:
        workloads = {name: Workload(name, spec) for name, spec in cfg["workloads"].items()}
        steps = {"start-up": _clock() - born}
        tmp = Path(cfg["tmp"])
        if cfg["jail"]:
            stage = "jail"
            t0 = _clock()
            _enter_jail(tmp, int(cfg["threads"]), cfg["forbid"])
            steps["jail"] = _clock() - t0
        stage = "import"
        t0 = _clock()
        kernel = load_kernel(cfg["kernel_source"], tmp / "kernel")
        cap = memory.kb("VmSize") * 1024 + int(cfg["memory_limit_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        steps["import"] = _clock() - t0
        t0 = _clock()
        for wl in workloads.values():
            stage = f"prepare ({wl.name} compile pass)"
            small = wl.compile_prepare(kernel)
            stage = f"search ({wl.name} compile pass)"
            wl.compile_search(kernel, small, warm, k)
            del small
        steps["compile"] = _clock() - t0
        t0 = _clock()
        rss0 = memory.kb("VmRSS")
        memory.reset_peak()
        prepare_ns, warm_ns, warm_calls = {}, {}, {}
        for wl in workloads.values():
            stage = f"prepare ({wl.name})"
            prepare_ns[wl.name] = wl.prepare(kernel)
            stage = f"search ({wl.name} warm-up)"
            warm_ns[wl.name], warm_calls[wl.name] = wl.warm_up(kernel, warm, k)
        steps["prepare and warm-up"] = _clock() - t0
        send(reply, {"op": "ready", "prepare_ns": prepare_ns, "warm_ns": warm_ns, "warm_calls": warm_calls, "steps_ns": steps})
        while True:
            stage = "waiting"
            req, arrays = receive(cmd)
            if req["op"] == "finish":
                send(reply, {"op": "done", "peak_mem_kb": max(0, memory.kb("VmHWM") - rss0)})
                return 0
            wl = workloads[req["workload"]]
            stage = f"search ({wl.name})"
            queries, probes = arrays[0], (arrays[1] if len(arrays) > 1 else None)
            ids, dists, wall, cpu, main_inside = _search_block(kernel, wl, k, queries, probes, bool(req["warm"]))
            send(reply, {"op": "result", "main_inside_ns": main_inside}, ids, dists, wall, cpu)
    except ContractError as e:
        send(reply, {"op": "error", "kind": "contract", "message": str(e)})
    except BaseException as e:  # the kernel raised (or the jail refused it): say where, traceback on stderr
        traceback.print_exc()
        kind = "harness" if stage == "jail" else "raised"
        hint = f" (the kernel may add {cfg['memory_limit_mb']} MB: --memory-limit-mb)" if isinstance(e, MemoryError) else ""
        send(reply, {"op": "error", "kind": kind, "message": f"kernel raised in {stage}: {type(e).__name__}: {e}{hint}"
                     if kind == "raised" else f"the jail could not be entered on this machine: {e}. It needs Linux with "
                     f"Landlock and libseccomp (README, 'What the evaluation guarantees'); --no-jail runs kernels unconfined"})
    return 1


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), int(sys.argv[2])))
