#!/usr/bin/env bash
# Which commit between A and B made search slower, recall worse or memory bigger? Wraps `asv find`.
#
#   scripts/bisect.sh [--metric time|recall|p99|memory] [--workload W] [--improvement] A..B [asv find options]
#
#   time        the kernel's CPU time as a fraction of the seed's (Speed.track_time_vs_seed; the default)
#   recall      recall@10 (Recall.track_recall_at_10): finds the largest drop
#   p99         the 99th-percentile per-query time (Latency.track_p99_ns)
#   memory      the kernel's own peak memory (Run.track_kernel_peak_mem_mb; no workload)
#   ivf, ivf-recall   the same as --metric time / recall --workload ivf
#   --workload  flat, ivf, real, real-ivf or combined (time only); default: the first the default fixture judges
#   --improvement  find the commit that helped most instead of the one that hurt most
# The series are benchmarks/bench_throughput.py's; bench_kernel.py's are retired (docs/asv.md).
set -euo pipefail
cd "$(dirname "$0")/.."
metric=time improve=0 workload=
while [ $# -gt 0 ]; do
    case "$1" in
        --metric) metric="$2"; shift 2 ;;
        --metric=*) metric="${1#*=}"; shift ;;
        --workload) workload="$2"; shift 2 ;;
        --workload=*) workload="${1#*=}"; shift ;;
        --improvement) improve=1; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) break ;;
    esac
done
if [ $# -lt 1 ]; then echo "bisect.sh: give a commit range A..B (see --help)" >&2; exit 2; fi
range="$1"; shift
py=python3
if [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
case "$metric" in
    ivf) metric=time; workload=ivf ;;
    ivf-recall) metric=recall; workload=ivf ;;
esac
if [ -z "$workload" ]; then
    workload="$("$py" -c 'from pqkern.bench.fixture import default_source
from pqkern.bench.workloads import judged
print(judged(default_source())[0])')"
fi
case "$workload" in
    flat|ivf|real|real-ivf|combined) ;;
    *) echo "bisect.sh: unknown workload '$workload' (flat, ivf, real, real-ivf, combined)" >&2; exit 2 ;;
esac
case "$metric" in
    time) bench="^bench_throughput\.Speed\.track_time_vs_seed\('$workload', 'estimate'\)\$"; higher_is_worse=1 ;;
    recall) bench="^bench_throughput\.Recall\.track_recall_at_10\('$workload'\)\$"; higher_is_worse=0 ;;
    p99) bench="^bench_throughput\.Latency\.track_p99_ns\('$workload'\)\$"; higher_is_worse=1 ;;
    memory) bench='^bench_throughput\.Run\.track_kernel_peak_mem_mb$'; higher_is_worse=1 ;;
    *) echo "bisect.sh: unknown metric '$metric' (time, recall, p99, memory, ivf, ivf-recall)" >&2; exit 2 ;;
esac
# asv find looks for the largest increase; --invert looks for the largest decrease.
invert=()
if [ "$higher_is_worse" = "$improve" ]; then invert=(--invert); fi
asv_cmd=(asv)
if [ -x .venv/bin/asv ]; then asv_cmd=(.venv/bin/asv); fi
echo "bisect: ${asv_cmd[*]} find ${invert[*]} $* $range $bench" >&2
exec "${asv_cmd[@]}" find "${invert[@]}" "$@" "$range" "$bench"
