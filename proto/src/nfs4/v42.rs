//! NFSv4.2 operations (RFC 7862): ALLOCATE, COPY, COPY_NOTIFY, DEALLOCATE, IO_ADVISE,
//! LAYOUTERROR, LAYOUTSTATS, OFFLOAD_CANCEL, OFFLOAD_STATUS, READ_PLUS, SEEK, WRITE_SAME,
//! CLONE; and the extended attribute operations of RFC 8276.
use super::basic::*;
use super::fileops::{res_union, StatusRes};
use super::pnfs::Layoutupdate4;
use crate::xdr::Opaque;
use crate::Xdr;

/// `netloc_type4`.
pub const NL4_NAME: u32 = 1;
pub const NL4_URL: u32 = 2;
pub const NL4_NETADDR: u32 = 3;

/// `netloc4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Netloc4 {
    #[xdr(case = NL4_NAME)]
    Name(#[xdr(max = MAX_NAME_BYTES)] Utf8str),
    #[xdr(case = NL4_URL)]
    Url(#[xdr(max = MAX_NAME_BYTES)] Utf8str),
    #[xdr(case = NL4_NETADDR)]
    Netaddr(Netaddr4),
}

/// `ALLOCATE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct AllocateArgs {
    pub aa_stateid: Stateid4,
    pub aa_offset: Offset4,
    pub aa_length: Length4,
}
pub type AllocateRes = StatusRes;

/// `DEALLOCATE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DeallocateArgs {
    pub da_stateid: Stateid4,
    pub da_offset: Offset4,
    pub da_length: Length4,
}
pub type DeallocateRes = StatusRes;

/// `write_response4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct WriteResponse4 {
    #[xdr(max = 1)]
    pub wr_callback_id: Vec<Stateid4>,
    pub wr_count: Length4,
    pub wr_committed: StableHow4,
    pub wr_writeverf: Verifier4,
}

/// `copy_requirements4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CopyRequirements4 {
    pub cr_consecutive: bool,
    pub cr_synchronous: bool,
}

/// `COPY4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CopyArgs {
    pub ca_src_stateid: Stateid4,
    pub ca_dst_stateid: Stateid4,
    pub ca_src_offset: Offset4,
    pub ca_dst_offset: Offset4,
    pub ca_count: Length4,
    pub ca_consecutive: bool,
    pub ca_synchronous: bool,
    #[xdr(max = 64)]
    pub ca_source_server: Vec<Netloc4>,
}
/// `COPY4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CopyResOk {
    pub cr_response: WriteResponse4,
    pub cr_requirements: CopyRequirements4,
}
/// `COPY4res`: NFS4ERR_OFFLOAD_NO_REQS carries the requirements the server could meet.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum CopyRes {
    #[xdr(case = 0)]
    Ok(CopyResOk),
    #[xdr(case = Nfsstat4::OffloadNoReqs)]
    NoReqs(CopyRequirements4),
    #[xdr(default)]
    Err(u32),
}
impl CopyRes {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok(_) => 0,
            Self::NoReqs(_) => Nfsstat4::OffloadNoReqs.code(),
            Self::Err(s) => *s,
        }
    }
}

/// `COPY_NOTIFY4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CopyNotifyArgs {
    pub cna_src_stateid: Stateid4,
    pub cna_destination_server: Netloc4,
}
/// `COPY_NOTIFY4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CopyNotifyResOk {
    pub cnr_lease_time: Nfstime4,
    pub cnr_stateid: Stateid4,
    #[xdr(max = 64)]
    pub cnr_source_server: Vec<Netloc4>,
}
res_union!(
    /// `COPY_NOTIFY4res`.
    CopyNotifyRes,
    CopyNotifyResOk
);

/// `OFFLOAD_CANCEL4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OffloadCancelArgs {
    pub oca_stateid: Stateid4,
}
pub type OffloadCancelRes = StatusRes;

