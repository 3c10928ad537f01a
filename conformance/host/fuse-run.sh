#!/bin/bash
# fuse-run.sh: the guest scenarios, unchanged, against a `cfs mount` (FUSE) on this host.
#
#   conformance/host/fuse-run.sh single|cluster [SCENARIO...]     (default: posix integrity bigdir locking)
#
# twoclient runs twice, with one client the FUSE mount here and the other the stock kernel client
# in a qemu guest (run-guest.sh, kernel KVER, default the bookworm one from `conformance setup`):
# FUSE as A and the kernel as B, then the other way round; the rendezvous is a small server on
# loopback here (the guest reaches it as 10.0.2.2). twoclient:A (or :B) runs one of the two.
#
# Environment: CFS_BIN (default target/release/cfs), PORT (base port, default 22049; the
# cluster uses PORT..PORT+3 for NFS), ADMIN_PORT (the cluster's admin ports, ADMIN_PORT..+3;
# default PORT+1000), RDV_PORT (the two-client rendezvous; default PORT+50), QUICK=1 (quick sizes, as `run --quick`), CFS_MOUNT_OPTS (extra
# `cfs mount` flags, e.g. --writeback-cache), FABRIC (set: data servers open a libfabric
# endpoint with this provider, e.g. tcp or sockets, and the client uses it).
#
# Each scenario runs as in the guest (`/init`): busybox sh, busybox's applets first in PATH,
# /job/lib.sh, /job/cfshelper, the file system on /mnt, cwd /mnt. A private mount namespace
# gives it its own /job and /mnt, so the host's are untouched. lib.sh is the guest's, with
# remount() unmounting and mounting the FUSE client instead of NFS. drop_caches drops the
# host's caches (the FUSE client's page cache among them). Servers and mounts started here
# are stopped by PID; every scenario is bounded by `timeout`.
set -u
MODE=${1:?usage: fuse-run.sh single|cluster [SCENARIO...]}
shift
SCENARIOS=${*:-posix integrity bigdir locking}
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CFS=${CFS_BIN:-$ROOT/target/release/cfs}
PORT=${PORT:-22049}
ADMIN_PORT=${ADMIN_PORT:-$((PORT + 1000))}
RDV_PORT=${RDV_PORT:-$((PORT + 50))}
HELPER=${CFS_HELPER:-${CFS_CONFORMANCE_CACHE:-$HOME/.cache/cfs-conformance}/bin/cfshelper}
STATE=$(mktemp -d /tmp/cfs-fuse-run.XXXXXX)
PIDS=()
[ -x "$CFS" ] || { echo "no cfs binary at $CFS (cargo build --release -p cfs)"; exit 2; }
command -v busybox > /dev/null || { echo "busybox is needed (apt-get install busybox-static)"; exit 2; }
command -v fusermount3 > /dev/null || { echo "fusermount3 is needed (apt-get install fuse3)"; exit 2; }
if [ ! -x "$HELPER" ]; then
  HELPER=$STATE/cfshelper
  gcc -static -O2 -o "$HELPER" "$HERE/guest/cfshelper.c" "$HERE/guest/posixdiff.c" || exit 2
fi

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
  done
  [ -f "$STATE/cluster/pids" ] && for p in $(cat "$STATE/cluster/pids"); do
    grep -q "$STATE" /proc/$p/cmdline 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  [ -n "${KEEP:-}" ] || rm -rf "$STATE"
}
trap cleanup EXIT

FABRIC_ARGS=()
[ -n "${FABRIC:-}" ] && FABRIC_ARGS=(--fabric "$FABRIC")
case $MODE in
  single)
    "$CFS" server --data "$STATE/data" --listen 127.0.0.1:$PORT > "$STATE/server.log" 2>&1 &
    PIDS+=($!)
    ;;
  cluster)
    # 10.0.2.2 first for a qemu guest (twoclient); the host's clients race both addresses.
    "$CFS" cluster up --ds 3 --dir "$STATE/cluster" --port $PORT --admin-port $ADMIN_PORT --lease-seconds 10 \
      --advertise-host 10.0.2.2 --advertise-host 127.0.0.1 "${FABRIC_ARGS[@]}" > "$STATE/cluster-up.log" 2>&1 &
    PIDS+=($!)
    ;;
  *) echo "mode: single or cluster"; exit 2 ;;
esac
SERVER=127.0.0.1:$PORT
for _ in $(seq 300); do
  if [ $MODE = cluster ]; then
    n=$("$CFS" admin status --config "$STATE/cluster/mds.toml" --json 2>/dev/null | grep -o '"state": *"up"' | wc -l)
    [ "$n" -ge 3 ] && break
  else
    "$CFS" ls --server $SERVER / > /dev/null 2>&1 && break
  fi
  sleep 0.2
