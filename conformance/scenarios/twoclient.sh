# twoclient: two guests (ROLE=A and ROLE=B) on one export. Close-to-open coherence, rename,
# unlink and (NFSv4, or v3 with NLM) a byte-range lock held by one client are seen by the other. The guests step
# in lock-step through a rendezvous on the host (not through the mount, whose caches are under test).
. /job/lib.sh
# The cross-client lock check needs locks at the server: NFSv4, or v3 with NLM (V3_NLM=1).
LOCKVERS=$NFSVERS
[ "$NFSVERS" = 3 ] && [ "${V3_NLM:-}" = 1 ] && LOCKVERS=4-or-nlm
post() { $H rdv 10.0.2.2 $RDV_PORT post "$1" || fail "rendezvous post $1"; }
await() { $H rdv 10.0.2.2 $RDV_PORT wait "$1" 90 || { fail "rendezvous wait $1: the other client failed or is stuck"; finish; }; }
if [ "$ROLE" = A ]; then
  setup_wd
  post ready
  echo v1-from-A > shared
  post written1
  await written2
  expect_eq "A sees B's write after open (close-to-open)" v2-from-B-longer "$(rd shared)"
  mv shared renamed
  post renamed
  await checked-rename
  rm renamed
  post unlinked
  await checked-unlink
  mkdir sub && echo y > sub/y
  post mkdir
  await checked-mkdir
  await b-looked-for-late
  echo late > sub/late || fail "A: create sub/late while B has looked for it"
  post created-late
  await checked-late
  case "$LOCKVERS" in
    4*) : > /tmp/holder.out # emptied before the fork (see locking.sh's hold)
        $H lock lk 0 100 w try 30 > /tmp/holder.out 2>&1 &
        HOLDER=$!
        n=0; while ! grep -q locked /tmp/holder.out; do n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1; done
        expect_eq "A holds a write lock" locked "$(cat /tmp/holder.out)"
        post locked
        await lock-checked
        kill $HOLDER; wait $HOLDER
        post unlocked
        await lock-rechecked ;;
  esac
  await b-done
  cleanup_wd
else
  await ready
  cd "$WD" || fail "B: cd into A's directory $WD"
  await written1
  expect_eq "B sees A's write after open (close-to-open)" v1-from-A "$(rd shared)"
  echo v2-from-B-longer > shared
  post written2
  await renamed
  expect_eq "B opens the new name after A's rename" v2-from-B-longer "$(rd renamed)"
  # Opening a directory by path forces the client to revalidate it (close-to-open applies to
  # directories too), so this listing must already reflect A's rename.
  expect_eq "B's fresh listing after A's rename" renamed "$($H readdir "$WD" 2>&1 | sort | tr '\n' ' ' | sed 's/ $//')"
  # Not asserted: opening the OLD name may still succeed on v4.1+ while B's dentry is cached,
  # because the client then opens by filehandle (CLAIM_FH) and the file still exists.
  echo "INFO: B open(old name) after A's rename: $($H errno open shared)"
  post checked-rename
  await unlinked
  expect_eq "B: name gone after A's unlink" ENOENT "$($H errno open renamed)"
  expect_eq "B's fresh listing after A's unlink" "" "$($H readdir "$WD" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
  post checked-unlink
  await mkdir
  expect_eq "B lists A's new directory" y "$(ls sub 2>&1)"
  expect_eq "B reads a file in A's new directory" y "$(rd sub/y)"
  post checked-mkdir
  # B has just listed sub (a sid client then holds a directory delegation on it) and caches
  # "late" as absent. A's create recalls that delegation; B's fresh listing, which revalidates
  # the directory, must then show the new name, and the name must open. (Opening it before
  # the listing may fail on any server: Linux trusts a negative entry until the directory's
  # attributes time out, so this cannot show that the recall happened; mds/tests/
  # dir_delegation.rs does.)
  expect_eq "B: sub/late does not exist yet" ENOENT "$($H errno open sub/late)"
  post b-looked-for-late
  await created-late
  listing="$($H readdir "$WD/sub" 2>&1 | sort | tr '\n' ' ' | sed 's/ $//')"
  expect_eq "B's fresh listing after A's create in sub" "late y" "$listing"
  # Only a listing that revalidated the directory lets go of the negative entry.
  if [ "$listing" = "late y" ]; then
    expect_eq "B opens the file A created where B had looked for it" late "$(rd sub/late)"
  fi
  post checked-late
  case "$LOCKVERS" in
    4*) await locked
        $H lock lk 0 100 w try 0 > /dev/null 2>&1; r=$?
        expect_eq "B's write lock conflicts with A's (exit 11 = conflict)" 11 "$r"
        post lock-checked
        await unlocked
        $H lock lk 0 100 w try 0 > /dev/null 2>&1; r=$?
        expect_eq "B's write lock granted after A released" 0 "$r"
        post lock-rechecked ;;
  esac
  post b-done
fi
finish
