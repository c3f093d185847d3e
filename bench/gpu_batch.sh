#!/usr/bin/env bash
# [batch] The device round for batched generation (issue 4 item 1): the card,
# the GPU tests (test_batch: B sequences vs each alone, raw vs lossless; and
# the CUDA tests whose code paths the batch touches), a synthetic
# tinyllama-1.1b made ON the device and converted to lossless, then
# bench/batch_bench over B = 1, 2, 4, 8 sequences for raw and lossless (prompt
# 512, 128 greedy tokens, context 2048, KV f16), `vramzip run` with three
# prompts on the GPU, and compute-sanitizer memcheck on a batched run if time
# is left. Summary printed LAST; logs under $OUT.
# Build and pack first, here: scripts/gpu_pack.sh build-batch && make BUILD=build-batch CUDA=1 bench;
# carry build-batch/{vramzip,lib,bench/batch_bench} and the tests above stripped (`strip -o`: each
# binary is ~5.6 MB of CUDA code, 45 MB in all under the 64 MiB limit), tests/run.sh, this script and
# the models (VZ_MODELS).
set -u
B=${BUILD:-build-batch}
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

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    | tee "$W/card.txt"
step "synth tinyllama-1.1b + convert lossless in the background; tests meanwhile"
(
    timeout 120 "$V" synth --shape tinyllama-1.1b -o "$W/tl" --force >"$OUT/prep.log" 2>&1 || echo "synth failed"
    timeout 100 "$V" convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$OUT/prep.log" 2>&1 ||
        echo "convert failed"
) &
prep=$!
VZ_TEST_FILTER='test_batch|test_cuda_(forward|prefill|verify|plan|stream)' VZ_TEST_CUDA=1 VZ_TEST_TIMEOUT=120 \
    timeout 150 bash tests/run.sh >"$OUT/tests.log" 2>&1
grep -E "passed|memcmp|byte-identical|refused|FAILED|SKIP" "$OUT/tests.log" | head -40
step "GPU run with three prompts (stories260K)"
timeout 30 "$V" run -m "$S260K" -z "$TOK" --device cuda --kv f16 --temp 0 -n 24 -p "Once upon a time" -p "The cat" \
    -p "Lily" >"$OUT/run3.log" 2>&1
echo "run rc=$?"; cat "$OUT/run3.log"
step "waiting for synth/convert"
wait $prep
ls -la "$W" | tail -4

step "batch bench: B = 1, 2, 4, 8; raw, lossless"
timeout 150 "$B/bench/batch_bench" --seqs 1,2,4,8 -n 128 --prompt-len 512 --ctx 2048 "$W/tl" "$W/lossless.vz" \
    >"$W/bench.md" 2>"$OUT/bench.err"
echo "bench rc=$?"
cat "$OUT/bench.err" | head -20

left=$(( DEADLINE - ($(date +%s) - t0) ))
if [ "$left" -gt 40 ]; then
    step "compute-sanitizer memcheck: 3 prompts batched on stories260K"
    timeout $(( left - 10 )) compute-sanitizer --tool memcheck --error-exitcode 9 "$V" run -m "$S260K" -z "$TOK" \
        --device cuda --kv f16 --temp 0.8 --top-k 20 --seed 1 -n 12 -p "Once" -p "The dog" -p "A" \
        >"$OUT/sanitizer.log" 2>&1
    echo "memcheck rc=$? $(grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" | head -1)"
else
    echo "memcheck: skipped (time)"
fi

step "summary"
echo "card: $(cat "$W/card.txt")"
grep -E "^test_|passed.*failed" "$OUT/tests.log"
cat "$W/bench.md"
cp "$W/bench.md" "$OUT/bench.md"
