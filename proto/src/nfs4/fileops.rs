//! File and directory operations of RFC 8881 §18: ACCESS, COMMIT, CREATE, GETATTR, GETFH,
//! LINK, LOOKUP(P), (N)VERIFY, OPENATTR, PUTFH, READ, READDIR, READLINK, REMOVE, RENAME,
//! SECINFO(_NO_NAME), SETATTR, WRITE, and the status-only result type.
use super::basic::*;
use crate::xdr::Opaque;
use crate::Xdr;

/// Result of every operation whose result is only `nfsstat4 status` (e.g. `LOOKUP4res`,
/// `PUTFH4res`, `SAVEFH4res`, `ILLEGAL4res`...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct StatusRes {
    pub status: u32,
}
impl StatusRes {
    pub fn ok() -> Self {
        Self { status: 0 }
    }
    pub fn err(status: impl Into<u32>) -> Self {
        Self {
            status: status.into(),
        }
    }
    pub fn status(&self) -> u32 {
        self.status
    }
}
impl From<Nfsstat4> for StatusRes {
    fn from(s: Nfsstat4) -> Self {
        Self { status: s.code() }
    }
}

/// Implemented by every operation result: build an error result from a status alone (what
/// a server does when an operation fails), and read the status back.
pub trait OpResult: Sized {
    /// A result with this non-OK status. Arms that carry data on an error (LOCK's
    /// NFS4ERR_DENIED, LAYOUTGET's NFS4ERR_LAYOUTTRYLATER, ...) get zero/default data, so the
    /// wire form is always valid; NFS4_OK for a result whose OK arm has a body is turned into
    /// NFS4ERR_SERVERFAULT.
    fn from_status(status: u32) -> Self;
    /// The `nfsstat4` on the wire.
    fn status(&self) -> u32;
}

impl OpResult for StatusRes {
    fn from_status(status: u32) -> Self {
        StatusRes { status }
    }
    fn status(&self) -> u32 {
        self.status
    }
}

/// Declares `union X switch (nfsstat4 status) { case NFS4_OK: Ok; default: void; }`.
macro_rules! res_union {
    ($(#[$m:meta])* $name:ident, $ok:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, crate::Xdr)]
        pub enum $name {
            #[xdr(case = 0)]
            Ok($ok),
            #[xdr(default)]
            Err(u32),
        }
        impl $name {
            /// The `nfsstat4` on the wire.
            pub fn status(&self) -> u32 {
                match self {
                    Self::Ok(_) => 0,
                    Self::Err(s) => *s,
                }
            }
            /// An error result (NFS4_OK becomes NFS4ERR_SERVERFAULT: the OK arm has a body).
            pub fn error(status: impl Into<u32>) -> Self {
                <Self as $crate::nfs4::fileops::OpResult>::from_status(status.into())
            }
        }
        impl $crate::nfs4::fileops::OpResult for $name {
            fn from_status(status: u32) -> Self {
                if status == 0 {
                    Self::Err($crate::nfs4::basic::Nfsstat4::Serverfault.code())
                } else {
                    Self::Err(status)
                }
            }
            fn status(&self) -> u32 {
                $name::status(self)
            }
        }
    };
}
pub(crate) use res_union;

pub type LookupRes = StatusRes;
pub type LookuppRes = StatusRes;
pub type NverifyRes = StatusRes;
pub type VerifyRes = StatusRes;
pub type OpenattrRes = StatusRes;
pub type PutfhRes = StatusRes;
pub type PutpubfhRes = StatusRes;
pub type PutrootfhRes = StatusRes;
pub type RestorefhRes = StatusRes;
pub type SavefhRes = StatusRes;
pub type IllegalRes = StatusRes;

/// `ACCESS4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct AccessArgs {
    pub access: u32,
}
/// `ACCESS4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct AccessResOk {
    pub supported: u32,
    pub access: u32,
}
res_union!(
    /// `ACCESS4res`.
    AccessRes,
    AccessResOk
);

/// `COMMIT4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CommitArgs {
    pub offset: Offset4,
    pub count: Count4,
}
/// `COMMIT4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CommitResOk {
    pub writeverf: Verifier4,
}
res_union!(
    /// `COMMIT4res`.
    CommitRes,
    CommitResOk
);

/// `createtype4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Createtype4 {
    #[xdr(case = 5)]
    Lnk(#[xdr(max = MAX_NAME_BYTES)] Linktext4),
    #[xdr(case = 3)]
    Blk(Specdata4),
    #[xdr(case = 4)]
    Chr(Specdata4),
    #[xdr(case = 6)]
    Sock,
    #[xdr(case = 7)]
    Fifo,
    #[xdr(case = 2)]
    Dir,
    #[xdr(default)]
    Other(u32),
}
impl Createtype4 {
    /// The `nfs_ftype4` discriminant.
    pub fn ftype(&self) -> u32 {
        match self {
            Self::Lnk(_) => 5,
            Self::Blk(_) => 3,
            Self::Chr(_) => 4,
            Self::Sock => 6,
            Self::Fifo => 7,
            Self::Dir => 2,
            Self::Other(t) => *t,
        }
    }
}

/// `CREATE4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CreateArgs {
    pub objtype: Createtype4,
    #[xdr(max = MAX_NAME_BYTES)]
    pub objname: Component4,
    pub createattrs: Fattr4,
}
/// `CREATE4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CreateResOk {
    pub cinfo: ChangeInfo4,
    pub attrset: Bitmap4,
}
res_union!(
    /// `CREATE4res`.
    CreateRes,
    CreateResOk
);

