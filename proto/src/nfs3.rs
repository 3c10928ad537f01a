//! NFSv3 (RFC 1813) and MOUNT v3 (RFC 1813 appendix I) wire types.
//!
//! NFSv3 has no in-band operation number: the procedure comes from the RPC call header, so
//! [`Nfs3Args::decode`] / [`Nfs3Res::decode`] take it as a parameter. Result unions are
//! `union switch (nfsstat3 status) { case NFS3_OK: XResOk; default: XResFail; }`, modelled as
//! `enum XRes { Ok(XResOk), Fail(u32 status, XResFail) }`.
use crate::xdr::{Opaque, Reader, Writer, Xdr, XdrError};
use crate::Xdr;

pub const NFS3_PROGRAM: u32 = 100003;
pub const NFS_V3: u32 = 3;
pub const NFS3_FHSIZE: usize = 64;
pub const NFS3_COOKIEVERFSIZE: usize = 8;
pub const NFS3_CREATEVERFSIZE: usize = 8;
pub const NFS3_WRITEVERFSIZE: usize = 8;
/// Bound on `filename3` / `nfspath3` accepted by the decoder.
pub const NFS3_MAXPATHLEN: usize = 4096;

pub const MOUNT_PROGRAM: u32 = 100005;
pub const MOUNT_V3: u32 = 3;
pub const MNTPATHLEN: usize = 1024;
pub const MNTNAMLEN: usize = 255;
pub const FHSIZE3: usize = 64;

pub const NFSPROC3_NULL: u32 = 0;
pub const NFSPROC3_GETATTR: u32 = 1;
pub const NFSPROC3_SETATTR: u32 = 2;
pub const NFSPROC3_LOOKUP: u32 = 3;
pub const NFSPROC3_ACCESS: u32 = 4;
pub const NFSPROC3_READLINK: u32 = 5;
pub const NFSPROC3_READ: u32 = 6;
pub const NFSPROC3_WRITE: u32 = 7;
pub const NFSPROC3_CREATE: u32 = 8;
pub const NFSPROC3_MKDIR: u32 = 9;
pub const NFSPROC3_SYMLINK: u32 = 10;
pub const NFSPROC3_MKNOD: u32 = 11;
pub const NFSPROC3_REMOVE: u32 = 12;
pub const NFSPROC3_RMDIR: u32 = 13;
pub const NFSPROC3_RENAME: u32 = 14;
pub const NFSPROC3_LINK: u32 = 15;
pub const NFSPROC3_READDIR: u32 = 16;
pub const NFSPROC3_READDIRPLUS: u32 = 17;
pub const NFSPROC3_FSSTAT: u32 = 18;
pub const NFSPROC3_FSINFO: u32 = 19;
pub const NFSPROC3_PATHCONF: u32 = 20;
pub const NFSPROC3_COMMIT: u32 = 21;

pub const MOUNTPROC3_NULL: u32 = 0;
pub const MOUNTPROC3_MNT: u32 = 1;
pub const MOUNTPROC3_DUMP: u32 = 2;
pub const MOUNTPROC3_UMNT: u32 = 3;
pub const MOUNTPROC3_UMNTALL: u32 = 4;
pub const MOUNTPROC3_EXPORT: u32 = 5;

pub const ACCESS3_READ: u32 = 0x0001;
pub const ACCESS3_LOOKUP: u32 = 0x0002;
pub const ACCESS3_MODIFY: u32 = 0x0004;
pub const ACCESS3_EXTEND: u32 = 0x0008;
pub const ACCESS3_DELETE: u32 = 0x0010;
pub const ACCESS3_EXECUTE: u32 = 0x0020;

pub const FSF3_LINK: u32 = 0x0001;
pub const FSF3_SYMLINK: u32 = 0x0002;
pub const FSF3_HOMOGENEOUS: u32 = 0x0008;
pub const FSF3_CANSETTIME: u32 = 0x0010;

/// `nfsstat3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
#[repr(u32)]
pub enum Nfsstat3 {
    Ok = 0,
    Perm = 1,
    Noent = 2,
    Io = 5,
    Nxio = 6,
    Acces = 13,
    Exist = 17,
    Xdev = 18,
    Nodev = 19,
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
    Remote = 71,
    Badhandle = 10001,
    NotSync = 10002,
    BadCookie = 10003,
    Notsupp = 10004,
    Toosmall = 10005,
    Serverfault = 10006,
    Badtype = 10007,
    Jukebox = 10008,
}

impl Nfsstat3 {
    pub const ALL: &'static [Nfsstat3] = &[
        Self::Ok,
        Self::Perm,
        Self::Noent,
        Self::Io,
        Self::Nxio,
        Self::Acces,
        Self::Exist,
        Self::Xdev,
        Self::Nodev,
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
        Self::Remote,
        Self::Badhandle,
        Self::NotSync,
        Self::BadCookie,
        Self::Notsupp,
        Self::Toosmall,
        Self::Serverfault,
        Self::Badtype,
        Self::Jukebox,
    ];
    pub fn code(self) -> u32 {
        self as u32
    }
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.code() == code)
    }
}
impl From<Nfsstat3> for u32 {
    fn from(s: Nfsstat3) -> u32 {
        s.code()
    }
}

