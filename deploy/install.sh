#!/usr/bin/env bash
# Installs wasmlet on a node, as root:
#   - wasmletd, wasmletctl and containerd-shim-wasmlet-v1 from BINDIR into /usr/local/bin;
#   - systemd/wasmletd.service and wasmletd.socket into /etc/systemd/system, and
#     systemd/wasmlet.sysusers.conf as /etc/sysusers.d/wasmlet.conf; then systemd-sysusers,
#     daemon-reload, enable --now wasmletd.socket wasmletd.service;
#   - the wasmlet runtime into containerd's config.toml if it is not configured yet
#     (deploy/containerd/config-1.x.toml for config format 2, config-2.x.toml for formats 3
#     and 4; a backup is kept), and tells you to restart containerd (or restarts it with
#     --restart-containerd).
# Running it again is safe: unchanged files are left alone, the runtime is added once.
#
# Usage: deploy/install.sh [options] [BINDIR]
#   BINDIR                 where the three binaries are (default: .build/release of this checkout)
#   --dry-run              print what would be done, change nothing
#   --uninstall            stop and remove everything this script installs, and the runtime
#                          block it added to config.toml (the "wasmlet" group stays)
#   --restart-containerd   restart containerd when its config changed (running containers
#                          survive a containerd restart)
#   --restart-wasmletd     restart wasmletd when its binary changed (running guests end with
#                          reason daemon_restarted); otherwise you are told to do it
#   --no-containerd        leave containerd's configuration alone
#   --only-containerd      only add (or with --uninstall remove) the runtime in containerd's
#                          config: no binaries, no units
#   --containerd-config F  containerd's config file (default /etc/containerd/config.toml)
#   --containerd-version N 1 or 2: which snippet a new config file gets (default: asked of
#                          the installed containerd)
#   --root DIR             install under DIR instead of / (for tests and image building): no
#                          systemctl, no systemd-sysusers, no restarts
#   -h, --help
#
# The binaries must run on this node: build them with scripts/build-release.sh (the Swift
# runtime is then linked in; glibc and libsystemd are the node's). The script refuses binaries
# whose libraries are missing here.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SOURCE_ROOT="$(dirname "$HERE")"
BINARIES=(wasmletd wasmletctl containerd-shim-wasmlet-v1)
UNITS=(wasmletd.socket wasmletd.service)
BEGIN_MARK="# BEGIN wasmlet"
END_MARK="# END wasmlet"

bin_dir="$SOURCE_ROOT/.build/release"
units_src="$SOURCE_ROOT/systemd"
snippets_src="$HERE/containerd"
root=""
dry_run=0
uninstall=0
restart_containerd=0
restart_wasmletd=0
configure_containerd=1
only_containerd=0
containerd_config="/etc/containerd/config.toml"
containerd_major=""

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) dry_run=1 ;;
    --uninstall) uninstall=1 ;;
    --restart-containerd) restart_containerd=1 ;;
    --restart-wasmletd) restart_wasmletd=1 ;;
    --no-containerd) configure_containerd=0 ;;
    --only-containerd) only_containerd=1 ;;
    --containerd-config) [ $# -ge 2 ] || die "--containerd-config needs a file"; containerd_config="$2"; shift ;;
    --containerd-config=*) containerd_config="${1#*=}" ;;
    --containerd-version) [ $# -ge 2 ] || die "--containerd-version needs 1 or 2"; containerd_major="$2"; shift ;;
    --containerd-version=*) containerd_major="${1#*=}" ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root="${2%/}"; shift ;;
    --root=*) root="${1#*=}"; root="${root%/}" ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) bin_dir="$1" ;;
    esac
    shift
done
case "$containerd_major" in "" | 1 | 2) ;; *) die "--containerd-version must be 1 or 2" ;; esac
[ "$only_containerd" = 1 ] && [ "$configure_containerd" = 0 ] && die "--only-containerd and --no-containerd exclude each other"
if [ -n "$root" ]; then
    [ -d "$root" ] || die "--root $root: no such directory"
    root="$(cd "$root" && pwd)"
fi

