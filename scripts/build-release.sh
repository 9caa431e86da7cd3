#!/usr/bin/env bash
# The one release recipe: what a node runs (wasmletd, wasmletctl, containerd-shim-wasmlet-v1),
# built in .build/release with the Swift runtime linked in (--static-swift-stdlib), so that
# they run on a node without Swift: glibc and libsystemd0 come from the node, and
# deploy/install.sh checks that with ldd. The static stdlib also matters for the shim, one of
# which runs per pod (BENCHMARKS.md has the sizes and the idle RSS).
# The build's own progress lines are shown: the first build takes 10 to 20 minutes on two
# cores, later ones only rebuild what changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
products=(wasmletd wasmletctl containerd-shim-wasmlet-v1)
if [ ! -d .build/release ]; then
    echo "build-release: first release build; expect 10 to 20 minutes on two cores"
fi
start=$(date +%s)
for product in "${products[@]}"; do
    echo "build-release: $product"
    swift build -c release --static-swift-stdlib --product "$product"
done
echo "build-release: done in $(( $(date +%s) - start )) s; binaries in $PWD/.build/release:"
for product in "${products[@]}"; do
    printf '  %-28s %s\n' "$product" "$(du -h ".build/release/$product" | cut -f1)"
done
