//! What the server knows about each NFSv4 operation, in one place, like knfsd's `nfsd4_ops[]`
//! (fs/nfsd/nfs4proc.c): its name, the state that owns it, flags the compound runner, the
//! read barrier and the security checks consult, and a bound on its reply. `ops::dispatch`
//! keeps the one match that calls handlers (they need the typed arguments); everything else
//! about an operation is read from here with `info(opnum)`.
use proto::nfs4::compound::*;

/// Which state an operation reads or changes: what a request will be routed by once each
/// shard's leader serves its own files (issue 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// No server state: it moves the compound's own file handles, or is refused.
    None,
    /// The namespace shard of the current file handle.
    Current,
    /// The namespace shards of the saved and the current file handle (RENAME, LINK, COPY).
    SavedAndCurrent,
    /// This node's client and session state.
    Session,
    /// Opens, share reservations and delegations of the current file.
    Opens,
    /// Byte-range locks.
    Locks,
    /// Layouts and the devices they name.
    Layouts,
}

/// How large the operation's result can be: the bound the compound runner charges against the
/// session's reply size before running it (knfsd's `op_rsize_bop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rsize {
    /// A status and small fixed fields: `limits::REPLY_PER_OP`.
    Small,
    /// `head` bytes plus the data count the arguments ask for, at most `MAX_IO` (READ,
    /// READ_PLUS).
    Data { head: u64 },
    /// `head` bytes plus the `maxcount` the arguments allow (READDIR).
    Maxcount { head: u64 },
}

/// Which file bytes an operation moves, for the byte counters (`metered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bytes {
    None,
    Read,
    Written,
}

/// One operation's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    /// The RFC's name of the operation (`ILLEGAL` for numbers no operation has).
    pub name: &'static str,
    pub owner: Owner,
    pub flags: u32,
    pub rsize: Rsize,
    pub bytes: Bytes,
}

/// Reads namespace state a lagging replica could hold stale, to answer or to decide what to
/// propose (a name looked up, a permission checked, the object a removal names): passes the
/// read barrier of the current file handle's shard first, and of the saved one's for
/// `Owner::SavedAndCurrent` (`compound::read_barrier`). Operations that only move file handles, or
/// act on state the client opened through this node (I/O, locks, layouts returned), need none.
pub const READS_STATE: u32 = 1 << 0;
/// Changes server state (knfsd's OP_MODIFIES_SOMETHING).
pub const MODIFIES: u32 = 1 << 1;
/// Once it succeeds the current stateid is no longer set (knfsd's OP_CLEAR_STATEID; RFC 8881
/// §16.2.3.1.2: an operation that sets a new current file handle clears it).
pub const CLEARS_STATEID: u32 = 1 << 2;
/// May run in a compound without SEQUENCE, and then only as its only operation (RFC 8881
/// §2.10.6.4: EXCHANGE_ID, CREATE_SESSION, DESTROY_SESSION, BIND_CONN_TO_SESSION,
/// DESTROY_CLIENTID).
pub const SESSIONLESS_ALONE: u32 = 1 << 3;
/// Answered wherever it stands, with or without a session (ILLEGAL).
pub const ANYWHERE: u32 = 1 << 4;
/// Must be the first operation (SEQUENCE): elsewhere NFS4ERR_SEQUENCE_POS.
pub const FIRST_ONLY: u32 = 1 << 5;
/// Answers NFS4ERR_WRONGSEC itself, so the put-filehandle before it does not (RFC 8881
/// §2.6.3.1.1: LOOKUP, LOOKUPP, OPEN, SECINFO, SECINFO_NO_NAME).
pub const CHECKS_OWN_SEC: u32 = 1 << 6;
/// Sets the current file handle from nothing the compound read (PUTFH, PUTROOTFH, PUTPUBFH,
/// RESTOREFH): the security check of what it put is made on behalf of the next operation.
pub const PUTS_FH: u32 = 1 << 7;
/// An NFSv4.0 operation: not part of a 4.1 or 4.2 compound (RFC 8881 §15.2), NFS4ERR_NOTSUPP.
pub const V40_ONLY: u32 = 1 << 8;

