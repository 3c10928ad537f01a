//! Flexible File layout (RFC 8435): the layout-type specific bodies carried in
//! `layout_content4.loc_body` (`ff_layout4`), `device_addr4.da_addr_body` (`ff_device_addr4`),
//! `layoutreturn_file4.lrf_body` (`ff_layoutreturn4`), `layouthint4.loh_body`
//! (`ff_layouthint4`) and `LAYOUTSTATS4args.lsa_layoutupdate` (`ff_layoutupdate4`).
use super::basic::*;
use super::v42::{DeviceError4, IoInfo4};
use crate::Xdr;

/// `ffdv_tightly_coupled` etc. live in [`FfDeviceVersions4`]; `ff_flags4` bits:
pub const FF_FLAGS_NO_LAYOUTCOMMIT: u32 = 0x0000_0001;
pub const FF_FLAGS_NO_IO_THRU_MDS: u32 = 0x0000_0002;
pub const FF_FLAGS_NO_READ_IO: u32 = 0x0000_0004;
pub const FF_FLAGS_WRITE_ONE_MIRROR: u32 = 0x0000_0008;
/// `ff_flags4`.
pub type FfFlags4 = u32;

/// `ff_cb_recall_any_mask` (CB_RECALL_ANY type bits for flexfiles layouts).
pub const PNFS_FF_RCA4_TYPE_MASK_READ: u32 = 16;
pub const PNFS_FF_RCA4_TYPE_MASK_RW: u32 = 17;

/// `ff_device_versions4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct FfDeviceVersions4 {
    pub ffdv_version: u32,
    pub ffdv_minorversion: u32,
    pub ffdv_rsize: u32,
    pub ffdv_wsize: u32,
    pub ffdv_tightly_coupled: bool,
}

/// `ff_device_addr4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfDeviceAddr4 {
    /// `multipath_list4 ffda_netaddrs`.
    #[xdr(max = 256)]
    pub ffda_netaddrs: Vec<Netaddr4>,
    #[xdr(max = 256)]
    pub ffda_versions: Vec<FfDeviceVersions4>,
}

/// `ff_data_server4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfDataServer4 {
    pub ffds_deviceid: Deviceid4,
    pub ffds_efficiency: u32,
    pub ffds_stateid: Stateid4,
    #[xdr(max = 256)]
    pub ffds_fh_vers: Vec<NfsFh4>,
    /// `fattr4_owner ffds_user`.
    #[xdr(max = MAX_NAME_BYTES)]
    pub ffds_user: Utf8str,
    /// `fattr4_owner_group ffds_group`.
    #[xdr(max = MAX_NAME_BYTES)]
    pub ffds_group: Utf8str,
}

/// `ff_mirror4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfMirror4 {
    #[xdr(max = 1024)]
    pub ffm_data_servers: Vec<FfDataServer4>,
}

/// `ff_layout4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfLayout4 {
    pub ffl_stripe_unit: Length4,
    #[xdr(max = 1024)]
    pub ffl_mirrors: Vec<FfMirror4>,
    pub ffl_flags: FfFlags4,
    pub ffl_stats_collect_hint: u32,
}

/// `ff_ioerr4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfIoerr4 {
    pub ffie_offset: Offset4,
    pub ffie_length: Length4,
    pub ffie_stateid: Stateid4,
    #[xdr(max = 1024)]
    pub ffie_errors: Vec<DeviceError4>,
}

/// `ff_io_latency4`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Xdr)]
pub struct FfIoLatency4 {
    pub ffil_ops_requested: u64,
    pub ffil_bytes_requested: u64,
    pub ffil_ops_completed: u64,
    pub ffil_bytes_completed: u64,
    pub ffil_bytes_not_delivered: u64,
    pub ffil_total_busy_time: Nfstime4,
    pub ffil_aggregate_completion_time: Nfstime4,
}

/// `ff_layoutupdate4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfLayoutupdate4 {
    pub ffl_addr: Netaddr4,
    pub ffl_fhandle: NfsFh4,
    pub ffl_read: FfIoLatency4,
    pub ffl_write: FfIoLatency4,
    pub ffl_duration: Nfstime4,
    pub ffl_local: bool,
}

/// `ff_iostats4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct FfIostats4 {
    pub ffis_offset: Offset4,
    pub ffis_length: Length4,
    pub ffis_stateid: Stateid4,
    pub ffis_read: IoInfo4,
    pub ffis_write: IoInfo4,
    pub ffis_deviceid: Deviceid4,
    pub ffis_layoutupdate: FfLayoutupdate4,
}

/// `ff_layoutreturn4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct FfLayoutreturn4 {
    #[xdr(max = 1024)]
    pub fflr_ioerr_report: Vec<FfIoerr4>,
    #[xdr(max = 1024)]
    pub fflr_iostats_report: Vec<FfIostats4>,
}

/// `ff_mirrors_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum FfMirrorsHint {
    #[xdr(case = 1)]
    Valid(u32),
    #[xdr(case = 0)]
    Invalid,
}

/// `ff_layouthint4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct FfLayouthint4 {
    pub fflh_mirrors_hint: FfMirrorsHint,
}
