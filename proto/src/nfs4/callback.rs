//! The NFSv4.1 backchannel (RFC 8881 §20, RFC 7862 §16): program `NFS4_CALLBACK`
//! (0x40000000), procedure `CB_COMPOUND`, `nfs_cb_argop4` / `nfs_cb_resop4`.
use super::basic::*;
use super::fileops::{res_union, OpResult, StatusRes};
use super::state::OpenDelegation4;
use super::v42::WriteResponse4;
use crate::xdr::{Opaque, Reader, Writer, Xdr, XdrError};
use crate::Xdr;

pub const OP_CB_GETATTR: u32 = 3;
pub const OP_CB_RECALL: u32 = 4;
pub const OP_CB_LAYOUTRECALL: u32 = 5;
pub const OP_CB_NOTIFY: u32 = 6;
pub const OP_CB_PUSH_DELEG: u32 = 7;
pub const OP_CB_RECALL_ANY: u32 = 8;
pub const OP_CB_RECALLABLE_OBJ_AVAIL: u32 = 9;
pub const OP_CB_RECALL_SLOT: u32 = 10;
pub const OP_CB_SEQUENCE: u32 = 11;
pub const OP_CB_WANTS_CANCELLED: u32 = 12;
pub const OP_CB_NOTIFY_LOCK: u32 = 13;
pub const OP_CB_NOTIFY_DEVICEID: u32 = 14;
pub const OP_CB_OFFLOAD: u32 = 15;
pub const OP_CB_ILLEGAL: u32 = 10044;

/// `CB_GETATTR4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbGetattrArgs {
    pub fh: NfsFh4,
    pub attr_request: Bitmap4,
}
/// `CB_GETATTR4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbGetattrResOk {
    pub obj_attributes: Fattr4,
}
res_union!(
    /// `CB_GETATTR4res`.
    CbGetattrRes,
    CbGetattrResOk
);

/// `CB_RECALL4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbRecallArgs {
    pub stateid: Stateid4,
    pub truncate: bool,
    pub fh: NfsFh4,
}

/// `layoutrecall_type4`.
pub const LAYOUTRECALL4_FILE: u32 = 1;
pub const LAYOUTRECALL4_FSID: u32 = 2;
pub const LAYOUTRECALL4_ALL: u32 = 3;

/// `layoutrecall_file4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct LayoutrecallFile4 {
    pub lor_fh: NfsFh4,
    pub lor_offset: Offset4,
    pub lor_length: Length4,
    pub lor_stateid: Stateid4,
}
/// `layoutrecall4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum Layoutrecall4 {
    #[xdr(case = LAYOUTRECALL4_FILE)]
    File(LayoutrecallFile4),
    #[xdr(case = LAYOUTRECALL4_FSID)]
    Fsid(Fsid4),
    #[xdr(case = LAYOUTRECALL4_ALL)]
    All,
}
/// `CB_LAYOUTRECALL4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbLayoutrecallArgs {
    pub clora_type: Layouttype4,
    pub clora_iomode: super::pnfs::Layoutiomode4,
    pub clora_changed: bool,
    pub clora_recall: Layoutrecall4,
}

/// `notify_type4` bit numbers.
pub const NOTIFY4_CHANGE_CHILD_ATTRS: u32 = 0;
pub const NOTIFY4_CHANGE_DIR_ATTRS: u32 = 1;
pub const NOTIFY4_REMOVE_ENTRY: u32 = 2;
pub const NOTIFY4_ADD_ENTRY: u32 = 3;
pub const NOTIFY4_RENAME_ENTRY: u32 = 4;
pub const NOTIFY4_CHANGE_COOKIE_VERIFIER: u32 = 5;

