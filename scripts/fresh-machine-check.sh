#!/usr/bin/env bash
# Does the README's first command work on a truly fresh Debian machine? Builds a minimal Debian
# root with debootstrap (minbase: apt, bash, coreutils; no compiler, no packages of ours), puts a
# clone of REV (default HEAD) in it, mounts the host's Rust toolchain and crate registry into it
# read-only (all a newcomer's machine has), and runs `./scripts/demo.sh` inside it as root.
# Exit status: the demo's. Everything else it needs, the demo's set-up step must install.
#
#   scripts/fresh-machine-check.sh [REV]      as root; ~25 min on 2 cores (a cold build)
#
# The root lives under /var/tmp and is removed afterwards (CFS_FRESH_KEEP=1 keeps it); the
# debootstrap download is cached in ~/.cache/cfs-fresh so a second run fetches nothing. The
# demo's log files are copied to target/fresh-check/. The root shares the host's network (apt
# needs the package registry) and /dev (qemu, FUSE); nothing else of the host is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
REV=${1:-HEAD}
SHA=$(git rev-parse --verify "$REV^{commit}")
SUITE=bookworm
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cfs-fresh
OUT=${CARGO_TARGET_DIR:-$REPO/target}/fresh-check
mkdir -p "$CACHE" "$OUT"
start=$SECONDS
step() { printf '\n==== [%ss] %s\n' $((SECONDS - start)) "$*"; }

[[ $(id -u) == 0 ]] || { echo "fresh-machine-check: run as root (debootstrap, chroot)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
    step "installing debootstrap (never removes a package)"
    apt-get install -y --no-remove --no-install-recommends debootstrap >"$OUT/apt.log" 2>&1 ||
        { apt-get update >>"$OUT/apt.log" 2>&1 &&
            apt-get install -y --no-remove --no-install-recommends debootstrap >>"$OUT/apt.log" 2>&1; }
fi
# The mirror the host's apt already uses.
MIRROR=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
    grep -v security | head -n1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

ROOT=$(mktemp -d /var/tmp/cfs-fresh.XXXXXX)
MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    if [[ -z ${CFS_FRESH_KEEP:-} ]]; then
        # Only once nothing is mounted under it (a lazy unmount detaches at once).
        if ! grep -q " $ROOT/" /proc/mounts; then rm -rf "$ROOT"; fi
    else
        echo "kept: $ROOT"
    fi
}
trap cleanup EXIT
bind() { # bind SRC DST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    MOUNTS+=("$2")
    if [[ ${3:-} == ro ]]; then mount -o remount,bind,ro "$2"; fi
}

TARBALL=$CACHE/$SUITE-minbase.tgz
if [[ ! -s $TARBALL ]]; then
    step "downloading a minimal Debian $SUITE (once; cached in $TARBALL)"
    debootstrap --variant=minbase --make-tarball="$TARBALL" "$SUITE" "$ROOT/tmp-dl" "$MIRROR" \
        >"$OUT/debootstrap.log" 2>&1 || { tail -n 20 "$OUT/debootstrap.log"; exit 1; }
    rm -rf "${ROOT:?}/tmp-dl"
fi
step "a fresh Debian $SUITE root (debootstrap --variant=minbase) in $ROOT"
debootstrap --variant=minbase --unpack-tarball="$TARBALL" "$SUITE" "$ROOT" "$MIRROR" \
    >>"$OUT/debootstrap.log" 2>&1 || { tail -n 20 "$OUT/debootstrap.log"; exit 1; }
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# How this machine reaches the package registry (its mirror, and apt options such as
# Acquire::Check-Valid-Until for a mirror whose Release files this clock calls expired): a
# machine of this kind has them before anything is installed. Packages: none.
cp /etc/apt/apt.conf.d/* "$ROOT/etc/apt/apt.conf.d/" 2>/dev/null || true
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    cp /etc/apt/sources.list.d/debian.sources "$ROOT/etc/apt/sources.list.d/"
    : >"$ROOT/etc/apt/sources.list"
fi
# How this machine trusts the TLS of the registries it reaches (an egress proxy's CA in the
# system bundle, and pip told to use that bundle): also the machine's, not ours. Without it pip
# refused PyPI's certificate in the root ("self-signed certificate in certificate chain").
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$ROOT/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
fi
cp /etc/pip.conf "$ROOT/etc/pip.conf" 2>/dev/null || true
# ... and the local CAs, which update-ca-certificates (run when a package installs
# ca-certificates) puts back into that bundle.
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    mkdir -p "$ROOT/usr/local/share/ca-certificates"
    cp -r /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
for tool in gcc cc git pkg-config clang; do
    if chroot "$ROOT" /bin/sh -c "command -v $tool" >/dev/null 2>&1; then
        echo "fresh-machine-check: the new root already has $tool; it should not" >&2
        exit 1
    fi
done

step "the source at $SHA, the host's Rust toolchain and crate registry (read-only)"
git clone -q --no-hardlinks "$REPO" "$ROOT/root/cfs"
git -C "$ROOT/root/cfs" checkout -q "$SHA"
RUSTUP=${RUSTUP_HOME:-$HOME/.rustup}
CARGO=${CARGO_HOME:-$HOME/.cargo}
bind "$RUSTUP" "$ROOT/root/.rustup" ro
bind "$CARGO/bin" "$ROOT/root/.cargo/bin" ro
bind "$CARGO/registry" "$ROOT/root/.cargo/registry" ro
mount -t proc proc "$ROOT/proc"
MOUNTS+=("$ROOT/proc")
mount --rbind /sys "$ROOT/sys"
mount --make-rslave "$ROOT/sys"
MOUNTS+=("$ROOT/sys")
mount --rbind /dev "$ROOT/dev"
mount --make-rslave "$ROOT/dev"
MOUNTS+=("$ROOT/dev")

step "inside it: ./scripts/demo.sh (the README's first command)"
rc=0
chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_NET_OFFLINE=true ${CFS_LISTEN:+CFS_LISTEN=$CFS_LISTEN} \
    /bin/bash -c 'cd /root/cfs && ./scripts/demo.sh </dev/null' || rc=$?
cp -r "$ROOT/root/cfs/target/demo/." "$OUT/" 2>/dev/null || true
step "fresh-machine check of $SHA: $([[ $rc == 0 ]] && echo PASSED || echo "FAILED (status $rc)"); logs in $OUT"
exit $rc