/// `OFFLOAD_STATUS4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct OffloadStatusArgs {
    pub osa_stateid: Stateid4,
}
/// `OFFLOAD_STATUS4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct OffloadStatusResOk {
    pub osr_count: Length4,
    #[xdr(max = 1)]
    pub osr_complete: Vec<u32>,
}
res_union!(
    /// `OFFLOAD_STATUS4res`.
    OffloadStatusRes,
    OffloadStatusResOk
);

/// `IO_ADVISE_type4` bit numbers (used in the `iaa_hints` bitmap).
pub const IO_ADVISE4_NORMAL: u32 = 0;
pub const IO_ADVISE4_SEQUENTIAL: u32 = 1;
pub const IO_ADVISE4_SEQUENTIAL_BACKWARDS: u32 = 2;
pub const IO_ADVISE4_RANDOM: u32 = 3;
pub const IO_ADVISE4_WILLNEED: u32 = 4;
pub const IO_ADVISE4_WILLNEED_OPPORTUNISTIC: u32 = 5;
pub const IO_ADVISE4_DONTNEED: u32 = 6;
pub const IO_ADVISE4_NOREUSE: u32 = 7;
pub const IO_ADVISE4_READ: u32 = 8;
pub const IO_ADVISE4_WRITE: u32 = 9;
pub const IO_ADVISE4_INIT_PROXIMITY: u32 = 10;

/// `IO_ADVISE4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct IoAdviseArgs {
    pub iaa_stateid: Stateid4,
    pub iaa_offset: Offset4,
    pub iaa_count: Length4,
    pub iaa_hints: Bitmap4,
}
/// `IO_ADVISE4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct IoAdviseResOk {
    pub ior_hints: Bitmap4,
}
res_union!(
    /// `IO_ADVISE4res`.
    IoAdviseRes,
    IoAdviseResOk
);

/// `device_error4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DeviceError4 {
    pub de_deviceid: Deviceid4,
    pub de_status: u32,
    pub de_opnum: NfsOpnum4,
}

/// `LAYOUTERROR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayouterrorArgs {
    pub lea_offset: Offset4,
    pub lea_length: Length4,
    pub lea_stateid: Stateid4,
    #[xdr(max = 1024)]
    pub lea_errors: Vec<DeviceError4>,
}
pub type LayouterrorRes = StatusRes;

/// `io_info4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct IoInfo4 {
    pub ii_count: u64,
    pub ii_bytes: u64,
}

/// `LAYOUTSTATS4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutstatsArgs {
    pub lsa_offset: Offset4,
    pub lsa_length: Length4,
    pub lsa_stateid: Stateid4,
    pub lsa_read: IoInfo4,
    pub lsa_write: IoInfo4,
    pub lsa_deviceid: Deviceid4,
    /// Layout-type specific (for flexfiles: `ff_layoutupdate4`).
    pub lsa_layoutupdate: Layoutupdate4,
}
pub type LayoutstatsRes = StatusRes;

/// `data_content4`.
pub const NFS4_CONTENT_DATA: u32 = 0;
pub const NFS4_CONTENT_HOLE: u32 = 1;

/// `data4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Data4 {
    pub d_offset: Offset4,
    pub d_data: Opaque,
}
/// `data_info4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DataInfo4 {
    pub di_offset: Offset4,
    pub di_length: Length4,
}
/// `read_plus_content`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum ReadPlusContent {
    #[xdr(case = NFS4_CONTENT_DATA)]
    Data(Data4),
    #[xdr(case = NFS4_CONTENT_HOLE)]
    Hole(DataInfo4),
    #[xdr(default)]
    Other(u32),
}
/// `read_plus_res4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReadPlusResOk {
    pub rpr_eof: bool,
    pub rpr_contents: Vec<ReadPlusContent>,
}
/// `READ_PLUS4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct ReadPlusArgs {
    pub rpa_stateid: Stateid4,
    pub rpa_offset: Offset4,
    pub rpa_count: Count4,
}
res_union!(
    /// `READ_PLUS4res`.
    ReadPlusRes,
    ReadPlusResOk
);

