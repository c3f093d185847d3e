#!/usr/bin/env bash
# The device round of issue #5 (layer streaming, the layer cache): runs
# tests/test_cuda_stream and test_cuda_plan, makes a synthetic tinyllama-1.1b
# ON the device and converts it to lossless, runs `vramzip bench` (raw,
# lossless; batch-1 decode) fully resident, at --vram-budget $BUDGET
# (streaming) and at $BUDGET with --residency cache, checks streamed-vs-
# resident byte identity on tinyllama (VZ_STREAM_MODEL), then the Hugging
# Face transformers + Accelerate baseline (bench/hf_offload.py) under the
# same cap, and prints a summary LAST. Logs and JSON under $OUT.
# Pack first, here: scripts/gpu_pack.sh build-st, then copy into .carry/st.
set -u
B=${BUILD:-.}
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=$B
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
BUDGET=${BUDGET:-600M}
DEADLINE=${VZ_DEADLINE:-230}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$W/card.txt"
df -h /tmp | tail -1
step "synth + convert (background); tests meanwhile"
(
    timeout 120 ./vramzip synth --shape tinyllama-1.1b -o "$W/tl" --force >"$W/prep.log" 2>&1 || echo "synth failed"
    timeout 100 ./vramzip convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$W/prep.log" 2>&1 ||
        echo "convert failed"
) &
prep=$!
for t in test_cuda_stream test_cuda_plan; do
    log="$OUT/$t.log"
    [ $t = test_cuda_plan ] && log="$W/$t.log" # at most 8 files come back
    timeout 90 ./tests/$t >"$log" 2>&1
    echo "$t rc=$? $(grep -cE 'identical' "$log") identity lines; $(grep -E 'DIFFER|FAILED|PASSED|SKIP' "$log" | head -3 | tr '\n' ' ')"
done
step "waiting for synth/convert"
wait $prep
ls -la "$W" | head

common=(-m "$W/tl" --device cuda --codec raw,lossless --out-dir "$W" -n 64 --prompt-len 16 --ctx 2048 --kv f16)
run_bench() { # name, extra flags...
    local name=$1
    shift
    [ "$(left)" -gt 40 ] || { echo "bench $name: skipped (time)"; return; }
    step "bench $name: $*"
    timeout 90 ./vramzip bench "${common[@]}" "$@" --json "$OUT/bench-$name.json" >"$W/bench-$name.txt" \
        2>"$W/bench-$name.err"
    echo "rc=$?"
    cat "$W/bench-$name.txt"
    grep -E "plan|error|refus|needs" "$W/bench-$name.err" | head -4
}
run_bench resident
run_bench stream --vram-budget "$BUDGET"
run_bench cache --vram-budget "$BUDGET" --residency cache

step "HF transformers + accelerate, max_memory 600MiB"
if [ "$(left)" -gt 30 ]; then
    PYTHONUNBUFFERED=1 timeout $(( $(left) > 100 ? 100 : $(left) )) python3 bench/hf_offload.py "$W/tl" \
        --gpu-mem 600MiB -n 32 >"$OUT/hf.json" 2>"$W/hf.err"
    echo "rc=$?"
    cat "$OUT/hf.json"
    grep -vE "Warning|warn" "$W/hf.err" | tail -3
else
    echo "hf: skipped (time)"
fi

step "streamed vs resident byte identity on tinyllama lossless (internal API)"
if [ "$(left)" -gt 25 ]; then
    VZ_STREAM_MODEL="$W/lossless.vz" timeout $(( $(left) - 5 )) ./tests/test_cuda_stream >"$OUT/tl_identity.log" 2>&1
    echo "rc=$?"
    grep -E "lossless.vz: residency|FAILED" "$OUT/tl_identity.log"
else
    echo "skipped (time)"
fi

step "summary"
echo "card: $(cat "$W/card.txt")"
for n in resident stream cache; do
    echo "-- $n"
    grep -vE "^model:" "$W/bench-$n.txt" 2>/dev/null
done
cat "$OUT/hf.json" 2>/dev/null
cat "$W/prep.log" "$W/test_cuda_plan.log" "$W"/bench-*.err "$W/hf.err" >"$OUT/side.log" 2>/dev/null
