#!/usr/bin/env bash
# A 64-bit ARM stand-in device on an x86 machine: Debian arm64 under qemu user emulation,
# reached over SSH like a Raspberry Pi. Runs as root.
#
#   make_arm64_device.sh build  [--rootfs DIR] [--suite S] [--mirror URL]
#   make_arm64_device.sh start  [--rootfs DIR] [--port N] --authorized-key PUBFILE
#                               [--known-hosts FILE] [--hostname NAME] [--log FILE] [--setenv NAME=VALUE]...
#   make_arm64_device.sh stop   [--rootfs DIR]
#   make_arm64_device.sh status [--rootfs DIR]
#   make_arm64_device.sh mirror [--suite S]
#
# build   installs qemu-user-static, debootstrap, binfmt-support (apt-get, only if missing), enables
#         the aarch64 binfmt entry, and makes DIR a Debian rootfs (python3, python3-venv,
#         python3-numpy, openssh-server). The first build runs debootstrap against the mirror apt
#         already uses (a few minutes) and caches the result as a zstd tarball keyed by its inputs;
#         later builds restore the tarball in seconds. An up-to-date DIR is left alone.
# start   gives the device a fresh SSH host key, authorises PUBFILE for root, and starts the
#         rootfs's own aarch64 sshd on 127.0.0.1:PORT in private mount + UTS namespaces (/proc and
#         /dev are mounted there only: they disappear with the device's last process). Prints
#         pid=, port=, known_hosts= lines; --known-hosts FILE also records the host key there.
#         --setenv NAME=VALUE (repeatable) is set in every SSH session (sshd SetEnv), e.g.
#         EDGE_EAS_SYSFS_ROOT=/opt/board to give the device a board's /proc/device-tree/model.
# stop    kills every process whose root directory is DIR (by PID), then unmounts anything still
#         mounted under DIR.
# mirror  prints the mirror build would use: the first apt source (one-line or deb822) for SUITE,
#         else the one for this machine's own Debian release (it carries the other releases too).
#
# --suite bookworm (default: Python 3.11, numpy 1.24) or bullseye (Python 3.9, numpy 1.19, as
# Raspberry Pi OS bullseye ships); each suite is cached on its own.
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not root, 4 aarch64 binaries cannot run here (no binfmt).
# Environment: EDGE_EAS_ARM64_CACHE (tarball cache, default ~/.cache/edge_eas/arm64),
#              EDGE_EAS_ARM64_ROOTFS (default DIR), EDGE_EAS_ARM64_MIRROR (default: from apt sources),
#              EDGE_EAS_APT_DIR (where apt's sources are read, default /etc/apt),
#              EDGE_EAS_OS_RELEASE (this machine's release, default /etc/os-release).
set -euo pipefail

SCRIPT_VERSION=1
ARCH=arm64
VARIANT=minbase
PACKAGES=python3,python3-venv,python3-numpy,openssh-server
HOST_PACKAGES=(qemu-user-static debootstrap binfmt-support zstd)
MARKER=.edge_eas_arm64
SSHD_CONFIG=/etc/ssh/edge_eas_sshd_config   # inside the rootfs
HOST_KEY=/etc/ssh/ssh_host_ed25519_key      # inside the rootfs
CLEAN_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)

E_USAGE=2
E_NOT_ROOT=3
E_NO_BINFMT=4

say() { printf 'make_arm64_device: %s\n' "$*" >&2; }
die() { printf 'make_arm64_device: error: %s\n' "$*" >&2; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ---- arguments ---------------------------------------------------------------------------------
CMD="${1:-}"
case "$CMD" in
    build|start|stop|status|mirror) shift ;;
    -h|--help|help) usage; exit 0 ;;
    "") usage >&2; exit "$E_USAGE" ;;
    *) usage >&2; die "unknown command '$CMD' (build, start, stop, status or mirror)" "$E_USAGE" ;;
esac
ROOTFS="${EDGE_EAS_ARM64_ROOTFS:-/var/lib/edge_eas/arm64-device}"
SUITE=bookworm
MIRROR="${EDGE_EAS_ARM64_MIRROR:-}"
PORT=2222
AUTH_KEY=""
KNOWN_HOSTS=""
DEV_HOSTNAME=arm64-device
LOG=""
SETENV=()
CACHE="${EDGE_EAS_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge_eas/arm64}"
need_value() { [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a value" "$E_USAGE"; }
while [ "$#" -gt 0 ]; do
    case "$1" in
        --rootfs) need_value "$@"; ROOTFS="$2"; shift ;;
        --suite) need_value "$@"; SUITE="$2"; shift ;;
        --mirror) need_value "$@"; MIRROR="$2"; shift ;;
        --port) need_value "$@"; PORT="$2"; shift ;;
        --authorized-key) need_value "$@"; AUTH_KEY="$2"; shift ;;
        --known-hosts) need_value "$@"; KNOWN_HOSTS="$2"; shift ;;
        --hostname) need_value "$@"; DEV_HOSTNAME="$2"; shift ;;
        --log) need_value "$@"; LOG="$2"; shift ;;
        --setenv) need_value "$@"; SETENV+=("$2"); shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" "$E_USAGE" ;;
    esac
    shift
