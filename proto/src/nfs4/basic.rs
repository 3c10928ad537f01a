//! Basic NFSv4.1/4.2 types (RFC 8881 §3, RFC 5662): constants, `nfsstat4`, `bitmap4`,
//! `nfstime4`, `stateid4`, file handles and the small structs shared by every operation.
use crate::xdr::Opaque;
use crate::Xdr;

/// `NFS4_PROGRAM`.
pub const NFS4_PROGRAM: u32 = 100003;
/// `NFS_V4`.
pub const NFS_V4: u32 = 4;
/// `NFSPROC4_NULL`.
pub const NFSPROC4_NULL: u32 = 0;
/// `NFSPROC4_COMPOUND`.
pub const NFSPROC4_COMPOUND: u32 = 1;
/// Callback program number a 4.1 client registers (`NFS4_CALLBACK`).
pub const NFS4_CALLBACK: u32 = 0x4000_0000;
/// `NFS_CB` version.
pub const NFS_CB: u32 = 1;
/// `CB_NULL`.
pub const CB_NULL: u32 = 0;
/// `CB_COMPOUND`.
pub const CB_COMPOUND: u32 = 1;

pub const NFS4_FHSIZE: usize = 128;
pub const NFS4_VERIFIER_SIZE: usize = 8;
pub const NFS4_OTHER_SIZE: usize = 12;
pub const NFS4_OPAQUE_LIMIT: usize = 1024;
pub const NFS4_SESSIONID_SIZE: usize = 16;
pub const NFS4_DEVICEID4_SIZE: usize = 16;
pub const NFS4_INT64_MAX: i64 = 0x7fff_ffff_ffff_ffff;
pub const NFS4_UINT64_MAX: u64 = 0xffff_ffff_ffff_ffff;
pub const NFS4_INT32_MAX: i32 = 0x7fff_ffff;
pub const NFS4_UINT32_MAX: u32 = 0xffff_ffff;
pub const NFS4_MAXFILELEN: u64 = 0xffff_ffff_ffff_ffff;
pub const NFS4_MAXFILEOFF: u64 = 0xffff_ffff_ffff_fffe;

/// Upper bound this implementation accepts for `tag` and other unbounded utf8 strings.
pub const MAX_NAME_BYTES: usize = 8192;
/// Upper bound on the number of operations in one COMPOUND.
pub const MAX_COMPOUND_OPS: usize = 4096;

/// `clientid4`.
pub type Clientid4 = u64;
/// `sequenceid4`.
pub type Sequenceid4 = u32;
/// `seqid4`.
pub type Seqid4 = u32;
/// `slotid4`.
pub type Slotid4 = u32;
/// `count4`.
pub type Count4 = u32;
/// `length4`.
pub type Length4 = u64;
/// `offset4`.
pub type Offset4 = u64;
/// `changeid4`.
pub type Changeid4 = u64;
/// `nfs_cookie4`.
pub type NfsCookie4 = u64;
/// `nfs_lease4`.
pub type NfsLease4 = u32;
/// `acetype4`, `aceflag4`, `acemask4`.
pub type Acetype4 = u32;
pub type Aceflag4 = u32;
pub type Acemask4 = u32;
/// `mode4`.
pub type Mode4 = u32;
/// `verifier4`.
pub type Verifier4 = [u8; NFS4_VERIFIER_SIZE];
/// `sessionid4`.
pub type Sessionid4 = [u8; NFS4_SESSIONID_SIZE];
/// `deviceid4`.
pub type Deviceid4 = [u8; NFS4_DEVICEID4_SIZE];
/// `bitmap4` (`uint32_t bitmap4<>`); see [`crate::nfs4::attr::Bitmap`] for the typed helper.
pub type Bitmap4 = Vec<u32>;
/// `utf8string`, `utf8str_cis`, `utf8str_cs`, `utf8str_mixed`: UTF-8 validity is checked by the
/// server, not the decoder.
pub type Utf8str = Opaque;
/// `component4`.
pub type Component4 = Opaque;
/// `linktext4`.
pub type Linktext4 = Opaque;
/// `sec_oid4`.
pub type SecOid4 = Opaque;
/// `attrlist4`.
pub type Attrlist4 = Opaque;
/// `pathname4` (`component4 pathname4<>`).
pub type Pathname4 = Vec<Component4>;
/// `layouttype4`: kept as a number so unknown types reach the server (NFS4ERR_UNKNOWN_LAYOUTTYPE).
pub type Layouttype4 = u32;
/// `nfs_opnum4`.
pub type NfsOpnum4 = u32;

