//! Client ID and session operations (RFC 8881 §18): EXCHANGE_ID, CREATE_SESSION, SEQUENCE,
//! DESTROY_SESSION, DESTROY_CLIENTID, BIND_CONN_TO_SESSION, BACKCHANNEL_CTL, SET_SSV,
//! RECLAIM_COMPLETE, and the NFSv4.0 SETCLIENTID, SETCLIENTID_CONFIRM, RENEW.
use super::basic::*;
use super::fileops::{res_union, StatusRes};
use crate::xdr::Opaque;
use crate::Xdr;

pub const EXCHGID4_FLAG_SUPP_MOVED_REFER: u32 = 0x0000_0001;
pub const EXCHGID4_FLAG_SUPP_MOVED_MIGR: u32 = 0x0000_0002;
pub const EXCHGID4_FLAG_SUPP_FENCE_OPS: u32 = 0x0000_0004;
pub const EXCHGID4_FLAG_BIND_PRINC_STATEID: u32 = 0x0000_0100;
pub const EXCHGID4_FLAG_USE_NON_PNFS: u32 = 0x0001_0000;
pub const EXCHGID4_FLAG_USE_PNFS_MDS: u32 = 0x0002_0000;
pub const EXCHGID4_FLAG_USE_PNFS_DS: u32 = 0x0004_0000;
pub const EXCHGID4_FLAG_MASK_PNFS: u32 = 0x0007_0000;
pub const EXCHGID4_FLAG_UPD_CONFIRMED_REC_A: u32 = 0x4000_0000;
pub const EXCHGID4_FLAG_CONFIRMED_R: u32 = 0x8000_0000;
/// Flags a client may send in `eia_flags`.
pub const EXCHGID4_FLAG_MASK_A: u32 = 0x4007_0103;
/// Flags a server may return in `eir_flags`.
pub const EXCHGID4_FLAG_MASK_R: u32 = 0x8007_0103;
/// Flags a 4.2 server may return (adds SUPP_FENCE_OPS).
pub const EXCHGID4_2_FLAG_MASK_R: u32 = 0x8007_0107;

pub const CREATE_SESSION4_FLAG_PERSIST: u32 = 0x0000_0001;
pub const CREATE_SESSION4_FLAG_CONN_BACK_CHAN: u32 = 0x0000_0002;
pub const CREATE_SESSION4_FLAG_CONN_RDMA: u32 = 0x0000_0004;

pub const SEQ4_STATUS_CB_PATH_DOWN: u32 = 0x0000_0001;
pub const SEQ4_STATUS_CB_GSS_CONTEXTS_EXPIRING: u32 = 0x0000_0002;
pub const SEQ4_STATUS_CB_GSS_CONTEXTS_EXPIRED: u32 = 0x0000_0004;
pub const SEQ4_STATUS_EXPIRED_ALL_STATE_REVOKED: u32 = 0x0000_0008;
pub const SEQ4_STATUS_EXPIRED_SOME_STATE_REVOKED: u32 = 0x0000_0010;
pub const SEQ4_STATUS_ADMIN_STATE_REVOKED: u32 = 0x0000_0020;
pub const SEQ4_STATUS_RECALLABLE_STATE_REVOKED: u32 = 0x0000_0040;
pub const SEQ4_STATUS_LEASE_MOVED: u32 = 0x0000_0080;
pub const SEQ4_STATUS_RESTART_RECLAIM_NEEDED: u32 = 0x0000_0100;
pub const SEQ4_STATUS_CB_PATH_DOWN_SESSION: u32 = 0x0000_0200;
pub const SEQ4_STATUS_BACKCHANNEL_FAULT: u32 = 0x0000_0400;
pub const SEQ4_STATUS_DEVID_CHANGED: u32 = 0x0000_0800;
pub const SEQ4_STATUS_DEVID_DELETED: u32 = 0x0000_1000;

/// `state_protect_ops4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct StateProtectOps4 {
    pub spo_must_enforce: Bitmap4,
    pub spo_must_allow: Bitmap4,
}

/// `ssv_sp_parms4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsvSpParms4 {
    pub ssp_ops: StateProtectOps4,
    #[xdr(max = 64)]
    pub ssp_hash_algs: Vec<SecOid4>,
    #[xdr(max = 64)]
    pub ssp_encr_algs: Vec<SecOid4>,
    pub ssp_window: u32,
    pub ssp_num_gss_handles: u32,
}

/// `state_protect_how4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum StateProtectHow4 {
    None = 0,
    MachCred = 1,
    Ssv = 2,
}

/// `state_protect4_a`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum StateProtect4A {
    #[xdr(case = 0)]
    None,
    #[xdr(case = 1)]
    MachCred(StateProtectOps4),
    #[xdr(case = 2)]
    Ssv(SsvSpParms4),
}