/// `GETATTR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetattrArgs {
    pub attr_request: Bitmap4,
}
/// `GETATTR4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetattrResOk {
    pub obj_attributes: Fattr4,
}
res_union!(
    /// `GETATTR4res`.
    GetattrRes,
    GetattrResOk
);

/// `GETFH4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetfhResOk {
    pub object: NfsFh4,
}
res_union!(
    /// `GETFH4res`.
    GetfhRes,
    GetfhResOk
);

/// `LINK4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LinkArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub newname: Component4,
}
/// `LINK4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LinkResOk {
    pub cinfo: ChangeInfo4,
}
res_union!(
    /// `LINK4res`.
    LinkRes,
    LinkResOk
);

/// `LOOKUP4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LookupArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub objname: Component4,
}

/// `NVERIFY4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct NverifyArgs {
    pub obj_attributes: Fattr4,
}
/// `VERIFY4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct VerifyArgs {
    pub obj_attributes: Fattr4,
}

/// `OPENATTR4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OpenattrArgs {
    pub createdir: bool,
}

/// `PUTFH4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct PutfhArgs {
    pub object: NfsFh4,
}

/// `READ4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct ReadArgs {
    pub stateid: Stateid4,
    pub offset: Offset4,
    pub count: Count4,
}
/// `READ4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReadResOk {
    pub eof: bool,
    pub data: Opaque,
}
res_union!(
    /// `READ4res`.
    ReadRes,
    ReadResOk
);

/// `READDIR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReaddirArgs {
    pub cookie: NfsCookie4,
    pub cookieverf: Verifier4,
    pub dircount: Count4,
    pub maxcount: Count4,
    pub attr_request: Bitmap4,
}
/// `entry4` without its `nextentry` link (see [`Dirlist4`]).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Entry4 {
    pub cookie: NfsCookie4,
    #[xdr(max = MAX_NAME_BYTES)]
    pub name: Component4,
    pub attrs: Fattr4,
}
/// `dirlist4`: the `entry4 *` chain is a `Vec` on the Rust side, decoded iteratively.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Dirlist4 {
    #[xdr(list)]
    pub entries: Vec<Entry4>,
    pub eof: bool,
}
/// `READDIR4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReaddirResOk {
    pub cookieverf: Verifier4,
    pub reply: Dirlist4,
}
res_union!(
    /// `READDIR4res`.
    ReaddirRes,
    ReaddirResOk
);

/// `READLINK4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReadlinkResOk {
    pub link: Linktext4,
}
res_union!(
    /// `READLINK4res`.
    ReadlinkRes,
    ReadlinkResOk
);

/// `REMOVE4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RemoveArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub target: Component4,
}
/// `REMOVE4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RemoveResOk {
    pub cinfo: ChangeInfo4,
}
res_union!(
    /// `REMOVE4res`.
    RemoveRes,
    RemoveResOk
);

/// `RENAME4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RenameArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub oldname: Component4,
    #[xdr(max = MAX_NAME_BYTES)]
    pub newname: Component4,
}
/// `RENAME4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RenameResOk {
    pub source_cinfo: ChangeInfo4,
    pub target_cinfo: ChangeInfo4,
}
res_union!(
    /// `RENAME4res`.
    RenameRes,
    RenameResOk
);

/// `SECINFO4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SecinfoArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub name: Component4,
}
/// `rpcsec_gss_info`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RpcsecGssInfo {
    #[xdr(max = NFS4_OPAQUE_LIMIT)]
    pub oid: SecOid4,
    pub qop: u32,
    pub service: RpcGssSvc,
}
/// `secinfo4`: `union switch (uint32_t flavor) { case RPCSEC_GSS: rpcsec_gss_info; default: void }`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Secinfo4 {
    #[xdr(case = RPCSEC_GSS)]
    RpcsecGss(RpcsecGssInfo),
    #[xdr(default)]
    Flavor(u32),
}
/// `SECINFO4resok` (`secinfo4 SECINFO4resok<>`).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SecinfoResOk(#[xdr(max = 64)] pub Vec<Secinfo4>);
res_union!(
    /// `SECINFO4res`.
    SecinfoRes,
    SecinfoResOk
);

/// `secinfo_style4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum SecinfoStyle4 {
    CurrentFh = 0,
    Parent = 1,
}
/// `SECINFO_NO_NAME4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SecinfoNoNameArgs {
    pub style: SecinfoStyle4,
}
/// `SECINFO_NO_NAME4res`.
pub type SecinfoNoNameRes = SecinfoRes;

/// `SETATTR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SetattrArgs {
    pub stateid: Stateid4,
    pub obj_attributes: Fattr4,
}
/// `SETATTR4res`: `attrsset` is present whatever the status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct SetattrRes {
    pub status: u32,
    pub attrsset: Bitmap4,
}
impl SetattrRes {
    pub fn status(&self) -> u32 {
        self.status
    }
}
impl OpResult for SetattrRes {
    fn from_status(status: u32) -> Self {
        SetattrRes {
            status,
            attrsset: Vec::new(),
        }
    }
    fn status(&self) -> u32 {
        self.status
    }
}

/// `WRITE4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct WriteArgs {
    pub stateid: Stateid4,
    pub offset: Offset4,
    pub stable: StableHow4,
    pub data: Opaque,
}
/// `WRITE4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct WriteResOk {
    pub count: Count4,
    pub committed: StableHow4,
    pub writeverf: Verifier4,
}
res_union!(
    /// `WRITE4res`.
    WriteRes,
    WriteResOk
);
