# pnfs-fault (cfs-cluster only): the host kill -9s a data server holding the file midway through
# the kernel's write (src/hostops.rs picks one whose write_bytes grew). The rest of the write and
# the fsync must succeed (or fail cleanly and succeed on the one retry), every byte must verify
# after drop_caches, and again after the host restarted that data server.
. /job/lib.sh
N=${SIZE_MIB:-96}; HALF=$((N / 2)); REST=$((N - HALF))
SEED=$(( $(date +%s) ^ $$ ))
# the file's bytes, made once in guest memory so the two halves can be written at two times
$H gen /tmp/src $SEED $N || { fail "cfshelper gen /tmp/src $SEED $N"; finish; }
setup_wd
post start
await baseline
check "write the first $HALF MiB" dd if=/tmp/src of=data bs=1M count=$HALF
check "fsync the first half" $H fsync data
post half
await killed
second() { dd if=/tmp/src of=data bs=1M skip=$HALF seek=$HALF count=$REST conv=notrunc && $H fsync data; }
if second > /tmp/second.out 2>&1; then
  pass "write + fsync the other $REST MiB with a data server killed"
else
  echo "INFO: write/fsync with a data server killed failed: $(head -c 300 /tmp/second.out | tr '\n' ' '); retrying once"
  check "retry: write + fsync the other $REST MiB" second
fi
drop_caches
expect_eq "every byte, data server down (after drop_caches)" OK "$($H verify data $SEED $N)"
post verified
await restarted 150
drop_caches
expect_eq "every byte, data server restarted (after drop_caches)" OK "$($H verify data $SEED $N)"
post done
rm -f /tmp/src
cleanup_wd
finish
