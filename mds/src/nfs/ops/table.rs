//! What the server knows about each NFSv4 operation, in one place, like knfsd's `nfsd4_ops[]`
//! (fs/nfsd/nfs4proc.c): its name, the state that owns it, flags the compound runner, the
//! read barrier and the security checks consult, and a bound on its reply. `ops::dispatch`
//! keeps the one match that calls handlers (they need the typed arguments); everything else
//! about an operation is read from here with `info(opnum)`.
use crate::limits::{MAX_IO, REPLY_PER_OP, SYMLINK_MAX, XATTR_VALUE_MAX};
use proto::nfs4::basic::{NFS4_FHSIZE, NFS4_OPAQUE_LIMIT};
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

/// How large the operation's result can be, its number and status included: the bound the
/// compound runner adds to the reply so far and checks against the session's reply sizes
/// before running the operation (knfsd's `op_rsize_bop`, RFC 8881 §2.10.6.4). A bound, never
/// less than what the handler can encode (the tests encode the largest results), and close
/// to it, since a compound whose bounds add up past `ca_maxresponsesize` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rsize {
    /// At most this many bytes, whatever the arguments.
    Fixed(u64),
    /// This many bytes plus what the arguments ask for (`reply_bound`): a data count (READ,
    /// READ_PLUS), a maxcount (READDIR, LAYOUTGET, GETDEVICEINFO, LISTXATTRS), attributes
    /// (GETATTR), stateids (TEST_STATEID) or devices (GETDEVICELIST).
    Args(u64),
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
/// Changes the file system (names, attributes, data) or may (OPEN with write access or a
/// create, LAYOUTGET for RW): on a handle inside a snapshot, current or saved, it answers
/// NFS4ERR_ROFS before its handler runs (`ops::snap::refusal`). Operations that change only
/// NFS state (CLOSE, LOCK, LAYOUTRETURN...) do not carry it; `table`'s tests hold every
/// other changing operation to it.
pub const CHANGES_FS: u32 = 1 << 9;
/// May change a file's bytes on this server's say-so (WRITE, SETATTR of a size, ALLOCATE,
/// DEALLOCATE, COPY, CLONE): runs inside the snapshot quiesce's gate, and answers
/// NFS4ERR_DELAY while a snapshot is being cut (`state::quiesce`). An RW LAYOUTGET, and an
/// OPEN that sets an existing file's size, enter the gate in their handlers; LAYOUTCOMMIT and
/// COMMIT only record bytes already written.
pub const CHANGES_DATA: u32 = 1 << 10;

impl OpInfo {
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// The same operation with a result larger than a status (`Rsize`).
    const fn reply(self, rsize: Rsize) -> OpInfo {
        OpInfo { rsize, ..self }
    }
}

/// An operation whose result is its number and status, and nothing else on success.
const fn op(name: &'static str, owner: Owner, flags: u32) -> OpInfo {
    OpInfo {
        name,
        owner,
        flags,
        rsize: Rsize::Fixed(HDR),
        bytes: Bytes::None,
    }
}

