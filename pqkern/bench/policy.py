"""Static policy for kernels.py (immutable bench): what the kernel may reach, checked before it runs.

Imports are an allowlist: exactly ``numpy``, ``numba`` and ``math`` at the top level, plus the
reviewed submodules in ``ALLOWED_SUBMODULES``; every other form is refused with its line
(other modules, other submodules such as ``numpy.ctypeslib`` or ``numba.config``, relative and
star imports; ``__import__`` and ``importlib`` are refused as names).

Attributes are a denylist, not an allowlist: a kernel legitimately uses hundreds of numpy names
(``np.empty``, dtypes, ``np.argpartition``...), and an allowlist of them would refuse good
kernels for nothing. The denylist does not need to foresee every escape, because the two
defences split the work:

- Outside the process (files, processes, network, signals, ptrace) the OS jail
  (pqkern/bench/jail.py) stops the kernel whatever route it found. The attack kernels in
  tests/kernels/attacks/ show it: ``shell_ctypeslib.py`` (``np.ctypeslib`` -> ``libc.system``)
  dies with SIGSYS and ``read_groundtruth.py`` gets PermissionError with this policy switched off.
- Inside the process the jail can do nothing (``numba_config.py`` sets ``numba.config.OPT`` to
  level 0 and so changes how everything compiled later in the worker is optimised; patching
  ``np.ndarray`` would fool the harness's checks). Such tampering needs a module object or an object's internals, so the
  policy refuses every route to them: every attribute name that leads from an allowed module to
  another module (``np.ctypeslib``, ``np.lib``, ``numba.config``, ``numba.core``, ``numba.np``...;
  tests/test_jail.py walks the installed numpy and numba to prove the list complete), private
  and dunder attributes (``._core``, ``.__dict__``), introspection builtins (``getattr``,
  ``vars``, ``type``...), and any use of a module other than reading one of its attributes
  (``np.x = ...``, ``m = np``, ``f(np)``), so a module cannot be patched nor handed on.

Size: the source may be at most ``MAX_SOURCE_BYTES`` (32 KiB). The kernels agents write (the demo
kernels, the legitimate kernels in the tests, pruned and unrolled scans) are 1.5-6 KiB; the limit
leaves room for any honest kernel, and none for tables of answers or of precomputed data.

Kept from before: no files (``open``, ``np.load``, ``np.memmap``, ``tofile``...), no raw memory
(``ctypes``, ``numba.carray``, ``setflags``), no escape from nopython mode (``numba.objmode``,
``cfunc``, ``extending``/``intrinsic``), no clock or thread modules, no ``exec``/``eval``.
Every violation is reported with its line number.
"""

from __future__ import annotations

import ast
from pathlib import Path

MAX_SOURCE_BYTES = 32 * 1024
ALLOWED_MODULES = ("numpy", "numba", "math")
ALLOWED_SUBMODULES = {  # reviewed: each is reachable as an attribute of numba anyway, and needed by ordinary kernels
    "numba.types": "type objects for explicit signatures and typed containers (types.float32[:], types.int64)",
    "numba.typed": "typed List and Dict, the containers nopython code can build and return",
}
IMPORTABLE = set(ALLOWED_MODULES) | set(ALLOWED_SUBMODULES)
MODULE_ATTRIBUTES = {"types", "typed"}  # attribute names that yield an allowed module (numba.types, numba.typed)

FORBIDDEN_NAMES = {
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr", "delattr",
    "input", "breakpoint", "memoryview", "help", "exit", "quit", "classmethod", "staticmethod", "super", "type", "object",
    "dir", "importlib",
}
FORBIDDEN_ATTRIBUTES = {
    # numpy's files, raw memory and configuration
    "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "memmap", "loadtxt", "savetxt", "genfromtxt",
    "fromregex", "open_memmap", "DataSource", "setflags", "from_dlpack", "show_config", "show_runtime", "get_include",
    "ctypes",
    # numba's escapes from nopython mode, raw pointers, threads and debuggers
    "objmode", "carray", "farray", "intrinsic", "cfunc", "cffi_support", "set_num_threads", "gdb", "gdb_init",
    "gdb_breakpoint", "typed_passes", "cuda",
    # a compiled function's compiler internals
    "targetctx", "typingctx", "targetoptions", "overloads", "library",
    # attributes that yield a module other than the allowed ones: numpy (1.26 to 2.x) ...
    "char", "compat", "core", "ctypeslib", "distutils", "doc", "dtypes", "emath", "exceptions", "f2py", "fft", "lib",
    "linalg", "ma", "math", "matlib", "matrixlib", "numpy", "polynomial", "random", "rec", "strings", "testing",
    "typing", "version", "array_api",
    # ... numba (0.59 to 0.68), numba.types and numba.typed ...
    "abstract", "cext", "cloudpickle", "common", "config", "containers", "cpython", "dictobject", "enum", "errors",
    "experimental", "extending", "function_type", "functions", "ir", "iterators", "listobject", "llvmlite", "misc",
    "mviewbuf", "np", "npytypes", "numba", "parfors", "pycc", "runtests", "scalars", "scripts", "stencils", "tests",
    "typeconv", "typeddict", "typedlist", "typedobjectutils", "utils", "dictimpl", "setobject", "typedset",
    # ... and the standard library modules any of them holds
    "builtins", "collections", "importlib", "itertools", "logging", "multiprocessing", "os", "platform", "re", "socket",
    "struct", "subprocess", "sys", "textwrap", "threading", "time", "traceback", "warnings", "weakref",
}


