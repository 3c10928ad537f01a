# encoded (cfs-cluster-ec3 and cfs-cluster-ec6 only: clusters with --encode-after 2). Files of
# three sizes are written and closed: 9 MiB + 12345 B (a partial last stripe) and 3 MiB are
# erasure-coded by the cluster, 100 KiB stays mirrored (parity would not pay). The guest cannot
# see the data servers: the host (src/encoded.rs) waits until the shards are there and the
# mirror copies gone, and reads the MDS/DS counters around the guest's reads, which come after
# a remount so no cached page or layout survives. Then a range of an encoded file is overwritten
# (the server copies it back to mirrors first) and read back before and after the host saw it
# encoded again; an encoded file is removed (the host checks its shards go).
. /job/lib.sh
SEED=$(( $(date +%s) ^ $$ ))
MIB=1048576
FILES="big:$((9 * MIB + 12345)) mid:$((3 * MIB)) small:$((100 * 1024))"
setup_wd
seeded_files "$SEED" "$FILES"
sync
post "files:$LIST"
post written
await encoded 300
remount
drop_caches
for f in $FILES; do n=${f%%:*}; same "$n reads back after it was encoded (remounted)" /tmp/want.$n $n; done
post read
await counted 60
# Overwrite an encoded file: 64 KiB across the 2 MiB boundary (a shard unit's end) and 1000
# bytes at an odd offset; the same change to the expected copy.
$H gen /tmp/patch $((SEED + 9)) 1 || { fail "make /tmp/patch"; finish; }
overwrite_ranges big /tmp/want.big
check "fsync the overwritten encoded file" $H fsync big
expect_eq "size unchanged by the overwrite" $((9 * MIB + 12345)) "$(stat -c %s big 2>&1)"
drop_caches
same "overwritten ranges read back (drop_caches)" /tmp/want.big big
post overwritten
await reencoded 300
remount
drop_caches
same "overwritten file reads back after it was encoded again (remounted)" /tmp/want.big big
same "small file unchanged" /tmp/want.small small
check "remove the encoded file mid" rm mid
expect_eq "mid is gone" ENOENT "$($H errno open mid)"
post removed
rm -f /tmp/want.* /tmp/patch
cleanup_wd
post done
finish
