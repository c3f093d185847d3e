#!/usr/bin/env bash
# Second device round of issue #5: test_cuda_plan, compute-sanitizer memcheck
# on a streamed stories260K generation (smallest budget that the planner
# accepts), and `vramzip bench` of synth tinyllama-1.1b (raw, lossless) at
# --vram-budget 1G and 1536M (streaming, partly resident) and 600M with
# decompress-at-load (streamed layers decoded on the host: raw bytes over
# PCIe). Reuses $W/tl and $W/lossless.vz when the machine kept them.
set -u
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=.
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-150}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
prep=
if [ ! -s "$W/lossless.vz" ]; then
    step "synth + convert (background)"
    ( timeout 60 ./vramzip synth --shape tinyllama-1.1b -o "$W/tl" --force >"$W/prep.log" 2>&1 &&
      timeout 60 ./vramzip convert "$W/tl" -o "$W/lossless.vz" --codec lossless -q >>"$W/prep.log" 2>&1 ) &
    prep=$!
fi
timeout 60 ./tests/test_cuda_plan >"$OUT/test_cuda_plan.log" 2>&1
echo "test_cuda_plan rc=$? $(grep -E 'PASSED|FAILED' "$OUT/test_cuda_plan.log" | head -2 | tr '\n' ' ')"
S=models/stories260K
for b in 65M 66M 67M 68M 70M 72M; do
    ./vramzip run -m $S/stories260K.bin -z $S/tok512.bin --device cuda --kv f16 -n 16 --temp 0 --vram-budget $b \
        >/dev/null 2>"$W/probe.err" || continue
    step "memcheck, stories260K streamed under --vram-budget $b"
    grep plan "$W/probe.err"
    timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 ./vramzip run -m $S/stories260K.bin \
        -z $S/tok512.bin --device cuda --kv f16 -n 16 --temp 0 --vram-budget $b >"$OUT/memcheck.log" 2>&1
    echo "memcheck rc=$? $(grep 'ERROR SUMMARY' "$OUT/memcheck.log")"
    for x in a b; do
        fl=(); [ $x = b ] && fl=(--vram-budget $b)
        ./vramzip run -m $S/stories260K.bin -z $S/tok512.bin --device cuda --kv f16 -n 48 --temp 0 --print-ids \
            --dump-logits "$W/$x.logits" "${fl[@]}" 2>/dev/null >"$W/$x.txt"
    done
    cmp -s "$W/a.txt" "$W/b.txt" && cmp -s "$W/a.logits" "$W/b.logits" &&
        echo "run ids + dumped logits ($(stat -c %s "$W/a.logits") B), resident vs streamed: byte-identical" ||
        echo "run ids/logits resident vs streamed DIFFER"
    break
done
[ -n "$prep" ] && { step "waiting for synth/convert"; wait $prep; }
common=(-m "$W/tl" --device cuda --codec raw,lossless --out-dir "$W" -n 64 --prompt-len 16 --ctx 2048 --kv f16)
for cfg in "1G:compressed" "1536M:compressed" "600M:decompress-at-load"; do
    b=${cfg%%:*} r=${cfg#*:}
    [ "$(left)" -gt 20 ] || { echo "bench $b $r: skipped (time)"; continue; }
    step "bench --vram-budget $b --residency $r"
    timeout 60 ./vramzip bench "${common[@]}" --vram-budget "$b" --residency "$r" --json "$OUT/bench-$b-$r.json" \
        >"$W/bench.txt" 2>"$W/bench.err"
    echo "rc=$?"
    grep -vE "^(model|device):" "$W/bench.txt"
    grep -E "plan|NOMEM" "$W/bench.err" | head -3
done
step "done"
