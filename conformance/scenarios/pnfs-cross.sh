# pnfs-cross (cfs-cluster only): the same bytes through the kernel and the Rust client. The host
# (src/hostops.rs) `cfs put`s a file host cfshelper made from SEED1, which the kernel must read
# back exactly after a fresh mount; the kernel writes one from SEED2, which the host `cfs get`s
# and compares byte for byte with its own cfshelper output.
. /job/lib.sh
N=${SIZE_MIB:-32}
setup_wd
post ready
await put-done 180
remount
drop_caches
expect_eq "kernel reads what cfs put wrote (seed $SEED1, fresh mount)" OK "$($H verify from-host $SEED1 $N)"
check "write $N MiB (seed $SEED2)" $H gen from-guest $SEED2 $N
check "fsync" $H fsync from-guest
post guest-written
await got 240
cleanup_wd
finish
