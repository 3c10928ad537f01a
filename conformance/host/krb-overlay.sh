#!/bin/bash
# Build the Kerberos part of a guest's root for KVER: rpc.gssd and its libraries (from the
# host's nfs-common: `conformance setup` installs it), and the kernel modules RPCSEC_GSS needs
# (from the kernel package build-initramfs.sh extracted), listed in OUT/krb/modules for the
# guest's /init to insmod. Realm files (krb5.conf, keytab, hosts) are added per run.
# Usage: krb-overlay.sh KVER OUT   (idempotent: skips when OUT/krb/modules exists)
set -euo pipefail
C=${CFS_CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cfs-conformance}
KVER=${1:?kernel version}; OUT=${2:?output dir}
[ -s $OUT/krb/modules ] && exit 0
KROOT=$C/kpkg-$KVER/root
M=
for d in $KROOT/lib/modules/$KVER $KROOT/usr/lib/modules/$KVER; do [ -d $d/kernel ] && M=$d; done
[ -n "$M" ] || { echo "kernel $KVER not extracted; run: cargo run -p conformance -- setup" >&2; exit 2; }
[ -x /usr/sbin/rpc.gssd ] || { echo "no /usr/sbin/rpc.gssd: apt-get install nfs-common" >&2; exit 2; }
rm -rf $OUT.tmp; mkdir -p $OUT.tmp/usr/sbin $OUT.tmp/krb
cp /usr/sbin/rpc.gssd $OUT.tmp/usr/sbin/
for lib in $(ldd /usr/sbin/rpc.gssd | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}'); do
  mkdir -p $OUT.tmp$(dirname $lib); cp -L $lib $OUT.tmp$lib
done
# The GSS mechanism and the krb5 enctypes (aes*-cts-hmac-sha1-96, aes*-cts-hmac-sha2, camellia)
# the kernel may ask for (7.x: crypto/krb5 with its krb5enc and authenc templates); whatever
# is built in is simply not found here.
WANT="auth_rpcgss rpcsec_gss_krb5 krb5 krb5enc authenc cts cbc ecb xts aes_generic libaes aesni_intel aesni-intel crypto_simd cryptd
      sha1_generic sha1_ssse3 hmac sha256_generic sha256_ssse3 sha512_generic sha512_ssse3 cmac
      camellia_generic camellia_x86_64 gf128mul"
declare -A seen
for w in $WANT; do
  line=$(grep -E "/$w\.ko(\.xz|\.zst|\.gz)?:" $M/modules.dep) || continue
  for f in ${line%%:*} ${line#*:}; do seen[$f]=1; done
done
for f in "${!seen[@]}"; do
  b=$(basename $f); b=${b%.xz}; b=${b%.zst}; b=${b%.gz}
  case $f in
    *.xz)  xz -dc $M/$f > $OUT.tmp/krb/$b ;;
    *.zst) zstd -qdc $M/$f > $OUT.tmp/krb/$b ;;
    *.gz)  gzip -dc $M/$f > $OUT.tmp/krb/$b ;;
    *)     cp $M/$f $OUT.tmp/krb/$b ;;
  esac
  echo $b >> $OUT.tmp/krb/modules
done
rm -rf $OUT; mv $OUT.tmp $OUT
echo "krb overlay for $KVER: ${#seen[@]} modules, rpc.gssd"
