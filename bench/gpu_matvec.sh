#!/usr/bin/env bash
# The one script for the GPU machine (device tool), one full matvec round:
# card; a synthetic tinyllama-1.1b made ON that machine and converted to
# lossless, q8, q4 (background); test_cuda_matvec; ncu (SpeedOfLight) on
# gate+up launches (matvec_bench ncu); bench/matvec_bench (old default vs
# v2 vs v4, per shape and a layer chain); `vramzip bench` decode with the old
# default matvec (VZ_CUDA_MV=3) and the new one (default), raw vs lossless
# bit-identity over 256 greedy steps (test_cuda_forward); a summary LAST.
# Logs under $OUT. Build and pack first, here: scripts/gpu_pack.sh build-mv4.
# Usage: BUILD=build-mv4 bash bench/gpu_matvec.sh [matvec_bench batches...]
set -u
B=${BUILD:-build-mv4}
export LD_LIBRARY_PATH=$PWD/$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/.carry/models BUILD=$B
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
mkdir -p "$OUT" "$W"
V="$B/vramzip"
CODECS=${BENCH_CODECS:-raw,lossless,q8,q4}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader \
    | tee "$W/card.txt"
step "synth + convert in the background"
(
    timeout 150 "$V" synth --shape tinyllama-1.1b -o "$W/tl" --force >"$W/prep.log" 2>&1 || echo "synth failed"
    for c in lossless q8 q4; do
        case ",$CODECS," in *,$c,*)
            timeout 150 "$V" convert "$W/tl" -o "$W/$c.vz" --codec $c -q >>"$W/prep.log" 2>&1 || echo "convert $c failed" &
        esac
    done
    wait
) &
prep=$!
step "test_cuda_matvec"
VZ_TEST_FILTER='test_cuda_matvec' VZ_TEST_CUDA=1 VZ_TEST_TIMEOUT=150 timeout 160 bash tests/run.sh >"$W/tests.log" 2>&1
grep -E "passed|FAILED|failed|SKIP|\[  (FAILED|ERROR) " "$W/tests.log" | head -20
step "ncu: gate+up 2x5632x2048 batch 1 (lossless legacy, lossless v4, raw v4, q4 v4)"
timeout 150 ncu --clock-control none -k regex:'mv_kernel|mv4_kernel' -c 4 --section SpeedOfLight \
    --section Occupancy --metrics l1tex__throughput.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio \
    "$B/bench/matvec_bench" ncu >"$W/ncu.log" 2>&1
grep -E "mv4?_kernel|Duration|DRAM Throughput|L1/TEX Cache Throughput|Achieved Occupancy|dram__throughput|l1tex__throughput|issue_active|inst_executed" "$W/ncu.log" | head -60
grep -E "stalled" "$W/ncu.log" | awk '$NF > 0.3' | head -60
command -v cuobjdump >/dev/null && cuobjdump -sass -fun '_Z10mv4_kernelILi3ELi1EEv7mv_args' "$B/bench/matvec_bench" >"$OUT/q4_v4.sass" 2>&1
step "matvec_bench ${*:-1}"
timeout 150 "$B/bench/matvec_bench" "${@:-1}" >"$W/bench_mv.log" 2>&1
echo "matvec_bench rc=$?"
step "waiting for synth/convert"
wait $prep
ls -la "$W" | grep -E "\.vz|tl$"
for mv in 3 8 10; do
    step "vramzip bench, VZ_CUDA_MV=$mv"
    VZ_CUDA_MV=$mv timeout 150 "$V" bench -m "$W/tl" --device cuda --codec "$CODECS" --out-dir "$W" -n 128 \
        --prompt-len 512 --ctx 2048 --json "$W/bench-mv$mv.json" >"$W/bench-mv$mv.txt" 2>>"$W/bench.err"
    echo "bench rc=$?"
done
step "raw vs lossless bit-identity, 256 greedy steps (default matvec)"
VZ_TINYLLAMA_RAW="$W/tl" VZ_TINYLLAMA_LOSSLESS="$W/lossless.vz" VZ_TEST_CUDA=1 timeout 90 "$B/tests/test_cuda_forward" \
    >"$W/forward.log" 2>&1
echo "test_cuda_forward rc=$?"
step "summary"
echo "card: $(cat "$W/card.txt")"
grep -E "^\[  PASSED|^\[  FAILED|passed|failed" "$W/tests.log" "$W/forward.log" | head
grep -E "steps: logits|differ" "$W/forward.log"
for mv in 3 8 10; do echo "-- VZ_CUDA_MV=$mv"; cat "$W/bench-mv$mv.txt"; done
cat "$W/bench_mv.log"
cp "$W"/tests.log "$W"/forward.log "$W"/bench_mv.log "$W"/ncu.log "$OUT/" 2>/dev/null
cat "$W"/bench-mv*.txt "$W"/bench.err "$W"/prep.log >"$OUT/bench_e2e.log" 2>/dev/null
cat "$W"/bench-mv*.json >"$OUT/bench_e2e.json" 2>/dev/null