class PolicyError(ValueError):
    """kernels.py reaches for something the policy forbids; ``violations`` lists ``(line, what)``."""

    def __init__(self, path: str, violations: list[tuple[int, str]]):
        self.violations = violations
        lines = "; ".join(f"line {n}: {what}" if n else what for n, what in violations[:5])
        more = f" (+{len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"{path}: kernel policy: {lines}{more}")


def _attribute_problem(name: str) -> str:
    if name.startswith("_") or name in FORBIDDEN_ATTRIBUTES:
        return f"attribute .{name} is not allowed in a kernel"
    return ""


def _module_aliases(tree: ast.AST) -> set[str]:
    """Names the file binds to a module: ``import numpy as np`` binds np, ``from numba import types`` binds types."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names if alias.name in MODULE_ATTRIBUTES}
    return names


def _module_expression(node: ast.AST, aliases: set[str]) -> str:
    """The source text of ``node`` when it evaluates to an allowed module (np, numba.types...), else ''."""
    if isinstance(node, ast.Name) and node.id in aliases:
        return node.id
    if isinstance(node, ast.Attribute) and node.attr in MODULE_ATTRIBUTES and _module_expression(node.value, aliases):
        return f"{_module_expression(node.value, aliases)}.{node.attr}"
    return ""


def _import_problems(node: ast.Import | ast.ImportFrom) -> list[str]:
    allowed = "only numpy, numba, math, " + ", ".join(sorted(ALLOWED_SUBMODULES))
    if isinstance(node, ast.Import):
        return [f"import {alias.name} ({allowed})" for alias in node.names if alias.name not in IMPORTABLE]
    module = "." * node.level + (node.module or "")
    if node.level or module not in IMPORTABLE:
        return [f"from {module} import ... ({allowed})"]
    return [f"from {module} import {alias.name} (not allowed in a kernel)" for alias in node.names
            if alias.name == "*" or alias.name in FORBIDDEN_NAMES or _attribute_problem(alias.name)]


def violations(source: str) -> list[tuple[int, str]]:
    """Every ``(line, what)`` in ``source`` that the policy forbids."""
    size = len(source.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        return [(0, f"the kernel is {size:,} bytes, over the {MAX_SOURCE_BYTES:,}-byte limit for kernels.py (honest kernels "
                    f"need a few KiB; tables of answers or precomputed data are not allowed)")]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [(e.lineno or 0, f"syntax error: {e.msg}")]
    aliases = _module_aliases(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [(line, what) for what in _import_problems(node)]
        elif isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or node.id.startswith("__")):
            found.append((line, f"name {node.id!r} is not allowed in a kernel"))
        elif isinstance(node, ast.Attribute) and _attribute_problem(node.attr):
            found.append((line, _attribute_problem(node.attr)))
        elif isinstance(node, ast.MatchClass):  # case C(attr=...) reads attributes by name
            found += [(line, _attribute_problem(a)) for a in node.kwd_attrs if _attribute_problem(a)]
        module = _module_expression(node, aliases)
        parent = parents.get(node)
        if module and not (isinstance(parent, ast.Attribute) and parent.value is node):
            found.append((line, f"module {module} may only be used as {module}.<attribute>"))
        elif module and not isinstance(parent.ctx, ast.Load):
            found.append((line, f"{module}.{parent.attr} cannot be assigned or deleted: it would change "
                                f"{module} for the harness too"))
    return sorted(set(found))


def check_kernel(path: str | Path) -> None:
    """Raise :class:`PolicyError` when the kernel file breaks the policy."""
    path = Path(path)
    found = violations(path.read_text(encoding="utf-8"))
    if found:
        raise PolicyError(str(path), found)
