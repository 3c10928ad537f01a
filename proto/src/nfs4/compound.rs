//! COMPOUND (RFC 8881 §16.2, §18): `COMPOUND4args`/`COMPOUND4res` and the `nfs_argop4` /
//! `nfs_resop4` unions with an arm for every operation of NFSv4.0/4.1/4.2 and RFC 8276.
use super::basic::*;
use super::fileops::*;
use super::pnfs::*;
use super::session::*;
use super::state::*;
use super::v42::*;
use crate::xdr::{Opaque, Reader, Writer, Xdr, XdrError};

pub const OP_ACCESS: u32 = 3;
pub const OP_CLOSE: u32 = 4;
pub const OP_COMMIT: u32 = 5;
pub const OP_CREATE: u32 = 6;
pub const OP_DELEGPURGE: u32 = 7;
pub const OP_DELEGRETURN: u32 = 8;
pub const OP_GETATTR: u32 = 9;
pub const OP_GETFH: u32 = 10;
pub const OP_LINK: u32 = 11;
pub const OP_LOCK: u32 = 12;
pub const OP_LOCKT: u32 = 13;
pub const OP_LOCKU: u32 = 14;
pub const OP_LOOKUP: u32 = 15;
pub const OP_LOOKUPP: u32 = 16;
pub const OP_NVERIFY: u32 = 17;
pub const OP_OPEN: u32 = 18;
pub const OP_OPENATTR: u32 = 19;
pub const OP_OPEN_CONFIRM: u32 = 20;
pub const OP_OPEN_DOWNGRADE: u32 = 21;
pub const OP_PUTFH: u32 = 22;
pub const OP_PUTPUBFH: u32 = 23;
pub const OP_PUTROOTFH: u32 = 24;
pub const OP_READ: u32 = 25;
pub const OP_READDIR: u32 = 26;
pub const OP_READLINK: u32 = 27;
pub const OP_REMOVE: u32 = 28;
pub const OP_RENAME: u32 = 29;
pub const OP_RENEW: u32 = 30;
pub const OP_RESTOREFH: u32 = 31;
pub const OP_SAVEFH: u32 = 32;
pub const OP_SECINFO: u32 = 33;
pub const OP_SETATTR: u32 = 34;
pub const OP_SETCLIENTID: u32 = 35;
pub const OP_SETCLIENTID_CONFIRM: u32 = 36;
pub const OP_VERIFY: u32 = 37;
pub const OP_WRITE: u32 = 38;
pub const OP_RELEASE_LOCKOWNER: u32 = 39;
pub const OP_BACKCHANNEL_CTL: u32 = 40;
pub const OP_BIND_CONN_TO_SESSION: u32 = 41;
pub const OP_EXCHANGE_ID: u32 = 42;
pub const OP_CREATE_SESSION: u32 = 43;
pub const OP_DESTROY_SESSION: u32 = 44;
pub const OP_FREE_STATEID: u32 = 45;
pub const OP_GET_DIR_DELEGATION: u32 = 46;
pub const OP_GETDEVICEINFO: u32 = 47;
pub const OP_GETDEVICELIST: u32 = 48;
pub const OP_LAYOUTCOMMIT: u32 = 49;
pub const OP_LAYOUTGET: u32 = 50;
pub const OP_LAYOUTRETURN: u32 = 51;
pub const OP_SECINFO_NO_NAME: u32 = 52;
pub const OP_SEQUENCE: u32 = 53;
pub const OP_SET_SSV: u32 = 54;
pub const OP_TEST_STATEID: u32 = 55;
pub const OP_WANT_DELEGATION: u32 = 56;
pub const OP_DESTROY_CLIENTID: u32 = 57;
pub const OP_RECLAIM_COMPLETE: u32 = 58;
pub const OP_ALLOCATE: u32 = 59;
pub const OP_COPY: u32 = 60;
pub const OP_COPY_NOTIFY: u32 = 61;
pub const OP_DEALLOCATE: u32 = 62;
pub const OP_IO_ADVISE: u32 = 63;
pub const OP_LAYOUTERROR: u32 = 64;
pub const OP_LAYOUTSTATS: u32 = 65;
pub const OP_OFFLOAD_CANCEL: u32 = 66;
pub const OP_OFFLOAD_STATUS: u32 = 67;
pub const OP_READ_PLUS: u32 = 68;
pub const OP_SEEK: u32 = 69;
pub const OP_WRITE_SAME: u32 = 70;
pub const OP_CLONE: u32 = 71;
pub const OP_GETXATTR: u32 = 72;
pub const OP_SETXATTR: u32 = 73;
pub const OP_LISTXATTRS: u32 = 74;
pub const OP_REMOVEXATTR: u32 = 75;
pub const OP_ILLEGAL: u32 = 10044;