/// `notify4`: `notify_vals` (`notifylist4`) is kept opaque; its content depends on the mask.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct Notify4 {
    pub notify_mask: Bitmap4,
    pub notify_vals: Opaque,
}
/// `notify_entry4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct NotifyEntry4 {
    #[xdr(max = MAX_NAME_BYTES)]
    pub ne_file: Component4,
    pub ne_attrs: Fattr4,
}
/// `prev_entry4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct PrevEntry4 {
    pub pe_prev_entry: NotifyEntry4,
    pub pe_prev_entry_cookie: NfsCookie4,
}
/// `notify_remove4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct NotifyRemove4 {
    pub nrm_old_entry: NotifyEntry4,
    pub nrm_old_entry_cookie: NfsCookie4,
}
/// `notify_add4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct NotifyAdd4 {
    #[xdr(max = 1)]
    pub nad_old_entry: Vec<NotifyRemove4>,
    pub nad_new_entry: NotifyEntry4,
    #[xdr(max = 1)]
    pub nad_new_entry_cookie: Vec<NfsCookie4>,
    #[xdr(max = 1)]
    pub nad_prev_entry: Vec<PrevEntry4>,
    pub nad_last_entry: bool,
}
/// `notify_attr4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct NotifyAttr4 {
    pub na_changed_entry: NotifyEntry4,
}
/// `notify_rename4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct NotifyRename4 {
    pub nrn_old_entry: NotifyRemove4,
    pub nrn_new_entry: NotifyAdd4,
}
/// `notify_verifier4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct NotifyVerifier4 {
    pub nv_old_cookieverf: Verifier4,
    pub nv_new_cookieverf: Verifier4,
}
/// `notifylist4`.
pub type Notifylist4 = Opaque;

/// `CB_NOTIFY4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbNotifyArgs {
    pub cna_stateid: Stateid4,
    pub cna_fh: NfsFh4,
    pub cna_changes: Vec<Notify4>,
}

/// `CB_PUSH_DELEG4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbPushDelegArgs {
    pub cpda_fh: NfsFh4,
    pub cpda_delegation: OpenDelegation4,
}

/// `RCA4_TYPE_MASK_*` bit numbers of `craa_type_mask`.
pub const RCA4_TYPE_MASK_RDATA_DLG: u32 = 0;
pub const RCA4_TYPE_MASK_WDATA_DLG: u32 = 1;
pub const RCA4_TYPE_MASK_DIR_DLG: u32 = 2;
pub const RCA4_TYPE_MASK_FILE_LAYOUT: u32 = 3;
pub const RCA4_TYPE_MASK_BLK_LAYOUT: u32 = 4;
pub const RCA4_TYPE_MASK_OBJ_LAYOUT_MIN: u32 = 8;
pub const RCA4_TYPE_MASK_OBJ_LAYOUT_MAX: u32 = 9;
pub const RCA4_TYPE_MASK_OTHER_LAYOUT_MIN: u32 = 12;
pub const RCA4_TYPE_MASK_OTHER_LAYOUT_MAX: u32 = 15;

/// `CB_RECALL_ANY4args` (also `CB_RECALLABLE_OBJ_AVAIL4args`).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbRecallAnyArgs {
    pub craa_objects_to_keep: u32,
    pub craa_type_mask: Bitmap4,
}
/// `CB_RECALLABLE_OBJ_AVAIL4args`.
pub type CbRecallableObjAvailArgs = CbRecallAnyArgs;

/// `CB_RECALL_SLOT4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CbRecallSlotArgs {
    pub rsa_target_highest_slotid: Slotid4,
}

/// `referring_call4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct ReferringCall4 {
    pub rc_sequenceid: Sequenceid4,
    pub rc_slotid: Slotid4,
}
/// `referring_call_list4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ReferringCallList4 {
    pub rcl_sessionid: Sessionid4,
    pub rcl_referring_calls: Vec<ReferringCall4>,
}
/// `CB_SEQUENCE4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbSequenceArgs {
    pub csa_sessionid: Sessionid4,
    pub csa_sequenceid: Sequenceid4,
    pub csa_slotid: Slotid4,
    pub csa_highest_slotid: Slotid4,
    pub csa_cachethis: bool,
    pub csa_referring_call_lists: Vec<ReferringCallList4>,
}
/// `CB_SEQUENCE4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CbSequenceResOk {
    pub csr_sessionid: Sessionid4,
    pub csr_sequenceid: Sequenceid4,
    pub csr_slotid: Slotid4,
    pub csr_highest_slotid: Slotid4,
    pub csr_target_highest_slotid: Slotid4,
}
res_union!(
    /// `CB_SEQUENCE4res`.
    CbSequenceRes,
    CbSequenceResOk
);