prefix="$root/usr/local/bin"
unit_dir="$root/etc/systemd/system"
sysusers_file="$root/etc/sysusers.d/wasmlet.conf"
config_file="$root$containerd_config"
live=1 # act on the running system (systemctl, sysusers, restarts)
[ -n "$root" ] && live=0

# run CMD...: runs it, or prints it under --dry-run.
run() {
    if [ "$dry_run" = 1 ]; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# install_file SRC DEST MODE: copies through a temporary file and a rename (a running binary is
# replaced, not overwritten); says whether DEST changed. Returns 0 if it changed, 1 if not.
install_file() {
    local src="$1" dest="$2" mode="$3"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        say "unchanged  $dest"
        return 1
    fi
    if [ "$dry_run" = 1 ]; then
        say "would install $src -> $dest (mode $mode)"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    install -m "$mode" "$src" "$dest.wasmlet-new"
    mv -f "$dest.wasmlet-new" "$dest"
    say "installed  $dest"
    return 0
}

remove_file() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        run rm -f "$1"
        [ "$dry_run" = 1 ] || say "removed    $1"
    fi
}

systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# The config format of a containerd config file: its `version = N`, 1 when there is none.
config_format() {
    local line
    line="$(grep -E '^[[:space:]]*version[[:space:]]*=[[:space:]]*[0-9]+' "$1" | head -n 1 || true)"
    if [ -z "$line" ]; then echo 1; else echo "${line//[!0-9]/}"; fi
}

# The major version of the installed containerd, or nothing.
installed_containerd_major() {
    command -v containerd >/dev/null || return 0
    containerd --version 2>/dev/null | awk '{ v = $3; sub(/^v/, "", v); split(v, p, "."); print p[1] }'
}

# section SNIPPET NAME: the lines between "#>> NAME" and "#<< NAME" of a snippet file.
section() {
    sed -n "/^#>> $2\$/,/^#<< $2\$/{/^#[><][><] /d;p}" "$1"
}

# A table for runtime NAME in any quoting: runtimes.NAME], runtimes."NAME".options], ...
has_runtime() {
    grep -Eq "^[[:space:]]*\[.*runtimes\.[\"']?$2[\"']?[].]" "$1"
}

# Checks a candidate config with `containerd config dump` when the installed containerd reads
# its format (format 2 is containerd 1.x's, 3 and 4 are 2.x's; 2.x converts 2 itself).
validate_config() {
    local major format output
    major="$(installed_containerd_major)"
    [ -n "$major" ] || return 0
    format="$(config_format "$1")"
    if [ "$major" = 1 ] && [ "$format" != 2 ]; then
        warn "not checked with containerd config dump: containerd 1.x cannot read config format $format"
        return 0
    fi
    if ! output="$(containerd --config "$1" config dump 2>&1 >/dev/null)"; then
        die "containerd rejects the new configuration, $config_file is unchanged:
$output"
    fi
}

# Writes CONTENT-FILE as config.toml: validate, back up the old one, rename into place.
replace_config() {
    local candidate="$1" backup
    validate_config "$candidate"
    if [ -f "$config_file" ]; then
        backup="$config_file.wasmlet-backup-$(date +%Y%m%d-%H%M%S)"
        cp -p "$config_file" "$backup"
        say "backed up  $config_file -> $backup"
        chmod --reference="$config_file" "$candidate"
    else
        chmod 0644 "$candidate"
    fi
    mkdir -p "$(dirname "$config_file")"
    mv -f "$candidate" "$config_file"
}

containerd_changed=0

