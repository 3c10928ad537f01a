//! Open, lock and delegation state (RFC 8881 §18): OPEN, OPEN_CONFIRM, OPEN_DOWNGRADE, CLOSE,
//! LOCK, LOCKT, LOCKU, RELEASE_LOCKOWNER, DELEGPURGE, DELEGRETURN, FREE_STATEID,
//! TEST_STATEID, WANT_DELEGATION, GET_DIR_DELEGATION.
use super::basic::*;
use super::fileops::{res_union, StatusRes};
use crate::Xdr;

pub const OPEN4_SHARE_ACCESS_READ: u32 = 0x0000_0001;
pub const OPEN4_SHARE_ACCESS_WRITE: u32 = 0x0000_0002;
pub const OPEN4_SHARE_ACCESS_BOTH: u32 = 0x0000_0003;
pub const OPEN4_SHARE_DENY_NONE: u32 = 0x0000_0000;
pub const OPEN4_SHARE_DENY_READ: u32 = 0x0000_0001;
pub const OPEN4_SHARE_DENY_WRITE: u32 = 0x0000_0002;
pub const OPEN4_SHARE_DENY_BOTH: u32 = 0x0000_0003;
pub const OPEN4_SHARE_ACCESS_WANT_DELEG_MASK: u32 = 0xFF00;
pub const OPEN4_SHARE_ACCESS_WANT_NO_PREFERENCE: u32 = 0x0000;
pub const OPEN4_SHARE_ACCESS_WANT_READ_DELEG: u32 = 0x0100;
pub const OPEN4_SHARE_ACCESS_WANT_WRITE_DELEG: u32 = 0x0200;
pub const OPEN4_SHARE_ACCESS_WANT_ANY_DELEG: u32 = 0x0300;
pub const OPEN4_SHARE_ACCESS_WANT_NO_DELEG: u32 = 0x0400;
pub const OPEN4_SHARE_ACCESS_WANT_CANCEL: u32 = 0x0500;
pub const OPEN4_SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL: u32 = 0x10000;
pub const OPEN4_SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED: u32 = 0x20000;
/// RFC 9754 §5: a delegation granted to this OPEN is to be `*_ATTRS_DELEG` (the holder keeps
/// the file's access and modify times).
pub const OPEN4_SHARE_ACCESS_WANT_DELEG_TIMESTAMPS: u32 = 0x10_0000;
/// RFC 9754 §4: the OPEN is to return either an open or a delegation stateid, not both.
pub const OPEN4_SHARE_ACCESS_WANT_OPEN_XOR_DELEGATION: u32 = 0x20_0000;
pub const OPEN4_RESULT_CONFIRM: u32 = 0x0000_0002;
pub const OPEN4_RESULT_LOCKTYPE_POSIX: u32 = 0x0000_0004;
pub const OPEN4_RESULT_PRESERVE_UNLINKED: u32 = 0x0000_0008;
pub const OPEN4_RESULT_MAY_NOTIFY_LOCK: u32 = 0x0000_0020;
/// RFC 9754 §4: the OPEN returned a delegation stateid and no open stateid.
pub const OPEN4_RESULT_NO_OPEN_STATEID: u32 = 0x0000_0010;

/// `createmode4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum Createmode4 {
    Unchecked4 = 0,
    Guarded4 = 1,
    Exclusive4 = 2,
    Exclusive4_1 = 3,
}

/// `creatverfattr`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Creatverfattr {
    pub cva_verf: Verifier4,
    pub cva_attrs: Fattr4,
}

/// `createhow4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Createhow4 {
    #[xdr(case = 0)]
    Unchecked(Fattr4),
    #[xdr(case = 1)]
    Guarded(Fattr4),
    #[xdr(case = 2)]
    Exclusive(Verifier4),
    #[xdr(case = 3)]
    Exclusive41(Creatverfattr),
}

/// `openflag4`: `union switch (opentype4) { case OPEN4_CREATE: createhow4; default: void }`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Openflag4 {
    #[xdr(case = 0)]
    NoCreate,
    #[xdr(case = 1)]
    Create(Createhow4),
}