/// `nfs_fh4` (`opaque nfs_fh4<NFS4_FHSIZE>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Xdr)]
pub struct NfsFh4(#[xdr(max = NFS4_FHSIZE)] pub Opaque);

impl NfsFh4 {
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
impl From<Vec<u8>> for NfsFh4 {
    fn from(v: Vec<u8>) -> Self {
        NfsFh4(Opaque(v))
    }
}
impl From<&[u8]> for NfsFh4 {
    fn from(v: &[u8]) -> Self {
        NfsFh4(Opaque(v.to_vec()))
    }
}

/// `nfsstat4`: every status code of RFC 8881, RFC 7862 and RFC 8276. Result unions carry the
/// raw `u32` so that unknown codes still decode; convert with [`Nfsstat4::from_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
#[repr(u32)]
pub enum Nfsstat4 {
    Ok = 0,
    Perm = 1,
    Noent = 2,
    Io = 5,
    Nxio = 6,
    Access = 13,
    Exist = 17,
    Xdev = 18,
    Notdir = 20,
    Isdir = 21,
    Inval = 22,
    Fbig = 27,
    Nospc = 28,
    Rofs = 30,
    Mlink = 31,
    Nametoolong = 63,
    Notempty = 66,
    Dquot = 69,
    Stale = 70,
    Badhandle = 10001,
    BadCookie = 10003,
    Notsupp = 10004,
    Toosmall = 10005,
    Serverfault = 10006,
    Badtype = 10007,
    Delay = 10008,
    Same = 10009,
    Denied = 10010,
    Expired = 10011,
    Locked = 10012,
    Grace = 10013,
    Fhexpired = 10014,
    ShareDenied = 10015,
    Wrongsec = 10016,
    ClidInuse = 10017,
    Resource = 10018,
    Moved = 10019,
    Nofilehandle = 10020,
    MinorVersMismatch = 10021,
    StaleClientid = 10022,
    StaleStateid = 10023,
    OldStateid = 10024,
    BadStateid = 10025,
    BadSeqid = 10026,
    NotSame = 10027,
    LockRange = 10028,
    Symlink = 10029,
    Restorefh = 10030,
    LeaseMoved = 10031,
    Attrnotsupp = 10032,
    NoGrace = 10033,
    ReclaimBad = 10034,
    ReclaimConflict = 10035,
    Badxdr = 10036,
    LocksHeld = 10037,
    Openmode = 10038,
    Badowner = 10039,
    Badchar = 10040,
    Badname = 10041,
    BadRange = 10042,
    LockNotsupp = 10043,
    OpIllegal = 10044,
    Deadlock = 10045,
    FileOpen = 10046,
    AdminRevoked = 10047,
    CbPathDown = 10048,
    Badiomode = 10049,
    Badlayout = 10050,
    BadSessionDigest = 10051,
    Badsession = 10052,
    Badslot = 10053,
    CompleteAlready = 10054,
    ConnNotBoundToSession = 10055,
    DelegAlreadyWanted = 10056,
    BackChanBusy = 10057,
    Layouttrylater = 10058,
    Layoutunavailable = 10059,
    NomatchingLayout = 10060,
    Recallconflict = 10061,
    UnknownLayouttype = 10062,
    SeqMisordered = 10063,
    SequencePos = 10064,
    ReqTooBig = 10065,
    RepTooBig = 10066,
    RepTooBigToCache = 10067,
    RetryUncachedRep = 10068,
    UnsafeCompound = 10069,
    TooManyOps = 10070,
    OpNotInSession = 10071,
    HashAlgUnsupp = 10072,
    ClientidBusy = 10074,
    PnfsIoHole = 10075,
    SeqFalseRetry = 10076,
    BadHighSlot = 10077,
    Deadsession = 10078,
    EncrAlgUnsupp = 10079,
    PnfsNoLayout = 10080,
    NotOnlyOp = 10081,
    WrongCred = 10082,
    WrongType = 10083,
    DirdelegUnavail = 10084,
    RejectDeleg = 10085,
    Returnconflict = 10086,
    DelegRevoked = 10087,
    PartnerNotsupp = 10088,
    PartnerNoAuth = 10089,
    UnionNotsupp = 10090,
    OffloadDenied = 10091,
    WrongLfs = 10092,
    Badlabel = 10093,
    OffloadNoReqs = 10094,
    Noxattr = 10095,
    Xattr2big = 10096,
}

impl Nfsstat4 {
    pub const ALL: &'static [Nfsstat4] = &[
        Self::Ok,
        Self::Perm,
        Self::Noent,
        Self::Io,
        Self::Nxio,
        Self::Access,
        Self::Exist,
        Self::Xdev,
        Self::Notdir,
        Self::Isdir,
        Self::Inval,
        Self::Fbig,
        Self::Nospc,
        Self::Rofs,
        Self::Mlink,
        Self::Nametoolong,
        Self::Notempty,
        Self::Dquot,
        Self::Stale,
        Self::Badhandle,
        Self::BadCookie,
        Self::Notsupp,
        Self::Toosmall,
        Self::Serverfault,
        Self::Badtype,
        Self::Delay,
        Self::Same,
        Self::Denied,
        Self::Expired,
        Self::Locked,
        Self::Grace,
        Self::Fhexpired,
        Self::ShareDenied,
        Self::Wrongsec,
        Self::ClidInuse,
        Self::Resource,
        Self::Moved,
        Self::Nofilehandle,
        Self::MinorVersMismatch,
        Self::StaleClientid,
        Self::StaleStateid,
        Self::OldStateid,
        Self::BadStateid,
        Self::BadSeqid,
        Self::NotSame,
        Self::LockRange,
        Self::Symlink,
        Self::Restorefh,
        Self::LeaseMoved,
        Self::Attrnotsupp,
        Self::NoGrace,
        Self::ReclaimBad,
        Self::ReclaimConflict,
        Self::Badxdr,
        Self::LocksHeld,
        Self::Openmode,
        Self::Badowner,
        Self::Badchar,
        Self::Badname,
        Self::BadRange,
        Self::LockNotsupp,
        Self::OpIllegal,
        Self::Deadlock,
        Self::FileOpen,
        Self::AdminRevoked,
        Self::CbPathDown,
        Self::Badiomode,
        Self::Badlayout,
        Self::BadSessionDigest,
        Self::Badsession,
        Self::Badslot,
        Self::CompleteAlready,
        Self::ConnNotBoundToSession,
        Self::DelegAlreadyWanted,
        Self::BackChanBusy,
        Self::Layouttrylater,
        Self::Layoutunavailable,
        Self::NomatchingLayout,
        Self::Recallconflict,
        Self::UnknownLayouttype,
        Self::SeqMisordered,
        Self::SequencePos,
        Self::ReqTooBig,
        Self::RepTooBig,
        Self::RepTooBigToCache,
        Self::RetryUncachedRep,
        Self::UnsafeCompound,
        Self::TooManyOps,
        Self::OpNotInSession,
        Self::HashAlgUnsupp,
        Self::ClientidBusy,
        Self::PnfsIoHole,
        Self::SeqFalseRetry,
        Self::BadHighSlot,
        Self::Deadsession,
        Self::EncrAlgUnsupp,
        Self::PnfsNoLayout,
        Self::NotOnlyOp,
        Self::WrongCred,
        Self::WrongType,
        Self::DirdelegUnavail,
        Self::RejectDeleg,
        Self::Returnconflict,
        Self::DelegRevoked,
        Self::PartnerNotsupp,
        Self::PartnerNoAuth,
        Self::UnionNotsupp,
        Self::OffloadDenied,
        Self::WrongLfs,
        Self::Badlabel,
        Self::OffloadNoReqs,
        Self::Noxattr,
        Self::Xattr2big,
    ];

    /// The wire value.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The status with this wire value, if it is one RFC 8881/7862/8276 define.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.code() == code)
    }
}

