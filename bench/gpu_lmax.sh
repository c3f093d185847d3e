#!/usr/bin/env bash
# The device round of lossless-max transport (issue #5 item 1): GPU decoder
# tests (tests/test_cuda_lmax: GPU == CPU reference byte for byte, then on
# TinyLlama layers, timed) and streamed-vs-resident identity with lossless-max
# transport (tests/test_cuda_stream); then `vramzip bench` on a synthetic
# tinyllama-1.1b (made ON the device) converted lossless, at --vram-budget
# 600M and 1G, fixed-rate (VZ_STREAM_CODEC=lossless) and lossless-max
# transport alternately in the same call. Logs and JSON under $OUT.
#   pack here:  bash bench/gpu_lmax.sh --pack build-lmax   (into /work/main/.carry/lmax)
#   device:     cd .carry/lmax && OUT=$OUT bash gpu_lmax.sh
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=/work/main/.carry/lmax
    rm -rf "$D" && mkdir -p "$D/tests" "$D/models"
    cp "$B/vramzip" bench/gpu_lmax.sh "$D/" && cp -r "$B/lib" "$D/"
    cp "$B"/tests/test_cuda_lmax "$B"/tests/test_cuda_stream "$D/tests/"
    cp -r ../shared/models/stories260K "$D/models/"
    du -sh "$D"
    exit 0
fi
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-210}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/card.txt"
nproc
step "synth + convert tinyllama-1.1b (background); tests meanwhile"
(
    timeout 120 ./vramzip synth --shape tinyllama-1.1b -o "$W/tl" --force >"$W/prep.log" 2>&1 || echo "synth failed"
    echo "synth done at $(( $(date +%s) - t0 ))s" >>"$W/prep.log"
    timeout 100 ./vramzip convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$W/prep.log" 2>&1 ||
        echo "convert failed"
    echo "convert done at $(( $(date +%s) - t0 ))s" >>"$W/prep.log"
) &
prep=$!
for t in test_cuda_lmax test_cuda_stream; do
    timeout 100 ./tests/$t >"$OUT/$t.log" 2>&1
    echo "$t rc=$? $(grep -cE 'identical' "$OUT/$t.log") identity lines; $(grep -E 'DIFFER|FAILED|PASSED|SKIP|differs' "$OUT/$t.log" | head -4 | tr '\n' ' ')"
done
grep -E "lossless-max transport" "$OUT/test_cuda_stream.log" | head -12
step "waiting for synth/convert"
wait $prep
cat "$W/prep.log" | grep -E "done|fail|rror"

step "GPU decode of tinyllama layers vs the CPU reference, timed"
VZ_LMAX_MODEL="$W/lossless.vz" timeout 60 ./tests/test_cuda_lmax >"$W/tl_lmax.log" 2>&1
echo "rc=$?"
grep -E "lossless.vz layer|FAILED|differs|PASSED" "$W/tl_lmax.log" | grep -vE "vztest"

run_bench() { # name transport extra flags...
    local name=$1 tc=$2
    shift 2
    [ "$(left)" -gt 25 ] || { echo "bench $name: skipped (time)"; return; }
    step "bench $name (VZ_STREAM_CODEC=$tc): $*"
    VZ_STREAM_CODEC=$tc timeout 60 ./vramzip bench -m "$W/tl" --device cuda --out-dir "$W" -n 64 --prompt-len 16 \
        --ctx 2048 --kv f16 "$@" --json "$OUT/bench-$name.json" >"$W/bench-$name.txt" 2>"$W/bench-$name.err"
    echo "rc=$?"
    cat "$W/bench-$name.txt"
    tr '\r' '\n' <"$W/bench-$name.err" | grep -E "plan|error|refus|needs" | head -3
    tr '\r' '\n' <"$W/bench-$name.err" | grep -E "lossless-max" | tail -1
}
run_bench 600m-fixed lossless --codec lossless --vram-budget 600M
run_bench 600m-lmax lossless-max --codec lossless --vram-budget 600M
run_bench 1g-fixed lossless --codec lossless --vram-budget 1G
run_bench 1g-lmax lossless-max --codec lossless --vram-budget 1G
step "ncu: the decoder on tinyllama layer 0"
if [ "$(left)" -gt 40 ] && command -v ncu >/dev/null; then
    VZ_LMAX_MODEL="$W/lossless.vz" timeout $(( $(left) - 5 )) ncu --launch-skip 24 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
        ./tests/test_cuda_lmax >"$OUT/ncu.log" 2>&1
    echo "rc=$?"
    grep -E "Duration|Achieved Occupancy|Theoretical Occupancy|Stall|L1/TEX Hit|L2 Hit|Block Limit|Warp Cycles Per Issued|Registers|Shared Memory Configuration" "$OUT/ncu.log" | head -30
else
    echo "ncu: skipped"
fi
step "done"
