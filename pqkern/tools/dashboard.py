"""Publish the asv dashboard so it renders with no network, and preview it.

``asv publish`` writes an ``index.html`` that loads jQuery, flot, bootstrap, stupid-table
and md5 from CDNs; offline it shows only an error page. ``pqkern-dashboard publish`` runs
``asv publish`` and then serves those files from ``vendor/`` inside the html directory,
copied from the npm packages that ``scripts/setup.sh`` installs into
``scripts/dashboard/node_modules`` (pinned in ``scripts/dashboard/package-lock.json``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


def html_dir(config: Path) -> Path:
    conf = json.loads(config.read_text())
    return (config.parent / conf.get("html_dir", "html")).resolve()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pqkern-dashboard", description="Publish or preview the offline asv dashboard.")
    p.add_argument("command", choices=["publish", "preview"], help="publish: asv publish + offline assets; preview: serve it")
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
    rc = subprocess.call(asv + ["publish", "--config", str(config)], cwd=config.parent)
    if rc:
        return rc
    try:
        n = make_offline(html_dir(config), args.node_modules)
    except DashboardError as e:
        print(f"pqkern-dashboard: {e}", file=sys.stderr)
        return 1
    print(f"offline dashboard: {html_dir(config)}/index.html ({n} assets served locally); view it with: pqkern-dashboard preview")
    return 0


if __name__ == "__main__":
    sys.exit(main())
