#!/usr/bin/env bash
# The README's test command. On a fresh Debian machine with Swift (run as root) it installs what
# the tests need, builds the example guests, checks the systemd units and runs every test.
# Already-installed packages are skipped. No services are needed yet: when a test needs one
# (containerd, Prometheus), this script starts it and stops it by its PID; the containerd
# end-to-end tests (scripts/e2e-containerd.sh) start a private containerd and wasmletd.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== packages"
scripts/ensure-packages.sh pkg-config libsystemd-dev systemd prometheus
scripts/setup-toolchain.sh

echo "== example guests"
scripts/build-examples.sh

if [ -x scripts/verify-units.sh ]; then
    echo "== systemd units"
    scripts/verify-units.sh
fi

echo "== swift build"
swift build --build-tests

echo "== swift test"
swift test --skip-build 2>&1 | tee .build/test-output.txt
# `swift test` exits non-zero on failure; pipefail carries it through tee.

echo "== containerd end-to-end (ctr and CRI)"
scripts/e2e-containerd.sh
