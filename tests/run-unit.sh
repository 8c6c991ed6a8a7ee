#!/bin/bash
# Runs each cmocka unit-test binary given on the command line and prints one
# closing line "unit: N passed, N failed" (the counts are test binaries' cases).
set -u
pass=0; fail=0; failed_bins=()
for bin in "$@"; do
    out=$("$bin" 2>&1); rc=$?
    echo "$out" | grep -E '^\[  (PASSED|FAILED) \]|^\[  ERROR   \]' | sed "s|^|$(basename "$bin"): |"
    p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
    if [ $rc -ne 0 ]; then
        failed_bins+=("$(basename "$bin")")
        [ "${f:-0}" = 0 ] && fail=$((fail + 1))   # crashed before reporting
        echo "$out" | tail -40
    fi
done
echo "unit: $pass passed, $fail failed"
[ ${#failed_bins[@]} -eq 0 ] || { echo "failing: ${failed_bins[*]}"; exit 1; }
