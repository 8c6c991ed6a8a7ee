#!/bin/bash
# Run libFuzzer harnesses for a bounded time each (make fuzz / make fuzz-ci).
#   FUZZ_SECONDS  seconds per harness (default 60)
#   FUZZ_BUILD    where the binaries are (default build-fuzz)
# Usage: run.sh NAME...   (NAME is fuzz_NAME.c under tests/fuzz)
#
# Each harness starts from its committed seeds in tests/fuzz/corpus/NAME/
# (read only) plus what earlier runs found in $FUZZ_BUILD/corpus/NAME/ (new
# inputs are written there, never into the source tree).  A crash, leak,
# sanitizer report or timeout leaves the input in $FUZZ_BUILD/artifacts/
# and makes the script exit non-zero after every harness has run.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
secs=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-build-fuzz}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/artifacts" "$build/logs"
failed=()
start=$(date +%s)
for name in "$@"; do
    bin=$build/tests/fuzz/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    work=$build/corpus/$name
    log=$build/logs/$name.log
    mkdir -p "$work" "$seeds"
    dict=()
    [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$name-" "${dict[@]}" \
        "$work" "$seeds" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2)
    if [ $rc -eq 0 ]; then
        printf 'fuzz %-14s ok    %ss  execs %-8s exec/s %-6s cov %-5s ft %-6s corpus %s\n' \
            "$name" "$secs" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
    else
        printf 'fuzz %-14s FAIL  (exit %d), log %s\n' "$name" $rc "$log"
        grep -E 'ERROR: |SUMMARY: |runtime error|Test unit written|^    #[0-9]+ ' "$log" | head -n 40
        failed+=("$name")
    fi
done
echo "fuzz: $(( $(date +%s) - start ))s for $# harnesses"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
    exit 1
fi