configure_containerd_runtime() {
    local snippet format block candidate
    if [ -f "$config_file" ]; then
        if has_runtime "$config_file" wasmlet; then
            say "unchanged  $config_file (a wasmlet runtime is already configured)"
            return
        fi
        format="$(config_format "$config_file")"
        # Format 4 (containerd 2.4) moves only server settings: its CRI tables are format 3's.
        case "$format" in
        2) snippet="$snippets_src/config-1.x.toml" ;;
        3 | 4) snippet="$snippets_src/config-2.x.toml" ;;
        1) die "$config_file uses containerd config format 1 (no \"version = 2\" line, containerd 1.x); this script edits formats 2 (containerd 1.x), 3 and 4 (2.x). Convert it first (containerd config migrate), or add the tables of $snippets_src/config-1.x.toml by hand." ;;
        *) die "$config_file uses containerd config format $format; this script edits formats 2 (containerd 1.x), 3 and 4 (2.x). Convert it first (containerd config migrate), or add the tables of $snippets_src/config-2.x.toml by hand if its CRI runtime tables are still under \"io.containerd.cri.v1.runtime\"." ;;
        esac
        if grep -Eq '^[[:space:]]*disabled_plugins[[:space:]]*=.*"(cri|io\.containerd\.grpc\.v1\.cri)"' "$config_file"; then
            warn "$config_file disables the CRI plugin (disabled_plugins), as Docker's containerd package does; Kubernetes cannot use this containerd until it is removed from that list"
        fi
        block="$(mktemp)"
        {
            echo ""
            echo "$BEGIN_MARK: added by deploy/install.sh; \`install.sh --uninstall\` removes this block"
            if ! has_runtime "$config_file" runc; then
                # Defining any runtime removes containerd's implicit runc, the default runtime.
                section "$snippet" runc
                echo ""
            fi
            section "$snippet" runtime
            echo "$END_MARK"
        } >"$block"
        if [ "$dry_run" = 1 ]; then
            say "would append to $config_file (after a backup):"
            sed 's/^/    /' "$block"
            rm -f "$block"
            containerd_changed=1
            return
        fi
        candidate="$(mktemp "$config_file.wasmlet-XXXXXX")"
        cat "$config_file" "$block" >"$candidate"
        rm -f "$block"
        replace_config "$candidate"
        say "configured $config_file (appended the wasmlet runtime)"
    else
        local major="${containerd_major:-$(installed_containerd_major)}"
        case "$major" in
        1) snippet="$snippets_src/config-1.x.toml" ;;
        2) snippet="$snippets_src/config-2.x.toml" ;;
        *)
            warn "containerd is not installed and --containerd-version is not given: $config_file not written"
            return
            ;;
        esac
        if [ "$dry_run" = 1 ]; then
            say "would create $config_file from $snippet"
            containerd_changed=1
            return
        fi
        mkdir -p "$(dirname "$config_file")"
        candidate="$(mktemp "$config_file.wasmlet-XXXXXX")"
        {
            echo "$BEGIN_MARK: deploy/install.sh created this file; \`install.sh --uninstall\` removes it"
            cat "$snippet"
            echo "$END_MARK"
        } >"$candidate"
        replace_config "$candidate"
        say "created    $config_file from $(basename "$snippet")"
    fi
    containerd_changed=1
}

unconfigure_containerd_runtime() {
    [ -f "$config_file" ] || return 0
    grep -qF "$BEGIN_MARK" "$config_file" || {
        has_runtime "$config_file" wasmlet &&
            warn "$config_file has a wasmlet runtime that this script did not add; left as it is"
        return 0
    }
    if [ "$dry_run" = 1 ]; then
        say "would remove the lines from \"$BEGIN_MARK\" to \"$END_MARK\" from $config_file (after a backup)"
        containerd_changed=1
        return
    fi
    local candidate backup
    candidate="$(mktemp "$config_file.wasmlet-XXXXXX")"
    sed "/^$BEGIN_MARK/,/^$END_MARK\$/d" "$config_file" >"$candidate"
    # Drop the blank line the block was appended after.
    sed -i -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$candidate"
    if ! grep -Eq '^[[:space:]]*[^#[:space:]]' "$candidate"; then
        # Nothing but comments and blank lines left: the file was ours.
        backup="$config_file.wasmlet-backup-$(date +%Y%m%d-%H%M%S)"
        mv -f "$config_file" "$backup"
        rm -f "$candidate"
        say "removed    $config_file (it was created by this script; saved as $backup)"
    else
        replace_config "$candidate"
        say "configured $config_file (removed the wasmlet runtime)"
    fi
    containerd_changed=1
}

