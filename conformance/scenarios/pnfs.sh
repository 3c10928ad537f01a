# pnfs: does I/O that a pNFS server would serve through layouts and reports what the client did.
# Passes when the I/O is correct; the LAYOUTGET/GETDEVICEINFO/READ/WRITE counts land in the report
# (mountstats are captured after every scenario) as the evidence of whether layouts were used.
. /job/lib.sh
setup_wd
N=${SIZE_MIB:-16}
sum_w=$(dd if=/dev/urandom bs=1M count=$N 2>/dev/null | tee data | md5sum | cut -d' ' -f1)
check "fsync" $H fsync data
drop_caches
expect_eq "md5 of data read back" "$sum_w" "$(md5 data)"
grep -o 'pnfs=[^,]*' /proc/self/mountstats | head -1 | sed 's/^/INFO: /'
cleanup_wd
finish
