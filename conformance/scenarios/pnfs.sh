# pnfs: does I/O that a pNFS server would serve through layouts and reports what the client did.
# Passes when the I/O is correct; the LAYOUTGET/GETDEVICEINFO/READ/WRITE counts land in the report
# (mountstats are captured after every scenario) as the evidence of whether layouts were used.
# Against cfs-cluster the host also compares the cluster's MDS/DS byte counters before and after
# (src/evidence.rs) and fails the case unless the file's bytes went to and from the data servers:
# so this script writes the file exactly once and reads it back exactly once, after drop_caches.
# On cfs-cluster-s3 the file has left flash for the bucket before it is read (evict_all).
. /job/lib.sh
setup_wd
N=${SIZE_MIB:-16}
SEED=$(( $(date +%s) ^ $$ ))
check "write $N MiB" $H gen data $SEED $N
check "fsync" $H fsync data
evict_all
drop_caches
expect_eq "data read back" OK "$($H verify data $SEED $N)"
grep -o 'pnfs=[^,]*' /proc/self/mountstats | head -1 | sed 's/^/INFO: /'
cleanup_wd
finish
