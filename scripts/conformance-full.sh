#!/usr/bin/env bash
# The full kernel-client conformance suites, one command: what to run before resolving an
# issue (CI runs the quick subset, `conformance ci`). Every server kind, both kernels, full
# sizes; NFSv3 through both gateway kinds; Kerberos (krb5, krb5i, krb5p) on the single node.
# Several hours on 2 cores; last, the fresh-machine check (scripts/fresh-machine-check.sh).
# Each part is one `conformance run` (its own process: a Kerberos
# realm lives as long as its process) with its own JSON report; the summary at the end says
# which parts failed. Extra arguments go to every part (e.g. --kernel sid, --quick).
set -uo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh || exit 1
cargo build -q --release -p cfs -p conformance
export CFS_BIN="$PWD/target/release/cfs"
run() { target/release/conformance run "$@"; }

start=$(date +%s)
failed=()
part() {
    local name=$1
    shift
    printf '\n==== [%ss] %s\n' "$(($(date +%s) - start))" "$name"
    if ! run "$@" "${EXTRA[@]}"; then
        failed+=("$name")
    fi
}
EXTRA=("$@")

part "ganesha (baseline), every version" --server ganesha
# Every check runs in each of these three parts, host-step scenarios included where the kind
# offers them (e.g. `snapshot`, issue 48: single node, cluster and 3-MDS cluster, both kernels,
# v4.1 and v4.2; CI runs it only on cfs-cluster-mds3 at v4.2).
part "cfs single node, v4.1 and v4.2" --server cfs --vers 4.1 --vers 4.2
part "cfs-cluster (1 MDS + 3 DS), v4.1 and v4.2" --server cfs-cluster --vers 4.1 --vers 4.2
part "cfs-cluster-mds3 (3 MDS + 3 DS), v4.1 and v4.2" --server cfs-cluster-mds3 --vers 4.1 \
    --vers 4.2
part "NFSv3: ganesha and both gateway kinds" --server ganesha --server cfs-gateway \
    --server cfs-cluster-gateway --vers 3
for sec in krb5 krb5i krb5p; do
    part "Kerberos $sec, cfs v4.1" --server cfs --vers 4.1 --sec "$sec" \
        --scenario posix --scenario integrity --scenario locking --scenario twoclient
done

# The README's first command on a fresh Debian machine (a debootstrap root with only the
# host's Rust toolchain and crate registry): its set-up must install everything it needs.
printf '\n==== [%ss] %s\n' "$(($(date +%s) - start))" "fresh machine: ./scripts/demo.sh in a debootstrap root"
if ! ./scripts/fresh-machine-check.sh; then
    failed+=("fresh-machine check")
fi

printf '\n==== [%ss] done\n' "$(($(date +%s) - start))"
if ((${#failed[@]})); then
    printf 'failed parts:\n'
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
echo "all parts passed"