/// Declares `NfsArgop4` and `NfsResop4` from one table: `OPNUM => Variant(Args) / Res`
/// (`Variant / Res` for operations without arguments).
macro_rules! nfs_ops {
    ($( $num:ident => $name:ident $( ( $args:ty ) )? / $res:ty ),* $(,)?) => {
        /// `nfs_argop4`. `Unknown(opnum)` is any opcode outside the table: decoding stops there
        /// and the server answers OP_ILLEGAL.
        #[derive(Debug, Clone, PartialEq, Eq, crate::Xdr)]
        pub enum NfsArgop4 {
            $( #[xdr(case = $num)] $name $( ( $args ) )?, )*
            /// `OP_ILLEGAL` (void arguments).
            #[xdr(case = OP_ILLEGAL)]
            Illegal,
            #[xdr(default)]
            Unknown(u32),
        }

        /// `nfs_resop4`.
        #[derive(Debug, Clone, PartialEq, Eq, crate::Xdr)]
        pub enum NfsResop4 {
            $( #[xdr(case = $num)] $name($res), )*
            /// `ILLEGAL4res`.
            #[xdr(case = OP_ILLEGAL)]
            Illegal(IllegalRes),
            /// An opcode this table does not know; carries no body (cannot be decoded further).
            #[xdr(default)]
            Unknown(u32),
        }

        impl NfsArgop4 {
            /// The `nfs_opnum4` of this operation.
            pub fn opnum(&self) -> u32 {
                match self {
                    $( Self::$name { .. } => $num, )*
                    Self::Illegal => OP_ILLEGAL,
                    Self::Unknown(n) => *n,
                }
            }
        }

        impl NfsResop4 {
            /// The `nfs_opnum4` of this result.
            pub fn opnum(&self) -> u32 {
                match self {
                    $( Self::$name(_) => $num, )*
                    Self::Illegal(_) => OP_ILLEGAL,
                    Self::Unknown(n) => *n,
                }
            }
            /// The error result of operation `opnum` with `status` (see
            /// [`OpResult::from_status`]); an opcode outside the table gives the `OP_ILLEGAL`
            /// result with NFS4ERR_OP_ILLEGAL, as RFC 8881 §15.2 requires.
            pub fn from_status(opnum: u32, status: u32) -> Self {
                match opnum {
                    $( $num => Self::$name(<$res as OpResult>::from_status(status)), )*
                    _ => Self::Illegal(StatusRes::err(Nfsstat4::OpIllegal)),
                }
            }
            /// The operation's `nfsstat4` (NFS4ERR_OP_ILLEGAL for `Unknown`).
            pub fn status(&self) -> u32 {
                match self {
                    $( Self::$name(r) => OpResult::status(r), )*
                    Self::Illegal(r) => r.status(),
                    Self::Unknown(_) => Nfsstat4::OpIllegal.code(),
                }
            }
        }
    };
}

nfs_ops! {
    OP_ACCESS => Access(AccessArgs) / AccessRes,
    OP_CLOSE => Close(CloseArgs) / CloseRes,
    OP_COMMIT => Commit(CommitArgs) / CommitRes,
    OP_CREATE => Create(CreateArgs) / CreateRes,
    OP_DELEGPURGE => Delegpurge(DelegpurgeArgs) / DelegpurgeRes,
    OP_DELEGRETURN => Delegreturn(DelegreturnArgs) / DelegreturnRes,
    OP_GETATTR => Getattr(GetattrArgs) / GetattrRes,
    OP_GETFH => Getfh / GetfhRes,
    OP_LINK => Link(LinkArgs) / LinkRes,
    OP_LOCK => Lock(LockArgs) / LockRes,
    OP_LOCKT => Lockt(LocktArgs) / LocktRes,
    OP_LOCKU => Locku(LockuArgs) / LockuRes,
    OP_LOOKUP => Lookup(LookupArgs) / LookupRes,
    OP_LOOKUPP => Lookupp / LookuppRes,
    OP_NVERIFY => Nverify(NverifyArgs) / NverifyRes,
    OP_OPEN => Open(OpenArgs) / OpenRes,
    OP_OPENATTR => Openattr(OpenattrArgs) / OpenattrRes,
    OP_OPEN_CONFIRM => OpenConfirm(OpenConfirmArgs) / OpenConfirmRes,
    OP_OPEN_DOWNGRADE => OpenDowngrade(OpenDowngradeArgs) / OpenDowngradeRes,
    OP_PUTFH => Putfh(PutfhArgs) / PutfhRes,
    OP_PUTPUBFH => Putpubfh / PutpubfhRes,
    OP_PUTROOTFH => Putrootfh / PutrootfhRes,
    OP_READ => Read(ReadArgs) / ReadRes,
    OP_READDIR => Readdir(ReaddirArgs) / ReaddirRes,
    OP_READLINK => Readlink / ReadlinkRes,
    OP_REMOVE => Remove(RemoveArgs) / RemoveRes,
    OP_RENAME => Rename(RenameArgs) / RenameRes,
    OP_RENEW => Renew(RenewArgs) / RenewRes,
    OP_RESTOREFH => Restorefh / RestorefhRes,
    OP_SAVEFH => Savefh / SavefhRes,
    OP_SECINFO => Secinfo(SecinfoArgs) / SecinfoRes,
    OP_SETATTR => Setattr(SetattrArgs) / SetattrRes,
    OP_SETCLIENTID => Setclientid(SetclientidArgs) / SetclientidRes,
    OP_SETCLIENTID_CONFIRM => SetclientidConfirm(SetclientidConfirmArgs) / SetclientidConfirmRes,
    OP_VERIFY => Verify(VerifyArgs) / VerifyRes,
    OP_WRITE => Write(WriteArgs) / WriteRes,
    OP_RELEASE_LOCKOWNER => ReleaseLockowner(ReleaseLockownerArgs) / ReleaseLockownerRes,
    OP_BACKCHANNEL_CTL => BackchannelCtl(BackchannelCtlArgs) / BackchannelCtlRes,
    OP_BIND_CONN_TO_SESSION => BindConnToSession(BindConnToSessionArgs) / BindConnToSessionRes,
    OP_EXCHANGE_ID => ExchangeId(ExchangeIdArgs) / ExchangeIdRes,
    OP_CREATE_SESSION => CreateSession(CreateSessionArgs) / CreateSessionRes,
    OP_DESTROY_SESSION => DestroySession(DestroySessionArgs) / DestroySessionRes,
    OP_FREE_STATEID => FreeStateid(FreeStateidArgs) / FreeStateidRes,
    OP_GET_DIR_DELEGATION => GetDirDelegation(GetDirDelegationArgs) / GetDirDelegationRes,
    OP_GETDEVICEINFO => Getdeviceinfo(GetdeviceinfoArgs) / GetdeviceinfoRes,
    OP_GETDEVICELIST => Getdevicelist(GetdevicelistArgs) / GetdevicelistRes,
    OP_LAYOUTCOMMIT => Layoutcommit(LayoutcommitArgs) / LayoutcommitRes,
    OP_LAYOUTGET => Layoutget(LayoutgetArgs) / LayoutgetRes,
    OP_LAYOUTRETURN => Layoutreturn(LayoutreturnArgs) / LayoutreturnRes,
    OP_SECINFO_NO_NAME => SecinfoNoName(SecinfoNoNameArgs) / SecinfoNoNameRes,
    OP_SEQUENCE => Sequence(SequenceArgs) / SequenceRes,
    OP_SET_SSV => SetSsv(SetSsvArgs) / SetSsvRes,
    OP_TEST_STATEID => TestStateid(TestStateidArgs) / TestStateidRes,
    OP_WANT_DELEGATION => WantDelegation(WantDelegationArgs) / WantDelegationRes,
    OP_DESTROY_CLIENTID => DestroyClientid(DestroyClientidArgs) / DestroyClientidRes,
    OP_RECLAIM_COMPLETE => ReclaimComplete(ReclaimCompleteArgs) / ReclaimCompleteRes,
    OP_ALLOCATE => Allocate(AllocateArgs) / AllocateRes,
    OP_COPY => Copy(CopyArgs) / CopyRes,
    OP_COPY_NOTIFY => CopyNotify(CopyNotifyArgs) / CopyNotifyRes,
    OP_DEALLOCATE => Deallocate(DeallocateArgs) / DeallocateRes,
    OP_IO_ADVISE => IoAdvise(IoAdviseArgs) / IoAdviseRes,
    OP_LAYOUTERROR => Layouterror(LayouterrorArgs) / LayouterrorRes,
    OP_LAYOUTSTATS => Layoutstats(LayoutstatsArgs) / LayoutstatsRes,
    OP_OFFLOAD_CANCEL => OffloadCancel(OffloadCancelArgs) / OffloadCancelRes,
    OP_OFFLOAD_STATUS => OffloadStatus(OffloadStatusArgs) / OffloadStatusRes,
    OP_READ_PLUS => ReadPlus(ReadPlusArgs) / ReadPlusRes,
    OP_SEEK => Seek(SeekArgs) / SeekRes,
    OP_WRITE_SAME => WriteSame(WriteSameArgs) / WriteSameRes,
    OP_CLONE => Clone(CloneArgs) / CloneRes,
    OP_GETXATTR => Getxattr(GetxattrArgs) / GetxattrRes,
    OP_SETXATTR => Setxattr(SetxattrArgs) / SetxattrRes,
    OP_LISTXATTRS => Listxattrs(ListxattrsArgs) / ListxattrsRes,
    OP_REMOVEXATTR => Removexattr(RemovexattrArgs) / RemovexattrRes,
}

/// `COMPOUND4args`.
///
/// Decoding stops after an `Unknown` opcode (its body cannot be parsed), so `argarray` may be
/// shorter than the count on the wire; the server then answers OP_ILLEGAL for that last op.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compound4Args {
    pub tag: Utf8str,
    pub minorversion: u32,
    pub argarray: Vec<NfsArgop4>,
}

/// A COMPOUND whose operations decoded only in part: see [`Compound4Args::decode_partial`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialCompound4Args {
    pub tag: Utf8str,
    pub minorversion: u32,
    /// Operations decoded before the failure.
    pub argarray: Vec<NfsArgop4>,
    /// The opcode of the operation that failed to decode (if its opcode could be read) and the
    /// error; `None` if the whole COMPOUND decoded.
    pub error: Option<(Option<u32>, XdrError)>,
}

