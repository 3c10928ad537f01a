//! COMPOUND processing (RFC 8881 §16.2): decode, run operations in order until one fails,
//! and keep the reply in the session's slot for exactly-once replays.
//!
//! Per COMPOUND: a peer no export admits is refused; SEQUENCE runs against the session's slot (a
//! replay is answered from the slot's reply cache); each operation goes through `ops::dispatch`
//! after the checks `ops::table` asks for (position, WRONGSEC, the reply budget,
//! `check_reply_room`). The reply is cached only if the client asked (`sa_cachethis`) and it fits
//! the slot's negotiated size.
//!
//! Fresh reads (`Ctx::read_barrier`, `Ctx::read`): before an operation that reads namespace state
//! (`table::READS_STATE`) the runner passes the read barrier (`raft::fresh`) of the current (and,
//! for RENAME and LINK, the saved) file handle's shard once per COMPOUND. A read that reaches
//! another shard through a name or an entry (a LOOKUP, READDIR's attributes, OPEN by name, SECINFO)
//! passes that shard's barrier before its answer counts and runs again once every shard it touched
//! is current; a PUTFH whose file is missing passes its shard's barrier before it answers STALE
//! (issue 50: a node catching up answered STALE for names that existed). Each shard is current as
//! of its own barrier, not one instant: an entry may name an inode a removal already took from the
//! child's shard, so both barriers are passed again (`DANGLING_AGAIN`); an entry naming an inode
//! that stays missing is corruption: logged, NFS4ERR_IO.
use crate::error::NfsError;
use crate::export::{Export, SecFlavor};
use crate::ops::{self, table};
use crate::sec;
use crate::state::{InSlot, SessionId, SlotUse, StateId};
use crate::Mds;
use meta::namespace::{FsError, ShardId, Snapshot};
use proto::nfs4::compound::{Compound4Args, Compound4Res, NfsArgop4, NfsResop4};
use proto::nfs4::fileops::StatusRes;
use proto::rpc::{accepted_reply, denied_auth_reply, AcceptStat, Auth, AuthStat, Call, Connection};
use proto::xdr::{Reader, Writer, Xdr};
use std::sync::Arc;

/// How many times `Ctx::read` passes the barriers of an entry's directory and child again
/// when the entry names an inode the child's shard lacks, before it calls that corruption.
const DANGLING_AGAIN: u32 = 3;

/// Who the request runs as, after the export's squashing: the namespace's own credential, so
/// the checks in `namespace::perm` see exactly what the operation saw.
pub type User = meta::namespace::perm::Cred;

/// The caller's credential as sent, before any export's squashing.
#[derive(Debug, Clone)]
pub enum WireCred {
    Sys {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
    },
    /// AUTH_NONE: the export's anonymous identity.
    None,
    /// RPCSEC_GSS, verified by the `krb` layer: the principal's local identity, and the
    /// service (krb5, krb5i, krb5p) the call was protected with.
    Gss {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
        service: proto::rpc::gss::GssService,
    },
}

impl WireCred {
    /// The export flavor this credential is (AUTH_NONE counts as sys).
    pub fn flavor(&self) -> SecFlavor {
        use proto::rpc::gss::GssService;
        match self {
            WireCred::Sys { .. } | WireCred::None => SecFlavor::Sys,
            WireCred::Gss { service, .. } => match service {
                GssService::None => SecFlavor::Krb5,
                GssService::Integrity => SecFlavor::Krb5i,
                GssService::Privacy => SecFlavor::Krb5p,
            },
        }
    }

    /// Who the caller runs as under `export`'s rules.
    pub fn user(&self, export: &Export) -> User {
        match self {
            WireCred::Sys { uid, gid, gids } | WireCred::Gss { uid, gid, gids, .. } => {
                let (u, g) = export.map_ids(*uid, *gid);
                User {
                    uid: u,
                    gid: g,
                    groups: if u == *uid { gids.clone() } else { Vec::new() },
                }
            }
            WireCred::None => User {
                uid: export.anon_uid,
                gid: export.anon_gid,
                groups: Vec::new(),
            },
        }
    }
}