after_containerd_change() {
    [ "$containerd_changed" = 1 ] || return 0
    if [ "$live" = 1 ] && [ "$restart_containerd" = 1 ]; then
        run systemctl restart containerd
        [ "$dry_run" = 1 ] || say "restarted containerd"
    else
        say "restart containerd to apply its new configuration: systemctl restart containerd (running containers keep running)"
    fi
}

check_binaries() {
    local name missing
    [ -d "$bin_dir" ] || die "no directory $bin_dir (build with: scripts/build-release.sh; or pass BINDIR)"
    for name in "${BINARIES[@]}"; do
        { [ -f "$bin_dir/$name" ] && [ -x "$bin_dir/$name" ]; } || die "$bin_dir/$name is missing or not executable"
        if command -v ldd >/dev/null; then
            missing="$(ldd "$bin_dir/$name" 2>/dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')"
            [ -z "$missing" ] || die "$bin_dir/$name needs libraries this node lacks: $missing(build with scripts/build-release.sh, which links the Swift runtime in; libsystemd0 must be installed)"
        fi
    done
    [ -f "$units_src/wasmletd.service" ] || die "no $units_src/wasmletd.service (run this script from a wasmlet checkout or the installer image)"
}

do_install() {
    local name unit binary_changed=0 active=0
    check_binaries
    if [ "$live" = 1 ] && [ "$dry_run" = 1 ] && ! systemd_running; then
        warn "systemd is not running here: a real run would stop at this point"
    fi
    if [ "$live" = 1 ] && [ "$dry_run" = 0 ]; then
        systemd_running || die "systemd is not running here; use --root DIR to only place the files"
        systemctl is-active --quiet wasmletd.service && active=1
    fi

    for name in "${BINARIES[@]}"; do
        if install_file "$bin_dir/$name" "$prefix/$name" 0755 && [ "$name" = wasmletd ]; then
            binary_changed=1
        fi
    done
    for unit in "${UNITS[@]}"; do
        install_file "$units_src/$unit" "$unit_dir/$unit" 0644 || true
    done
    install_file "$units_src/wasmlet.sysusers.conf" "$sysusers_file" 0644 || true

    if [ "$live" = 1 ]; then
        run systemd-sysusers "$sysusers_file"
        run systemctl daemon-reload
        run systemctl enable --now "${UNITS[@]}"
        if [ "$binary_changed" = 1 ] && [ "$active" = 1 ]; then
            if [ "$restart_wasmletd" = 1 ]; then
                run systemctl restart wasmletd.service
            else
                say "wasmletd was updated while running; restart it when convenient: systemctl restart wasmletd (running guests end)"
            fi
        fi
    fi

    if [ "$configure_containerd" = 1 ]; then
        configure_containerd_runtime
        after_containerd_change
    fi
    say "done. Let Kubernetes schedule wasmlet pods here: kubectl label node $(hostname) wasmlet.dev/enabled=true"
}

do_uninstall() {
    local name unit
    if [ "$live" = 1 ]; then
        if [ "$dry_run" = 0 ] && ! systemd_running; then
            die "systemd is not running here; use --root DIR to only remove the files"
        fi
        run systemctl disable --now "${UNITS[@]}" || true
    fi
    for unit in "${UNITS[@]}"; do remove_file "$unit_dir/$unit"; done
    remove_file "$sysusers_file"
    if [ "$live" = 1 ]; then run systemctl daemon-reload; fi
    for name in "${BINARIES[@]}"; do remove_file "$prefix/$name"; done
    if [ "$configure_containerd" = 1 ]; then
        unconfigure_containerd_runtime
        after_containerd_change
    fi
    say "done. Pods of RuntimeClass wasmlet can no longer start here; remove the node label: kubectl label node $(hostname) wasmlet.dev/enabled-"
}

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or with --dry-run)"
fi
if [ "$only_containerd" = 1 ]; then
    if [ "$uninstall" = 1 ]; then unconfigure_containerd_runtime; else configure_containerd_runtime; fi
    after_containerd_change
elif [ "$uninstall" = 1 ]; then
    do_uninstall
else
    do_install
fi
