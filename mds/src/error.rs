//! NFSv4 errors as the server's handlers return them; the discriminant is the wire code.
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[repr(u32)]
pub enum NfsError {
    #[error("NFS4ERR_PERM")]
    Perm = 1,
    #[error("NFS4ERR_NOENT")]
    NoEnt = 2,
    #[error("NFS4ERR_IO")]
    Io = 5,
    #[error("NFS4ERR_NXIO")]
    Nxio = 6,
    #[error("NFS4ERR_ACCESS")]
    Access = 13,
    #[error("NFS4ERR_EXIST")]
    Exist = 17,
    #[error("NFS4ERR_XDEV")]
    Xdev = 18,
    #[error("NFS4ERR_NOTDIR")]
    NotDir = 20,
    #[error("NFS4ERR_ISDIR")]
    IsDir = 21,
    #[error("NFS4ERR_INVAL")]
    Inval = 22,
    #[error("NFS4ERR_FBIG")]
    FBig = 27,
    #[error("NFS4ERR_NOSPC")]
    NoSpc = 28,
    #[error("NFS4ERR_ROFS")]
    Rofs = 30,
    #[error("NFS4ERR_MLINK")]
    MLink = 31,
    #[error("NFS4ERR_NAMETOOLONG")]
    NameTooLong = 63,
    #[error("NFS4ERR_NOTEMPTY")]
    NotEmpty = 66,
    #[error("NFS4ERR_DQUOT")]
    DQuot = 69,
    #[error("NFS4ERR_STALE")]
    Stale = 70,
    #[error("NFS4ERR_BADHANDLE")]
    BadHandle = 10001,
    #[error("NFS4ERR_BAD_COOKIE")]
    BadCookie = 10003,
    #[error("NFS4ERR_NOTSUPP")]
    NotSupp = 10004,
    #[error("NFS4ERR_TOOSMALL")]
    TooSmall = 10005,
    #[error("NFS4ERR_SERVERFAULT")]
    ServerFault = 10006,
    #[error("NFS4ERR_BADTYPE")]
    BadType = 10007,
    #[error("NFS4ERR_DELAY")]
    Delay = 10008,
    #[error("NFS4ERR_SAME")]
    Same = 10009,
    #[error("NFS4ERR_DENIED")]
    Denied = 10010,
    #[error("NFS4ERR_EXPIRED")]
    Expired = 10011,
    #[error("NFS4ERR_LOCKED")]
    Locked = 10012,
    #[error("NFS4ERR_GRACE")]
    Grace = 10013,
    #[error("NFS4ERR_FHEXPIRED")]
    FhExpired = 10014,
    #[error("NFS4ERR_SHARE_DENIED")]
    ShareDenied = 10015,
    #[error("NFS4ERR_WRONGSEC")]
    WrongSec = 10016,
    #[error("NFS4ERR_CLID_INUSE")]
    ClidInUse = 10017,
    #[error("NFS4ERR_RESOURCE")]
    Resource = 10018,
    #[error("NFS4ERR_MOVED")]
    Moved = 10019,
    #[error("NFS4ERR_NOFILEHANDLE")]
    NoFileHandle = 10020,
    #[error("NFS4ERR_MINOR_VERS_MISMATCH")]
    MinorVersMismatch = 10021,
    #[error("NFS4ERR_STALE_CLIENTID")]
    StaleClientId = 10022,
    #[error("NFS4ERR_STALE_STATEID")]
    StaleStateId = 10023,
    #[error("NFS4ERR_OLD_STATEID")]
    OldStateId = 10024,
    #[error("NFS4ERR_BAD_STATEID")]
    BadStateId = 10025,
    #[error("NFS4ERR_BAD_SEQID")]
    BadSeqId = 10026,
    #[error("NFS4ERR_NOT_SAME")]
    NotSame = 10027,
    #[error("NFS4ERR_LOCK_RANGE")]
    LockRange = 10028,
    #[error("NFS4ERR_SYMLINK")]
    Symlink = 10029,
    #[error("NFS4ERR_RESTOREFH")]
    RestoreFh = 10030,
    #[error("NFS4ERR_ATTRNOTSUPP")]
    AttrNotSupp = 10032,
    #[error("NFS4ERR_NO_GRACE")]
    NoGrace = 10033,
    #[error("NFS4ERR_RECLAIM_BAD")]
    ReclaimBad = 10034,
    #[error("NFS4ERR_BADXDR")]
    BadXdr = 10036,
    #[error("NFS4ERR_LOCKS_HELD")]
    LocksHeld = 10037,
    #[error("NFS4ERR_OPENMODE")]
    OpenMode = 10038,
    #[error("NFS4ERR_BADOWNER")]
    BadOwner = 10039,
    #[error("NFS4ERR_BADCHAR")]
    BadChar = 10040,
    #[error("NFS4ERR_BADNAME")]
    BadName = 10041,
    #[error("NFS4ERR_BAD_RANGE")]
    BadRange = 10042,
    #[error("NFS4ERR_LOCK_NOTSUPP")]
    LockNotSupp = 10043,
    #[error("NFS4ERR_OP_ILLEGAL")]
    OpIllegal = 10044,
    #[error("NFS4ERR_DEADLOCK")]
    Deadlock = 10045,
    #[error("NFS4ERR_FILE_OPEN")]
    FileOpen = 10046,
    #[error("NFS4ERR_ADMIN_REVOKED")]
    AdminRevoked = 10047,
    #[error("NFS4ERR_CB_PATH_DOWN")]
    CbPathDown = 10048,
    #[error("NFS4ERR_BADIOMODE")]
    BadIoMode = 10049,
    #[error("NFS4ERR_BADLAYOUT")]
    BadLayout = 10050,
    #[error("NFS4ERR_BAD_SESSION_DIGEST")]
    BadSessionDigest = 10051,
    #[error("NFS4ERR_BADSESSION")]
    BadSession = 10052,
    #[error("NFS4ERR_BADSLOT")]
    BadSlot = 10053,
    #[error("NFS4ERR_COMPLETE_ALREADY")]
    CompleteAlready = 10054,
    #[error("NFS4ERR_CONN_NOT_BOUND_TO_SESSION")]
    ConnNotBoundToSession = 10055,
    #[error("NFS4ERR_DELEG_ALREADY_WANTED")]
    DelegAlreadyWanted = 10056,
    #[error("NFS4ERR_BACK_CHAN_BUSY")]
    BackChanBusy = 10057,
    #[error("NFS4ERR_LAYOUTTRYLATER")]
    LayoutTryLater = 10058,
    #[error("NFS4ERR_LAYOUTUNAVAILABLE")]
    LayoutUnavailable = 10059,
    #[error("NFS4ERR_NOMATCHING_LAYOUT")]
    NoMatchingLayout = 10060,
    #[error("NFS4ERR_RECALLCONFLICT")]
    RecallConflict = 10061,
    #[error("NFS4ERR_UNKNOWN_LAYOUTTYPE")]
    UnknownLayoutType = 10062,
    #[error("NFS4ERR_SEQ_MISORDERED")]
    SeqMisordered = 10063,
    #[error("NFS4ERR_SEQUENCE_POS")]
    SequencePos = 10064,
    #[error("NFS4ERR_REQ_TOO_BIG")]
    ReqTooBig = 10065,
    #[error("NFS4ERR_REP_TOO_BIG")]
    RepTooBig = 10066,
    #[error("NFS4ERR_REP_TOO_BIG_TO_CACHE")]
    RepTooBigToCache = 10067,
    #[error("NFS4ERR_RETRY_UNCACHED_REP")]
    RetryUncachedRep = 10068,
    #[error("NFS4ERR_UNSAFE_COMPOUND")]
    UnsafeCompound = 10069,
    #[error("NFS4ERR_TOO_MANY_OPS")]
    TooManyOps = 10070,
    #[error("NFS4ERR_OP_NOT_IN_SESSION")]
    OpNotInSession = 10071,
    #[error("NFS4ERR_HASH_ALG_UNSUPP")]
    HashAlgUnsupp = 10072,
    #[error("NFS4ERR_CLIENTID_BUSY")]
    ClientIdBusy = 10074,
    #[error("NFS4ERR_PNFS_IO_HOLE")]
    PnfsIoHole = 10075,
    #[error("NFS4ERR_SEQ_FALSE_RETRY")]
    SeqFalseRetry = 10076,
    #[error("NFS4ERR_BAD_HIGH_SLOT")]
    BadHighSlot = 10077,
    #[error("NFS4ERR_DEADSESSION")]
    DeadSession = 10078,
    #[error("NFS4ERR_ENCR_ALG_UNSUPP")]
    EncrAlgUnsupp = 10079,
    #[error("NFS4ERR_PNFS_NO_LAYOUT")]
    PnfsNoLayout = 10080,
    #[error("NFS4ERR_NOT_ONLY_OP")]
    NotOnlyOp = 10081,
    #[error("NFS4ERR_WRONG_CRED")]
    WrongCred = 10082,
    #[error("NFS4ERR_WRONG_TYPE")]
    WrongType = 10083,
    #[error("NFS4ERR_DIRDELEG_UNAVAIL")]
    DirDelegUnavail = 10084,
    #[error("NFS4ERR_REJECT_DELEG")]
    RejectDeleg = 10085,
    #[error("NFS4ERR_RETURNCONFLICT")]
    ReturnConflict = 10086,
    #[error("NFS4ERR_DELEG_REVOKED")]
    DelegRevoked = 10087,
    #[error("NFS4ERR_PARTNER_NOTSUPP")]
    PartnerNotSupp = 10088,
    #[error("NFS4ERR_PARTNER_NO_AUTH")]
    PartnerNoAuth = 10089,
    #[error("NFS4ERR_UNION_NOTSUPP")]
    UnionNotSupp = 10090,
    #[error("NFS4ERR_OFFLOAD_DENIED")]
    OffloadDenied = 10091,
    #[error("NFS4ERR_WRONG_LFS")]
    WrongLfs = 10092,
    #[error("NFS4ERR_BADLABEL")]
    BadLabel = 10093,
    #[error("NFS4ERR_OFFLOAD_NO_REQS")]
    OffloadNoReqs = 10094,
    #[error("NFS4ERR_NOXATTR")]
    NoXattr = 10095,
    #[error("NFS4ERR_XATTR2BIG")]
    Xattr2Big = 10096,
}

