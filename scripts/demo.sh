#!/usr/bin/env bash
# The main job for a newcomer: build cfs, run the embedded default (one node, data in
# ./cfs-data, NFS on 127.0.0.1:2049), and watch a stock Linux kernel (in a qemu guest) mount
# it with `mount -t nfs4` and use it. Then the real shape: one MDS and three data servers
# (`cfs cluster up --ds 3`), where the kernel's reads and writes go straight to the data
# servers over pNFS flexfiles, mirrored. Stops everything it started when done.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTEN=${CFS_LISTEN:-127.0.0.1:2049}
PORT=${LISTEN##*:}

echo "==== building cfs (the first build compiles ~300 crates: several minutes; cargo shows each)"
cargo build --release -p cfs -p conformance
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
kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT

CPORT=$((PORT + 100))
echo "==== a pNFS cluster: cfs cluster up --ds 3   (MDS on 127.0.0.1:$CPORT, data servers on the next 3 ports, files in ./cfs-cluster)"
target/release/cfs cluster up --ds 3 --dir ./cfs-cluster --port $CPORT \
  --advertise-host 10.0.2.2 --advertise-host 127.0.0.1 > ./cfs-cluster.out 2>&1 &
CLUSTER=$!
trap 'kill -TERM $CLUSTER 2>/dev/null; wait $CLUSTER 2>/dev/null' EXIT
for _ in $(seq 150); do
  grep -q "cluster up" ./cfs-cluster.out 2>/dev/null && break
  kill -0 $CLUSTER 2>/dev/null || { cat ./cfs-cluster.out >&2; exit 1; }
  sleep 0.2
done
cat ./cfs-cluster.out
echo "==== the Rust client writes 64 MiB with layouts: both mirrors on data servers, nothing through the MDS"
head -c $((64 << 20)) /dev/urandom > /tmp/cfs-demo-64m
target/release/cfs put --server 127.0.0.1:$CPORT /tmp/cfs-demo-64m /big.bin
target/release/cfs get --server 127.0.0.1:$CPORT /big.bin /tmp/cfs-demo-64m.back
cmp /tmp/cfs-demo-64m /tmp/cfs-demo-64m.back && echo "round trip OK"
rm -f /tmp/cfs-demo-64m /tmp/cfs-demo-64m.back
sleep 2   # data-server counters reach the MDS with the next heartbeat
target/release/cfs admin status --config ./cfs-cluster/mds.toml
echo "==== the stock 6.1 kernel writes and reads through the cluster (pnfs=LAYOUT_FLEX_FILES in its mountstats)"
cargo run -q --release -p conformance -- run --server 127.0.0.1:$CPORT --kernel bookworm --vers 4.1 --scenario pnfs
sleep 2
target/release/cfs admin status --config ./cfs-cluster/mds.toml
echo "==== the busiest clients and files, and the metrics Prometheus would scrape"
target/release/cfs admin top --config ./cfs-cluster/mds.toml --count 1
ADMIN=$(sed -n 's/^listen = "\(.*\)"$/\1/p' ./cfs-cluster/mds.toml | sed -n 2p)
curl -s -H "Authorization: Bearer $(target/release/cfs admin token --config ./cfs-cluster/mds.toml)" "http://$ADMIN/metrics" \
  | grep -E '^cfs_(cluster_ds_write_bytes_total|nfs4_operation_duration_seconds_count\{op="LAYOUTGET"|mds_clients)' || true
echo "==== done; data stays in ./cfs-data and ./cfs-cluster (delete them to start over)"
