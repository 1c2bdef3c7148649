#!/usr/bin/env bash
# Which commit between A and B made search slower, recall worse or memory bigger? Wraps `asv find`.
#
#   scripts/bisect.sh [--metric time|ivf|recall|ivf-recall|memory] [--improvement] A..B [asv find options]
#
#   time        flat per-query time (Kernel.track_flat_geomean_ns_per_query; the default)
#   ivf         IVF per-query time, the whole probe (Kernel.track_ivf_geomean_ns_per_query)
#   recall      flat recall@10 (Kernel.track_flat_recall_at_10): finds the largest drop
#   ivf-recall  IVF recall@10 (Kernel.track_ivf_recall_at_10)
#   memory      the kernel's own peak memory (Kernel.track_kernel_peak_mem_mb)
#   --improvement  find the commit that helped most instead of the one that hurt most
set -euo pipefail
cd "$(dirname "$0")/.."
metric=time improve=0
while [ $# -gt 0 ]; do
    case "$1" in
        --metric) metric="$2"; shift 2 ;;
        --metric=*) metric="${1#*=}"; shift ;;
        --improvement) improve=1; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
if [ $# -lt 1 ]; then echo "bisect.sh: give a commit range A..B (see --help)" >&2; exit 2; fi
range="$1"; shift
case "$metric" in
    time) bench='^bench_kernel\.Kernel\.track_flat_geomean_ns_per_query$'; higher_is_worse=1 ;;
    ivf) bench='^bench_kernel\.Kernel\.track_ivf_geomean_ns_per_query$'; higher_is_worse=1 ;;
    recall) bench='^bench_kernel\.Kernel\.track_flat_recall_at_10$'; higher_is_worse=0 ;;
    ivf-recall) bench='^bench_kernel\.Kernel\.track_ivf_recall_at_10$'; higher_is_worse=0 ;;
    memory) bench='^bench_kernel\.Kernel\.track_kernel_peak_mem_mb$'; higher_is_worse=1 ;;
    *) echo "bisect.sh: unknown metric '$metric' (time, ivf, recall, ivf-recall, memory)" >&2; exit 2 ;;
esac
# asv find looks for the largest increase; --invert looks for the largest decrease.
invert=()
if [ "$higher_is_worse" = "$improve" ]; then invert=(--invert); fi
asv_cmd=(asv)
if [ -x .venv/bin/asv ]; then asv_cmd=(.venv/bin/asv); fi
echo "bisect: ${asv_cmd[*]} find ${invert[*]} $* $range $bench" >&2
exec "${asv_cmd[@]}" find "${invert[@]}" "$@" "$range" "$bench"
