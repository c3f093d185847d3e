#!/usr/bin/env bash
# The one script for the GPU machine (device tool) for the whole forward pass:
# records the card, runs tests/test_cuda_forward (+ the matvec tests), makes a
# synthetic tinyllama-1.1b ON that machine (never carried), converts it to
# lossless and q8, checks raw vs lossless bit-identity over 256 greedy steps,
# runs `vramzip bench` ($BENCH_CODECS, default raw,lossless,q8), and prints a compact summary last.
# Build and pack first, here: scripts/gpu_pack.sh build-fw. Logs under $OUT.
set -u
B=${BUILD:-build-fw}
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/.carry/models BUILD=$B
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
mkdir -p "$OUT" "$W"
V="$B/vramzip"
S260K=$VZ_MODELS/stories260K/stories260K.bin
CODECS=${BENCH_CODECS:-raw,lossless,q8}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    | tee "$OUT/card.txt"
step "tests"
VZ_TEST_FILTER=test_cuda_forward VZ_TEST_CUDA=1 bash tests/run.sh >"$OUT/tests.log" 2>&1
grep -E "passed|max \||byte-identical|SKIP" "$OUT/tests.log" | head -20

step "run stories260K on the GPU (greedy, VRAM line)"
timeout 60 "$V" run -m "$S260K" -z "$VZ_MODELS/stories260K/tok512.bin" --device cuda --kv f16 --temp 0 -n 40 \
    >"$OUT/run.log" 2>&1
tail -4 "$OUT/run.log"

step "synth tinyllama-1.1b"
timeout 100 "$V" synth --shape tinyllama-1.1b -o "$W/tl" --force >"$OUT/prep.log" 2>&1 || echo "synth failed"
step "convert lossless, q8"
timeout 80 "$V" convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$OUT/prep.log" 2>&1 || echo "convert lossless failed"
case ",$CODECS," in *,q8,*)
    timeout 40 "$V" convert "$W/tl" -o "$W/q8.vz" --codec q8 -q >>"$OUT/prep.log" 2>&1 || echo "convert q8 failed" ;;
esac
ls -la "$W" >>"$OUT/prep.log"

step "raw vs lossless bit-identity, 256 greedy steps"
VZ_TINYLLAMA_RAW="$W/tl" VZ_TINYLLAMA_LOSSLESS="$W/lossless.vz" timeout 60 "$B/tests/test_cuda_forward" \
    >"$OUT/tinyllama_bitexact.log" 2>&1
grep -E "steps: logits|differ|SKIP|FAILED|PASSED" "$OUT/tinyllama_bitexact.log"

step "bench"
VZ_CUDA_PROFILE=1 timeout 150 "$V" bench -m "$W/tl" --device cuda --codec "$CODECS" --out-dir "$W" -n 128 --prompt-len 512 \
    --json "$OUT/bench.json" >"$OUT/bench.txt" 2>"$OUT/bench.err"
echo "bench rc=$?"
grep -v "^bench: converting" "$OUT/bench.err" | head -60

step "summary"
echo "card: $(cat "$OUT/card.txt")"
echo "tests: $(tail -1 "$OUT/tests.log")"
grep -E "^test_cuda" "$OUT/tests.log"
cat "$OUT/bench.txt"
