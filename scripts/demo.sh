#!/usr/bin/env bash
# The main job for a newcomer: build cfs, run the embedded default (one node, data in
# ./cfs-data, NFS on 127.0.0.1:2049), and watch a stock Linux kernel (in a qemu guest) mount
# it with `mount -t nfs4` and use it. Stops the server when done.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTEN=${CFS_LISTEN:-127.0.0.1:2049}
PORT=${LISTEN##*:}

echo "==== building cfs"
cargo build -q --release -p cfs
echo "==== preparing the kernel-client harness (Debian packages, guest kernel; cached after the first run)"
cargo run -q --release -p conformance -- setup

echo "==== starting: cfs server   (data in ./cfs-data, NFS on $LISTEN)"
target/release/cfs server --listen "$LISTEN" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { echo "cfs server did not start" >&2; exit 1; }
  sleep 0.1
done

if target/release/cfs help put >/dev/null 2>&1; then
  echo "==== the Rust client: cfs put / ls / stat / get"
  target/release/cfs put --server "$LISTEN" README.md /README.md
  target/release/cfs ls --server "$LISTEN" /
  target/release/cfs stat --server "$LISTEN" /README.md
  target/release/cfs get --server "$LISTEN" /README.md /tmp/cfs-demo-readme
  cmp README.md /tmp/cfs-demo-readme && echo "round trip OK"
fi

echo "==== a stock Linux 6.1 kernel in qemu mounts 10.0.2.2:/ (vers=4.1) and runs the POSIX scenario"
cargo run -q --release -p conformance -- run --server "$LISTEN" --kernel bookworm --vers 4.1 --scenario posix
echo "==== done; data stays in ./cfs-data (delete it to start over)"
