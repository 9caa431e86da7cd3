#!/usr/bin/env bash
# Checks the systemd units in systemd/ with `systemd-analyze verify` (and the sysusers.d
# file with `systemd-sysusers --dry-run`), failing on any finding about our files.
#
# Nothing is installed on this machine: the units are copied into a temporary directory
# and checked there. `systemd-analyze verify` insists that every Exec*= binary exists, so
# in the copies only commands under /usr/local/bin/wasmlet* (our binaries, which are not
# installed here) are pointed at executable stubs inside the temporary directory; every
# other line is verified as written. If systemd-analyze is missing (a fresh Debian
# machine), the `systemd` package is installed with apt-get when running as root.
#
# Usage: scripts/verify-units.sh [UNIT_DIR]   (default: systemd/ of this repository)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unit_dir="${1:-$repo_root/systemd}"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "verify-units: installing systemd (for systemd-analyze)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
    else
        echo "verify-units: systemd-analyze not found; install the systemd package" >&2
        exit 1
    fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/wasmlet-verify-units.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/units" "$work/stubs"

shopt -s nullglob
units=("$unit_dir"/*.service "$unit_dir"/*.socket)
if [[ ${#units[@]} -eq 0 ]]; then
    echo "verify-units: no units in $unit_dir" >&2
    exit 1
fi

# Copy the units; point Exec*= commands under /usr/local/bin/wasmlet* at stubs.
stubbed=0
for unit in "${units[@]}"; do
    copy="$work/units/$(basename "$unit")"
    cp "$unit" "$copy"
    # The command is the first word after Exec*= and systemd's prefixes (-@:+!).
    while IFS= read -r command; do
        stub="$work/stubs$command"
        mkdir -p "$(dirname "$stub")"
        printf '#!/bin/sh\nexit 0\n' >"$stub"
        chmod 0755 "$stub"
        stubbed=$((stubbed + 1))
    done < <(sed -nE 's#^Exec[A-Za-z]*=[-@:+!]*(/usr/local/bin/wasmlet[^[:space:]]*).*#\1#p' "$copy" | sort -u)
    sed -i -E "s#^(Exec[A-Za-z]*=[-@:+!]*)(/usr/local/bin/wasmlet)#\\1$work/stubs\\2#" "$copy"
done

copies=("$work"/units/*)
echo "verify-units: systemd $(systemd-analyze --version | sed -n '1s/^systemd \([^ ]*\).*/\1/p');" \
    "checking ${copies[*]##*/} ($stubbed stubbed command(s))"

status=0
set +e
output="$(cd "$work/units" && systemd-analyze verify --man=no "${copies[@]}" 2>&1)"
rc=$?
set -e
if [[ -n "$output" ]]; then
    printf '%s\n' "$output"
fi
if [[ $rc -ne 0 ]]; then
    echo "verify-units: systemd-analyze verify exited with status $rc" >&2
    status=1
fi
if grep -qi 'wasmlet' <<<"$output"; then
    echo "verify-units: findings about our units (see above)" >&2
    status=1
fi

# sysusers.d files: parse them against an empty temporary root (writes nothing).
for conf in "$unit_dir"/*.sysusers.conf; do
    mkdir -p "$work/sysroot/etc"
    : >"$work/sysroot/etc/passwd"
    : >"$work/sysroot/etc/group"
    if ! sysusers_output="$(systemd-sysusers --dry-run --root="$work/sysroot" "$conf" 2>&1)"; then
        printf '%s\n' "$sysusers_output"
        echo "verify-units: systemd-sysusers rejected $conf" >&2
        status=1
    elif grep -qiE 'warn|error|invalid|fail' <<<"$sysusers_output"; then
        printf '%s\n' "$sysusers_output"
        echo "verify-units: findings about $conf (see above)" >&2
        status=1
    fi
done

if [[ $status -eq 0 ]]; then
    echo "verify-units: OK"
fi
exit "$status"