done

# Bytes the data servers and the MDS served so far: "ds_write ds_read mds_write mds_read".
# Counters travel with heartbeats (every second), so they are read after a pause.
counters() {
  [ $MODE = cluster ] || return 0
  sleep 1.5
  "$CFS" admin status --config "$STATE/cluster/mds.toml" --json 2>/dev/null | tr -d '\n ' |
    awk -F'"mds":' '{
      ds = $1; mds = $2; w = 0; r = 0
      while (match(ds, /"read_bytes":[0-9]+/)) { r += substr(ds, RSTART + 13, RLENGTH - 13); ds = substr(ds, RSTART + RLENGTH) }
      ds = $1
      while (match(ds, /"write_bytes":[0-9]+/)) { w += substr(ds, RSTART + 14, RLENGTH - 14); ds = substr(ds, RSTART + RLENGTH) }
      match(mds, /"write_bytes":[0-9]+/); mw = substr(mds, RSTART + 14, RLENGTH - 14)
      match(mds, /"read_bytes":[0-9]+/); mr = substr(mds, RSTART + 13, RLENGTH - 13)
      print w, r, mw, mr }'
}

mkdir -p "$STATE/job/bin"
for a in $(busybox --list); do ln -sf "$(command -v busybox)" "$STATE/job/bin/$a"; done
cp "$HELPER" "$STATE/job/cfshelper"
# The scenarios keep scratch files in /tmp (a guest's own); here that is the host's, shared
# with concurrent runs (cargo test runs the fuse_mount tests in parallel, whose locking
# scenarios all wrote /tmp/holder.out), so each run gets its own.
mkdir -p "$STATE/tmp"
sed "s|/tmp/|$STATE/tmp/|g" "$HERE/guest/lib.sh" > "$STATE/job/lib.sh"
cat >> "$STATE/job/lib.sh" <<EOF
# --- host adapter (fuse-run.sh): the mount under test is cfs mount, not NFS ---
remount() {
  cd /
  "$CFS" umount /mnt || { fail "umount /mnt"; finish; }
  "$CFS" mount --server $SERVER ${CFS_MOUNT_OPTS:-} ${FABRIC_ARGS[*]} --log $STATE/mount.log /mnt || { fail "remount"; finish; }
  cd "\$WD" || { fail "cd \$WD after remount"; finish; }
}
EOF

# The rendezvous of twoclient: "post NAME T" -> ok; "wait NAME T" -> ok | abort | timeout.
rdv_server() {
  python3 - "$1" <<'PY' &
import socket, sys, threading, time
board, cv = set(), threading.Condition()
def serve(c):
    f = c.makefile("rw")
    for line in f:
        parts = line.split()
        if len(parts) < 2: break
        op, name = parts[0], parts[1]
        t = float(parts[2]) if len(parts) > 2 else 90
        with cv:
            if op == "post":
                board.add(name); cv.notify_all(); f.write("ok\n")
            else:
                end = time.time() + t
                while name not in board and "abort" not in board and time.time() < end:
                    cv.wait(end - time.time())
                f.write("ok\n" if name in board else "abort\n" if "abort" in board else "timeout\n")
        f.flush()
    c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
  PIDS+=($!)
}
KVER=${KVER:-$(ls "${CFS_CONFORMANCE_CACHE:-$HOME/.cache/cfs-conformance}/k" 2>/dev/null | grep '^6\.1\.' | head -1)}

pass=0; failn=0
CASES=""
for s in $SCENARIOS; do
  case $s in twoclient) CASES="$CASES twoclient:A twoclient:B" ;; *) CASES="$CASES $s" ;; esac