/// `ftype3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum Ftype3 {
    Reg = 1,
    Dir = 2,
    Blk = 3,
    Chr = 4,
    Lnk = 5,
    Sock = 6,
    Fifo = 7,
}

/// `specdata3`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Xdr)]
pub struct Specdata3 {
    pub specdata1: u32,
    pub specdata2: u32,
}

/// `nfs_fh3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Xdr)]
pub struct NfsFh3 {
    #[xdr(max = NFS3_FHSIZE)]
    pub data: Opaque,
}
impl From<Vec<u8>> for NfsFh3 {
    fn from(v: Vec<u8>) -> Self {
        NfsFh3 { data: Opaque(v) }
    }
}

/// `nfstime3`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Xdr)]
pub struct Nfstime3 {
    pub seconds: u32,
    pub nseconds: u32,
}

/// `filename3`.
pub type Filename3 = Opaque;
/// `nfspath3`.
pub type Nfspath3 = Opaque;
/// `cookieverf3`.
pub type Cookieverf3 = [u8; NFS3_COOKIEVERFSIZE];
/// `createverf3`.
pub type Createverf3 = [u8; NFS3_CREATEVERFSIZE];
/// `writeverf3`.
pub type Writeverf3 = [u8; NFS3_WRITEVERFSIZE];

/// `fattr3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Fattr3 {
    pub ftype: Ftype3,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub used: u64,
    pub rdev: Specdata3,
    pub fsid: u64,
    pub fileid: u64,
    pub atime: Nfstime3,
    pub mtime: Nfstime3,
    pub ctime: Nfstime3,
}

/// `post_op_attr` (`union switch (bool attributes_follow)`, same wire form as `fattr3 *`).
pub type PostOpAttr = Option<Fattr3>;

/// `wcc_attr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct WccAttr {
    pub size: u64,
    pub mtime: Nfstime3,
    pub ctime: Nfstime3,
}
/// `pre_op_attr`.
pub type PreOpAttr = Option<WccAttr>;

/// `wcc_data`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct WccData {
    pub before: PreOpAttr,
    pub after: PostOpAttr,
}

/// `post_op_fh3`.
pub type PostOpFh3 = Option<NfsFh3>;

/// `time_how`.
pub const DONT_CHANGE: u32 = 0;
pub const SET_TO_SERVER_TIME: u32 = 1;
pub const SET_TO_CLIENT_TIME: u32 = 2;

/// `set_atime` / `set_mtime`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub enum SetTime3 {
    #[default]
    #[xdr(case = DONT_CHANGE)]
    DontChange,
    #[xdr(case = SET_TO_SERVER_TIME)]
    ServerTime,
    #[xdr(case = SET_TO_CLIENT_TIME)]
    ClientTime(Nfstime3),
}

/// `sattr3` (`set_mode3`, `set_uid3`, ... are `union switch (bool set_it)`, i.e. `T *`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct Sattr3 {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: SetTime3,
    pub mtime: SetTime3,
}

/// `diropargs3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Diropargs3 {
    pub dir: NfsFh3,
    #[xdr(max = NFS3_MAXPATHLEN)]
    pub name: Filename3,
}

/// `stable_how`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Xdr)]
pub enum StableHow {
    Unstable = 0,
    DataSync = 1,
    FileSync = 2,
}

/// Declares `union XRes switch (nfsstat3 status) { case NFS3_OK: Ok; default: Fail; }`.
macro_rules! res3 {
    ($(#[$m:meta])* $name:ident, $ok:ty, $fail:ty) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, crate::Xdr)]
        pub enum $name {
            #[xdr(case = 0)]
            Ok($ok),
            #[xdr(default)]
            Fail(u32, $fail),
        }
        impl $name {
            pub fn status(&self) -> u32 {
                match self {
                    Self::Ok(_) => 0,
                    Self::Fail(s, _) => *s,
                }
            }
        }
    };
}

/// `GETATTR3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Getattr3Args {
    pub object: NfsFh3,
}
/// `GETATTR3resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Getattr3ResOk {
    pub obj_attributes: Fattr3,
}
res3!(
    /// `GETATTR3res`.
    Getattr3Res,
    Getattr3ResOk,
    ()
);

/// `sattrguard3` (`union switch (bool check)`).
pub type Sattrguard3 = Option<Nfstime3>;

/// `SETATTR3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Setattr3Args {
    pub object: NfsFh3,
    pub new_attributes: Sattr3,
    pub guard: Sattrguard3,
}
/// `SETATTR3resok` / `SETATTR3resfail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct Setattr3ResBody {
    pub obj_wcc: WccData,
}
res3!(
    /// `SETATTR3res`.
    Setattr3Res,
    Setattr3ResBody,
    Setattr3ResBody
);

