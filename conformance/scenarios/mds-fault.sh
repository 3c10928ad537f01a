# mds-fault and mds-leader-fault (cfs-cluster-mds3): a workload of writes (1 MiB each, fsynced),
# creates, renames and removes runs while the host kill -9s an MDS node (src/mdsfault.rs): the
# node serving this mount, or the leader of the shard the files live on. No step may fail; a step
# may only be slow (the longest is the pause, reported). After the host restarted the node and it
# caught up, every file the workload kept has its bytes (after drop_caches) and every file it
# removed is gone. On v4.2 each file also gets an extended attribute, which must survive too.
. /job/lib.sh
AFTER=${STEPS_AFTER:-8}
setup_wd
mkdir a b || { fail "mkdir a b"; finish; }
step() {
  i=$1
  $H gen a/f$i $i 1 && $H fsync a/f$i && mv a/f$i b/g$i \
    && mkdir b/d$i && echo $i > b/d$i/x && mv b/d$i/x b/d$i/y || return 1
  if [ "$NFSVERS" = 4.2 ]; then
    x=$($H xattr set b/g$i user.step $i)
    [ "$x" = OK ] || { echo "setxattr b/g$i: $x"; return 1; }
  fi
  if [ $((i % 3)) = 0 ]; then rm b/g$((i - 1)) && rm -r b/d$((i - 1)) || return 1; fi
}
rdv_seen() { $H rdv 10.0.2.2 "$RDV_PORT" wait "$1" 0 > /dev/null 2>&1; }
MAXP=0; MAXI=0; i=0; after=-1
while :; do
  i=$((i + 1))
  t0=$(now)
  if ! step $i > /tmp/step.out 2>&1; then
    fail "workload step $i: $(head -c 300 /tmp/step.out | tr '\n' ' ')"
    break
  fi
  d=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  if awk -v d="$d" -v m="$MAXP" 'BEGIN { exit !(d > m) }'; then MAXP=$d; MAXI=$i; fi
  # A workload still running a minute later is stuck: the client's view goes to the console
  # (the report's console tail), since a timed-out guest's own output is lost.
  [ $i = 5 ] && { post "mounted:$NFSPORT"; post running; ( sleep 60; { echo "STUCK? dmesg and per-op counts:"; dmesg | tail -30; grep -A45 "per-op" /proc/self/mountstats | awk '$2 > 0'; } > /dev/console ) & }
  if [ $after -lt 0 ] && [ $i -gt 5 ] && rdv_seen killed; then after=0; echo "INFO: the host killed the node during steps up to $i"; fi
  [ $after -ge 0 ] && after=$((after + 1))
  [ $after -ge "$AFTER" ] && break
  rdv_seen abort && { fail "the host gave up"; break; }
  [ $i -ge 300 ] && { fail "the host never killed the node (300 steps)"; break; }
done
N=$i
post workload-done
metric pause_s "$MAXP" s
echo "INFO: $N steps; the longest, step $MAXI, took $MAXP s (the pause)"
[ $FAILS = 0 ] && pass "a workload of $N steps (write+fsync, create, rename, remove) with an MDS node killed finished without an error (pause $MAXP s)"
# Through the restarted node itself, mounted at once while it catches up: every name the
# workload kept is found (its directories live on shards the other nodes led while it was
# down) and every name it removed is gone. Waiting is allowed; ESTALE or ENOENT is not.
P=$($H rdv 10.0.2.2 "$RDV_PORT" get restarted-port: 150) || { fail "rendezvous get restarted-port"; finish; }
P=${P#restarted-port:}
mkdir -p /mnt2
OPTS2=$(echo "$NFS_OPTS" | sed "s/port=$NFSPORT/port=$P/")
mounted2=0
for _ in $(seq 60); do
  mount -t "$NFS_FSTYPE" -o "$OPTS2" "$NFS_SRC" /mnt2 2>/tmp/mount2.err && { mounted2=1; break; }
  sleep 0.5
done
if [ $mounted2 = 1 ]; then
  W2=/mnt2/${WD#"$MNT"/}
  bad2=0
  for j in $(seq 1 $N); do
    if [ $((j % 3)) = 2 ] && [ $j -lt $N ]; then
      for p in b/g$j b/d$j; do
        o=$(stat -c %F "$W2/$p" 2>&1) && { bad2=$((bad2 + 1)); echo "INFO: restarted node shows removed $p ($o)"; }
      done
    else
      for p in b/g$j b/d$j b/d$j/y; do
        o=$(stat -c %F "$W2/$p" 2>&1) || { bad2=$((bad2 + 1)); echo "INFO: restarted node: $p: $o"; }
      done
    fi
  done
  expect_eq "every name looked up through the restarted node while it caught up (port $P)" 0 $bad2
  umount /mnt2 || fail "umount /mnt2"
else
  fail "mount the restarted node on port $P: $(head -c 200 /tmp/mount2.err)"
fi
await restarted 150
drop_caches
bad=0
for j in $(seq 1 $N); do
  if [ $((j % 3)) = 2 ] && [ $j -lt $N ]; then
    if [ -e b/g$j ] || [ -e b/d$j ]; then bad=$((bad + 1)); echo "INFO: removed b/g$j or b/d$j is still there"; fi
  else
    r=$($H verify b/g$j $j 1 2>&1)
    [ "$r" = OK ] || { bad=$((bad + 1)); echo "INFO: b/g$j: $r"; }
    y=$(cat b/d$j/y 2>&1)
    [ "$y" = "$j" ] || { bad=$((bad + 1)); echo "INFO: b/d$j/y: $y"; }
    if [ "$NFSVERS" = 4.2 ]; then
      x=$($H xattr get b/g$j user.step)
      [ "$x" = "$j" ] || { bad=$((bad + 1)); echo "INFO: b/g$j user.step: $x"; }
    fi
  fi
done
expect_eq "files kept with their bytes (and v4.2 xattrs) and files removed gone, node restarted (after drop_caches)" 0 $bad
post done
cleanup_wd
finish
