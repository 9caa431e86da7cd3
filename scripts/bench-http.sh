#!/usr/bin/env bash
# bench-http.sh [--rounds N] [--seconds S] [--connections "1 16 64"] [--services N]
#
# The HTTP trigger's benchmarks (issue 13), printed as markdown:
#  1. Throughput: wrk on loopback with keep-alive connections (wrk's default) against the
#     servers started by this script, in one run, round-robin per round:
#       - wasmlet: wasmletd + `wasmletctl serve --listen 127.0.0.1:0 examples/build/wagi_hello.wasm`
#         (its default concurrency), a fresh Wasm instance of examples/guests/wagi_hello.c per request;
#       - nginx (Debian) serving a static file with the same body: the ceiling;
#       - lighttpd (Debian) with mod_cgi running the native build of wagi_hello.c (gcc -O2) as
#         a CGI: a process per request;
#       - wasmtime-py (PyPI wasmtime 51.0.0, in a venv of its own; skipped, and said so, when it
#         cannot be installed): scripts/bench-http-wasmtime-peer.py, a Python HTTP server that
#         runs a fresh wasmtime instance of the same module per request.
#     Requests/s and wrk's p50/p99 latency per connection count; medians over the rounds, each
#     round's value kept; ratios from the medians, against the issue's targets.
#  2. Density: N idle services (default 1,000) on a fresh wasmletd, each with its own listener:
#     the daemon's RSS, threads and descriptors before, with them, and after deleting them.
#
# Binaries: WASMLET_BIN_DIR (default .build/release; scripts/build-release.sh makes them).
# Everything listens on 127.0.0.1 only; every process started here is stopped by its PID.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
rounds=3 seconds=5 connections="1 16 64" services=1000
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --services) services="$2"; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-http: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
say() { echo "bench-http: $*" >&2; }
die() { say "$*"; exit 1; }

bin="${WASMLET_BIN_DIR:-$ROOT/.build/release}"
for b in wasmletd wasmletctl; do [ -x "$bin/$b" ] || die "$bin/$b missing: run scripts/build-release.sh or set WASMLET_BIN_DIR"; done
scripts/ensure-packages.sh wrk nginx lighttpd gcc curl >/dev/null
[ -f examples/build/wagi_hello.wasm ] || scripts/build-examples.sh >/dev/null
wasm="$ROOT/examples/build/wagi_hello.wasm"
body="hello from wasmlet"

work="$(mktemp -d /tmp/wasmlet-bench-http-XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # wait_http URL PID: until the server answers, or its process is gone (bounded)
    for _ in $(seq 1 300); do
        curl -s --max-time 1 -o /dev/null "$1" && return 0
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
check_body() { # check_body NAME URL: the server's answer is the hello body
    local got
    got="$(curl -sS --max-time 10 "$2")" || die "$1 does not answer at $2"
    [ "$got" = "$body" ] || die "$1 answers $2 with \"$got\", not \"$body\""
}

# ---- the three servers
daemon "$work/d1"
wasmlet_url="$("$bin/wasmletctl" --socket "$sock" serve --id hello --listen 127.0.0.1:0 "$wasm" 2>/dev/null)" ||
    die "wasmletctl serve failed"

mkdir -p "$work/www" "$work/cgi" "$work/nginx"
printf '%s\n' "$body" >"$work/www/index.html"
nginx_port="$(free_port)"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
    server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
EOF
$(command -v nginx || echo /usr/sbin/nginx) -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>>"$work/nginx/error.log" &
nginx_pid=$!; pids+=("$nginx_pid")
nginx_url="http://127.0.0.1:$nginx_port/"

gcc -O2 -o "$work/cgi/hello" examples/guests/wagi_hello.c
lighttpd_port="$(free_port)"
cat >"$work/lighttpd.conf" <<EOF
server.document-root = "$work/cgi"
server.bind = "127.0.0.1"
server.port = $lighttpd_port
server.errorlog = "$work/lighttpd-error.log"
server.modules = ( "mod_cgi" )
cgi.assign = ( "" => "" )
EOF
$(command -v lighttpd || echo /usr/sbin/lighttpd) -D -f "$work/lighttpd.conf" 2>>"$work/lighttpd-error.log" &
lighttpd_pid=$!; pids+=("$lighttpd_pid")
lighttpd_url="http://127.0.0.1:$lighttpd_port/hello"

