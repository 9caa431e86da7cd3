#!/usr/bin/env bash
# Installs (idempotently) the toolchain for the example guests: Debian's clang 14 with lld,
# wasi-libc and the wasm32 compiler-rt builtins, plus wabt (wat2wasm, wasm-objdump, ...).
# Run as root. apt-get update runs once, and only when a package is missing. Then it checks
# that $WASM_CC (default /usr/bin/clang: Debian's, not the Swift toolchain's clang in
# /opt/swift, which has no wasi-libc) builds examples/guests/hello.c for wasm32-wasi.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WASM_CC="${WASM_CC:-/usr/bin/clang}"
PACKAGES=(clang lld wasi-libc libclang-rt-dev-wasm32 wabt)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        echo "present     $pkg ($(dpkg-query -W -f '${Version}' "$pkg"))"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup-toolchain: missing ${missing[*]}; run this script as root" >&2
        exit 1
    fi
    echo "installing  ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# Which clang is which: the Swift toolchain ships its own clang, which must not be used for wasm.
echo "clang on PATH: $(which -a clang 2>/dev/null | tr '\n' ' ')"
[ -x "$WASM_CC" ] || { echo "setup-toolchain: $WASM_CC not found" >&2; exit 1; }
echo "WASM_CC=$WASM_CC: $("$WASM_CC" --version | head -n 1)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$WASM_CC" --target=wasm32-wasi -O2 -Wl,--strip-all -o "$tmp/hello.wasm" "$ROOT/examples/guests/hello.c" || {
    echo "setup-toolchain: $WASM_CC cannot build wasm32-wasi programs (set WASM_CC to Debian's clang)" >&2
    exit 1
}
if command -v wasm-validate >/dev/null; then
    wasm-validate "$tmp/hello.wasm"
fi
echo "ok: $WASM_CC --target=wasm32-wasi builds examples/guests/hello.c ($(wc -c <"$tmp/hello.wasm") bytes)"
