#!/usr/bin/env bash
# Which commit between A and B made search slower, recall worse or memory bigger? Wraps `asv find`.
#
#   scripts/bisect.sh [--metric time|quick|geomean|recall|memory] [--improvement] A..B [asv find options]
#
#   time     per-query search time on the default fixture (Search.time_search; the default)
#   quick    the same on the 100k synthetic fixture (SearchQuick.time_search)
#   geomean  the runner's geomean_ns_per_query (Quality.track_geomean_ns_per_query)
#   recall   recall@10 (Quality.track_recall_at_10): finds the largest drop
#   memory   the kernel's own peak memory (Quality.track_kernel_peak_mem_mb)
#   --improvement  find the commit that helped most instead of the one that hurt most
set -euo pipefail
cd "$(dirname "$0")/.."
metric=time improve=0
while [ $# -gt 0 ]; do
    case "$1" in
        --metric) metric="$2"; shift 2 ;;
        --metric=*) metric="${1#*=}"; shift ;;
        --improvement) improve=1; shift ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
if [ $# -lt 1 ]; then echo "bisect.sh: give a commit range A..B (see --help)" >&2; exit 2; fi
range="$1"; shift
case "$metric" in
    time) bench='^bench_kernel\.Search\.time_search$'; higher_is_worse=1 ;;
    quick) bench='^bench_kernel\.SearchQuick\.time_search$'; higher_is_worse=1 ;;
    geomean) bench='^bench_kernel\.Quality\.track_geomean_ns_per_query$'; higher_is_worse=1 ;;
    recall) bench='^bench_kernel\.Quality\.track_recall_at_10$'; higher_is_worse=0 ;;
    memory) bench='^bench_kernel\.Quality\.track_kernel_peak_mem_mb$'; higher_is_worse=1 ;;
    *) echo "bisect.sh: unknown metric '$metric' (time, quick, geomean, recall, memory)" >&2; exit 2 ;;
esac
# asv find looks for the largest increase; --invert looks for the largest decrease.
invert=()
if [ "$higher_is_worse" = "$improve" ]; then invert=(--invert); fi
asv_cmd=(asv)
if [ -x .venv/bin/asv ]; then asv_cmd=(.venv/bin/asv); fi
echo "bisect: ${asv_cmd[*]} find ${invert[*]} $* $range $bench" >&2
exec "${asv_cmd[@]}" find "${invert[@]}" "$@" "$range" "$bench"