servers="wasmlet nginx lighttpd-cgi"
venv="${WASMTIME_PY_VENV:-$HOME/.cache/wasmlet/wasmtime-py-51.0.0}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import wasmtime' 2>/dev/null; then
    say "installing wasmtime==51.0.0 into $venv"
    { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet wasmtime==51.0.0; } >"$work/wasmtime-py-install.log" 2>&1 ||
        say "cannot install wasmtime-py, so it is not measured: $(tail -n 2 "$work/wasmtime-py-install.log")"
fi
if "$venv/bin/python" -c 'import wasmtime' 2>/dev/null; then
    wasmtime_port="$(free_port)"
    "$venv/bin/python" scripts/bench-http-wasmtime-peer.py "$wasmtime_port" "$wasm" 2>"$work/wasmtime-py.log" &
    wasmtime_pid=$!; pids+=("$wasmtime_pid")
    wasmtime_url="http://127.0.0.1:$wasmtime_port/"
    wait_http "$wasmtime_url" "$wasmtime_pid" || die "the wasmtime-py peer does not answer: $(tail -n 5 "$work/wasmtime-py.log")"
    check_body wasmtime-py "$wasmtime_url"
    servers="$servers wasmtime-py"
fi

wait_http "$wasmlet_url" "$daemon_pid" || die "wasmlet's service does not answer"
wait_http "$nginx_url" "$nginx_pid" || die "nginx does not answer: $(cat "$work/nginx/error.log")"
wait_http "$lighttpd_url" "$lighttpd_pid" || die "lighttpd does not answer: $(cat "$work/lighttpd-error.log")"
check_body wasmlet "$wasmlet_url"
check_body nginx "$nginx_url"
check_body lighttpd-cgi "$lighttpd_url"
say "wasmlet $wasmlet_url, nginx $nginx_url ($(nginx -v 2>&1 | sed 's/.*\///')), lighttpd $lighttpd_url ($(lighttpd -v 2>&1 | head -n 1 | awk '{print $1}'))"

# wrk's summary: requests/s, and the 50% and 99% latencies in µs; non-2xx answers and socket
# errors fail the run.
measure() { # measure URL CONNECTIONS -> "rps p50us p99us"
    local threads=2
    [ "$2" -lt 2 ] && threads=1
    wrk -t"$threads" -c"$2" -d"${seconds}s" --latency "$1" 2>&1 | python3 -c '
import re, sys
text = sys.stdin.read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
bad = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
if not (rps and p50 and p99) or bad:
    sys.exit("wrk output not understood, or errors:\n" + text)
print(rps.group(1), us(p50.group(1)), us(p99.group(1)))'
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A results
for round in $(seq 1 "$rounds"); do
    for c in $connections; do
        for server in $servers; do
            case "$server" in
            wasmlet) url=$wasmlet_url ;; nginx) url=$nginx_url ;; lighttpd-cgi) url=$lighttpd_url ;; wasmtime-py) url=$wasmtime_url ;;
            esac
            results[$server,$c,$round]="$(measure "$url" "$c")" || die "wrk against $server failed"
            say "round $round, $c connections, $server: ${results[$server,$c,$round]}"
        done
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/wasmletctl" --socket "$sock" delete hello >/dev/null 2>&1 || true
kill -TERM "$daemon_pid" "$nginx_pid" "$lighttpd_pid" ${wasmtime_pid:+"$wasmtime_pid"} 2>/dev/null || true
wait "$daemon_pid" "$nginx_pid" "$lighttpd_pid" ${wasmtime_pid:+"$wasmtime_pid"} 2>/dev/null || true

