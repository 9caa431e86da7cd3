#!/usr/bin/env bash
# release-footprint.sh [DIR]: what the node binaries in DIR (default .build/release, as
# scripts/build-release.sh leaves them) cost a node: file sizes, which Swift runtime libraries
# each still loads from the toolchain (none, for a build that works without Swift installed),
# wasmletd's idle resident memory (VmRSS and Pss, median of 3 fresh daemons), and the peak RSS
# of `wasmletctl version` and `containerd-shim-wasmlet-v1 -v` (median of 5). Needs GNU time.
set -euo pipefail
dir="${1:-.build/release}"
for binary in wasmletd wasmletctl containerd-shim-wasmlet-v1; do
    [ -x "$dir/$binary" ] || { echo "release-footprint: no $dir/$binary (run scripts/build-release.sh)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "release-footprint: needs GNU time (apt install time)" >&2; exit 2; }

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "== sizes, and Swift libraries loaded from the toolchain"
for binary in wasmletd wasmletctl containerd-shim-wasmlet-v1; do
    size=$(du -h "$dir/$binary" | cut -f1)
    libs=$(ldd "$dir/$binary" 2>/dev/null | grep -cE 'libswift|libFoundation|lib_FoundationICU|libdispatch|libBlocksRuntime' || true)
    echo "$binary: $size, $libs toolchain libraries"
done

echo "== wasmletd idle memory (KiB, median of 3 fresh daemons, no instances)"
work="$(mktemp -d /tmp/wasmlet-footprint-XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
rss=(); pss=()
for run in 1 2 3; do
    socket="$work/api-$run.sock"
    "$dir/wasmletd" --socket "$socket" --state-dir "$work/state-$run" --metrics-address 127.0.0.1:0 \
        >"$work/wasmletd-$run.log" 2>&1 &
    pid=$!
    # Idle means serving: wait until the API answers, not for a fixed time.
    for _ in $(seq 1 500); do
        "$dir/wasmletctl" --socket "$socket" version >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { echo "wasmletd exited; log:"; cat "$work/wasmletd-$run.log"; exit 1; }
        sleep 0.02
    done
    rss+=("$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")")
    pss+=("$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
echo "VmRSS: $(printf '%s\n' "${rss[@]}" | median) (runs: ${rss[*]})"
echo "Pss:   $(printf '%s\n' "${pss[@]}" | median) (runs: ${pss[*]})"

echo "== peak RSS of one command (KiB, median of 5)"
peak() {
    for _ in 1 2 3 4 5; do
        /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n 1
    done | median
}
echo "wasmletctl version:             $(peak "$dir/wasmletctl" --socket "$work/none.sock" version || true)"
echo "containerd-shim-wasmlet-v1 -v:  $(peak "$dir/containerd-shim-wasmlet-v1" -v)"
