"""A retry continues its evidence, never rolls the dice again (immutable bench).

A confidence sequence is valid however often it is looked at, but only within one sequence: a
kernel retried until kept would get a fresh 1% chance each time. So every comparison against an
incumbent is remembered (results.tsv's sealed rows, and the rounds in each trial's folder, whose
sha256 the row holds):

- **The same code** (the same syntax tree, docstrings aside: ``tree_sha``) judged against the same
  incumbent continues that comparison: its rounds are the start of this trial's sequence, at the
  level it was judged at, and the new rounds extend it. A comparison that had decided (``within``,
  ``slower``...) decides again at once, unless new rounds move it.
- **A near-copy** (the same tree once every constant is replaced by its type and every name is
  renamed in order of first appearance: ``family_sha``) is a new comparison, but the family shares
  one error budget: the k-th distinct tree of a family judged against an incumbent is judged at
  level ``ALPHA * 6 / (pi^2 k^2)`` (they sum to at most ``ALPHA``), so retrying near-copies until one
  is kept on noise succeeds at most 1% of the time however many are tried.

What it cannot see: a change of structure that does no work (a dead branch, an unused function)
is a new family; the per-trial level bounds each such try, and code generation can make such a
change really faster (program.md says so).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from pqkern.bench.simplicity import docstring_free_tree
from pqkern.bench.throughput import ALPHA

CONTINUABLE = ("within", "below-bar", "slower", "cap", "contradiction")  # and loss:<w>, cap:<w>
SPENT = ("discard", "crash", "timeout")  # statuses of comparisons that spent their family's budget


class EvidenceError(RuntimeError):
    """The evidence a retry must continue is missing or does not match its sealed row: the message names it."""


def tree_sha(source: str) -> str:
    """sha256 of the kernel's syntax tree without docstrings: the same for sources that compile to the same code."""
    return hashlib.sha256(ast.dump(docstring_free_tree(source)).encode()).hexdigest()


class _Canonical(ast.NodeTransformer):
    """Constants become their type's name; identifiers become v0, v1... in order of first appearance."""

    def __init__(self):
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        return ast.copy_location(ast.Constant(value=f"<{type(node.value).__name__}>"), node)

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._name(node.arg)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self._name(node.name)
        self.generic_visit(node)
        return node

    def visit_alias(self, node: ast.alias) -> ast.alias:
        if node.asname:
            node.asname = self._name(node.asname)
        return node


def family_sha(source: str) -> str:
    """sha256 of the syntax tree with constants and names abstracted: the same for near-copies of a kernel."""
    tree = _Canonical().visit(docstring_free_tree(source))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def family_alpha(k: int) -> float:
    """The level of the k-th distinct tree of a family judged against one incumbent (k >= 1); they sum to ALPHA."""
    return ALPHA * 6.0 / (math.pi ** 2 * k * k)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Plan:
    """How this candidate is judged: its tree and family, its level, and the rounds it continues (if any)."""

    tree: str
    family: str
    alpha: float
    prior: dict[str, list[list[int]]] = field(default_factory=dict)
    continued: str = ""  # the trial folder whose rounds this one continues
    note: str = ""


def _continuable(row: dict) -> bool:
    stop = row.get("stop", "")
    return row.get("status") == "discard" and (stop in CONTINUABLE or stop.startswith(("loss:", "cap:")))


def plan(rows: list[dict], incumbent: str, source: str, trials: Path, workloads: list[str]) -> Plan:
    """The plan for a candidate of ``source`` judged against ``incumbent`` (its commit), from the verified rows of
    results.tsv and the trial folders under ``trials``. Raises EvidenceError when a row says this code was judged but its
    rounds are missing or altered."""
    tree, family = tree_sha(source), family_sha(source)
    mine = [r for r in rows if r.get("incumbent") == incumbent and r.get("status") in SPENT]
    same = [r for r in mine if r.get("tree_sha") == tree]
    earlier = [r for r in same if _continuable(r)]
    if earlier:
        row = earlier[-1]
        folder = trials / row.get("trial", "")
        evidence = folder / "comparison.json"
        if not row.get("trial") or not evidence.is_file() or file_sha256(evidence) != row.get("evidence_sha256"):
            raise EvidenceError(f"this code was judged against {incumbent[:10]} in trial {row.get('trial', '?')} "
                                f"({row.get('status')}, {row.get('stop')}), but {evidence} is missing or altered: its "
                                f"rounds cannot be continued, and a fresh comparison would roll the dice again")
        record = json.loads(evidence.read_text())
        prior = {w: [list(map(int, r)) for r in record.get("rounds_data", {}).get(w, [])] for w in workloads}
        alpha = float(record.get("alpha", row.get("alpha") or ALPHA))
        n = min((len(v) for v in prior.values()), default=0)
        note = (f"the same code was judged against this incumbent in trial {row['trial']} ({row['stop']} after {n} "
                f"rounds): this trial continues its rounds")
        return Plan(tree, family, alpha, prior, row["trial"], note)
    if same:  # judged before but not continuable (a crash, a time-out): a new comparison at the tree's own level
        alpha = _float(same[-1].get("alpha"), ALPHA)
        return Plan(tree, family, alpha)
    trees = {r.get("tree_sha") for r in mine if r.get("family_sha") == family and r.get("tree_sha") not in (None, "-", tree)}
    k = len(trees) + 1
    note = (f"a near-copy of {k - 1} kernel(s) already judged against this incumbent: judged at level {family_alpha(k):.2g} "
            f"(retry.py)") if k > 1 else ""
    return Plan(tree, family, family_alpha(k), note=note)


def _float(text, default: float) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default
