#!/usr/bin/env bash
# Release builds of what a node runs: wasmletd, wasmletctl and containerd-shim-wasmlet-v1, in
# .build/release (printed at the end). The shim is linked with a static Swift stdlib: one runs
# per pod, and a static stdlib roughly halves its resident memory (about 5 MB against 8 MB).
# It gets its own scratch directory because the flag would otherwise relink everything else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for product in wasmletd wasmletctl; do
    swift build -c release --product "$product" 2>&1 | tail -n 1
done
swift build -c release --static-swift-stdlib --scratch-path .build-shim-static \
    --product containerd-shim-wasmlet-v1 2>&1 | tail -n 1
cp .build-shim-static/release/containerd-shim-wasmlet-v1 .build/release/
echo "binaries in $PWD/.build/release: wasmletd wasmletctl containerd-shim-wasmlet-v1"
