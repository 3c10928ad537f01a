# Sourced by every scenario (cwd = the NFS mount, $MNT=/mnt). Checks print one PASS/FAIL line
# each with expected vs got; finish exits non-zero if any check failed.
H=/job/cfshelper
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
# expect_eq DESC EXPECTED GOT
expect_eq() { if [ "$2" = "$3" ]; then pass "$1 (= $2)"; else fail "$1: expected '$2', got '$3'"; fi; }
# check DESC CMD...: the command must succeed
check() {
  d=$1; shift
  if "$@" > /tmp/check.out 2>&1; then pass "$d"; else fail "$d: '$*' failed: $(head -c 300 /tmp/check.out | tr '\n' ' ')"; fi
}
# rd FILE: its content, or the error; NUL bytes shown as @ (the shell would silently drop them,
# and a server returning zeros must not look like an empty file)
rd() { cat "$1" 2>&1 | tr '\000' '@'; }
# md5 FILE: the digest, or the error message
md5() { _o=$(md5sum "$1" 2>&1) && echo "${_o%% *}" || echo "error: $_o"; }
# metric NAME VALUE UNIT: a number the host stores in the report
metric() { echo "@@METRIC@@ $1 $2 $3"; }
now() { cut -d' ' -f1 /proc/uptime; }
# rate MIB T0 T1 -> MiB/s
rate() { awk -v m="$1" -v a="$2" -v b="$3" 'BEGIN { d = b - a; if (d <= 0) d = 0.01; printf "%.1f", m / d }'; }
# opsrate N T0 T1 -> ops/s
opsrate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { d = b - a; if (d <= 0) d = 0.01; printf "%.0f", n / d }'; }
# Host rendezvous (RDV_PORT; twoclient, and scenarios with host steps): post NAME / await NAME [SECONDS].
# A failed or timed-out await ends the scenario (the peer failed, is stuck, or aborted).
post() { $H rdv 10.0.2.2 "$RDV_PORT" post "$1" || fail "rendezvous post $1"; }
await() { $H rdv 10.0.2.2 "$RDV_PORT" wait "$1" "${2:-90}" || { fail "rendezvous wait $1: the other side failed or is stuck"; finish; }; }
# opcount OP: the calls of OP the mount on /mnt has sent (mountstats, per-op section)
opcount() {
  awk -v op="$1:" '/^device .* mounted on \/mnt /{p=1; next} /^device /{p=0}
    p && $1 == op {print $2; f=1; exit} END {if (!f) print 0}' /proc/self/mountstats
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# umount + mount again (drops every client cache); a failure ends the scenario, since the
# checks after it would run against the wrong directory
remount() {
  cd /
  umount /mnt || { fail "umount /mnt"; finish; }
  mount -t "$NFS_FSTYPE" -o "$NFS_OPTS" "$NFS_SRC" /mnt || { fail "remount $NFS_SRC"; finish; }
  cd "$WD" || { fail "cd $WD after remount"; finish; }
}
# evict_all: on cfs-cluster-s3 (EVICT=1: posix, integrity, pnfs; the host's side is
# src/evicted.rs `forced`) every file leaves flash for the bucket, so the reads that follow come
# from S3. The mount goes first: a file a client has open, delegated or laid out stays on flash,
# and no cached page survives. The host waits until the data servers hold no file's bytes.
# Elsewhere it does nothing, so the scenario is the same as before.
EVICTS=0
evict_all() {
  [ "${EVICT:-0}" = 1 ] || return 0
  EVICTS=$((EVICTS + 1))
  sync
  cd /
  umount /mnt || { fail "umount /mnt for eviction $EVICTS"; finish; }
  post "evict$EVICTS"
  await "evicted$EVICTS" 150
  mount -t "$NFS_FSTYPE" -o "$NFS_OPTS" "$NFS_SRC" /mnt || { fail "mount $NFS_SRC after eviction $EVICTS"; finish; }
  cd "$WD" || { fail "cd $WD after eviction $EVICTS"; finish; }
}
# A private working directory per scenario run, so concurrent and repeated runs never collide.
WD=$MNT/cfs-conf.${SCENARIO:-x}.${RUN_ID:-$$}
setup_wd() {
  rm -rf "$WD" 2>/dev/null
  if ! mkdir "$WD" 2>/tmp/mkdir.err; then
    fail "mkdir working directory $WD: $(cat /tmp/mkdir.err)"; finish
  fi
  cd "$WD"
}
cleanup_wd() { cd "$MNT" && check "remove the working directory tree" rm -rf "$WD"; }
# same DESC WANT FILE: one whole read of FILE, its exact bytes, the first difference shown
same() {
  if out=$(cmp "$2" "$3" 2>&1); then pass "$1"; else fail "$1: $out"; fi
}
# seeded_files SEED "name:bytes ...": each file written here from seeded random bytes (kept as
# /tmp/want.NAME) and closed; LIST="name=ino/size,..." for the host (`files:` on the rendezvous)
seeded_files() {
  _i=0; LIST=
  for _f in $2; do
    _n=${_f%%:*}; _b=${_f#*:}; _i=$((_i + 1))
    { $H gen /tmp/gen $(($1 + _i)) $(( (_b + 1048575) / 1048576 )) && head -c "$_b" /tmp/gen > /tmp/want.$_n; } \
      || { fail "make /tmp/want.$_n"; finish; }
    check "write $_n ($_b bytes) and close it" cp /tmp/want.$_n $_n
    LIST="$LIST${LIST:+,}$_n=$(stat -c %i $_n)/$(stat -c %s $_n)"
  done
  rm -f /tmp/gen
}
# overwrite_ranges FILE...: /tmp/patch over 64 KiB across the 2 MiB boundary and 1000 bytes at
# 5 MiB + 7 of each FILE (a file and its expected copy get the same change)
overwrite_ranges() {
  for _t in "$@"; do
    dd if=/tmp/patch of=$_t bs=4096 seek=$((2 * 256 - 8)) count=16 conv=notrunc 2>/dev/null &&
    dd if=/tmp/patch of=$_t bs=1 skip=70000 seek=$((5 * 1048576 + 7)) count=1000 conv=notrunc 2>/dev/null ||
    fail "overwrite $_t"
  done
}
finish() {
  # two-client runs: a failed guest releases its peer from waiting on steps that never come
  [ $FAILS != 0 ] && [ -n "${RDV_PORT:-}" ] && $H rdv 10.0.2.2 "$RDV_PORT" post abort 2>/dev/null
  if [ $FAILS = 0 ]; then echo "RESULT: all checks passed"; exit 0; fi
  # what the kernel said about it (a flexfiles or RPC error often explains an EIO): the
  # report is all a CI run leaves behind
  dmesg 2>/dev/null | grep -iE 'nfs|rpc|pnfs|flex|layout' | grep -viE 'regist' | tail -n 20 \
    | sed 's/^/INFO: dmesg: /'
  echo "RESULT: $FAILS check(s) failed"; exit 1
}
