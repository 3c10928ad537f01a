#!/bin/bash
# Boot a Debian kernel + busybox initramfs in qemu (TCG), mount the NFS server the guest sees at
# 10.0.2.2 (= host 127.0.0.1 through qemu user-mode networking) and run one guest script.
# Usage: run-guest.sh KVER PORT NFSVERS SCRIPT [RUN_DIR]
# Env: CFS_CONFORMANCE_CACHE  EXPORT=/ (v4 path; v3: server path)  MNTPORT (v3 mountd port or
#      "rpcbind")  MNTOPTS  GUEST_ENV (extra VAR=value lines for the guest)  TIMEOUT=300
#      GUEST_OVERLAY (directories whose contents are added to the guest's root)
#      PCAP (file: qemu records every frame of the guest's NIC there, both directions)
#      SMP=2 (CFS_GUEST_SMP overrides it: 1 is faster on a loaded host)  MEM=1024  TCG_THREAD=multi|single  KAPPEND  CONSOLE=1 (kernel console to stderr)
# Output: guest ttyS1 (script output + @@ markers) on stdout; RUN_DIR keeps console.log/out.log.
# Exit: the guest script's status; 99 mount failed, 124 timeout, 125 no exit marker (crash).
set -uo pipefail
C=${CFS_CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cfs-conformance}
S=$(cd "$(dirname "$0")/.." && pwd)
KVER=${1:?kernel version}; PORT=${2:?port}; VERS=${3:?nfs version}; SCRIPT=${4:?guest script}
K=$C/k/$KVER
[ -s $K/initramfs.cpio.gz ] || { echo "kernel $KVER not built; run: cargo run -p conformance -- setup" >&2; exit 2; }
[ -x $C/bin/cfshelper ] || { echo "cfshelper not built; run: cargo run -p conformance -- setup" >&2; exit 2; }
[ -f "$SCRIPT" ] || { echo "no such script $SCRIPT" >&2; exit 2; }
W=${5:-}; KEEP=1
[ -n "$W" ] || { mkdir -p $C/runs; W=$(mktemp -d $C/runs/guest.XXXXXX); KEEP=0; }
mkdir -p $W/job/job
cp $S/guest/init $W/job/init
cp "$SCRIPT" $W/job/job/script.sh
cp $S/guest/lib.sh $W/job/job/lib.sh
cp $C/bin/cfshelper $W/job/job/cfshelper
# Trees merged into the guest's root (e.g. Kerberos: rpc.gssd, modules, krb5.conf, keytab).
for o in ${GUEST_OVERLAY:-}; do cp -a $o/. $W/job/; done
cat > $W/job/job/env <<ENV
NFSPORT=$PORT
NFSVERS=$VERS
MNTPORT=${MNTPORT:-$PORT}
HOST_IP=10.0.2.2
GUEST_IP=10.0.2.15
EXPORT=${EXPORT:-/}
MNTOPTS='${MNTOPTS:-}'
${GUEST_ENV:-}
ENV
# The job cpio goes BEFORE the gzip base image: the kernel rejects an uncompressed archive after a
# compressed one ("invalid magic"), and the base image has no /init, so ours is the one used.
( cd $W/job && find . | cpio -o -H newc --quiet ) > $W/job.cpio
cat $W/job.cpio $K/initramfs.cpio.gz > $W/initrd
rm -rf $W/job $W/job.cpio
: > $W/out.log
CAPTURE=()
[ -n "${PCAP:-}" ] && CAPTURE=(-object "filter-dump,id=cap0,netdev=n0,file=$PCAP")
timeout --foreground ${TIMEOUT:-300} qemu-system-x86_64 -accel tcg,thread=${TCG_THREAD:-multi} -cpu max \
  -m ${MEM:-1024} -smp ${CFS_GUEST_SMP:-${SMP:-2}} -nodefaults -no-user-config -display none -no-reboot \
  -kernel $K/vmlinux -initrd $W/initrd \
  -append "console=ttyS0 panic=-1 quiet loglevel=4 ${KAPPEND:-}" \
  -netdev user,id=n0,net=10.0.2.0/24,host=10.0.2.2,restrict=off \
  -device virtio-net-pci,netdev=n0 "${CAPTURE[@]}" \
  -serial file:$W/console.log -serial file:$W/out.log \
  > $W/qemu.log 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null' INT TERM HUP
wait $QPID; qrc=$?
trap - INT TERM HUP
rm -f $W/initrd
[ "${CONSOLE:-0}" = 1 ] && cat $W/console.log >&2
tr -d '\r' < $W/out.log
rc=$(tr -d '\r' < $W/out.log | sed -n 's/^@@GUEST_EXIT@@ \([0-9]*\)$/\1/p' | tail -1)
if [ $qrc = 124 ]; then rc=124; elif [ -z "$rc" ]; then rc=125; fi
[ $KEEP = 1 ] || rm -rf $W
exit $rc
