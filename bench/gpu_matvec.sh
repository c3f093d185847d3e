#!/usr/bin/env bash
# The one script for the GPU machine (device tool): runs the CUDA matvec
# tests, then bench/matvec_bench, writing logs under $OUT; the bench table
# is printed last. Build and pack first, here: scripts/gpu_pack.sh build-mv2
# and make BUILD=build-mv2 CUDA=1 build-mv2/bench/matvec_bench.
set -u
B=${BUILD:-build-mv2}
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/.carry/models BUILD=$B
OUT=${OUT:-/tmp/vz-gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    | tee "$OUT/card.txt"
VZ_TEST_FILTER=${VZ_TEST_FILTER:-'test_cuda_matvec'} VZ_TEST_CUDA=1 bash tests/run.sh 2>&1 | tee "$OUT/tests.log"
"$B/bench/matvec_bench" "$@" >"$OUT/bench.log" 2>&1
rc=$?
echo "== tests: $(tail -1 "$OUT/tests.log")   bench rc=$rc   card: $(cat "$OUT/card.txt")"
cat "$OUT/bench.log"