/// `LOOKUP3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Lookup3Args {
    pub what: Diropargs3,
}
/// `LOOKUP3resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Lookup3ResOk {
    pub object: NfsFh3,
    pub obj_attributes: PostOpAttr,
    pub dir_attributes: PostOpAttr,
}
/// `LOOKUP3resfail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct Lookup3ResFail {
    pub dir_attributes: PostOpAttr,
}
res3!(
    /// `LOOKUP3res`.
    Lookup3Res,
    Lookup3ResOk,
    Lookup3ResFail
);

/// A `resfail` that is only the object's `post_op_attr` (ACCESS, READLINK, READ, FSSTAT,
/// FSINFO, PATHCONF, READDIR(PLUS)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct AttrResFail {
    pub obj_attributes: PostOpAttr,
}

/// `ACCESS3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Access3Args {
    pub object: NfsFh3,
    pub access: u32,
}
/// `ACCESS3resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Access3ResOk {
    pub obj_attributes: PostOpAttr,
    pub access: u32,
}
res3!(
    /// `ACCESS3res`.
    Access3Res,
    Access3ResOk,
    AttrResFail
);

/// `READLINK3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Readlink3Args {
    pub symlink: NfsFh3,
}
/// `READLINK3resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Readlink3ResOk {
    pub symlink_attributes: PostOpAttr,
    #[xdr(max = NFS3_MAXPATHLEN)]
    pub data: Nfspath3,
}
res3!(
    /// `READLINK3res`.
    Readlink3Res,
    Readlink3ResOk,
    AttrResFail
);

/// `READ3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Read3Args {
    pub file: NfsFh3,
    pub offset: u64,
    pub count: u32,
}
/// `READ3resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Read3ResOk {
    pub file_attributes: PostOpAttr,
    pub count: u32,
    pub eof: bool,
    pub data: Opaque,
}
res3!(
    /// `READ3res`.
    Read3Res,
    Read3ResOk,
    AttrResFail
);

/// `WRITE3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Write3Args {
    pub file: NfsFh3,
    pub offset: u64,
    pub count: u32,
    pub stable: StableHow,
    pub data: Opaque,
}
/// `WRITE3resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Write3ResOk {
    pub file_wcc: WccData,
    pub count: u32,
    pub committed: StableHow,
    pub verf: Writeverf3,
}
/// A `resfail` that is only a `wcc_data` (WRITE, CREATE, MKDIR, SYMLINK, MKNOD, REMOVE,
/// RMDIR, COMMIT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct WccResFail {
    pub wcc: WccData,
}
res3!(
    /// `WRITE3res`.
    Write3Res,
    Write3ResOk,
    WccResFail
);

/// `createhow3`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Createhow3 {
    #[xdr(case = 0)]
    Unchecked(Sattr3),
    #[xdr(case = 1)]
    Guarded(Sattr3),
    #[xdr(case = 2)]
    Exclusive(Createverf3),
}
/// `CREATE3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Create3Args {
    pub r#where: Diropargs3,
    pub how: Createhow3,
}
/// `CREATE3resok` (also `MKDIR3resok`, `SYMLINK3resok`, `MKNOD3resok`).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Create3ResOk {
    pub obj: PostOpFh3,
    pub obj_attributes: PostOpAttr,
    pub dir_wcc: WccData,
}
res3!(
    /// `CREATE3res` (also `MKDIR3res`, `SYMLINK3res`, `MKNOD3res`).
    Create3Res,
    Create3ResOk,
    WccResFail
);
pub type Mkdir3Res = Create3Res;
pub type Symlink3Res = Create3Res;
pub type Mknod3Res = Create3Res;

/// `MKDIR3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Mkdir3Args {
    pub r#where: Diropargs3,
    pub attributes: Sattr3,
}

/// `symlinkdata3`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Symlinkdata3 {
    pub symlink_attributes: Sattr3,
    #[xdr(max = NFS3_MAXPATHLEN)]
    pub symlink_data: Nfspath3,
}
/// `SYMLINK3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Symlink3Args {
    pub r#where: Diropargs3,
    pub symlink: Symlinkdata3,
}

/// `devicedata3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Devicedata3 {
    pub dev_attributes: Sattr3,
    pub spec: Specdata3,
}
/// `mknoddata3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum Mknoddata3 {
    #[xdr(case = 4)]
    Chr(Devicedata3),
    #[xdr(case = 3)]
    Blk(Devicedata3),
    #[xdr(case = 6)]
    Sock(Sattr3),
    #[xdr(case = 7)]
    Fifo(Sattr3),
    /// REG, DIR, LNK (void arm; the server answers NFS3ERR_BADTYPE).
    #[xdr(default)]
    Other(u32),
}
/// `MKNOD3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Mknod3Args {
    pub r#where: Diropargs3,
    pub what: Mknoddata3,
}

/// `REMOVE3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Remove3Args {
    pub object: Diropargs3,
}
/// `REMOVE3resok` / `REMOVE3resfail` (also RMDIR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct DirWcc {
    pub dir_wcc: WccData,
}
res3!(
    /// `REMOVE3res` (also `RMDIR3res`).
    Remove3Res,
    DirWcc,
    DirWcc
);
/// `RMDIR3args`.
pub type Rmdir3Args = Remove3Args;
pub type Rmdir3Res = Remove3Res;

