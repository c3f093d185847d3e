#!/usr/bin/env bash
# One device round for the decode attention rewrite (forward.cu, issue 4):
# tests (test_batch, test_cuda_forward with the tinyllama pair), then on a
# synthetic tinyllama-1.1b: per-kernel GPU times of the decode graph (ncu,
# default attention vs the kv-head kernel VZ_CUDA_ATT=1), the VZ_CUDA_PROFILE=1 op
# profile (attention variants and chunks, variant 2 = no attention), and
# `vramzip bench` decode tok/s of both (VZ_CUDA_ATT=0 and 1), same run.
# VZ_CODECS: lossy codecs to convert and bench besides raw, lossless (q8;
# q4 converts slowly); VZ_NCU=1 adds the ncu runs; last, compute-sanitizer
# memcheck + racecheck of stories260K runs (VZ_SAN=0: none; racecheck of a
# 100-token run takes ~30 s). About 90 s with VZ_SAN=0, q8 only.
#   pack here:  scripts/gpu_pack.sh build-decattn && bash bench/gpu_decattn.sh --pack build-decattn
#   device:     cd .carry/decattn && bash gpu_decattn.sh   (models from ../models; logs under $OUT)
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=/work/main/.carry/decattn
    rm -rf "$D" && mkdir -p "$D/tests"
    cp "$B/vramzip" "$D/" && cp -r "$B/lib" "$D/" && cp bench/gpu_decattn.sh "$D/"
    cp "$B/tests/test_cuda_forward" "$B/tests/test_batch" "$D/tests/"
    strip "$D/vramzip" "$D"/tests/*
    du -sh "$D"
    exit 0
fi
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/../models BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=/tmp/vzw
DEADLINE=${VZ_DEADLINE:-150}
mkdir -p "$OUT" "$W/tl"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
V=./vramzip
S260=$VZ_MODELS/stories260K/stories260K.bin
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
( timeout 120 $V synth --shape tinyllama-1.1b -o "$W/tl/src" --force >"$W/prep.log" 2>&1
  echo "synth done at $(( $(date +%s) - t0 ))s" >>"$W/prep.log"
  for c in lossless ${VZ_CODECS:-q8}; do
      timeout 90 $V convert "$W/tl/src" -o "$W/tl/$c.vz" --codec $c -q >>"$W/prep.log" 2>&1
      echo "convert $c rc=$? at $(( $(date +%s) - t0 ))s" >>"$W/prep.log"
  done ) &
p_prep=$!

step "test_batch"
timeout 60 ./tests/test_batch >"$W/batch.log" 2>&1
echo "test_batch rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/batch.log" | tr '\n' ' ')"
cat "$W/batch.log" >>"$OUT/tests.log"
step "waiting for synth + lossless"
while ! grep -q "convert lossless" "$W/prep.log" 2>/dev/null && kill -0 $p_prep 2>/dev/null; do sleep 1; done
cat "$W/prep.log"
step "test_cuda_forward with the tinyllama pair"
VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" timeout 120 ./tests/test_cuda_forward \
    >"$W/fwd.log" 2>&1
echo "test_cuda_forward rc=$? $(grep -E 'steps: logits|attention|PASSED|FAILED' "$W/fwd.log" | tr '\n' ' ')"
cat "$W/fwd.log" >>"$OUT/tests.log"
if [ -n "$NCU" ] && [ "${VZ_NCU:-0}" = 1 ]; then
    for av in 1 0; do
        [ "$(left)" -gt 110 ] || { echo "ncu skipped (time)"; break; }
        step "ncu per-kernel, VZ_CUDA_ATT=$av, raw, 512-token prompt, 16 decode tokens"
        VZ_CUDA_ATT=$av timeout 60 "$NCU" --graph-profiling node --cache-control none --clock-control none \
            --metrics gpu__time_duration.sum --print-summary per-kernel -k regex:'attention|k_sample' -c 200 \
            $V bench --device cuda -m "$W/tl/src" --codec raw --out-dir "$W/tl" -n 16 --prompt-len 512 --ctx 2048 \
            --kv f16 >"$W/ncu$av.txt" 2>&1
        echo "rc=$?"
        cp "$W/ncu$av.txt" "$OUT/ncu-att$av.txt"
        grep -E "^  [a-z_]|gpu__time_duration" "$W/ncu$av.txt" | head -30
    done
fi
step "profile (VZ_CUDA_PROFILE=1), raw, 512 + 128 tokens"
VZ_CUDA_PROFILE=1 timeout 60 $V bench --device cuda -m "$W/tl/src" --codec raw --out-dir "$W/tl" -n 128 \
    --prompt-len 512 --ctx 2048 --kv f16 >"$W/prof.txt" 2>"$W/prof.err"
echo "rc=$?"
grep -E "^profile|^  " "$W/prof.err" | grep -v prefill | tee "$OUT/profile.txt" | head -70
wait $p_prep
cat "$W/prep.log" | tail -3
for av in 1 0 1 0; do
    [ "$(left)" -gt 15 ] || { echo "bench skipped (time)"; break; }
    step "bench VZ_CUDA_ATT=$av"
    VZ_CUDA_ATT=$av timeout 70 $V bench --device cuda -m "$W/tl/src" --codec raw,lossless,${VZ_CODECS:-q8} --out-dir "$W/tl" \
        -n 128 --prompt-len 512 --ctx 2048 --kv f16 --json "$OUT/bench-att$av.json" >"$W/b.txt" 2>"$W/b.err"
    echo "rc=$?"
    { echo "-- VZ_CUDA_ATT=$av"; cat "$W/b.txt"; } | tee -a "$OUT/bench.txt"
    grep -iE "error|fail" "$W/b.err" | head -3
done
for tool in $([ "${VZ_SAN:-1}" = 1 ] && echo memcheck racecheck); do
    step "compute-sanitizer $tool (kv-head attention, VZ_CUDA_ATT=1): stories260K run, 100 tokens at ctx 256 (4 splits), then a batch of 3 x 20"
    VZ_CUDA_ATT=1 timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 $V run -m "$S260" --device cuda -n 100 -c 256 --temp 0 \
        -p "Once upon a time" >"$W/san.log" 2>&1
    echo "rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Error' "$W/san.log" | head -3 | tr '\n' ' ')"
    cat "$W/san.log" >>"$OUT/sanitizer.log"
    VZ_CUDA_ATT=1 timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 $V run -m "$S260" --device cuda -n 20 \
        -p "One" -p "Two words" -p "and three more" >"$W/san.log" 2>&1
    echo "rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Error' "$W/san.log" | head -3 | tr '\n' ' ')"
    cat "$W/san.log" >>"$OUT/sanitizer.log"
done
step done
