#!/usr/bin/env bash
# A/B of two builds in ONE device run (timings compare only within a run):
# build A (before a change) and build B (after it) are packed side by side;
# on the device: B's matvec and forward tests, matvec_bench of A, B and any
# extra matvec_bench variants of B (files bench/matvec_bench.*), then
# `vramzip bench` of A and B interleaved (A, B, A, B) on a synthetic
# tinyllama-1.1b made on the device, and the per-op decode profile
# (VZ_CUDA_PROFILE=1) of both (VZ_AB_BVARS="VAR=v ...": B's again under
# each, VZ_AB_BBENCH=1 its bench too, of the codecs VZ_AB_BCODECS);
# VZ_AB_MVB=0 skips matvec_bench; VZ_AB_NCU=1 adds ncu of B's v4 gate/up
# and down matvec, VZ_AB_SAN=1
# compute-sanitizer racecheck and memcheck of B (stories260K, and a lossless
# synth `tiny`); with `l7`, every GPU test
# of B and llama2-7b raw and lossless too (and B's again under each
# VZ_AB_L7VARS="VAR=v ...", their stderr kept; VAR=v+VAR=w sets two at
# once). VZ_AB_TESTS="t1 t2": only these test binaries ("" none, for knob
# sweeps of one build; test_cuda_forward always runs). The test results are
# repeated at the end.
# `batch`: batches 2, 4, 8 instead (matvec_bench per shape, batch_bench
# end to end).
# Every step has a deadline ($VZ_DEADLINE s in all); logs under $OUT.
# An optional third build C (--pack ... BUILD_C) is benched beside A and B
# (A, B, C, A, B, C; llama2-7b and the profile too): a second candidate in
# the same run. VZ_AB_WIDE=1: `matvec_bench wide` of every build, and of B
# under VZ_CUDA_CARVEOUT=-1.
#   pack here:  bash bench/gpu_ab.sh --pack BUILD_A BUILD_B [BUILD_C]   (.carry/abpk/ab.tar.xz)
#   device:     tar -C /tmp -xJf .carry/abpk/ab.tar.xz && cd /tmp/ab && bash gpu_ab.sh [tl|l7|batch]
set -u
if [ "${1:-}" = --pack ]; then
    A=$2 B=$3 D=.carry/ab
    rm -rf "$D" && mkdir -p "$D/a/bench" "$D/b/bench" "$D/b/tests"
    cp "$A/vramzip" "$D/a/" && cp "$A/bench/matvec_bench" "$A/bench/batch_bench" "$D/a/bench/" && cp -r "$A/lib" "$D/a/"
    cp "$B/vramzip" "$D/b/" && cp "$B"/bench/matvec_bench* "$B/bench/batch_bench" "$D/b/bench/" && cp -r "$B/lib" "$D/b/"
    cp "$B"/tests/test_cuda_* "$B/tests/test_batch" "$D/b/tests/" && cp bench/gpu_ab.sh "$D/"
    if [ -n "${4:-}" ]; then
        mkdir -p "$D/c/bench" && cp "$4/vramzip" "$D/c/" && cp "$4/bench/matvec_bench" "$D/c/bench/" && cp -r "$4/lib" "$D/c/"
        strip "$D"/c/vramzip "$D"/c/bench/*
    fi
    cp -r .carry/models "$D/models"
    strip "$D"/a/vramzip "$D"/a/bench/* "$D"/b/vramzip "$D"/b/bench/* "$D"/b/tests/*
    rm -rf .carry/abpk && mkdir -p .carry/abpk && tar -C .carry -cJf .carry/abpk/ab.tar.xz ab
    du -sh "$D" .carry/abpk
    exit 0
fi
PART=${1:-tl}
XS="a b"
[ -d c ] && XS="a b c"
export VZ_MODELS=$PWD/models
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzab}
DEADLINE=${VZ_DEADLINE:-540}
mkdir -p "$OUT" "$W/tl" "$W/l7"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
cap() { local c=$1 l; l=$(left); echo $(( c < l ? c : (l > 1 ? l : 1) )); }
in_b() { (cd b && LD_LIBRARY_PATH=$PWD/lib BUILD=$PWD "$@"); }
in_x() { local x=$1; shift; (cd "$x" && LD_LIBRARY_PATH=$PWD/lib "$@"); }

# the device tool brings back at most 8 files of $OUT: the card heads bench.txt (no file of its own)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/card: /' | tee "$OUT/bench.txt"
prep() { # shape dir codecs... (B's vramzip; the .vz format is the same in A and B)
    local shape=$1 d=$2
    shift 2
    in_b timeout 300 ./vramzip synth --shape "$shape" -o "$d/src" --force >"$d/prep.log" 2>&1 || echo "synth $shape failed"
    for c in "$@"; do
        in_b timeout 300 ./vramzip convert "$d/src" -o "$d/$c.vz" --codec "$c" -q >>"$d/prep.log" 2>&1 ||
            echo "convert $shape $c failed"
    done
    echo "prep $shape done at $(( $(date +%s) - t0 ))s"
}
bench() { # build name budget args...
    local x=$1 name=$2 c=$3
    shift 3
    [ "$(left)" -gt $(( c / 2 )) ] || { echo "bench $x $name: skipped (time)"; return; }
    step "bench $x $name: $*"
    in_x "$x" timeout "$(cap "$c")" ./vramzip bench --device cuda "$@" --json "$W/bench-$x-$name.json" \
        >"$W/bench-$x-$name.txt" 2>"$W/bench-$x-$name.err"
    echo "rc=$?"
    sed "s/^/[$x] /" "$W/bench-$x-$name.txt" | tee -a "$OUT/bench.txt"
    cat "$W/bench-$x-$name.json" >>"$OUT/bench-$x.json" 2>/dev/null
}

if [ "$PART" = batch ]; then # batch 2..8: matvec_bench per shape, batch_bench end to end (raw, lossless)
    prep tinyllama-1.1b "$W/tl" lossless &
    p_tl=$!
    for x in a b; do
        step "$x: matvec_bench 2 4 8"
        in_x $x timeout "$(cap 120)" ./bench/matvec_bench 2 4 8 >"$OUT/mvb-$x.txt" 2>&1
        echo "rc=$?"
    done
    wait $p_tl
    for x in a b a b; do
        step "$x: batch_bench 1,2,4,8 raw, lossless"
        in_x $x timeout "$(cap 100)" ./bench/batch_bench --seqs 1,2,4,8 -n 128 --prompt-len 512 --ctx 2048 "$W/tl/src" \
            "$W/tl/lossless.vz" 2>&1 | sed "s/^/[$x] /" | tee -a "$OUT/batch.txt" | tail -14
    done
    step done
    exit 0
fi
prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
p_tl=$!
if [ "$PART" = l7 ]; then
    prep llama2-7b "$W/l7" lossless &
    p_l7=$!
fi
TESTS=test_cuda_matvec
[ "$PART" = l7 ] && TESTS="test_cuda_matvec test_cuda_prefill test_cuda_verify test_cuda_stream test_cuda_plan test_batch test_cuda_lmax"
TESTS=${VZ_AB_TESTS-$TESTS} # VZ_AB_TESTS="": none (knob sweeps of one build)
for t in $TESTS; do
    step "B: $t"
    in_b timeout "$(cap 150)" ./tests/$t >"$W/$t.log" 2>&1
    echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$W/$t.log" | tr '\n' ' ')" | tee -a "$W/summary.txt"
    tail -c 20000 "$W/$t.log" >>"$OUT/tests.log"
done
for f in a/bench/matvec_bench b/bench/matvec_bench*; do # VZ_AB_MVB=0: not run
    [ "${VZ_AB_MVB:-1}" = 1 ] && [ "$(left)" -gt 120 ] || break
    step "$f 1"
    log="$OUT/mv-$(echo "$f" | tr / _).txt"
    in_x "${f%%/*}" timeout "$(cap 90)" "./bench/$(basename "$f")" 1 >"$log" 2>&1
    echo "rc=$?"
    grep -E "^\| (q/o|k/v|gate|down|lm_head|raw|lossless|q8|q4) " "$log" | head -40
done
if [ "${VZ_AB_WIDE:-0}" = 1 ]; then # batch-1 matvecs of wide x (the carveout's guard, vz_decode_carveout)
    for v in $XS b,-1; do # build[,VZ_CUDA_CARVEOUT] (empty: the default)
        x=${v%%,*} c=${v#"$x"} c=${c#,}
        step "$v: matvec_bench wide"
        VZ_CUDA_CARVEOUT=$c in_x "$x" timeout "$(cap 60)" ./bench/matvec_bench wide >"$W/wide-$v.txt" 2>&1
        echo "rc=$?"
        sed "s/^/[$v] /" "$W/wide-$v.txt" | grep -E "\| down" | tee -a "$OUT/bench.txt"
    done
fi
if [ "${VZ_AB_NCU:-0}" = 1 ]; then # why a codec's matvec is slower than raw: B's v4 gate/up + SiLU and down, every codec
    step "B: ncu of matvec_bench ncu (v4 gate/up + SiLU and down, every codec)"
    in_x b timeout "$(cap 150)" ncu --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
        --section Occupancy --section InstructionStats -k regex:mv4_kernel -c 8 ./bench/matvec_bench ncu >"$W/ncu.txt" 2>&1
    echo "rc=$?"
    cat "$W/ncu.txt" >>"$OUT/mv-b_bench_matvec_bench.txt" # the device tool brings back 8 files
    grep -E "ncu launch|mv4_kernel|Duration|DRAM Throughput|Warp Cycles Per Issued|Issued Warp|Achieved Occupancy|Executed Instructions  " "$W/ncu.txt" | head -60
fi
if [ "${VZ_AB_SAN:-0}" = 1 ]; then # B under compute-sanitizer: stories260K, 100 tokens at ctx 256, 32 keys per attention block (4 partials merged)
    for tool in racecheck memcheck; do
        step "B: compute-sanitizer $tool, stories260K run"
        VZ_CUDA_ATT_CHUNK=32 in_b timeout -s KILL "$(cap 60)" compute-sanitizer --tool $tool --error-exitcode 9 ./vramzip run \
            -m "$VZ_MODELS/stories260K/stories260K.bin" --device cuda -n 100 -c 256 --temp 0 -p "Once upon a time" >"$W/san.log" 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$W/san.log" | tr '\n' ' ')" | tee -a "$W/summary.txt"
        tail -c 4000 "$W/san.log" >>"$OUT/tests.log"
    done
    # stories260K is f32, so the run above never decodes lossless bf16 (the exception patch through shared
    # memory): a synth `tiny` (bf16) as lossless, prompts through the matvecs too (VZ_CUDA_PREFILL=0)
    in_b ./vramzip synth --shape tiny -o "$W/tiny" --force >/dev/null 2>&1 &&
        in_b ./vramzip convert "$W/tiny" -o "$W/tiny-ll.vz" --codec lossless -q >/dev/null 2>&1 || echo "tiny lossless: prep failed"
    for tool in racecheck memcheck; do
        step "B: compute-sanitizer $tool, lossless tiny run"
        VZ_CUDA_PREFILL=0 in_b timeout -s KILL "$(cap 60)" compute-sanitizer --tool $tool --error-exitcode 9 ./vramzip run \
            -m "$W/tiny-ll.vz" --device cuda -n 40 -c 128 --temp 0 -p "Once upon a time" >"$W/san.log" 2>&1
        echo "$tool (lossless) rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$W/san.log" | tr '\n' ' ')" |
            tee -a "$W/summary.txt"
        tail -c 4000 "$W/san.log" >>"$OUT/tests.log"
    done
fi
wait $p_tl
step "B: test_cuda_forward (tinyllama: raw == lossless 256 steps, the step kernel == the chain)"
VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" in_b timeout "$(cap 150)" ./tests/test_cuda_forward \
    >"$W/t_fwd.log" 2>&1
echo "test_cuda_forward rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED)' "$W/t_fwd.log" | tr '\n' ' ')" | tee -a "$W/summary.txt"
grep -E "steps: logits|FAILED|Assert|rror" "$W/t_fwd.log" | head -10 | tee -a "$W/summary.txt"
tail -c 20000 "$W/t_fwd.log" >>"$OUT/tests.log"
TL="-m $W/tl/src --out-dir $W/tl -n 128 --prompt-len 512 --ctx 2048 --kv f16"
for x in $XS $XS; do bench $x tl 70 $TL --codec raw,lossless,q8,q4; done
for x in $XS; do
    [ "$(left)" -gt 60 ] || break
    step "$x: decode profile (VZ_CUDA_PROFILE=1), tinyllama raw, 512 positions"
    VZ_CUDA_PROFILE=1 in_x $x timeout "$(cap 50)" ./vramzip bench --device cuda -m "$W/tl/src" --out-dir "$W/tl" --codec raw \
        -n 64 --prompt-len 512 --ctx 2048 --kv f16 >/dev/null 2>"$OUT/profile-$x.txt"
    echo "rc=$?"
    grep -E "^profile \((eager, attention per|graph of)|^  *(rope|sample)" "$OUT/profile-$x.txt" | head -24
done
for v in ${VZ_AB_BVARS:-}; do # B's profile (VZ_AB_BBENCH=1: and bench) again under each VAR=value[+VAR=value] (knobs of one build)
    IFS=+ read -ra kv <<<"$v"
    [ "${VZ_AB_BBENCH:-0}" = 1 ] &&
        (export "${kv[@]}" && bench b "tl-${v//[=+,]/-}" 70 $TL --codec "${VZ_AB_BCODECS:-raw,lossless,q8,q4}")
    [ "$(left)" -gt 60 ] || break
    step "b, $v: decode profile, tinyllama raw, 512 positions"
    env "${kv[@]}" VZ_CUDA_PROFILE=1 bash -c 'cd b && LD_LIBRARY_PATH=$PWD/lib "$@"' _ timeout "$(cap 50)" ./vramzip bench \
        --device cuda -m "$W/tl/src" --out-dir "$W/tl" --codec raw -n 64 --prompt-len 512 --ctx 2048 --kv f16 \
        >/dev/null 2>>"$OUT/profile-b.txt"
    echo "rc=$?"
    grep -E "^profile \((eager, attention per|graph of)" "$OUT/profile-b.txt" | tail -8
done
if [ "$PART" = l7 ]; then
    wait $p_l7
    L7="-m $W/l7/src --out-dir $W/l7 -n 64 --prompt-len 512 --ctx 2048 --kv f16 --codec raw,lossless"
    for x in $XS; do bench $x l7 120 $L7; done
    for v in ${VZ_AB_L7VARS:-}; do # B under knobs (VAR=value[+VAR=value]); their stderr (VZ_CUDA_PROFILE=1: the per-op profile) to profile-b.txt
        IFS=+ read -ra kv <<<"$v"
        (export "${kv[@]}" && bench b "l7-${v//[=+,]/-}" 120 $L7)
        cat "$W/bench-b-l7-${v//[=+,]/-}.err" >>"$OUT/profile-b.txt" 2>/dev/null
    done
fi
step "done; tests:"
cat "$W/summary.txt"
