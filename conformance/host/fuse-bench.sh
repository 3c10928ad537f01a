#!/bin/bash
# fuse-bench.sh: numbers, not a test. One cluster (1 MDS + 3 data servers, each with a
# libfabric endpoint), then in the same run:
#   - cfs mount (FUSE) with the data servers over TCP, and over the fabric provider (RMA);
#   - the Rust client library directly (client/examples/load), over TCP and over the fabric;
# each: sequential write (then fsync) and read MiB/s, small-file creates/s and stats/s
# (16 workers), and the CPU seconds per GiB moved of the client process and of the data
# servers (summed), from /proc.
#
#   conformance/host/fuse-bench.sh        (env: PROVIDER=tcp, MIB=512, FILES=4000, PORT=26049)
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CFS=${CFS_BIN:-$ROOT/target/release/cfs}
LOAD=${LOAD_BIN:-$ROOT/target/release/examples/load}
PROVIDER=${PROVIDER:-tcp}
MIB=${MIB:-512}
FILES=${FILES:-4000}
PORT=${PORT:-26049}
STATE=$(mktemp -d /tmp/cfs-fuse-bench.XXXXXX)
MNT=$STATE/mnt
mkdir -p "$MNT"
UP=
cleanup() {
  "$CFS" umount "$MNT" 2>/dev/null
  [ -n "$UP" ] && kill "$UP" 2>/dev/null && wait "$UP" 2>/dev/null
  rm -rf "$STATE"
}
trap cleanup EXIT
[ -x "$LOAD" ] || { echo "build the load example: cargo build --release -p client --example load"; exit 2; }

