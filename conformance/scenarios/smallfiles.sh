# smallfiles (`bench --scenario smallfiles`): numbers, not pass/fail (a check fails only if the
# I/O itself fails). What write delegations change for one client writing many small files:
# NFILES files of 4 KiB each created, written and closed, then a sync (the data on the server);
# a stat of each file this client has just written (caches kept warm: with a delegation the
# client answers from its own attributes, without one it asks once its attribute cache times
# out); then their removal. Per phase: files/s, the NFSv4 calls per file, and per file of the
# operations write delegations change (mountstats). `bench --server cfs-nowdeleg --server cfs
# --scenario smallfiles` prints every number of cfs over cfs-nowdeleg (write_delegations = false).
. /job/lib.sh
setup_wd
F=${NFILES:-2000}
# calls: every per-op count of this mount summed
calls() {
  awk '/^device .* mounted on \/mnt /{p=1; next} /^device /{p=0} p && /per-op statistics/{q=1; next}
    p && q && $1 ~ /^[A-Z_0-9]+:$/ {n += $2} END {print n + 0}' /proc/self/mountstats
}
# counts OPS...: "n1 n2 ..." of opcount each
counts() { for o in "$@"; do printf '%s ' "$(opcount $o)"; done; }
perfile() { awk -v a="$1" -v b="$2" -v n=$F 'BEGIN { printf "%.2f", (b - a) / n }'; }
# phase NAME T0 T1 C0 "COUNTS0" OPS...: files/s, NFSv4 calls per file, and per file of each OP
phase() {
  name=$1 a=$2 b=$3 c0=$4 was=$5; shift 5
  metric "${name}_files_s" "$(opsrate $F $a $b)" files/s
  metric "${name}_calls_per_file" "$(perfile $c0 $(calls))" calls
  is=$(counts "$@")
  i=1
  for o in "$@"; do
    w=$(echo $was | cut -d' ' -f$i); n=$(echo $is | cut -d' ' -f$i)
    metric "${name}_${o}_per_file" "$(perfile $w $n)" calls
    i=$((i + 1))
  done
}
head -c 4096 /dev/urandom > /tmp/blk
mkdir s || { fail "mkdir s"; finish; }
W="OPEN WRITE COMMIT CLOSE GETATTR DELEGRETURN"
c0=$(calls); k0=$(counts $W)
t0=$(now); i=0
while [ $i -lt $F ]; do cat /tmp/blk > s/f$i || { fail "create and write s/f$i"; break; }; i=$((i + 1)); done
t1=$(now); sync; t2=$(now)
metric write_loop_files_s "$(opsrate $F $t0 $t1)" files/s
phase write_sync "$t0" "$t2" "$c0" "$k0" $W
S="GETATTR LOOKUP"
c0=$(calls); k0=$(counts $S)
t0=$(now); (cd s && stat -c %s f* > /tmp/sizes) || fail "stat"; t1=$(now)
phase stat "$t0" "$t1" "$c0" "$k0" $S
n=$(grep -cx 4096 /tmp/sizes)
[ "$n" = "$F" ] || fail "stat: $n of $F files have 4096 bytes"
U="REMOVE DELEGRETURN"
c0=$(calls); k0=$(counts $U)
t0=$(now); (cd s && rm -f f*) || fail "unlink"; t1=$(now)
phase unlink "$t0" "$t1" "$c0" "$k0" $U
# reference: the same dd into guest tmpfs shows what TCG itself costs at the moment
t0=$(now); dd if=/dev/zero of=/tmp/z bs=1M count=256 2>/dev/null; t1=$(now); rm -f /tmp/z
metric guest_tmpfs_write_mib_s "$(rate 256 $t0 $t1)" MiB/s
cleanup_wd
finish
