"""n/a or failed in the dashboard's list view, where asv shows an empty cell for both.

asv stores a series that was skipped (its ``setup`` raised ``NotImplementedError``: it does not
apply, e.g. a workload the run did not judge) as NaN and a failed one as null, and says ``n/a``
and ``failed`` in ``asv run`` and ``asv compare``; but ``asv publish`` turns both into null, and
its list view draws an empty cell for a series with no value on a branch. :func:`mark` reads the
results, finds each such series' state at the branch's newest commit that has a result for it,
writes ``n/a`` or ``failed`` into the branch's ``summary.json`` and loads ``pqkern-states.js``,
which lets asv's page show that text where it would format a number.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

# Loaded after asv.js: asv's list view formats a value with pretty_unit; a state written by mark() is shown as is.
STATES_JS = """$(document).ready(function () {
    var pretty_unit = $.asv.pretty_unit;
    $.asv.pretty_unit = function (x, unit) { return typeof x === "string" ? x : pretty_unit(x, unit); };
});
"""
STATES_TAG = '<script type="text/javascript" src="pqkern-states.js"></script>'


def _state(value) -> str:
    """``value``, ``n/a`` (asv stores a skipped series as NaN) or ``failed`` (null) for one stored result."""
    if value is None:
        return "failed"
    return "n/a" if isinstance(value, float) and math.isnan(value) else "value"


def result_states(results_dir: Path, commits: list[str]) -> dict[tuple[str, str, int | None], str]:
    """``(machine, benchmark, flat parameter index or None) -> value | n/a | failed``: each series' state at the newest
    of ``commits`` (newest first) that has a result for it."""
    rank = {c: i for i, c in enumerate(commits)}
    newest: dict[tuple[str, str, int | None], tuple[int, str]] = {}
    for path in results_dir.glob("*/*.json"):
        if path.name in ("machine.json", "benchmarks.json"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        at = rank.get(data.get("commit_hash"))
        if at is None:
            continue
        for name, row in data.get("results", {}).items():
            values, params = (row + [None, None])[:2]
            if params:
                n = math.prod(len(p) for p in params)
                cells = {i: values[i] if isinstance(values, list) and i < len(values) else None for i in range(n)}
            else:
                cells = {None: values[0] if isinstance(values, list) else values}
            for idx, value in cells.items():
                key = (path.parent.name, name, idx)
                if key not in newest or at < newest[key][0]:
                    newest[key] = (at, _state(value))
    return {k: state for k, (_, state) in newest.items()}


def mark(html: Path, results_dir: Path, repo: Path, branches: list[str]) -> int:
    """Write ``n/a`` or ``failed`` into asv's list view (``graphs/branch-*/.../summary.json``) where a series
    has no value on a branch, and load ``pqkern-states.js`` to show it; returns the rows marked."""
    marked = 0
    for branch in branches:
        listed = subprocess.run(["git", "rev-list", "--first-parent", branch], cwd=repo, capture_output=True, text=True)
        commits = listed.stdout.split() if listed.returncode == 0 else []
        states = result_states(results_dir, commits)
        folder = html / "graphs" / f"branch-{branch.replace('/', '_')}"
        for summary in folder.glob("**/summary.json"):  # graphs/branch-B/[env-...]/machine-M/.../summary.json
            machine = next((part.removeprefix("machine-") for part in summary.relative_to(folder).parts
                            if part.startswith("machine-")), "")
            rows = json.loads(summary.read_text())
            for row in rows:
                state = states.get((machine, row["name"], row["idx"]))
                if row.get("last_value") is None and state in ("n/a", "failed"):
                    row["last_value"] = state
                    marked += 1
            summary.write_text(json.dumps(rows))
    (html / "pqkern-states.js").write_text(STATES_JS)
    index = html / "index.html"
    page = index.read_text(encoding="utf-8")
    if STATES_TAG not in page:
        page = re.sub(r'(<script[^>]*src="asv\.js"[^>]*>\s*</script>)', lambda m: m.group(1) + "\n    " + STATES_TAG, page,
                      count=1)
        if STATES_TAG not in page:
            raise ValueError(f"{index}: no asv.js script tag to load pqkern-states.js after (a newer asv?)")
        index.write_text(page, encoding="utf-8")
    return marked