# ---- density: idle services on a fresh daemon
status_of() { # status_of PID -> "rss_kib threads fds"
    echo "$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status") $(awk '/^Threads:/ {print $2}' "/proc/$1/status") $(ls "/proc/$1/fd" | wc -l)"
}
daemon "$work/d2"
# One service first, so the module is loaded and the trigger's event loops run in the baseline.
"$bin/wasmletctl" --socket "$sock" serve --id svc-0 --listen 127.0.0.1:0 "$wasm" >/dev/null 2>&1 || die "the first service failed"
before="$(status_of "$daemon_pid")"
for i in $(seq 1 "$services"); do
    "$bin/wasmletctl" --socket "$sock" serve --id "svc-$i" --listen 127.0.0.1:0 "$wasm" >"$work/last-url" 2>/dev/null ||
        die "service $i of $services failed: $(tail -n 3 "$work/d2/wasmletd.log")"
done
check_body "the last idle service" "$(cat "$work/last-url")"
with="$(status_of "$daemon_pid")"
for i in $(seq 0 "$services"); do "$bin/wasmletctl" --socket "$sock" delete "svc-$i" >/dev/null 2>&1 || die "delete svc-$i failed"; done
after="$(status_of "$daemon_pid")"

python3 - "$rounds" "$connections" "$seconds" "$services" "$before" "$with" "$after" "$load_before" "$load_after" "$servers" <<EOF
import statistics, sys
rounds = int(sys.argv[1]); conns = sys.argv[2].split(); seconds = sys.argv[3]; services = int(sys.argv[4])
servers = sys.argv[10].split()
before, with_, after = (list(map(int, a.split())) for a in sys.argv[5:8])
raw = {}
$(for k in "${!results[@]}"; do echo "raw['$k'] = '${results[$k]}'.split()"; done)
print("### Throughput: wrk on loopback, keep-alive connections\n")
print(f"{rounds} rounds of {seconds} s per cell, servers interleaved; medians, each round's value in brackets. "
      f"Load average {sys.argv[8]} before, {sys.argv[9]} after.\n")
print("| connections | server | requests/s | p50 | p99 |")
print("|---|---|---|---|---|")
med = {}
for c in conns:
    for s in servers:
        vals = [list(map(float, raw[f"{s},{c},{r}"])) for r in range(1, rounds + 1)]
        m = [statistics.median(v[i] for v in vals) for i in range(3)]
        med[s, c] = m
        each = ", ".join(f"{v[0]:.0f}" for v in vals)
        print(f"| {c} | {s} | {m[0]:.0f} [{each}] | {m[1]/1000:.3f} ms | {m[2]/1000:.3f} ms |")
print()
for c in conns:
    w, n, l = med["wasmlet", c][0], med["nginx", c][0], med["lighttpd-cgi", c][0]
    peer = f", wasmlet/wasmtime-py {w/med['wasmtime-py', c][0]:.1f}x" if "wasmtime-py" in servers else ", wasmtime-py not measured"
    print(f"- {c} connections: wasmlet/lighttpd-CGI {w/l:.1f}x (target >= 10x), wasmlet/nginx {w/n:.2f}x (target >= 0.2x){peer} requests/s")
if "16" in conns:
    p50 = med["wasmlet", "16"][1] / 1000
    print(f"- wasmlet p50 at 16 connections: {p50:.3f} ms (target <= 1 ms)")
print("\n### Density: idle services in one wasmletd\n")
print("| | RSS | threads | descriptors |")
print("|---|---|---|---|")
print(f"| one service | {before[0]} KiB | {before[1]} | {before[2]} |")
print(f"| with {services:,} more idle services | {with_[0]} KiB | {with_[1]} | {with_[2]} |")
print(f"| after deleting them all | {after[0]} KiB | {after[1]} | {after[2]} |")
print(f"\n- per idle service: {(with_[0] - before[0]) / services:.1f} KiB (target <= 64 KiB), "
      f"{(with_[1] - before[1]) / services:.3f} threads, {(with_[2] - before[2]) / services:.2f} descriptors")
EOF
