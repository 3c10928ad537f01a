# bench: numbers, not pass/fail (a check fails only if the I/O itself fails)
. /job/lib.sh
setup_wd
N=${SIZE_MIB:-256}
F=${NFILES:-2000}
t0=$(now); dd if=/dev/zero of=seq bs=1M count=$N conv=fsync 2>/dev/null || fail "sequential write"; t1=$(now)
metric seq_write_mib_s "$(rate $N $t0 $t1)" MiB/s
drop_caches
t0=$(now); dd if=seq of=/dev/null bs=1M 2>/dev/null || fail "sequential read"; t1=$(now)
metric seq_read_mib_s "$(rate $N $t0 $t1)" MiB/s
rm -f seq
mkdir m
t0=$(now); i=0; while [ $i -lt $F ]; do : > m/f$i || { fail "create m/f$i"; break; }; i=$((i + 1)); done; t1=$(now)
metric create_ops_s "$(opsrate $F $t0 $t1)" ops/s
drop_caches
t0=$(now); (cd m && stat -c %s f* > /dev/null) || fail "stat"; t1=$(now)
metric stat_ops_s "$(opsrate $F $t0 $t1)" ops/s
t0=$(now); (cd m && rm -f f*) || fail "unlink"; t1=$(now)
metric unlink_ops_s "$(opsrate $F $t0 $t1)" ops/s
# reference: the same dd into guest tmpfs shows what TCG itself costs
t0=$(now); dd if=/dev/zero of=/tmp/z bs=1M count=256 2>/dev/null; t1=$(now); rm -f /tmp/z
metric guest_tmpfs_write_mib_s "$(rate 256 $t0 $t1)" MiB/s
cleanup_wd
finish
