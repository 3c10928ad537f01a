#!/bin/bash
# Fetch a Debian kernel (apt-get download + dpkg -x, nothing installed) and build the guest's base
# initramfs: busybox-static + the NFS client modules. /init, the scenario and cfshelper travel in a
# per-run cpio that run-guest.sh prepends, so editing them never needs a rebuild here.
# Usage: build-initramfs.sh KVER bookworm|sid
#   CFS_CONFORMANCE_CACHE (default ~/.cache/cfs-conformance) holds everything.
# Output: $C/k/$KVER/{vmlinux,initramfs.cpio.gz}; idempotent (skips when both exist).
set -euo pipefail
C=${CFS_CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cfs-conformance}
KVER=${1:?kernel version}; KIND=${2:?bookworm or sid}
O=$C/k/$KVER
if [ -s $O/vmlinux ] && [ -s $O/initramfs.cpio.gz ]; then echo "kernel $KVER: cached in $O"; exit 0; fi
case "$KIND" in
  bookworm) PKGS="linux-image-$KVER" ;;
  sid)      PKGS="linux-binary-$KVER linux-modules-$KVER" ;;
  *) echo "unknown kernel kind $KIND" >&2; exit 2 ;;
esac
KROOT=$C/kpkg-$KVER/root
# private apt lists per suite (written by `conformance setup`) so the host's apt config is untouched
A=$C/apt-$KIND
[ -f $A/sources.list ] || { echo "no $A/sources.list; run: cargo run -p conformance -- setup" >&2; exit 2; }
APTOPT=(-o Dir::Etc::sourcelist=$A/sources.list -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$A/lists -o Dir::Cache=$A/cache)
find_mdir() { for d in $KROOT/lib/modules/$KVER $KROOT/usr/lib/modules/$KVER; do [ -d $d/kernel ] && { echo $d; return; }; done; }
M=$(find_mdir || true)
if [ -z "$M" ]; then
  D=$(dirname $KROOT); mkdir -p $D $KROOT
  chmod 777 $D   # apt-get download drops privileges to _apt
  (cd $D && apt-get "${APTOPT[@]}" download $PKGS)
  for p in $PKGS; do dpkg -x $D/${p}_*.deb $KROOT; done
  rm -f $D/*.deb
  M=$(find_mdir)
fi
[ -f $M/modules.dep ] || depmod -b $KROOT $KVER 2>/dev/null || depmod -b $KROOT/usr $KVER
mkdir -p $O
VMLINUZ=$KROOT/boot/vmlinuz-$KVER; [ -f $VMLINUZ ] || VMLINUZ=$M/vmlinuz
# qemu boots an ELF vmlinux through its PVH note, skipping the in-guest decompressor (~3 s under
# TCG). Find the compressed payload inside the bzImage; the decompressors complain about the
# trailing bytes after the stream, which is why their status is ignored and the ELF is checked.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' $VMLINUZ | head -1 | cut -d: -f1 || true)
if [ -n "$off" ]; then
  tail -c +$((off + 1)) $VMLINUZ | xz -dc 2>/dev/null > $O/vmlinux.tmp || true
else
  off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' $VMLINUZ | head -1 | cut -d: -f1)
  tail -c +$((off + 1)) $VMLINUZ | zstd -qdc 2>/dev/null > $O/vmlinux.tmp || true
fi
[ "$(head -c 4 $O/vmlinux.tmp | od -An -c | tr -d ' ')" = '177ELF' ] || { echo "vmlinux extraction failed for $VMLINUZ" >&2; exit 1; }

W=$O/initramfs.d
rm -rf $W; mkdir -p $W/{bin,sbin,proc,sys,dev,mnt,tmp,etc,lib/modules/$KVER,root,run}
cp /bin/busybox $W/bin/busybox
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox $W/bin/$a; done
# modules wanted plus their modules.dep dependencies, stored uncompressed for busybox modprobe
WANT="virtio_pci virtio_net e1000 sunrpc nfs nfsv3 nfsv4 nfs_layout_flexfiles nfs_layout_nfsv41_files crc32_generic"
declare -A seen
for w in $WANT; do
  line=$(grep -E "/$w\.ko(\.xz|\.zst|\.gz)?:" $M/modules.dep) || { echo "note: no module $w in $KVER (built in?)" >&2; continue; }
  for f in ${line%%:*} ${line#*:}; do seen[$f]=1; done
done
for f in "${!seen[@]}"; do
  dst=$W/lib/modules/$KVER/$f; mkdir -p $(dirname $dst)
  case $f in
    *.xz)  xz -dc $M/$f > ${dst%.xz} ;;
    *.zst) zstd -qdc $M/$f > ${dst%.zst} ;;
    *.gz)  gzip -dc $M/$f > ${dst%.gz} ;;
    *)     cp $M/$f $dst ;;
  esac
done
# sid's linux-modules package ships without modules.order/builtin; depmod copes without them
for f in modules.order modules.builtin modules.builtin.modinfo; do [ -f $M/$f ] && cp $M/$f $W/lib/modules/$KVER/; done
[ -f $W/lib/modules/$KVER/modules.order ] && sed -i 's/\.ko\.\(xz\|zst\|gz\)$/.ko/' $W/lib/modules/$KVER/modules.order
depmod -b $W $KVER
(cd $W && find . | cpio -o -H newc --quiet | gzip -1) > $O/initramfs.cpio.gz.tmp
rm -rf $W
mv $O/vmlinux.tmp $O/vmlinux; mv $O/initramfs.cpio.gz.tmp $O/initramfs.cpio.gz
echo "kernel $KVER: ${#seen[@]} modules; built $O"
