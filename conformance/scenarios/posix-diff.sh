# posix-diff: the same seeded random sequence of file system calls, as several identities, on a
# tmpfs inside the guest (the oracle: the guest's own kernel) and on the NFS mount; the traces
# (every return value and errno, then type, mode, owner, group, link count and size of every
# path touched) must be identical. The program is guest/posixdiff.c (in cfshelper): it compares,
# and on a mismatch prints the first differing lines and the shortest sequence it finds.
# Env: SEEDS (how many seeds), SEED0 (the first), CALLS (per seed), MIN_RERUNS / MIN_SECONDS
# (bounds of the minimisation per failing seed), POSIXDIFF_TARGETS (below).
. /job/lib.sh
SEEDS=${SEEDS:-1}; SEED0=${SEED0:-1}; CALLS=${CALLS:-200}
MIN_RERUNS=${MIN_RERUNS:-300}; MIN_SECONDS=${MIN_SECONDS:-120}
setup_wd

# the oracle must really be a local tmpfs, not another NFS directory
ORACLE=/tmp/posixdiff
mkdir -p $ORACLE
expect_eq "oracle file system" tmpfs "$(stat -f -c %T $ORACLE 2>&1)"
expect_eq "test file system" nfs "$(stat -f -c %T "$WD" 2>&1)"

[ "$SEEDS" -ge 1 ] 2>/dev/null || fail "SEEDS='$SEEDS': at least one seed must run"
# POSIXDIFF_TARGETS="SEED:CALL ..." (debugging aid, passed through by the harness): minimise for
# those calls instead of each seed's first difference
RUNS=${POSIXDIFF_TARGETS:-$(i=0; while [ $i -lt "$SEEDS" ]; do echo $((SEED0 + i)); i=$((i + 1)); done)}
t0=$(now); n=0
for run in $RUNS; do
  n=$((n + 1))
  seed=${run%%:*}; target=; [ "$seed" != "$run" ] && target=${run#*:}
  mkdir "$ORACLE/s$seed" "$WD/s$seed" || { fail "mkdir s$seed"; continue; }
  $H posixdiff $seed "$CALLS" "$ORACLE/s$seed" "$WD/s$seed" "$MIN_RERUNS" "$MIN_SECONDS" $target \
    > /tmp/pd.out 2> /tmp/pd.err
  rc=$?
  cat /tmp/pd.out
  case $rc in
    # 0 counts only with the program's own PASS line for this seed: a helper that did nothing
    # (missing, crashed before printing) must never pass
    0) grep -q "^PASS: posix-diff seed $seed: $CALLS calls" /tmp/pd.out \
         || fail "posix-diff seed $seed: exit 0 without a PASS line: $(head -c 300 /tmp/pd.err | tr '\n' ' ')" ;;
    # the program printed FAIL lines with the mismatch already
    1) grep -q "^FAIL: posix-diff seed $seed" /tmp/pd.out && FAILS=$((FAILS + 1)) \
         || fail "posix-diff seed $seed: exit 1 without a FAIL line" ;;
    *) fail "posix-diff seed $seed: the program could not run (exit $rc): $(head -c 300 /tmp/pd.err | tr '\n' ' ')" ;;
  esac
  rm -rf "$ORACLE/s$seed" "$WD/s$seed"
done
t1=$(now)
echo "INFO: $n seed(s) of $CALLS calls in $(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.1f", b - a }') s"
[ $n -ge 1 ] || fail "no seed ran"
metric posixdiff_seeds "$n" seeds
cleanup_wd
finish