/// `EXCHANGE_ID4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ExchangeIdArgs {
    pub eia_clientowner: ClientOwner4,
    pub eia_flags: u32,
    pub eia_state_protect: StateProtect4A,
    #[xdr(max = 1)]
    pub eia_client_impl_id: Vec<NfsImplId4>,
}

/// `ssv_prot_info4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsvProtInfo4 {
    pub spi_ops: StateProtectOps4,
    pub spi_hash_alg: u32,
    pub spi_encr_alg: u32,
    pub spi_ssv_len: u32,
    pub spi_window: u32,
    #[xdr(max = 1024)]
    pub spi_handles: Vec<Opaque>,
}

/// `state_protect4_r`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum StateProtect4R {
    #[xdr(case = 0)]
    None,
    #[xdr(case = 1)]
    MachCred(StateProtectOps4),
    #[xdr(case = 2)]
    Ssv(SsvProtInfo4),
}

/// `EXCHANGE_ID4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct ExchangeIdResOk {
    pub eir_clientid: Clientid4,
    pub eir_sequenceid: Sequenceid4,
    pub eir_flags: u32,
    pub eir_state_protect: StateProtect4R,
    pub eir_server_owner: ServerOwner4,
    #[xdr(max = NFS4_OPAQUE_LIMIT)]
    pub eir_server_scope: Opaque,
    #[xdr(max = 1)]
    pub eir_server_impl_id: Vec<NfsImplId4>,
}
res_union!(
    /// `EXCHANGE_ID4res`.
    ExchangeIdRes,
    ExchangeIdResOk
);

/// `channel_attrs4`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Xdr)]
pub struct ChannelAttrs4 {
    pub ca_headerpadsize: Count4,
    pub ca_maxrequestsize: Count4,
    pub ca_maxresponsesize: Count4,
    pub ca_maxresponsesize_cached: Count4,
    pub ca_maxoperations: Count4,
    pub ca_maxrequests: Count4,
    #[xdr(max = 1)]
    pub ca_rdma_ird: Vec<u32>,
}

/// `gss_cb_handles4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct GssCbHandles4 {
    pub gcbp_service: RpcGssSvc,
    pub gcbp_handle_from_server: Opaque,
    pub gcbp_handle_from_client: Opaque,
}

/// `callback_sec_parms4`: `union switch (uint32_t cb_secflavor)`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum CallbackSecParms4 {
    #[xdr(case = AUTH_NONE)]
    AuthNone,
    #[xdr(case = AUTH_SYS)]
    AuthSys(AuthsysParms),
    #[xdr(case = RPCSEC_GSS)]
    RpcsecGss(GssCbHandles4),
}

/// `CREATE_SESSION4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CreateSessionArgs {
    pub csa_clientid: Clientid4,
    pub csa_sequence: Sequenceid4,
    pub csa_flags: u32,
    pub csa_fore_chan_attrs: ChannelAttrs4,
    pub csa_back_chan_attrs: ChannelAttrs4,
    pub csa_cb_program: u32,
    #[xdr(max = 64)]
    pub csa_sec_parms: Vec<CallbackSecParms4>,
}
/// `CREATE_SESSION4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct CreateSessionResOk {
    pub csr_sessionid: Sessionid4,
    pub csr_sequence: Sequenceid4,
    pub csr_flags: u32,
    pub csr_fore_chan_attrs: ChannelAttrs4,
    pub csr_back_chan_attrs: ChannelAttrs4,
}
res_union!(
    /// `CREATE_SESSION4res`.
    CreateSessionRes,
    CreateSessionResOk
);

/// `DESTROY_SESSION4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DestroySessionArgs {
    pub dsa_sessionid: Sessionid4,
}
pub type DestroySessionRes = StatusRes;

/// `DESTROY_CLIENTID4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct DestroyClientidArgs {
    pub dca_clientid: Clientid4,
}
pub type DestroyClientidRes = StatusRes;

/// `SEQUENCE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SequenceArgs {
    pub sa_sessionid: Sessionid4,
    pub sa_sequenceid: Sequenceid4,
    pub sa_slotid: Slotid4,
    pub sa_highest_slotid: Slotid4,
    pub sa_cachethis: bool,
}
/// `SEQUENCE4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SequenceResOk {
    pub sr_sessionid: Sessionid4,
    pub sr_sequenceid: Sequenceid4,
    pub sr_slotid: Slotid4,
    pub sr_highest_slotid: Slotid4,
    pub sr_target_highest_slotid: Slotid4,
    pub sr_status_flags: u32,
}
res_union!(
    /// `SEQUENCE4res`.
    SequenceRes,
    SequenceResOk
);

