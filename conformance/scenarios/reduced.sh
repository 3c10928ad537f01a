# reduced (cfs-cluster-reduce only: --encode-after 2 --reduce on). Files are written and closed:
# 9 MiB + 12345 B of random bytes, a second copy of them under another name, a text of ~2.6 MB
# and 100 KiB of random bytes. The cluster reduces each (dedup against what it stores,
# compression, shared segments) and deletes its mirror copies; the guest cannot see that: the
# host (src/reduced.rs) waits for it, then reads the MDS's counters around the guest's reads,
# which come after a remount (no cached page or layout survives) and go through the MDS (no
# layout is handed out for a reduced file). Then a range of the first copy is overwritten (the
# server copies it back to mirrors first) and both copies read back before and after the host
# saw it reduced again; the second copy is removed, and the first still reads back.
. /job/lib.sh
SEED=$(( $(date +%s) ^ $$ ))
MIB=1048576
FILES="big:$((9 * MIB + 12345)) small:$((100 * 1024))"
setup_wd
seeded_files "$SEED" "$FILES"
check "write dup (a copy of big) and close it" cp /tmp/want.big dup
cp /tmp/want.big /tmp/want.dup
seq 1 400000 | sed 's/^/line /' > /tmp/want.text
check "write text and close it" cp /tmp/want.text text
sync
for n in dup text; do LIST="$LIST,$n=$(stat -c %i $n)/$(stat -c %s $n)"; done
post "files:$LIST"
post written
await reduced 300
remount
drop_caches
for n in big small dup text; do same "$n reads back after it was reduced (remounted)" /tmp/want.$n $n; done
post read
await counted 60
# Overwrite the first copy: 64 KiB across the 2 MiB boundary and 1000 bytes at an odd offset.
$H gen /tmp/patch $((SEED + 9)) 1 || { fail "make /tmp/patch"; finish; }
overwrite_ranges big /tmp/want.big
check "fsync the overwritten reduced file" $H fsync big
expect_eq "size unchanged by the overwrite" $((9 * MIB + 12345)) "$(stat -c %s big 2>&1)"
drop_caches
same "overwritten ranges read back (drop_caches)" /tmp/want.big big
same "the copy sharing its segments is unchanged" /tmp/want.dup dup
post overwritten
await rereduced 300
remount
drop_caches
same "overwritten file reads back after it was reduced again (remounted)" /tmp/want.big big
same "dup unchanged" /tmp/want.dup dup
check "remove dup" rm dup
expect_eq "dup is gone" ENOENT "$($H errno open dup)"
post removed
await swept 120
remount
drop_caches
same "big reads back after dup, which shared its segments, was removed" /tmp/want.big big
same "text unchanged" /tmp/want.text text
rm -f /tmp/want.* /tmp/patch
cleanup_wd
post done
finish
