//! Client ID and session operations: EXCHANGE_ID, CREATE_SESSION, SEQUENCE, DESTROY_SESSION,
//! DESTROY_CLIENTID, BIND_CONN_TO_SESSION, BACKCHANNEL_CTL, RECLAIM_COMPLETE.
use crate::error::{NfsError, NfsResult};
use crate::limits::{MAX_MSG, MAX_RESPONSE_CACHED, REPLY_HEAD, REPLY_PER_OP};
use crate::nfs::ctx::Ctx;
use crate::state::{ChannelAttrs, InSlot, SequenceQuery, Session, SessionId, Slot, SlotUse};
use proto::nfs4::basic::{NfsImplId4, Nfstime4, ServerOwner4};
use proto::nfs4::compound::NfsArgop4;
use proto::nfs4::session::*;
use proto::xdr::{Opaque, Xdr};
use std::sync::Arc;

fn server_owner(ctx: &Ctx<'_>) -> (ServerOwner4, Opaque) {
    // Stable across restarts: the client recognises the same server coming back.
    let major = format!("cfs-{:016x}", ctx.mds.handles.fs_id).into_bytes();
    (
        ServerOwner4 {
            so_minor_id: 0,
            so_major_id: Opaque(major.clone()),
        },
        Opaque(major),
    )
}

pub fn exchange_id(ctx: &mut Ctx<'_>, a: &ExchangeIdArgs) -> ExchangeIdRes {
    match exchange_id_inner(ctx, a) {
        Ok(r) => ExchangeIdRes::Ok(r),
        Err(e) => ExchangeIdRes::error(e.code()),
    }
}

fn exchange_id_inner(ctx: &mut Ctx<'_>, a: &ExchangeIdArgs) -> NfsResult<ExchangeIdResOk> {
    if a.eia_flags & !EXCHGID4_FLAG_MASK_A != 0 {
        return Err(NfsError::Inval);
    }
    let protect = match &a.eia_state_protect {
        StateProtect4A::None => StateProtect4R::None,
        // Nothing is enforced beyond what AUTH_SYS gives; say so with empty op sets.
        StateProtect4A::MachCred(_) => StateProtect4R::MachCred(StateProtectOps4::default()),
        StateProtect4A::Ssv(_) => return Err(NfsError::EncrAlgUnsupp),
    };
    let owner = a.eia_clientowner.co_ownerid.as_bytes();
    if owner.is_empty() || owner.len() > 1024 {
        return Err(NfsError::Inval);
    }
    let (clientid, seq, confirmed) = ctx.mds.nfs.state.exchange_id(
        owner,
        a.eia_clientowner.co_verifier,
        ctx.user.uid,
        a.eia_flags & EXCHGID4_FLAG_UPD_CONFIRMED_REC_A != 0,
    )?;
    ctx.mds.nfs.state.set_stripes(
        clientid,
        super::pnfs::reads_striped_layouts(&a.eia_client_impl_id),
    );
    let mut flags = match ctx.mds.cluster() {
        Some(_) => EXCHGID4_FLAG_USE_PNFS_MDS,
        None => EXCHGID4_FLAG_USE_NON_PNFS,
    };
    if confirmed {
        flags |= EXCHGID4_FLAG_CONFIRMED_R;
    }
    let (so, scope) = server_owner(ctx);
    Ok(ExchangeIdResOk {
        eir_clientid: clientid,
        eir_sequenceid: seq,
        eir_flags: flags,
        eir_state_protect: protect,
        eir_server_owner: so,
        eir_server_scope: scope,
        eir_server_impl_id: vec![NfsImplId4 {
            nii_domain: Opaque::from("claudefs"),
            nii_name: Opaque::from(concat!("cfs ", env!("CARGO_PKG_VERSION"))),
            nii_date: Nfstime4 {
                seconds: 0,
                nseconds: 0,
            },
        }],
    })
}

/// The CREATE_SESSION flags RFC 8881 defines (§18.36); any other bit gets NFS4ERR_INVAL.
const CREATE_SESSION4_FLAG_MASK: u32 = CREATE_SESSION4_FLAG_PERSIST
    | CREATE_SESSION4_FLAG_CONN_BACK_CHAN
    | CREATE_SESSION4_FLAG_CONN_RDMA;

/// The largest CB_RECALL this server sends: RPC call header (24) with an AUTH_SYS credential
/// of at most 400 bytes plus its 8 bytes of framing and an empty verifier (8), CB_COMPOUND
/// header (16), CB_SEQUENCE (40), CB_RECALL with a 128-byte handle (156). A back channel
/// that cannot carry it is refused with NFS4ERR_TOOSMALL, as knfsd's check_backchannel_attrs
/// does with its own (slightly larger) estimate.
pub const CB_RECALL_MAX_REQUEST: u32 = 24 + 408 + 8 + 16 + 40 + 156;
/// The reply to it: RPC reply header with a verifier of at most 400 bytes (420), CB_COMPOUND
/// result header (12), CB_SEQUENCE (40) and CB_RECALL (8) results.
pub const CB_RECALL_MAX_RESPONSE: u32 = 420 + 12 + 40 + 8;

