"""Publish the asv dashboard so it renders with no network, and preview it.

``asv publish`` writes an ``index.html`` that loads jQuery, flot, bootstrap, stupid-table
and md5 from CDNs; offline it shows only an error page. ``pqkern-dashboard publish`` runs
``asv publish`` and then serves those files from ``vendor/`` inside the html directory,
copied from the npm packages that ``scripts/setup.sh`` installs into
``scripts/dashboard/node_modules`` (pinned in ``scripts/dashboard/package-lock.json``).

Every run is its own line: ``publish`` passes asv a copy of ``asv.conf.json`` (written to a temporary
file; the committed one is never changed) whose ``branches`` are the configured ones plus every
``autoresearch/*`` branch, local or remote-tracking (``origin/autoresearch/...``, fetched by
``pqkern-runs gather``), and the checked-out branch. asv draws one line per branch and offers them in
its branch selector. A configured branch this repository does not have (``main`` in a clone of a run's
branch, or where git's default branch has another name) is drawn from a remote-tracking copy, or left out.

asv draws a series that was skipped (n/a: it does not apply, e.g. a workload the fixture does not
judge) and one that failed alike, as an empty cell in its list view. ``publish`` tells them apart
from the results and writes ``n/a`` or ``failed`` there (``series_states.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pqkern.tools import series_states

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "scripts" / "dashboard" / "node_modules"
# The URL asv 0.6's index.html loads -> the same library's file in its npm package.
CDN_FILES = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery/dist/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "flot/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": "flot-orderbars/js/jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": "stupid-table-plugin/stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "blueimp-md5/js/md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
}
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r"""\b(?:src|href)\s*=\s*(["'])(https?://[^"']+)\1""", re.IGNORECASE)
_SRI = re.compile(r"""\s+(?:integrity\s*=\s*(["'])[^"']*\1|crossorigin(?:\s*=\s*(["'])[^"']*\2)?)""", re.IGNORECASE)


class DashboardError(RuntimeError):
    """The dashboard cannot be made offline; the message says what to do."""


def make_offline(html_dir: Path, node_modules: Path = NODE_MODULES) -> int:
    """Copy the CDN assets into ``html_dir/vendor`` and point every page at them; returns tags rewritten."""
    missing = [rel for rel in CDN_FILES.values() if not (node_modules / rel).is_file()]
    if missing:
        raise DashboardError(f"{node_modules}: missing {', '.join(missing)}; run scripts/setup.sh (it needs npm)")
    for rel in CDN_FILES.values():
        (html_dir / "vendor" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(node_modules / rel, html_dir / "vendor" / rel)
    rewritten, unknown = 0, []

    def local(match: re.Match) -> str:
        nonlocal rewritten
        tag = match.group(0)
        url = _URL.search(tag)
        if not url:
            return tag
        if url.group(2) not in CDN_FILES:
            unknown.append(url.group(2))
            return tag
        rewritten += 1
        tag = tag.replace(url.group(2), "vendor/" + CDN_FILES[url.group(2)])
        return _SRI.sub("", tag)  # the npm builds differ from the CDN's minified bytes

    for page in html_dir.glob("*.html"):
        page.write_text(_TAG.sub(local, page.read_text(encoding="utf-8")), encoding="utf-8")
    if unknown:
        urls = ", ".join(sorted(set(unknown)))
        raise DashboardError(f"{html_dir}: no local copy of {urls} (a newer asv?); add it to CDN_FILES")
    return rewritten


def conf_path(config: Path, key: str, default: str) -> Path:
    """A directory named in the asv config, resolved against the config's folder (as asv run there does)."""
    return (config.parent / json.loads(config.read_text()).get(key, default)).resolve()


def html_dir(config: Path) -> Path:
    return conf_path(config, "html_dir", "html")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def present(repo: Path, configured: list[str]) -> list[str]:
    """The configured branches this repository has: each as a local branch, else a remote-tracking copy
    (``origin/main``), else left out (said on stdout)."""
    remotes = _git(repo, "for-each-ref", "--format=%(refname:short)", "refs/remotes/").split()
    out = []
    for name in configured:
        if _git_ok(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}^{{commit}}"):
            out.append(name)
        elif any(r.partition("/")[2] == name for r in remotes):
            out.append(next(r for r in remotes if r.partition("/")[2] == name))
        else:
            print(f"pqkern-dashboard: no branch {name!r} here (asv.conf.json names it): not drawn")
    return out


def _git_ok(repo: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True).returncode == 0


def run_branches(repo: Path, configured: list[str]) -> list[str]:
    """The configured branches this repository has, the checked-out branch, then every ``autoresearch/*`` branch:
    local ones, then remote-tracking ones that no local branch of the same name already contains (a run pushed from
    here is drawn once)."""
    refs = [line.split() for line in _git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                                            "refs/heads/autoresearch/", "refs/remotes/").splitlines()]
    local = {ref.removeprefix("refs/heads/"): sha for ref, sha in refs if ref.startswith("refs/heads/")}
    out = present(repo, configured)
    current = subprocess.run(["git", "symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo, capture_output=True,
                             text=True).stdout.strip()
    if current and current not in out and current not in local:
        out.append(current)
    if not out and not local:  # a detached HEAD and no branch at all: draw HEAD's history
        out.append("HEAD")
    out += sorted(b for b in local if b not in out)
    for ref, sha in sorted(refs):
        remote, _, name = ref.removeprefix("refs/remotes/").partition("/")
        if not ref.startswith("refs/remotes/") or not name.startswith("autoresearch/"):
            continue
        contained = name in local and subprocess.run(["git", "merge-base", "--is-ancestor", sha, local[name]], cwd=repo,
                                                     capture_output=True).returncode == 0
        if not contained:
            out.append(f"{remote}/{name}")
    return out


def derived_config(config: Path, branches: list[str], out: Path) -> Path:
    """Write ``config`` to ``out`` with ``branches`` and its paths made absolute (asv resolves them against the
    config file's folder); everything else, benchmark hashes included, is unchanged."""
    conf = json.loads(config.read_text())
    for key, default in (("repo", "."), ("benchmark_dir", "benchmarks"), ("env_dir", "env"), ("results_dir", "results"),
                         ("html_dir", "html")):
        value = conf.get(key, default)
        if key != "repo" or not re.match(r"^(\w+://|git@)", value):
            conf[key] = str((config.parent / value).resolve())
    conf["branches"] = branches
    out.write_text(json.dumps(conf, indent=4) + "\n")
    return out


def publish(config: Path, node_modules: Path = NODE_MODULES) -> tuple[int, list[str]]:
    """``asv publish`` with every run's branch, then make the page offline; ``(exit code, branches drawn)``."""
    conf = json.loads(config.read_text())
    repo = (config.parent / conf.get("repo", ".")).resolve()
    branches = run_branches(repo, conf.get("branches", ["main"]))
    with tempfile.TemporaryDirectory(prefix="pqkern-dashboard-") as tmp:
        derived = derived_config(config, branches, Path(tmp) / "asv.conf.json")
        rc = subprocess.call([sys.executable, "-m", "asv", "publish", "--config", str(derived)], cwd=config.parent)
    if rc:
        return rc, branches
    try:
        marked = series_states.mark(html_dir(config), conf_path(config, "results_dir", "results"), repo, branches)
    except ValueError as e:
        raise DashboardError(str(e)) from None
    n = make_offline(html_dir(config), node_modules)
    print(f"offline dashboard: {html_dir(config)}/index.html ({n} assets served locally; branches: {', '.join(branches)};"
          f" {marked} series marked n/a or failed); view it with: pqkern-dashboard preview")
    return 0, branches


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-dashboard", description="Publish or preview the offline asv dashboard.")
    p.add_argument("command", choices=["publish", "preview"],
                   help="publish: asv publish (every autoresearch/* branch) + offline assets; preview: serve it")
    p.add_argument("--config", default="asv.conf.json", help="asv config (default: ./asv.conf.json)")
    p.add_argument("--port", type=int, default=8080, help="preview port (default 8080)")
    p.add_argument("--node-modules", type=Path, default=NODE_MODULES, help="where the npm assets are installed")
    args = p.parse_args(argv)
    config = Path(args.config).resolve()
    if not config.is_file():
        print(f"pqkern-dashboard: {config} not found; run from the repository root or pass --config", file=sys.stderr)
        return 1
    asv = [sys.executable, "-m", "asv"]
    if args.command == "preview":
        return subprocess.call(asv + ["preview", "--config", str(config), "--port", str(args.port)])
    try:
        return publish(config, args.node_modules)[0]
    except DashboardError as e:
        print(f"pqkern-dashboard: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