done
[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "--port must be 1-65535" "$E_USAGE"
for kv in ${SETENV[@]+"${SETENV[@]}"}; do
    [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]\"\']*$ ]] || die "--setenv takes NAME=VALUE with no spaces or quotes (got '$kv')" "$E_USAGE"
done
[[ "$DEV_HOSTNAME" =~ ^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$ ]] || die "--hostname must be a plain host name" "$E_USAGE"
APT_DIR="${EDGE_EAS_APT_DIR:-/etc/apt}"
if [ "$CMD" = mirror ]; then
    CMD=mirror_only
else
    [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mounts need it)" "$E_NOT_ROOT"
fi
ROOTFS="$(realpath -m -- "$ROOTFS")"
[ "$ROOTFS" != / ] || die "--rootfs must not be /" "$E_USAGE"

# ---- helpers -----------------------------------------------------------------------------------
# Processes whose root directory is the rootfs: everything started in the chroot.
chroot_pids() {
    local want pid id
    [ -d "$ROOTFS" ] || return 0
    want="$(stat -L -c '%d:%i' -- "$ROOTFS")"
    for pid in /proc/[0-9]*; do
        id="$(stat -L -c '%d:%i' -- "$pid/root" 2>/dev/null)" || continue
        [ "$id" = "$want" ] && echo "${pid#/proc/}"
    done
    return 0
}

# Mount points at or below the rootfs in this mount namespace, deepest first.
mounts_under() {
    awk -v r="$ROOTFS" '{ p = $5; gsub(/\\040/, " ", p); if (p == r || index(p, r "/") == 1) print p }' \
        /proc/self/mountinfo | sort -r
}

ensure_host_packages() {
    local missing=() pkg
    for pkg in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

binfmt_enabled() {
    local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    [ -r "$entry" ] && grep -qx enabled "$entry" && grep -q '^flags:.*F' "$entry"
}

no_binfmt() {
    die "aarch64 programs cannot run here ($1): the kernel's binfmt_misc has no usable qemu-aarch64 entry (in a container: run it privileged, or register qemu-aarch64 with the F flag on the host)" "$E_NO_BINFMT"
}

ensure_binfmt() {
    binfmt_enabled && return 0
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    binfmt_enabled || no_binfmt "update-binfmts --enable qemu-aarch64 did not register it"
}

# Child processes of an emulated program fail with "Exec format error" without binfmt: check one.
check_exec() {
    local out
    if ! out="$("${CLEAN_ENV[@]}" chroot "$ROOTFS" /bin/sh -c 'uname -m' 2>&1)"; then
        case "$out" in *"Exec format error"*) no_binfmt "Exec format error" ;; esac
        die "cannot run programs in $ROOTFS: $out"
    fi
    [ "$out" = aarch64 ] || die "$ROOTFS runs as '$out', not aarch64"
}

# The mirror apt already uses for SUITE (one-line and deb822 sources): never a hard-coded host.
apt_mirror() {
    local f files=()
    [ -f "$APT_DIR/sources.list" ] && files+=("$APT_DIR/sources.list")
    for f in "$APT_DIR"/sources.list.d/*.list "$APT_DIR"/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 0
    awk -v suite="$SUITE" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" &&
                (arches == "" || arches ~ /arm64/) && uris != "" && !found) { split(uris, u, " "); print u[1]; found = 1 }
            types = suites = uris = arches = enabled = ""
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^[ \t]*#/) next
            key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "types") types = val; else if (key == "suites") suites = val
            else if (key == "uris") uris = val; else if (key == "architectures") arches = val
            else if (key == "enabled") enabled = tolower(val)
            next
        }
        /^[ \t]*deb[ \t]/ {
            line = $0; arch = ""
            if (match(line, /\[[^]]*\]/)) {
                opts = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
                if (match(opts, /arch=[^ ]*/)) arch = substr(opts, RSTART + 5, RLENGTH - 5)
            }
            n = split(line, w, /[ \t]+/); i = (w[1] == "") ? 2 : 1
            if (w[i + 2] == suite && (arch == "" || arch ~ /arm64/) && !found) { print w[i + 1]; found = 1 }
        }
        END { flush() }' "${files[@]}"
}

