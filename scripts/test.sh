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

echo "== deploy files"
for f in deploy/install.sh deploy/containerd/check-config.sh scripts/build-example-images.sh; do bash -n "$f"; done
if command -v shellcheck >/dev/null; then
    shellcheck deploy/install.sh deploy/containerd/check-config.sh scripts/build-example-images.sh
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 -c 'import sys, yaml; [list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]]' \
    deploy/kubernetes/*.yaml deploy/kubernetes/examples/*.yaml
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' deploy/grafana/wasmlet-dashboard.json
scripts/ensure-packages.sh containerd >/dev/null
deploy/containerd/check-config.sh

echo "== swift build"
swift build --build-tests

echo "== layering (Package.swift header): declared imports; what wasmletctl and the shim link"
scripts/check-layering.py

echo "== swift test"
swift test --skip-build 2>&1 | tee .build/test-output.txt
# `swift test` exits non-zero on failure; pipefail carries it through tee.

echo "== fuzzing (libFuzzer + ASan, 30 s a target, 8 targets: 4 minutes)"
FUZZ_SEED=1 scripts/fuzz.sh --all 30

echo "== containerd end-to-end (ctr and CRI)"
scripts/e2e-containerd.sh