/// `SEEK4args` (`sa_what` is a `data_content4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SeekArgs {
    pub sa_stateid: Stateid4,
    pub sa_offset: Offset4,
    pub sa_what: u32,
}
/// `seek_res4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SeekResOk {
    pub sr_eof: bool,
    pub sr_offset: Offset4,
}
res_union!(
    /// `SEEK4res`.
    SeekRes,
    SeekResOk
);

/// `app_data_block4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct AppDataBlock4 {
    pub adb_offset: Offset4,
    pub adb_block_size: Length4,
    pub adb_block_count: Length4,
    pub adb_reloff_blocknum: Length4,
    pub adb_block_num: Count4,
    pub adb_reloff_pattern: Length4,
    pub adb_pattern: Opaque,
}
/// `WRITE_SAME4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct WriteSameArgs {
    pub wsa_stateid: Stateid4,
    pub wsa_stable: StableHow4,
    pub wsa_adb: AppDataBlock4,
}
res_union!(
    /// `WRITE_SAME4res`.
    WriteSameRes,
    WriteResponse4
);

/// `CLONE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CloneArgs {
    pub cl_src_stateid: Stateid4,
    pub cl_dst_stateid: Stateid4,
    pub cl_src_offset: Offset4,
    pub cl_dst_offset: Offset4,
    pub cl_count: Length4,
}
pub type CloneRes = StatusRes;

// ---- Extended attributes (RFC 8276) ----

/// `xattrkey4`.
pub type Xattrkey4 = Component4;
/// `xattrvalue4`.
pub type Xattrvalue4 = Opaque;

/// `GETXATTR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetxattrArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub gxa_name: Xattrkey4,
}
/// `GETXATTR4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetxattrResOk {
    pub gxr_value: Xattrvalue4,
}
res_union!(
    /// `GETXATTR4res`.
    GetxattrRes,
    GetxattrResOk
);

/// `setxattr_option4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum SetxattrOption4 {
    Either = 0,
    Create = 1,
    Replace = 2,
}
/// `SETXATTR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SetxattrArgs {
    pub sxa_option: SetxattrOption4,
    #[xdr(max = MAX_NAME_BYTES)]
    pub sxa_key: Xattrkey4,
    pub sxa_value: Xattrvalue4,
}
/// `SETXATTR4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SetxattrResOk {
    pub sxr_info: ChangeInfo4,
}
res_union!(
    /// `SETXATTR4res`.
    SetxattrRes,
    SetxattrResOk
);

/// `LISTXATTRS4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct ListxattrsArgs {
    pub lxa_cookie: NfsCookie4,
    pub lxa_maxcount: Count4,
}
/// `LISTXATTRS4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ListxattrsResOk {
    pub lxr_cookie: NfsCookie4,
    pub lxr_names: Vec<Xattrkey4>,
    pub lxr_eof: bool,
}
res_union!(
    /// `LISTXATTRS4res`.
    ListxattrsRes,
    ListxattrsResOk
);

/// `REMOVEXATTR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct RemovexattrArgs {
    #[xdr(max = MAX_NAME_BYTES)]
    pub rxa_name: Xattrkey4,
}
/// `REMOVEXATTR4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct RemovexattrResOk {
    pub rxr_info: ChangeInfo4,
}
res_union!(
    /// `REMOVEXATTR4res`.
    RemovexattrRes,
    RemovexattrResOk
);

impl crate::nfs4::fileops::OpResult for CopyRes {
    fn from_status(status: u32) -> Self {
        match status {
            0 => Self::Err(Nfsstat4::Serverfault.code()),
            s if s == Nfsstat4::OffloadNoReqs.code() => Self::NoReqs(CopyRequirements4 {
                cr_consecutive: false,
                cr_synchronous: false,
            }),
            s => Self::Err(s),
        }
    }
    fn status(&self) -> u32 {
        CopyRes::status(self)
    }
}
