# mixed: guest A mounts NFSv3 through the cfs gateway, guest B NFSv4.1 from the MDS behind it
# (with pNFS in a cluster: B's bytes go to the data servers, and so do A's, through the
# gateway's layouts). On the same files: each sees the other's writes after open
# (close-to-open), renames and removes in a fresh listing, and their fcntl locks conflict (A's
# travel as NLM to the gateway, which takes them as NFSv4 locks; B's are NFSv4 locks).
. /job/lib.sh
MIB=${MIXED_MIB:-8}
post() { $H rdv 10.0.2.2 $RDV_PORT post "$1" || fail "rendezvous post $1"; }
await() { $H rdv 10.0.2.2 $RDV_PORT wait "$1" 120 || { fail "rendezvous wait $1: the other client failed or is stuck"; finish; }; }
listing() { $H readdir "$WD" 2>&1 | grep -v '^lk$' | sort | tr '\n' ' ' | sed 's/ $//'; }
if [ "$ROLE" = A ]; then
  expect_eq "A mounts NFSv3" 3 "$NFSVERS"
  setup_wd
  post ready
  $H gen data1 1 $MIB || fail "A: write data1 ($MIB MiB) through the gateway"
  post written1
  await verified1
  await written2
  expect_eq "A reads B's v4.1 file after open" OK "$($H verify data2 2 $MIB)"
  expect_eq "A reads B's small file" from-B "$(rd small)"
  echo from-A-longer > small
  mv data1 data1.renamed
  post renamed
  await checked-rename
  await b-removed
  expect_eq "A: the file B removed is gone" ENOENT "$($H errno open data2)"
  expect_eq "A's fresh listing after B's rename and removal" "data1.renamed small2" "$(listing)"
  expect_eq "A reads the file B renamed" from-A-longer "$(rd small2)"
  post checked-b
  # A (NLM through the gateway) holds a write lock; B's conflicts.
  : > /tmp/holder.out # emptied before the fork (see locking.sh's hold)
  $H lock lk 0 100 w try 60 > /tmp/holder.out 2>&1 &
  HOLDER=$!
  n=0; while ! grep -q locked /tmp/holder.out; do n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1; done
  expect_eq "A holds a write lock (NLM)" locked "$(cat /tmp/holder.out)"
  post locked
  await lock-checked
  kill $HOLDER; wait $HOLDER
  post unlocked
  # B holds one now; A's conflicts, and A's F_GETLK sees it.
  await b-locked
  $H lock lk 50 10 r try 0 > /dev/null 2>&1; r=$?
  expect_eq "A's read lock conflicts with B's v4.1 write lock (exit 11 = conflict)" 11 "$r"
  expect_eq "A's F_GETLK sees B's lock" conflict "$($H getlk lk 0 100 w | cut -d' ' -f1)"
  post a-checked
  await b-unlocked
  $H lock lk 0 100 w try 0 > /dev/null 2>&1; r=$?
  expect_eq "A's write lock granted after B released" 0 "$r"
  await b-done
  cleanup_wd
else
  expect_eq "B mounts NFSv4.1" 4.1 "$NFSVERS"
  await ready
  cd "$WD" || fail "B: cd into A's directory $WD"
  await written1
  expect_eq "B reads A's v3 file after open" OK "$($H verify data1 1 $MIB)"
  post verified1
  $H gen data2 2 $MIB || fail "B: write data2"
  echo from-B > small
  post written2
  await renamed
  expect_eq "B opens A's new name" OK "$($H verify data1.renamed 1 $MIB)"
  expect_eq "B's fresh listing after A's rename" "data1.renamed data2 small" "$(listing)"
  expect_eq "B reads A's overwrite of its file" from-A-longer "$(rd small)"
  post checked-rename
  rm data2 || fail "B: rm data2"
  mv small small2 || fail "B: mv small small2"
  post b-removed
  await checked-b
  await locked
  $H lock lk 0 100 w try 0 > /dev/null 2>/tmp/lk.err; r=$?
  [ $r = 11 ] || echo "INFO: B's lock attempt: $(cat /tmp/lk.err)"
  expect_eq "B's write lock conflicts with A's NLM lock (exit 11 = conflict)" 11 "$r"
  post lock-checked
  await unlocked
  : > /tmp/holder.out # emptied before the fork (see locking.sh's hold)
  $H lock lk 0 100 w try 60 > /tmp/holder.out 2>&1 &
  HOLDER=$!
  n=0; while ! grep -q locked /tmp/holder.out; do n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1; done
  expect_eq "B holds a write lock after A released" locked "$(cat /tmp/holder.out)"
  post b-locked
  await a-checked
  kill $HOLDER; wait $HOLDER
  post b-unlocked
  post b-done
fi
finish
