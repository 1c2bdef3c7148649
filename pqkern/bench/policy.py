"""Static policy for kernels.py (immutable bench): an allow-list of what the kernel may name, checked before it runs.

A kernel may use plain Python and the public numpy and numba API; anything else is refused with
its line and the name:

- **imports**: exactly ``numpy``, ``numba`` and ``math`` at the top level, plus ``numba.types`` and
  ``numba.typed`` (``ALLOWED_SUBMODULES``); no other form (relative, star, other modules);
- **names**: the names the file itself binds (its functions, variables, arguments, imports) and the
  builtins of ``ALLOWED_BUILTINS`` (``range``, ``len``, ``min``, ``isinstance``, exceptions...). No
  ``getattr``, ``globals``, ``type``, ``open``, ``__builtins__``, ``__file__`` or any other name;
- **attributes**: the public names of numpy, numba, ``numba.types``, ``numba.typed``, ``math``, and of
  arrays, dtypes, numpy scalars, typed containers and Python's own containers and numbers
  (:func:`allowed_attributes`, read from the installed packages), minus ``DENIED``: numpy's clocks
  (``datetime64``, ``timedelta64``, ``busday_*``), files and memory maps (``load``, ``tofile``,
  ``memmap``...), raw memory (``ctypes``, ``base``, ``data``, ``setflags``), configuration, numba's
  escapes from nopython mode (``objmode``, ``cfunc``, ``carray``...) and ``format`` (format strings read
  attributes by name). Every attribute that yields a module is refused except ``numba.types`` and
  ``numba.typed``; so are every private and dunder name, and therefore frames, code objects,
  generator, coroutine and traceback internals (``f_globals``, ``gi_frame``, ``co_filename``,
  ``tb_frame``...), none of which is on the list;
- **modules** may only be read from (``np.x``), never assigned, deleted or handed on (``m = np``).

Size: the source may be at most ``MAX_SOURCE_BYTES`` (32 KiB). The kernels agents write (the demo
kernels, the legitimate kernels in the tests, pruned and unrolled scans) are 1.5-6 KiB; the limit
leaves room for any honest kernel, and none for tables of answers or of precomputed data.

An allow-list of names cannot close Python's introspection for good (a new numpy may add a name),
so nothing rests on it alone: the OS jail (``jail.py``) stops files, processes, sockets and signals
whatever route a kernel found, and the judge times every call from outside the worker
(``session.py``), so a kernel that reached the worker's clocks or protocol changes no figure.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

MAX_SOURCE_BYTES = 32 * 1024
ALLOWED_MODULES = ("numpy", "numba", "math")
ALLOWED_SUBMODULES = {  # reviewed: each is reachable as an attribute of numba anyway, and needed by ordinary kernels
    "numba.types": "type objects for explicit signatures and typed containers (types.float32[:], types.int64)",
    "numba.typed": "typed List and Dict, the containers nopython code can build and return",
}
IMPORTABLE = set(ALLOWED_MODULES) | set(ALLOWED_SUBMODULES)
MODULE_ATTRIBUTES = {"types", "typed"}  # attribute names that yield an allowed module (numba.types, numba.typed)

ALLOWED_BUILTINS = {
    "abs", "all", "any", "bool", "callable", "chr", "complex", "dict", "divmod", "enumerate", "filter", "float",
    "frozenset", "hash", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "ord",
    "pow", "print", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "True", "False", "None", "Ellipsis", "NotImplemented",
    "ArithmeticError", "AssertionError", "Exception", "IndexError", "KeyError", "LookupError", "NotImplementedError",
    "OverflowError", "RuntimeError", "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
}
DENIED = {
    # numpy's clocks: a kernel has no business knowing the time (it could tell the judge's phases apart)
    "datetime64", "timedelta64", "busday_count", "busday_offset", "busdaycalendar", "is_busday", "datetime_as_string",
    "datetime_data",
    # numpy's files, raw memory, configuration and self-tests
    "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "memmap", "loadtxt", "savetxt", "genfromtxt",
    "fromregex", "open_memmap", "DataSource", "setflags", "from_dlpack", "show_config", "show_runtime", "get_include",
    "ctypes", "base", "data", "dump", "dumps", "test", "info", "lookfor", "set_printoptions", "printoptions",
    "setbufsize", "seterrcall", "byte_bounds", "__array_interface__",
    # numba's escapes from nopython mode, raw pointers, threads, debuggers and compiler internals
    "objmode", "carray", "farray", "intrinsic", "cfunc", "cffi_support", "set_num_threads", "gdb", "gdb_init",
    "gdb_breakpoint", "typed_passes", "cuda", "py_func", "targetctx", "typingctx", "targetoptions", "overloads",
    "library", "inspect_llvm", "inspect_asm", "inspect_types", "inspect_cfg",
    # format strings read attributes by name ("{0.__globals__}".format(f))
    "format", "format_map",
}
# The interpreter's introspection: frames, code, generators, coroutines, tracebacks, bound methods, closures, modules.
INTROSPECTION_PREFIXES = ("f_", "gi_", "co_", "cr_", "ag_", "tb_", "im_", "func_")
INTROSPECTION = {"mro", "modules", "cell_contents", "with_traceback"}


def _members(objects) -> list[tuple[str, bool]]:
    """Every attribute name of ``objects`` and whether its value is a module (import warnings silenced)."""
    import types
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(name, isinstance(getattr(obj, name, None), types.ModuleType))
                for obj in objects for name in dir(obj)]


@functools.lru_cache(maxsize=1)
def allowed_attributes() -> frozenset[str]:
    """Every attribute name a kernel may use: the public, non-module names of numpy, numba and their types, of arrays and
    scalars, and of Python's containers and numbers, minus ``DENIED``; plus ``types`` and ``typed``."""
    import math

    import numba
    import numba.typed
    import numpy as np

    sources = (np, np.ndarray, np.dtype, np.generic, np.float32, np.int64, np.uint8, np.bool_, np.finfo(np.float32),
               np.iinfo(np.int64), numba, numba.types, numba.typed, numba.typed.List, numba.typed.Dict, math, list, dict,
               set, frozenset, tuple, str, int, float, complex, bool, range, slice)
    names = set(MODULE_ATTRIBUTES) | {"List", "Dict"}  # numba.typed loads these two lazily: dir() may not list them
    names |= {name for name, is_module in _members(sources) if not is_module and not name.startswith("_")}
    return frozenset(names - DENIED)


