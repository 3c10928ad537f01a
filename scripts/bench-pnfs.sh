#!/bin/bash
# pNFS benchmark (not a test): sequential 1 MiB write and read with the project's Rust client,
# against, in the same run:
#   single  - the single-node default (data in the MDS's own chunk store)
#   mds     - 1 MDS + 3 DSs, client without layouts: every byte goes through the MDS
#   ds1     - 1 MDS + 1 DS with layouts (one mirror)
#   ds3     - 1 MDS + 3 DSs with layouts (two mirrors)
# Prints one JSON line per measurement, then MiB/s and server CPU seconds per GiB with ratios
# against "mds". Usage: scripts/bench-pnfs.sh [SECONDS]   (default 8 per phase)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
cargo build -q --release -p cfs -p client --example load
CFS=$PWD/target/release/cfs
LOAD=$PWD/target/release/examples/load
W=$(mktemp -d /tmp/cfs-bench-pnfs.XXXXXX)
OUT=$W/results.jsonl
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# CPU seconds (utime+stime) of the given pids and their children: the server side of a run.
cpu_of() {
  local t=0
  for p in "$@"; do
    for q in $p $(pgrep -P "$p" 2>/dev/null || true); do
      [ -r /proc/$q/stat ] || continue
      t=$(( t + $(awk '{print $14 + $15}' /proc/$q/stat) ))
    done
  done
  echo "$t"
}

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
    sleep 0.2
  done
  echo "server on port $1 did not come up" >&2; return 1
}

run_load() { # label port pnfs pids...
  local label=$1 port=$2 pnfs=$3; shift 3
  local c0; c0=$(cpu_of "$@")
  "$LOAD" --server 127.0.0.1:$port --seconds "$SECS" --depth 8 --tasks 1 --label "$label" --pnfs "$pnfs" \
    | grep '"seq_' | tee -a "$OUT.$label"
  local c1; c1=$(cpu_of "$@")
  echo "{\"bench\":\"server_cpu\",\"label\":\"$label\",\"ticks\":$(( c1 - c0 ))}" >> "$OUT.$label"
}

# single-node default
mkdir -p $W/single
"$CFS" server --data $W/single --listen 127.0.0.1:25049 2>$W/single.log & PIDS+=($!)
wait_port 25049
run_load single 25049 off ${PIDS[-1]}
kill -TERM ${PIDS[-1]}; wait ${PIDS[-1]} 2>/dev/null || true

cluster() { # name ds port
  "$CFS" cluster up --ds $2 --dir $W/$1 --port $3 >$W/$1.out 2>&1 & PIDS+=($!)
  for _ in $(seq 150); do grep -q "cluster up" $W/$1.out 2>/dev/null && return 0; sleep 0.2; done
  echo "cluster $1 did not come up: $(cat $W/$1.out)" >&2; return 1
}

cluster c3 3 25149
run_load mds 25149 off ${PIDS[-1]}
run_load ds3 25149 on ${PIDS[-1]}
kill -TERM ${PIDS[-1]}; wait ${PIDS[-1]} 2>/dev/null || true

cluster c1 1 25249
run_load ds1 25249 on ${PIDS[-1]}
kill -TERM ${PIDS[-1]}; wait ${PIDS[-1]} 2>/dev/null || true

cat $OUT.* > $OUT
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
res = {}
for r in rows:
    lab = r["label"].split(",pnfs-")[0]
    res.setdefault(lab, {})
    if r["bench"] in ("seq_write", "seq_read"):
        res[lab][r["bench"]] = r
    elif r["bench"] == "server_cpu":
        res[lab]["cpu"] = r["ticks"] / 100.0
base = res.get("mds", {})
print()
print(f"{'config':<8} {'write MiB/s':>12} {'ratio':>7} {'read MiB/s':>11} {'ratio':>7} {'server CPU s/GiB':>17}")
for lab in ("single", "mds", "ds1", "ds3"):
    r = res.get(lab)
    if not r: continue
    w = r["seq_write"]["mib_per_s"]; rd = r["seq_read"]["mib_per_s"]
    gib = (r["seq_write"]["bytes"] + r["seq_read"]["bytes"]) / 2**30
    cpu = r.get("cpu", 0) / gib if gib else 0
    bw = base.get("seq_write", {}).get("mib_per_s"); br = base.get("seq_read", {}).get("mib_per_s")
    print(f"{lab:<8} {w:>12.1f} {w/bw if bw else 0:>6.2f}x {rd:>11.1f} {rd/br if br else 0:>6.2f}x {cpu:>17.2f}")
print("\n(ratios against 'mds': the same cluster with layouts off, all bytes through the MDS; server CPU includes the MDS and every DS)")
PY
echo "raw results: $OUT"
