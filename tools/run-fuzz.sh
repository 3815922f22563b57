#!/bin/sh
# Run each libFuzzer harness for a bounded time: run-fuzz.sh BUILD_DIR SECONDS HARNESS...
# New inputs go to BUILD_DIR/fuzz-corpus/<harness> (the committed seeds stay as they are);
# a crash, a leak or an allocation over the limits stops the run and leaves its input in
# BUILD_DIR/fuzz-artifacts/.
build=$1
secs=$2
shift 2
cd "$(dirname "$0")/.." || exit 1
status=0
mkdir -p "$build/fuzz-artifacts"
for h in "$@"; do
    mkdir -p "$build/fuzz-corpus/$h" "tests/fuzz/corpus/$h"
    rm -f "$build/fuzz-artifacts/$h-"* # what an earlier run found is that run's report
    echo "== fuzz $h for ${secs}s =="
    "$build/tests/fuzz/$h" -max_total_time="$secs" -detect_leaks=1 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$h-" \
        "$build/fuzz-corpus/$h" "tests/fuzz/corpus/$h" 2>&1 |
        grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' ||
        true
    for kind in crash leak oom timeout; do # (slow-unit files report load, not a fault)
        ls "$build/fuzz-artifacts/$h-$kind-"* >/dev/null 2>&1 && { echo "fuzz: $h: $kind, see above"; status=1; }
    done
done
exit $status
