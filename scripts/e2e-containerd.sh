#!/usr/bin/env bash
# e2e-containerd.sh [test|bench|repeat|exec] [ARGS...]: runs wasmlet under the real containerd.
#
# As root on a Debian 12 machine with Swift: installs containerd (and runc) and the Python gRPC
# packages when missing, starts wasmletd and a private containerd (config, sockets, state and
# shim sockets all in a temporary directory), then runs Tests/containerd-e2e/run_tests.py (`test`,
# the default: ctr and CRI end-to-end tests; TEST names select some, e.g. `basic cri`) or
# Tests/containerd-e2e/bench.py (`bench`, ARGS go to it), or Tests/containerd-e2e/repeat.py
# (`repeat`, ARGS go to it: many `ctr run --rm` of hello under load, counting lost output), or
# `exec CMD...` (any command, with the same environment: for debugging, e.g. `exec bash`). Both
# daemons are stopped by their PIDs on exit, leftover mounts under the temporary directory are
# unmounted and the directory removed.
#
# Binaries come from WASMLET_BIN_DIR, else `swift build --show-bin-path` (the caller has built
# them: wasmletd, wasmletctl, containerd-shim-wasmlet-v1). Example images come from
# scripts/build-example-images.sh when it exists; images it does not make are packed by
# Tests/containerd-e2e/ociimage.py from examples/build/*.wasm.
# Environment: KEEP=1 keeps the temporary directory (and prints its path);
# E2E_SNAPSHOTTER=native|overlayfs (default overlayfs); E2E_LOG_LEVEL (containerd, default debug
# for tests, info for bench).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE=test
case "${1:-}" in test|bench|repeat|exec) MODE="$1"; shift ;; esac
E2E="$ROOT/Tests/containerd-e2e"