"$CFS" cluster up --ds 3 --dir "$STATE/cluster" --port $PORT --fabric "$PROVIDER" > "$STATE/up.log" 2>&1 &
UP=$!
for _ in $(seq 150); do grep -q "cfs cluster up: MDS on" "$STATE/up.log" && break; sleep 0.2; done
SERVER=127.0.0.1:$PORT

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ds_ticks() {
  t=0
  for p in $(awk '$1 ~ /^ds/ { print $2 }' "$STATE/cluster/pids"); do t=$((t + $(ticks $p))); done
  echo $t
}
daemon_pid() { pgrep -n -f -- "mount --foreground .* $MNT\$"; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", n / (b - a) }'; }
# CPU seconds per GiB: ticks (1/100 s) over MiB
per_gib() { awk -v t="$1" -v m="$2" 'BEGIN { printf "%.2f", t / 100 / (m / 1024) }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

meta() { # meta create|stat DIR
  python3 - "$1" "$2" "$FILES" <<'PY'
import os, sys, threading, time
op, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def work(t):
    for i in range(t, n, 16):
        p = os.path.join(d, "f%d" % i)
        if op == "create":
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
        else:
            os.stat(p)
ts = [threading.Thread(target=work, args=(t,)) for t in range(16)]
t0 = time.time()
for t in ts: t.start()
for t in ts: t.join()
print("%.0f" % (n / (time.time() - t0)))
PY
}

declare -A R
fuse_run() { # fuse_run LABEL [--fabric P]
  local label=$1; shift
  "$CFS" mount --server $SERVER "$@" --log "$STATE/mount-$label.log" "$MNT" || { echo "mount failed"; exit 1; }
  local pid; pid=$(daemon_pid)
  local c0 d0 t0 t1
  c0=$(ticks $pid); d0=$(ds_ticks); t0=$(now)
  dd if=/dev/zero of="$MNT/seq" bs=1M count=$MIB conv=fsync status=none
  t1=$(now)
  R[$label,write]=$(rate $MIB $t0 $t1)
  R[$label,wcpu]=$(per_gib $(($(ticks $pid) - c0)) $MIB)
  R[$label,wds]=$(per_gib $(($(ds_ticks) - d0)) $MIB)
  "$CFS" umount "$MNT"; drop
  "$CFS" mount --server $SERVER "$@" --log "$STATE/mount-$label.log" "$MNT"
  pid=$(daemon_pid)
  c0=$(ticks $pid); d0=$(ds_ticks); t0=$(now)
  dd if="$MNT/seq" of=/dev/null bs=1M status=none
  t1=$(now)
  R[$label,read]=$(rate $MIB $t0 $t1)
  R[$label,rcpu]=$(per_gib $(($(ticks $pid) - c0)) $MIB)
  R[$label,rds]=$(per_gib $(($(ds_ticks) - d0)) $MIB)
  rm -f "$MNT/seq"
  mkdir "$MNT/meta-$label"
  R[$label,create]=$(meta create "$MNT/meta-$label")
  "$CFS" umount "$MNT"; drop
  "$CFS" mount --server $SERVER "$@" --log "$STATE/mount-$label.log" "$MNT"
  R[$label,stat]=$(meta stat "$MNT/meta-$label")
  rm -rf "$MNT/meta-$label"
  "$CFS" umount "$MNT"
  sed 's/\x1b\[[0-9;]*m//g' "$STATE/mount-$label.log" | grep -o 'fabric_bytes=[0-9]*' | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }' > "$STATE/fb-$label"
}

lib_run() { # lib_run LABEL [--fabric P]
  local label=$1; shift
  local d0 out
  d0=$(ds_ticks)
  out=$( { /usr/bin/time -f "CPU %U %S" "$LOAD" --server $SERVER --seconds 6 --depth 8 --tasks 16 --phases data "$@"; } 2>&1)
  local dds=$(($(ds_ticks) - d0))
  local bytes; bytes=$(echo "$out" | grep -o '"bytes":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { printf "%d", s }')
  local mib=$((bytes / 1048576))
  R[$label,write]=$(echo "$out" | grep '"seq_write"' | grep -o '"mib_per_s":[0-9.]*' | cut -d: -f2)
  R[$label,read]=$(echo "$out" | grep '"seq_read"' | grep -o '"mib_per_s":[0-9.]*' | cut -d: -f2)
  local cpu; cpu=$(echo "$out" | awk '/^CPU/ { printf "%d", ($2 + $3) * 100 }')
  R[$label,wcpu]=$(per_gib "$cpu" $mib); R[$label,rcpu]=-
  R[$label,wds]=$(per_gib $dds $mib); R[$label,rds]=-
  out=$("$LOAD" --server $SERVER --seconds 4 --tasks 16 --phases meta "$@" 2>&1)
  R[$label,create]=$(echo "$out" | grep '"create"' | grep -o '"ops_per_s":[0-9.]*' | cut -d: -f2)
  R[$label,stat]=$(echo "$out" | grep '"stat"' | grep -o '"ops_per_s":[0-9.]*' | cut -d: -f2)
}

fuse_run fuse-tcp
fuse_run fuse-fabric --fabric "$PROVIDER"
lib_run lib-tcp
lib_run lib-fabric --fabric "$PROVIDER"

printf '\n%-12s %10s %10s %10s %10s %12s %12s %12s %12s\n' "" "write MiB/s" "read MiB/s" "creates/s" "stats/s" "cli cpu/GiB w" "ds cpu/GiB w" "cli cpu/GiB r" "ds cpu/GiB r"
for l in fuse-tcp fuse-fabric lib-tcp lib-fabric; do
  printf '%-12s %10s %10s %10s %10s %12s %12s %12s %12s\n' $l "${R[$l,write]}" "${R[$l,read]}" "${R[$l,create]}" "${R[$l,stat]}" "${R[$l,wcpu]}" "${R[$l,wds]}" "${R[$l,rcpu]}" "${R[$l,rds]}"
done
echo "(cpu: seconds per GiB moved by the application; lib rows: the load process's CPU over write and read together)"
echo "fabric bytes by RMA (client log): fuse-tcp $(cat "$STATE/fb-fuse-tcp"), fuse-fabric $(cat "$STATE/fb-fuse-fabric")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo "ratios, same run:"
for m in write read create stat; do
  echo "  $m: fuse-fabric/fuse-tcp $(ratio "${R[fuse-fabric,$m]}" "${R[fuse-tcp,$m]}")  fuse-tcp/lib-tcp $(ratio "${R[fuse-tcp,$m]}" "${R[lib-tcp,$m]}")  lib-fabric/lib-tcp $(ratio "${R[lib-fabric,$m]}" "${R[lib-tcp,$m]}")"
done
echo "  cpu per GiB written, fabric/tcp: client $(ratio "${R[fuse-fabric,wcpu]}" "${R[fuse-tcp,wcpu]}") data servers $(ratio "${R[fuse-fabric,wds]}" "${R[fuse-tcp,wds]}")"
echo "  cpu per GiB read, fabric/tcp: client $(ratio "${R[fuse-fabric,rcpu]}" "${R[fuse-tcp,rcpu]}") data servers $(ratio "${R[fuse-fabric,rds]}" "${R[fuse-tcp,rds]}")"