impl From<Nfsstat4> for u32 {
    fn from(s: Nfsstat4) -> u32 {
        s.code()
    }
}

/// `nfs_ftype4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum NfsFtype4 {
    Reg = 1,
    Dir = 2,
    Blk = 3,
    Chr = 4,
    Lnk = 5,
    Sock = 6,
    Fifo = 7,
    Attrdir = 8,
    Namedattr = 9,
}

impl NfsFtype4 {
    pub fn from_code(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Reg,
            2 => Self::Dir,
            3 => Self::Blk,
            4 => Self::Chr,
            5 => Self::Lnk,
            6 => Self::Sock,
            7 => Self::Fifo,
            8 => Self::Attrdir,
            9 => Self::Namedattr,
            _ => return None,
        })
    }
}

/// `nfstime4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Xdr)]
pub struct Nfstime4 {
    pub seconds: i64,
    pub nseconds: u32,
}

/// `time_how4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum TimeHow4 {
    SetToServerTime4 = 0,
    SetToClientTime4 = 1,
}

/// `settime4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum Settime4 {
    #[xdr(case = 0)]
    ServerTime,
    #[xdr(case = 1)]
    ClientTime(Nfstime4),
}

/// `fsid4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Xdr)]
pub struct Fsid4 {
    pub major: u64,
    pub minor: u64,
}