/// `limit_by4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum LimitBy4 {
    Size = 1,
    Blocks = 2,
}
/// `nfs_modified_limit4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct NfsModifiedLimit4 {
    pub num_blocks: u32,
    pub bytes_per_block: u32,
}
/// `nfs_space_limit4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum NfsSpaceLimit4 {
    #[xdr(case = 1)]
    Size(u64),
    #[xdr(case = 2)]
    Blocks(NfsModifiedLimit4),
}

/// `open_delegation_type4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum OpenDelegationType4 {
    None = 0,
    Read = 1,
    Write = 2,
    NoneExt = 3,
    /// RFC 9754 §5.2: read and write delegations whose holder keeps the file's times.
    ReadAttrsDeleg = 4,
    WriteAttrsDeleg = 5,
}

/// `open_claim_type4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum OpenClaimType4 {
    Null = 0,
    Previous = 1,
    DelegateCur = 2,
    DelegatePrev = 3,
    Fh = 4,
    DelegCurFh = 5,
    DelegPrevFh = 6,
}

/// `open_claim_delegate_cur4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OpenClaimDelegateCur4 {
    pub delegate_stateid: Stateid4,
    #[xdr(max = MAX_NAME_BYTES)]
    pub file: Component4,
}

/// `open_claim4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum OpenClaim4 {
    #[xdr(case = 0)]
    Null(#[xdr(max = MAX_NAME_BYTES)] Component4),
    #[xdr(case = 1)]
    Previous(OpenDelegationType4),
    #[xdr(case = 2)]
    DelegateCur(OpenClaimDelegateCur4),
    #[xdr(case = 3)]
    DelegatePrev(#[xdr(max = MAX_NAME_BYTES)] Component4),
    #[xdr(case = 4)]
    Fh,
    #[xdr(case = 6)]
    DelegPrevFh,
    #[xdr(case = 5)]
    DelegCurFh(Stateid4),
}

/// `OPEN4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OpenArgs {
    pub seqid: Seqid4,
    pub share_access: u32,
    pub share_deny: u32,
    pub owner: OpenOwner4,
    pub openhow: Openflag4,
    pub claim: OpenClaim4,
}

/// `open_read_delegation4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OpenReadDelegation4 {
    pub stateid: Stateid4,
    pub recall: bool,
    pub permissions: Nfsace4,
}
/// `open_write_delegation4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OpenWriteDelegation4 {
    pub stateid: Stateid4,
    pub recall: bool,
    pub space_limit: NfsSpaceLimit4,
    pub permissions: Nfsace4,
}

/// `why_no_delegation4`.
pub const WND4_NOT_WANTED: u32 = 0;
pub const WND4_CONTENTION: u32 = 1;
pub const WND4_RESOURCE: u32 = 2;
pub const WND4_NOT_SUPP_FTYPE: u32 = 3;
pub const WND4_WRITE_DELEG_NOT_SUPP_FTYPE: u32 = 4;
pub const WND4_NOT_SUPP_UPGRADE: u32 = 5;
pub const WND4_NOT_SUPP_DOWNGRADE: u32 = 6;
pub const WND4_CANCELLED: u32 = 7;
pub const WND4_IS_DIR: u32 = 8;

/// `open_none_delegation4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum OpenNoneDelegation4 {
    #[xdr(case = WND4_CONTENTION)]
    Contention(bool),
    #[xdr(case = WND4_RESOURCE)]
    Resource(bool),
    /// Any other `why_no_delegation4` (void arm).
    #[xdr(default)]
    Why(u32),
}

/// `open_delegation4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum OpenDelegation4 {
    #[xdr(case = 0)]
    None,
    #[xdr(case = 1)]
    Read(OpenReadDelegation4),
    #[xdr(case = 2)]
    Write(OpenWriteDelegation4),
    #[xdr(case = 3)]
    NoneExt(OpenNoneDelegation4),
    /// RFC 9754 §5.2: the holder keeps the access time (and reports it in SETATTR and
    /// CB_GETATTR as `time_deleg_access`).
    #[xdr(case = 4)]
    ReadAttrsDeleg(OpenReadDelegation4),
    /// RFC 9754 §5.2: the holder keeps the access and modify times.
    #[xdr(case = 5)]
    WriteAttrsDeleg(OpenWriteDelegation4),
}

