#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: the package, editable, with test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,peers,imagesift]'
# Vouch for what was just installed: trials refuse a file of the environment whose content differs from what is pinned
# here (pqkern/bench/integrity.py). Run again after any reinstall.
.venv/bin/python -m pqkern.bench.integrity --accept
if command -v npm >/dev/null 2>&1; then  # the dashboard's JavaScript, so it renders offline
    (cd scripts/dashboard && npm ci --ignore-scripts --no-audit --no-fund --silent)
else
    echo "warning: npm not found: pqkern-dashboard publish needs it (apt-get install npm), the rest works" >&2
fi
if ! command -v bwrap >/dev/null 2>&1; then  # pqkern-sandbox, for agents run unattended (docs/sandbox.md)
    echo "warning: bubblewrap not found: pqkern-sandbox needs it (apt-get install bubblewrap), the rest works" >&2
fi
echo "set up: .venv (activate with: source .venv/bin/activate)"
