#!/usr/bin/env bash
# Builds OCI image archives of the example guests, for `ctr image import` (see
# examples/images/README.md): hello, hello-wasi, sleeper, cpuhog, membomb, echo, httpd,
# echoserver, wagi-probe, wagi-hello and pause.
#
# Usage: scripts/build-example-images.sh [OUTDIR]     (default examples/images/build/)
#   WASMLETCTL=path   the wasmletctl to use; default: `swift build --product wasmletctl`, then
#                     the one in `swift build --show-bin-path`
# The modules come from examples/build/ (scripts/build-examples.sh runs when one is missing).
# The archives are deterministic: rebuilding from the same modules gives the same digests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/examples/images/build}"
WASM="$ROOT/examples/build"

die() { echo "build-example-images: $*" >&2; exit 1; }

if [ -n "${WASMLETCTL:-}" ]; then
    ctl="$WASMLETCTL"
else
    (cd "$ROOT" && swift build --product wasmletctl) || die "swift build --product wasmletctl failed"
    ctl="$(cd "$ROOT" && swift build --show-bin-path)/wasmletctl"
fi
[ -x "$ctl" ] || die "$ctl is not an executable wasmletctl"

for module in hello sleeper cpuhog membomb echo httpd echoserver wagi_probe wagi_hello; do
    if [ ! -f "$WASM/$module.wasm" ]; then
        echo "build-example-images: $WASM/$module.wasm is missing; running scripts/build-examples.sh"
        "$ROOT/scripts/build-examples.sh"
        break
    fi
done

mkdir -p "$OUT" || die "cannot create $OUT"

# image NAME MODULE REF [wasmletctl image build options...]
image() {
    local name="$1" module="$2" ref="$3"
    shift 3
    local digest
    digest="$("$ctl" image build "$WASM/$module.wasm" -t "$ref" -o "$OUT/$name.tar" -q "$@")" ||
        die "building $name.tar failed"
    printf '%-16s %-36s %s\n' "$name.tar" "$ref" "$digest"
}

image hello hello docker.io/wasmlet/hello:latest
image hello-wasi hello docker.io/wasmlet/hello:wasi --platform wasi
image sleeper sleeper docker.io/wasmlet/sleeper:latest --arg 3600
image cpuhog cpuhog docker.io/wasmlet/cpuhog:latest
image membomb membomb docker.io/wasmlet/membomb:latest
image echo echo docker.io/wasmlet/echo:latest --arg hello --arg "from an image" --env GREETING=hello
# Servers: they serve on the listeners the annotation wasmlet.dev/listen asks for (port 8080 in
# the Kubernetes example, deploy/kubernetes/examples/).
image httpd httpd docker.io/wasmlet/httpd:latest
image echoserver echoserver docker.io/wasmlet/echoserver:latest
# An HTTP trigger guest (WAGI): under annotations wasmlet.dev/trigger=http and
# wasmlet.dev/listen=8080, wasmletd serves HTTP and runs it once per request.
image wagi-probe wagi_probe docker.io/wasmlet/wagi-probe:latest
image wagi-hello wagi_hello docker.io/wasmlet/wagi-hello:latest
# The pod sandbox image for a wasmlet-only node without a registry: wasmlet never runs the
# sandbox container's module, so any module will do.
image pause hello docker.io/wasmlet/pause:latest

echo "build-example-images: archives in $OUT"