say() { echo "e2e: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (containerd, mounts)"

# ---- dependencies
scripts/ensure-packages.sh containerd containernetworking-plugins >/dev/null
command -v runc >/dev/null || die "runc missing after installing containerd"
if ! python3 -c 'import grpc, grpc_tools, google.protobuf' 2>/dev/null; then
    say "installing grpcio grpcio-tools protobuf (pip)"
    python3 -m pip install --quiet grpcio grpcio-tools protobuf
fi

# ---- binaries
if [ -n "${WASMLET_BIN_DIR:-}" ]; then
    BIN="$(cd "$WASMLET_BIN_DIR" && pwd)"
else
    BIN="$(swift build --show-bin-path)"
fi
for b in wasmletd wasmletctl containerd-shim-wasmlet-v1; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found: build first (swift build), or set WASMLET_BIN_DIR"
done
say "binaries from $BIN"

# ---- the temporary world
WORK="$(mktemp -d /tmp/wasmlet-e2e.XXXXXX)"
chmod 755 "$WORK"
mkdir -p "$WORK/state" "$WORK/images" "$WORK/s" "$WORK/fifo" "$WORK/cni/conf" "$WORK/cni/bin" "$WORK/logs"
STATUS=""

stop_pid() { # stop_pid PID NAME: TERM, wait up to 10 s, then KILL
    local pid="$1" name="$2"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    say "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    STATUS="${STATUS:-$rc}"
    set +e
    # Shims of our containerd first: containerd would leave them running.
    local shims
    shims="$(pgrep -f -- "-address $WORK/containerd.sock" || true)"
    [ -f "$WORK/containerd.pid" ] && stop_pid "$(cat "$WORK/containerd.pid")" containerd
    for pid in $shims; do stop_pid "$pid" "shim"; done
    [ -f "$WORK/wasmletd.pid" ] && stop_pid "$(cat "$WORK/wasmletd.pid")" wasmletd
    # The run's CNI bridge (made by the bridge plugin at the first pod on the pod network).
    if [ -n "${E2E_BRIDGE:-}" ] && ip link show "$E2E_BRIDGE" >/dev/null 2>&1; then ip link delete "$E2E_BRIDGE"; fi
    # Anything still mounted under WORK (bundles' rootfs, CRI's shm), deepest first.
    local left
    left="$(awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r)"
    if [ -n "$left" ]; then
        say "unmounting leftovers:"; echo "$left" | sed 's/^/    /' >&2
        echo "$left" | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    fi
    if [ "$STATUS" -ne 0 ]; then
        for log in wasmletd containerd; do
            [ -f "$WORK/$log.log" ] || continue
            echo "==== last 150 lines of $log.log ($WORK/$log.log)" >&2
            tail -n 150 "$WORK/$log.log" >&2
        done
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$STATUS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- wasmletd: started (and restarted by the tests) through one script, pid in a file
cat >"$WORK/start-wasmletd.sh" <<EOF
#!/usr/bin/env bash
# Starts wasmletd for the e2e run in the background, records its pid, waits until it answers.
set -euo pipefail
setsid "$BIN/wasmletd" --socket "$WORK/wasmlet.sock" --state-dir "$WORK/state" \\
    --metrics-address 127.0.0.1:0 --log-level debug </dev/null >>"$WORK/wasmletd.log" 2>&1 &
echo \$! >"$WORK/wasmletd.pid"
for _ in \$(seq 1 200); do
    "$BIN/wasmletctl" --socket "$WORK/wasmlet.sock" version >/dev/null 2>&1 && exit 0
    kill -0 "\$(cat "$WORK/wasmletd.pid")" 2>/dev/null || { echo "wasmletd exited; see $WORK/wasmletd.log" >&2; exit 1; }
    sleep 0.05
done
echo "wasmletd did not answer on $WORK/wasmlet.sock within 10 s" >&2
exit 1
EOF
chmod +x "$WORK/start-wasmletd.sh"
"$WORK/start-wasmletd.sh"
say "wasmletd pid $(cat "$WORK/wasmletd.pid"), socket $WORK/wasmlet.sock"

# ---- containerd
SNAP="${E2E_SNAPSHOTTER:-overlayfs}"
if [ "$MODE" = bench ] || [ "$MODE" = repeat ]; then LEVEL="${E2E_LOG_LEVEL:-info}"; else LEVEL="${E2E_LOG_LEVEL:-debug}"; fi
# The CRI plugin's pod network: a CNI bridge of the run's own (E2E_BRIDGE, on E2E_POD_SUBNET,
# no masquerading, IPAM state under WORK), so a pod on the pod network gets an IP the host
# reaches over the bridge (T9); host-network pods (T7) need no CNI. Deleted at the end.
E2E_BRIDGE="wle2e$$"
E2E_BRIDGE="${E2E_BRIDGE:0:15}"
E2E_POD_SUBNET="${E2E_POD_SUBNET:-10.231.0.0/24}"
export E2E_BRIDGE E2E_POD_SUBNET
for plugin in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$plugin" ] || die "/usr/lib/cni/$plugin missing (containernetworking-plugins)"
    ln -s "/usr/lib/cni/$plugin" "$WORK/cni/bin/$plugin"
done
cat >"$WORK/cni/conf/10-wasmlet-e2e.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "wasmlet-e2e", "plugins": [
  {"type": "bridge", "bridge": "$E2E_BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$E2E_POD_SUBNET"}]], "dataDir": "$WORK/cni/ipam"}}]}
EOF
cat >"$WORK/containerd.toml" <<EOF
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "$WORK/containerd.sock"
[ttrpc]
  address = "$WORK/containerd.sock.ttrpc"
