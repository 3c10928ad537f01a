# integrity: SIZE_MIB of random data keeps its checksum after drop_caches and after umount+mount
. /job/lib.sh
setup_wd
N=${SIZE_MIB:-256}
t0=$(now)
sum_w=$(dd if=/dev/urandom bs=1M count=$N 2>/dev/null | tee data | md5sum | cut -d' ' -f1)
check "fsync of written data" $H fsync data
t1=$(now)
metric write_mib_s "$(rate $N $t0 $t1)" MiB/s
expect_eq "size of written file" $((N * 1048576)) "$(stat -c %s data 2>&1)"
drop_caches
t0=$(now)
sum_r=$(md5 data)
t1=$(now)
metric read_mib_s "$(rate $N $t0 $t1)" MiB/s
expect_eq "md5 after drop_caches" "$sum_w" "$sum_r"
remount
sum_m=$(md5 data)
expect_eq "md5 after umount+mount" "$sum_w" "$sum_m"
# a partial overwrite in the middle must land exactly where it was written
dd if=/dev/zero of=data bs=4096 seek=1000 count=3 conv=notrunc 2>/dev/null
expect_eq "non-zero bytes in the overwritten range" 0 "$(dd if=data bs=4096 skip=1000 count=3 2>/dev/null | od -An -v -tx1 | tr -d ' \n0' | wc -c | tr -d ' ')"
expect_eq "size unchanged by overwrite" $((N * 1048576)) "$(stat -c %s data 2>&1)"
cleanup_wd
finish
