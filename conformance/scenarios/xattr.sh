# xattr: user.* extended attributes (RFC 8276) through the kernel client: set, get, list,
# the create/replace flags and their errors, a 64 KiB value (and E2BIG past it), Linux's
# permission rules as another user, a directory's attributes, removal, and every value again
# after a kill -9 and restart of the server (single-node cfs; src/restart.rs), after
# drop_caches and after umount+mount. NFS carries xattrs from v4.2 on: on older mounts
# the kernel answers EOPNOTSUPP, which is checked instead. XATTRS=1: the mount carries them
# whatever NFSVERS says (`cfs mount`, which fuse-run.sh runs with NFSVERS=4.1).
. /job/lib.sh
setup_wd
: > f
case "${XATTRS:-$NFSVERS}" in
  1|4.2) ;;
  *)
    expect_eq "v$NFSVERS carries no xattrs" ENOTSUP "$($H xattr set f user.a 1)"
    cleanup_wd
    finish ;;
esac
expect_eq "set a new attribute" OK "$($H xattr set f user.color blue)"
expect_eq "read it back" blue "$($H xattr get f user.color)"
expect_eq "create over an existing name" EEXIST "$($H xattr create f user.color red)"
expect_eq "replace a missing name" ENODATA "$($H xattr replace f user.shape round)"
expect_eq "replace an existing name" OK "$($H xattr replace f user.color red)"
expect_eq "the replaced value" red "$($H xattr get f user.color)"
expect_eq "a name never set" ENODATA "$($H xattr get f user.none)"
expect_eq "an empty value" OK "$($H xattr set f user.empty '')"
expect_eq "its size" 0 "$($H xattr size f user.empty)"
expect_eq "a 64 KiB value" OK "$($H xattr set f user.big @65536)"
expect_eq "its size" 65536 "$($H xattr size f user.big)"
expect_eq "a value past 64 KiB" E2BIG "$($H xattr set f user.big2 @65537)"
expect_eq "listing" "user.big user.color user.empty" "$($H xattr list f | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "a namespace NFS does not carry" ENOTSUP "$($H xattr set f trusted.x 1)"
chmod 644 f
expect_eq "another user reads a readable file's" red "$($H as 1000 1000 - xattr get f user.color)"
expect_eq "another user may not set them" EACCES "$($H as 1000 1000 - xattr set f user.x 1)"
expect_eq "nor remove them" EACCES "$($H as 1000 1000 - xattr remove f user.color)"
mkdir d
expect_eq "a directory's attribute" OK "$($H xattr set d user.pin hot)"
expect_eq "read back" hot "$($H xattr get d user.pin)"
expect_eq "remove one" OK "$($H xattr remove f user.empty)"
expect_eq "gone" ENODATA "$($H xattr get f user.empty)"
expect_eq "remove it again" ENODATA "$($H xattr remove f user.empty)"
# The host kills a single-node server with -9 and starts it again here (src/restart.rs) and
# says "restart:done" (other kinds: "restart:none"); the mount recovers on its own. No
# rendezvous (`cfs mount`, fuse-run.sh): no restart.
if [ -n "${RDV_PORT:-}" ]; then
  post set
  R=$($H rdv 10.0.2.2 "$RDV_PORT" get restart: 150) || { fail "rendezvous get restart:"; finish; }
fi
if [ "${R:-}" = restart:done ]; then
  # Not from the client's xattr cache (fs/nfs/nfs42xattr.c): from the restarted server.
  drop_caches
  expect_eq "after the restart: the value" red "$($H xattr get f user.color)"
  expect_eq "after the restart: the big one" 65536 "$($H xattr size f user.big)"
  expect_eq "after the restart: the names" "user.big user.color" "$($H xattr list f | sort | tr '\n' ' ' | sed 's/ $//')"
  expect_eq "after the restart: the directory's" hot "$($H xattr get d user.pin)"
fi
drop_caches
expect_eq "after drop_caches: the value" red "$($H xattr get f user.color)"
expect_eq "after drop_caches: the big one" 65536 "$($H xattr size f user.big)"
remount
expect_eq "after a remount: the names" "user.big user.color" "$($H xattr list f | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "after a remount: the directory's" hot "$($H xattr get d user.pin)"
# A file's attributes go with it: a new file of the same name has none.
rm f
: > f
expect_eq "a new file under an old name has none" "" "$($H xattr list f)"
cleanup_wd
finish
