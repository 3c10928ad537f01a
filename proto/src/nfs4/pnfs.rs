//! pNFS (RFC 8881 §12, §13, §18.40-18.44): layout types, device addresses, GETDEVICEINFO,
//! GETDEVICELIST, LAYOUTGET, LAYOUTCOMMIT, LAYOUTRETURN, and the files layout types.
use super::basic::*;
use super::fileops::res_union;
use crate::xdr::Opaque;
use crate::Xdr;

/// `layouttype4` values.
pub const LAYOUT4_NFSV4_1_FILES: u32 = 0x1;
pub const LAYOUT4_OSD2_OBJECTS: u32 = 0x2;
pub const LAYOUT4_BLOCK_VOLUME: u32 = 0x3;
pub const LAYOUT4_FLEX_FILES: u32 = 0x4;
pub const LAYOUT4_SCSI: u32 = 0x5;

/// `NOTIFY_DEVICEID4_*` bits of `gdia_notify_types`.
pub const NOTIFY_DEVICEID4_CHANGE: u32 = 1;
pub const NOTIFY_DEVICEID4_DELETE: u32 = 2;

/// `layoutiomode4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Xdr)]
pub enum Layoutiomode4 {
    Read = 1,
    Rw = 2,
    Any = 3,
}
pub const LAYOUTIOMODE4_READ: u32 = 1;
pub const LAYOUTIOMODE4_RW: u32 = 2;
pub const LAYOUTIOMODE4_ANY: u32 = 3;

/// `layout_content4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutContent4 {
    pub loc_type: Layouttype4,
    pub loc_body: Opaque,
}

/// `layouthint4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Layouthint4 {
    pub loh_type: Layouttype4,
    pub loh_body: Opaque,
}

/// `layout4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Layout4 {
    pub lo_offset: Offset4,
    pub lo_length: Length4,
    pub lo_iomode: Layoutiomode4,
    pub lo_content: LayoutContent4,
}

/// `device_addr4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct DeviceAddr4 {
    pub da_layout_type: Layouttype4,
    pub da_addr_body: Opaque,
}

/// `layoutupdate4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Layoutupdate4 {
    pub lou_type: Layouttype4,
    pub lou_body: Opaque,
}

/// `layoutreturn_type4` values.
pub const LAYOUTRETURN4_FILE: u32 = 1;
pub const LAYOUTRETURN4_FSID: u32 = 2;
pub const LAYOUTRETURN4_ALL: u32 = 3;

/// `layoutreturn_file4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutreturnFile4 {
    pub lrf_offset: Offset4,
    pub lrf_length: Length4,
    pub lrf_stateid: Stateid4,
    /// Layout-type specific (for flexfiles: `ff_layoutreturn4`).
    pub lrf_body: Opaque,
}

/// `layoutreturn4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Layoutreturn4 {
    #[xdr(case = LAYOUTRETURN4_FILE)]
    File(LayoutreturnFile4),
    #[xdr(case = LAYOUTRETURN4_FSID)]
    Fsid,
    #[xdr(case = LAYOUTRETURN4_ALL)]
    All,
    #[xdr(default)]
    Other(u32),
}

/// `GETDEVICEINFO4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetdeviceinfoArgs {
    pub gdia_device_id: Deviceid4,
    pub gdia_layout_type: Layouttype4,
    pub gdia_maxcount: Count4,
    pub gdia_notify_types: Bitmap4,
}
/// `GETDEVICEINFO4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetdeviceinfoResOk {
    pub gdir_device_addr: DeviceAddr4,
    pub gdir_notification: Bitmap4,
}
/// `GETDEVICEINFO4res`: NFS4ERR_TOOSMALL carries the size needed.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum GetdeviceinfoRes {
    #[xdr(case = 0)]
    Ok(GetdeviceinfoResOk),
    #[xdr(case = Nfsstat4::Toosmall)]
    TooSmall(Count4),
    #[xdr(default)]
    Err(u32),
}
impl GetdeviceinfoRes {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok(_) => 0,
            Self::TooSmall(_) => Nfsstat4::Toosmall.code(),
            Self::Err(s) => *s,
        }
    }
}

/// `GETDEVICELIST4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetdevicelistArgs {
    pub gdla_layout_type: Layouttype4,
    pub gdla_maxdevices: Count4,
    pub gdla_cookie: NfsCookie4,
    pub gdla_cookieverf: Verifier4,
}
/// `GETDEVICELIST4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GetdevicelistResOk {
    pub gdlr_cookie: NfsCookie4,
    pub gdlr_cookieverf: Verifier4,
    pub gdlr_deviceid_list: Vec<Deviceid4>,
    pub gdlr_eof: bool,
}
res_union!(
    /// `GETDEVICELIST4res`.
    GetdevicelistRes,
    GetdevicelistResOk
);

/// `newtime4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum Newtime4 {
    #[xdr(case = 1)]
    Changed(Nfstime4),
    #[xdr(case = 0)]
    Unchanged,
}
/// `newoffset4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum Newoffset4 {
    #[xdr(case = 1)]
    Offset(Offset4),
    #[xdr(case = 0)]
    None,
}
/// `newsize4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum Newsize4 {
    #[xdr(case = 1)]
    Size(Length4),
    #[xdr(case = 0)]
    Unchanged,
}