/// `specdata4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Xdr)]
pub struct Specdata4 {
    pub specdata1: u32,
    pub specdata2: u32,
}

/// `fattr4`: the attribute mask and the XDR of the attributes it names, in bit order.
/// [`crate::nfs4::attr::FileAttrs`] is the typed view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Fattr4 {
    pub attrmask: Bitmap4,
    pub attr_vals: Attrlist4,
}

/// `change_info4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct ChangeInfo4 {
    pub atomic: bool,
    pub before: Changeid4,
    pub after: Changeid4,
}

/// `netaddr4` (`clientaddr4`): `r_netid` such as "tcp"/"tcp6", `r_addr` universal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Netaddr4 {
    #[xdr(max = MAX_NAME_BYTES)]
    pub na_r_netid: Opaque,
    #[xdr(max = MAX_NAME_BYTES)]
    pub na_r_addr: Opaque,
}
/// `clientaddr4`.
pub type Clientaddr4 = Netaddr4;

/// `cb_client4` (NFSv4.0 SETCLIENTID).
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct CbClient4 {
    pub cb_program: u32,
    pub cb_location: Netaddr4,
}

/// `stateid4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Xdr)]
pub struct Stateid4 {
    pub seqid: u32,
    pub other: [u8; NFS4_OTHER_SIZE],
}

impl Stateid4 {
    /// The anonymous stateid (all zeros).
    pub const ANONYMOUS: Stateid4 = Stateid4 {
        seqid: 0,
        other: [0; 12],
    };
    /// The READ bypass stateid (all ones).
    pub const BYPASS: Stateid4 = Stateid4 {
        seqid: u32::MAX,
        other: [0xff; 12],
    };
    /// The current stateid (seqid 1, other zero).
    pub const CURRENT: Stateid4 = Stateid4 {
        seqid: 1,
        other: [0; 12],
    };
    /// The invalid stateid (seqid u32::MAX, other zero).
    pub const INVALID: Stateid4 = Stateid4 {
        seqid: u32::MAX,
        other: [0; 12],
    };
}