/// `OPEN4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OpenResOk {
    pub stateid: Stateid4,
    pub cinfo: ChangeInfo4,
    pub rflags: u32,
    pub attrset: Bitmap4,
    pub delegation: OpenDelegation4,
}
res_union!(
    /// `OPEN4res`.
    OpenRes,
    OpenResOk
);

/// `OPEN_CONFIRM4args` (NFSv4.0 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OpenConfirmArgs {
    pub open_stateid: Stateid4,
    pub seqid: Seqid4,
}
/// `OPEN_CONFIRM4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OpenConfirmResOk {
    pub open_stateid: Stateid4,
}
res_union!(
    /// `OPEN_CONFIRM4res`.
    OpenConfirmRes,
    OpenConfirmResOk
);

/// `OPEN_DOWNGRADE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OpenDowngradeArgs {
    pub open_stateid: Stateid4,
    pub seqid: Seqid4,
    pub share_access: u32,
    pub share_deny: u32,
}
/// `OPEN_DOWNGRADE4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OpenDowngradeResOk {
    pub open_stateid: Stateid4,
}
res_union!(
    /// `OPEN_DOWNGRADE4res`.
    OpenDowngradeRes,
    OpenDowngradeResOk
);

/// `CLOSE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CloseArgs {
    pub seqid: Seqid4,
    pub open_stateid: Stateid4,
}
res_union!(
    /// `CLOSE4res` (the OK arm is `open_stateid`).
    CloseRes,
    Stateid4
);

/// `open_to_lock_owner4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OpenToLockOwner4 {
    pub open_seqid: Seqid4,
    pub open_stateid: Stateid4,
    pub lock_seqid: Seqid4,
    pub lock_owner: LockOwner4,
}
/// `exist_lock_owner4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct ExistLockOwner4 {
    pub lock_stateid: Stateid4,
    pub lock_seqid: Seqid4,
}
/// `locker4`: `union switch (bool new_lock_owner)`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Locker4 {
    #[xdr(case = 1)]
    NewLockOwner(OpenToLockOwner4),
    #[xdr(case = 0)]
    ExistingLockOwner(ExistLockOwner4),
}

/// `LOCK4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LockArgs {
    pub locktype: NfsLockType4,
    pub reclaim: bool,
    pub offset: Offset4,
    pub length: Length4,
    pub locker: Locker4,
}
/// `LOCK4denied`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct LockDenied {
    pub offset: Offset4,
    pub length: Length4,
    pub locktype: NfsLockType4,
    pub owner: LockOwner4,
}
/// `LOCK4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct LockResOk {
    pub lock_stateid: Stateid4,
}
/// `LOCK4res`: NFS4ERR_DENIED carries the conflicting lock.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum LockRes {
    #[xdr(case = 0)]
    Ok(LockResOk),
    #[xdr(case = Nfsstat4::Denied)]
    Denied(LockDenied),
    #[xdr(default)]
    Err(u32),
}
impl LockRes {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok(_) => 0,
            Self::Denied(_) => Nfsstat4::Denied.code(),
            Self::Err(s) => *s,
        }
    }
}

/// `LOCKT4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LocktArgs {
    pub locktype: NfsLockType4,
    pub offset: Offset4,
    pub length: Length4,
    pub owner: LockOwner4,
}
/// `LOCKT4res`: NFS4ERR_DENIED carries the conflicting lock.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum LocktRes {
    #[xdr(case = 0)]
    Ok,
    #[xdr(case = Nfsstat4::Denied)]
    Denied(LockDenied),
    #[xdr(default)]
    Err(u32),
}
impl LocktRes {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok => 0,
            Self::Denied(_) => Nfsstat4::Denied.code(),
            Self::Err(s) => *s,
        }
    }
}

