# wdeleg: NFSv4 write delegations as two Linux clients and the server's own counters see them
# (issue 44, item 2). Guest A creates files alone and writes them; the host (src/wdeleg.rs) reads
# every MDS node's /metrics at each step and posts what it saw ("f1:held" or "f1:none",
# "f2:held" or "f2:none"); guest B stats and reads A's files. The steps are in src/wdeleg.rs.
#
# What the kernels do, and all this script relies on: bookworm's 6.1 and sid's 7.x both take a
# write delegation an OPEN for writing is given, open the file again without asking the server
# while they hold it, answer CB_GETATTR with their own size (fs/nfs/callback_proc.c,
# nfs4_callback_getattr: i_size, the change attribute moved while pages are dirty), flush and
# DELEGRETURN on CB_RECALL, and return on their own a delegation of a closed file they did not
# use for a lease renewal period (nfs_expire_unreferenced_delegations); an open file's stays.
. /job/lib.sh
# fact VAR PREFIX: VAR = the name the host or the other guest posted with PREFIX ("f1:held")
fact() {
  _v=$($H rdv 10.0.2.2 "$RDV_PORT" get "$2" 150) ||
    { fail "rendezvous get $2: the host or the other guest failed or is stuck"; finish; }
  eval "$1=\$_v"
}
# off page boundaries: a short last page in each
F1=5000
F2=7000
if [ "$ROLE" = A ]; then
  setup_wd
  post ready
  dr0=$(opcount DELEGRETURN)
  head -c $F1 /dev/urandom > /tmp/f1
  cp /tmp/f1 f1 || fail "A: create and write f1"
  post "a-md5-f1:$(md5 /tmp/f1)"
  post a-f1
  fact f1 f1:
  if [ "$f1" = f1:held ]; then
    o0=$(opcount OPEN); cat f1 > /dev/null; o1=$(opcount OPEN)
    echo "INFO: A re-opened f1 for reading: OPEN calls +$((o1 - o0)) (0: opened under its write delegation)"
  fi
  head -c $F2 /dev/urandom > /tmp/f2
  post "a-md5-f2:$(md5 /tmp/f2)"
  # f2 stays open with its pages dirty in A's cache (written back after 30 s at the earliest)
  exec 3> f2 || { fail "A: create f2"; finish; }
  cat /tmp/f2 >&3 || fail "A: write f2"
  w0=$(opcount WRITE)
  post a-f2
  fact f2 f2:
  # No write delegation: B may see f2's size and bytes only once A closed it (close-to-open).
  [ "$f2" = f2:held ] || exec 3>&-
  post a-f2-ready
  await host-read 200
  w1=$(opcount WRITE)
  dr1=$(opcount DELEGRETURN)
  exec 3>&-
  if [ "$f2" = f2:held ]; then
    echo "INFO: A's WRITE calls: $w0 when it had written f2, $w1 after B's stat and reads (the recall made A flush)"
    if [ $((dr1 - dr0)) -ge 1 ]; then
      pass "A returned its delegations when the server recalled them for B (DELEGRETURN +$((dr1 - dr0)))"
    else
      fail "A returned its delegations when the server recalled them for B: expected DELEGRETURN +1 or more, got +$((dr1 - dr0))"
    fi
  else
    echo "INFO: A's DELEGRETURN calls +$((dr1 - dr0)) (no write delegation held for f2)"
  fi
  await b-done
  cleanup_wd
else
  await ready 150
  cd "$WD" || { fail "B: cd into A's directory $WD"; finish; }
  fact m1 a-md5-f1:; m1=${m1#a-md5-f1:}
  fact m2 a-md5-f2:; m2=${m2#a-md5-f2:}
  await a-f2-ready 150
  fact f2 f2:
  expect_eq "B: stat size of f1, which A wrote and closed (A may still hold its delegation)" $F1 "$(stat -c %s f1 2>&1)"
  if [ "$f2" = f2:held ]; then
    stat_why="A holds it open with unflushed writes under a write delegation: the server asks A, CB_GETATTR"
    read_why="A holds it open: the server recalled the delegation, at B's stat or OPEN, and A flushed first"
  else
    stat_why="A closed it: no write delegation, close-to-open"
    read_why=$stat_why
  fi
  expect_eq "B: stat size of f2 ($stat_why)" $F2 "$(stat -c %s f2 2>&1)"
  post b-stat
  await host-stat 150
  expect_eq "B reads A's bytes of f1 (B's OPEN recalls A's delegation if A still holds it)" "$m1" "$(md5 f1)"
  expect_eq "B reads A's bytes of f2 ($read_why)" "$m2" "$(md5 f2)"
  post b-read
  await host-read 150
  # B's read delegations go back with its inodes, before A removes the files
  drop_caches
  post b-done
fi
finish
