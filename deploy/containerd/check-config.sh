#!/usr/bin/env bash
# Checks the containerd snippets and install.sh's merging of them against the real containerd
# (1.6 on Debian 12), as root:
#   - config-1.x.toml merged by `install.sh --only-containerd --root DIR` into
#       (a) no config at all (the snippet becomes the file),
#       (b) the output of `containerd config default`,
#       (c) this machine's /etc/containerd/config.toml (Debian's), if there is one;
#     for each, a private containerd is started on the result and must report the CRI plugin
#     "ok" in `ctr plugins ls` and log a CRI config holding the wasmlet runtime with its
#     annotation patterns and runc as the default runtime;
#   - a second install.sh run leaves the file unchanged; --uninstall restores the original
#     byte for byte (or removes the file it created);
#   - a negative control: the runtime table alone (no runc) must make the CRI plugin fail, so
#     the check can tell a broken config from a good one;
#   - config-2.x.toml: TOML syntax and table layout only (python3 tomllib), as no containerd
#     2.x is installed here; install.sh's merge of it into version-3 and version-4 files (and
#     --uninstall of the latter), and its refusal of an unknown format.
# Each containerd gets its own root, state and socket under a temporary directory (CNI config
# and the opt plugin's directory too), is stopped by its pid, and the directory is removed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTALL="$HERE/../install.sh"
failures=0
pids=()

die() { echo "check-config: $*" >&2; exit 1; }
pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; failures=$((failures + 1)); }

[ "$(id -u)" = 0 ] || die "run as root (it starts containerd)"
command -v containerd >/dev/null || die "containerd is not installed (apt-get install containerd)"
command -v ctr >/dev/null || die "ctr is not installed"
command -v python3 >/dev/null || die "python3 is needed for the 2.x syntax check"

work="$(mktemp -d /tmp/wlcfg-XXXXXX)"
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# run_copy SRC DIR: SRC with every host path containerd would create things in moved into DIR.
run_copy() {
    local src="$1" dir="$2" dst="$2/run.toml"
    sed -e "s#\"/opt/containerd\"#\"$dir/opt\"#" \
        -e "s#\"/var/lib/containerd/opt\"#\"$dir/opt\"#" \
        -e "s#\"/etc/cni/net.d\"#\"$dir/cni\"#" "$src" >"$dst"
    grep -q 'io\.containerd\.internal\.v1\.opt' "$dst" ||
        printf '\n[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' "$dir" >>"$dst"
    grep -q 'io\.containerd\.grpc\.v1\.cri"\.cni\]' "$dst" ||
        printf '\n[plugins."io.containerd.grpc.v1.cri".cni]\n  conf_dir = "%s/cni"\n' "$dir" >>"$dst"
    echo "$dst"
}

# start CONFIG DIR: starts containerd; sets $sock and $pid.
start() {
    local config="$1" dir="$2"
    sock="$dir/containerd.sock"
    containerd --config "$config" --root "$dir/root" --state "$dir/state" --address "$sock" \
        >"$dir/containerd.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        if [ -S "$sock" ] && ctr -a "$sock" version >/dev/null 2>&1; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "containerd did not come up; its log:" >&2
    cat "$dir/containerd.log" >&2
    return 1
}

stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cri_status() { ctr -a "$sock" plugins ls | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $4 }'; }

# check_loads NAME CONFIG: containerd on CONFIG must load CRI with the wasmlet runtime.
check_loads() {
    local name="$1" config="$2" dir="$work/$1" status
    mkdir -p "$dir"
    start "$(run_copy "$config" "$dir")" "$dir" || { fail "$name: containerd did not start"; return; }
    status="$(cri_status)"
    local log="$dir/containerd.log"
    if [ "$status" != ok ]; then
        fail "$name: CRI plugin status \"$status\": $(grep -o 'failed to load plugin io.containerd.grpc.v1.cri.*' "$log" || true)"
    elif ! grep -q 'wasmlet:{Type:io.containerd.wasmlet.v1 .*PodAnnotations:\[wasmlet.dev/\*\] ContainerAnnotations:\[wasmlet.dev/\*\]' "$log"; then
        fail "$name: CRI loaded, but its logged config has no wasmlet runtime with the annotation patterns"
    elif ! grep -q 'DefaultRuntimeName:runc ' "$log" || ! grep -q 'runc:{Type:io.containerd.runc.v2 ' "$log"; then
        fail "$name: CRI loaded, but runc is not the defined default runtime"
    else
        pass "$name: containerd $(containerd --version | awk '{ print $3 }') loads CRI \"ok\" with runtimes.wasmlet (io.containerd.wasmlet.v1, pod/container annotations wasmlet.dev/*) and runc as default"
    fi
    stop
}