/// `RENAME3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Rename3Args {
    pub from: Diropargs3,
    pub to: Diropargs3,
}
/// `RENAME3resok` / `RENAME3resfail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct Rename3ResBody {
    pub fromdir_wcc: WccData,
    pub todir_wcc: WccData,
}
res3!(
    /// `RENAME3res`.
    Rename3Res,
    Rename3ResBody,
    Rename3ResBody
);

/// `LINK3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Link3Args {
    pub file: NfsFh3,
    pub link: Diropargs3,
}
/// `LINK3resok` / `LINK3resfail`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct Link3ResBody {
    pub file_attributes: PostOpAttr,
    pub linkdir_wcc: WccData,
}
res3!(
    /// `LINK3res`.
    Link3Res,
    Link3ResBody,
    Link3ResBody
);

/// `READDIR3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Readdir3Args {
    pub dir: NfsFh3,
    pub cookie: u64,
    pub cookieverf: Cookieverf3,
    pub count: u32,
}
/// `entry3` without its `nextentry` link.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Entry3 {
    pub fileid: u64,
    #[xdr(max = NFS3_MAXPATHLEN)]
    pub name: Filename3,
    pub cookie: u64,
}
/// `dirlist3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Dirlist3 {
    #[xdr(list)]
    pub entries: Vec<Entry3>,
    pub eof: bool,
}
/// `READDIR3resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Readdir3ResOk {
    pub dir_attributes: PostOpAttr,
    pub cookieverf: Cookieverf3,
    pub reply: Dirlist3,
}
res3!(
    /// `READDIR3res`.
    Readdir3Res,
    Readdir3ResOk,
    AttrResFail
);

/// `READDIRPLUS3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Readdirplus3Args {
    pub dir: NfsFh3,
    pub cookie: u64,
    pub cookieverf: Cookieverf3,
    pub dircount: u32,
    pub maxcount: u32,
}
/// `entryplus3` without its `nextentry` link.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Entryplus3 {
    pub fileid: u64,
    #[xdr(max = NFS3_MAXPATHLEN)]
    pub name: Filename3,
    pub cookie: u64,
    pub name_attributes: PostOpAttr,
    pub name_handle: PostOpFh3,
}
/// `dirlistplus3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Dirlistplus3 {
    #[xdr(list)]
    pub entries: Vec<Entryplus3>,
    pub eof: bool,
}
/// `READDIRPLUS3resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Readdirplus3ResOk {
    pub dir_attributes: PostOpAttr,
    pub cookieverf: Cookieverf3,
    pub reply: Dirlistplus3,
}
res3!(
    /// `READDIRPLUS3res`.
    Readdirplus3Res,
    Readdirplus3ResOk,
    AttrResFail
);

/// `FSSTAT3args` / `FSINFO3args` (`fsroot`).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Fsroot3Args {
    pub fsroot: NfsFh3,
}
pub type Fsstat3Args = Fsroot3Args;
pub type Fsinfo3Args = Fsroot3Args;

/// `FSSTAT3resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Fsstat3ResOk {
    pub obj_attributes: PostOpAttr,
    pub tbytes: u64,
    pub fbytes: u64,
    pub abytes: u64,
    pub tfiles: u64,
    pub ffiles: u64,
    pub afiles: u64,
    pub invarsec: u32,
}
res3!(
    /// `FSSTAT3res`.
    Fsstat3Res,
    Fsstat3ResOk,
    AttrResFail
);

/// `FSINFO3resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Fsinfo3ResOk {
    pub obj_attributes: PostOpAttr,
    pub rtmax: u32,
    pub rtpref: u32,
    pub rtmult: u32,
    pub wtmax: u32,
    pub wtpref: u32,
    pub wtmult: u32,
    pub dtpref: u32,
    pub maxfilesize: u64,
    pub time_delta: Nfstime3,
    pub properties: u32,
}
res3!(
    /// `FSINFO3res`.
    Fsinfo3Res,
    Fsinfo3ResOk,
    AttrResFail
);

/// `PATHCONF3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Pathconf3Args {
    pub object: NfsFh3,
}
/// `PATHCONF3resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Pathconf3ResOk {
    pub obj_attributes: PostOpAttr,
    pub linkmax: u32,
    pub name_max: u32,
    pub no_trunc: bool,
    pub chown_restricted: bool,
    pub case_insensitive: bool,
    pub case_preserving: bool,
}
res3!(
    /// `PATHCONF3res`.
    Pathconf3Res,
    Pathconf3ResOk,
    AttrResFail
);

/// `COMMIT3args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Commit3Args {
    pub file: NfsFh3,
    pub offset: u64,
    pub count: u32,
}
/// `COMMIT3resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Commit3ResOk {
    pub file_wcc: WccData,
    pub verf: Writeverf3,
}
res3!(
    /// `COMMIT3res`.
    Commit3Res,
    Commit3ResOk,
    WccResFail
);

