# ecbench (not a check; driven by `conformance ecbench`, src/ecbench.rs): sequential reads of
# one erasure-coded file through two exports of a cfs cluster of 6 data servers (4+2): /mnt is
# $EXPORT (ec_reads = "auto": striped for Linux 6.18+, assembled before), /mnt2 is $EXPORT2
# (ec_reads = "assembled"). The host wrote $FILE into both, waited until they were encoded, and
# hands the guest a plan: words "LABEL:MOUNT:RA_KB" (one timed read of the whole file after
# drop_caches, with the mount's read-ahead set to RA_KB, 0 = the kernel's default), "verify:MOUNT"
# (md5 of the whole file against $MD5, untimed) and "kill" (the host kill -9's a data server
# holding a data shard; the guest only waits). Every step is framed by the rendezvous: post
# pre-N, await go-N, the step, post post-N, await done-N, so the host reads the cluster's
# counters around each read and does nothing while the guest reads.
. /job/lib.sh
mkdir -p /mnt2
mount -t "$NFS_FSTYPE" -o "$NFS_OPTS" "$HOST_IP:$EXPORT2" /mnt2 || { fail "mount $EXPORT2"; finish; }
# the bdi of a mount (major:minor), where read_ahead_kb lives
bdi() { awk -v m="$1" '$5 == m { print $3; exit }' /proc/self/mountinfo; }
DEF1=$(cat /sys/class/bdi/$(bdi /mnt)/read_ahead_kb)
DEF2=$(cat /sys/class/bdi/$(bdi /mnt2)/read_ahead_kb)
echo "INFO default read_ahead_kb /mnt $DEF1 /mnt2 $DEF2"
setra() { # MOUNT KB
  _d=$(bdi "$1")
  _k=$2
  if [ "$_k" = 0 ]; then [ "$1" = /mnt ] && _k=$DEF1 || _k=$DEF2; fi
  echo "$_k" > /sys/class/bdi/$_d/read_ahead_kb || fail "read_ahead_kb $_k on $1"
}
n=0
for step in $PLAN; do
  n=$((n + 1))
  post "pre-$n"
  await "go-$n" 300
  case $step in
    kill) ;;
    verify:*)
      m=${step#verify:}
      drop_caches
      got=$(md5 "$m/$FILE")
      expect_eq "md5 of $m/$FILE (step $n)" "$MD5" "$got" ;;
    *)
      label=${step%%:*}; rest=${step#*:}; m=${rest%%:*}; ra=${rest#*:}
      setra "$m" "$ra"
      drop_caches
      t0=$(now)
      if dd if="$m/$FILE" of=/dev/null bs=1M 2>/tmp/dd.err; then
        t1=$(now)
        r=$(rate "$SIZE_MIB" "$t0" "$t1")
        metric "read_$n" "$r" MiB/s
        echo "INFO step $n $label $m ra=$ra: $SIZE_MIB MiB in $(awk -v a=$t0 -v b=$t1 'BEGIN{print b-a}') s = $r MiB/s"
      else
        fail "read $m/$FILE (step $n, $label): $(tail -c 300 /tmp/dd.err)"
      fi ;;
  esac
  post "post-$n"
  await "done-$n" 300
done
umount /mnt2
finish