# MIRROR unless given: apt's source for SUITE, else (another Debian release, e.g. bullseye on a
# bookworm host) the mirror apt uses for this machine's own release, which carries the others too.
resolve_mirror() {
    [ -z "$MIRROR" ] || return 0
    MIRROR="$(apt_mirror)"
    if [ -z "$MIRROR" ]; then
        local own
        own="$(sed -n 's/^VERSION_CODENAME=//p' "${EDGE_EAS_OS_RELEASE:-/etc/os-release}" 2>/dev/null | tr -d '"' || true)"
        if [ -n "$own" ] && [ "$own" != "$SUITE" ]; then
            MIRROR="$(SUITE="$own" apt_mirror)"
            [ -z "$MIRROR" ] || say "no apt source names '$SUITE': using the mirror of '$own', $MIRROR"
        fi
    fi
    [ -n "$MIRROR" ] || die "no apt source carries suite '$SUITE' (checked $APT_DIR/sources.list{,.d}): pass --mirror URL"
}

cache_key() {
    printf 'suite=%s\narch=%s\nvariant=%s\npackages=%s\nmirror=%s\nscript=%s\n' \
        "$SUITE" "$ARCH" "$VARIANT" "$PACKAGES" "$MIRROR" "$SCRIPT_VERSION" | sha256sum | cut -c1-16
}

# Refuse to touch a directory we did not make, or one with something mounted inside.
safe_remove() {
    local dir="$1"
    [ -e "$dir" ] || return 0
    [ -f "$dir/$MARKER" ] || [ -f "$dir/debootstrap/debootstrap" ] || [ -z "$(ls -A -- "$dir")" ] \
        || die "$dir exists and was not made by this script: move it away or pick another --rootfs"
    [ -z "$(ROOTFS="$dir" mounts_under)" ] || die "something is still mounted under $dir: run '$0 stop --rootfs $dir'"
    rm -rf --one-file-system -- "$dir"
}

# ---- build -------------------------------------------------------------------------------------
debootstrap_into() {
    local dir="$1" t0=$SECONDS
    say "debootstrap $SUITE/$ARCH from $MIRROR (first stage)"
    debootstrap --arch="$ARCH" --foreign --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$dir" "$MIRROR" \
        >"$dir.log" 2>&1 || die "debootstrap failed (log: $dir.log): $(tail -n 1 "$dir.log")"
    say "first stage done in $((SECONDS - t0)) s; second stage under qemu (a few minutes on 2 cores)"
    # Own mount namespace: whatever the second stage mounts (proc, sys) dies with it.
    "${CLEAN_ENV[@]}" unshare --mount --propagation private -- chroot "$dir" /debootstrap/debootstrap --second-stage \
        >>"$dir.log" 2>&1 || {
        grep -q "Exec format error" "$dir.log" && no_binfmt "Exec format error in the second stage"
        die "debootstrap --second-stage failed (log: $dir.log): $(tail -n 1 "$dir.log")"
    }
    # A cached image must not carry host keys (every device makes its own) nor package files.
    rm -f "$dir"/etc/ssh/ssh_host_*
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*_Packages
    mkdir -p "$dir/run/sshd" "$dir/root/.ssh"
    chmod 700 "$dir/root/.ssh"
    rm -f "$dir.log"
    say "rootfs built in $((SECONDS - t0)) s"
}

cmd_build() {
    ensure_host_packages
    ensure_binfmt
    resolve_mirror
    local key tarball
    key="$(cache_key)"
    tarball="$CACHE/$SUITE-$ARCH-$key.tar.zst"
    if [ -f "$ROOTFS/$MARKER" ] && [ "$(cat "$ROOTFS/$MARKER")" = "$key" ]; then
        say "$ROOTFS is up to date ($key)"
        check_exec
        echo "$ROOTFS"
        return 0
    fi
    [ -z "$(chroot_pids)" ] || die "$ROOTFS is in use (a device is running): '$0 stop --rootfs $ROOTFS' first"
    safe_remove "$ROOTFS"
    mkdir -p "$CACHE" "$(dirname "$ROOTFS")"
    local staging="$ROOTFS.tmp-$$"
    trap 'ROOTFS="$staging" mounts_under | grep -q . || rm -rf --one-file-system -- "$staging" "$staging.log"' EXIT
    mkdir -p "$staging"
    if [ -f "$tarball" ]; then
        local t0=$SECONDS
        tar --zstd --numeric-owner -xpf "$tarball" -C "$staging" || die "cannot unpack $tarball (delete it to rebuild)"
        say "restored $tarball in $((SECONDS - t0)) s"
    else
        debootstrap_into "$staging"
        say "caching it as $tarball"
        tar --zstd --numeric-owner -cpf "$tarball.tmp-$$" -C "$staging" . && mv -f "$tarball.tmp-$$" "$tarball"
    fi
    echo "$key" >"$staging/$MARKER"
    mv -T "$staging" "$ROOTFS"
    trap - EXIT
    check_exec
    echo "$ROOTFS"
}