/// `CB_WANTS_CANCELLED4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct CbWantsCancelledArgs {
    pub cwca_contended_wants_cancelled: bool,
    pub cwca_resourced_wants_cancelled: bool,
}

/// `CB_NOTIFY_LOCK4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbNotifyLockArgs {
    pub cnla_fh: NfsFh4,
    pub cnla_lock_owner: LockOwner4,
}

/// `notify_deviceid_type4` bit numbers (`notify_mask` of CB_NOTIFY_DEVICEID entries).
pub const NOTIFY_DEVICEID4_CHANGE_BIT: u32 = 1;
pub const NOTIFY_DEVICEID4_DELETE_BIT: u32 = 2;

/// `notify_deviceid_delete4` (encoded into `Notify4::notify_vals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct NotifyDeviceidDelete4 {
    pub ndd_layouttype: Layouttype4,
    pub ndd_deviceid: Deviceid4,
}
/// `notify_deviceid_change4` (encoded into `Notify4::notify_vals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct NotifyDeviceidChange4 {
    pub ndc_layouttype: Layouttype4,
    pub ndc_deviceid: Deviceid4,
    pub ndc_immediate: bool,
}
/// `CB_NOTIFY_DEVICEID4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbNotifyDeviceidArgs {
    pub cnda_changes: Vec<Notify4>,
}

/// `offload_info4`: on error, the bytes copied before it.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum OffloadInfo4 {
    #[xdr(case = 0)]
    Ok(WriteResponse4),
    #[xdr(default)]
    Err(u32, u64),
}
/// `CB_OFFLOAD4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CbOffloadArgs {
    pub coa_fh: NfsFh4,
    pub coa_stateid: Stateid4,
    pub coa_offload_info: OffloadInfo4,
}

pub type CbRecallRes = StatusRes;
pub type CbLayoutrecallRes = StatusRes;
pub type CbNotifyRes = StatusRes;
pub type CbPushDelegRes = StatusRes;
pub type CbRecallAnyRes = StatusRes;
pub type CbRecallableObjAvailRes = StatusRes;
pub type CbRecallSlotRes = StatusRes;
pub type CbWantsCancelledRes = StatusRes;
pub type CbNotifyLockRes = StatusRes;
pub type CbNotifyDeviceidRes = StatusRes;
pub type CbOffloadRes = StatusRes;
pub type CbIllegalRes = StatusRes;

