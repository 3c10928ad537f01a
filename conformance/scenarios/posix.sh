# posix: the everyday POSIX surface as the kernel client exposes it
. /job/lib.sh
setup_wd

echo one > f
expect_eq "create+write+read" one "$(rd f)"
echo two >> f
expect_eq "append" "$(printf 'one\ntwo')" "$(rd f)"
expect_eq "size after append" 8 "$(stat -c %s f 2>&1)"

truncate -s 100000 f
expect_eq "truncate grow: size" 100000 "$(stat -c %s f 2>&1)"
expect_eq "truncate grow: old bytes kept" one "$(head -n 1 f 2>&1)"
expect_eq "truncate grow: tail reads as zeros" 0000000000 "$(tail -c 10 f | od -An -v -tx1 | tr -d ' \n' | cut -c1-10)"
truncate -s 3 f
expect_eq "truncate shrink: size" 3 "$(stat -c %s f 2>&1)"
expect_eq "truncate shrink: content" one "$(rd f)"

echo src > a; echo dst > b
check "rename over an existing file" mv -f a b
expect_eq "rename: target has source content" src "$(rd b)"
expect_eq "rename: source name gone" ENOENT "$($H errno open a)"

echo linked > l1
check "hard link" ln l1 l2
expect_eq "link count after link" 2 "$(stat -c %h l1 2>&1)"
expect_eq "same inode through both names" "$(stat -c %i l1 2>&1)" "$(stat -c %i l2 2>&1)"
rm l1
expect_eq "link count after unlinking one name" 1 "$(stat -c %h l2 2>&1)"
expect_eq "content through the remaining name" linked "$(rd l2)"

check "symlink" ln -s some/target/path sl
expect_eq "readlink" some/target/path "$(readlink sl 2>&1)"
expect_eq "lstat type" "symbolic link" "$(stat -c %F sl 2>&1)"

check "chmod 640" chmod 640 f
expect_eq "mode after chmod" 640 "$(stat -c %a f 2>&1)"
check "chmod 4755 (setuid bit)" chmod 4755 f
expect_eq "mode after chmod 4755" 4755 "$(stat -c %a f 2>&1)"

check "numeric chown 1234:5678" chown 1234:5678 f
expect_eq "uid:gid after chown" 1234:5678 "$(stat -c %u:%g f 2>&1)"

check "touch -d (utimes)" touch -d "2001-02-03 04:05:06" f
expect_eq "mtime after touch -d" "$(date -d '2001-02-03 04:05:06' +%s)" "$(stat -c %Y f 2>&1)"

check "mkdir" mkdir d
expect_eq "type of new directory" directory "$(stat -c %F d 2>&1)"
echo x > d/inner
expect_eq "rmdir of a non-empty directory" ENOTEMPTY "$($H errno rmdir d)"
expect_eq "mkdir over an existing name" EEXIST "$($H errno mkdir d)"
rm d/inner
expect_eq "rmdir of the emptied directory" OK "$($H errno rmdir d)"
expect_eq "directory gone after rmdir" ENOENT "$($H errno open d)"

# an unlinked file stays readable through a descriptor opened before the unlink (silly rename)
echo still-here > open-unlinked
exec 3< open-unlinked
rm open-unlinked
expect_eq "unlinked file no longer visible by name" ENOENT "$($H errno open open-unlinked)"
expect_eq "unlinked file readable through its open fd" still-here "$($H readfd 3 2>&1 | tr '\000' @)"
exec 3<&-

dd if=/dev/zero of=fs bs=64k count=16 2>/dev/null
check "fsync" $H fsync fs
expect_eq "size after fsync" 1048576 "$(stat -c %s fs 2>&1)"

cleanup_wd
finish
