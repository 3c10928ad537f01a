# locking: fcntl byte-range locks and flock(2) conflicts between processes on this client.
# On NFSv4 both travel to the server as LOCK/LOCKT (the client maps flock onto whole-file locks);
# v3 mounts use nolock (no rpc.statd in the guest), so there they are only local locks, except
# with V3_NLM=1 (a server with NLM, the guest runs `cfshelper statd`): then they go to the
# server through NLM, and a blocked waiter is granted on its client's next poll (up to 30 s).
. /job/lib.sh
setup_wd
: > f
# hold LOCKSPEC in the background; wait until the holder reports it has the lock
hold() {
  # Emptied here, not by the background job's redirection: that runs after the fork, so the
  # wait below could still read the previous holder's "locked".
  : > /tmp/holder.out
  $H "$@" > /tmp/holder.out 2>&1 &
  HOLDER=$!
  n=0
  while ! grep -q locked /tmp/holder.out 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 100 ] && { fail "holder never got its lock: $(cat /tmp/holder.out)"; return 1; }
    kill -0 $HOLDER 2>/dev/null || { fail "holder exited: $(cat /tmp/holder.out)"; return 1; }
    sleep 0.1
  done
}
# end the holder now (its locks go with it): holders are started for far longer than the checks
# take under TCG and released here, so no check races a timer and none waits one out
release() { kill $HOLDER 2>/dev/null; wait $HOLDER 2>/dev/null; }
try() { $H "$@" > /dev/null 2>/tmp/try.err; r=$?; [ $r = 0 ] && echo granted || { [ $r = 11 ] && echo conflict || echo "error($r): $(cat /tmp/try.err)"; }; }

hold lock f 0 100 w try 60
expect_eq "fcntl: write lock over a held write lock" conflict "$(try lock f 0 100 w try 0)"
expect_eq "fcntl: read lock overlapping a held write lock" conflict "$(try lock f 50 10 r try 0)"
expect_eq "fcntl: write lock on the adjacent range" granted "$(try lock f 100 100 w try 0)"
expect_eq "fcntl: F_GETLK sees the holder" conflict "$($H getlk f 0 10 w | cut -d' ' -f1)"
t0=$(now)
(sleep 1.5; kill $HOLDER 2>/dev/null) &
expect_eq "fcntl: blocking lock granted once the holder exits" granted "$(try lock f 0 100 w wait 0)"
t1=$(now)
expect_eq "fcntl: blocking lock waited for the holder" yes "$(awk -v a=$t0 -v b=$t1 'BEGIN { print (b - a > 1) ? "yes" : "no" }')"
wait $HOLDER 2>/dev/null

hold lock f 0 100 r try 60
expect_eq "fcntl: read lock shares a held read lock" granted "$(try lock f 0 100 r try 0)"
expect_eq "fcntl: write lock over a held read lock" conflict "$(try lock f 0 1 w try 0)"
release
expect_eq "fcntl: write lock after the reader exited" granted "$(try lock f 0 100 w try 0)"

: > g
hold flock g ex try 60
expect_eq "flock: exclusive over a held exclusive" conflict "$(try flock g ex try 0)"
expect_eq "flock: shared over a held exclusive" conflict "$(try flock g sh try 0)"
release
expect_eq "flock: exclusive after the holder exited" granted "$(try flock g ex try 0)"
hold flock g sh try 60
expect_eq "flock: shared alongside a held shared" granted "$(try flock g sh try 0)"
expect_eq "flock: exclusive over a held shared" conflict "$(try flock g ex try 0)"
release

cleanup_wd
finish
