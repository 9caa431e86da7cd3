#!/usr/bin/env bash
# test-repeat.sh N [REF]: runs the README's test command (scripts/test.sh) N times on a fresh
# clone of this repository's REF (default HEAD; committed work only, as CI sees it), and prints
# the pass count and every failing test of every failing run. The first run builds; later runs
# reuse that clone's build, as CI's single run would have it. Logs stay in the printed directory.
# Exit status: 0 when every run passed.
set -euo pipefail
count="${1:?usage: scripts/test-repeat.sh N [REF]}"
ref="${2:-HEAD}"
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "test-repeat: N must be a positive integer, not '$count'" >&2; exit 2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d /tmp/wasmlet-repeat-XXXXXX)"
git clone --quiet "$root" "$work/clone"
git -C "$work/clone" checkout --quiet --detach "$(git -C "$root" rev-parse "$ref")"
echo "test-repeat: $count runs of scripts/test.sh at $(git -C "$work/clone" rev-parse --short HEAD) in $work/clone"

passed=0
for run in $(seq 1 "$count"); do
    log="$work/run-$run.log"
    start=$(date +%s)
    if (cd "$work/clone" && CI="${CI:-true}" bash scripts/test.sh </dev/null >"$log" 2>&1); then
        passed=$((passed + 1))
        echo "run $run: passed ($(( $(date +%s) - start )) s)"
    else
        echo "run $run: FAILED ($(( $(date +%s) - start )) s), log $log"
        # Swift Testing's failed tests, XCTest's, and the containerd end-to-end summary lines.
        grep -E '✘ Test [^ ]+.* (failed|recorded an issue)|error: .*XCTAssert|^FAIL ' "$log" | sed 's/^/    /' | sort -u | head -40 || true
        tail -n 3 "$log" | sed 's/^/    | /'
    fi
done
echo "test-repeat: $passed passed, $((count - passed)) failed"
[ "$passed" -eq "$count" ]