/// Declares the per-procedure argument and result enums from one table.
macro_rules! nfs3_procs {
    ($( $num:ident => $name:ident ( $args:ty ) / $res:ty ),* $(,)?) => {
        /// The arguments of an NFSv3 call, by procedure.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Nfs3Args {
            Null,
            $( $name($args), )*
        }
        /// The result of an NFSv3 call, by procedure.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Nfs3Res {
            Null,
            $( $name($res), )*
        }
        impl Nfs3Args {
            /// Decodes the arguments of procedure `proc_`; `Ok(None)` for an unknown
            /// procedure (RPC PROC_UNAVAIL).
            pub fn decode(proc_: u32, r: &mut Reader<'_>) -> Result<Option<Self>, XdrError> {
                Ok(Some(match proc_ {
                    NFSPROC3_NULL => Self::Null,
                    $( $num => Self::$name(<$args as Xdr>::decode(r)?), )*
                    _ => return Ok(None),
                }))
            }
            pub fn encode(&self, w: &mut Writer) {
                match self {
                    Self::Null => {}
                    $( Self::$name(a) => a.encode(w), )*
                }
            }
            pub fn proc_num(&self) -> u32 {
                match self {
                    Self::Null => NFSPROC3_NULL,
                    $( Self::$name(_) => $num, )*
                }
            }
        }
        impl Nfs3Res {
            /// Decodes the result of procedure `proc_`; `Ok(None)` for an unknown procedure.
            pub fn decode(proc_: u32, r: &mut Reader<'_>) -> Result<Option<Self>, XdrError> {
                Ok(Some(match proc_ {
                    NFSPROC3_NULL => Self::Null,
                    $( $num => Self::$name(<$res as Xdr>::decode(r)?), )*
                    _ => return Ok(None),
                }))
            }
            pub fn encode(&self, w: &mut Writer) {
                match self {
                    Self::Null => {}
                    $( Self::$name(a) => a.encode(w), )*
                }
            }
            pub fn proc_num(&self) -> u32 {
                match self {
                    Self::Null => NFSPROC3_NULL,
                    $( Self::$name(_) => $num, )*
                }
            }
            /// The `nfsstat3` (NFS3_OK for NULL).
            pub fn status(&self) -> u32 {
                match self {
                    Self::Null => 0,
                    $( Self::$name(r) => r.status(), )*
                }
            }
        }
    };
}

nfs3_procs! {
    NFSPROC3_GETATTR => Getattr(Getattr3Args) / Getattr3Res,
    NFSPROC3_SETATTR => Setattr(Setattr3Args) / Setattr3Res,
    NFSPROC3_LOOKUP => Lookup(Lookup3Args) / Lookup3Res,
    NFSPROC3_ACCESS => Access(Access3Args) / Access3Res,
    NFSPROC3_READLINK => Readlink(Readlink3Args) / Readlink3Res,
    NFSPROC3_READ => Read(Read3Args) / Read3Res,
    NFSPROC3_WRITE => Write(Write3Args) / Write3Res,
    NFSPROC3_CREATE => Create(Create3Args) / Create3Res,
    NFSPROC3_MKDIR => Mkdir(Mkdir3Args) / Mkdir3Res,
    NFSPROC3_SYMLINK => Symlink(Symlink3Args) / Symlink3Res,
    NFSPROC3_MKNOD => Mknod(Mknod3Args) / Mknod3Res,
    NFSPROC3_REMOVE => Remove(Remove3Args) / Remove3Res,
    NFSPROC3_RMDIR => Rmdir(Rmdir3Args) / Rmdir3Res,
    NFSPROC3_RENAME => Rename(Rename3Args) / Rename3Res,
    NFSPROC3_LINK => Link(Link3Args) / Link3Res,
    NFSPROC3_READDIR => Readdir(Readdir3Args) / Readdir3Res,
    NFSPROC3_READDIRPLUS => Readdirplus(Readdirplus3Args) / Readdirplus3Res,
    NFSPROC3_FSSTAT => Fsstat(Fsstat3Args) / Fsstat3Res,
    NFSPROC3_FSINFO => Fsinfo(Fsinfo3Args) / Fsinfo3Res,
    NFSPROC3_PATHCONF => Pathconf(Pathconf3Args) / Pathconf3Res,
    NFSPROC3_COMMIT => Commit(Commit3Args) / Commit3Res,
}

// ---- MOUNT v3 ----

/// `mountstat3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
#[repr(u32)]
pub enum Mountstat3 {
    Ok = 0,
    Perm = 1,
    Noent = 2,
    Io = 5,
    Acces = 13,
    Notdir = 20,
    Inval = 22,
    Nametoolong = 63,
    Notsupp = 10004,
    Serverfault = 10006,
}
impl Mountstat3 {
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// `fhandle3`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Xdr)]
pub struct Fhandle3(#[xdr(max = FHSIZE3)] pub Opaque);

/// `dirpath` (`string<MNTPATHLEN>`), raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Xdr)]
pub struct Dirpath(#[xdr(max = MNTPATHLEN)] pub Opaque);

/// `name` (`string<MNTNAMLEN>`), raw bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Xdr)]
pub struct MntName(#[xdr(max = MNTNAMLEN)] pub Opaque);

/// `mountres3_ok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Mountres3Ok {
    pub fhandle: Fhandle3,
    #[xdr(max = 64)]
    pub auth_flavors: Vec<u32>,
}
/// `mountres3`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Mountres3 {
    #[xdr(case = 0)]
    Ok(Mountres3Ok),
    #[xdr(default)]
    Err(u32),
}
impl Mountres3 {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok(_) => 0,
            Self::Err(s) => *s,
        }
    }
}