impl OpInfo {
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

const fn op(name: &'static str, owner: Owner, flags: u32) -> OpInfo {
    OpInfo {
        name,
        owner,
        flags,
        rsize: Rsize::Small,
        bytes: Bytes::None,
    }
}

/// Every number past the last operation, and those no operation has, get this entry.
const ILLEGAL: OpInfo = op("ILLEGAL", Owner::None, ANYWHERE);

/// The highest operation number NFSv4.2 defines (RFC 8276's REMOVEXATTR).
const LAST: usize = OP_REMOVEXATTR as usize;

static TABLE: [OpInfo; LAST + 1] = table();

const fn table() -> [OpInfo; LAST + 1] {
    use Owner::*;
    let mut t = [ILLEGAL; LAST + 1];
    macro_rules! set {
        ($num:expr, $info:expr) => {
            t[$num as usize] = $info;
        };
    }
    // File handles and names.
    set!(OP_PUTFH, op("PUTFH", Current, CLEARS_STATEID | PUTS_FH));
    set!(
        OP_PUTROOTFH,
        op("PUTROOTFH", None, CLEARS_STATEID | PUTS_FH)
    );
    set!(OP_PUTPUBFH, op("PUTPUBFH", None, CLEARS_STATEID | PUTS_FH));
    set!(OP_GETFH, op("GETFH", None, 0));
    set!(OP_SAVEFH, op("SAVEFH", None, 0));
    set!(OP_RESTOREFH, op("RESTOREFH", None, PUTS_FH));
    let lookup = READS_STATE | CLEARS_STATEID | CHECKS_OWN_SEC;
    set!(OP_LOOKUP, op("LOOKUP", Current, lookup));
    set!(OP_LOOKUPP, op("LOOKUPP", Current, lookup));
    set!(
        OP_SECINFO,
        op("SECINFO", Current, READS_STATE | CHECKS_OWN_SEC)
    );
    set!(
        OP_SECINFO_NO_NAME,
        op("SECINFO_NO_NAME", Current, CHECKS_OWN_SEC)
    );
    // Attributes.
    set!(OP_GETATTR, op("GETATTR", Current, READS_STATE));
    set!(OP_SETATTR, op("SETATTR", Current, READS_STATE | MODIFIES));
    set!(OP_ACCESS, op("ACCESS", Current, READS_STATE));
    set!(OP_VERIFY, op("VERIFY", Current, READS_STATE));
    set!(OP_NVERIFY, op("NVERIFY", Current, READS_STATE));
    // Directories.
    // `maxcount` bounds READDIR4resok; plus the status.
    set!(
        OP_READDIR,
        OpInfo {
            rsize: Rsize::Maxcount { head: 4 },
            ..op("READDIR", Current, READS_STATE)
        }
    );
    set!(OP_READLINK, op("READLINK", Current, READS_STATE));
    set!(
        OP_CREATE,
        op("CREATE", Current, READS_STATE | MODIFIES | CLEARS_STATEID)
    );
    set!(OP_REMOVE, op("REMOVE", Current, READS_STATE | MODIFIES));
    set!(
        OP_RENAME,
        op("RENAME", SavedAndCurrent, READS_STATE | MODIFIES)
    );
    set!(OP_LINK, op("LINK", SavedAndCurrent, READS_STATE | MODIFIES));
    set!(OP_OPENATTR, op("OPENATTR", Current, 0));
    // Opens and delegations.
    let open = READS_STATE | MODIFIES | CHECKS_OWN_SEC;
    set!(OP_OPEN, op("OPEN", Opens, open));
    set!(OP_CLOSE, op("CLOSE", Opens, MODIFIES));
    set!(OP_OPEN_DOWNGRADE, op("OPEN_DOWNGRADE", Opens, MODIFIES));
    set!(OP_DELEGRETURN, op("DELEGRETURN", Opens, MODIFIES));
    set!(OP_DELEGPURGE, op("DELEGPURGE", Opens, MODIFIES));
    set!(
        OP_GET_DIR_DELEGATION,
        op("GET_DIR_DELEGATION", Opens, MODIFIES)
    );
    set!(OP_WANT_DELEGATION, op("WANT_DELEGATION", Opens, MODIFIES));
    // File data.
    // Status, eof, data length, then the data.
    set!(
        OP_READ,
        OpInfo {
            rsize: Rsize::Data { head: 12 },
            bytes: Bytes::Read,
            ..op("READ", Current, READS_STATE)
        }
    );
    set!(
        OP_WRITE,
        OpInfo {
            bytes: Bytes::Written,
            ..op("WRITE", Current, MODIFIES)
        }
    );
    set!(OP_COMMIT, op("COMMIT", Current, MODIFIES));
    // Byte-range locks and stateids.
    set!(OP_LOCK, op("LOCK", Locks, MODIFIES));
    set!(OP_LOCKT, op("LOCKT", Locks, 0));
    set!(OP_LOCKU, op("LOCKU", Locks, MODIFIES));
    set!(OP_TEST_STATEID, op("TEST_STATEID", Session, 0));
    set!(OP_FREE_STATEID, op("FREE_STATEID", Session, MODIFIES));
    // Clients and sessions.
    let alone = SESSIONLESS_ALONE | MODIFIES;
    set!(OP_EXCHANGE_ID, op("EXCHANGE_ID", Session, alone));
    set!(OP_CREATE_SESSION, op("CREATE_SESSION", Session, alone));
    set!(OP_DESTROY_SESSION, op("DESTROY_SESSION", Session, alone));
    set!(
        OP_BIND_CONN_TO_SESSION,
        op("BIND_CONN_TO_SESSION", Session, alone)
    );
    set!(OP_DESTROY_CLIENTID, op("DESTROY_CLIENTID", Session, alone));
    set!(OP_SEQUENCE, op("SEQUENCE", Session, FIRST_ONLY | MODIFIES));
    set!(OP_BACKCHANNEL_CTL, op("BACKCHANNEL_CTL", Session, MODIFIES));
    set!(
        OP_RECLAIM_COMPLETE,
        op("RECLAIM_COMPLETE", Session, MODIFIES)
    );
    set!(OP_SET_SSV, op("SET_SSV", Session, MODIFIES));
    // pNFS.
    set!(
        OP_LAYOUTGET,
        op("LAYOUTGET", Layouts, READS_STATE | MODIFIES)
    );
    set!(OP_LAYOUTCOMMIT, op("LAYOUTCOMMIT", Layouts, MODIFIES));
    set!(OP_LAYOUTRETURN, op("LAYOUTRETURN", Layouts, MODIFIES));
    set!(OP_LAYOUTERROR, op("LAYOUTERROR", Layouts, MODIFIES));
    set!(OP_LAYOUTSTATS, op("LAYOUTSTATS", Layouts, 0));
    set!(OP_GETDEVICEINFO, op("GETDEVICEINFO", Layouts, 0));
    set!(OP_GETDEVICELIST, op("GETDEVICELIST", Layouts, 0));
    // NFSv4.2.
    set!(OP_SEEK, op("SEEK", Current, READS_STATE));
    set!(OP_ALLOCATE, op("ALLOCATE", Current, MODIFIES));
    set!(OP_DEALLOCATE, op("DEALLOCATE", Current, MODIFIES));
    // Status, eof, segment count, one data segment's header, then the data.
    set!(
        OP_READ_PLUS,
        OpInfo {
            rsize: Rsize::Data { head: 28 },
            bytes: Bytes::Read,
            ..op("READ_PLUS", Current, READS_STATE)
        }
    );
    set!(OP_COPY, op("COPY", SavedAndCurrent, MODIFIES));
    set!(OP_CLONE, op("CLONE", SavedAndCurrent, MODIFIES));
    set!(OP_COPY_NOTIFY, op("COPY_NOTIFY", Current, MODIFIES));
    set!(OP_OFFLOAD_CANCEL, op("OFFLOAD_CANCEL", None, MODIFIES));
    set!(OP_OFFLOAD_STATUS, op("OFFLOAD_STATUS", None, 0));
    set!(OP_IO_ADVISE, op("IO_ADVISE", Current, 0));
    set!(OP_WRITE_SAME, op("WRITE_SAME", Current, MODIFIES));
    // Extended attributes (RFC 8276).
    set!(OP_GETXATTR, op("GETXATTR", Current, READS_STATE));
    set!(OP_SETXATTR, op("SETXATTR", Current, MODIFIES));
    set!(OP_LISTXATTRS, op("LISTXATTRS", Current, READS_STATE));
    set!(OP_REMOVEXATTR, op("REMOVEXATTR", Current, MODIFIES));
    // NFSv4.0 only.
    set!(OP_OPEN_CONFIRM, op("OPEN_CONFIRM", Opens, V40_ONLY));
    set!(OP_RENEW, op("RENEW", Session, V40_ONLY));
    set!(OP_SETCLIENTID, op("SETCLIENTID", Session, V40_ONLY));
    set!(
        OP_SETCLIENTID_CONFIRM,
        op("SETCLIENTID_CONFIRM", Session, V40_ONLY)
    );
    set!(
        OP_RELEASE_LOCKOWNER,
        op("RELEASE_LOCKOWNER", Locks, V40_ONLY)
    );
    t
}

/// The facts of operation `opnum` (ILLEGAL's for a number no operation has).
pub fn info(opnum: u32) -> &'static OpInfo {
    TABLE.get(opnum as usize).unwrap_or(&ILLEGAL)
}