// Sizes of the parts of results, in bytes on the wire (RFC 8881 §3.2, §18).
/// The operation's number and status, which every result starts with.
const HDR: u64 = REPLY_PER_OP;
const STATEID: u64 = 16;
const VERIFIER: u64 = 8;
/// `change_info4`: atomic, before, after.
const CHANGE_INFO: u64 = 20;
/// A bitmap of attributes the server sets (CREATE, OPEN, SETATTR): a length and up to three
/// words, as many as the attributes it supports need.
const ATTRSET: u64 = 16;
/// `nfs_fh4`: a length and at most NFS4_FHSIZE bytes.
const FH: u64 = 4 + NFS4_FHSIZE as u64;
/// An `opaque<NFS4_OPAQUE_LIMIT>` or a string as long.
const OPAQUE: u64 = 4 + NFS4_OPAQUE_LIMIT as u64;
/// `open_delegation4` at its largest, a write delegation: type, stateid, recall, space limit
/// (type and a 64-bit limit) and an `nfsace4` (type, flags, mask and a `who` the server names,
/// at most 128 bytes as knfsd's IDMAP_NAMESZ).
const DELEGATION: u64 = 4 + STATEID + 4 + 12 + 12 + 4 + 128;
/// `secinfo4` of an RPCSEC_GSS flavor: flavor, OID (Kerberos V5's 9 bytes, padded), QOP and
/// service; the others are the flavor alone.
const SECINFO_GSS: u64 = 4 + (4 + 12) + 4 + 4;
/// Flavors an export can list: AUTH_SYS and the three Kerberos services (`export::SecFlavor`).
const SECINFO_FLAVORS: u64 = 4;
/// `channel_attrs4` with at most one `ca_rdma_ird`.
const CHANNEL_ATTRS: u64 = 6 * 4 + 4 + 4;
/// A `nfs_impl_id4` the server sends: domain and name (its own short strings, bounded here at
/// 64 bytes each) and a date.
const IMPL_ID: u64 = 2 * (4 + 64) + 12;
/// One segment header of READ_PLUS at its largest (a hole: type, offset, length).
const SEGMENT: u64 = 4 + 8 + 8;

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
    set!(OP_GETFH, op("GETFH", None, 0).reply(Rsize::Fixed(HDR + FH)));
    set!(OP_SAVEFH, op("SAVEFH", None, 0));
    set!(OP_RESTOREFH, op("RESTOREFH", None, PUTS_FH));
    let lookup = READS_STATE | CLEARS_STATEID | CHECKS_OWN_SEC;
    set!(OP_LOOKUP, op("LOOKUP", Current, lookup));
    set!(OP_LOOKUPP, op("LOOKUPP", Current, lookup));
    // The flavors' count, then each flavor.
    let secinfo = Rsize::Fixed(HDR + 4 + SECINFO_FLAVORS * SECINFO_GSS);
    set!(
        OP_SECINFO,
        op("SECINFO", Current, READS_STATE | CHECKS_OWN_SEC).reply(secinfo)
    );
    set!(
        OP_SECINFO_NO_NAME,
        op("SECINFO_NO_NAME", Current, CHECKS_OWN_SEC).reply(secinfo)
    );
    // Attributes.
    // The bitmap of attributes returned, their length, then each (`attrs_bound`).
    set!(
        OP_GETATTR,
        op("GETATTR", Current, READS_STATE).reply(Rsize::Args(HDR + 4))
    );
    set!(
        OP_SETATTR,
        op(
            "SETATTR",
            Current,
            READS_STATE | MODIFIES | CHANGES_FS | CHANGES_DATA
        )
        .reply(Rsize::Fixed(HDR + ATTRSET))
    );
    // Supported and granted access.
    set!(
        OP_ACCESS,
        op("ACCESS", Current, READS_STATE).reply(Rsize::Fixed(HDR + 8))
    );
    set!(OP_VERIFY, op("VERIFY", Current, READS_STATE));
    set!(OP_NVERIFY, op("NVERIFY", Current, READS_STATE));
    // Directories.
    // The cookie verifier, then entries within `maxcount`, at most MAX_IO (`dir::readdir`
    // keeps the whole READDIR4resok within it; knfsd counts the verifier besides, and so
    // does this).
    set!(
        OP_READDIR,
        op("READDIR", Current, READS_STATE).reply(Rsize::Args(HDR + VERIFIER))
    );
    set!(
        OP_READLINK,
        op("READLINK", Current, READS_STATE).reply(Rsize::Fixed(HDR + 4 + SYMLINK_MAX as u64))
    );
    set!(
        OP_CREATE,
        op(
            "CREATE",
            Current,
            READS_STATE | MODIFIES | CLEARS_STATEID | CHANGES_FS
        )
        .reply(Rsize::Fixed(HDR + CHANGE_INFO + ATTRSET))
    );
    set!(
        OP_REMOVE,
        op("REMOVE", Current, READS_STATE | MODIFIES | CHANGES_FS)
            .reply(Rsize::Fixed(HDR + CHANGE_INFO))
    );
    set!(
        OP_RENAME,
        op(
            "RENAME",
            SavedAndCurrent,
            READS_STATE | MODIFIES | CHANGES_FS
        )
        .reply(Rsize::Fixed(HDR + 2 * CHANGE_INFO))
    );
    set!(
        OP_LINK,
        op("LINK", SavedAndCurrent, READS_STATE | MODIFIES | CHANGES_FS)
            .reply(Rsize::Fixed(HDR + CHANGE_INFO))
    );
    set!(OP_OPENATTR, op("OPENATTR", Current, 0));
    // Opens and delegations.
    let open = READS_STATE | MODIFIES | CHECKS_OWN_SEC | CHANGES_FS;
    // Stateid, change info, result flags, the attributes set, the delegation.
    set!(
        OP_OPEN,
        op("OPEN", Opens, open).reply(Rsize::Fixed(
            HDR + STATEID + CHANGE_INFO + 4 + ATTRSET + DELEGATION
        ))
    );
    let stateid = Rsize::Fixed(HDR + STATEID);
    set!(OP_CLOSE, op("CLOSE", Opens, MODIFIES).reply(stateid));
    set!(
        OP_OPEN_DOWNGRADE,
        op("OPEN_DOWNGRADE", Opens, MODIFIES).reply(stateid)
    );
    set!(OP_DELEGRETURN, op("DELEGRETURN", Opens, MODIFIES));
    set!(OP_DELEGPURGE, op("DELEGPURGE", Opens, MODIFIES));
    // Its own status, the cookie verifier, the stateid and three bitmaps (notifications,
    // child and directory attributes).
    set!(
        OP_GET_DIR_DELEGATION,
        op("GET_DIR_DELEGATION", Opens, MODIFIES)
            .reply(Rsize::Fixed(HDR + 4 + VERIFIER + STATEID + 3 * ATTRSET))
    );
    set!(
        OP_WANT_DELEGATION,
        op("WANT_DELEGATION", Opens, MODIFIES).reply(Rsize::Fixed(HDR + DELEGATION))
    );
    // File data.
    // Eof, data length, then the data (padded).
    set!(
        OP_READ,
        OpInfo {
            bytes: Bytes::Read,
            ..op("READ", Current, READS_STATE).reply(Rsize::Args(HDR + 8))
        }
    );
    // Count, how committed, verifier.
    set!(
        OP_WRITE,
        OpInfo {
            bytes: Bytes::Written,
            ..op("WRITE", Current, MODIFIES | CHANGES_FS | CHANGES_DATA)
                .reply(Rsize::Fixed(HDR + 8 + VERIFIER))
        }
    );
    set!(
        OP_COMMIT,
        op("COMMIT", Current, MODIFIES | CHANGES_FS).reply(Rsize::Fixed(HDR + VERIFIER))
    );
    // Byte-range locks and stateids.
    // The lock stateid, or LOCK4denied: offset, length, type and the owner holding the
    // conflicting lock (client id and an owner of up to NFS4_OPAQUE_LIMIT bytes).
    let lock = Rsize::Fixed(HDR + 8 + 8 + 4 + 8 + OPAQUE);
    set!(OP_LOCK, op("LOCK", Locks, MODIFIES).reply(lock));
    set!(OP_LOCKT, op("LOCKT", Locks, 0).reply(lock));
    set!(OP_LOCKU, op("LOCKU", Locks, MODIFIES).reply(stateid));
    // A status per stateid.
    set!(
        OP_TEST_STATEID,
        op("TEST_STATEID", Session, 0).reply(Rsize::Args(HDR + 4))
    );
    set!(OP_FREE_STATEID, op("FREE_STATEID", Session, MODIFIES));
    // Clients and sessions.
    let alone = SESSIONLESS_ALONE | MODIFIES;
    // Client id, sequence id, flags; state protection (how, two bitmaps of operations);
    // server owner (minor id, major id) and scope, as long as the RFC allows (knfsd's bound);
    // one implementation id.
    set!(
        OP_EXCHANGE_ID,
        op("EXCHANGE_ID", Session, alone).reply(Rsize::Fixed(
            HDR + 8 + 4 + 4 + (4 + 2 * ATTRSET) + (8 + OPAQUE) + OPAQUE + 4 + IMPL_ID
        ))
    );
    // Session id, sequence, flags, the two channels' attributes.
    set!(
        OP_CREATE_SESSION,
        op("CREATE_SESSION", Session, alone)
            .reply(Rsize::Fixed(HDR + 16 + 4 + 4 + 2 * CHANNEL_ATTRS))
    );
    set!(OP_DESTROY_SESSION, op("DESTROY_SESSION", Session, alone));
    // Session id, direction, RDMA mode.
    set!(
        OP_BIND_CONN_TO_SESSION,
        op("BIND_CONN_TO_SESSION", Session, alone).reply(Rsize::Fixed(HDR + 16 + 4 + 4))
    );
    set!(OP_DESTROY_CLIENTID, op("DESTROY_CLIENTID", Session, alone));
    // Charged with the COMPOUND's own header (`limits::REPLY_HEAD`): session id, sequence
    // id, slot, highest slot, target highest slot, status flags.
    set!(
        OP_SEQUENCE,
        op("SEQUENCE", Session, FIRST_ONLY | MODIFIES).reply(Rsize::Fixed(HDR + 16 + 5 * 4))
    );
    set!(OP_BACKCHANNEL_CTL, op("BACKCHANNEL_CTL", Session, MODIFIES));
    set!(
        OP_RECLAIM_COMPLETE,
        op("RECLAIM_COMPLETE", Session, MODIFIES)
    );
    // The digest (the server offers no SSV, but the bound is the operation's).
    set!(
        OP_SET_SSV,
        op("SET_SSV", Session, MODIFIES).reply(Rsize::Fixed(HDR + OPAQUE))
    );
    // pNFS.
    // Return on close, the layout stateid, then the layouts within `loga_maxcount`
    // (`pnfs::layoutget` answers TOOSMALL past it).
    set!(
        OP_LAYOUTGET,
        op("LAYOUTGET", Layouts, READS_STATE | MODIFIES | CHANGES_FS)
            .reply(Rsize::Args(HDR + 4 + STATEID))
    );
    // Whether the size changed, the new size.
    set!(
        OP_LAYOUTCOMMIT,
        op("LAYOUTCOMMIT", Layouts, MODIFIES | CHANGES_FS).reply(Rsize::Fixed(HDR + 4 + 8))
    );
    // Whether a stateid follows, the stateid.
    set!(
        OP_LAYOUTRETURN,
        op("LAYOUTRETURN", Layouts, MODIFIES).reply(Rsize::Fixed(HDR + 4 + STATEID))
    );
    set!(OP_LAYOUTERROR, op("LAYOUTERROR", Layouts, MODIFIES));
    set!(OP_LAYOUTSTATS, op("LAYOUTSTATS", Layouts, 0));
    // The device address within `gdia_maxcount` (TOOSMALL past it), then the notification
    // bitmap (one word).
    set!(
        OP_GETDEVICEINFO,
        op("GETDEVICEINFO", Layouts, 0).reply(Rsize::Args(HDR + 8))
    );
    // Cookie, verifier, the device ids (16 bytes each, at most `gdla_maxdevices`), eof.
    set!(
        OP_GETDEVICELIST,
        op("GETDEVICELIST", Layouts, 0).reply(Rsize::Args(HDR + 8 + VERIFIER + 4 + 4))
    );
    // NFSv4.2.
    // Eof, offset.
    set!(
        OP_SEEK,
        op("SEEK", Current, READS_STATE).reply(Rsize::Fixed(HDR + 4 + 8))
    );
    set!(
        OP_ALLOCATE,
        op("ALLOCATE", Current, MODIFIES | CHANGES_FS | CHANGES_DATA)
    );
    set!(
        OP_DEALLOCATE,
        op("DEALLOCATE", Current, MODIFIES | CHANGES_FS | CHANGES_DATA)
    );
    // Eof, segment count, then the data. As knfsd, room for two segment headers: runs of data
    // and holes are whole blocks, so each further hole saves more data than its header takes.
    set!(
        OP_READ_PLUS,
        OpInfo {
            bytes: Bytes::Read,
            ..op("READ_PLUS", Current, READS_STATE).reply(Rsize::Args(HDR + 8 + 2 * SEGMENT))
        }
    );
    // The callback id (none or one stateid), count, how committed, verifier, consecutive,
    // synchronous.
    set!(
        OP_COPY,
        op(
            "COPY",
            SavedAndCurrent,
            MODIFIES | CHANGES_FS | CHANGES_DATA
        )
        .reply(Rsize::Fixed(HDR + 4 + STATEID + 8 + 4 + VERIFIER + 4 + 4))
    );
    set!(
        OP_CLONE,
        op(
            "CLONE",
            SavedAndCurrent,
            MODIFIES | CHANGES_FS | CHANGES_DATA
        )
    );
    // Lease time, stateid, one source server (a type and a netaddr: two strings).
    set!(
        OP_COPY_NOTIFY,
        op("COPY_NOTIFY", Current, MODIFIES)
            .reply(Rsize::Fixed(HDR + 12 + STATEID + 4 + 4 + 2 * OPAQUE))
    );
    set!(OP_OFFLOAD_CANCEL, op("OFFLOAD_CANCEL", None, MODIFIES));
    // Count, the optional completion status.
    set!(
        OP_OFFLOAD_STATUS,
        op("OFFLOAD_STATUS", None, 0).reply(Rsize::Fixed(HDR + 8 + 4 + 4))
    );
    // The hints honoured: a bitmap of one word.
    set!(
        OP_IO_ADVISE,
        op("IO_ADVISE", Current, 0).reply(Rsize::Fixed(HDR + 8))
    );
    // A write_response4: callback id, count, how committed, verifier.
    set!(
        OP_WRITE_SAME,
        op("WRITE_SAME", Current, MODIFIES | CHANGES_FS)
            .reply(Rsize::Fixed(HDR + 4 + STATEID + 8 + 4 + VERIFIER))
    );
    // Extended attributes (RFC 8276).
    // The value, as large as the server stores (knfsd: XATTR_SIZE_MAX).
    set!(
        OP_GETXATTR,
        op("GETXATTR", Current, READS_STATE).reply(Rsize::Fixed(HDR + 4 + XATTR_VALUE_MAX as u64))
    );
    let xattr_change = Rsize::Fixed(HDR + CHANGE_INFO);
    // SETXATTR and REMOVEXATTR read the file first (Linux's permission rules, the delegations
    // to recall), as SETATTR does: a lagging replica must not answer STALE for it.
    set!(
        OP_SETXATTR,
        op("SETXATTR", Current, READS_STATE | MODIFIES | CHANGES_FS).reply(xattr_change)
    );
    // Cookie, names within `lxa_maxcount`, eof (knfsd counts the cookie, the names' count
    // and eof besides maxcount, and so does this).
    set!(
        OP_LISTXATTRS,
        op("LISTXATTRS", Current, READS_STATE).reply(Rsize::Args(HDR + 8 + 4 + 4))
    );
    set!(
        OP_REMOVEXATTR,
        op("REMOVEXATTR", Current, READS_STATE | MODIFIES | CHANGES_FS).reply(xattr_change)
    );
    // NFSv4.0 only.
    set!(
        OP_OPEN_CONFIRM,
        op("OPEN_CONFIRM", Opens, V40_ONLY).reply(stateid)
    );
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
    let head = match info(op.opnum()).rsize {
        Rsize::Fixed(n) => return n,
        Rsize::Args(head) => head,
    };
    // Data is padded to a multiple of four bytes.
    let data = |count: u32| u64::from(count.min(MAX_IO)).next_multiple_of(4);
    head + match op {
        NfsArgop4::Read(a) => data(a.count),
        NfsArgop4::ReadPlus(a) => data(a.rpa_count),
        NfsArgop4::Readdir(a) => u64::from(a.maxcount.min(MAX_IO)),
        NfsArgop4::Getattr(a) => attrs_bound(&a.attr_request),
        NfsArgop4::TestStateid(a) => 4 * a.ts_stateids.len() as u64,
        NfsArgop4::Layoutget(a) => u64::from(a.loga_maxcount),
        NfsArgop4::Getdeviceinfo(a) => u64::from(a.gdia_maxcount),
        NfsArgop4::Getdevicelist(a) => 16 * u64::from(a.gdla_maxdevices),
        NfsArgop4::Listxattrs(a) => u64::from(a.lxa_maxcount),
        // An operation whose arguments did not decode is answered with its status alone.
        _ => 0,
    }
}

