# integrity: SIZE_MIB of pseudo-random data (seeded per run) reads back identical after
# drop_caches and after umount+mount; a partial overwrite lands exactly in place. On
# cfs-cluster-s3 the file has left flash for the bucket before each read-back (evict_all).
. /job/lib.sh
setup_wd
N=${SIZE_MIB:-256}
SEED=$(( $(date +%s) ^ $$ ))
t0=$(now)
check "write $N MiB" $H gen data $SEED $N
check "fsync of written data" $H fsync data
t1=$(now)
metric write_mib_s "$(rate $N $t0 $t1)" MiB/s
expect_eq "size of written file" $((N * 1048576)) "$(stat -c %s data 2>&1)"
evict_all
drop_caches
t0=$(now)
v=$($H verify data $SEED $N)
t1=$(now)
[ "$v" = OK ] && metric read_mib_s "$(rate $N $t0 $t1)" MiB/s
expect_eq "data after drop_caches" OK "$v"
remount
expect_eq "data after umount+mount" OK "$($H verify data $SEED $N)"
# a partial overwrite in the middle must land exactly where it was written, and nowhere else
dd if=/dev/zero of=data bs=4096 seek=1000 count=3 conv=notrunc 2>/dev/null
evict_all
drop_caches
dd if=/dev/zero of=/tmp/want-zero bs=4096 count=3 2>/dev/null
$H gen /tmp/ref $SEED 4 && dd if=/tmp/ref of=/tmp/want-999 bs=4096 skip=999 count=1 2>/dev/null
for c in "zero 1000 3 overwritten range reads back as zeros" "999 999 1 block before the overwritten range unchanged"; do
  set -- $c; want=/tmp/want-$1; skip=$2; cnt=$3; shift 3
  if dd if=data of=/tmp/got bs=4096 skip=$skip count=$cnt 2>/tmp/dd.err; then
    if cmp -s $want /tmp/got; then pass "$*"; else fail "$*: $(cmp $want /tmp/got 2>&1 | head -1)"; fi
  else
    fail "$*: read failed: $(cat /tmp/dd.err)"
  fi
done
expect_eq "size unchanged by overwrite" $((N * 1048576)) "$(stat -c %s data 2>&1)"
cleanup_wd
finish
