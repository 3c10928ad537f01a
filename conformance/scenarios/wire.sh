# wire: a file made of a marker string (WIRE_MARKER, new per case) is written, fsynced and read
# back after drop_caches; the host records the guest's network traffic (qemu's filter-dump of
# its only NIC: every byte to the MDS and to the data servers) and searches it for the marker
# (runner.rs, wire.rs): with krb5p it must not appear, with sys or krb5 it must.
. /job/lib.sh
setup_wd
M=${WIRE_MARKER:?WIRE_MARKER not set}
# 2 MiB of marker lines on the guest's tmpfs
awk -v m="$M" 'BEGIN { for (i = 0; i < 40000; i++) print m }' > /tmp/wire-src
check "write the marker file" cp /tmp/wire-src f
check "fsync the marker file" $H fsync f
drop_caches
if cmp -s /tmp/wire-src f; then pass "marker file reads back after drop_caches"; else fail "marker file differs after drop_caches"; fi
cleanup_wd
