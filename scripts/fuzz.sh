#!/usr/bin/env bash
# fuzz.sh TARGET SECONDS     fuzz one target (e.g. fuzz-ttrpc-frame) for SECONDS
# fuzz.sh --all SECONDS      fuzz every target, SECONDS each (scripts/test.sh: 30)
# fuzz.sh --list             name the targets
# FUZZ_SEED=N fixes libFuzzer's seed (scripts/test.sh: 1, so that a run of the test command
# explores the same inputs each time; a longer run here, with a random seed, explores new ones).
#
# Builds the target with libFuzzer and AddressSanitizer (-sanitize=fuzzer,address -DFUZZING, in
# .build-fuzz/, apart from the ordinary build) and runs it on a working copy of its committed
# seed corpus (Tests/FuzzCorpus/TARGET/), so what it learns stays out of the repository. It
# prints, per target, the executions, executions per second and the coverage libFuzzer
# reached (edges: `cov`, features: `ft`), and exits 1 if any target crashed, leaked or hung,
# after saving the input under .build-fuzz/crashes/TARGET/ (leaks in third-party code we cannot
# change are suppressed by Tests/FuzzCorpus/lsan-suppressions.txt, each with its reason). Make each such input a
# regression test: copy it into Tests/FuzzCorpus/TARGET/ as crash-NAME, fix the cause, and
# `swift test --filter FuzzCorpusReplayTests` replays it from then on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGETS=(fuzz-ttrpc-frame fuzz-shim-wire fuzz-oci-config fuzz-module fuzz-wasi-pointers
         fuzz-image-tar fuzz-config-toml fuzz-http-request)
BUILD=.build-fuzz

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
    --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
    --all) [ $# -eq 2 ] || usage; selected=("${TARGETS[@]}"); seconds=$2 ;;
    fuzz-*) [ $# -eq 2 ] || usage; selected=("$1"); seconds=$2 ;;
    *) usage ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] || { echo "fuzz.sh: SECONDS must be a whole number of seconds, at least 1" >&2; exit 2; }
for target in "${selected[@]}"; do
    [[ " ${TARGETS[*]} " == *" $target "* ]] || { echo "fuzz.sh: no target $target (fuzz.sh --list)" >&2; exit 2; }
done

for target in "${selected[@]}"; do
    echo "== build $target (libFuzzer, ASan)"
    # -Xcxx -DNDEBUG: toml++ (C++, inside TOMLKit) asserts on some invalid TOML, and wasmletd
    # keeps those aborts in a child process (ConfigurationParserChild); here they would stop
    # fuzz-config-toml at the first one. Without its assertions toml++ returns an error instead,
    # and ASan still checks every byte it touches.
    swift build --build-path "$BUILD" --product "$target" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xcxx -DNDEBUG 2>&1 | grep -v "Cannot export local symbol" | grep -E "error:|Build of product" || true
    [ -x "$BUILD/debug/$target" ] || { echo "fuzz.sh: $target did not build" >&2; exit 1; }
done

summary=()
failed=0
for target in "${selected[@]}"; do
    corpus="$BUILD/corpus/$target"
    crashes="$BUILD/crashes/$target"
    mkdir -p "$corpus" "$crashes"
    cp -n Tests/FuzzCorpus/"$target"/* "$corpus"/ 2>/dev/null || true
    log="$BUILD/$target.log"
    echo "== fuzz $target for ${seconds}s (log: $log)"
    # -timeout: one input running 10 s is a hang; -rss_limit_mb: module validation reserves
    # address space, not memory, so 2 GiB of RSS is a real leak or blow-up.
    set +e
    # SWIFT_BACKTRACE: the Swift runtime's crash handler would otherwise catch the signal first,
    # and under ASan its own memory reads are what gets reported (CI, stop 23), not the crash.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    LSAN_OPTIONS=suppressions="$PWD/Tests/FuzzCorpus/lsan-suppressions.txt":print_suppressions=0 \
        "$BUILD/debug/$target" "$corpus" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$crashes/" -print_final_stats=1 ${FUZZ_SEED:+-seed="$FUZZ_SEED"} >"$log" 2>&1
    rc=$?
    set -e
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
    [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    stat_of() { grep -oE "$1:[[:space:]]+[0-9]+" "$log" | awk '{print $2}' | tail -1 || true; }
    runs=$(stat_of stat::number_of_executed_units)
    rate=$(stat_of stat::average_exec_per_sec)
    cov=$(echo "$done_line" | grep -oE 'cov: [0-9]+' | awk '{print $2}' || true)
    ft=$(echo "$done_line" | grep -oE 'ft: [0-9]+' | awk '{print $2}' || true)
    units=$(find "$corpus" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz.sh: $target FAILED (exit $rc); the input is in $crashes/:" >&2
        grep -E 'ERROR: |SUMMARY: |Fatal error|Assertion|Test unit written' "$log" | head -8 >&2
        summary+=("$(printf '%-20s FAILED (exit %s), see %s' "$target" "$rc" "$log")")
    else
        summary+=("$(printf '%-20s %10s runs %8s/s  cov %6s  ft %6s  corpus %5s' "$target" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$units")")
    fi
done

echo "== fuzzing summary (${seconds}s each)"
printf '%s\n' "${summary[@]}"
exit "$failed"