/// `channel_dir_from_client4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum ChannelDirFromClient4 {
    Fore = 1,
    Back = 2,
    ForeOrBoth = 3,
    BackOrBoth = 7,
}
/// `channel_dir_from_server4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub enum ChannelDirFromServer4 {
    Fore = 1,
    Back = 2,
    Both = 3,
}
/// `BIND_CONN_TO_SESSION4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct BindConnToSessionArgs {
    pub bctsa_sessid: Sessionid4,
    pub bctsa_dir: ChannelDirFromClient4,
    pub bctsa_use_conn_in_rdma_mode: bool,
}
/// `BIND_CONN_TO_SESSION4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct BindConnToSessionResOk {
    pub bctsr_sessid: Sessionid4,
    pub bctsr_dir: ChannelDirFromServer4,
    pub bctsr_use_conn_in_rdma_mode: bool,
}
res_union!(
    /// `BIND_CONN_TO_SESSION4res`.
    BindConnToSessionRes,
    BindConnToSessionResOk
);

/// `BACKCHANNEL_CTL4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct BackchannelCtlArgs {
    pub bca_cb_program: u32,
    #[xdr(max = 64)]
    pub bca_sec_parms: Vec<CallbackSecParms4>,
}
pub type BackchannelCtlRes = StatusRes;

/// `SET_SSV4args`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SetSsvArgs {
    pub ssa_ssv: Opaque,
    pub ssa_digest: Opaque,
}
/// `SET_SSV4resok`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SetSsvResOk {
    pub ssr_digest: Opaque,
}
res_union!(
    /// `SET_SSV4res`.
    SetSsvRes,
    SetSsvResOk
);

/// `RECLAIM_COMPLETE4args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct ReclaimCompleteArgs {
    pub rca_one_fs: bool,
}
pub type ReclaimCompleteRes = StatusRes;

/// `SETCLIENTID4args` (NFSv4.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SetclientidArgs {
    pub client: NfsClientId4,
    pub callback: CbClient4,
    pub callback_ident: u32,
}
/// `SETCLIENTID4resok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SetclientidResOk {
    pub clientid: Clientid4,
    pub setclientid_confirm: Verifier4,
}
/// `SETCLIENTID4res`: NFS4ERR_CLID_INUSE carries the client address in use.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub enum SetclientidRes {
    #[xdr(case = 0)]
    Ok(SetclientidResOk),
    #[xdr(case = Nfsstat4::ClidInuse)]
    ClidInuse(Clientaddr4),
    #[xdr(default)]
    Err(u32),
}
impl SetclientidRes {
    pub fn status(&self) -> u32 {
        match self {
            Self::Ok(_) => 0,
            Self::ClidInuse(_) => Nfsstat4::ClidInuse.code(),
            Self::Err(s) => *s,
        }
    }
}

/// `SETCLIENTID_CONFIRM4args` (NFSv4.0 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SetclientidConfirmArgs {
    pub clientid: Clientid4,
    pub setclientid_confirm: Verifier4,
}
pub type SetclientidConfirmRes = StatusRes;

/// `RENEW4args` (NFSv4.0 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct RenewArgs {
    pub clientid: Clientid4,
}
pub type RenewRes = StatusRes;

/// `ssa_digest_input4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Xdr)]
pub struct SsaDigestInput4 {
    pub sdi_seqargs: SequenceArgs,
}
/// `ssr_digest_input4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsrDigestInput4 {
    pub sdi_seqres: SequenceRes,
}
/// `ssv_mic_plain_tkn4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsvMicPlainTkn4 {
    pub smpt_ssv_seq: u32,
    pub smpt_orig_plain: Opaque,
}
/// `ssv_mic_tkn4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsvMicTkn4 {
    pub smt_ssv_seq: u32,
    pub smt_hmac: Opaque,
}
/// `ssv_seal_plain_tkn4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsvSealPlainTkn4 {
    pub sspt_confounder: Opaque,
    pub sspt_ssv_seq: u32,
    pub sspt_orig_plain: Opaque,
    pub sspt_pad: Opaque,
}
/// `ssv_seal_cipher_tkn4`.
#[derive(Debug, Clone, PartialEq, Eq, Xdr)]
pub struct SsvSealCipherTkn4 {
    pub ssct_ssv_seq: u32,
    pub ssct_iv: Opaque,
    pub ssct_encr_data: Opaque,
    pub ssct_hmac: Opaque,
}

impl crate::nfs4::fileops::OpResult for SetclientidRes {
    fn from_status(status: u32) -> Self {
        match status {
            0 => Self::Err(Nfsstat4::Serverfault.code()),
            s if s == Nfsstat4::ClidInuse.code() => Self::ClidInuse(Netaddr4::default()),
            s => Self::Err(s),
        }
    }
    fn status(&self) -> u32 {
        SetclientidRes::status(self)
    }
}
