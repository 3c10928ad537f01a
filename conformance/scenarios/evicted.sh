# evicted (cfs-cluster-s3 only: a cache-mode cluster whose / is pinned to the bucket). Files of
# 5 MiB + 777 B, 1 MiB and 100 KiB are written and closed; they take the directory's pin
# (user.cfs.tier = s3, inherited from /) and leave the data servers as soon as the bucket holds
# them. The host (src/evicted.rs) waits until every one is evicted, and counts the bytes the
# MDS read from the bucket around the guest's reads, which come after a remount so no cached
# page or layout survives: every byte read comes from S3. Then a pin set from the guest, a
# value that is no pin (EINVAL), and writes into an evicted file (it waits for its restore).
. /job/lib.sh
SEED=$(( $(date +%s) ^ $$ ))
MIB=1048576
FILES="big:$((5 * MIB + 777)) mid:$MIB small:$((100 * 1024))"
setup_wd
seeded_files "$SEED" "$FILES"
sync
# NFS carries xattrs from v4.2 on
[ "$NFSVERS" = 4.2 ] && expect_eq "a new file takes its directory's pin" s3 "$($H xattr get big user.cfs.tier)"
post "files:$LIST"
post written
await evicted 180
remount
drop_caches
for f in $FILES; do n=${f%%:*}; same "$n reads back from the bucket (remounted)" /tmp/want.$n $n; done
post read
await counted 60
if [ "$NFSVERS" = 4.2 ]; then
  expect_eq "pin a file to flash" OK "$($H xattr set small user.cfs.tier flash)"
  expect_eq "its pin" flash "$($H xattr get small user.cfs.tier)"
  expect_eq "a value that is no pin" EINVAL "$($H xattr set small user.cfs.tier tape)"
  expect_eq "the pin is unchanged" flash "$($H xattr get small user.cfs.tier)"
fi
# Writes into an evicted file: they wait (NFS4ERR_DELAY) until it is back on flash, then land
# among its old bytes; a truncation too.
$H gen /tmp/patch $((SEED + 9)) 1 || { fail "make /tmp/patch"; finish; }
for t in big /tmp/want.big; do
  dd if=/tmp/patch of=$t bs=4096 seek=$((MIB / 4096 - 2)) count=16 conv=notrunc 2>/dev/null ||
  fail "overwrite $t"
done
check "fsync the overwritten evicted file" $H fsync big
check "truncate the evicted file mid" truncate -s 12345 mid
head -c 12345 /tmp/want.mid > /tmp/want.mid2
drop_caches
same "overwritten ranges read back (drop_caches)" /tmp/want.big big
same "the truncated file" /tmp/want.mid2 mid
post written2
rm -f /tmp/want.* /tmp/patch
cleanup_wd
post done
finish