macro_rules! cb_ops {
    ($( $num:ident => $name:ident ( $args:ty ) / $res:ty ),* $(,)?) => {
        /// `nfs_cb_argop4`.
        #[derive(Debug, Clone, PartialEq, Eq, crate::Xdr)]
        pub enum NfsCbArgop4 {
            $( #[xdr(case = $num)] $name($args), )*
            #[xdr(case = OP_CB_ILLEGAL)]
            Illegal,
            #[xdr(default)]
            Unknown(u32),
        }
        /// `nfs_cb_resop4`.
        #[derive(Debug, Clone, PartialEq, Eq, crate::Xdr)]
        pub enum NfsCbResop4 {
            $( #[xdr(case = $num)] $name($res), )*
            #[xdr(case = OP_CB_ILLEGAL)]
            Illegal(CbIllegalRes),
            #[xdr(default)]
            Unknown(u32),
        }
        impl NfsCbArgop4 {
            pub fn opnum(&self) -> u32 {
                match self {
                    $( Self::$name(_) => $num, )*
                    Self::Illegal => OP_CB_ILLEGAL,
                    Self::Unknown(n) => *n,
                }
            }
        }
        impl NfsCbResop4 {
            pub fn opnum(&self) -> u32 {
                match self {
                    $( Self::$name(_) => $num, )*
                    Self::Illegal(_) => OP_CB_ILLEGAL,
                    Self::Unknown(n) => *n,
                }
            }
            /// The error result of callback operation `opnum` with `status`.
            pub fn from_status(opnum: u32, status: u32) -> Self {
                match opnum {
                    $( $num => Self::$name(<$res as OpResult>::from_status(status)), )*
                    _ => Self::Illegal(StatusRes::err(Nfsstat4::OpIllegal)),
                }
            }
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

cb_ops! {
    OP_CB_GETATTR => Getattr(CbGetattrArgs) / CbGetattrRes,
    OP_CB_RECALL => Recall(CbRecallArgs) / CbRecallRes,
    OP_CB_LAYOUTRECALL => Layoutrecall(CbLayoutrecallArgs) / CbLayoutrecallRes,
    OP_CB_NOTIFY => Notify(CbNotifyArgs) / CbNotifyRes,
    OP_CB_PUSH_DELEG => PushDeleg(CbPushDelegArgs) / CbPushDelegRes,
    OP_CB_RECALL_ANY => RecallAny(CbRecallAnyArgs) / CbRecallAnyRes,
    OP_CB_RECALLABLE_OBJ_AVAIL => RecallableObjAvail(CbRecallableObjAvailArgs) / CbRecallableObjAvailRes,
    OP_CB_RECALL_SLOT => RecallSlot(CbRecallSlotArgs) / CbRecallSlotRes,
    OP_CB_SEQUENCE => Sequence(CbSequenceArgs) / CbSequenceRes,
    OP_CB_WANTS_CANCELLED => WantsCancelled(CbWantsCancelledArgs) / CbWantsCancelledRes,
    OP_CB_NOTIFY_LOCK => NotifyLock(CbNotifyLockArgs) / CbNotifyLockRes,
    OP_CB_NOTIFY_DEVICEID => NotifyDeviceid(CbNotifyDeviceidArgs) / CbNotifyDeviceidRes,
    OP_CB_OFFLOAD => Offload(CbOffloadArgs) / CbOffloadRes,
}

/// `CB_COMPOUND4args`. Decoding stops after an `Unknown` op, as for [`super::Compound4Args`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CbCompound4Args {
    pub tag: Utf8str,
    pub minorversion: u32,
    pub callback_ident: u32,
    pub argarray: Vec<NfsCbArgop4>,
}

impl Xdr for CbCompound4Args {
    fn encode(&self, w: &mut Writer) {
        self.tag.encode(w);
        w.u32(self.minorversion);
        w.u32(self.callback_ident);
        self.argarray.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, XdrError> {
        let tag = <Opaque as crate::xdr::XdrBounded>::decode_max(r, MAX_NAME_BYTES)?;
        let minorversion = r.u32()?;
        let callback_ident = r.u32()?;
        let n = r.count(MAX_COMPOUND_OPS, 4)?;
        let mut argarray = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let op = NfsCbArgop4::decode(r)?;
            let unknown = matches!(op, NfsCbArgop4::Unknown(_));
            argarray.push(op);
            if unknown {
                break;
            }
        }
        Ok(Self {
            tag,
            minorversion,
            callback_ident,
            argarray,
        })
    }
}

/// `CB_COMPOUND4res`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CbCompound4Res {
    pub status: u32,
    pub tag: Utf8str,
    pub resarray: Vec<NfsCbResop4>,
}

impl Xdr for CbCompound4Res {
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
            let op = NfsCbResop4::decode(r)?;
            let unknown = matches!(op, NfsCbResop4::Unknown(_));
            resarray.push(op);
            if unknown {
                break;
            }
        }
        Ok(Self {
            status,
            tag,
            resarray,
        })
    }
}
