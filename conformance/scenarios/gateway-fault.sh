# gateway-fault (cfs-cluster-gateway only): a v3 guest writes a file through the cluster's NFSv3
# gateway; a quarter of the way in the host kill -9s the gateway and restarts it 2 s later. The
# write and fsync must succeed, and every byte must verify after drop_caches: the client met a
# gateway whose write verifier changed and sent again whatever it had not had committed.
. /job/lib.sh
N=${SIZE_MIB:-64}
SEED=$(( $(date +%s) ^ $$ ))
$H gen /tmp/src $SEED $N || { fail "cfshelper gen /tmp/src $SEED $N"; finish; }
setup_wd
( dd if=/tmp/src of=data bs=1M 2>&1 && $H fsync data ) > /tmp/w.out 2>&1 &
W=$!
# Once a quarter is in the page cache (and writeback is under way), the host kills the gateway.
n=0
while [ "$(stat -c %s data 2>/dev/null || echo 0)" -lt $((N * 1048576 / 4)) ]; do
  n=$((n + 1)); [ $n -gt 600 ] && break; sleep 0.1
done
post writing
await restarted 150
if wait $W; then
  pass "write + fsync of $N MiB across a gateway kill -9"
else
  fail "write + fsync across a gateway kill -9: $(tail -c 300 /tmp/w.out | tr '\n' ' ')"
fi
drop_caches
expect_eq "every byte after the gateway's restart (after drop_caches)" OK "$($H verify data $SEED $N)"
post done
rm -f /tmp/src
cleanup_wd
finish
