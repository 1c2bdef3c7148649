"""How much code a kernel is (immutable bench): the measure behind "simpler is a keep".

A kernel's size is the number of nodes in its Python syntax tree, with docstrings removed;
comments, blank lines and formatting are not in the tree, so they never count. Two kernels
with the same tree (``same_code``) differ only in comments, docstrings or layout, and compile to
the same code. A candidate is simpler than the incumbent when its tree has fewer nodes.
"""

from __future__ import annotations

import ast


def docstring_free_tree(source: str) -> ast.Module:
    """The syntax tree of ``source`` without docstrings (module, class and function)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def code_size(source: str) -> int:
    """Syntax-tree nodes in ``source``, docstrings not counted."""
    return sum(1 for _ in ast.walk(docstring_free_tree(source)))


def same_code(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` have the same syntax tree once docstrings are removed."""
    return ast.dump(docstring_free_tree(a)) == ast.dump(docstring_free_tree(b))
