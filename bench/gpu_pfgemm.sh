#!/usr/bin/env bash
# One device round for the pipelined prefill GEMMs (gemm.cu: decode overlapped
# with cuBLAS, raw bf16 in place): GPU tests, bench/prefill_bench per shape
# (before/after on a session-sized scratch), `vramzip bench` at a 512-token
# prompt with the old path (VZ_CUDA_GEMM_PIPE=3), raw in place without decode
# ahead (1) and the default, per-op
# prefill profiles, and a compute-sanitizer memcheck of a >8-token prompt.
#   pack:   scripts/gpu_pack.sh build-pfgemm && bash bench/gpu_pfgemm.sh --pack build-pfgemm /work/main/.carry/pfgemm
#   device: tar -C /tmp -xJf .carry/pfgemm/pk.tar.xz && cd /tmp/pfgemm.pk && VZ_MODELS=<root>/.carry/models bash gpu_pfgemm.sh
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=$3
    rm -rf "$D" && mkdir -p "$D/tests"
    cp "$B/vramzip" "$B/bench/prefill_bench" bench/gpu_pfgemm.sh "$D/" && cp -r "$B/lib" "$D/"
    for t in test_cuda_prefill test_cuda_forward test_cuda_stream test_cuda_plan test_batch; do cp "$B/tests/$t" "$D/tests/"; done
    strip "$D/vramzip" "$D/prefill_bench" "$D"/tests/*
    mv "$D" "$D.pk" && mkdir -p "$D" && tar -C "$D.pk/.." -cJf "$D/pk.tar.xz" "$(basename "$D").pk" && rm -rf "$D.pk"
    du -sh "$D"
    exit 0
fi
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=${VZ_MODELS:-$(cd ../models && pwd)} VZ_TEST_CUDA=1 BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=/tmp/vzw
mkdir -p "$OUT" "$W/tl" "$W/sm"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
V=./vramzip
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
prep() { # shape dir codecs...
    local shape=$1 d=$2
    shift 2
    timeout 200 $V synth --shape "$shape" -o "$d/src" --force >"$d/prep.log" 2>&1 || echo "synth $shape failed"
    for c in "$@"; do
        timeout 200 $V convert "$d/src" -o "$d/$c.vz" --codec "$c" -q >>"$d/prep.log" 2>&1 || echo "convert $c failed" &
    done
    wait
    echo "prep $shape done at $(( $(date +%s) - t0 ))s"
}
runtest() { # test [env...]
    local t=$1
    shift
    env "$@" timeout 150 ./tests/$t >"$W/$t.log" 2>&1
    echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|byte-identical|identical|DIFFER|differ' "$W/$t.log" | tr '\n' ' ' | cut -c1-900)"
    cat "$W/$t.log" >>"$OUT/tests.log"
}
prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
p_tl=$!
prep small "$W/sm" lossless &
p_sm=$!
step tests
for t in ${VZ_FIRST_TESTS:-test_cuda_plan test_batch test_cuda_stream}; do runtest $t; done
step "prefill_bench 512"
timeout 90 ./prefill_bench 512 >"$OUT/prefill_bench.md" 2>&1
echo "rc=$?"
cat "$OUT/prefill_bench.md"
wait $p_sm
LONG="Once upon a time there was a little girl named Lily who lived in a small house near the big green forest"
for m in src lossless.vz; do
    step "compute-sanitizer memcheck: run small $m, long prompt"
    timeout 45 compute-sanitizer --tool memcheck --error-exitcode 9 $V run -m "$W/sm/$m" --device cuda -n 4 -p "$LONG" \
        >"$W/san.log" 2>&1
    echo "rc=$? $(grep -E 'ERROR SUMMARY|Error' "$W/san.log" | head -3 | tr '\n' ' ')"
    cat "$W/san.log" >>"$OUT/sanitizer.log"
done
wait $p_tl
cat "$W/tl/prep.log" | tail -3
for pipe in 3 1 ""; do
    step "vramzip bench, VZ_CUDA_GEMM_PIPE=${pipe:-default}, VZ_CUDA_PROFILE=1"
    codecs=raw,lossless,q8,q4
    [ "$pipe" = 1 ] && codecs=raw,lossless
    VZ_CUDA_GEMM_PIPE=$pipe VZ_CUDA_PROFILE=1 timeout 60 $V bench --device cuda -m "$W/tl/src" --codec $codecs \
        --out-dir "$W/tl" -n 16 --prompt-len 512 --ctx 2048 --kv f16 --json "$W/b.json" \
        >"$W/b.txt" 2>"$W/b.err"
    echo "rc=$?"
    { echo "### VZ_CUDA_GEMM_PIPE=${pipe:-default}"; cat "$W/b.txt"; } | tee -a "$OUT/bench.txt"
    { echo "### VZ_CUDA_GEMM_PIPE=${pipe:-default}"; cat "$W/b.json"; } >>"$OUT/bench.json"
    grep -E "prefill profile" "$W/b.err"
    { echo "### VZ_CUDA_GEMM_PIPE=${pipe:-default}"; cat "$W/b.err"; } >>"$OUT/profile.txt"
done
step "tests on tinyllama (512-token prefill raw vs lossless, pipelined vs serial; 256 decode steps)"
runtest test_cuda_prefill VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz"
runtest test_cuda_forward VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz"
step done
