#!/usr/bin/env bash
# Prepare a fixture (download or --from, verify, train, encode, cache). See: scripts/prepare_fixtures.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
if [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
exec "$py" -m pqkern.tools.prepare "$@"