/// Per-COMPOUND state: the current and saved file handles and stateids, and the session.
pub struct Ctx<'a> {
    pub mds: &'a Arc<Mds>,
    pub conn: &'a Connection,
    /// Who the request runs as: `cred` under the rules of the current file handle's export.
    pub user: User,
    pub cred: WireCred,
    /// The export of the current file handle (its rules: read-only, squashing, flavors).
    pub export: &'a Export,
    pub minor: u32,
    pub cfh: Option<u64>,
    pub sfh: Option<u64>,
    /// The export ids of the current and saved file handles (`export::PSEUDO_ID` for a
    /// directory of the pseudo file system).
    pub cexp: u32,
    pub sexp: u32,
    pub cur_sid: Option<StateId>,
    pub saved_sid: Option<StateId>,
    pub session: Option<SessionId>,
    pub clientid: Option<u64>,
    /// The slot this compound runs on and its reply limits, if it began with SEQUENCE.
    pub slot: Option<InSlot>,
    /// Operations in this compound, for "must be the only operation" checks.
    pub nops: usize,
    /// Shards whose read barrier this compound has passed (`raft::fresh`).
    pub fresh: Vec<u16>,
    /// The position of the operation running now in the COMPOUND.
    pub op_index: u16,
}

impl Ctx<'_> {
    pub fn fh(&self) -> Result<u64, NfsError> {
        self.cfh.ok_or(NfsError::NoFileHandle)
    }

    /// Resolves the special "current stateid" (RFC 8881 §16.2.3.1.2).
    pub fn stateid(&self, sid: &proto::nfs4::basic::Stateid4) -> Result<StateId, NfsError> {
        if *sid == StateId::CURRENT {
            return self.cur_sid.ok_or(NfsError::BadStateId);
        }
        Ok(*sid)
    }

    /// Before an operation that reads namespace state: the read barrier of the shard of the
    /// current file handle, and of the saved one for operations on both (RENAME, LINK), once
    /// per shard per COMPOUND (`raft::fresh`). Refused with DELAY (the client retries) when
    /// this node cannot confirm its replica is current, e.g. cut off from the majority. The
    /// shards a read reaches through a name or an entry are another matter: `read`.
    pub async fn read_barrier(&mut self, op: &NfsArgop4) -> Result<(), NfsError> {
        let info = table::info(op.opnum());
        if !info.has(table::READS_STATE) {
            return Ok(());
        }
        let mut shards = Vec::with_capacity(2);
        if let (Some(ino), false) = (self.cfh, self.cexp == crate::export::PSEUDO_ID) {
            shards.push(ShardId::of_ino(ino));
        }
        if let (table::Owner::SavedAndCurrent, Some(ino), false) =
            (info.owner, self.sfh, self.sexp == crate::export::PSEUDO_ID)
        {
            shards.push(ShardId::of_ino(ino));
        }
        self.pass_barriers(&shards).await
    }

    /// The read barriers of `shards` this COMPOUND has not passed yet, at once.
    async fn pass_barriers(&mut self, shards: &[ShardId]) -> Result<(), NfsError> {
        let mut todo: Vec<ShardId> = shards
            .iter()
            .copied()
            .filter(|s| !self.fresh.contains(&s.0))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return Ok(());
        }
        let mds = self.mds;
        let passed = futures::future::join_all(todo.iter().map(|s| mds.ns.barrier(*s))).await;
        if passed.iter().any(Result::is_err) {
            return Err(NfsError::Delay);
        }
        self.fresh.extend(todo.iter().map(|s| s.0));
        Ok(())
    }

    /// Reads namespace state through `read` (with the settled reads: `Snapshot::*_settled`),
    /// as of replicas known to be current: every shard the read reached has passed its read
    /// barrier before the answer is trusted. A directory's entry may name an object of another
    /// shard (a subdirectory, a file renamed in), and this node's replica of that shard may be
    /// behind the directory's: a node catching up after a restart or a partition found entries
    /// naming inodes it did not have yet, and answered STALE for names that exist (issue 50).
    /// So a read that reached a shard this COMPOUND has not passed the barrier of is thrown
    /// away, the barriers are passed, and it runs again; each round adds a shard, so this ends.
    /// It also runs again while it answers `Busy` (a cross-shard transaction holds what it
    /// read; milliseconds, or until recovery if its coordinator died), for up to
    /// `namespace::READ_WAIT`, then DELAY. `read` must have no side effect.
    ///
    /// An entry naming an inode that a current replica does not have is a removal seen from
    /// two instants (each shard current when its barrier was passed), so both barriers are
    /// passed again; if it stays, it is corruption: logged loudly and answered NFS4ERR_IO,
    /// never STALE.
    pub async fn read<T>(
        &mut self,
        mut read: impl FnMut(&Self, &Snapshot<'_>) -> Result<T, FsError>,
    ) -> Result<T, NfsError> {
        let mds = self.mds;
        let one_node = mds.ns.peers().is_none();
        let mut busy_until = None;
        let mut pause = std::time::Duration::from_millis(1);
        let mut again = DANGLING_AGAIN;
        loop {
            let (r, behind) = {
                let snap = mds.ns.snapshot()?;
                let r = read(self, &snap);
                let behind: Vec<ShardId> = if one_node {
                    Vec::new()
                } else {
                    snap.touched()
                        .into_iter()
                        .filter(|s| !self.fresh.contains(&s.0))
                        .collect()
                };
                (r, behind)
            };
            if !behind.is_empty() {
                self.pass_barriers(&behind).await?;
                continue;
            }
            match r {
                Err(FsError::Busy) => {
                    let now = tokio::time::Instant::now();
                    let until = *busy_until.get_or_insert(now + meta::namespace::READ_WAIT);
                    if now + pause >= until {
                        return Err(NfsError::Delay);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(20));
                }
                // Each shard was current when its barrier was passed, but not at one instant:
                // the directory's replica may show the entry from before a removal whose part
                // on the child's shard this node has applied already (the child's barrier came
                // later). Both barriers again: a replica current after that shows the
                // transaction's lock or the entry gone.
                Err(FsError::Dangling { dir, ino }) if again > 0 => {
                    again -= 1;
                    let (d, c) = (ShardId::of_ino(dir).0, ShardId::of_ino(ino).0);
                    self.fresh.retain(|s| *s != d && *s != c);
                }
                Err(FsError::Dangling { dir, ino }) => {
                    tracing::error!(
                        dir,
                        ino,
                        "namespace corrupt: an entry names an inode that this node's current \
                         replica of its shard does not have"
                    );
                    return Err(NfsError::Io);
                }
                other => return other.map_err(NfsError::from),
            }
        }
    }

    pub fn clientid(&self) -> Result<u64, NfsError> {
        self.clientid.ok_or(NfsError::OpNotInSession)
    }

    pub fn writable(&self) -> Result<(), NfsError> {
        if self.export.read_only {
            Err(NfsError::Rofs)
        } else {
            Ok(())
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
        cur_sid: None,
        saved_sid: None,
        session: None,
        clientid: None,
        slot: None,
        nops: args.argarray.len() + usize::from(args.error.is_some()),
        fresh: Vec::new(),
        op_index: 0,
    };
    let mut res = Compound4Res {
        status: 0,
        tag: args.tag.clone(),
        resarray: Vec::with_capacity(args.argarray.len()),
    };
    metrics::mds::COMPOUNDS.inc();
    // Whether each op checks the flavor itself (RFC 8881 §2.6.3.1.1), for the PUTFH before it.
    let checks_own_sec: Vec<bool> = args.argarray.iter().map(sec::checks_own_sec).collect();
    // Each op's metrics start where the previous op's ended (`metered::op_done`).
    let mut next_t0 = metrics::start();
    for (i, op) in args.argarray.into_iter().enumerate() {
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
        let r = if let Some(e) = sec::before(&ctx, &op) {
            ops::error_result(&op, e)
        } else if let (0, NfsArgop4::Sequence(a)) = (i, &op) {
            match ops::session::sequence(&mut ctx, a, call.args().len()) {
                Ok((ok, SlotUse::New)) => {
                    NfsResop4::Sequence(proto::nfs4::session::SequenceRes::Ok(ok))
                }
                Ok((_, SlotUse::Replay(cached))) => return compound_reply(call.xid, &cached),
                Err(e) => NfsResop4::Sequence(proto::nfs4::session::SequenceRes::Err(e.code())),
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
            .and_then(|s| ops::session::check_reply_room(s, &op).err())
        {
            ops::error_result(&op, e)
        } else if let Err(e) = ctx.read_barrier(&op).await {
            ops::error_result(&op, e)
        } else if let NfsArgop4::Write(a) = op {
            // By value, so the payload goes to storage without another copy.
            NfsResop4::Write(ops::io::write_owned(&mut ctx, a).await)
        } else {
            ops::dispatch(&mut ctx, &op).await
        };
        if r.status() == 0 && info.has(table::CLEARS_STATEID) {
            ctx.cur_sid = None;
        }
        let r = match kept.as_ref().and_then(|op| {
            sec::after(&ctx, op, r.status(), checks_own_sec.get(i + 1).copied())
                .map(|e| ops::error_result(op, e))
        }) {
            Some(refused) => refused,
            None => r,
        };
        next_t0 = crate::metered::op_done(&ctx, opnum, info, t0, &r, written);
        let st = r.status();
        // Per-op trail for debugging two-client interleavings (RUST_LOG=mds::compound=trace).
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
        mds.state.finish_slot(&sid, slot.slot, slot.seqid, body);
    }
    w
}
