//! COMPOUND processing (RFC 8881 §16.2): decode, run operations in order until one fails,
//! and keep the reply in the session's slot for exactly-once replays.
//!
//! Per COMPOUND: a peer no export admits is refused; SEQUENCE runs against the session's slot (a
//! replay is answered from the slot's reply cache); each operation goes through `ops::dispatch`
//! after the checks `ops::table` asks for (position, WRONGSEC, the reply budget,
//! `check_reply_room`). The reply is cached only if the client asked (`sa_cachethis`) and it fits
//! the slot's negotiated size.

use crate::error::NfsError;
use crate::nfs::caller::IN_DOUBT_WAIT;
use crate::nfs::ctx::{Ctx, WireCred};
use crate::nfs::ops::{self, table};
use crate::nfs::{retry, sec};
use crate::node::Mds;
use crate::state::SlotUse;
use meta::namespace::ShardId;
use proto::nfs4::compound::{Compound4Args, Compound4Res, NfsArgop4, NfsResop4};
use proto::nfs4::fileops::StatusRes;
use proto::rpc::{accepted_reply, denied_auth_reply, AcceptStat, Auth, AuthStat, Call, Connection};
use proto::xdr::{Reader, Writer, Xdr};
use std::sync::Arc;

/// Before an operation that reads namespace state: the read barrier of the shard of the
/// current file handle, and of the saved one for operations on both (RENAME, LINK), once
/// per shard per COMPOUND (`raft::fresh`). Refused with DELAY (the client retries) when
/// this node cannot confirm its replica is current, e.g. cut off from the majority. The
/// shards a read reaches through a name or an entry are another matter: `read`.
async fn read_barrier(ctx: &mut Ctx<'_>, op: &NfsArgop4) -> Result<(), NfsError> {
    let info = table::info(op.opnum());
    if !info.has(table::READS_STATE) {
        return Ok(());
    }
    let mut shards = Vec::with_capacity(2);
    if let (Some(ino), false) = (ctx.cfh, ctx.cexp == crate::export::PSEUDO_ID) {
        shards.push(ShardId::of_ino(ino));
    }
    if let (table::Owner::SavedAndCurrent, Some(ino), false) =
        (info.owner, ctx.sfh, ctx.sexp == crate::export::PSEUDO_ID)
    {
        shards.push(ShardId::of_ino(ino));
    }
    if !info.has(table::MODIFIES) {
        return ctx.pass_barriers(&shards).await;
    }
    // A change waits out an election rather than answer DELAY at once: it may be a client's
    // retry of one a dead node carried out, which DELAY would make a new request
    // (`state::delayed` covers what still ends in DELAY).
    let deadline = tokio::time::Instant::now() + IN_DOUBT_WAIT;
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        match ctx.pass_barriers(&shards).await {
            Err(NfsError::Delay) if tokio::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

fn compound_reply(xid: u32, body: &[u8]) -> Writer {
    let mut w = accepted_reply(xid, &Auth::None, AcceptStat::Success);
    w.buf.extend_from_slice(body);
    w
}

fn status_only(tag: &proto::xdr::Opaque, status: NfsError) -> Vec<u8> {
    Compound4Res {
        status: status.code(),
        tag: tag.clone(),
        resarray: Vec::new(),
    }
    .to_xdr()
}

pub async fn run(mds: &Arc<Mds>, conn: &Connection, call: &Call) -> Writer {
    let peer = conn.peer_addr().ip();
    // Rules come from the export of each op's current file handle (PUTFH, LOOKUP... switch
    // them); until the first one sets it, the first export admitting the client stands in.
    let Some(export) = mds.exports.iter().find(|e| e.admits(peer)) else {
        tracing::info!(%peer, "refused: no export admits this client");
        return denied_auth_reply(call.xid, AuthStat::TooWeak);
    };
    let cred = match &call.cred {
        Auth::Sys(s) => WireCred::Sys {
            uid: s.uid,
            gid: s.gid,
            gids: s.gids.clone(),
        },
        // AUTH_NONE gets the anonymous identity.
        Auth::None => WireCred::None,
        // RPCSEC_GSS that the `krb` layer in front verified; without that layer (no
        // Kerberos configured) and for other flavors, refused.
        Auth::Other { .. } => match &call.gss {
            Some(g) => WireCred::Gss {
                uid: g.uid,
                gid: g.gid,
                gids: g.gids.to_vec(),
                service: g.service,
            },
            None => return denied_auth_reply(call.xid, AuthStat::TooWeak),
        },
    };
    let user = cred.user(export);
    let mut r = Reader::new(call.args());
    let args = match Compound4Args::decode_partial(&mut r) {
        Ok(a) => a,
        Err(_) => {
            let body = status_only(&proto::xdr::Opaque::default(), NfsError::BadXdr);
            return compound_reply(call.xid, &body);
        }
    };
    if args.tag.as_str().is_none() {
        return compound_reply(call.xid, &status_only(&args.tag, NfsError::Inval));
    }
    if !(1..=2).contains(&args.minorversion) {
        return compound_reply(
            call.xid,
            &status_only(&args.tag, NfsError::MinorVersMismatch),
        );
    }
    let mut ctx = Ctx {
        mds,
        conn,
        user,
        cred,
        export,
        minor: args.minorversion,
        cfh: None,
        sfh: None,
        cexp: export.id,
        sexp: export.id,
        csnap: None,
        ssnap: None,
        cur_sid: None,
        saved_sid: None,
        session: None,
        clientid: None,
        slot: None,
        nops: args.argarray.len() + usize::from(args.error.is_some()),
        fresh: Vec::new(),
        op_index: 0,
        retry_of: None,
    };
    let mut res = Compound4Res {
        status: 0,
        tag: args.tag,
        resarray: Vec::with_capacity(args.argarray.len()),
    };
    metrics::mds::COMPOUNDS.inc();
    // The changes' fingerprints, for telling a retry (`state::delayed`).
    let fps = retry::fingerprints(&args.argarray);
    // Each op's metrics start where the previous op's ended (`metered::op_done`).
    let mut next_t0 = metrics::start();
    let mut todo = args.argarray.into_iter().enumerate().peekable();
    while let Some((i, op)) = todo.next() {
        let (opnum, t0) = (op.opnum(), next_t0);
        ctx.op_index = u16::try_from(i).unwrap_or(u16::MAX);
        let info = ops::table::info(opnum);
        let written = match &op {
            NfsArgop4::Write(a) if info.bytes == ops::table::Bytes::Written => a.data.len() as u64,
            _ => 0,
        };
        // The rules of RFC 8881 §2.10.6.4 on where an operation may stand, from the table:
        // SEQUENCE first; without it only a sessionless operation, alone; ILLEGAL anywhere.
        let sessionless = info.has(table::SESSIONLESS_ALONE);
        let kept = sec::kept(&op);
        // A change may be sent again after DELAY, GRACE or BADSESSION (`state::delayed`).
        let fp = fps.get(i).copied().flatten();
        ctx.retry_of = retry::retry_of(&ctx, fp, info.name);
        // Inside the snapshot quiesce's gate until the operation is done (`state::quiesce`).
        let entered = info
            .has(table::CHANGES_DATA)
            .then(|| mds.nfs.quiesce.enter());
        let r = if let Some(e) = sec::before(&ctx, &op) {
            ops::error_result(&op, e)
        } else if let (0, NfsArgop4::Sequence(a)) = (i, &op) {
            match ops::session::sequence(&mut ctx, a, call.args().len()) {
                Ok((ok, SlotUse::New)) => {
                    NfsResop4::Sequence(proto::nfs4::session::SequenceRes::Ok(ok))
                }
                Ok((_, SlotUse::Replay(cached))) => return compound_reply(call.xid, &cached),
                Err(e) => {
                    if e == NfsError::BadSession {
                        retry::keep_refused(mds, a, &fps);
                    }
                    NfsResop4::Sequence(proto::nfs4::session::SequenceRes::Err(e.code()))
                }
            }
        } else if i == 0 {
            if !(sessionless || info.has(table::ANYWHERE)) {
                ops::error_result(&op, NfsError::OpNotInSession)
            } else if sessionless && ctx.nops > 1 {
                // Without SEQUENCE these must stand alone: refused before they run, not after.
                ops::error_result(&op, NfsError::NotOnlyOp)
            } else {
                ops::dispatch(&mut ctx, &op).await
            }
        } else if info.has(table::FIRST_ONLY) {
            ops::error_result(&op, NfsError::SequencePos)
        } else if ctx.session.is_none() && !info.has(table::ANYWHERE) {
            // Only the sessionless ops above may stand alone, and then only alone.
            ops::error_result(&op, NfsError::NotOnlyOp)
        } else if let Some(e) = ctx
            .slot
            .as_mut()
            .and_then(|s| ops::session::check_reply_room(s, &op, i + 1 < ctx.nops).err())
        {
            ops::error_result(&op, e)
        } else if let Some(e) = ops::snap::refusal(&ctx, &op) {
            // Before the barrier (a change waits out elections there) and before WRITE's own
            // path below, which does not go through `dispatch`.
            ops::error_result(&op, e)
        } else if let Some(Err(e)) = &entered {
            // A snapshot is being cut: the client sends it again (`retry`).
            ops::error_result(&op, *e)
        } else if let Err(e) = read_barrier(&mut ctx, &op).await {
            ops::error_result(&op, e)
        } else if let NfsArgop4::Write(a) = op {
            // By value, so the payload goes to storage without another copy.
            NfsResop4::Write(ops::io::write_owned(&mut ctx, a).await)
        } else {
            ops::dispatch(&mut ctx, &op).await
        };
        drop(entered);
        if r.status() == 0 && info.has(table::CLEARS_STATEID) {
            ctx.cur_sid = None;
        }
        // Whether the next op checks the flavor itself (RFC 8881 §2.6.3.1.1), for a PUTFH.
        let next_checks_own_sec = todo.peek().map(|(_, next)| sec::checks_own_sec(next));
        let r = match kept.and_then(|opnum| {
            sec::after(&ctx, opnum, r.status(), next_checks_own_sec)
                .map(|e| NfsResop4::from_status(opnum, e.code()))
        }) {
            Some(refused) => refused,
            None => r,
        };
        next_t0 = crate::nfs::metered::op_done(&ctx, opnum, info, t0, &r, written);
        let st = r.status();
        retry::keep_if_sent_again(&ctx, fp, st);
        ctx.retry_of = None;
        // Per-op trail for debugging two-client interleavings (RUST_LOG=mds::nfs::compound=trace).
        tracing::trace!(op = info.name, fh = ?ctx.cfh, status = st, "op");
        res.resarray.push(r);
        if st != 0 {
            res.status = st;
            break;
        }
    }
    if res.status == 0 {
        if let Some((opnum, _)) = args.error {
            // The op that failed to decode gets BADXDR (or OP_ILLEGAL if not even its number read).
            res.status = NfsError::BadXdr.code();
            res.resarray.push(match opnum {
                Some(n) => ops::bad_xdr_result(n),
                None => NfsResop4::Illegal(StatusRes::err(NfsError::BadXdr.code())),
            });
        }
    }
    // Encoded straight into the reply, READ data by reference: see `encode_shared`.
    let mut w = accepted_reply(call.xid, &Auth::None, AcceptStat::Success);
    let start = w.len();
    res.encode_shared(&mut w);
    if let (Some(sid), Some(slot)) = (ctx.session, ctx.slot) {
        // Only what the client asked to keep is kept (sa_cachethis), within the session's size.
        let len = w.total_len() - start;
        let body = (slot.cachethis && len <= slot.max_response_cached as usize)
            .then(|| Arc::new(w.copy_from(start)));
        mds.nfs.state.finish_slot(&sid, slot.slot, slot.seqid, body);
    }
    w
}
