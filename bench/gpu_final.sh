#!/usr/bin/env bash
# One device round for the whole CUDA backend (issues #4 and #5), run from a
# packed folder (binaries, lib/, models/, hf_offload.py; see the bottom):
# the GPU tests, then `vramzip bench` on synthetic tinyllama-1.1b (raw,
# lossless, q8, q4: decode, prefill, VRAM, bit-identity), the same at a
# 600 MiB budget (streaming) with the Hugging Face + Accelerate baseline, and
# llama2-7b fully resident and at a 4 GiB budget. Models are synthesized and
# converted ON the device in the background while the tests run. Every step
# has a deadline ($VZ_DEADLINE s in all); logs and JSON under $OUT (8 files).
#   pack here:  scripts/gpu_pack.sh build-final && bash bench/gpu_final.sh --pack build-final
#   device:     cd .carry/final && OUT=$OUT bash gpu_final.sh
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=.carry/final
    rm -rf "$D" && mkdir -p "$D/tests"
    cp "$B/vramzip" "$D/" && cp -r "$B/lib" "$D/" && cp bench/gpu_final.sh bench/hf_offload.py "$D/"
    cp "$B"/tests/test_cuda_* "$D/tests/" && cp -r .carry/models "$D/models"
    du -sh "$D"
    exit 0
fi
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-560}
mkdir -p "$OUT" "$W/tl" "$W/l7"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
V=./vramzip

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$W/card.txt"
nproc; df -h /tmp | tail -1
step "synth + convert in the background (tinyllama-1.1b, llama2-7b); tests meanwhile"
prep() { # shape dir codecs...
    local shape=$1 d=$2
    shift 2
    timeout 300 $V synth --shape "$shape" -o "$d/src" --force >"$d/prep.log" 2>&1 || echo "synth $shape failed"
    echo "synth $shape done at $(( $(date +%s) - t0 ))s" >>"$d/prep.log"
    for c in "$@"; do
        timeout 300 $V convert "$d/src" -o "$d/$c.vz" --codec "$c" -q >>"$d/prep.log" 2>&1 || echo "convert $shape $c failed"
        echo "convert $shape $c done at $(( $(date +%s) - t0 ))s" >>"$d/prep.log"
    done
}
prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
p_tl=$!
prep llama2-7b "$W/l7" lossless q4 &
p_l7=$!

for t in test_cuda_matvec test_cuda_prefill test_cuda_verify test_cuda_stream test_cuda_plan; do
    timeout 120 ./tests/$t >"$W/$t.log" 2>&1
    echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/$t.log" | tr '\n' ' ')"
    cat "$W/$t.log" >>"$OUT/tests.log"
done
grep -E "byte-identical|max \||trace|FAILED|Failure" "$OUT/tests.log" | head -20

step "waiting for tinyllama"
wait $p_tl
cat "$W/tl/prep.log" | grep -E "done|fail|rror"
step "test_cuda_forward with the tinyllama raw/lossless pair (256 greedy steps)"
VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" timeout 120 ./tests/test_cuda_forward \
    >"$W/fwd.log" 2>&1
echo "rc=$? $(grep -E 'steps: logits|PASSED|FAILED' "$W/fwd.log" | tr '\n' ' ')"
cat "$W/fwd.log" >>"$OUT/tests.log"

bench() { # name budget-seconds args...
    local name=$1 cap=$2
    shift 2
    [ "$(left)" -gt $(( cap / 2 )) ] || { echo "bench $name: skipped (time)"; return; }
    step "bench $name: $*"
    timeout $(( cap < $(left) ? cap : $(left) )) $V bench --device cuda "$@" --json "$OUT/bench-$name.json" \
        >"$W/bench-$name.txt" 2>"$W/bench-$name.err"
    echo "rc=$?"
    cat "$W/bench-$name.txt"
    grep -E "plan|error|refus|needs" "$W/bench-$name.err" | head -4
    cat "$W/bench-$name.err" >>"$OUT/bench.err"
}
bench tl 120 -m "$W/tl/src" --codec raw,lossless,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
bench tl-600m 90 -m "$W/tl/src" --codec raw,lossless --out-dir "$W/tl" -n 64 --prompt-len 16 --ctx 2048 --kv f16 \
    --vram-budget 600M

step "HF transformers + accelerate, max_memory 600MiB"
if [ "$(left)" -gt 200 ]; then
    PYTHONUNBUFFERED=1 timeout 100 python3 hf_offload.py "$W/tl/src" --gpu-mem 600MiB -n 32 >"$W/hf.json" 2>"$W/hf.err"
    echo "rc=$?"
    cat "$W/hf.json" | tee -a "$OUT/tests.log"
else
    echo "hf: skipped (time)"
fi

step "waiting for llama2-7b"
wait $p_l7
cat "$W/l7/prep.log" | grep -E "done|fail|rror"
l7c=raw # only the variants converted in time (bench would convert a missing one inside its own time)
for c in lossless q4; do [ -f "$W/l7/$c.vz" ] && l7c="$l7c,$c"; done
bench l7 150 -m "$W/l7/src" --codec "$l7c" --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
bench l7-4g 120 -m "$W/l7/src" --codec "$l7c" --out-dir "$W/l7" -n 16 --prompt-len 16 --ctx 2048 --kv f16 \
    --vram-budget 4G

step "summary"
echo "card: $(cat "$W/card.txt")"
grep -E "^\[  (PASSED|FAILED) \]|steps: logits" "$OUT/tests.log"
for n in tl tl-600m l7 l7-4g; do [ -f "$W/bench-$n.txt" ] && { echo "-- $n"; cat "$W/bench-$n.txt"; }; done
cat "$W/hf.json" 2>/dev/null