/// `mountbody` without its `ml_next` link.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Mountbody {
    pub ml_hostname: MntName,
    pub ml_directory: Dirpath,
}
/// `mountlist` (DUMP result): the `mountbody *` chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Mountlist {
    #[xdr(list)]
    pub entries: Vec<Mountbody>,
}

/// `exportnode` without its `ex_next` link; `ex_groups` is the `groupnode *` chain.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Exportnode {
    pub ex_dir: Dirpath,
    #[xdr(list, max = 4096)]
    pub ex_groups: Vec<MntName>,
}
/// `exports` (EXPORT result): the `exportnode *` chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct Exports {
    #[xdr(list)]
    pub entries: Vec<Exportnode>,
}

/// The arguments of a MOUNT v3 call, by procedure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount3Args {
    Null,
    Mnt(Dirpath),
    Dump,
    Umnt(Dirpath),
    Umntall,
    Export,
}
impl Mount3Args {
    /// `Ok(None)` for an unknown procedure.
    pub fn decode(proc_: u32, r: &mut Reader<'_>) -> Result<Option<Self>, XdrError> {
        Ok(Some(match proc_ {
            MOUNTPROC3_NULL => Self::Null,
            MOUNTPROC3_MNT => Self::Mnt(Dirpath::decode(r)?),
            MOUNTPROC3_DUMP => Self::Dump,
            MOUNTPROC3_UMNT => Self::Umnt(Dirpath::decode(r)?),
            MOUNTPROC3_UMNTALL => Self::Umntall,
            MOUNTPROC3_EXPORT => Self::Export,
            _ => return Ok(None),
        }))
    }
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Mnt(p) | Self::Umnt(p) => p.encode(w),
            Self::Null | Self::Dump | Self::Umntall | Self::Export => {}
        }
    }
    pub fn proc_num(&self) -> u32 {
        match self {
            Self::Null => MOUNTPROC3_NULL,
            Self::Mnt(_) => MOUNTPROC3_MNT,
            Self::Dump => MOUNTPROC3_DUMP,
            Self::Umnt(_) => MOUNTPROC3_UMNT,
            Self::Umntall => MOUNTPROC3_UMNTALL,
            Self::Export => MOUNTPROC3_EXPORT,
        }
    }
}

