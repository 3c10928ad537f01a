#!/usr/bin/env bash
# The one set-up step both README commands (scripts/demo.sh, scripts/test.sh) run first, before
# any cargo build: the Debian packages the build itself needs (a C compiler and linker, the
# Kerberos headers libgssapi builds against, libclang for its bindings), then the kernel-client
# harness's setup (the rest of the host packages, the guest kernels, their initramfs).
# Idempotent: a second run only checks. It never removes a package: a dry run first, and
# `apt-get install --no-remove`, so apt stops rather than take anything away.
# Output goes to target/setup.log (CFS_SETUP_LOG), with one progress line per part.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/quiet.sh
LOG=${CFS_SETUP_LOG:-$PWD/target/setup.log}
mkdir -p "$(dirname "$LOG")"
: >"$LOG"

# What `cargo build` of the workspace needs from the system (the harness's own list, in
# conformance/src/setup.rs, has these too and everything the tests run).
BUILD_PACKAGES=(gcc libc6-dev pkg-config libkrb5-dev libclang-dev ca-certificates git)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${BUILD_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "     build packages missing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quietly "$LOG" "apt-get update" apt-get update
    removes=$(apt-get install -s --no-install-recommends "${missing[@]}" 2>>"$LOG" |
        sed -n 's/^Remv \([^ ]*\).*/\1/p')
    if [[ -n $removes ]]; then
        echo "setup: installing ${missing[*]} would remove: $removes. Setup removes nothing;" \
            "install them by hand and decide about those, then run it again." >&2
        exit 1
    fi
    quietly "$LOG" "apt-get install ${missing[*]}" \
        apt-get install -y --no-remove --no-install-recommends "${missing[@]}"
fi

# moto's S3 server, which tier/tests start as a real S3 endpoint: from PyPI into a venv in the
# user's cache (outside the repo, no system Python touched), only when no moto_server is found.
MOTO_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/cfs/moto
if ! command -v moto_server >/dev/null 2>&1 && [[ ! -x $MOTO_VENV/bin/moto_server ]]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        quietly "$LOG" "apt-get update" apt-get update
        quietly "$LOG" "apt-get install python3-venv" \
            apt-get install -y --no-remove --no-install-recommends python3-venv
    fi
    quietly "$LOG" "moto (S3 server for tier/tests) into $MOTO_VENV" \
        sh -c "python3 -m venv '$MOTO_VENV' && '$MOTO_VENV/bin/pip' install -q 'moto[server]==5.2.1'"
fi

quietly "$LOG" "building the kernel-client harness" cargo build --release -p conformance
quietly "$LOG" "host packages, guest kernels, initramfs (cached after the first run)" \
    "${CARGO_TARGET_DIR:-target}/release/conformance" setup
