#!/usr/bin/env bash
# The one script for the GPU machine (device tool) for the whole forward pass:
# records the card, runs tests/test_cuda_matvec and test_cuda_forward, makes a
# synthetic tinyllama-1.1b ON that machine (never carried), converts it to
# lossless and q8 (q4 has no CUDA decoder yet: skipped), runs `vramzip bench`
# ($BENCH_CODECS, default raw,lossless,q8; context $BENCH_CTX, default 2048),
# again with the matvec v2+pdl variant (VZ_CUDA_MV=0), checks raw vs lossless bit-identity over 256 greedy steps, runs
# compute-sanitizer (memcheck, then racecheck) on a short stories260K
# generation, and prints a compact summary LAST. Logs and JSON under $OUT.
# Build and pack first, here: scripts/gpu_pack.sh build-fw2 (BUILD=build-fw2).
set -u
B=${BUILD:-build-fw2}
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/.carry/models BUILD=$B
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
mkdir -p "$OUT" "$W"
V="$B/vramzip"
S260K=$VZ_MODELS/stories260K/stories260K.bin
TOK=$VZ_MODELS/stories260K/tok512.bin
CODECS=${BENCH_CODECS:-raw,lossless,q8}
CTX=${BENCH_CTX:-2048}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    | tee "$W/card.txt"
step "synth + convert in the background; tests meanwhile"
(
    timeout 120 "$V" synth --shape tinyllama-1.1b -o "$W/tl" --force >"$OUT/prep.log" 2>&1 || echo "synth failed"
    timeout 100 "$V" convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$OUT/prep.log" 2>&1 &
    case ",$CODECS," in *,q8,*)
        timeout 100 "$V" convert "$W/tl" -o "$W/q8.vz" --codec q8 -q >>"$OUT/prep.log" 2>&1 || echo "convert q8 failed" ;;
    esac
    wait
    ls -la "$W" >>"$OUT/prep.log"
) &
prep=$!
VZ_TEST_FILTER='test_cuda_(matvec|forward)' VZ_TEST_CUDA=1 timeout 150 bash tests/run.sh >"$OUT/tests.log" 2>&1
grep -E "passed|FAILED|max \||byte-identical|SKIP" "$OUT/tests.log" | head -20
step "waiting for synth/convert"
wait $prep

step "bench (context $CTX)"
VZ_CUDA_PROFILE=1 timeout 150 "$V" bench -m "$W/tl" --device cuda --codec "$CODECS" --out-dir "$W" -n 128 \
    --prompt-len 512 --ctx "$CTX" --json "$OUT/bench.json" >"$W/bench.txt" 2>"$OUT/bench.err"
echo "bench rc=$?"
grep -v "^bench: converting" "$OUT/bench.err" | head -90

step "bench again, matvec v2+pdl (VZ_CUDA_MV=0; all variants bitwise equal)"
VZ_CUDA_MV=0 timeout 120 "$V" bench -m "$W/tl" --device cuda --codec "$CODECS" --out-dir "$W" -n 128 \
    --prompt-len 512 --ctx "$CTX" --json "$OUT/bench-mv0.json" >"$W/bench-mv0.txt" 2>>"$OUT/bench.err"
echo "bench rc=$?"

step "raw vs lossless bit-identity, 256 greedy steps"
VZ_TINYLLAMA_RAW="$W/tl" VZ_TINYLLAMA_LOSSLESS="$W/lossless.vz" timeout 60 "$B/tests/test_cuda_forward" \
    >"$OUT/tinyllama_bitexact.log" 2>&1
grep -E "steps: logits|differ|SKIP|FAILED|PASSED" "$OUT/tinyllama_bitexact.log"

step "compute-sanitizer on stories260K, 16 tokens (greedy and top-k)"
for tool in memcheck racecheck; do
    left=$(( ${VZ_DEADLINE:-400} - ($(date +%s) - t0) ))
    [ "$left" -gt 30 ] || { echo "$tool: skipped (time)"; continue; }
    timeout $(( left - 10 )) compute-sanitizer --tool $tool --error-exitcode 9 "$V" run -m "$S260K" -z "$TOK" \
        --device cuda --kv f16 --temp 0.8 --top-k 20 --seed 1 -n 16 >"$OUT/sanitizer-$tool.log" 2>&1
    echo "$tool rc=$? $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$OUT/sanitizer-$tool.log" | head -1)"
    cat "$OUT/sanitizer-$tool.log" >>"$OUT/sanitizer.log" && rm -f "$OUT/sanitizer-$tool.log"
done

step "summary"
echo "card: $(cat "$W/card.txt")"
grep -E "^test_cuda|passed.*failed" "$OUT/tests.log"
grep -E "steps: logits" "$OUT/tinyllama_bitexact.log"
echo "-- default matvec (legacy, plain launch):"
cat "$W/bench.txt"
echo "-- VZ_CUDA_MV=0 (matvec v2+pdl):"
grep -vE "^(device|model):" "$W/bench-mv0.txt"
