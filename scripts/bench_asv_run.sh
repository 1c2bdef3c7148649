#!/usr/bin/env bash
# `asv run HEAD^!` on a warm environment, before and after, in one run of this script.
#
#   scripts/bench_asv_run.sh [BEFORE_REV [WORKDIR]]     (default afba0b9, a new temporary folder)
#
# Each side is a fresh clone checked out at its revision (BEFORE_REV with its own asv.conf.json and
# benchmarks, then this checkout's HEAD with `--bench '^bench_throughput\.'`, what the trial records), with its
# own HOME so asv's machine file is private. One first run creates the environment; then three empty
# commits are each recorded with `asv run HEAD^!` and timed. PQKERN_DATA (default: this checkout's
# data/) should hold the default fixture already; the before side gets its own data folder,
# PQKERN_DATA_BEFORE (default WORKDIR/before-data), since older revisions cache other files there,
# and builds its fixture in its first run when that folder is empty.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
before="${1:-afba0b9}"
work="${2:-$(mktemp -d -t pqkern-asv-run-XXXX)}"
py="$here/.venv/bin/python"
export PQKERN_DATA="${PQKERN_DATA:-$here/data}" PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
after="$(git -C "$here" rev-parse HEAD)"
now() { "$py" -c 'import time; print(time.time())'; }
since() { "$py" -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$1"; }
for side in before after; do
    rev=$before; bench=(); data="${PQKERN_DATA_BEFORE:-$work/before-data}"
    if [ $side = after ]; then rev=$after; bench=(--bench '^bench_throughput\.'); data="$PQKERN_DATA"; fi
    mkdir -p "$data"
    d="$work/$side"; rm -rf "$d"; mkdir -p "$d/home"
    git clone -q "$here" "$d/repo"
    git -C "$d/repo" checkout -q -B main "$rev"
    (
        cd "$d/repo"
        export HOME="$d/home" PQKERN_DATA="$data"
        "$py" -m asv machine --yes --machine bench > /dev/null
        start=$(now)
        "$py" -m asv run "${bench[@]}" HEAD^! > "$d/first.log" 2>&1 || true
        echo "$side (${rev:0:10}): first run, environment created: $(since "$start") s"
        for i in 1 2 3; do
            git -c user.name=bench -c user.email=bench@localhost commit -q --allow-empty -m "again $i"
            start=$(now)
            "$py" -m asv run "${bench[@]}" HEAD^! > "$d/warm$i.log" 2>&1 || true
            echo "$side (${rev:0:10}): warm run $i: $(since "$start") s"
        done
    )
done
echo "logs in $work"