impl NfsError {
    pub fn code(self) -> u32 {
        self as u32
    }
}

pub type NfsResult<T> = Result<T, NfsError>;

impl From<meta::namespace::FsError> for NfsError {
    fn from(e: meta::namespace::FsError) -> Self {
        use meta::namespace::FsError as F;
        match e {
            F::NotFound => NfsError::NoEnt,
            F::Exists => NfsError::Exist,
            F::NotDir => NfsError::NotDir,
            F::IsDir => NfsError::IsDir,
            F::NotEmpty => NfsError::NotEmpty,
            F::Invalid => NfsError::Inval,
            F::NameTooLong => NfsError::NameTooLong,
            // The root is never removed: missing, it is not made yet (a new metadata cluster
            // before its first election); the client tries again rather than fail its mount.
            F::Stale(meta::namespace::ROOT_INO) => NfsError::Delay,
            F::Stale(_) => NfsError::Stale,
            F::WrongKind => NfsError::BadType,
            F::Perm => NfsError::Perm,
            F::Access => NfsError::Access,
            F::Io(msg) | F::Corrupt(msg) => {
                tracing::error!("namespace: {msg}");
                NfsError::Io
            }
            F::NoSpace => NfsError::NoSpc,
            F::NoXattr => NfsError::NoXattr,
            F::XattrTooBig => NfsError::Xattr2Big,
            // A proposer retries `Changed` a few times; a name that keeps changing under it is
            // the client's to try again.
            F::Closed | F::Changed => NfsError::Delay,
            F::Unavailable(msg) => {
                tracing::warn!("namespace: {msg}");
                NfsError::Delay
            }
            // A cross-shard operation held what this one needs, or gave up: try again.
            F::Busy | F::Aborted => NfsError::Delay,
            // Read without every shard's barrier: this replica may only be behind. Readers
            // that passed the barriers answer corruption themselves (`Ctx::read`).
            F::Dangling { .. } => NfsError::Delay,
            inner @ (F::Elsewhere | F::NeedLock(_) | F::Answered(_)) => {
                tracing::error!("namespace: a transaction's internal error escaped: {inner:?}");
                NfsError::ServerFault
            }
        }
    }
}

impl From<chunkstore::DsError> for NfsError {
    fn from(e: chunkstore::DsError) -> Self {
        // A full disk is the client's to know about, not a server fault.
        match e.raw_os_error() {
            Some(libc::ENOSPC) => NfsError::NoSpc,
            Some(libc::EDQUOT) => NfsError::DQuot,
            _ => {
                tracing::error!("chunk store: {e}");
                NfsError::Io
            }
        }
    }
}
