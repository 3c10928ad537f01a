# bigdir: NENTRIES names created in one directory are listed completely and exactly once
. /job/lib.sh
setup_wd
N=${NENTRIES:-10000}
mkdir big
t0=$(now)
i=0
while [ $i -lt $N ]; do : > big/entry-$i || { fail "create big/entry-$i"; break; }; i=$((i + 1)); done
t1=$(now)
metric create_ops_s "$(opsrate $N $t0 $t1)" ops/s
drop_caches
$H readdir big > /tmp/listing || fail "readdir failed"
expect_eq "entries listed" $N "$(wc -l < /tmp/listing | tr -d ' ')"
expect_eq "names listed more than once" 0 "$(sort /tmp/listing | uniq -d | wc -l | tr -d ' ')"
seq 0 $((N - 1)) | sed 's/^/entry-/' | sort > /tmp/expected
sort /tmp/listing > /tmp/got
expect_eq "listed names missing or unexpected" 0 "$(diff /tmp/expected /tmp/got | grep -c '^[-+]entry')"
expect_eq "link count of a directory of files" 2 "$(stat -c %h big 2>&1)"
t0=$(now)
# one rm process for all names: a fork per name would measure TCG, not the server
(cd big && rm -f entry-*) || fail "unlink of all entries"
t1=$(now)
metric unlink_ops_s "$(opsrate $N $t0 $t1)" ops/s
expect_eq "entries left after removing all" 0 "$($H readdir big | wc -l | tr -d ' ')"
expect_eq "rmdir of the emptied big directory" OK "$($H errno rmdir big)"
cleanup_wd
finish
