# snapshot (cfs, cfs-nowdeleg, cfs-cluster, cfs-cluster-nowdeleg, cfs-cluster-mds3: the host,
# src/snapshot.rs, runs `cfs admin snapshot create / --name NAME` against the server). The
# guest writes a tree (random bytes, an empty file, a hard link, a symlink, modes, an owner,
# set times, and at 4.2 extended attributes), remounts (no delegation or cached attribute is
# left: the server holds what the manifest says) and records a manifest of it; the host takes
# the snapshot. The guest then changes, removes, renames and truncates in the live tree, and
# `.snapshot/NAME` must still show the manifest exactly (sha256, mode, size, mtime, nlink,
# owner, symlink targets, attributes), the two hard links one inode, on its own st_dev, and
# every change inside it must fail with EROFS. A file held open for writing across the cut
# keeps its old bytes there (the data quiesce). The host deletes the snapshot at the end.
. /job/lib.sh
SEED=$(( $(date +%s) ^ $$ ))
MIB=1048576
XATTRS=0
[ "$NFSVERS" = 4.2 ] && XATTRS=1
setup_wd
WDNAME=${WD##*/}
mkdir -p tree/sub/deep tree/empty || { fail "mkdir the tree"; finish; }
$H gen /tmp/gen "$SEED" 3 || { fail "make /tmp/gen"; finish; }
head -c $((2 * MIB + 12345)) /tmp/gen > /tmp/want.big
tail -c 5000 /tmp/gen > /tmp/want.small
rm -f /tmp/gen
check "write big (2 MiB + 12345 B)" cp /tmp/want.big tree/big
check "write small (5000 B)" cp /tmp/want.small tree/small
head -c 100000 /tmp/want.big > /tmp/want.deep
check "write deep/f" cp /tmp/want.deep tree/sub/deep/f
: > tree/zero
check "hard link big" ln tree/big tree/sub/big.link
check "symlink" ln -s ../big tree/sub/sym
check "dangling symlink" ln -s /nowhere/at/all tree/dangling
chmod 640 tree/small; chmod 751 tree/sub; chmod 700 tree/sub/deep; chmod 4755 tree/zero
chown 1000:1000 tree/sub/deep/f
check "set small's times" touch -d "2021-02-03 04:05:06" tree/small
check "set deep/f's times" touch -d "2019-12-31 23:59:58" tree/sub/deep/f
if [ $XATTRS = 1 ]; then
  expect_eq "an attribute on small" OK "$($H xattr set tree/small user.color blue)"
  expect_eq "an attribute on sub" OK "$($H xattr set tree/sub user.pin hot)"
fi
sync
# manifest DIR: one line per entry under DIR, sorted (path, kind, mode, size, nlink, uid, gid,
# mtime, and the sha256 of a file's bytes, a symlink's target, and at 4.2 the attributes)
manifest() {
  ( cd "$1" 2>/dev/null || { echo "cannot cd $1"; exit; }
    find . | sort | while read -r p; do
      if [ -L "$p" ]; then
        echo "$p L $(stat -c '%a %h %u %g %Y' "$p") -> $(readlink "$p")"
        continue
      elif [ -d "$p" ]; then
        echo "$p D $(stat -c '%a %h %u %g %Y' "$p")"
      else
        echo "$p F $(stat -c '%a %s %h %u %g %Y' "$p") $(sha256sum < "$p" | cut -d' ' -f1)"
      fi
      if [ $XATTRS = 1 ]; then
        for x in $($H xattr list "$p"); do echo "$p X $x=$($H xattr get "$p" "$x")"; done
      fi
    done )
}
# No delegation, no cached attribute: the manifest is what the server holds.
remount
manifest tree > /tmp/before
expect_eq "entries in the manifest" 11 "$(grep -c -v ' X ' /tmp/before)"
# A writer holds a file open across the cut (with data servers, an RW layout): its write
# after the cut must not reach the snapshot. The server recalls the layout before the cut;
# without that, Linux would write through its cached layout straight under the snapshot.
head -c $MIB /tmp/want.big > /tmp/want.held
exec 7<>held || { fail "open held"; finish; }
cat /tmp/want.held >&7 || fail "write held"
sync
post tree
R=$($H rdv 10.0.2.2 "$RDV_PORT" get taken: 150) || { fail "rendezvous get taken: (no snapshot)"; finish; }
NAME=${R#taken:}
SNAP=$MNT/.snapshot/$NAME
S=$SNAP/$WDNAME/tree

# The live tree changes every way after the cut.
check "overwrite held (open since before the cut)" dd if=/dev/zero of=held bs=4096 count=16 conv=notrunc,fsync
exec 7>&-
dd if=/dev/zero of=tree/big bs=4096 seek=100 count=16 conv=notrunc 2>/dev/null || fail "overwrite big"
check "truncate small" truncate -s 10 tree/small
check "remove deep/f" rm tree/sub/deep/f
check "rename the symlink" mv tree/sub/sym tree/sub/sym2
check "remove the hard link" rm tree/sub/big.link
check "chmod big" chmod 600 tree/big
check "touch big" touch -d "2022-01-01 00:00:00" tree/big
check "a new file" sh -c 'echo new > tree/new'
check "rename a directory" mv tree/empty tree/empty2
[ $XATTRS = 1 ] && expect_eq "change small's attribute" OK "$($H xattr set tree/small user.color red)"
sync
manifest tree > /tmp/after
if cmp -s /tmp/before /tmp/after; then fail "the live tree did not change"; else pass "the live tree changed"; fi

# The snapshot is the tree as it was.
expect_eq ".snapshot is hidden from a listing of the root" 0 "$(ls -a $MNT | grep -c '^\.snapshot$')"
ls "$SNAP" > /dev/null 2>&1 || fail "the snapshot $NAME is not under $MNT/.snapshot: $(ls -a $MNT/.snapshot 2>&1 | head -c 300)"
snapshot_is_manifest() {
  manifest "$S" > /tmp/snap
  if cmp -s /tmp/before /tmp/snap; then pass "$1: .snapshot/$NAME shows the tree as it was ($(wc -l < /tmp/snap) lines)"
  else fail "$1: .snapshot/$NAME differs from the manifest: $(diff /tmp/before /tmp/snap | grep '^[-+][^-+]' | head -n 8 | tr '\n' ' ')"; fi
}
snapshot_is_manifest "cached"
same "big's old bytes in the snapshot" /tmp/want.big "$S/big"
same "small's old bytes in the snapshot" /tmp/want.small "$S/small"
same "deep/f, removed after the cut, reads its old bytes in the snapshot" /tmp/want.deep "$S/sub/deep/f"
same "held, open for writing across the cut, has its old bytes in the snapshot" /tmp/want.held "$SNAP/$WDNAME/held"
expect_eq "held's live bytes are the write after the cut" "$(head -c 65536 /dev/zero | sha256sum)" "$(head -c 65536 held | sha256sum)"
expect_eq "the two hard links are one inode in the snapshot" "$(stat -c %i "$S/big" 2>&1)" "$(stat -c %i "$S/sub/big.link" 2>&1)"
expect_eq "reading through the symlink in the snapshot" "$(sha256sum < /tmp/want.big)" "$(sha256sum < "$S/sub/sym" 2>&1)"
LIVE_DEV=$(stat -c %d tree)
SNAP_DEV=$(stat -c %d "$S" 2>&1)
if [ "$LIVE_DEV" != "$SNAP_DEV" ]; then pass "the snapshot has its own st_dev ($SNAP_DEV, live $LIVE_DEV)"
else fail "the snapshot shares the live tree's st_dev $LIVE_DEV"; fi
expect_eq ".snapshot itself is on the live st_dev" "$(stat -c %d $MNT)" "$(stat -c %d $MNT/.snapshot 2>&1)"
drop_caches
snapshot_is_manifest "after drop_caches"

# Nothing changes inside a snapshot: each call fails with EROFS.
expect_eq "create a file" EROFS "$($H errno openw "$S/new")"
expect_eq "open a file for writing" EROFS "$($H errno append "$S/big")"
expect_eq "unlink" EROFS "$($H errno unlink "$S/small")"
expect_eq "rename" EROFS "$($H errno rename "$S/small" "$S/small2")"
expect_eq "mkdir" EROFS "$($H errno mkdir "$S/d")"
expect_eq "rmdir" EROFS "$($H errno rmdir "$S/empty")"
expect_eq "chmod" EROFS "$($H errno chmod "$S/big" 777)"
expect_eq "chown" EROFS "$($H errno chown "$S/big" 1000 1000)"
expect_eq "mkdir in .snapshot" EROFS "$($H errno mkdir "$MNT/.snapshot/x")"
# erofs DESC CMD...: the command fails and says "Read-only file system"
erofs() {
  d=$1; shift
  if "$@" > /tmp/erofs.out 2>&1; then fail "$d: '$*' succeeded inside the snapshot"
  elif grep -q 'Read-only file system' /tmp/erofs.out; then pass "$d: EROFS"
  else fail "$d: '$*' failed otherwise: $(head -c 300 /tmp/erofs.out | tr '\n' ' ')"; fi
}
erofs "touch an existing file" touch "$S/big"
erofs "touch a new file" touch "$S/new"
erofs "rm" rm -f "$S/small"
erofs "mv" mv "$S/small" "$S/small3"
erofs "ln" ln "$S/big" "$S/big2"
erofs "ln -s" ln -s big "$S/sym3"
erofs "chmod" chmod 600 "$S/small"
erofs "truncate" truncate -s 0 "$S/big"
erofs "dd" dd if=/dev/zero of="$S/big" bs=4096 count=1 conv=notrunc
# Linux asks ACCESS for XAWRITE before it sends SETXATTR or REMOVEXATTR and answers EACCES
# itself when it is not granted (fs/nfs/nfs4proc.c, as for a read-only knfsd export): the
# server grants no XAWRITE inside a snapshot, so EACCES is the kernel's answer; EROFS would
# be the server's. Either way nothing changes (the manifest below has the old attributes).
rofs_or_acces() {
  case "$2" in EROFS|EACCES) pass "$1: $2";; *) fail "$1: expected EROFS or EACCES, got '$2'";; esac
}
if [ $XATTRS = 1 ]; then
  rofs_or_acces "setxattr" "$($H xattr set "$S/small" user.x 1)"
  rofs_or_acces "removexattr" "$($H xattr remove "$S/small" user.color)"
fi
snapshot_is_manifest "after the refused changes"
same "big unchanged by the refused writes" /tmp/want.big "$S/big"

# Deleted, the snapshot is gone from .snapshot (after a remount: the kernel's submount of it
# goes with the mount).
cd "$WD"
post checked
await deleted 150
remount
expect_eq "the deleted snapshot is gone" ENOENT "$($H errno open "$SNAP")"
rm -f /tmp/want.* /tmp/before /tmp/after /tmp/snap
cleanup_wd
post done
finish
