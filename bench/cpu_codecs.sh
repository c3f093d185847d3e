#!/usr/bin/env bash
# cpu_codecs.sh - CPU decode speed per codec, before/after: a synth model
# (SHAPE, default small; bf16) converted to each codec, `vramzip run -n NTOK
# -t T --temp 0` from BOS, best of RUNS (RUNS_SLOW for the storage codecs),
# both binaries interleaved per codec so they see the same machine load.
# Prints a markdown table. PROMPT=FILE times the prefill of that text
# instead (prompt tok/s of `run -p "$(cat FILE)" -n 1`).
# Usage: [SHAPE=tinyllama-1.1b] [CODECS="raw q8"] [NTOK=64] [RUNS=3] [PROMPT=FILE]
#        bash bench/cpu_codecs.sh OLD_VRAMZIP NEW_VRAMZIP [DIR]
set -euo pipefail
OLD=$1 NEW=$2 DIR=${3:-$(mktemp -d)}
RUNS=${RUNS:-5} RUNS_SLOW=${RUNS_SLOW:-3} SHAPE=${SHAPE:-small} NTOK=${NTOK:-100}
[ -d "$DIR/src" ] || "$NEW" synth --shape "$SHAPE" -o "$DIR/src" >&2
CODECS=${CODECS:-"raw lossless q8 q4:g128 q4:g32 lossless-max zstd"}
for c in $CODECS; do
    f=$DIR/$(tr : _ <<<"$c").vz
    [ -f "$f" ] || "$NEW" convert "$DIR/src" -o "$f" --codec "$c" -q >&2
done
best() { # best VZ FILE THREADS RUNS
    local b=0 v
    for _ in $(seq "$4"); do
        if [ -n "${PROMPT:-}" ]; then
            v=$("$1" run -m "$2" -p "$(cat "$PROMPT")" -n 1 -t "$3" --temp 0 --print-ids 2>&1 >/dev/null | tail -1 |
                sed -n 's/.*prompt [0-9]* tok \([0-9.]*\) tok\/s.*/\1/p')
        else
            v=$("$1" run -m "$2" -n "$NTOK" -t "$3" --temp 0 --print-ids 2>&1 >/dev/null | tail -1 |
                sed -n 's/.*generated [0-9]* tok \([0-9.]*\) tok\/s.*/\1/p')
        fi
        b=$(awk -v a="${v:-0}" -v b="$b" 'BEGIN { print (a > b) ? a : b }')
    done
    echo "$b"
}
echo "| codec | t=1 before | t=1 after | t=1 after / raw after | t=2 before | t=2 after | t=2 after / raw after |"
echo "|---|---:|---:|---:|---:|---:|---:|"
declare -A raw
for c in $CODECS; do
    f=$DIR/$(tr : _ <<<"$c").vz
    n=$RUNS
    case $c in lossless-max | zstd) n=$RUNS_SLOW ;; esac
    row="| $c"
    for t in 1 2; do
        b=$(best "$OLD" "$f" $t $n) a=$(best "$NEW" "$f" $t $n)
        [ "$c" = raw ] && raw[$t]=$a
        row="$row | $b | $a | $(awk -v a="$a" -v r="${raw[$t]}" 'BEGIN { printf "%.0f%%", 100 * a / r }')"
    done
    echo "$row |"
    echo "cpu_codecs: $c done, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