done
for c in $CASES; do
  s=${c%%:*}; ROLE=${c#*:}; [ "$ROLE" = "$c" ] && ROLE=
  src=$HERE/scenarios/$s.sh
  [ -f "$src" ] || { echo "FAIL: no scenario $s"; failn=$((failn + 1)); continue; }
  # A fresh /tmp per case, as a fresh guest has.
  rm -rf "$STATE/tmp" && mkdir "$STATE/tmp"
  # The guest reaches the host as 10.0.2.2; here the rendezvous is on loopback.
  sed -e 's/10\.0\.2\.2/127.0.0.1/g' -e "s|/tmp/|$STATE/tmp/|g" "$src" > "$STATE/job/script.sh"
  case $s in
    integrity) sz="SIZE_MIB=${QUICK:+16}" ; [ -z "${QUICK:-}" ] && sz=SIZE_MIB=256 ;;
    bigdir) sz="NENTRIES=${QUICK:+500}" ; [ -z "${QUICK:-}" ] && sz=NENTRIES=10000 ;;
    *) sz=X=0 ;;
  esac
  # What the last case left is what this one starts from: nothing moves between cases, and
  # each reading waits 1.5 s for the heartbeats (~10 s of a 7-case cluster run).
  before=${after:-$(counters)}
  t0=$(date +%s.%N)
  RID=$$
  GPID=
  if [ -n "$ROLE" ]; then
    RID=$$$RANDOM
    RDV=$RDV_PORT
    rdv_server $RDV
    # Python may take seconds to start on a loaded machine: wait until it listens, else the
    # first post is refused and both sides fail waiting.
    for _ in $(seq 100); do (: < /dev/tcp/127.0.0.1/$RDV) 2> /dev/null && break; sleep 0.1; done
    other=B; [ $ROLE = B ] && other=A
    [ -n "$KVER" ] || { echo "no guest kernel: cargo run -p conformance -- setup"; exit 2; }
    GUEST_ENV="$(printf 'ROLE=%s\nRDV_PORT=%s\nRUN_ID=%s\nSCENARIO=twoclient\nGUEST_NAME=kguest%s\nNFS4_UNIQUE_ID=kguest-%s' $other $RDV $RID $RID $RID)" \
      SMP=1 TIMEOUT=400 "$HERE/host/run-guest.sh" "$KVER" $PORT 4.1 "$src" > "$STATE/$s-$ROLE.guest.out" 2>&1 &
    GPID=$!
  fi
  timeout 900 unshare --mount --propagation private env -i \
      PATH="$STATE/job/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root "$sz" SCENARIO=$s RUN_ID=$RID \
      ROLE="$ROLE" RDV_PORT="${RDV:-}" \
      NFSVERS=4.1 XATTRS=1 MNT=/mnt CFS="$CFS" SERVER=$SERVER STATE="$STATE" \
      MOUNT_OPTS="${CFS_MOUNT_OPTS:-} ${FABRIC_ARGS[*]}" \
      busybox sh -c '
        # Never mount anything in the host'"'"'s own namespace.
        [ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] || exit 96
        mount -t tmpfs none /mnt && mkdir -p /job && mount --bind "$STATE/job" /job || exit 97
        "$CFS" mount --server $SERVER $MOUNT_OPTS --log $STATE/mount.log /mnt || exit 99
        (cd /mnt && exec busybox sh /job/script.sh) < /dev/null
        rc=$?
        "$CFS" umount /mnt
        exit $rc' > "$STATE/$s.out" 2>&1
  rc=$?
  if [ -n "$GPID" ]; then
    wait $GPID; grc=$?
    grep -E '^(PASS|FAIL|INFO|RESULT)' "$STATE/$s-$ROLE.guest.out" | sed "s/^/[$MODE $s kernel-guest] /"
    [ $grc = 0 ] || { echo "guest exit $grc"; tail -5 "$STATE/$s-$ROLE.guest.out"; rc=1; }
    kill "${PIDS[-1]}" 2>/dev/null
    s="$s (FUSE $ROLE, kernel $other)"
  fi
  t1=$(date +%s.%N)
  after=$(counters)
  grep -E '^(PASS|FAIL|INFO|RESULT)' "$STATE/${s%% *}.out" | sed "s/^/[$MODE ${s%% *} fuse] /"
  secs=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.1f", b - a }')
  if [ $rc = 0 ]; then
    echo "CASE $MODE $s: pass (${secs}s)"; pass=$((pass + 1))
  else
    echo "CASE $MODE $s: FAIL rc=$rc (${secs}s); output:"; tail -20 "$STATE/${s%% *}.out"; failn=$((failn + 1))
  fi
  if [ $MODE = cluster ]; then
    set -- $before; b1=$1 b2=$2 b3=$3 b4=$4
    set -- $after
    echo "[$MODE ${s%% *}] pNFS evidence: data servers wrote $(($1 - b1)) B and read $(($2 - b2)) B; the MDS wrote $(($3 - b3)) B and read $(($4 - b4)) B"
  fi
  # The client's own account, logged when it unmounts: bytes over the fabric (RMA).
  fb=$(sed 's/\x1b\[[0-9;]*m//g' "$STATE/mount.log" 2>/dev/null | grep -o 'fabric_bytes=[0-9]*' | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }')
  [ -n "${FABRIC:-}" ] && echo "[$MODE ${s%% *}] fabric: $fb B moved by RMA so far (client log)"
done
[ $failn != 0 ] && { KEEP=1; echo "state kept in $STATE"; }
echo "$pass passed, $failn failed"
[ $failn = 0 ]