# ---- start / stop ------------------------------------------------------------------------------
wait_for_sshd() {
    local pid="$1"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && head -c 4 <&3 | grep -q '^SSH-') 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

cmd_start() {
    [ -f "$ROOTFS/$MARKER" ] || die "$ROOTFS is not a built device: run '$0 build --rootfs $ROOTFS' first"
    [ -n "$AUTH_KEY" ] || die "--authorized-key PUBFILE is required (the public key you will log in with)" "$E_USAGE"
    [ -f "$AUTH_KEY" ] || die "--authorized-key $AUTH_KEY does not exist"
    ensure_binfmt
    [ -z "$(chroot_pids)" ] || die "a device is already running in $ROOTFS: '$0 stop --rootfs $ROOTFS' first"
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        die "port $PORT on 127.0.0.1 is taken: pick another --port"
    fi
    check_exec
    # A fresh host key per device: the cached image is the same everywhere.
    rm -f "$ROOTFS$HOST_KEY" "$ROOTFS$HOST_KEY.pub"
    "${CLEAN_ENV[@]}" chroot "$ROOTFS" ssh-keygen -q -t ed25519 -N "" -C "$DEV_HOSTNAME" -f "$HOST_KEY"
    install -d -m 700 "$ROOTFS/root/.ssh"
    install -m 600 "$AUTH_KEY" "$ROOTFS/root/.ssh/authorized_keys"
    mkdir -p "$ROOTFS/run/sshd"
    printf '%s\n' "Port $PORT" "ListenAddress 127.0.0.1" "HostKey $HOST_KEY" "PidFile /run/edge_eas_sshd.pid" \
        "AuthorizedKeysFile /root/.ssh/authorized_keys" "UsePAM no" "StrictModes no" "PasswordAuthentication no" \
        "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" "PubkeyAuthentication yes" \
        "Subsystem sftp internal-sftp" "UseDNS no" "PrintMotd no" "MaxStartups 50" "MaxSessions 50" \
        ${SETENV[@]+"SetEnv ${SETENV[*]}"} >"$ROOTFS$SSHD_CONFIG"
    local log="${LOG:-$ROOTFS.sshd.log}"
    # Private mount + UTS namespaces: /proc and /dev (never /sys: LiteRT segfaults under qemu with
    # the host's) exist only for the device's processes; its own hostname.
    setsid "${CLEAN_ENV[@]}" unshare --mount --uts --propagation private -- /bin/sh -c \
        'mount -t proc proc "$1/proc" && mount --bind /dev "$1/dev" && hostname "$2" && exec chroot "$1" /usr/sbin/sshd -D -e -f "$3"' \
        sh "$ROOTFS" "$DEV_HOSTNAME" "$SSHD_CONFIG" </dev/null >>"$log" 2>&1 &
    local pid=$!
    wait_for_sshd "$pid" || die "sshd did not come up on 127.0.0.1:$PORT: $(tail -n 2 "$log" | tr '\n' ' ')"
    local line
    line="[127.0.0.1]:$PORT $(cut -d' ' -f1-2 "$ROOTFS$HOST_KEY.pub")"
    if [ -n "$KNOWN_HOSTS" ]; then
        mkdir -p "$(dirname "$KNOWN_HOSTS")"
        touch "$KNOWN_HOSTS"
        grep -vF "[127.0.0.1]:$PORT " "$KNOWN_HOSTS" >"$KNOWN_HOSTS.tmp-$$" || true
        echo "$line" >>"$KNOWN_HOSTS.tmp-$$"
        mv -f "$KNOWN_HOSTS.tmp-$$" "$KNOWN_HOSTS"
    fi
    echo "pid=$pid"
    echo "port=$PORT"
    echo "known_hosts=$line"
    say "aarch64 sshd listening on 127.0.0.1:$PORT (log $log); stop it with: $0 stop --rootfs $ROOTFS"
}

cmd_stop() {
    local pids
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids="$(chroot_pids)"
        [ -n "$pids" ] || break
        # shellcheck disable=SC2086  # one PID per word
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    [ -z "$(chroot_pids)" ] || die "processes still running in $ROOTFS: $(chroot_pids | tr '\n' ' ')"
    local m
    for m in $(mounts_under); do
        umount -- "$m" 2>/dev/null || umount -l -- "$m"
    done
    say "stopped the device in $ROOTFS"
}

cmd_mirror_only() {
    resolve_mirror
    echo "$MIRROR"
}

cmd_status() {
    local pids
    pids="$(chroot_pids | tr '\n' ' ')"
    echo "rootfs=$ROOTFS"
    echo "built=$([ -f "$ROOTFS/$MARKER" ] && cat "$ROOTFS/$MARKER" || echo no)"
    echo "pids=${pids% }"
}

"cmd_$CMD"