/// The most bytes `op`'s result can take (`Rsize`).
pub fn reply_bound(op: &NfsArgop4) -> u64 {
    match (info(op.opnum()).rsize, op) {
        (Rsize::Data { head }, NfsArgop4::Read(a)) => {
            head + u64::from(a.count.min(crate::limits::MAX_IO))
        }
        (Rsize::Data { head }, NfsArgop4::ReadPlus(a)) => {
            head + u64::from(a.rpa_count.min(crate::limits::MAX_IO))
        }
        (Rsize::Maxcount { head }, NfsArgop4::Readdir(a)) => head + u64::from(a.maxcount),
        _ => crate::limits::REPLY_PER_OP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::nfs4::compound::NfsResop4;
    use proto::xdr::{Reader, Xdr};

    /// Whether the decoder knows operation `n` (its result table has a case for it).
    fn decoder_knows(n: u32) -> bool {
        !matches!(NfsResop4::from_status(n, 0), NfsResop4::Illegal(_))
    }

    #[test]
    fn every_operation_the_decoder_knows_has_an_entry_and_no_other() {
        for n in 0..=(LAST as u32 + 8) {
            let i = info(n);
            if decoder_knows(n) {
                assert_ne!(i.name, "ILLEGAL", "op {n} has no entry");
                // The name is the RFC's, as the result's number says.
                assert_eq!(NfsResop4::from_status(n, 0).opnum(), n);
            } else {
                assert_eq!(*i, ILLEGAL, "op {n} is no operation");
            }
        }
        assert_eq!(info(OP_ILLEGAL).name, "ILLEGAL");
        assert!(info(OP_ILLEGAL).has(ANYWHERE));
        // An opcode the decoder does not know decodes as Unknown and gets ILLEGAL's facts.
        let unknown = NfsArgop4::decode(&mut Reader::new(&9999u32.to_xdr())).unwrap();
        assert_eq!(unknown, NfsArgop4::Unknown(9999));
        assert_eq!(*info(unknown.opnum()), ILLEGAL);
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for i in TABLE.iter().filter(|i| i.name != "ILLEGAL") {
            assert!(seen.insert(i.name), "{} twice", i.name);
        }
    }

    #[test]
    fn the_read_barrier_sees_every_reading_op_through_its_shard() {
        for i in TABLE.iter() {
            if i.has(READS_STATE) {
                // The barrier is that of the current file handle's shard: an op reading state
                // must be owned by namespace or per-file state reached through it.
                assert!(
                    matches!(
                        i.owner,
                        Owner::Current | Owner::SavedAndCurrent | Owner::Opens | Owner::Layouts
                    ),
                    "{} reads state but is not reached through a file handle",
                    i.name
                );
                assert!(!i.has(SESSIONLESS_ALONE | V40_ONLY), "{}", i.name);
            }
        }
    }

    #[test]
    fn nfsv40_only_operations_are_not_part_of_41() {
        let v40 = [
            OP_OPEN_CONFIRM,
            OP_RENEW,
            OP_SETCLIENTID,
            OP_SETCLIENTID_CONFIRM,
            OP_RELEASE_LOCKOWNER,
        ];
        for (n, i) in TABLE.iter().enumerate() {
            assert_eq!(i.has(V40_ONLY), v40.contains(&(n as u32)), "{}", i.name);
        }
    }

    #[test]
    fn session_rules_are_the_rfcs() {
        let alone: Vec<&str> = TABLE
            .iter()
            .filter(|i| i.has(SESSIONLESS_ALONE))
            .map(|i| i.name)
            .collect();
        assert_eq!(
            alone,
            [
                "BIND_CONN_TO_SESSION",
                "EXCHANGE_ID",
                "CREATE_SESSION",
                "DESTROY_SESSION",
                "DESTROY_CLIENTID"
            ]
        );
        let first: Vec<&str> = TABLE
            .iter()
            .filter(|i| i.has(FIRST_ONLY))
            .map(|i| i.name)
            .collect();
        assert_eq!(first, ["SEQUENCE"]);
        // Only operations that set a new current file handle clear the current stateid, and
        // each of those is put in place by a handler that sets it.
        for i in TABLE.iter().filter(|i| i.has(CLEARS_STATEID)) {
            assert!(
                [
                    "PUTFH",
                    "PUTROOTFH",
                    "PUTPUBFH",
                    "LOOKUP",
                    "LOOKUPP",
                    "CREATE"
                ]
                .contains(&i.name),
                "{}",
                i.name
            );
        }
    }

    #[test]
    fn reply_bounds_follow_the_arguments() {
        let read = |count| {
            NfsArgop4::Read(proto::nfs4::fileops::ReadArgs {
                stateid: Default::default(),
                offset: 0,
                count,
            })
        };
        assert_eq!(reply_bound(&read(4096)), 12 + 4096);
        assert_eq!(
            reply_bound(&read(u32::MAX)),
            12 + u64::from(crate::limits::MAX_IO)
        );
        assert_eq!(reply_bound(&NfsArgop4::Getfh), crate::limits::REPLY_PER_OP);
        // Every op sized by its arguments is one `reply_bound` knows how to size.
        for i in TABLE.iter() {
            match i.rsize {
                Rsize::Small => {}
                Rsize::Data { .. } => assert!(["READ", "READ_PLUS"].contains(&i.name)),
                Rsize::Maxcount { .. } => assert_eq!(i.name, "READDIR"),
            }
        }
    }
}
