"""Static policy for kernels.py (immutable bench): what the kernel may reach.

Only ``numpy``, ``numba`` and ``math`` may be imported. No files, processes, network,
clock, threads, introspection or harness: forbidden builtins (``open``, ``exec``,
``getattr``...), dunder names (``__globals__``, ``__import__``...), and attributes that
lead to files, raw memory or other modules (``np.load``, ``np.memmap``, ``tofile``,
``np.lib``, ``numba.objmode``, ``ctypes``...) are rejected wherever they appear, so
aliases do not help. Every violation is reported with its line number.
"""

from __future__ import annotations

import ast
from pathlib import Path

ALLOWED_MODULES = {"numpy", "numba", "math"}
FORBIDDEN_NAMES = {
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr", "delattr",
    "input", "breakpoint", "memoryview", "help", "exit", "quit", "classmethod", "staticmethod", "super", "type", "object",
}
FORBIDDEN_ATTRIBUTES = {
    # numpy's files, raw memory and routes to other modules
    "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "memmap", "loadtxt", "savetxt", "genfromtxt",
    "fromregex", "open_memmap", "lib", "ctypeslib", "ctypes", "DataSource", "testing", "f2py", "distutils", "setflags",
    "from_dlpack", "show_config", "show_runtime", "get_include",
    # numba's escapes from nopython mode, raw pointers and internals
    "objmode", "carray", "farray", "core", "extending", "intrinsic", "cfunc", "cffi_support", "misc", "config",
    "set_num_threads", "gdb", "gdb_init", "gdb_breakpoint", "typed_passes", "cuda",
    # anything a module object would expose
    "os", "sys", "time", "subprocess", "socket", "threading", "multiprocessing", "importlib", "builtins",
}


class PolicyError(ValueError):
    """kernels.py reaches for something the policy forbids; ``violations`` lists ``(line, what)``."""

    def __init__(self, path: str, violations: list[tuple[int, str]]):
        self.violations = violations
        lines = "; ".join(f"line {n}: {what}" for n, what in violations[:5])
        more = f" (+{len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"{path}: kernel policy: {lines}{more}")


def violations(source: str) -> list[tuple[int, str]]:
    """Every ``(line, what)`` in ``source`` that the policy forbids."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [(e.lineno or 0, f"syntax error: {e.msg}")]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in ALLOWED_MODULES or alias.name.split(".")[1:2] in (["core"], ["lib"]):
                    found.append((line, f"import {alias.name} (only numpy, numba and math)"))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module.split(".")[0] not in ALLOWED_MODULES:
                found.append((line, f"from {'.' * node.level}{module} import ... (only numpy, numba and math)"))
            for alias in node.names:
                if alias.name == "*" or alias.name in FORBIDDEN_ATTRIBUTES | FORBIDDEN_NAMES or alias.name.startswith("__"):
                    found.append((line, f"from {module} import {alias.name}"))
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or node.id.startswith("__")):
            found.append((line, f"name {node.id!r} is not allowed in a kernel"))
        elif isinstance(node, ast.Attribute) and (node.attr in FORBIDDEN_ATTRIBUTES or node.attr.startswith("__")):
            found.append((line, f"attribute .{node.attr} is not allowed in a kernel"))
    return sorted(set(found))


def check_kernel(path: str | Path) -> None:
    """Raise :class:`PolicyError` when the kernel file breaks the policy."""
    path = Path(path)
    found = violations(path.read_text(encoding="utf-8"))
    if found:
        raise PolicyError(str(path), found)