/// The result of a MOUNT v3 call, by procedure (UMNT/UMNTALL/NULL are void).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount3Res {
    Void(u32),
    Mnt(Mountres3),
    Dump(Mountlist),
    Export(Exports),
}
impl Mount3Res {
    /// `Ok(None)` for an unknown procedure.
    pub fn decode(proc_: u32, r: &mut Reader<'_>) -> Result<Option<Self>, XdrError> {
        Ok(Some(match proc_ {
            MOUNTPROC3_NULL | MOUNTPROC3_UMNT | MOUNTPROC3_UMNTALL => Self::Void(proc_),
            MOUNTPROC3_MNT => Self::Mnt(Mountres3::decode(r)?),
            MOUNTPROC3_DUMP => Self::Dump(Mountlist::decode(r)?),
            MOUNTPROC3_EXPORT => Self::Export(Exports::decode(r)?),
            _ => return Ok(None),
        }))
    }
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Self::Void(_) => {}
            Self::Mnt(m) => m.encode(w),
            Self::Dump(m) => m.encode(w),
            Self::Export(e) => e.encode(w),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt<T: Xdr + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
        let b = v.to_xdr();
        let mut r = Reader::new(&b);
        assert_eq!(&T::decode(&mut r).unwrap(), v);
        assert_eq!(r.remaining(), 0);
        for cut in 0..b.len() {
            if let Ok(x) = T::from_xdr(&b[..cut]) {
                assert_ne!(&x, v);
            }
        }
        b
    }

    fn rt_args(a: &Nfs3Args) {
        let mut w = Writer::new();
        a.encode(&mut w);
        let d = Nfs3Args::decode(a.proc_num(), &mut Reader::new(&w.buf))
            .unwrap()
            .unwrap();
        assert_eq!(&d, a);
    }

    fn rt_res(a: &Nfs3Res) {
        let mut w = Writer::new();
        a.encode(&mut w);
        let d = Nfs3Res::decode(a.proc_num(), &mut Reader::new(&w.buf))
            .unwrap()
            .unwrap();
        assert_eq!(&d, a);
    }

    fn attr() -> Fattr3 {
        Fattr3 {
            ftype: Ftype3::Reg,
            mode: 0o644,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            size: 5,
            used: 4096,
            rdev: Specdata3::default(),
            fsid: 1,
            fileid: 42,
            atime: Nfstime3 {
                seconds: 1,
                nseconds: 2,
            },
            mtime: Nfstime3::default(),
            ctime: Nfstime3::default(),
        }
    }

    fn fh() -> NfsFh3 {
        NfsFh3::from(vec![1; 32])
    }

    fn dop(n: &str) -> Diropargs3 {
        Diropargs3 {
            dir: fh(),
            name: Opaque::from(n),
        }
    }

    #[test]
    fn args_roundtrip() {
        let s = Sattr3 {
            mode: Some(0o755),
            uid: None,
            gid: Some(5),
            size: Some(0),
            atime: SetTime3::ServerTime,
            mtime: SetTime3::ClientTime(Nfstime3 {
                seconds: 9,
                nseconds: 1,
            }),
        };
        let all = vec![
            Nfs3Args::Null,
            Nfs3Args::Getattr(Getattr3Args { object: fh() }),
            Nfs3Args::Setattr(Setattr3Args {
                object: fh(),
                new_attributes: s,
                guard: Some(Nfstime3::default()),
            }),
            Nfs3Args::Lookup(Lookup3Args { what: dop("a") }),
            Nfs3Args::Access(Access3Args {
                object: fh(),
                access: ACCESS3_READ,
            }),
            Nfs3Args::Readlink(Readlink3Args { symlink: fh() }),
            Nfs3Args::Read(Read3Args {
                file: fh(),
                offset: 1,
                count: 2,
            }),
            Nfs3Args::Write(Write3Args {
                file: fh(),
                offset: 0,
                count: 3,
                stable: StableHow::FileSync,
                data: Opaque(vec![1, 2, 3]),
            }),
            Nfs3Args::Create(Create3Args {
                r#where: dop("f"),
                how: Createhow3::Guarded(s),
            }),
            Nfs3Args::Create(Create3Args {
                r#where: dop("f"),
                how: Createhow3::Exclusive([7; 8]),
            }),
            Nfs3Args::Mkdir(Mkdir3Args {
                r#where: dop("d"),
                attributes: s,
            }),
            Nfs3Args::Symlink(Symlink3Args {
                r#where: dop("l"),
                symlink: Symlinkdata3 {
                    symlink_attributes: s,
                    symlink_data: Opaque::from("/t"),
                },
            }),
            Nfs3Args::Mknod(Mknod3Args {
                r#where: dop("c"),
                what: Mknoddata3::Chr(Devicedata3 {
                    dev_attributes: s,
                    spec: Specdata3::default(),
                }),
            }),
            Nfs3Args::Mknod(Mknod3Args {
                r#where: dop("p"),
                what: Mknoddata3::Fifo(s),
            }),
            Nfs3Args::Mknod(Mknod3Args {
                r#where: dop("r"),
                what: Mknoddata3::Other(1),
            }),
            Nfs3Args::Remove(Remove3Args { object: dop("x") }),
            Nfs3Args::Rmdir(Remove3Args { object: dop("y") }),
            Nfs3Args::Rename(Rename3Args {
                from: dop("a"),
                to: dop("b"),
            }),
            Nfs3Args::Link(Link3Args {
                file: fh(),
                link: dop("h"),
            }),
            Nfs3Args::Readdir(Readdir3Args {
                dir: fh(),
                cookie: 0,
                cookieverf: [0; 8],
                count: 4096,
            }),
            Nfs3Args::Readdirplus(Readdirplus3Args {
                dir: fh(),
                cookie: 0,
                cookieverf: [0; 8],
                dircount: 4096,
                maxcount: 32768,
            }),
            Nfs3Args::Fsstat(Fsroot3Args { fsroot: fh() }),
            Nfs3Args::Fsinfo(Fsroot3Args { fsroot: fh() }),
            Nfs3Args::Pathconf(Pathconf3Args { object: fh() }),
            Nfs3Args::Commit(Commit3Args {
                file: fh(),
                offset: 0,
                count: 0,
            }),
        ];
        for a in &all {
            rt_args(a);
        }
        assert_eq!(Nfs3Args::decode(22, &mut Reader::new(&[])), Ok(None));
    }

    #[test]
    fn res_roundtrip() {
        let wcc = WccData {
            before: Some(WccAttr {
                size: 1,
                mtime: Nfstime3::default(),
                ctime: Nfstime3::default(),
            }),
            after: Some(attr()),
        };
        let all = vec![
            Nfs3Res::Getattr(Getattr3Res::Ok(Getattr3ResOk {
                obj_attributes: attr(),
            })),
            Nfs3Res::Getattr(Getattr3Res::Fail(Nfsstat3::Stale.code(), ())),
            Nfs3Res::Setattr(Setattr3Res::Fail(1, Setattr3ResBody { obj_wcc: wcc })),
            Nfs3Res::Lookup(Lookup3Res::Ok(Lookup3ResOk {
                object: fh(),
                obj_attributes: Some(attr()),
                dir_attributes: None,
            })),
            Nfs3Res::Lookup(Lookup3Res::Fail(
                2,
                Lookup3ResFail {
                    dir_attributes: Some(attr()),
                },
            )),
            Nfs3Res::Access(Access3Res::Ok(Access3ResOk {
                obj_attributes: None,
                access: 3,
            })),
            Nfs3Res::Read(Read3Res::Ok(Read3ResOk {
                file_attributes: Some(attr()),
                count: 2,
                eof: true,
                data: Opaque(vec![1, 2]),
            })),
            Nfs3Res::Write(Write3Res::Ok(Write3ResOk {
                file_wcc: wcc,
                count: 2,
                committed: StableHow::Unstable,
                verf: [3; 8],
            })),
            Nfs3Res::Create(Create3Res::Ok(Create3ResOk {
                obj: Some(fh()),
                obj_attributes: Some(attr()),
                dir_wcc: wcc,
            })),
            Nfs3Res::Rename(Rename3Res::Ok(Rename3ResBody::default())),
            Nfs3Res::Readdir(Readdir3Res::Ok(Readdir3ResOk {
                dir_attributes: None,
                cookieverf: [1; 8],
                reply: Dirlist3 {
                    entries: (0..20)
                        .map(|i| Entry3 {
                            fileid: i,
                            name: Opaque::from("n"),
                            cookie: i + 1,
                        })
                        .collect(),
                    eof: true,
                },
            })),
            Nfs3Res::Readdirplus(Readdirplus3Res::Ok(Readdirplus3ResOk {
                dir_attributes: Some(attr()),
                cookieverf: [1; 8],
                reply: Dirlistplus3 {
                    entries: vec![Entryplus3 {
                        fileid: 1,
                        name: Opaque::from("."),
                        cookie: 1,
                        name_attributes: Some(attr()),
                        name_handle: Some(fh()),
                    }],
                    eof: false,
                },
            })),
            Nfs3Res::Fsinfo(Fsinfo3Res::Ok(Fsinfo3ResOk {
                obj_attributes: None,
                rtmax: 1 << 20,
                rtpref: 1 << 20,
                rtmult: 4096,
                wtmax: 1 << 20,
                wtpref: 1 << 20,
                wtmult: 4096,
                dtpref: 4096,
                maxfilesize: u64::MAX,
                time_delta: Nfstime3 {
                    seconds: 0,
                    nseconds: 1,
                },
                properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
            })),
            Nfs3Res::Pathconf(Pathconf3Res::Ok(Pathconf3ResOk {
                obj_attributes: None,
                linkmax: 1,
                name_max: 255,
                no_trunc: true,
                chown_restricted: true,
                case_insensitive: false,
                case_preserving: true,
            })),
            Nfs3Res::Commit(Commit3Res::Fail(5, WccResFail::default())),
        ];
        for r in &all {
            rt_res(r);
        }
        assert_eq!(all[1].status(), 70);
    }

    #[test]
    fn mount_roundtrip() {
        rt(&Mountres3::Ok(Mountres3Ok {
            fhandle: Fhandle3(Opaque(vec![1; 16])),
            auth_flavors: vec![1, 390004],
        }));
        rt(&Mountres3::Err(Mountstat3::Acces.code()));
        let ex = Exports {
            entries: vec![
                Exportnode {
                    ex_dir: Dirpath(Opaque::from("/export")),
                    ex_groups: vec![MntName(Opaque::from("*"))],
                },
                Exportnode {
                    ex_dir: Dirpath(Opaque::from("/b")),
                    ex_groups: vec![],
                },
            ],
        };
        let b = rt(&ex);
        // 1, "/export", 1, "*", 0, 1, "/b", 0, 0
        assert_eq!(b.len(), 4 + 12 + 4 + 8 + 4 + 4 + 8 + 4 + 4);
        rt(&Mountlist {
            entries: vec![Mountbody {
                ml_hostname: MntName(Opaque::from("c")),
                ml_directory: Dirpath(Opaque::from("/")),
            }],
        });
        let a = Mount3Args::Mnt(Dirpath(Opaque::from("/export")));
        let mut w = Writer::new();
        a.encode(&mut w);
        assert_eq!(
            Mount3Args::decode(MOUNTPROC3_MNT, &mut Reader::new(&w.buf)),
            Ok(Some(a))
        );
    }

    #[test]
    fn hostile() {
        let w = |ws: &[u32]| ws.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        // Oversized file handle.
        assert!(Nfs3Args::decode(NFSPROC3_GETATTR, &mut Reader::new(&w(&[65]))).is_err());
        // Endless directory list is bounded by the input.
        let mut b = w(&[0, 0, 0, 0]);
        for _ in 0..100 {
            b.extend_from_slice(&w(&[1, 0, 0, 0, 0, 0]));
        }
        assert!(Nfs3Res::decode(NFSPROC3_READDIR, &mut Reader::new(&b)).is_err());
        // Bad ftype3 / bool.
        assert!(Getattr3Res::from_xdr(&w(&[0, 9])).is_err());
        assert!(Lookup3Res::from_xdr(&w(&[2, 2])).is_err());
        assert!(Mountres3::from_xdr(&w(&[0, 0x7fff_ffff])).is_err());
        for s in Nfsstat3::ALL {
            assert_eq!(Nfsstat3::from_code(s.code()), Some(*s));
        }
    }
}
