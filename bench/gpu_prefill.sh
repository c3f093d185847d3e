#!/usr/bin/env bash
# The one script for the GPU machine (device tool) for the prefill work:
# records the card and where libcublas.so.13 lives there (never carried),
# runs tests/test_cuda_prefill and test_cuda_forward (stories260K, then the
# 512-token tinyllama raw-vs-lossless case), the GEMM microbench
# ($B/bench/prefill_bench 512: cuBLAS bf16 reference, path A split into
# decode + GEMM, path B), and `vramzip bench --prompt-len 512` with the old
# matvec prefill (VZ_CUDA_PREFILL=0) and the default (path A), a per-op
# prefill profile, then compute-sanitizer (racecheck of the attention
# kernels, memcheck of the GEMM test and of a long-prompt run). Summary last.
# Build and pack first, here: scripts/gpu_pack.sh build-pf and
# make BUILD=build-pf CUDA=1 build-pf/bench/prefill_bench.
set -u
B=${BUILD:-build-pf}
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=${VZ_MODELS:-$PWD/.carry/models} BUILD=$B
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-200}
mkdir -p "$OUT" "$W"
V="$B/vramzip"
S260K=$VZ_MODELS/stories260K/stories260K.bin
TOK=$VZ_MODELS/stories260K/tok512.bin
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    | tee "$W/card.txt"
{ ls -la /usr/local/cuda/lib64/libcublas.so* 2>&1; timeout 10 find /usr/local /opt /usr/lib -name 'libcublas.so*' 2>/dev/null; } \
    >"$OUT/cublas.txt"
step "libcublas: $(grep -c . "$OUT/cublas.txt") lines in cublas.txt; first: $(head -1 "$OUT/cublas.txt")"
step "synth + convert in the background"
(
    timeout 120 "$V" synth --shape tinyllama-1.1b -o "$W/tl" --force >"$OUT/prep.log" 2>&1 || echo "synth failed"
    timeout 100 "$V" convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$OUT/prep.log" 2>&1 &
    timeout 100 "$V" convert "$W/tl" -o "$W/q8.vz" --codec q8 -q >>"$OUT/prep.log" 2>&1
    wait
) &
prep=$!
step "tests (stories260K)"
CMOCKA_MESSAGE_OUTPUT=stdout timeout 60 "$B/tests/test_cuda_prefill" >"$OUT/prefill_tests.log" 2>&1
echo "test_cuda_prefill rc=$?"
grep -E "max \||byte-identical|within|FAILED|PASSED|SKIP|rror" "$OUT/prefill_tests.log" | head -30
VZ_TEST_FILTER='test_cuda_forward' VZ_TEST_CUDA=1 timeout 60 bash tests/run.sh >"$OUT/tests.log" 2>&1
tail -1 "$OUT/tests.log"
step "GEMM microbench, T = 512"
timeout 100 "$B/bench/prefill_bench" 512 >"$OUT/prefill_bench.md" 2>&1
echo "prefill_bench rc=$?"
step "waiting for synth/convert"
wait $prep
step "tinyllama: 512-token prefill raw vs lossless"
VZ_TEST_ONLY='*tinyllama' VZ_TINYLLAMA_RAW="$W/tl" VZ_TINYLLAMA_LOSSLESS="$W/lossless.vz" timeout 60 "$B/tests/test_cuda_prefill" \
    >"$OUT/tinyllama_prefill.log" 2>&1
grep -E "byte-identical|differ|FAILED|PASSED|SKIP" "$OUT/tinyllama_prefill.log"
for mode in 0 auto; do
    [ "$(left)" -gt 25 ] || { echo "bench $mode: skipped (time)"; continue; }
    step "vramzip bench, prefill mode $mode"
    VZ_CUDA_PREFILL=$([ $mode = auto ] && echo "" || echo $mode) timeout $(( $(left) - 10 )) "$V" bench -m "$W/tl" \
        --device cuda --codec raw,lossless,q8 --out-dir "$W" -n 32 --prompt-len 512 --ctx 1024 \
        --json "$OUT/bench-$mode.json" >"$W/bench-$mode.txt" 2>>"$OUT/bench.err"
    echo "rc=$?"
done
if [ "$(left)" -gt 20 ]; then
    step "prefill profile (lossless, VZ_CUDA_PROFILE=1)"
    VZ_CUDA_PROFILE=1 timeout $(( $(left) - 5 )) "$V" bench -m "$W/tl" --device cuda --codec lossless --out-dir "$W" \
        -n 16 --prompt-len 512 --ctx 1024 >"$W/bench-prof.txt" 2>"$OUT/prefill_profile.log"
    grep -A12 "prefill profile" "$OUT/prefill_profile.log" | tail -13
fi
if [ "$(left)" -gt 20 ]; then
    step "compute-sanitizer: racecheck of the attention kernels, memcheck of the GEMMs (small cases)"
    VZ_TEST_ONLY=test_attention timeout $(( $(left) - 5 )) compute-sanitizer --tool racecheck --error-exitcode 9 \
        "$B/tests/test_cuda_prefill" >"$OUT/sanitizer-race.log" 2>&1
    echo "racecheck rc=$? $(grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/sanitizer-race.log" | head -1)"
    VZ_TEST_ONLY='test_gemm_codecs' timeout $(( $(left) - 5 )) compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$B/tests/test_cuda_prefill" >"$OUT/sanitizer-gemm.log" 2>&1
    echo "memcheck gemm rc=$? $(grep -E "ERROR SUMMARY" "$OUT/sanitizer-gemm.log" | head -1)"
fi
if [ "$(left)" -gt 30 ]; then
    step "compute-sanitizer memcheck, stories260K, 40-token prompt (prefill path)"
    P="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends."
    timeout $(( $(left) - 5 )) compute-sanitizer --tool memcheck --error-exitcode 9 "$V" run -m "$S260K" -z "$TOK" \
        --device cuda --kv f16 --temp 0 -n 8 -p "$P" >"$OUT/sanitizer.log" 2>&1
    echo "memcheck rc=$? $(grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | head -1)"
fi

step "summary"
echo "card: $(cat "$W/card.txt")"
grep -E "PASSED|FAILED" "$OUT/prefill_tests.log"; grep -E "^test_cuda|passed.*failed" "$OUT/tests.log"
grep -E "byte-identical|differ" "$OUT/tinyllama_prefill.log"
cat "$OUT/prefill_bench.md"
for mode in 0 auto; do echo "-- VZ_CUDA_PREFILL=$mode"; cat "$W/bench-$mode.txt" 2>/dev/null; done
grep -E "attention .*max" "$OUT/prefill_tests.log"
tail -5 "$OUT/bench.err"