impl Compound4Args {
    /// Decode the header and as many operations as possible. Fails only when the header
    /// (tag, minorversion, op count) itself is bad, in which case the reply is NFS4ERR_BADXDR
    /// (or the RPC GARBAGE_ARGS) with no results. Otherwise the server executes `argarray`
    /// and answers NFS4ERR_BADXDR for the op named in `error`.
    pub fn decode_partial(r: &mut Reader<'_>) -> Result<PartialCompound4Args, XdrError> {
        let tag = <Opaque as crate::xdr::XdrBounded>::decode_max(r, MAX_NAME_BYTES)?;
        let minorversion = r.u32()?;
        let n = r.count(MAX_COMPOUND_OPS, 4)?;
        let mut argarray = Vec::with_capacity(n.min(64));
        let mut error = None;
        for _ in 0..n {
            let rest = r.rest();
            let opnum = rest
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match NfsArgop4::decode(r) {
                Ok(op) => {
                    let unknown = matches!(op, NfsArgop4::Unknown(_));
                    argarray.push(op);
                    if unknown {
                        break;
                    }
                }
                Err(e) => {
                    error = Some((opnum, e));
                    break;
                }
            }
        }
        Ok(PartialCompound4Args {
            tag,
            minorversion,
            argarray,
            error,
        })
    }
}

