#!/usr/bin/env bash
# The README's first command: what cfs is, shown on this machine by a stock Linux kernel.
#   1. the embedded default (`cfs server`: one process, data in ./cfs-data), mounted by a
#      stock 6.1 kernel in qemu with `mount -t nfs4`;
#   2. three metadata nodes: the kernel mounts node 1's client address and writes, node 1 is
#      killed -9 mid-write, the workload finishes after a pause (reported);
#   3. erasure coding: files age into RS 4+2 on six data servers and the sid kernel reads them
#      straight from the stripes (bytes per data server shown);
#   4. `cfs cluster up --mds 3 --ds 6` of your own: `cfs admin status` and the web console
#      (a headless Chromium screenshot), left running for you until Enter (or stopped at once
#      when not on a terminal).
# Package manager and compiler output goes to log files under target/demo/, with a progress
# line; each step says in one line what you are looking at. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/quiet.sh
T=${CARGO_TARGET_DIR:-$PWD/target}
LOGS=$T/demo
mkdir -p "$LOGS"
LISTEN=${CFS_LISTEN:-127.0.0.1:2049}
PORT=${LISTEN##*:}
CFS=$T/release/cfs
HARNESS=$T/release/conformance
start=$SECONDS
step() { printf '\n==== [%ss] %s\n' $((SECONDS - start)) "$*"; }
say() { printf '     %s\n' "$*"; }
# A harness run, its case lines and what the host saw (CFS_CONFORMANCE_STEPS) on the terminal,
# the rest (boot, guest output) in a log.
harness() {
    local log=$LOGS/harness-$1.log
    shift
    CFS_BIN=$CFS CFS_CONFORMANCE_STEPS=1 "$HARNESS" run "$@" >"$log" 2>&1 || {
        tail -n 30 "$log" | sed 's/^/     | /'
        say "FAILED; the whole run: $log"
        return 1
    }
    grep -E '^\[|^    ' "$log" | grep -v 'server logs:' | sed 's/^/     /'
}

step "set-up: Debian packages the build needs, the harness, two guest kernels (cached after the first run)"
CFS_SETUP_LOG=$LOGS/setup.log ./scripts/setup.sh

step "building cfs (the first build compiles ~300 crates: several minutes)"
quietly "$LOGS/build.log" "cargo build --release -p cfs -p conformance" \
    cargo build --release -p cfs -p conformance

step "1. the embedded default: cfs server (one process; data in ./cfs-data, NFS on $LISTEN)"
"$CFS" server --listen "$LISTEN" >"$LOGS/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 $SERVER 2>/dev/null || { cat "$LOGS/server.log" >&2; exit 1; }
    sleep 0.1
done
say "the Rust client (cfs put / ls / get) stores README.md and reads it back:"
"$CFS" put --server "$LISTEN" README.md /README.md
"$CFS" ls --server "$LISTEN" / | sed 's/^/     /'
"$CFS" get --server "$LISTEN" /README.md "$LOGS/readme.back"
cmp README.md "$LOGS/readme.back" && say "round trip OK"
step "1. a stock Linux 6.1 kernel in qemu: mount -t nfs4 10.0.2.2:/ (v4.1), the POSIX scenario"
harness posix --server "$LISTEN" --kernel bookworm --vers 4.1 --scenario posix --quick
kill -TERM $SERVER
wait $SERVER 2>/dev/null || true
trap - EXIT

step "2. three metadata nodes: kill -9 the node serving the kernel's mount, mid-write"
say "3 MDS nodes (every metadata shard a Raft group over them) + 3 data servers; the 6.1 kernel"
say "mounts node 1's client address and writes, creates, renames; the host kill -9s that node;"
say "a live node takes the address over and the workload finishes after a pause:"
harness mds-fault --server cfs-cluster-mds3 --kernel bookworm --vers 4.1 --scenario mds-fault \
    --quick

step "3. erasure coding: files age into RS 4+2 on six data servers; a sid kernel reads the stripes"
say "1 MDS + 6 data servers, files left alone 2 s are encoded (4 data + 2 parity shards);"
say "the sid kernel reads them back straight from the data servers that hold the stripes:"
harness encoded --server cfs-cluster-ec6 --kernel sid --vers 4.2 --scenario encoded

CPORT=$((PORT + 100))
DIR=./cfs-cluster
step "4. your own cluster: cfs cluster up --mds 3 --ds 6 (files in $DIR, MDS node 1 on 127.0.0.1:$CPORT)"
"$CFS" cluster up --mds 3 --ds 6 --dir "$DIR" --port $CPORT --encode-after 5 \
    --advertise-host 127.0.0.1 >"$LOGS/cluster.log" 2>&1 &
CLUSTER=$!
trap 'kill -TERM $CLUSTER 2>/dev/null; wait $CLUSTER 2>/dev/null' EXIT
for _ in $(seq 300); do
    grep -q "cluster up" "$LOGS/cluster.log" 2>/dev/null && break
    kill -0 $CLUSTER 2>/dev/null || { tail -n 20 "$LOGS/cluster.log" >&2; exit 1; }
    sleep 0.2
done
grep -v '^\s*$' "$LOGS/cluster.log" | sed 's/^/     /' | head -n 20
CONF=$DIR/mds1.toml
say "the Rust client writes 24 MiB through the cluster (layouts: straight to the data servers):"
head -c $((24 << 20)) /dev/urandom >"$LOGS/24m"
"$CFS" put --server 127.0.0.1:$CPORT "$LOGS/24m" /big.bin
"$CFS" mv --server 127.0.0.1:$CPORT /big.bin /aged.bin
"$CFS" get --server 127.0.0.1:$CPORT /aged.bin "$LOGS/24m.back"
cmp "$LOGS/24m" "$LOGS/24m.back" && say "round trip OK (put, mv, get)"
rm -f "$LOGS/24m" "$LOGS/24m.back"
say "waiting for /aged.bin to age into 4+2 (left alone 5 s) ..."
for _ in $(seq 120); do
    "$CFS" admin status --config "$CONF" 2>/dev/null | grep -qE 'in [1-9][0-9]* files erasure-coded' && break
    sleep 1
done

step "4. cfs admin status: the metadata nodes, redundancy, background jobs, data servers"
"$CFS" admin status --config "$CONF" | sed 's/^/     /'

step "4. the web console (what an operator watches), as headless Chromium renders it"
URL=$(sed -n 's/^console: //p' "$LOGS/cluster.log" | head -n1)
SHOT=$LOGS/console.png
rm -f "$SHOT"
if command -v chromium >/dev/null; then
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1366,1700 \
        --virtual-time-budget=8000 --screenshot="$SHOT" "$URL" >"$LOGS/chromium.log" 2>&1 || true
fi
if [[ -s $SHOT ]]; then
    say "screenshot: $SHOT"
    say "live: ${URL%%#*} (the token: cfs admin token --config $CONF)"
else
    say "no screenshot (see $LOGS/chromium.log)"
    exit 1
fi
if [[ -t 0 ]]; then
    read -r -p "     the cluster runs until you press Enter ... " _ || true
fi
kill -TERM $CLUSTER
wait $CLUSTER 2>/dev/null || true
trap - EXIT
step "done in $((SECONDS - start)) s; data stays in ./cfs-data and $DIR (delete them to start over)"