# merge_case NAME [ORIGINAL]: install.sh merges config-1.x.toml into ORIGINAL (none if not
# given), containerd loads it, install.sh again changes nothing, --uninstall undoes it.
merge_case() {
    local name="$1" original="${2:-}" root="$work/$1-root" config
    mkdir -p "$root/etc/containerd"
    config="$root/etc/containerd/config.toml"
    [ -n "$original" ] && cp "$original" "$config"
    "$INSTALL" --only-containerd --root "$root" --containerd-version 1 >"$work/$name-install.log" 2>&1 ||
        { fail "$name: install.sh failed: $(cat "$work/$name-install.log")"; return; }
    check_loads "$name" "$config"
    cp "$config" "$work/$name-merged.toml"
    "$INSTALL" --only-containerd --root "$root" >"$work/$name-again.log" 2>&1
    if cmp -s "$config" "$work/$name-merged.toml" && grep -q 'already configured' "$work/$name-again.log"; then
        pass "$name: a second install.sh run leaves config.toml unchanged"
    else
        fail "$name: a second install.sh run changed config.toml: $(cat "$work/$name-again.log")"
    fi
    "$INSTALL" --only-containerd --uninstall --root "$root" >"$work/$name-uninstall.log" 2>&1 ||
        { fail "$name: install.sh --uninstall failed: $(cat "$work/$name-uninstall.log")"; return; }
    if [ -n "$original" ]; then
        if cmp -s "$config" "$original"; then
            pass "$name: --uninstall restores the original config.toml byte for byte"
        else
            fail "$name: --uninstall left a different config.toml: $(diff "$original" "$config" | head -20)"
        fi
    elif [ ! -e "$config" ]; then
        pass "$name: --uninstall removes the config.toml it created"
    else
        fail "$name: --uninstall left $config behind"
    fi
}

echo "== containerd 1.x: $HERE/config-1.x.toml"
merge_case fresh
containerd config default >"$work/default.toml"
merge_case default "$work/default.toml"
if [ -f /etc/containerd/config.toml ]; then
    cp /etc/containerd/config.toml "$work/system.toml"
    merge_case system "$work/system.toml"
fi

echo "== negative control: the runtime table alone, without runc"
mkdir -p "$work/negative"
{
    echo 'version = 2'
    sed -n '/^#>> runtime$/,/^#<< runtime$/p' "$HERE/config-1.x.toml"
} >"$work/negative/config.toml"
if start "$(run_copy "$work/negative/config.toml" "$work/negative")" "$work/negative"; then
    status="$(cri_status)"
    if [ "$status" = error ] && grep -q 'no corresponding runtime configured' "$work/negative/containerd.log"; then
        pass "negative control: without runc the CRI plugin fails to load (\"$status\"), as the check expects"
    else
        fail "negative control: CRI status \"$status\" without runc; the check cannot tell good from bad"
    fi
    stop
else
    fail "negative control: containerd did not start"
fi