fn negotiate(c: &ChannelAttrs4, max_slots: u32) -> ChannelAttrs {
    ChannelAttrs {
        max_request: c.ca_maxrequestsize.min(MAX_MSG),
        max_response: c.ca_maxresponsesize.min(MAX_MSG),
        max_response_cached: c.ca_maxresponsesize_cached.min(MAX_RESPONSE_CACHED),
        max_ops: c.ca_maxoperations.clamp(1, 64),
        max_requests: c.ca_maxrequests.clamp(1, max_slots),
    }
}

fn to_wire(a: &ChannelAttrs) -> ChannelAttrs4 {
    ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: a.max_request,
        ca_maxresponsesize: a.max_response,
        ca_maxresponsesize_cached: a.max_response_cached,
        ca_maxoperations: a.max_ops,
        ca_maxrequests: a.max_requests,
        ca_rdma_ird: Vec::new(),
    }
}

pub async fn create_session(ctx: &mut Ctx<'_>, a: &CreateSessionArgs) -> CreateSessionRes {
    match create_session_inner(ctx, a).await {
        Ok(r) => CreateSessionRes::Ok(r),
        Err(e) => CreateSessionRes::error(e.code()),
    }
}

async fn create_session_inner(
    ctx: &mut Ctx<'_>,
    a: &CreateSessionArgs,
) -> NfsResult<CreateSessionResOk> {
    if a.csa_flags & !CREATE_SESSION4_FLAG_MASK != 0 {
        return Err(NfsError::Inval);
    }
    ctx.mds
        .nfs
        .state
        .check_clientid(a.csa_clientid, ctx.user.uid)?;
    if let Some(cached) = ctx
        .mds
        .nfs
        .state
        .create_session_seq(a.csa_clientid, a.csa_sequence)?
    {
        return CreateSessionResOk::from_xdr(&cached).map_err(|_| NfsError::ServerFault);
    }
    if a.csa_fore_chan_attrs.ca_maxrequestsize < 256
        || a.csa_fore_chan_attrs.ca_maxresponsesize < 256
    {
        return Err(NfsError::TooSmall);
    }
    let b = &a.csa_back_chan_attrs;
    if b.ca_maxrequestsize < CB_RECALL_MAX_REQUEST
        || b.ca_maxresponsesize < CB_RECALL_MAX_RESPONSE
        || b.ca_maxoperations < 2
    {
        return Err(NfsError::TooSmall);
    }
    // The first CREATE_SESSION confirms the client: its owner is recorded (replicated) first,
    // so that after this node's restart, or another node's takeover of its address, the
    // client may reclaim what it is about to open and lock.
    if let Some(owner) = ctx.mds.nfs.state.owner_to_record(a.csa_clientid) {
        let record = meta::namespace::Command::ClientRecords {
            node: u64::from(ctx.mds.nfs.node),
            add: vec![owner.clone()],
            remove: Vec::new(),
        };
        if let Err(e) = ctx.mds.ns.execute(record).await {
            tracing::warn!("cannot record a client for reclaim: {e}");
            return Err(e.into());
        }
        ctx.mds.nfs.state.note_recorded(&owner);
    }
    let mut fore = negotiate(&a.csa_fore_chan_attrs, 64);
    let back = negotiate(b, 1);
    // The slot table is what the server-wide reply-cache budget can pay for.
    let (slots, per_slot, reserved) = ctx
        .mds
        .nfs
        .state
        .reserve_drc(fore.max_response_cached, fore.max_requests);
    fore.max_requests = slots;
    fore.max_response_cached = per_slot;
    let wants_back = a.csa_flags & CREATE_SESSION4_FLAG_CONN_BACK_CHAN != 0;
    let sec_ok = callback_cred(&a.csa_sec_parms).is_some();
    let back_conn = (wants_back && sec_ok).then(|| ctx.conn.clone());
    let cb_cred = callback_cred(&a.csa_sec_parms).unwrap_or(proto::rpc::Auth::None);
    let owner = ctx.mds.nfs.state.owner_of(a.csa_clientid)?;
    let id: SessionId = crate::state::session_id(a.csa_clientid, a.csa_sequence, &owner);
    let mut flags = 0;
    if back_conn.is_some() {
        flags |= CREATE_SESSION4_FLAG_CONN_BACK_CHAN;
    }
    let res = CreateSessionResOk {
        csr_sessionid: id,
        csr_sequence: a.csa_sequence,
        csr_flags: flags,
        csr_fore_chan_attrs: to_wire(&fore),
        csr_back_chan_attrs: to_wire(&back),
    };
    let session = Session {
        id,
        clientid: a.csa_clientid,
        fore,
        back,
        slots: (0..fore.max_requests).map(|_| Slot::default()).collect(),
        cb_program: a.csa_cb_program,
        back_conn,
        wants_back_channel: wants_back,
        cb_seqid: 0,
        cb_cred,
        minor: ctx.minor,
        conns: vec![ctx.conn.id()],
        drc_reserved: reserved,
        drc_cached: 0,
        adopted: false,
    };
    let has_back = session.back_conn.is_some();
    if let Err(e) =
        ctx.mds
            .nfs
            .state
            .create_session(a.csa_clientid, session, Arc::new(res.to_xdr()))
    {
        ctx.mds.nfs.state.release_drc(reserved);
        return Err(e);
    }
    if has_back {
        crate::state::recall::resend_recalls(&ctx.mds.nfs, a.csa_clientid);
    }
    Ok(res)
}