/// `LOCKU4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct LockuArgs {
    pub locktype: NfsLockType4,
    pub seqid: Seqid4,
    pub lock_stateid: Stateid4,
    pub offset: Offset4,
    pub length: Length4,
}
res_union!(
    /// `LOCKU4res` (the OK arm is `lock_stateid`).
    LockuRes,
    Stateid4
);

/// `RELEASE_LOCKOWNER4args` (NFSv4.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReleaseLockownerArgs {
    pub lock_owner: LockOwner4,
}
pub type ReleaseLockownerRes = StatusRes;

/// `DELEGPURGE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DelegpurgeArgs {
    pub clientid: Clientid4,
}
pub type DelegpurgeRes = StatusRes;

/// `DELEGRETURN4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DelegreturnArgs {
    pub deleg_stateid: Stateid4,
}
pub type DelegreturnRes = StatusRes;

/// `FREE_STATEID4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct FreeStateidArgs {
    pub fsa_stateid: Stateid4,
}
pub type FreeStateidRes = StatusRes;

/// `TEST_STATEID4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct TestStateidArgs {
    #[xdr(max = 4096)]
    pub ts_stateids: Vec<Stateid4>,
}
/// `TEST_STATEID4resok` (one `nfsstat4` per stateid).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct TestStateidResOk {
    #[xdr(max = 4096)]
    pub tsr_status_codes: Vec<u32>,
}
res_union!(
    /// `TEST_STATEID4res`.
    TestStateidRes,
    TestStateidResOk
);

/// `deleg_claim4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum DelegClaim4 {
    #[xdr(case = 4)]
    Fh,
    #[xdr(case = 6)]
    DelegPrevFh,
    #[xdr(case = 1)]
    Previous(OpenDelegationType4),
}
/// `WANT_DELEGATION4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct WantDelegationArgs {
    pub wda_want: u32,
    pub wda_claim: DelegClaim4,
}
res_union!(
    /// `WANT_DELEGATION4res`.
    WantDelegationRes,
    OpenDelegation4
);

/// `GET_DIR_DELEGATION4args` (`attr_notice4` is `nfstime4`).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetDirDelegationArgs {
    pub gdda_signal_deleg_avail: bool,
    pub gdda_notification_types: Bitmap4,
    pub gdda_child_attr_delay: Nfstime4,
    pub gdda_dir_attr_delay: Nfstime4,
    pub gdda_child_attributes: Bitmap4,
    pub gdda_dir_attributes: Bitmap4,
}
/// `GET_DIR_DELEGATION4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetDirDelegationResOk {
    pub gddr_cookieverf: Verifier4,
    pub gddr_stateid: Stateid4,
    pub gddr_notification: Bitmap4,
    pub gddr_child_attributes: Bitmap4,
    pub gddr_dir_attributes: Bitmap4,
}
/// `GET_DIR_DELEGATION4res_non_fatal`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum GetDirDelegationResNonFatal {
    #[xdr(case = 0)]
    Ok(GetDirDelegationResOk),
    #[xdr(case = 1)]
    Unavail(bool),
}
res_union!(
    /// `GET_DIR_DELEGATION4res`.
    GetDirDelegationRes,
    GetDirDelegationResNonFatal
);

impl crate::nfs4::fileops::OpResult for LockRes {
    fn from_status(status: u32) -> Self {
        match status {
            0 => Self::Err(Nfsstat4::Serverfault.code()),
            s if s == Nfsstat4::Denied.code() => Self::Denied(LockDenied::default()),
            s => Self::Err(s),
        }
    }
    fn status(&self) -> u32 {
        LockRes::status(self)
    }
}

impl crate::nfs4::fileops::OpResult for LocktRes {
    fn from_status(status: u32) -> Self {
        match status {
            0 => Self::Ok,
            s if s == Nfsstat4::Denied.code() => Self::Denied(LockDenied::default()),
            s => Self::Err(s),
        }
    }
    fn status(&self) -> u32 {
        LocktRes::status(self)
    }
}
