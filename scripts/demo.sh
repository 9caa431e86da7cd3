#!/usr/bin/env bash
# The README's first command. On a fresh Debian machine with Swift (as root) it installs what is
# missing, builds wasmlet and the example guests, starts wasmletd on its built-in defaults (no
# configuration file), runs a demo workload through wasmletctl, shows `wasmletctl list`, serves
# httpd.wasm on a pre-opened listener and asks it with curl, serves wagi_hello.wasm through the
# HTTP trigger and asks that too, and
# stops the daemon it started (by its PID). With --keep the daemon keeps running.
# If a wasmletd already answers on the default socket (say, the systemd service), it uses that.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/ensure-packages.sh pkg-config libsystemd-dev curl >/dev/null
scripts/setup-toolchain.sh >/dev/null
scripts/build-examples.sh >/dev/null
echo "== building wasmletd, wasmletctl and the containerd shim (release, scripts/build-release.sh; the first build takes 10 to 20 minutes on two cores, and shows its progress)"
scripts/build-release.sh
bin=.build/release
ctl() { echo "\$ wasmletctl $*"; "$bin/wasmletctl" "$@"; }

daemon_pid=""
if "$bin/wasmletctl" version >/dev/null 2>&1; then
    echo "== using the wasmletd already running"
else
    echo "== starting wasmletd on its defaults"
    "$bin/wasmletd" &
    daemon_pid=$!
    for _ in $(seq 1 100); do "$bin/wasmletctl" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
stop_daemon() {
    if [ -n "$daemon_pid" ] && [ "$keep" = 0 ]; then
        echo "== stopping wasmletd (pid $daemon_pid)"
        kill -TERM "$daemon_pid" && wait "$daemon_pid" || true
    fi
}
trap stop_daemon EXIT

data="$(mktemp -d)"
echo "a file the guest may read" >"$data/note.txt"
ex="$PWD/examples/build"
run() { # run TITLE ARGS...
    echo; echo "== $1"; shift
    set +e; ctl run "$@"; local code=$?; set -e
    echo "-> exit code $code"
}

# The demo's named instances are kept after they exit; clear those of an earlier demo.
for id in bomb runaway late napper web; do "$bin/wasmletctl" delete "$id" >/dev/null 2>&1 || true; done

ctl version
run "hello" "$ex/hello.wasm"
run "args and environment (only what is given)" --env GREETING=hi "$ex/echo.wasm" one two
run "a read-only preopen" --dir "$data:/data:ro" "$ex/cat.wasm" /data/note.txt
run "escaping the preopen fails" --dir "$data:/data:ro" "$ex/cat.wasm" /data/../../etc/passwd
run "memory bomb under a 16 MiB cap" --no-rm --id bomb --memory 16M "$ex/membomb.wasm"
run "runaway loop with a fuel budget" --no-rm --id runaway --fuel 50000000 "$ex/cpuhog.wasm"
run "sleeper past a 300 ms deadline" --no-rm --id late --timeout 300ms "$ex/sleeper.wasm"
echo; echo "== a long-running guest, killed"
"$bin/wasmletctl" run --no-rm --id napper "$ex/sleeper.wasm" 600 &
runner=$!
sleep 1
ctl list
ctl kill napper
wait "$runner" || echo "-> exit code $?"
echo
ctl list
ctl inspect runaway

echo; echo "== a served example: httpd.wasm on a pre-opened listener (127.0.0.1, a free port), asked by curl"
"$bin/wasmletctl" run --no-rm --id web --no-stdin --listen 127.0.0.1:0 --dir "$data:/srv:ro" \
    "$ex/httpd.wasm" /srv 2>"$data/web.err" &
server=$!
port=""
for _ in $(seq 1 100); do  # wasmletctl prints the bound address once the daemon has created it
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$data/web.err" | head -n 1)"
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { cat "$data/web.err" >&2; echo "demo: the served example did not start" >&2; exit 1; }
echo "\$ curl http://127.0.0.1:$port/ ; curl http://127.0.0.1:$port/files/note.txt"
curl -sS --max-time 10 "http://127.0.0.1:$port/"
curl -sS --max-time 10 "http://127.0.0.1:$port/files/note.txt"
ctl kill web
wait "$server" || echo "-> exit code $?"

echo; echo "== an HTTP service: wagi_hello.wasm under the HTTP trigger (a fresh instance per request, WAGI)"
echo "\$ wasmletctl serve --id wagi --listen 127.0.0.1:0 examples/build/wagi_hello.wasm"
url="$("$bin/wasmletctl" serve --id wagi --listen 127.0.0.1:0 "$ex/wagi_hello.wasm")"
echo "$url"
echo "\$ curl $url   (three times)"
for _ in 1 2 3; do curl -sS --max-time 10 "$url"; done
ctl list
ctl delete wagi
rm -rf "$data"