/// The credential callbacks are sent with, from the client's callback security parameters:
/// its AUTH_SYS credential (Linux offers uid 0), else AUTH_NONE; None if it offers only
/// RPCSEC_GSS, which this server cannot use.
fn callback_cred(parms: &[CallbackSecParms4]) -> Option<proto::rpc::Auth> {
    let sys = parms.iter().find_map(|p| match p {
        CallbackSecParms4::AuthSys(p) => Some(proto::rpc::Auth::Sys(proto::rpc::AuthSys {
            stamp: p.stamp,
            machine: p.machinename.as_bytes().to_vec(),
            uid: p.uid,
            gid: p.gid,
            gids: p.gids.clone(),
        })),
        _ => None,
    });
    sys.or_else(|| {
        parms
            .iter()
            .any(|p| matches!(p, CallbackSecParms4::AuthNone))
            .then_some(proto::rpc::Auth::None)
    })
}

/// SEQUENCE; `request_len` is the size of the COMPOUND's arguments, for REQ_TOO_BIG.
pub fn sequence(
    ctx: &mut Ctx<'_>,
    a: &SequenceArgs,
    request_len: usize,
) -> NfsResult<(SequenceResOk, SlotUse)> {
    let q = ctx.mds.nfs.state.sequence(
        &a.sa_sessionid,
        &SequenceQuery {
            slot: a.sa_slotid,
            seqid: a.sa_sequenceid,
            highest: a.sa_highest_slotid,
            nops: ctx.nops,
            request_len,
            conn: ctx.conn.id(),
            principal: ctx.user.uid,
            minor: ctx.minor,
        },
    )?;
    if matches!(q.used, SlotUse::New) {
        ctx.session = Some(a.sa_sessionid);
        ctx.clientid = Some(q.clientid);
        ctx.slot = Some(InSlot {
            slot: a.sa_slotid,
            seqid: a.sa_sequenceid,
            cachethis: a.sa_cachethis,
            max_response: q.max_response,
            max_response_cached: q.max_response_cached,
            reply_used: REPLY_HEAD,
        });
    }
    let mut flags = 0;
    if q.cb_down {
        flags |= SEQ4_STATUS_CB_PATH_DOWN_SESSION | SEQ4_STATUS_CB_PATH_DOWN;
    }
    if q.revoked {
        // Until the client frees them (FREE_STATEID), as knfsd does.
        flags |= SEQ4_STATUS_RECALLABLE_STATE_REVOKED;
    }
    if q.adopted {
        // A dead node's session, adopted to answer what the client sends again: the client
        // is to make a new one, with a back channel (`state::adopt`).
        flags |= SEQ4_STATUS_BACKCHANNEL_FAULT;
    }
    if q.reclaim_needed {
        flags |= SEQ4_STATUS_RESTART_RECLAIM_NEEDED;
    }
    Ok((
        SequenceResOk {
            sr_sessionid: a.sa_sessionid,
            sr_sequenceid: a.sa_sequenceid,
            sr_slotid: a.sa_slotid,
            sr_highest_slotid: q.highest_slot,
            sr_target_highest_slotid: q.highest_slot,
            sr_status_flags: flags,
        },
        q.used,
    ))
}

