//! The scenario registry: which guest script, how big, how long it may take, how many guests.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// pass/fail conformance check
    Check,
    /// numbers only (`bench`); a failure still means the I/O itself failed
    Bench,
}

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub kind: Kind,
    /// two guests at once (ROLE=A and ROLE=B), SMP=1 each
    pub two_clients: bool,
    /// guest environment for the full and the --quick run
    pub full_env: &'static str,
    pub quick_env: &'static str,
    /// guest wall-clock limit in seconds (TCG is slow; these are generous but bounded)
    pub timeout_full: u64,
    pub timeout_quick: u64,
    /// host-side steps the harness runs alongside the guest (cfs-cluster only: any other
    /// server reports the scenario "not offered")
    pub host: Option<crate::hostops::Kind>,
    /// two-client scenarios: the version guest B mounts when it differs from A's (`mixed`: A
    /// mounts v3 through the cfs gateway, B v4.1 from the MDS behind it; offered only by
    /// servers with a gateway, and run only for A's v3)
    pub peer_vers: Option<&'static str>,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "posix",
        about: "create/write/read/append, truncate grow+shrink, rename over, hard link counts, symlink, chmod, chown, utimes, mkdir/rmdir ENOTEMPTY, unlink-while-open, fsync; permission rules run as other users (chown by a non-owner, chmod g+s outside the group, write clears set-id, moving a directory needs write on it, nlink 0 of an unlinked open file)",
        kind: Kind::Check,
        two_clients: false,
        full_env: "",
        quick_env: "",
        timeout_full: 180,
        timeout_quick: 180,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "integrity",
        about: "random data checksum after drop_caches and after umount+mount; partial overwrite",
        kind: Kind::Check,
        two_clients: false,
        full_env: "SIZE_MIB=256",
        quick_env: "SIZE_MIB=16",
        timeout_full: 600,
        timeout_quick: 240,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "bigdir",
        about: "N entries in one directory listed completely and exactly once, then removed",
        kind: Kind::Check,
        two_clients: false,
        full_env: "NENTRIES=10000",
        quick_env: "NENTRIES=500",
        timeout_full: 900,
        timeout_quick: 240,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "locking",
        about: "fcntl byte-range and flock conflicts between processes (v3: local only, nolock)",
        kind: Kind::Check,
        two_clients: false,
        full_env: "",
        quick_env: "",
        timeout_full: 240,
        timeout_quick: 240,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "xattr",
        about: "user.* extended attributes on a v4.2 mount: set, get, list, create/replace flags (EEXIST, ENODATA), a 64 KiB value and E2BIG past it, EACCES for another user, a directory's, removal, and every value after drop_caches and umount+mount; older versions must answer EOPNOTSUPP",
        kind: Kind::Check,
        two_clients: false,
        full_env: "",
        quick_env: "",
        timeout_full: 180,
        timeout_quick: 180,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "twoclient",
        about: "two guests: close-to-open, rename/unlink/mkdir seen by the other, cross-client lock (v4)",
        kind: Kind::Check,
        two_clients: true,
        full_env: "",
        quick_env: "",
        timeout_full: 300,
        timeout_quick: 300,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "mixed",
        about: "cfs gateways only: guest A on v3 through the gateway, guest B on v4.1 (pNFS in a cluster) on the same files: writes, renames, removes seen close-to-open both ways, and their fcntl locks conflict",
        kind: Kind::Check,
        two_clients: true,
        full_env: "MIXED_MIB=64",
        quick_env: "MIXED_MIB=8",
        timeout_full: 420,
        timeout_quick: 300,
        host: None,
        peer_vers: Some("4.1"),
    },
    Scenario {
        name: "gateway-fault",
        about: "cfs-cluster-gateway only: a v3 guest writes through the gateway while the host kill -9s the gateway and restarts it; the write and fsync succeed and every byte verifies (the client resent what the dead gateway had not committed)",
        kind: Kind::Check,
        two_clients: false,
        full_env: "SIZE_MIB=256",
        quick_env: "SIZE_MIB=64",
        timeout_full: 600,
        timeout_quick: 300,
        host: Some(crate::hostops::Kind::GatewayFault),
        peer_vers: None,
    },
    Scenario {
        name: "pnfs",
        about: "I/O whose mountstats (LAYOUTGET, GETDEVICEINFO, READ, WRITE) show whether layouts were used; against cfs-cluster also the cluster's MDS/DS byte counters, and it fails unless the data went through the data servers",
        kind: Kind::Check,
        two_clients: false,
        // the pNFS acceptance figure is "a 256 MiB file"; cfs-cluster writes it twice (mirrors)
        full_env: "SIZE_MIB=256",
        quick_env: "SIZE_MIB=16",
        timeout_full: 900,
        timeout_quick: 240,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "wire",
        about: "a file made of a marker string written and read back while qemu records the guest's NIC; the capture is searched for the marker per server port: krb5p must show it nowhere, krb5i never on a data server's link, sys and krb5 must show it (on a data server's link for cfs-cluster)",
        kind: Kind::Check,
        two_clients: false,
        full_env: "",
        quick_env: "",
        timeout_full: 240,
        timeout_quick: 240,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "posix-diff",
        about: "differential POSIX test: a seeded random sequence of calls as root, an owner, a group member and another user on the guest's tmpfs (the oracle) and on the mount; every errno, mode, owner, link count and size must match; a mismatch prints the shortest sequence showing it",
        kind: Kind::Check,
        two_clients: false,
        // SEEDS is overridden by `run --seeds N`; timeouts then grow per seed (runner::job)
        full_env: "SEEDS=3 SEED0=1 CALLS=200",
        quick_env: "SEEDS=1 SEED0=1 CALLS=200",
        timeout_full: 600,
        timeout_quick: 420,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "bench",
        about: "sequential write/read MiB/s, create/stat/unlink ops/s (numbers, not pass/fail)",
        kind: Kind::Bench,
        two_clients: false,
        full_env: "SIZE_MIB=256 NFILES=2000",
        quick_env: "SIZE_MIB=64 NFILES=500",
        timeout_full: 600,
        timeout_quick: 300,
        host: None,
        peer_vers: None,
    },
    Scenario {
        name: "pnfs-fault",
        about: "cfs-cluster and cfs-cluster-mds3 only: the kernel writes a file while the host kill -9s a data server holding it; fsync, verify; restart it, verify again",
        kind: Kind::Check,
        two_clients: false,
        full_env: "SIZE_MIB=256",
        quick_env: "SIZE_MIB=96",
        timeout_full: 900,
        timeout_quick: 300,
        host: Some(crate::hostops::Kind::Fault),
        peer_vers: None,
    },
    Scenario {
        name: "mds-leader-fault",
        about: "cfs-cluster-mds3 only: as mds-fault (below), but the host kill -9s the leader of the guest's shard while the guest mounted another node, which forwards to the new leader after the election (runs first: a node restarted by mds-fault can move the leadership after the mount was chosen)",
        kind: Kind::Check,
        two_clients: false,
        full_env: "STEPS_AFTER=20",
        quick_env: "STEPS_AFTER=8",
        timeout_full: 600,
        timeout_quick: 400,
        host: Some(crate::hostops::Kind::MdsLeaderFault),
        peer_vers: None,
    },
    Scenario {
        name: "mds-fault",
        about: "cfs-cluster-mds3 only: a workload of writes, creates, renames and removes while the host kill -9s the MDS node serving the guest's mount; a live node takes the address over, the workload finishes without an error after a pause (reported), every file it made is there with its bytes (and, on v4.2, its extended attribute); the killed node restarts and catches up",
        kind: Kind::Check,
        two_clients: false,
        full_env: "STEPS_AFTER=20",
        quick_env: "STEPS_AFTER=8",
        timeout_full: 600,
        timeout_quick: 400,
        host: Some(crate::hostops::Kind::MdsFault),
        peer_vers: None,
    },
    Scenario {
        name: "pnfs-cross",
        about: "cfs-cluster and cfs-cluster-mds3 only: a file cfs put (Rust client, pNFS) verified by the kernel; a kernel-written file cfs get compared byte for byte",
        kind: Kind::Check,
        two_clients: false,
        full_env: "SIZE_MIB=256",
        quick_env: "SIZE_MIB=32",
        timeout_full: 900,
        timeout_quick: 300,
        host: Some(crate::hostops::Kind::Cross),
        peer_vers: None,
    },
    Scenario {
        name: "encoded",
        about: "cfs-cluster-ec3 and cfs-cluster-ec6 only: files of 9 MiB + 12345 B, 3 MiB and 100 KiB written and closed; the host waits until the big two are erasure-coded (k+m shard headers on the data servers, mirror copies gone; the small one stays mirrored); after a remount every byte reads back, from the data servers and not the MDS (cluster counters); an overwritten range of an encoded file reads back before and after the file is encoded again; a removed encoded file leaves no shard",
        kind: Kind::Check,
        two_clients: false,
        full_env: "",
        quick_env: "",
        timeout_full: 600,
        timeout_quick: 600,
        host: Some(crate::hostops::Kind::Encoded),
        peer_vers: None,
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

pub fn checks() -> Vec<&'static Scenario> {
    SCENARIOS.iter().filter(|s| s.kind == Kind::Check).collect()
}
