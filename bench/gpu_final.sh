#!/usr/bin/env bash
# The device rounds for the whole CUDA backend (issues #4 and #5), run from a
# packed folder (binaries, lib/, models/, hf_offload.py; see the bottom).
#   main: the GPU tests (batch included), then `vramzip bench` on synthetic
#     tinyllama-1.1b (raw, lossless, q8, q4: decode, prefill, VRAM,
#     bit-identity), the same at a 600 MiB budget (streaming) with the
#     Hugging Face + Accelerate baseline, and llama2-7b fully resident and at
#     a 4 GiB budget.
#   check: after a change, its tests ($VZ_CHECK_TESTS), tinyllama (every codec,
#     resident and at 600 MiB) and llama2-7b raw and lossless, and a per-op
#     profile of the 512-token prefill.
#   final: every GPU test (the tinyllama pair included), tinyllama every codec
#     and lossless:k4 (two rounds), the prefill profile, tinyllama at 600 MiB,
#     compute-sanitizer on a GEMM prefill and a batch, llama2-7b raw, lossless,
#     lossless:k4 and q4.
#   archs: test_cuda_archs (Qwen 2 biases, rope scaling, GGUF Q8_0 / Q4_0 on
#     the GPU) with the tests its change touches, then `vramzip bench` of
#     tinyllama-1.1b and of the llama3.2-1b and qwen2.5-0.5b shapes (raw,
#     lossless, q8, q4), and of tinyllama again with $VZ_OLD/vramzip when set.
#   recheck: after an attention change, its tests ($VZ_CHECK_TESTS), then
#     tinyllama (every codec) and llama2-7b (raw, lossless), the new build and
#     $VZ_OLD/vramzip in turn, two rounds.
#   retime: racecheck on the layer cache, decompress-at-load and streamed
#     paths (small, tinyllama at 600 MiB), then tinyllama (every codec and
#     lossless:k4, two rounds), llama2-7b (raw, lossless, lossless:k4) and
#     batch_bench on the current kernels.
#   hdcheck: test_cuda_archs's head_dim test and test_cuda_prefill, then mistral-nemo-12b raw
#     and lossless (its prefill GEMMs run in row chunks).
#   nemo: racecheck on the layer cache and decompress-at-load paths (small),
#     batch_bench (tinyllama raw and lossless), then mistral-nemo-12b (an
#     explicit head_dim: q 4096 wide in a 5120-wide model) raw and lossless.
#   sweep: bench knobs: $VZ_SWEEP_TESTS (test names) and prefill_bench's
#     non-GEMM kernels (when packed) while the models are made (with tests
#     named, test_cuda_forward's tinyllama pair after), then
#     tinyllama and llama2-7b raw and lossless (-n 16, 512-token prompt)
#     under the default and each of $VZ_SWEEP's settings (";"-separated, each
#     a space-separated list of VAR=value), two rounds, and prefill profiles
#     of both by default and under $VZ_SWEEP_PROFILE. $VZ_SWEEP_CODECS: tinyllama's
#     codecs (default raw,lossless).
#   more: compute-sanitizer memcheck and racecheck on generates (fmaf and
#     tensor-core kernels), the tensor-core kernel (VZ_CUDA_MV=24) end to
#     end: raw == lossless over 256 tokens, `vramzip bench`, batched decode.
# Models are synthesized and converted ON the device in the background while
# the tests run. Every step has a deadline ($VZ_DEADLINE s in all); logs and
# JSON under $OUT (8 files).
#   pack here:  scripts/gpu_pack.sh build-final && make BUILD=build-final CUDA=1 bench &&
#               bash bench/gpu_final.sh --pack build-final   (.carry/finalpk/final.tar.xz)
#   device:     tar -C /tmp -xJf .carry/finalpk/final.tar.xz && cd /tmp/final && bash gpu_final.sh main|more
set -u
if [ "${1:-}" = --pack ]; then
    B=$2 D=.carry/final
    rm -rf "$D" && mkdir -p "$D/tests"
    cp "$B/vramzip" "$B/bench/batch_bench" "$D/" && cp -r "$B/lib" "$D/" && cp bench/gpu_final.sh bench/hf_offload.py "$D/"
    [ -x "$B/bench/prefill_bench" ] && cp "$B/bench/prefill_bench" "$D/" # sweep: the non-GEMM prefill kernels alone
    cp "$B"/tests/test_cuda_* "$B/tests/test_batch" "$D/tests/" && cp -r .carry/models "$D/models"
    strip "$D/vramzip" "$D/batch_bench" "$D"/tests/*
    # test_cuda_archs reads these relative to the folder it runs in
    mkdir -p "$D/tests/golden/bpe" && cp tests/hf_to_gguf.py "$D/tests/" && cp -r tests/golden/bpe/llama3 "$D/tests/golden/bpe/"
    # one large dictionary: the binaries share most of their bytes (170 MB -> 11 MB, where plain -J gave 81)
    rm -rf .carry/finalpk && mkdir -p .carry/finalpk &&
        tar -C .carry -cf - final | xz -T2 --lzma2=preset=6,dict=256MiB >.carry/finalpk/final.tar.xz
    du -sh "$D" .carry/finalpk
    exit 0
fi
PART=${1:-main}
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export VZ_MODELS=$PWD/models BUILD=$PWD
OUT=${OUT:-/tmp/vz-gpu-out}
W=${VZ_WORK:-/tmp/vzw}
DEADLINE=${VZ_DEADLINE:-540}
mkdir -p "$OUT" "$W"
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - t0) )); }
V=./vramzip

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$W/card.txt"
nproc; df -h /tmp | tail -1
prep() { # shape dir codecs...: the checkpoint in dir/src, each codec's .vz in dir, a log in dir/prep.log
    local shape=$1 d=$2
    shift 2
    mkdir -p "$d"
    timeout 300 $V synth --shape "$shape" -o "$d/src" --force >"$d/prep.log" 2>&1 || echo "synth $shape failed"
    echo "synth $shape done at $(( $(date +%s) - t0 ))s" >>"$d/prep.log"
    for c in "$@"; do
        timeout 300 $V convert "$d/src" -o "$d/$c.vz" --codec "$c" -q >>"$d/prep.log" 2>&1 || echo "convert $shape $c failed"
        echo "convert $shape $c done at $(( $(date +%s) - t0 ))s" >>"$d/prep.log"
    done
}
bench() { # name budget-seconds args... (VZ_CUDA_MV from the environment)
    local name=$1 cap=$2
    shift 2
    [ "$(left)" -gt $(( cap / 2 )) ] || { echo "bench $name: skipped (time)"; return; }
    step "bench $name: $*"
    timeout $(( cap < $(left) ? cap : $(left) )) $V bench --device cuda "$@" --json "$W/bench-$name.json" \
        >"$W/bench-$name.txt" 2>"$W/bench-$name.err"
    echo "rc=$?"
    cat "$W/bench-$name.txt" | tee -a "$OUT/bench.txt"
    grep -E "plan|error|refus|needs" "$W/bench-$name.err" | head -4
    cat "$W/bench-$name.err" >>"$OUT/bench.err"
    cat "$W/bench-$name.json" >>"$OUT/bench.json" 2>/dev/null
}
tl_test() { # test cap: a test with the tinyllama raw/lossless pair (VZ_TINYLLAMA_*), logged to tests.log
    VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" timeout "$2" ./tests/$1 >"$W/$1-tl.log" 2>&1
    echo "$1 (tinyllama pair) rc=$? $(grep -E 'steps: logits|byte-identical|PASSED|FAILED' "$W/$1-tl.log" | tr '\n' ' ')"
    cat "$W/$1-tl.log" >>"$OUT/tests.log"
}
tl_rounds() { # cap: tinyllama every codec, two rounds, each the new build then $VZ_OLD/vramzip (when set)
    for r in 1 2; do
        bench tl$r "$1" -m "$W/tl/src" --codec raw,lossless,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
        [ -n "${VZ_OLD:-}" ] && V=$VZ_OLD/vramzip bench tl-old$r "$1" -m "$W/tl/src" --codec raw,lossless,q8,q4 \
            --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
    done
}
san() { # cap tool run-args...: `vramzip run` under compute-sanitizer, its summary, the log to sanitizer.log
    local cap=$1 tool=$2
    shift 2
    timeout "$cap" compute-sanitizer --tool "$tool" --error-exitcode 9 $V run "$@" >"$W/san.log" 2>&1
    echo "rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Error|plan' "$W/san.log" | head -3 | tr '\n' ' ')"
    cat "$W/san.log" >>"$OUT/sanitizer.log"
}
race_small() { # racecheck on synth small lossless through the layer cache and decompress-at-load
    prep small "$W/sm" lossless
    for res in cache decompress-at-load; do
        step "compute-sanitizer racecheck: small lossless, --residency $res, 8 tokens"
        san 120 racecheck -m "$W/sm/lossless.vz" --device cuda --residency $res -n 8 -p "Once upon a time"
    done
}
nemo_bench() { # prep-pid cap tokens: mistral-nemo-12b raw and lossless once its prep (in $W/nm) is done
    wait "$1"
    grep -E "done|fail|rror" "$W/nm/prep.log"
    bench nm "$2" -m "$W/nm/src" --codec raw,lossless --out-dir "$W/nm" -n "$3" --prompt-len 512 --ctx 2048 --kv f16
}
runtests() { # log tests...
    local log=$1
    shift
    for t in "$@"; do
        local cap=150
        [ "$t" = test_cuda_matvec ] && cap=330 # every codec, shape, batch and variant: 213 s in session 69
        timeout $cap ./tests/$t >"$W/$t.log" 2>&1
        echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/$t.log" | tr '\n' ' ')"
        cat "$W/$t.log" >>"$log"
    done
}

if [ "$PART" = check ]; then # after a decoder change: its tests, tinyllama and llama2-7b raw/lossless, a prefill profile
    prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
    p_tl=$!
    prep llama2-7b "$W/l7" lossless &
    p_l7=$!
    runtests "$OUT/tests.log" ${VZ_CHECK_TESTS:-test_cuda_matvec test_cuda_prefill test_batch test_cuda_stream}
    wait $p_tl
    tl_test test_cuda_forward 120
    bench tl 100 -m "$W/tl/src" --codec raw,lossless,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
    bench tl-600m 100 -m "$W/tl/src" --codec lossless,q8,q4 --out-dir "$W/tl" -n 64 --prompt-len 16 --ctx 2048 --kv f16 \
        --vram-budget 600M
    step "prefill profile (VZ_CUDA_PROFILE=1), tinyllama raw and lossless, 512-token prompt"
    VZ_CUDA_PROFILE=1 timeout 60 $V bench --device cuda -m "$W/tl/src" --codec raw,lossless --out-dir "$W/tl" -n 16 \
        --prompt-len 512 --ctx 2048 --kv f16 >"$W/prof.txt" 2>"$W/prof.err"
    echo "rc=$?"
    cp "$W/prof.err" "$OUT/profile.txt"
    grep -iE "prefill|chunk" "$W/prof.err" | head -40
    wait $p_l7
    bench l7 150 -m "$W/l7/src" --codec raw,lossless --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
    step done
    exit 0
fi

if [ "$PART" = recheck ]; then # after an attention change: its tests, then tinyllama and llama2-7b, new and $VZ_OLD in turn
    prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
    p_tl=$!
    prep llama2-7b "$W/l7" lossless &
    p_l7=$!
    runtests "$OUT/tests.log" ${VZ_CHECK_TESTS:-test_cuda_archs test_batch test_cuda_matvec}
    wait $p_tl
    tl_test test_cuda_forward 150
    tl_rounds 60
    wait $p_l7
    for r in 1 2; do
        bench l7-$r 60 -m "$W/l7/src" --codec raw,lossless --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
        [ -n "${VZ_OLD:-}" ] && V=$VZ_OLD/vramzip bench l7-old$r 60 -m "$W/l7/src" --codec raw,lossless --out-dir "$W/l7" \
            -n 64 --prompt-len 512 --ctx 2048 --kv f16
    done
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    grep -E "PASSED|FAILED|steps: logits" "$OUT/tests.log"
    exit 0
fi

if [ "$PART" = archs ]; then
    prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
    p_tl=$!
    prep llama3.2-1b "$W/l3" lossless q8 q4 &
    p_l3=$!
    prep qwen2.5-0.5b "$W/qw" lossless q8 q4 &
    p_qw=$!
    runtests "$OUT/tests.log" test_cuda_archs test_cuda_prefill test_batch
    grep -E "max \|gpu - cpu\||byte-identical|FAILED|Failure|SKIP" "$OUT/tests.log" | head -30
    wait $p_tl
    grep -E "done|fail|rror" "$W/tl/prep.log"
    tl_test test_cuda_forward 150
    tl_rounds 90
    wait $p_l3 $p_qw
    grep -E "done|fail|rror" "$W/l3/prep.log" "$W/qw/prep.log"
    bench l3 100 -m "$W/l3/src" --codec raw,lossless,q8,q4 --out-dir "$W/l3" -n 128 --prompt-len 512 --ctx 2048 --kv f16
    bench qw 100 -m "$W/qw/src" --codec raw,lossless,q8,q4 --out-dir "$W/qw" -n 128 --prompt-len 512 --ctx 2048 --kv f16
    step "decode profile (VZ_CUDA_PROFILE=1), qwen2.5-0.5b raw (biases added inside the attention)"
    VZ_CUDA_PROFILE=1 timeout 60 $V bench --device cuda -m "$W/qw/src" --codec raw --out-dir "$W/qw" -n 16 \
        --prompt-len 16 --ctx 2048 --kv f16 >"$W/qprof.txt" 2>"$W/qprof.err"
    echo "rc=$?"
    grep -E "^profile|^  " "$W/qprof.err" | head -24
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    grep -E "^\[  (PASSED|FAILED) \]|steps: logits" "$OUT/tests.log"
    exit 0
fi

if [ "$PART" = retime ]; then # what session 72 left: lossless:k4 and batches on its attention builds, a streamed racecheck
    prep tinyllama-1.1b "$W/tl" lossless q8 q4 lossless:k4 &
    p_tl=$!
    prep llama2-7b "$W/l7" lossless lossless:k4 &
    p_l7=$!
    race_small
    wait $p_tl
    grep -E "done|fail|rror" "$W/tl/prep.log"
    step "compute-sanitizer racecheck: tinyllama lossless streamed (--vram-budget 600M), 2 tokens"
    san 200 racecheck -m "$W/tl/lossless.vz" --device cuda --vram-budget 600M -n 2 -p "Once"
    for r in 1 2; do
        bench tl$r 70 -m "$W/tl/src" --codec raw,lossless,lossless:k4,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 \
            --ctx 2048 --kv f16
    done
    wait $p_l7
    grep -E "done|fail|rror" "$W/l7/prep.log"
    bench l7 90 -m "$W/l7/src" --codec raw,lossless,lossless:k4 --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
    step "batch_bench, tinyllama raw and lossless"
    [ "$(left)" -gt 60 ] && timeout $(( $(left) - 10 )) ./batch_bench --seqs 1,2,4,8 -n 128 --prompt-len 512 --ctx 2048 \
        "$W/tl/src" "$W/tl/lossless.vz" 2>&1 | tee -a "$OUT/batch.txt" | tail -14
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    exit 0
fi

if [ "$PART" = hdcheck ]; then # head_dim's GEMM prefill test; the prefill's row chunks (test_cuda_prefill, mistral-nemo-12b)
    prep mistral-nemo-12b "$W/nm" lossless &
    p_nm=$!
    export VZ_TEST_ONLY=test_head_dim
    runtests "$OUT/tests.log" test_cuda_archs
    unset VZ_TEST_ONLY
    runtests "$OUT/tests.log" test_cuda_prefill
    grep -E "head_dim|FAILED|Failure" "$OUT/tests.log" | head -20
    nemo_bench $p_nm 100 16
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    exit 0
fi

if [ "$PART" = nemo ]; then # an explicit head_dim at scale: mistral-nemo-12b raw and lossless; racecheck; batches
    rm -rf "$W/l7" # a warm machine's llama2-7b files (37 GB): the disk holds 64 GiB
    prep mistral-nemo-12b "$W/nm" lossless &
    p_nm=$!
    prep tinyllama-1.1b "$W/tl" lossless &
    p_tl=$!
    race_small
    wait $p_tl
    step "batch_bench, tinyllama raw and lossless"
    timeout 150 ./batch_bench --seqs 1,2,4,8 -n 128 --prompt-len 512 --ctx 2048 "$W/tl/src" "$W/tl/lossless.vz" 2>&1 |
        tee -a "$OUT/batch.txt" | tail -14
    nemo_bench $p_nm 150 64
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    exit 0
fi

if [ "$PART" = final ]; then # session 4: every GPU test, tinyllama and llama2-7b benches, prefill profile, sanitizer
    prep tinyllama-1.1b "$W/tl" lossless q8 q4 lossless:k4 &
    p_tl=$!
    prep llama2-7b "$W/l7" lossless q4 lossless:k4 &
    p_l7=$!
    prep small "$W/sm" lossless &
    p_sm=$!
    runtests "$OUT/tests.log" test_cuda_matvec test_cuda_prefill test_cuda_verify test_cuda_stream test_cuda_plan test_batch \
        test_cuda_lmax test_cuda_archs
    wait $p_tl
    grep -E "done|fail|rror" "$W/tl/prep.log"
    tl_test test_cuda_forward 150
    tl_test test_cuda_prefill 60
    for r in 1 2; do
        bench tl$r 80 -m "$W/tl/src" --codec raw,lossless,lossless:k4,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 \
            --ctx 2048 --kv f16
    done
    step "prefill profile (VZ_CUDA_PROFILE=1), tinyllama raw, lossless, q4, 512-token prompt"
    VZ_CUDA_PROFILE=1 timeout 60 $V bench --device cuda -m "$W/tl/src" --codec raw,lossless,q4 --out-dir "$W/tl" -n 16 \
        --prompt-len 512 --ctx 2048 --kv f16 >"$W/prof.txt" 2>"$W/prof.err"
    echo "rc=$?"
    cp "$W/prof.err" "$OUT/profile.txt"
    grep -E "^prefill profile|^  " "$W/prof.err" | head -60
    bench tl-600m 80 -m "$W/tl/src" --codec lossless,q8,q4 --out-dir "$W/tl" -n 64 --prompt-len 16 --ctx 2048 --kv f16 \
        --vram-budget 600M
    wait $p_sm
    for tool in memcheck racecheck; do
        step "compute-sanitizer $tool: small lossless, 40-token prompt (GEMM prefill, decode ahead) + 16 tokens, then a batch of 3"
        san 90 $tool -m "$W/sm/lossless.vz" --device cuda -n 16 \
            -p "$(printf 'Once upon a time there was a little girl who %.0s' 1 2 3 4)"
        san 90 $tool -m "$W/sm/lossless.vz" --device cuda -n 16 -p "One" -p "Two words" -p "and three more"
    done
    wait $p_l7
    grep -E "done|fail|rror" "$W/l7/prep.log"
    l7c=raw
    for c in lossless lossless:k4 q4; do [ -f "$W/l7/$c.vz" ] && l7c="$l7c,$c"; done
    bench l7 150 -m "$W/l7/src" --codec "$l7c" --out-dir "$W/l7" -n 64 --prompt-len 512 --ctx 2048 --kv f16
    [ -n "${VZ_OLD:-}" ] && V=$VZ_OLD/vramzip bench l7-old 60 -m "$W/l7/src" --codec raw --out-dir "$W/l7" -n 64 \
        --prompt-len 512 --ctx 2048 --kv f16
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    grep -E "^\[  (PASSED|FAILED) \]|steps: logits" "$OUT/tests.log"
    exit 0
fi

if [ "$PART" = sweep ]; then
    TLC=${VZ_SWEEP_CODECS:-raw,lossless} # tinyllama's codecs (llama2-7b: raw, lossless)
    prep tinyllama-1.1b "$W/tl" $(echo "${TLC#raw}" | tr ',' ' ') &
    p_tl=$!
    prep llama2-7b "$W/l7" lossless &
    p_l7=$!
    IFS=';' read -ra SETS <<<"${VZ_SWEEP:-}"
    SETS=("" "${SETS[@]}")
    runtests "$OUT/tests.log" ${VZ_SWEEP_TESTS:-}
    if [ -x ./prefill_bench ]; then
        step "prefill_bench 512 --no-gemm (attention, RoPE, RMSNorm, SwiGLU of one layer)"
        timeout 60 ./prefill_bench 512 --no-gemm 2>&1 | tee -a "$OUT/bench.txt" | grep -E "^\|"
    fi
    wait $p_tl $p_l7 # the benches after both, so no synth or convert runs on the CPUs beside them
    grep -E "done|fail|rror" "$W/tl/prep.log" "$W/l7/prep.log"
    [ -n "${VZ_SWEEP_TESTS:-}" ] && tl_test test_cuda_forward 120
    for r in 1 2; do
        for m in tl l7; do
            for i in "${!SETS[@]}"; do
                echo "-- $m round $r setting $i: ${SETS[$i]:-default}" | tee -a "$OUT/bench.txt"
                c=raw,lossless
                [ $m = tl ] && c=$TLC
                V="env ${SETS[$i]} ./vramzip" bench $m-$r-$i 60 -m "$W/$m/src" --codec $c --out-dir "$W/$m" \
                    -n 16 --prompt-len 512 --ctx 2048 --kv f16
            done
        done
    done
    for m in tl l7; do
        for set in "" "${VZ_SWEEP_PROFILE:-}"; do
            step "prefill profile, $m raw and lossless: ${set:-default}"
            env $set VZ_CUDA_PROFILE=1 timeout 60 $V bench --device cuda -m "$W/$m/src" --codec raw,lossless --out-dir "$W/$m" \
                -n 4 --prompt-len 512 --ctx 2048 --kv f16 >"$W/prof.txt" 2>"$W/prof.err"
            echo "rc=$?"
            { echo "== $m ${set:-default}"; cat "$W/prof.err"; } >>"$OUT/profile.txt"
        done
    done
    step "summary"
    echo "card: $(cat "$W/card.txt")"
    grep -E "^\[  (PASSED|FAILED) \]|steps: logits" "$OUT/tests.log" 2>/dev/null
    exit 0
fi

if [ "$PART" = more ]; then
    step "synth small + tinyllama-1.1b in the background"
    prep small "$W/sm" lossless &
    p_sm=$!
    prep tinyllama-1.1b "$W/tl" lossless &
    p_tl=$!
    wait $p_sm
    for mv in "" 24; do
        for tool in memcheck racecheck; do
            step "compute-sanitizer $tool, VZ_CUDA_MV=${mv:-default}: run small lossless, 24 tokens, then a batch of 3"
            VZ_CUDA_MV=$mv san 120 $tool -m "$W/sm/lossless.vz" --device cuda -n 24 -p "Once upon a time"
            VZ_CUDA_MV=$mv san 120 $tool -m "$W/sm/lossless.vz" --device cuda -n 16 -p "One" -p "Two words" \
                -p "and three more"
        done
    done
    wait $p_tl
    grep -E "done|fail|rror" "$W/tl/prep.log"
    step "tensor-core kernel (VZ_CUDA_MV=24): test_cuda_forward with the tinyllama pair, test_batch"
    VZ_CUDA_MV=24 VZ_TINYLLAMA_RAW="$W/tl/src" VZ_TINYLLAMA_LOSSLESS="$W/tl/lossless.vz" timeout 150 \
        ./tests/test_cuda_forward >"$W/fwd-tc.log" 2>&1
    echo "rc=$? $(grep -E 'steps: logits|max \||PASSED|FAILED' "$W/fwd-tc.log" | tr '\n' ' ')"
    cat "$W/fwd-tc.log" >>"$OUT/tests.log"
    VZ_CUDA_MV=24 timeout 150 ./tests/test_batch >"$W/batch-tc.log" 2>&1
    echo "test_batch (tc) rc=$? $(grep -E '^\[  (PASSED|FAILED|SKIPPED) \]' "$W/batch-tc.log" | tr '\n' ' ')"
    cat "$W/batch-tc.log" >>"$OUT/tests.log"
    VZ_CUDA_MV=24 bench tl-tc 100 -m "$W/tl/src" --codec raw,lossless --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
    for mv in "" 24; do
        step "batch_bench VZ_CUDA_MV=${mv:-default}"
        VZ_CUDA_MV=$mv timeout 150 ./batch_bench --seqs 1,2,4,8 -n 128 --prompt-len 512 --ctx 2048 "$W/tl/src" \
            "$W/tl/lossless.vz" 2>&1 | tee -a "$OUT/batch.txt" | tail -14
    done
    step done
    exit 0
fi

step "synth + convert in the background (tinyllama-1.1b, llama2-7b); tests meanwhile"
prep tinyllama-1.1b "$W/tl" lossless q8 q4 &
p_tl=$!
prep llama2-7b "$W/l7" lossless q4 &
p_l7=$!

runtests "$OUT/tests.log" test_cuda_matvec test_cuda_prefill test_cuda_verify test_cuda_stream test_cuda_plan test_batch test_cuda_lmax \
    test_cuda_archs
grep -E "byte-identical|max \||trace|FAILED|Failure" "$OUT/tests.log" | head -20

step "waiting for tinyllama"
wait $p_tl
cat "$W/tl/prep.log" | grep -E "done|fail|rror"
step "test_cuda_forward with the tinyllama raw/lossless pair (256 greedy steps)"
tl_test test_cuda_forward 120

bench tl 120 -m "$W/tl/src" --codec raw,lossless,q8,q4 --out-dir "$W/tl" -n 128 --prompt-len 512 --ctx 2048 --kv f16
bench tl-600m 120 -m "$W/tl/src" --codec raw,lossless,q8,q4 --out-dir "$W/tl" -n 64 --prompt-len 16 --ctx 2048 --kv f16 \
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
