#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: the package, editable, with test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "set up: .venv (activate with: source .venv/bin/activate)"
