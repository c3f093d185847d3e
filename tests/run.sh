#!/usr/bin/env bash
# Runs every test binary in $BUILD/tests and prints one closing line:
# "N passed, N failed, N skipped". A binary that crashes or prints no cmocka
# summary counts as one failure. VZ_TEST_FILTER=regex limits the binaries;
# VZ_TEST_ONLY=pattern the tests within the GPU binaries that read it
# (tests/common/testutil.h vz_test_filter_from_env).
set -u
BUILD=${BUILD:-build}
export BUILD
export CMOCKA_MESSAGE_OUTPUT=stdout
pass=0 fail=0 skip=0 failed_bins=()
# VZ_SAN_BUILD: a second build dir (ASan+UBSan) whose tests run too.
san_tests=()
if [ -n "${VZ_SAN_BUILD:-}" ] && [ -d "$VZ_SAN_BUILD/tests" ]; then san_tests=("$VZ_SAN_BUILD"/tests/test_*); fi
for t in "$BUILD"/tests/test_* "${san_tests[@]}"; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if [ -n "${VZ_TEST_FILTER:-}" ] && ! [[ $name =~ $VZ_TEST_FILTER ]]; then continue; fi
    tb=$BUILD
    if [ -n "${VZ_SAN_BUILD:-}" ] && [[ $t == "$VZ_SAN_BUILD"/* ]]; then tb=$VZ_SAN_BUILD name="$name[san]"; fi
    log=$(mktemp)
    start=$(date +%s)
    BUILD=$tb timeout "${VZ_TEST_TIMEOUT:-1200}" "$t" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:.*/\1/p' "$log" | tail -1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s), listed below:.*/\1/p' "$log" | tail -1)
    p=${p:-0} f=${f:-0} s=${s:-0}
    if [ -z "$(grep -m1 '^\[==========\] .* test(s) run\.' "$log")" ] || { [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; }; then
        f=$((f + 1))
    fi
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    printf '%-28s %3d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" "$secs"
    if [ "$f" -gt 0 ]; then
        failed_bins+=("$name")
        sed 's/^/    /' "$log"
    elif [ "$s" -gt 0 ]; then
        grep -h 'SKIP' "$log" | sort -u | sed 's/^/    /'
    fi
    rm -f "$log"
done
# Short libFuzzer runs (built by `make test` when clang is available): each
# target fuzzes a scratch copy of its corpus for VZ_FUZZ_SECONDS; a crash fails.
if [ -z "${VZ_TEST_FILTER:-}" ] || [[ fuzz =~ ${VZ_TEST_FILTER} ]]; then
    for f in build-fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        n=${f#build-fuzz/fuzz_}
        d=$(mktemp -d)
        cp -r "tests/fuzz/corpus/$n/." "$d/" 2>/dev/null || true
        if timeout 300 "$f" -max_total_time="${VZ_FUZZ_SECONDS:-10}" -print_final_stats=0 "$d" >"$d.log" 2>&1; then
            pass=$((pass + 1)); printf '%-28s   1 passed   0 failed   0 skipped  (fuzz)\n' "fuzz_$n"
        else
            fail=$((fail + 1)); failed_bins+=("fuzz_$n"); tail -40 "$d.log" | sed 's/^/    /'
        fi
        rm -rf "$d" "$d.log"
    done
fi
[ ${#failed_bins[@]} -gt 0 ] && echo "failing: ${failed_bins[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