impl Xdr for Compound4Args {
    fn encode(&self, w: &mut Writer) {
        self.tag.encode(w);
        w.u32(self.minorversion);
        self.argarray.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let p = Self::decode_partial(r)?;
        if let Some((_, e)) = p.error {
            return Err(e);
        }
        Ok(Compound4Args {
            tag: p.tag,
            minorversion: p.minorversion,
            argarray: p.argarray,
        })
    }
}

/// `COMPOUND4res`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compound4Res {
    pub status: u32,
    pub tag: Utf8str,
    pub resarray: Vec<NfsResop4>,
}

impl Compound4Res {
    /// Encodes exactly like `Xdr::encode`, but moves the payloads of READ results into `w` as
    /// shared segments (`Writer::opaque_shared`) instead of copying them: on the server's read
    /// path that copy cost as much CPU as reading the data from the page cache.
    pub fn encode_shared(self, w: &mut Writer) {
        w.u32(self.status);
        self.tag.encode(w);
        w.u32(self.resarray.len() as u32);
        for op in self.resarray {
            match op {
                NfsResop4::Read(crate::nfs4::fileops::ReadRes::Ok(ok)) => {
                    w.u32(OP_READ);
                    w.u32(0);
                    ok.eof.encode(w);
                    w.opaque_shared(crate::bufpool::shared(ok.data.0));
                }
                op => op.encode(w),
            }
        }
    }
}

impl Xdr for Compound4Res {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.status);
        self.tag.encode(w);
        self.resarray.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let status = r.u32()?;
        let tag = <Opaque as crate::xdr::XdrBounded>::decode_max(r, MAX_NAME_BYTES)?;
        let n = r.count(MAX_COMPOUND_OPS, 4)?;
        let mut resarray = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let op = NfsResop4::decode(r)?;
            let unknown = matches!(op, NfsResop4::Unknown(_));
            resarray.push(op);
            if unknown {
                break;
            }
        }
        Ok(Compound4Res {
            status,
            tag,
            resarray,
        })
    }
}
