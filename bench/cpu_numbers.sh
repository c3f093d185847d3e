#!/usr/bin/env bash
# cpu_numbers.sh - the CPU numbers of the README, end to end, as markdown:
#  (a) generation tok/s (greedy, from BOS, best of $RUNS) of stories260K and
#      synth small bf16 with 1 and 2 threads, weight bytes read per token and
#      the share of the memory bandwidth bench/membw.c measures;
#  (b) per codec: bits/weight (vramzip inspect) on synth small bf16 (with
#      tok/s and peak RSS), stories260K cast to bf16 and synth tinyllama-1.1b;
#  (c) stories260K perplexity per codec / mixed spec on the first
#      $EVAL_BYTES bytes of tinystories_valid_head.txt.
# Usage: BUILD=build bash bench/cpu_numbers.sh > bench/results/cpu-$(date +%F).md
#   SECTIONS=abc (any subset), RUNS=5, N=500 tokens (section b: RUNS_B=3,
#   NB=100: the entropy-coded codecs are slow), EVAL_BYTES=100000,
#   CTX=256, TINYLLAMA=1 (0 skips the 2.2 GB model), TMPDIR for scratch.
set -euo pipefail
BUILD=${BUILD:-build}
VZ=$BUILD/vramzip
MODELS=${MODELS:-../shared/models}
SECTIONS=${SECTIONS:-abc}
RUNS=${RUNS:-5}
N=${N:-500}
NB=${NB:-100}
RUNS_B=${RUNS_B:-3}
EVAL_BYTES=${EVAL_BYTES:-100000}
CTX=${CTX:-256}
TINYLLAMA=${TINYLLAMA:-1}
CC=${CC:-cc}
S260=$MODELS/stories260K/stories260K.bin
TOK=$MODELS/stories260K/tok512.model
TMP=$(mktemp -d "${TMPDIR:-/tmp}/vz-cpu-numbers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
[ -x "$VZ" ] || { echo "cpu_numbers: build $VZ first (make BUILD=$BUILD)" >&2; exit 1; }
[ -f "$S260" ] || { echo "cpu_numbers: $S260 not found (MODELS=...)" >&2; exit 1; }
note() { echo "cpu_numbers: $*" >&2; }

# stats_line MODEL THREADS [RUNS N]: the best (highest generated tok/s) of RUNS runs' stats lines.
stats_line() {
    local best="" bv=0 line v
    for _ in $(seq "${3:-$RUNS}"); do
        line=$("$VZ" run -m "$1" --temp 0 -n "${4:-$N}" -t "$2" --print-ids 2>&1 >/dev/null | tail -1)
        v=$(sed -n 's/.*generated [0-9]* tok \([0-9.]*\) tok\/s.*/\1/p' <<<"$line")
        [ -n "$v" ] || { note "run failed: $line"; echo "failed"; return; }
        if awk -v a="$v" -v b="$bv" 'BEGIN { exit !(a > b) }'; then bv=$v best=$line; fi
    done
    echo "$best"
}
field_toks() { sed -n 's/.*generated [0-9]* tok \([0-9.]*\) tok\/s.*/\1/p' <<<"$1"; }
field_bytes() { sed -n 's/.*| weights \([0-9]*\) bytes.*/\1/p' <<<"$1"; }
field_rss() { sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' <<<"$1"; }
bits_of() { "$VZ" inspect "$1" | tail -1 | sed -n 's/.* \([0-9.]*\) bits\/weight.*/\1/p'; }
ppl_of() { "$VZ" perplexity -m "$1" -f "$TMP/eval.txt" -c "$CTX" -t 2 2>&1 | sed -n 's/^PPL = \([0-9.]*\).*/\1/p' | tail -1; }
convert() { "$VZ" convert "$1" -o "$2" --codec "$3" -q >&2; }
# cast DTYPE: stories260K as a Hugging Face directory $TMP/s260-DTYPE (bench/tools/hf_cast.c).
cast() {
    [ -x "$TMP/hf_cast" ] || "$CC" -std=c11 -O2 -D_DEFAULT_SOURCE -Iinclude -Isrc -Itests -Itests/common \
        bench/tools/hf_cast.c tests/common/ckpt.c tests/common/testutil.c "$BUILD/libvramzip.a" \
        $(pkg-config --libs libcjson libzstd libxxhash 2>/dev/null || echo -lcjson -lzstd -lxxhash) \
        -lcmocka -lm -fopenmp -o "$TMP/hf_cast"
    [ -d "$TMP/s260-$1" ] && return
    mkdir -p "$TMP/s260-$1"
    "$TMP/hf_cast" "$S260" "$TMP/s260-$1" "$1" >&2
    cp "$TOK" "$TMP/s260-$1/tokenizer.model"
}

echo "# vramzip CPU numbers"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "(plus uncommitted work in the tree), build \`$BUILD\`"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine; tok/s are best of $RUNS runs)"
echo
echo '```'
lscpu | head -20
echo '```'
echo

"$CC" -O2 -fopenmp bench/membw.c -o "$TMP/membw"
"$TMP/membw" 512 >"$TMP/membw.txt"
BW1=$(sed -n 's/^read *1 thread(s): *\([0-9.]*\).*/\1/p' "$TMP/membw.txt")
BW2=$(sed -n 's/^read *2 thread(s): *\([0-9.]*\).*/\1/p' "$TMP/membw.txt")
echo "Memory bandwidth (bench/membw.c, 512 MiB read-only sum, best of 5): ${BW1} GB/s with 1 thread, ${BW2:-?} GB/s with 2."
echo

"$VZ" synth --shape small --dtype bf16 -o "$TMP/small" >&2
head -c "$EVAL_BYTES" "$MODELS/eval/tinystories_valid_head.txt" >"$TMP/eval.txt"

if [[ $SECTIONS == *a* ]]; then
    echo "## (a) Generation speed (vramzip run, greedy, $N tokens from BOS)"
    echo
    echo "| model | weights read / token | threads | tok/s | weight GB/s | % of membw read |"
    echo "|---|---:|---:|---:|---:|---:|"
    for m in "$S260" "$TMP/small"; do
        name=$([ "$m" = "$S260" ] && echo "stories260K (f32 .bin)" || echo "synth small (bf16)")
        for t in 1 2; do
            line=$(stats_line "$m" "$t")
            tok=$(field_toks "$line") bytes=$(field_bytes "$line")
            bw=$([ "$t" = 1 ] && echo "$BW1" || echo "${BW2:-$BW1}")
            awk -v n="$name" -v b="$bytes" -v t="$t" -v s="$tok" -v bw="$bw" 'BEGIN {
                g = b * s / 1e9; printf "| %s | %.2f MB | %d | %.0f | %.2f | %.0f%% |\n", n, b / 1e6, t, s, g, 100 * g / bw }'
        done
    done
    echo
    echo "Both models fit in the last-level cache, so their weight reads can exceed DRAM bandwidth."
    echo
