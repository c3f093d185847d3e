#!/usr/bin/env bash
# The device round for the prefill non-GEMM kernels (src/backend/cuda/prefill.cu),
# run from a packed folder (binaries, lib/, this script; models in ../models):
# test_cuda_prefill (attention every variant, RMSNorm/SwiGLU, prefill vs CPU,
# raw == lossless), test_cuda_forward, prefill_bench --no-gemm (every kernel
# variant in one run), compute-sanitizer racecheck + memcheck of the attention
# test, the 512-token tinyllama raw-vs-lossless prefill test, `vramzip bench`
# with VZ_CUDA_PROFILE=1 (per-op prefill profile) for this build ("after") and
# main's binary ("before", vramzip_before), and an ncu per-kernel summary with
# stall reasons of the attention kernels (VZ_PF_NCU=0: none).
#   pack here:  bash bench/gpu_pfattn.sh --pack build-pfattn DIR [before-binary]
#   device:     cd DIR && bash gpu_pfattn.sh
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=$3
    mkdir -p "$D/tests" && cp -r "$B/lib" "$D/" && cp bench/gpu_pfattn.sh "$D/"
    cp "$B/vramzip" "$B/bench/prefill_bench" "$D/" && cp "$B/tests/test_cuda_prefill" "$B/tests/test_cuda_forward" "$D/tests/"
    [ -n "${4:-}" ] && cp "$4" "$D/vramzip_before"
    strip "$D/vramzip" "$D/prefill_bench" "$D"/tests/* "$D/vramzip_before"
    du -sh "$D"
    exit 0
fi
cd "$(dirname "$0")"
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=${VZ_MODELS:-$PWD/../models} CMOCKA_MESSAGE_OUTPUT=stdout
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-230}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
cap() { local c=$1 l; l=$(( $(left) - 3 )); echo $(( c < l ? c : (l > 1 ? l : 1) )); }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/card.txt"
step "synth tinyllama-1.1b + convert lossless in the background"
(
    timeout 150 ./vramzip synth --shape tinyllama-1.1b -o "$W/tl" --force >"$W/prep.log" 2>&1
    echo "synth rc=$? at $(( $(date +%s) - t0 ))s" >>"$W/prep.log"
    timeout 120 ./vramzip convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$W/prep.log" 2>&1
    echo "convert rc=$? at $(( $(date +%s) - t0 ))s" >>"$W/prep.log"
) &
prep=$!
step "test_cuda_prefill (stories260K), test_cuda_forward (stories260K)"
timeout "$(cap 90)" ./tests/test_cuda_prefill >"$W/prefill.log" 2>&1
echo "test_cuda_prefill rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/prefill.log" | tr '\n' ' ')"
grep -E "attention |rmsnorm|silu|max \||byte-identical|FAILED|Failure|rror" "$W/prefill.log" | head -60
cat "$W/prefill.log" >"$OUT/tests.log"
timeout "$(cap 60)" ./tests/test_cuda_forward >"$W/fwd.log" 2>&1
echo "test_cuda_forward rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|byte-identical' "$W/fwd.log" | tr '\n' ' ')"
cat "$W/fwd.log" >>"$OUT/tests.log"
step "prefill_bench 512 --no-gemm (every variant, one run)"
timeout "$(cap 40)" ./prefill_bench 512 --no-gemm >"$OUT/prefill_bench.md" 2>&1
echo "rc=$?"
cat "$OUT/prefill_bench.md"
for t in 128 256; do # fixed vs per-token cost of each kernel
    timeout "$(cap 20)" ./prefill_bench $t --no-gemm 2>&1 | grep -E "^\| (attention|rmsnorm|silu)" | sed "s/^/T=$t /" |
        tee -a "$OUT/prefill_bench.md"
done
step "compute-sanitizer racecheck + memcheck: test_attention; memcheck test_norm_silu"
for tool in racecheck memcheck; do
    VZ_TEST_ONLY=test_attention timeout "$(cap 60)" compute-sanitizer --tool $tool --error-exitcode 9 ./tests/test_cuda_prefill \
        >"$W/san-$tool.log" 2>&1
    echo "$tool test_attention rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED' "$W/san-$tool.log" | tr '\n' ' ')"
    cat "$W/san-$tool.log" >>"$OUT/sanitizer.log"
done
VZ_TEST_ONLY=test_norm_silu timeout "$(cap 30)" compute-sanitizer --tool memcheck --error-exitcode 9 ./tests/test_cuda_prefill \
    >"$W/san-ns.log" 2>&1
echo "memcheck test_norm_silu rc=$? $(grep -E 'ERROR SUMMARY|PASSED|FAILED' "$W/san-ns.log" | tr '\n' ' ')"
cat "$W/san-ns.log" >>"$OUT/sanitizer.log"
step "waiting for synth/convert"
wait $prep
cat "$W/prep.log" | grep -E "rc=|rror"
step "tinyllama: 512-token prefill + 32 steps raw vs lossless"
VZ_TEST_ONLY='*tinyllama' VZ_TINYLLAMA_RAW="$W/tl" VZ_TINYLLAMA_LOSSLESS="$W/lossless.vz" timeout "$(cap 60)" \
    ./tests/test_cuda_prefill >"$W/tl-prefill.log" 2>&1
echo "rc=$? $(grep -E 'byte-identical|differ|PASSED|FAILED|SKIP' "$W/tl-prefill.log" | tr '\n' ' ')"
cat "$W/tl-prefill.log" >>"$OUT/tests.log"
for v in after before; do
    bin=./vramzip
    [ $v = before ] && bin=./vramzip_before
    [ "$(left)" -gt 30 ] || { echo "bench $v: skipped (time)"; continue; }
    step "vramzip bench ($v), VZ_CUDA_PROFILE=1"
    VZ_CUDA_PROFILE=1 timeout "$(cap 60)" $bin bench -m "$W/tl" --device cuda --codec raw,lossless --prompt-len 512 -n 32 \
        --out-dir "$W" >"$W/bench-$v.txt" 2>"$W/bench-$v.err"
    echo "rc=$?"
    cat "$W/bench-$v.txt"
    grep -A10 "prefill profile (512" "$W/bench-$v.err" | tail -22
    { echo "## $v"; cat "$W/bench-$v.txt" "$W/bench-$v.err"; } >>"$OUT/bench.txt"
done
if [ "${VZ_PF_NCU:-1}" = 1 ] && [ "$(left)" -gt 25 ]; then
    step "ncu per-kernel summary (prefill_bench 512 --no-gemm, 2 calls per timing)"
    PF_BENCH_REPS=2 timeout "$(cap 40)" ncu --clock-control none --cache-control none --kernel-name regex:k_pf_ \
        --metrics gpu__time_duration.sum --print-summary per-kernel ./prefill_bench 512 --no-gemm >"$OUT/ncu.txt" 2>&1
    echo "rc=$?"
    grep -E "k_pf_|gpu__time_duration" "$OUT/ncu.txt" | head -40
    for k in k_pf_fa k_pf_rope_store; do
        [ "$(left)" -gt 15 ] || break
        PF_BENCH_REPS=1 timeout "$(cap 20)" ncu --clock-control none --kernel-name regex:"$k" --launch-count 1 \
            --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
            --section MemoryWorkloadAnalysis --print-details all ./prefill_bench 512 --no-gemm >"$W/ncu-$k.txt" 2>&1
        echo "ncu $k rc=$?"
        grep -iE "Duration|Elapsed|SM Active|Issued Warp|Eligible Warps|stall" "$W/ncu-$k.txt" | head -40
        cat "$W/ncu-$k.txt" >>"$OUT/ncu.txt"
    done
fi
if [ "$(left)" -gt 40 ]; then
    step "test_cuda_forward with the tinyllama pair"
    VZ_TINYLLAMA_RAW="$W/tl" VZ_TINYLLAMA_LOSSLESS="$W/lossless.vz" timeout "$(cap 60)" ./tests/test_cuda_forward \
        >"$W/fwd-tl.log" 2>&1
    echo "rc=$? $(grep -E 'steps: logits|byte-identical|PASSED|FAILED' "$W/fwd-tl.log" | tr '\n' ' ')"
    cat "$W/fwd-tl.log" >>"$OUT/tests.log"
fi
step done