/// Before `op` runs: can its result still fit the reply the session allows, after the results
/// before it (`InSlot::reply_used`, the sum of their bounds)? NFS4ERR_REP_TOO_BIG past
/// `ca_maxresponsesize`; NFS4ERR_REP_TOO_BIG_TO_CACHE past `ca_maxresponsesize_cached` when
/// the client asked for the reply to be cached (RFC 8881 §2.10.6.4; the server caches no other
/// reply). Checked before running, as knfsd's nfsd4_check_resp_size, so a refused operation
/// has no effect. When more operations follow (`more`), as in knfsd, room is kept for the
/// next one's error, so that its refusal still fits.
pub fn check_reply_room(slot: &mut InSlot, op: &NfsArgop4, more: bool) -> NfsResult<()> {
    slot.reply_used += super::table::reply_bound(op);
    let need = slot.reply_used + if more { REPLY_PER_OP } else { 0 };
    if need > u64::from(slot.max_response) {
        return Err(NfsError::RepTooBig);
    }
    if slot.cachethis && need > u64::from(slot.max_response_cached) {
        return Err(NfsError::RepTooBigToCache);
    }
    Ok(())
}

pub fn destroy_session(ctx: &mut Ctx<'_>, a: &DestroySessionArgs) -> NfsResult<()> {
    ctx.mds
        .nfs
        .state
        .destroy_session(&a.dsa_sessionid, ctx.conn.id())?;
    if ctx.session == Some(a.dsa_sessionid) {
        // Nothing to cache the reply in any more.
        ctx.session = None;
        ctx.slot = None;
    }
    Ok(())
}

pub async fn destroy_clientid(ctx: &mut Ctx<'_>, a: &DestroyClientidArgs) -> NfsResult<()> {
    ctx.mds.nfs.state.destroy_clientid(a.dca_clientid)?;
    // Its record goes before the reply, as knfsd's does (`expire_client`): a client that
    // unmounted cleanly is not waited for in the grace period of a restart that follows.
    // Left to the laundromat, a kill -9 within its round cost every client a whole grace
    // period (30 s in a test). A removal that fails leaves the record, as the laundromat's
    // does: at most a wait in a later grace period.
    crate::laundromat::forget_client_records(ctx.mds).await;
    Ok(())
}

pub fn bind_conn_to_session(ctx: &mut Ctx<'_>, a: &BindConnToSessionArgs) -> BindConnToSessionRes {
    ctx.mds
        .nfs
        .state
        .adopt_if_unknown(&a.bctsa_sessid, ctx.user.uid, ctx.minor);
    let conn = ctx.conn.clone();
    let r = ctx.mds.nfs.state.with_session(&a.bctsa_sessid, |s| {
        let back = matches!(
            a.bctsa_dir,
            ChannelDirFromClient4::Back | ChannelDirFromClient4::BackOrBoth
        ) || (a.bctsa_dir == ChannelDirFromClient4::ForeOrBoth && s.wants_back_channel);
        s.bind_conn(conn.id());
        if back {
            s.back_conn = Some(conn);
        }
        let dir = match (a.bctsa_dir, back) {
            (ChannelDirFromClient4::Back, _) => ChannelDirFromServer4::Back,
            (_, true) => ChannelDirFromServer4::Both,
            _ => ChannelDirFromServer4::Fore,
        };
        (dir, back.then_some(s.clientid))
    });
    if let Ok((_, Some(clientid))) = r {
        crate::state::recall::resend_recalls(&ctx.mds.nfs, clientid);
    }
    match r.map(|(dir, _)| dir) {
        Ok(dir) => BindConnToSessionRes::Ok(BindConnToSessionResOk {
            bctsr_sessid: a.bctsa_sessid,
            bctsr_dir: dir,
            bctsr_use_conn_in_rdma_mode: false,
        }),
        Err(e) => BindConnToSessionRes::error(e.code()),
    }
}

/// BACKCHANNEL_CTL: the session's callbacks use the new program and security parameters
/// from now on (knfsd: AUTH_NONE or AUTH_SYS, else NFS4ERR_ENCR_ALG_UNSUPP); recalls not
/// answered yet go out again with them.
pub fn backchannel_ctl(ctx: &mut Ctx<'_>, a: &BackchannelCtlArgs) -> NfsResult<()> {
    let sid = ctx.session.ok_or(NfsError::OpNotInSession)?;
    let cred = callback_cred(&a.bca_sec_parms).ok_or(NfsError::EncrAlgUnsupp)?;
    let (clientid, back) = ctx.mds.nfs.state.with_session(&sid, |s| {
        s.cb_program = a.bca_cb_program;
        s.cb_cred = cred;
        (s.clientid, s.back_channel_up())
    })?;
    if back {
        crate::state::recall::resend_recalls(&ctx.mds.nfs, clientid);
    }
    Ok(())
}

pub fn reclaim_complete(ctx: &mut Ctx<'_>, a: &ReclaimCompleteArgs) -> NfsResult<()> {
    if a.rca_one_fs {
        // Per-file-system completion: this server has one file system, covered by the global one.
        return Ok(());
    }
    ctx.mds.nfs.state.reclaim_complete(ctx.clientid()?)
}
