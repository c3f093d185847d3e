#!/usr/bin/env bash
# One device round for the tensor-core matvec (matvec_tc.cu): the GPU tests,
# bench/matvec_bench (v4 vs tc per shape, and the TinyLlama layer chain),
# then `vramzip bench` on synthetic tinyllama-1.1b and llama2-7b with the tc
# default and with VZ_CUDA_MV=24 (v4, no tc: the previous default) in the
# same run. Models are synthesized on the device in the background.
#   pack here:  scripts/gpu_pack.sh build-cuda && make BUILD=build-cuda build-cuda/bench/matvec_bench &&
#               bash bench/gpu_tc.sh --pack build-cuda
#   device:     (carry .carry/tcpk) tar -C /tmp -xJf .carry/tcpk/tc.tar.xz && cd /tmp/tc && VZ_DEADLINE=420 bash gpu_tc.sh
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=.carry/tc
    rm -rf "$D" && mkdir -p "$D/tests"
    cp "$B/vramzip" "$B/bench/matvec_bench" "$D/" && cp -r "$B/lib" "$D/" && cp bench/gpu_tc.sh "$D/"
    cp "$B"/tests/test_cuda_* "$D/tests/" && cp -r .carry/models "$D/models"
    strip "$D/vramzip" "$D/matvec_bench" "$D"/tests/*
    rm -rf .carry/tcpk && mkdir -p .carry/tcpk && tar -C .carry -cJf .carry/tcpk/tc.tar.xz tc
    du -sh "$D" .carry/tcpk
    exit 0
fi
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-420}
mkdir -p "$OUT" "$W/tl" "$W/l7"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
V=./vramzip

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$W/card.txt"
prep() { # shape dir codecs...
    local shape=$1 d=$2
    shift 2
    timeout 300 $V synth --shape "$shape" -o "$d/src" --force >"$d/prep.log" 2>&1 || echo "synth $shape failed"
    for c in "$@"; do
        timeout 300 $V convert "$d/src" -o "$d/$c.vz" --codec "$c" -q >>"$d/prep.log" 2>&1 || echo "convert $shape $c failed"
        echo "convert $shape $c done at $(( $(date +%s) - t0 ))s" >>"$d/prep.log"
    done
}
prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
p_tl=$!
prep llama2-7b "$W/l7" lossless &
p_l7=$!

for t in test_cuda_matvec test_cuda_prefill test_cuda_verify test_cuda_stream test_cuda_plan; do
    timeout 150 ./tests/$t >"$W/$t.log" 2>&1
    echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/$t.log" | tr '\n' ' ')"
    cat "$W/$t.log" >>"$OUT/tests.log"
done
grep -E "tc path|byte-identical|max \||FAILED|Failure|rror" "$OUT/tests.log" | head -30

step "matvec_bench 1 8"
timeout 150 ./matvec_bench 1 8 >"$OUT/matvec_bench.txt" 2>&1
echo "rc=$?"
cat "$OUT/matvec_bench.txt"

step "ncu: gate+up 2x5632x2048 batch 1 (lossless v4, lossless tc, raw v4, raw tc)"
if command -v ncu >/dev/null && [ "$(left)" -gt 250 ]; then
    timeout 80 ncu --clock-control none -k regex:'mv4_kernel|tc_kernel' -c 4 --section SpeedOfLight \
        --section LaunchStats --section Occupancy --section WarpStateStats --metrics smsp__inst_executed.sum \
        ./matvec_bench ncu >"$W/ncu.log" 2>&1
    grep -E "mv4_kernel|tc_kernel|Duration|DRAM Throughput|L1/TEX Cache Throughput|Achieved Occupancy|Registers|inst_executed|Issue Slots Busy" "$W/ncu.log" | head -60 | tee "$OUT/ncu.txt"
    grep -E "Stall|stalled" "$W/ncu.log" | head -20 >>"$OUT/ncu.txt"
fi
step "waiting for tinyllama"
wait $p_tl
grep -E "done|fail|rror" "$W/tl/prep.log"
step "test_cuda_forward with the tinyllama raw/lossless pair (256 greedy steps)"
VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" timeout 120 ./tests/test_cuda_forward \
    >"$W/fwd.log" 2>&1
echo "rc=$? $(grep -E 'steps: logits|max \||PASSED|FAILED' "$W/fwd.log" | tr '\n' ' ')"
cat "$W/fwd.log" >>"$OUT/tests.log"

bench() { # name cap env args...
    local name=$1 cap=$2 mv=$3
    shift 3
    [ "$(left)" -gt $(( cap / 2 )) ] || { echo "bench $name: skipped (time)"; return; }
    step "bench $name (VZ_CUDA_MV=${mv:-default}): $*"
    VZ_CUDA_MV=$mv timeout $(( cap < $(left) ? cap : $(left) )) $V bench --device cuda "$@" --json "$W/bench-$name.json" \
        >"$W/bench-$name.txt" 2>"$W/bench-$name.err"
    echo "rc=$?"
    cat "$W/bench-$name.txt" | tee -a "$OUT/bench.txt"
    grep -E "plan|error|refus|needs" "$W/bench-$name.err" | head -4
}
bench tl-tc 100 "" -m "$W/tl/src" --codec raw,lossless,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
bench tl-v4 100 24 -m "$W/tl/src" --codec raw,lossless --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16

step "waiting for llama2-7b"
wait $p_l7
grep -E "done|fail|rror" "$W/l7/prep.log"
l7c=raw
[ -f "$W/l7/lossless.vz" ] && l7c="$l7c,lossless"
bench l7-tc 120 "" -m "$W/l7/src" --codec "$l7c" --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
bench l7-v4 120 24 -m "$W/l7/src" --codec "$l7c" --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
cat "$W"/bench-*.json > "$OUT/bench.json" 2>/dev/null
step done