fi

if [[ $SECTIONS == *b* ]]; then
    echo "## (b) Codecs on synth small (bf16): size and CPU speed ($NB tokens, best of $RUNS_B)"
    echo
    echo "| codec | bits/weight | t=1 tok/s | t=2 tok/s | peak RSS (MiB) |"
    echo "|---|---:|---:|---:|---:|"
    for c in raw lossless lossless-max zstd q8 q4:g128 q4:g32; do
        f="$TMP/small-${c//:/-}.vz"
        convert "$TMP/small" "$f" "$c"
        l1=$(stats_line "$f" 1 "$RUNS_B" "$NB") l2=$(stats_line "$f" 2 "$RUNS_B" "$NB")
        printf '| %s | %s | %.0f | %.0f | %s |\n' "$c" "$(bits_of "$f")" "$(field_toks "$l1")" "$(field_toks "$l2")" \
            "$(field_rss "$l2")"
        rm -f "$f"
    done
    echo
    cast bf16
    codecs="lossless lossless-max zstd q8 q4:g128 q4:g32"
    if [ "$TINYLLAMA" = 1 ]; then
        note "synth tinyllama-1.1b (2.2 GB)"
        "$VZ" synth --shape tinyllama-1.1b --dtype bf16 -o "$TMP/tl" >&2
    fi
    echo "Bits/weight (all tensors, norms included; bf16 = 16) and conversion time:"
    echo
    echo "| codec | stories260K (bf16) | synth tinyllama-1.1b (bf16) | tinyllama convert s |"
    echo "|---|---:|---:|---:|"
    for c in $codecs; do
        f="$TMP/s260-${c//:/-}.vz"
        convert "$TMP/s260-bf16" "$f" "$c"
        b260=$(bits_of "$f")
        rm -f "$f"
        btl="-" ttl="-"
        if [ "$TINYLLAMA" = 1 ]; then
            f="$TMP/tl-${c//:/-}.vz"
            t0=$(date +%s.%N)
            convert "$TMP/tl" "$f" "$c"
            ttl=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
            btl=$(bits_of "$f")
            rm -f "$f"
        fi
        echo "| $c | $b260 | $btl | $ttl |"
    done
    rm -rf "$TMP/tl"
    echo
fi

if [[ $SECTIONS == *c* ]]; then
    echo "## (c) stories260K perplexity (first $EVAL_BYTES bytes of tinystories_valid_head.txt, -c $CTX)"
    echo
    cast bf16
    cast f16
    echo "| model / codec spec | source | bits/weight | PPL | vs raw f32 |"
    echo "|---|---|---:|---:|---:|"
    base=""
    while IFS='|' read -r label src spec; do
        f="$TMP/ppl.vz"
        case $src in f32) s=$S260 ;; *) s="$TMP/s260-$src" ;; esac
        convert "$s" "$f" "$spec"
        p=$(ppl_of "$f")
        [ -n "$base" ] || base=$p
        awk -v l="$label" -v s="$src" -v b="$(bits_of "$f")" -v p="$p" -v r="$base" 'BEGIN {
            printf "| %s | %s | %s | %.4f | %+.2f%% |\n", l, s, b, p, 100 * (p / r - 1) }'
        rm -f "$f"
    done <<'EOF'
raw|f32|raw
lossless|f32|lossless
raw bf16|bf16|raw
lossless bf16|bf16|lossless
raw f16|f16|raw
lossless f16 (everywhere)|f16|lossless
q8 (preset)|f32|q8
q4:g128|f32|q4:g128
q4:g32|f32|q4:g32
q4 (preset)|f32|q4
attention Q/K/V/O int8: '*.self_attn.*=q8,*=raw'|f32|*.self_attn.*=q8,*=raw
MLP-only int8: '*.mlp.*=q8,*=raw'|f32|*.mlp.*=q8,*=raw
one matrix: 'model.layers.0.mlp.gate_proj.weight=q8,*=raw'|f32|model.layers.0.mlp.gate_proj.weight=q8,*=raw
EOF
    echo
    echo "Targets: q8 preset within +1% of raw PPL, q4 preset within +25%. Lossless rows must equal their raw source exactly."
fi