/// `nfs_client_id4` (NFSv4.0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct NfsClientId4 {
    pub verifier: Verifier4,
    #[xdr(max = NFS4_OPAQUE_LIMIT)]
    pub id: Opaque,
}

/// `client_owner4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct ClientOwner4 {
    pub co_verifier: Verifier4,
    #[xdr(max = NFS4_OPAQUE_LIMIT)]
    pub co_ownerid: Opaque,
}

/// `server_owner4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct ServerOwner4 {
    pub so_minor_id: u64,
    #[xdr(max = NFS4_OPAQUE_LIMIT)]
    pub so_major_id: Opaque,
}

/// `state_owner4` (also `open_owner4`, `lock_owner4`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Xdr)]
pub struct StateOwner4 {
    pub clientid: Clientid4,
    #[xdr(max = NFS4_OPAQUE_LIMIT)]
    pub owner: Opaque,
}
/// `open_owner4`.
pub type OpenOwner4 = StateOwner4;
/// `lock_owner4`.
pub type LockOwner4 = StateOwner4;

/// `nfs_lock_type4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Xdr)]
pub enum NfsLockType4 {
    #[default]
    ReadLt = 1,
    WriteLt = 2,
    ReadwLt = 3,
    WritewLt = 4,
}

/// `nfs_impl_id4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct NfsImplId4 {
    #[xdr(max = MAX_NAME_BYTES)]
    pub nii_domain: Utf8str,
    #[xdr(max = MAX_NAME_BYTES)]
    pub nii_name: Utf8str,
    pub nii_date: Nfstime4,
}

/// `stable_how4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Xdr)]
pub enum StableHow4 {
    Unstable4 = 0,
    DataSync4 = 1,
    FileSync4 = 2,
}

/// `rpc_gss_svc_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum RpcGssSvc {
    None = 1,
    Integrity = 2,
    Privacy = 3,
}

/// `authsys_parms` (RFC 5531), used in `callback_sec_parms4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct AuthsysParms {
    pub stamp: u32,
    #[xdr(max = 255)]
    pub machinename: Opaque,
    pub uid: u32,
    pub gid: u32,
    #[xdr(max = 16)]
    pub gids: Vec<u32>,
}

/// RPC auth flavors used in NFSv4 unions.
pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;
pub const RPCSEC_GSS: u32 = 6;

/// `FH4_*` fh_expire_type bits.
pub const FH4_PERSISTENT: u32 = 0x0;
pub const FH4_NOEXPIRE_WITH_OPEN: u32 = 0x1;
pub const FH4_VOLATILE_ANY: u32 = 0x2;
pub const FH4_VOL_MIGRATION: u32 = 0x4;
pub const FH4_VOL_RENAME: u32 = 0x8;

/// `ACCESS4_*`.
pub const ACCESS4_READ: u32 = 0x0001;
pub const ACCESS4_LOOKUP: u32 = 0x0002;
pub const ACCESS4_MODIFY: u32 = 0x0004;
pub const ACCESS4_EXTEND: u32 = 0x0008;
pub const ACCESS4_DELETE: u32 = 0x0010;
pub const ACCESS4_EXECUTE: u32 = 0x0020;
/// RFC 8276 xattr access bits.
pub const ACCESS4_XAREAD: u32 = 0x0040;
pub const ACCESS4_XAWRITE: u32 = 0x0080;
pub const ACCESS4_XALIST: u32 = 0x0100;

