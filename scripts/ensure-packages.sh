#!/usr/bin/env bash
# ensure-packages.sh PKG...: installs the Debian packages that are missing (as root), running
# apt-get update once and only when something is missing. Prints what it found.
set -euo pipefail
missing=()
for pkg in "$@"; do
    if dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        echo "present     $pkg"
    else
        missing+=("$pkg")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-packages: missing ${missing[*]}; run as root (or install them yourself)" >&2
    exit 1
fi
echo "installing  ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
