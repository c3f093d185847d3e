#!/usr/bin/env bash
# A short device round after a fix (packed like gpu_final.sh: run from
# .carry/final): the GPU tests, then tinyllama-1.1b resident (every codec),
# at a 600 MiB budget (peak VRAM must stay under it) and the Hugging Face +
# Accelerate baseline at the same cap (skipped past $VZ_DEADLINE s).
set -u
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
mkdir -p "$OUT" "$W/tl"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
( timeout 100 ./vramzip synth --shape tinyllama-1.1b -o "$W/tl/src" --force >/dev/null 2>&1 &&
  for c in lossless q8 q4; do timeout 120 ./vramzip convert "$W/tl/src" -o "$W/tl/$c.vz" --codec $c -q; done ) &
prep=$!
for t in test_cuda_verify test_cuda_stream test_cuda_plan test_cuda_prefill test_cuda_matvec; do
    timeout 120 ./tests/$t >"$W/$t.log" 2>&1
    echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/$t.log" | tr '\n' ' ')"
    cat "$W/$t.log" >>"$OUT/tests.log"
done
grep -E "byte-identical|identical|trace|budget|peak|FAILED|Failure" "$OUT/tests.log" | head -30
wait $prep
step "prefill tinyllama pair"
VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" VZ_TEST_ONLY='*tinyllama' timeout 100 \
    ./tests/test_cuda_prefill >"$W/pft.log" 2>&1
echo "rc=$? $(grep -E 'identical|PASSED|FAILED' "$W/pft.log" | tr '\n' ' ')"
for b in ":raw,lossless,q8,q4" "600M:lossless,q8,q4" "640M:raw"; do
    bud=${b%%:*} cod=${b#*:}
    step "bench ${bud:-resident} $cod"
    timeout 90 ./vramzip bench --device cuda -m "$W/tl/src" --codec "$cod" --out-dir "$W/tl" -n 64 \
        --prompt-len 512 --ctx 2048 --kv f16 ${bud:+--vram-budget $bud} --json "$OUT/bench-${bud:-res}.json" \
        2>"$W/b.err" | tee -a "$OUT/bench.txt"
    echo "rc=$?"
    grep -E "plan|rror|needs" "$W/b.err" | head -4
done
step "HF transformers + accelerate, max_memory 600MiB"
if [ $(( $(date +%s) - t0 )) -lt ${VZ_DEADLINE:-200} ]; then
    PYTHONUNBUFFERED=1 timeout 90 python3 hf_offload.py "$W/tl/src" --gpu-mem 600MiB -n 32 2>"$W/hf.err" | tee "$OUT/hf.json"
fi
step done