/// ACE types/flags/masks (`ACE4_*`).
pub const ACE4_ACCESS_ALLOWED_ACE_TYPE: u32 = 0x0;
pub const ACE4_ACCESS_DENIED_ACE_TYPE: u32 = 0x1;
pub const ACE4_SYSTEM_AUDIT_ACE_TYPE: u32 = 0x2;
pub const ACE4_SYSTEM_ALARM_ACE_TYPE: u32 = 0x3;
pub const ACE4_FILE_INHERIT_ACE: u32 = 0x0000_0001;
pub const ACE4_DIRECTORY_INHERIT_ACE: u32 = 0x0000_0002;
pub const ACE4_NO_PROPAGATE_INHERIT_ACE: u32 = 0x0000_0004;
pub const ACE4_INHERIT_ONLY_ACE: u32 = 0x0000_0008;
pub const ACE4_SUCCESSFUL_ACCESS_ACE_FLAG: u32 = 0x0000_0010;
pub const ACE4_FAILED_ACCESS_ACE_FLAG: u32 = 0x0000_0020;
pub const ACE4_IDENTIFIER_GROUP: u32 = 0x0000_0040;
pub const ACE4_INHERITED_ACE: u32 = 0x0000_0080;
pub const ACE4_READ_DATA: u32 = 0x0000_0001;
pub const ACE4_LIST_DIRECTORY: u32 = 0x0000_0001;
pub const ACE4_WRITE_DATA: u32 = 0x0000_0002;
pub const ACE4_ADD_FILE: u32 = 0x0000_0002;
pub const ACE4_APPEND_DATA: u32 = 0x0000_0004;
pub const ACE4_ADD_SUBDIRECTORY: u32 = 0x0000_0004;
pub const ACE4_READ_NAMED_ATTRS: u32 = 0x0000_0008;
pub const ACE4_WRITE_NAMED_ATTRS: u32 = 0x0000_0010;
pub const ACE4_EXECUTE: u32 = 0x0000_0020;
pub const ACE4_DELETE_CHILD: u32 = 0x0000_0040;
pub const ACE4_READ_ATTRIBUTES: u32 = 0x0000_0080;
pub const ACE4_WRITE_ATTRIBUTES: u32 = 0x0000_0100;
pub const ACE4_WRITE_RETENTION: u32 = 0x0000_0200;
pub const ACE4_WRITE_RETENTION_HOLD: u32 = 0x0000_0400;
pub const ACE4_DELETE: u32 = 0x0001_0000;
pub const ACE4_READ_ACL: u32 = 0x0002_0000;
pub const ACE4_WRITE_ACL: u32 = 0x0004_0000;
pub const ACE4_WRITE_OWNER: u32 = 0x0008_0000;
pub const ACE4_SYNCHRONIZE: u32 = 0x0010_0000;
pub const ACL4_SUPPORT_ALLOW_ACL: u32 = 0x1;
pub const ACL4_SUPPORT_DENY_ACL: u32 = 0x2;
pub const ACL4_SUPPORT_AUDIT_ACL: u32 = 0x4;
pub const ACL4_SUPPORT_ALARM_ACL: u32 = 0x8;
pub const ACL4_AUTO_INHERIT: u32 = 0x1;
pub const ACL4_PROTECTED: u32 = 0x2;
pub const ACL4_DEFAULTED: u32 = 0x4;

/// Mode bits (`MODE4_*`).
pub const MODE4_SUID: u32 = 0o4000;
pub const MODE4_SGID: u32 = 0o2000;
pub const MODE4_SVTX: u32 = 0o1000;
pub const MODE4_RUSR: u32 = 0o400;
pub const MODE4_WUSR: u32 = 0o200;
pub const MODE4_XUSR: u32 = 0o100;
pub const MODE4_RGRP: u32 = 0o040;
pub const MODE4_WGRP: u32 = 0o020;
pub const MODE4_XGRP: u32 = 0o010;
pub const MODE4_ROTH: u32 = 0o004;
pub const MODE4_WOTH: u32 = 0o002;
pub const MODE4_XOTH: u32 = 0o001;

/// `nfsace4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Nfsace4 {
    pub acetype: Acetype4,
    pub flag: Aceflag4,
    pub access_mask: Acemask4,
    #[xdr(max = MAX_NAME_BYTES)]
    pub who: Utf8str,
}
