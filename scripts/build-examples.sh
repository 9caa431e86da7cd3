#!/usr/bin/env bash
# Builds every example guest into examples/build/<name>.wasm, and the compute benchmarks also
# natively into examples/build/native/<name> (for scripts/bench-peers.py).
# Outputs newer than their sources are skipped. Environment overrides:
#   WASM_CC   clang used for wasm32-wasi (default /usr/bin/clang, Debian's; NOT the Swift toolchain's)
#   NATIVE_CC native compiler for the benchmarks (default cc)
#   FORCE=1   rebuild everything
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EX="$ROOT/examples"
OUT="$EX/build"
WASM_CC="${WASM_CC:-/usr/bin/clang}"
NATIVE_CC="${NATIVE_CC:-cc}"
WASM_FLAGS=(--target=wasm32-wasi -O2 -Wl,--strip-all)

die() { echo "build-examples: $*" >&2; exit 1; }

[ -x "$WASM_CC" ] || die "$WASM_CC not found; run scripts/setup-toolchain.sh (as root) first"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf 'int main(void){return 0;}\n' >"$probe/t.c"
"$WASM_CC" "${WASM_FLAGS[@]}" -o "$probe/t.wasm" "$probe/t.c" 2>"$probe/err" ||
    die "$WASM_CC cannot build wasm32-wasi programs (missing wasi-libc, lld or libclang-rt-dev-wasm32?):
$(cat "$probe/err")
run scripts/setup-toolchain.sh (as root) first"
command -v "$NATIVE_CC" >/dev/null || die "native compiler '$NATIVE_CC' not found; run scripts/setup-toolchain.sh"

mkdir -p "$OUT/native"

# up_to_date OUTPUT SOURCES...: true when OUTPUT exists and is newer than every source
up_to_date() {
    local out="$1"; shift
    [ "${FORCE:-0}" = 1 ] && return 1
    [ -e "$out" ] || return 1
    local src
    for src in "$@"; do [ "$src" -nt "$out" ] && return 1; done
    return 0
}

build() { # build OUTPUT COMPILER FLAGS... -- SOURCES...
    local out="$1" cc="$2"; shift 2
    local flags=()
    while [ "$1" != "--" ]; do flags+=("$1"); shift; done
    shift
    local main="$1" deps=("$@")
    if up_to_date "$out" "${deps[@]}"; then
        echo "up to date  ${out#"$ROOT"/}"
        return
    fi
    "$cc" "${flags[@]}" -o "$out" "$main"
    echo "built       ${out#"$ROOT"/} ($(wc -c <"$out") bytes)"
}

for src in "$EX"/guests/*.c; do
    name="$(basename "$src" .c)"
    extra=()
    # The servers poll over many clients: wasi-libc's poll() keeps its subscriptions in a VLA on
    # the shadow stack (96 bytes per fd), past the default 64 KiB with ~700 fds.
    case "$name" in httpd | echoserver) extra=(-Wl,-z,stack-size=1048576) ;; esac
    build "$OUT/$name.wasm" "$WASM_CC" "${WASM_FLAGS[@]}" "${extra[@]}" -- "$src" "$EX/guests/listen_fd.h"
done

# hello also natively: the benchmark compares an in-process start with spawning a process.
build "$OUT/native/hello" "$NATIVE_CC" -O2 -- "$EX/guests/hello.c"
# The WAGI hello too: the HTTP benchmark runs it as a CGI under lighttpd.
build "$OUT/native/wagi_hello" "$NATIVE_CC" -O2 -- "$EX/guests/wagi_hello.c"
# The servers too: BENCHMARKS.md compares them under wasmlet with their native builds.
for name in httpd echoserver; do
    build "$OUT/native/$name" "$NATIVE_CC" -O2 -- "$EX/guests/$name.c" "$EX/guests/listen_fd.h"
done

for src in "$EX"/bench/*.c; do
    name="$(basename "$src" .c)"
    build "$OUT/$name.wasm" "$WASM_CC" "${WASM_FLAGS[@]}" -- "$src" "$EX/bench/bench_main.h"
    build "$OUT/native/$name" "$NATIVE_CC" -O2 -- "$src" "$EX/bench/bench_main.h"
done