/// `LAYOUTCOMMIT4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutcommitArgs {
    pub loca_offset: Offset4,
    pub loca_length: Length4,
    pub loca_reclaim: bool,
    pub loca_stateid: Stateid4,
    pub loca_last_write_offset: Newoffset4,
    pub loca_time_modify: Newtime4,
    pub loca_layoutupdate: Layoutupdate4,
}
/// `LAYOUTCOMMIT4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct LayoutcommitResOk {
    pub locr_newsize: Newsize4,
}
res_union!(
    /// `LAYOUTCOMMIT4res`.
    LayoutcommitRes,
    LayoutcommitResOk
);

/// `LAYOUTGET4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutgetArgs {
    pub loga_signal_layout_avail: bool,
    pub loga_layout_type: Layouttype4,
    pub loga_iomode: Layoutiomode4,
    pub loga_offset: Offset4,
    pub loga_length: Length4,
    pub loga_minlength: Length4,
    pub loga_stateid: Stateid4,
    pub loga_maxcount: Count4,
}
/// `LAYOUTGET4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutgetResOk {
    pub logr_return_on_close: bool,
    pub logr_stateid: Stateid4,
    #[xdr(max = 1024)]
    pub logr_layout: Vec<Layout4>,
}
/// `LAYOUTGET4res`: NFS4ERR_LAYOUTTRYLATER carries `logr_will_signal_layout_avail`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum LayoutgetRes {
    #[xdr(case = 0)]
    Ok(LayoutgetResOk),
    #[xdr(case = Nfsstat4::Layouttrylater)]
    TryLater(bool),
    #[xdr(default)]
    Err(u32),
}
impl LayoutgetRes {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok(_) => 0,
            Self::TryLater(_) => Nfsstat4::Layouttrylater.code(),
            Self::Err(s) => *s,
        }
    }
}

/// `LAYOUTRETURN4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutreturnArgs {
    pub lora_reclaim: bool,
    pub lora_layout_type: Layouttype4,
    pub lora_iomode: Layoutiomode4,
    pub lora_layoutreturn: Layoutreturn4,
}
/// `layoutreturn_stateid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum LayoutreturnStateid {
    #[xdr(case = 1)]
    Present(Stateid4),
    #[xdr(case = 0)]
    Absent,
}
res_union!(
    /// `LAYOUTRETURN4res`.
    LayoutreturnRes,
    LayoutreturnStateid
);

// ---- Files layout (RFC 8881 §13) ----

/// `nfl_util4` bits.
pub const NFL4_UFLG_MASK: u32 = 0x0000_003F;
pub const NFL4_UFLG_DENSE: u32 = 0x0000_0001;
pub const NFL4_UFLG_COMMIT_THRU_MDS: u32 = 0x0000_0002;
pub const NFL4_UFLG_STRIPE_UNIT_SIZE_MASK: u32 = 0xFFFF_FFC0;

/// `filelayout_hint_care4` bits.
pub const NFLH4_CARE_DENSE: u32 = 0x0000_0001;
pub const NFLH4_CARE_COMMIT_THRU_MDS: u32 = 0x0000_0002;
pub const NFLH4_CARE_STRIPE_UNIT_SIZE: u32 = 0x0000_0040;
pub const NFLH4_CARE_STRIPE_COUNT: u32 = 0x0000_0080;

/// `nfsv4_1_file_layouthint4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct Nfsv41FileLayouthint4 {
    pub nflh_care: u32,
    pub nflh_util: u32,
    pub nflh_stripe_count: Count4,
}

/// `multipath_list4`.
pub type MultipathList4 = Vec<Netaddr4>;

/// `nfsv4_1_file_layout_ds_addr4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nfsv41FileLayoutDsAddr4 {
    pub nflda_stripe_indices: Vec<u32>,
    pub nflda_multipath_ds_list: Vec<MultipathList4>,
}

/// `nfsv4_1_file_layout4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Nfsv41FileLayout4 {
    pub nfl_deviceid: Deviceid4,
    pub nfl_util: u32,
    pub nfl_first_stripe_index: u32,
    pub nfl_pattern_offset: Offset4,
    pub nfl_fh_list: Vec<NfsFh4>,
}

impl crate::nfs4::fileops::OpResult for GetdeviceinfoRes {
    fn from_status(status: u32) -> Self {
        match status {
            0 => Self::Err(Nfsstat4::Serverfault.code()),
            s if s == Nfsstat4::Toosmall.code() => Self::TooSmall(0),
            s => Self::Err(s),
        }
    }
    fn status(&self) -> u32 {
        GetdeviceinfoRes::status(self)
    }
}

impl crate::nfs4::fileops::OpResult for LayoutgetRes {
    fn from_status(status: u32) -> Self {
        match status {
            0 => Self::Err(Nfsstat4::Serverfault.code()),
            s if s == Nfsstat4::Layouttrylater.code() => Self::TryLater(false),
            s => Self::Err(s),
        }
    }
    fn status(&self) -> u32 {
        LayoutgetRes::status(self)
    }
}