[debug]
  level = "$LEVEL"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/wasmlet/pause:latest"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$SNAP"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmlet]
      runtime_type = "io.containerd.wasmlet.v1"
      pod_annotations = ["wasmlet.dev/*"]
      container_annotations = ["wasmlet.dev/*"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$WORK/cni/bin"
    conf_dir = "$WORK/cni/conf"
EOF
# containerd hands its environment to the shims: PATH finds ours, WASMLET_SOCKET is the daemon,
# WASMLET_SHIM_SOCKET_DIR keeps shim sockets out of /run/containerd/s. Started (and restarted by
# the containerd-restart test) through one script, pid in a file.
cat >"$WORK/start-containerd.sh" <<EOF
#!/usr/bin/env bash
# Starts the e2e run's containerd in the background, records its pid, waits until it answers.
set -euo pipefail
env PATH="$BIN:\$PATH" WASMLET_SOCKET="$WORK/wasmlet.sock" WASMLET_SHIM_SOCKET_DIR="$WORK/s" \\
    setsid containerd --config "$WORK/containerd.toml" </dev/null >>"$WORK/containerd.log" 2>&1 &
echo \$! >"$WORK/containerd.pid"
for _ in \$(seq 1 200); do
    ctr -a "$WORK/containerd.sock" version >/dev/null 2>&1 && exit 0
    kill -0 "\$(cat "$WORK/containerd.pid")" 2>/dev/null || { echo "containerd exited; see $WORK/containerd.log" >&2; exit 1; }
    sleep 0.05
done
echo "containerd did not answer within 10 s" >&2
exit 1
EOF
chmod +x "$WORK/start-containerd.sh"
"$WORK/start-containerd.sh" || die "containerd did not start; see the log below"
say "containerd $(containerd --version | awk '{print $3}') pid $(cat "$WORK/containerd.pid"), socket $WORK/containerd.sock, snapshotter $SNAP"

# ---- images
[ -f examples/build/hello.wasm ] || scripts/build-examples.sh >/dev/null
if [ -x scripts/build-example-images.sh ]; then
    say "building example images with scripts/build-example-images.sh"
    WASMLETCTL="$BIN/wasmletctl" scripts/build-example-images.sh "$WORK/images" >"$WORK/logs/build-example-images.log" 2>&1 ||
        { cat "$WORK/logs/build-example-images.log" >&2; die "scripts/build-example-images.sh failed"; }
elif "$BIN/wasmletctl" image build --help >/dev/null 2>&1; then
    say "scripts/build-example-images.sh missing: building the images with wasmletctl image build"
    build_image() { # build_image GUEST REF FILE [FLAGS...]
        local guest="$1" ref="$2" out="$3"; shift 3
        "$BIN/wasmletctl" image build "examples/build/$guest.wasm" -t "$ref" -o "$WORK/images/$out" -q "$@" \
            >>"$WORK/logs/build-images.log" 2>&1 || { cat "$WORK/logs/build-images.log" >&2; die "wasmletctl image build $guest failed"; }
    }
    for g in hello sleeper membomb echo; do
        build_image "$g" "docker.io/wasmlet/$g:latest" "$g.tar" --entrypoint "/$g.wasm"
    done
    # pause: the sleeper (no argument: sleeps until killed) under another path, so its config
    # digest, which the CRI plugin keys images by, differs from the sleeper's
    build_image sleeper docker.io/wasmlet/pause:latest pause.tar --entrypoint /pause.wasm
    build_image hello docker.io/wasmlet/hello-wasi:latest hello-wasi.tar --entrypoint /hello.wasm --platform wasi
else
    say "neither scripts/build-example-images.sh nor wasmletctl image build: the tests pack the images themselves"
fi

export E2E_WORK="$WORK" E2E_BIN="$BIN" E2E_SNAPSHOTTER="$SNAP" E2E_ROOT="$ROOT" PYTHONDONTWRITEBYTECODE=1
export PATH="$BIN:$PATH"
set +e
if [ "$MODE" = bench ]; then
    python3 "$E2E/bench.py" "$@"
elif [ "$MODE" = repeat ]; then
    python3 "$E2E/repeat.py" "$@"
elif [ "$MODE" = exec ]; then
    export CONTAINERD_ADDRESS="$WORK/containerd.sock" WASMLET_SOCKET="$WORK/wasmlet.sock"
    "$@"
else
    python3 "$E2E/run_tests.py" "$@"
fi
STATUS=$?
set -e
exit "$STATUS"