/// The most bytes a GETATTR's `fattr4` takes for the attributes `request` asks for: the
/// bitmap of those the server returns (those it supports), then each one's value. As knfsd's
/// nfsd4_getattr_rsize, but sized for what this server returns: attributes it does not
/// support (ACL, fs_locations) are not returned and cost nothing. Counts bits without
/// building a bitmap: GETATTR is the hottest operation.
pub fn attrs_bound(request: &[u32]) -> u64 {
    let supported = crate::nfs::attrs::supported().words();
    let mut words = 0;
    let mut values = 0;
    for (w, (&asked, &have)) in request.iter().zip(supported).enumerate() {
        let mut bits = asked & have;
        if bits != 0 {
            words = w as u64 + 1;
        }
        while bits != 0 {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            values += attr_bound(w as u32 * 32 + bit);
        }
    }
    4 + 4 * words + values
}

/// The most bytes the value of supported attribute `bit` takes (RFC 8881 §5.6, §5.7, §5.8;
/// RFC 8276 for xattr_support). An attribute the server supports but this does not know is
/// counted as a whole reply, so that adding one without its size here refuses GETATTRs
/// rather than answer past the session's limit (a test catches it first).
const fn attr_bound(bit: u32) -> u64 {
    use proto::nfs4::attr::*;
    match bit {
        // bitmap4 of the supported attributes: a length and three words.
        FATTR4_SUPPORTED_ATTRS | FATTR4_SUPPATTR_EXCLCREAT => 16,
        // uint32, bool and enum values.
        FATTR4_TYPE
        | FATTR4_FH_EXPIRE_TYPE
        | FATTR4_LINK_SUPPORT
        | FATTR4_SYMLINK_SUPPORT
        | FATTR4_NAMED_ATTR
        | FATTR4_UNIQUE_HANDLES
        | FATTR4_LEASE_TIME
        | FATTR4_RDATTR_ERROR
        | FATTR4_ACLSUPPORT
        | FATTR4_CANSETTIME
        | FATTR4_CASE_INSENSITIVE
        | FATTR4_CASE_PRESERVING
        | FATTR4_CHOWN_RESTRICTED
        | FATTR4_HOMOGENEOUS
        | FATTR4_MAXLINK
        | FATTR4_MAXNAME
        | FATTR4_MODE
        | FATTR4_NO_TRUNC
        | FATTR4_NUMLINKS
        | FATTR4_LAYOUT_BLKSIZE
        | FATTR4_CLONE_BLKSIZE
        | FATTR4_CHANGE_ATTR_TYPE
        | FATTR4_XATTR_SUPPORT => 4,
        // uint64 values, and specdata4 (two uint32).
        FATTR4_CHANGE
        | FATTR4_SIZE
        | FATTR4_FILEID
        | FATTR4_FILES_AVAIL
        | FATTR4_FILES_FREE
        | FATTR4_FILES_TOTAL
        | FATTR4_MAXFILESIZE
        | FATTR4_MAXREAD
        | FATTR4_MAXWRITE
        | FATTR4_RAWDEV
        | FATTR4_SPACE_AVAIL
        | FATTR4_SPACE_FREE
        | FATTR4_SPACE_TOTAL
        | FATTR4_SPACE_USED
        | FATTR4_MOUNTED_ON_FILEID => 8,
        // nfstime4.
        FATTR4_TIME_ACCESS | FATTR4_TIME_CREATE | FATTR4_TIME_DELTA | FATTR4_TIME_METADATA
        | FATTR4_TIME_MODIFY => 12,
        // fsid4: two uint64.
        FATTR4_FSID => 16,
        FATTR4_FILEHANDLE => FH,
        // Owners are numeric ids (`attrs::file_attrs`): a length and at most ten digits.
        FATTR4_OWNER | FATTR4_OWNER_GROUP => 4 + 12,
        // A count and at most three layout types (this server offers flexfiles or none).
        FATTR4_FS_LAYOUT_TYPES => 4 + 3 * 4,
        // RFC 9754's open_arguments4: five bitmaps of one word each (`attrs::open_arguments`).
        FATTR4_OPEN_ARGUMENTS => 5 * (4 + 4),
        // Set-only attributes are never returned, nor the times a delegation's holder keeps.
        FATTR4_TIME_ACCESS_SET
        | FATTR4_TIME_MODIFY_SET
        | FATTR4_TIME_DELEG_ACCESS
        | FATTR4_TIME_DELEG_MODIFY => 0,
        _ => crate::limits::MAX_MSG as u64,
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

    /// Every operation that changes something and is reached through a file handle either
    /// changes the file system, and so is refused inside a snapshot (`CHANGES_FS`), or is
    /// listed here as changing only NFS state: a new operation must choose.
    #[test]
    fn every_changing_operation_on_a_file_handle_is_refused_in_snapshots_or_changes_only_state() {
        let state_only = [
            "CLOSE",
            "OPEN_DOWNGRADE",
            "DELEGRETURN",
            "DELEGPURGE",
            "GET_DIR_DELEGATION",
            "WANT_DELEGATION",
            "LOCK",
            "LOCKU",
            "LAYOUTRETURN",
            "LAYOUTERROR",
            "COPY_NOTIFY",
            "OPEN_CONFIRM",
        ];
        let mut refused = Vec::new();
        for i in TABLE.iter() {
            let by_handle = !matches!(i.owner, Owner::None | Owner::Session);
            if by_handle && i.has(MODIFIES) {
                assert!(
                    i.has(CHANGES_FS) != state_only.contains(&i.name),
                    "{}: CHANGES_FS or state only, one of the two",
                    i.name
                );
            }
            if i.has(CHANGES_FS) {
                assert!(by_handle && i.has(MODIFIES), "{}", i.name);
                refused.push(i.name);
            }
        }
        assert_eq!(
            refused,
            [
                "COMMIT",
                "CREATE",
                "LINK",
                "OPEN",
                "REMOVE",
                "RENAME",
                "SETATTR",
                "WRITE",
                "LAYOUTCOMMIT",
                "LAYOUTGET",
                "ALLOCATE",
                "COPY",
                "DEALLOCATE",
                "WRITE_SAME",
                "CLONE",
                "SETXATTR",
                "REMOVEXATTR"
            ]
        );
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

    fn read(count: u32) -> NfsArgop4 {
        NfsArgop4::Read(proto::nfs4::fileops::ReadArgs {
            stateid: Default::default(),
            offset: 0,
            count,
        })
    }

    fn getattr(bits: &[u32]) -> NfsArgop4 {
        NfsArgop4::Getattr(proto::nfs4::fileops::GetattrArgs {
            attr_request: proto::nfs4::attr::Bitmap::from_bits(bits).to_vec(),
        })
    }

    #[test]
    fn reply_bounds_follow_the_arguments() {
        // Status, eof, length, the data padded, at most MAX_IO of it.
        assert_eq!(reply_bound(&read(4096)), 16 + 4096);
        assert_eq!(reply_bound(&read(4095)), 16 + 4096);
        assert_eq!(reply_bound(&read(u32::MAX)), 16 + u64::from(MAX_IO));
        assert_eq!(reply_bound(&NfsArgop4::Getfh), 8 + 4 + 128);
        assert_eq!(reply_bound(&NfsArgop4::Putrootfh), REPLY_PER_OP);
        let test = |n| {
            NfsArgop4::TestStateid(proto::nfs4::state::TestStateidArgs {
                ts_stateids: vec![Default::default(); n],
            })
        };
        assert_eq!(reply_bound(&test(3)) - reply_bound(&test(0)), 12);
        let listx = |lxa_maxcount| {
            NfsArgop4::Listxattrs(proto::nfs4::v42::ListxattrsArgs {
                lxa_cookie: 0,
                lxa_maxcount,
            })
        };
        assert_eq!(reply_bound(&listx(1000)) - reply_bound(&listx(0)), 1000);
        assert_eq!(
            reply_bound(&NfsArgop4::Getxattr(proto::nfs4::v42::GetxattrArgs {
                gxa_name: Default::default(),
            })),
            8 + 4 + u64::from(XATTR_VALUE_MAX)
        );
        // Every op sized by its arguments is one `reply_bound` knows how to size.
        let by_args: Vec<&str> = TABLE
            .iter()
            .filter(|i| matches!(i.rsize, Rsize::Args(_)))
            .map(|i| i.name)
            .collect();
        assert_eq!(
            by_args,
            [
                "GETATTR",
                "READ",
                "READDIR",
                "GETDEVICEINFO",
                "GETDEVICELIST",
                "LAYOUTGET",
                "TEST_STATEID",
                "READ_PLUS",
                "LISTXATTRS"
            ]
        );
        // Every result holds at least its number and status.
        for i in TABLE.iter() {
            let (Rsize::Fixed(n) | Rsize::Args(n)) = i.rsize;
            assert!(n >= REPLY_PER_OP, "{}", i.name);
        }
    }

    /// The largest value of every attribute the server returns, as `attrs::file_attrs` fills
    /// them: the bound covers its encoding, and by no more than the padding of variable ones.
    #[test]
    fn getattr_bound_covers_every_supported_attribute_and_little_more() {
        use proto::nfs4::attr::*;
        use proto::nfs4::basic::*;
        use proto::xdr::Opaque;
        let supported = crate::nfs::attrs::supported();
        for bit in supported.iter() {
            assert!(
                attr_bound(bit) < u64::from(crate::limits::MAX_MSG),
                "attribute {bit} is supported but has no size in attr_bound"
            );
        }
        let t = Nfstime4 {
            seconds: i64::MAX,
            nseconds: 999_999_999,
        };
        let all = FileAttrs {
            supported_attrs: Some(supported.clone()),
            ftype: Some(NfsFtype4::Reg),
            fh_expire_type: Some(0),
            change: Some(u64::MAX),
            size: Some(u64::MAX),
            link_support: Some(true),
            symlink_support: Some(true),
            named_attr: Some(false),
            fsid: Some(Fsid4 {
                major: u64::MAX,
                minor: u64::MAX,
            }),
            unique_handles: Some(true),
            lease_time: Some(u32::MAX),
            rdattr_error: Some(0),
            aclsupport: Some(0),
            cansettime: Some(true),
            case_insensitive: Some(false),
            case_preserving: Some(true),
            chown_restricted: Some(true),
            filehandle: Some(NfsFh4(Opaque(vec![1; NFS4_FHSIZE]))),
            fileid: Some(u64::MAX),
            files_avail: Some(u64::MAX),
            files_free: Some(u64::MAX),
            files_total: Some(u64::MAX),
            homogeneous: Some(true),
            maxfilesize: Some(u64::MAX),
            maxlink: Some(u32::MAX),
            maxname: Some(255),
            maxread: Some(u64::MAX),
            maxwrite: Some(u64::MAX),
            mode: Some(0o7777),
            no_trunc: Some(true),
            numlinks: Some(u32::MAX),
            owner: Some(Opaque(u32::MAX.to_string().into_bytes())),
            owner_group: Some(Opaque(u32::MAX.to_string().into_bytes())),
            rawdev: Some(Specdata4::default()),
            space_avail: Some(u64::MAX),
            space_free: Some(u64::MAX),
            space_total: Some(u64::MAX),
            space_used: Some(u64::MAX),
            time_access: Some(t),
            time_create: Some(t),
            time_delta: Some(t),
            time_metadata: Some(t),
            time_modify: Some(t),
            mounted_on_fileid: Some(u64::MAX),
            suppattr_exclcreat: Some(crate::nfs::attrs::settable().clone()),
            clone_blksize: Some(u32::MAX),
            change_attr_type: Some(1),
            fs_layout_types: Some(vec![proto::nfs4::pnfs::LAYOUT4_FLEX_FILES]),
            layout_blksize: Some(u32::MAX),
            xattr_support: Some(true),
            open_arguments: Some(crate::nfs::attrs::open_arguments()),
            ..Default::default()
        };
        let f = all.encode(supported);
        let encoded = 8 + 4 + 4 * f.attrmask.len() as u64 + 4 + f.attr_vals.len() as u64;
        let bits: Vec<u32> = supported.iter().collect();
        let bound = reply_bound(&getattr(&bits));
        assert!(encoded <= bound, "{encoded} > {bound}");
        // Slack: two more layout types than sent, the owners' padding.
        assert!(bound - encoded <= 16, "{encoded} vs {bound}");
        // Asking for everything, supported or not, costs no more: what is not supported is not
        // returned (ACL, fs_locations).
        let everything: Vec<u32> = (0..=FATTR4_OPEN_ARGUMENTS).collect();
        assert_eq!(reply_bound(&getattr(&everything)), bound);
        // An attribute costs what its value takes.
        assert_eq!(
            reply_bound(&getattr(&[FATTR4_SIZE, FATTR4_CHANGE]))
                - reply_bound(&getattr(&[FATTR4_SIZE])),
            8
        );
        assert_eq!(
            reply_bound(&getattr(&[])),
            8 + 4 + 4,
            "status, an empty bitmap and empty values"
        );
    }
}