echo "== containerd 2.x: $HERE/config-2.x.toml (syntax and layout only)"
if python3 - "$HERE/config-2.x.toml" <<'EOF'; then
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
assert config["version"] == 3, "version must be 3"
cri = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
assert cri["default_runtime_name"] == "runc"
assert cri["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
wasmlet = cri["runtimes"]["wasmlet"]
assert wasmlet["runtime_type"] == "io.containerd.wasmlet.v1"
assert wasmlet["pod_annotations"] == ["wasmlet.dev/*"]
assert wasmlet["container_annotations"] == ["wasmlet.dev/*"]
assert set(config["plugins"]) == {"io.containerd.cri.v1.runtime"}
EOF
    pass "config-2.x.toml parses (tomllib) with version 3, runc as default, runtimes.wasmlet with its annotations"
else
    fail "config-2.x.toml"
fi
# install.sh's merge into a 2.x-style file must stay valid TOML with both runtimes.
mkdir -p "$work/v3/etc/containerd"
printf 'version = 3\n\n[plugins."io.containerd.cri.v1.images".pinned_images]\n  sandbox = "registry.k8s.io/pause:3.10"\n' \
    >"$work/v3/etc/containerd/config.toml"
if "$INSTALL" --only-containerd --root "$work/v3" >"$work/v3.log" 2>&1 &&
    python3 - "$work/v3/etc/containerd/config.toml" <<'EOF'; then
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
runtimes = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
assert runtimes["wasmlet"]["runtime_type"] == "io.containerd.wasmlet.v1"
assert runtimes["runc"]["runtime_type"] == "io.containerd.runc.v2"
assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"].startswith("registry.k8s.io/pause")
EOF
    pass "install.sh merges config-2.x.toml's tables into a version-3 file as valid TOML"
else
    fail "install.sh merge into a version-3 file: $(cat "$work/v3.log")"
fi

# containerd 2.4 writes format 4; its CRI runtime tables are format 3's, so it takes the 2.x
# snippet, and --uninstall must give the file back unchanged.
mkdir -p "$work/v4/etc/containerd"
printf 'version = 4\n\n[plugins."io.containerd.cri.v1.images".pinned_images]\n  sandbox = "registry.k8s.io/pause:3.10"\n' \
    >"$work/v4/etc/containerd/config.toml"
cp "$work/v4/etc/containerd/config.toml" "$work/v4-original.toml"
if "$INSTALL" --only-containerd --root "$work/v4" >"$work/v4.log" 2>&1 &&
    python3 - "$work/v4/etc/containerd/config.toml" <<'EOF'; then
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
assert config["version"] == 4
runtimes = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]
assert runtimes["wasmlet"]["runtime_type"] == "io.containerd.wasmlet.v1"
assert runtimes["runc"]["runtime_type"] == "io.containerd.runc.v2"
assert "io.containerd.grpc.v1.cri" not in config["plugins"]
EOF
    pass "install.sh merges config-2.x.toml's tables into a version-4 file as valid TOML"
else
    fail "install.sh merge into a version-4 file: $(cat "$work/v4.log")"
fi
if "$INSTALL" --only-containerd --uninstall --root "$work/v4" >"$work/v4-uninstall.log" 2>&1 &&
    cmp -s "$work/v4/etc/containerd/config.toml" "$work/v4-original.toml"; then
    pass "install.sh --uninstall restores a version-4 file byte for byte"
else
    fail "install.sh --uninstall of a version-4 file: $(cat "$work/v4-uninstall.log")"
fi
# A format it does not know is refused, unchanged, with the 2.x snippet named for a manual merge.
mkdir -p "$work/v5/etc/containerd"
printf 'version = 5\n' >"$work/v5/etc/containerd/config.toml"
if "$INSTALL" --only-containerd --root "$work/v5" >"$work/v5.log" 2>&1; then
    fail "install.sh accepted config format 5: $(cat "$work/v5.log")"
elif grep -q 'formats 2 (containerd 1.x), 3 and 4 (2.x)' "$work/v5.log" &&
    grep -q 'config-2\.x\.toml' "$work/v5.log" && ! grep -q 'config-1\.x\.toml' "$work/v5.log" &&
    [ "$(cat "$work/v5/etc/containerd/config.toml")" = "version = 5" ]; then
    pass "install.sh refuses config format 5, leaves the file alone and points at config-2.x.toml"
else
    fail "install.sh on config format 5: unexpected message or changed file: $(cat "$work/v5.log")"
fi

if [ "$failures" = 0 ]; then
    echo "check-config: all checks passed"
else
    echo "check-config: $failures check(s) failed" >&2
    exit 1
fi