@functools.lru_cache(maxsize=1)
def submodule_names() -> frozenset[str]:
    """The attribute names through which numpy, numba, math, numba.types or numba.typed yield another module (``np.char``,
    ``numba.core``...): refused on a module even where an object has an attribute of the same name (``dtype.char``)."""
    import math

    import numba
    import numba.typed
    import numpy as np

    names = {name for name, is_module in _members((np, numba, math, numba.types, numba.typed)) if is_module}
    return frozenset(names - MODULE_ATTRIBUTES)


class PolicyError(ValueError):
    """kernels.py reaches for something the policy forbids; ``violations`` lists ``(line, what)``."""

    def __init__(self, path: str, violations: list[tuple[int, str]]):
        self.violations = violations
        lines = "; ".join(f"line {n}: {what}" if n else what for n, what in violations[:5])
        more = f" (+{len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"{path}: kernel policy: {lines}{more}")


def _attribute_problem(name: str, own: frozenset[str] = frozenset()) -> str:
    if name.startswith("_") or (name not in allowed_attributes() and name not in own):
        return f"attribute .{name} is not allowed in a kernel (not public numpy/numba API, or denied)"
    return ""


def _never(name: str) -> bool:
    """Names no kernel may use as an attribute even of its own objects: the interpreter's introspection, and DENIED."""
    return name.startswith("_") or name.startswith(INTROSPECTION_PREFIXES) or name in INTROSPECTION or name in DENIED


def _own_attributes(tree: ast.AST) -> frozenset[str]:
    """The attributes the file gives its own objects: assigned ones (``self.state = ...``) and the methods and class
    attributes its classes define, minus every introspection or denied name."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return frozenset(n for n in names if not _never(n))


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the file binds: functions, classes, arguments, assignment, loop, with, except, match and import
    targets, comprehension variables."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


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
            if alias.name == "*" or _attribute_problem(alias.name)]


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
    bound = {n for n in _bound_names(tree) if not n.startswith("__")}
    own = _own_attributes(tree)
    methods = {id(item) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for item in node.body}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [(line, what) for what in _import_problems(node)]
        elif isinstance(node, ast.Name) and (node.id.startswith("__") or (
                node.id not in bound and node.id not in ALLOWED_BUILTINS)):
            found.append((line, f"name {node.id!r} is not allowed in a kernel (not defined in the file, nor an allowed "
                                f"builtin)"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.arg)) and (
                getattr(node, "name", None) or getattr(node, "arg", "")).startswith("__") and id(node) not in methods:
            found.append((line, f"name {getattr(node, 'name', None) or node.arg!r} is not allowed in a kernel"))
        elif isinstance(node, ast.Attribute) and _attribute_problem(node.attr, own):
            found.append((line, _attribute_problem(node.attr, own)))
        elif isinstance(node, ast.MatchClass):  # case C(attr=...) reads attributes by name
            found += [(line, _attribute_problem(a, own)) for a in node.kwd_attrs if _attribute_problem(a, own)]
        if isinstance(node, ast.Attribute) and _module_expression(node.value, aliases) and node.attr in submodule_names():
            found.append((line, f"attribute .{node.attr} is not allowed in a kernel (a module)"))
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
