#!/usr/bin/env bash
# cpu_run.sh - CPU generation speed of `vramzip run` (greedy, from BOS) with
# 1 and 2 threads, 3 runs each; prints the stats lines (tok/s, weight bytes,
# peak RSS). Usage: BUILD=build bash bench/cpu_run.sh [MODEL] [N_TOKENS]
set -eu
BUILD=${BUILD:-build}
MODEL=${1:-../shared/models/stories260K/stories260K.bin}
N=${2:-500}
for t in 1 2; do
    for r in 1 2 3; do
        printf 't=%d run %d: ' "$t" "$r"
        "$BUILD/vramzip" run -m "$MODEL" --temp 0 -n "$N" -t "$t" --print-ids 2>&1 >/dev/null | tail -1
    done
done
