//! NFSv4.1 server state: clients and their leases, sessions, and the stateids of opens, byte-
//! range locks and delegations, with share reservations. One mutex guards it all: every
//! operation on it is short and never awaits while holding it.
//!
//! Courtesy (as knfsd's courteous server): a client whose lease ran out keeps its state until
//! another client's request conflicts with it, and is expired then, at once, whole (see
//! `courtesy.rs`). The files its expiry concerns (RW layouts to fence, opens released) are
//! left in `Expired` for the laundromat task (`lib.rs` `laundromat`), which the
//! `laundromat` notifier wakes.
//!
//! What is durable: opens, locks, delegations and layouts live here, in memory; the owners of
//! confirmed clients are replicated namespace state (`grace`, `Command::ClientRecords`), committed
//! before the CREATE_SESSION that confirms a client is answered, so after a restart or a takeover
//! they reclaim in a grace period that ends early once all of them sent RECLAIM_COMPLETE; records
//! of clients that missed it are dropped when it ends (`end_grace`). A client is its owner and its
//! principal (`exchange_id`, RFC 8881 §18.35.5). Not yet: this one mutex split by owner (node-local
//! sessions and back channels; per-file state that will live with a shard; client records behind a
//! tracker interface; STYLE.md).
mod admin;
mod adopt;
pub mod arbiter;
mod courtesy;
mod grace;
mod layouts;
pub mod locks;
mod owner;
pub mod recall;
pub mod remote;
pub mod session;

pub use owner::{NfsState, NfsStateParts};

use crate::error::{NfsError, NfsResult};
pub use admin::{ClientSummary, StateCounts};
pub use adopt::session_id;
pub use grace::{read_legacy, ClientDb, LEGACY_FILE};
use locks::{FileLocks, LockKind, OwnerKey, Range};
pub use session::{ChannelAttrs, InSlot, Session, SessionId, Slot, SlotUse, MAX_BOUND_CONNS};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const OPEN4_SHARE_ACCESS_READ: u32 = 1;
pub const OPEN4_SHARE_ACCESS_WRITE: u32 = 2;
pub const OPEN4_SHARE_ACCESS_BOTH: u32 = 3;

/// A stateid as the client sees it: `seqid` counts changes, `other` names the state.
pub type StateId = proto::nfs4::basic::Stateid4;

/// The anonymous and bypass stateids (RFC 8881 §8.2.3): I/O outside any open.
pub fn is_special(sid: &StateId) -> bool {
    *sid == StateId::ANONYMOUS || *sid == StateId::BYPASS
}

#[derive(Debug, Clone)]
pub struct Client {
    pub clientid: u64,
    pub owner: Vec<u8>,
    pub verifier: [u8; 8],
    /// Who sent the EXCHANGE_ID (RFC 8881 §2.4: the client's identity includes it): the
    /// AUTH_SYS uid after the export's squashing. The same co_ownerid sent by another
    /// principal is another client.
    pub principal: u32,
    pub confirmed: bool,
    /// Next CREATE_SESSION sequence id expected (eir_sequenceid + 1 after each).
    pub cs_seq: u32,
    pub last_cs_reply: Option<std::sync::Arc<Vec<u8>>>,
    pub renewed: Instant,
    pub reclaim_complete: bool,
    /// Came from the previous server instance's client list: may reclaim during grace.
    pub may_reclaim: bool,
    /// Reads striped flexfiles layouts (by its EXCHANGE_ID implementation id: Linux 6.18+).
    pub stripes: bool,
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Open {
        owner: Vec<u8>,
        access: u32,
        deny: u32,
    },
    Lock {
        owner: Vec<u8>,
        open: [u8; 12],
    },
    /// `recalled`: when CB_RECALL went out; a holder that has not returned it a lease later
    /// loses it. `recall_acked`: the holder answered the CB_RECALL; until then the recall is
    /// sent again on any back channel the client sets up (a new session, BIND_CONN_TO_SESSION,
    /// BACKCHANNEL_CTL), as knfsd requeues a callback whose channel went down.
    Delegation {
        write: bool,
        recalled: Option<Instant>,
        recall_acked: bool,
    },
    /// The layouts one client holds on one file (RFC 8881 §12.5.3): one stateid per
    /// (client, file), its seqid bumped by every LAYOUTGET and LAYOUTRETURN.
    Layout {
        rw: bool,
    },
}

#[derive(Debug, Clone)]
pub struct State {
    pub clientid: u64,
    pub ino: u64,
    pub seqid: u32,
    pub kind: StateKind,
}

#[derive(Debug, Default)]
struct FileState {
    states: BTreeSet<[u8; 12]>,
    locks: FileLocks,
}

#[derive(Debug)]
struct Inner {
    next_id: u64,
    clients: HashMap<u64, Client>,
    sessions: HashMap<SessionId, Session>,
    states: HashMap<[u8; 12], State>,
    files: HashMap<u64, FileState>,
    /// (client, open owner, file) → open stateid
    open_index: HashMap<(u64, Vec<u8>, u64), [u8; 12]>,
    /// (client, lock owner, file) → lock stateid
    lock_index: HashMap<(u64, Vec<u8>, u64), [u8; 12]>,
    /// (client, file) → layout stateid
    layout_index: HashMap<(u64, u64), [u8; 12]>,
    db: ClientDb,
    grace_until: Option<Instant>,
    /// The grace period is a restart's: nothing this instance knows of state held before it,
    /// so every client's new opens and locks wait (`in_grace`). A takeover's grace leaves the
    /// taker's own clients alone: only the dead node's clients reclaim.
    grace_blocks_all: bool,
    /// Owners the previous instance knew that have not yet sent RECLAIM_COMPLETE: only they
    /// may reclaim, and grace ends early when none is left.
    awaiting_reclaim: BTreeSet<Vec<u8>>,
    /// Those of them that are dead nodes' clients this node took over (`begin_takeover`)
    /// before it checked its own records after its start (`keep_reclaimers`, which takes
    /// this: None once it has run): not among those records, so that check leaves them be.
    taken_over: Option<BTreeSet<Vec<u8>>>,
    /// Files and directories whose delegations were recalled lately, and when: no new
    /// delegation there for `RECALL_BACKOFF`, or a reader and a writer taking turns would
    /// pay a recall (and the writer a DELAY) on every turn.
    recalled_lately: HashMap<u64, Instant>,
    /// Reply-cache bytes reserved by all sessions (sum of their `drc_reserved`).
    drc_reserved: usize,
    /// Delegations revoked from clients that did not return them a lease after the recall:
    /// their stateids answer NFS4ERR_DELEG_REVOKED, and SEQUENCE tells the holder
    /// (SEQ4_STATUS_RECALLABLE_STATE_REVOKED) until it frees them with FREE_STATEID. At most
    /// `MAX_REVOKED`.
    revoked: HashMap<[u8; 12], Revoked>,
    /// What expired clients left to do outside this lock (fencing, reaping orphans).
    expired: Expired,
    /// Clients of a dead node whose session this node adopted (`adopt`): they reclaim on it.
    adopted: HashSet<u64>,
}

/// A revoked delegation, kept for its holder to learn of it.
#[derive(Debug, Clone, Copy)]
struct Revoked {
    clientid: u64,
}

/// Revoked delegations remembered at most; past it one is forgotten for each new one (its
/// stateid then answers BAD_STATEID). Each costs its holder a recall it ignored for a whole
/// lease, so reaching this takes thousands of ignored recalls.
const MAX_REVOKED: usize = 4096;

/// What expiring clients leave for the laundromat to do: fence the files they held RW layouts
/// on (the client may still be alive and writing to the data servers), and look at the files
/// whose opens went (an unlinked one nobody has open any more is reaped).
#[derive(Debug, Default)]
pub struct Expired {
    pub clients: usize,
    pub fenced: Vec<u64>,
    pub released: Vec<u64>,
}

/// The most memory all sessions' reply caches may reserve together. knfsd takes 1/128 of
/// RAM; a fixed 64 MiB is that share of an 8 GiB server, and at 64 KiB per slot it still
/// gives sixteen clients a full 64-slot table. Before this bound, 100 clients × 64 slots of
/// ~63 KiB replies grew the server by 390 MiB.
pub const DRC_BUDGET: usize = 64 << 20;

/// A session whose slots the budget cannot pay for still gets one slot caching at most this
/// much (enough for an OPEN reply), so the budget can be exceeded by at most this per session.
pub const DRC_FLOOR_PER_SESSION: u32 = 4 << 10;

/// knfsd's scale factor: one new session may take at most this fraction of what is left, so
/// the last clients to arrive still find some.
const DRC_SHARE: usize = 8;

/// How long after a recall no delegation is granted on the same object (knfsd blocks for
/// 30–60 s after a recall, for the same reason).
const RECALL_BACKOFF: Duration = Duration::from_secs(30);

/// Above this many remembered recalls, expired ones are dropped.
const RECALLED_LATELY_PRUNE: usize = 4096;

pub struct StateManager {
    inner: Mutex<Inner>,
    /// Distinguishes this server instance in client ids and stateids.
    boot: u32,
    pub lease: Duration,
    /// Woken by every DELEGRETURN: operations waiting out a recall look again.
    pub returned: tokio::sync::Notify,
    /// Woken when a conflict expired a courtesy client: the laundromat carries out what it
    /// left (`take_expired`) now rather than at its next tick.
    pub laundromat: tokio::sync::Notify,
    /// Whether this node is in touch with a majority of MDS nodes: when not, it renews no
    /// lease and keeps no courtesy client (`crate::state::remote::isolation`).
    pub quorum: crate::state::remote::isolation::Quorum,
}

/// What SEQUENCE asks: the slot, and the request's size, operation count and connection.
#[derive(Debug, Clone, Copy)]
pub struct SequenceQuery {
    pub slot: u32,
    pub seqid: u32,
    pub highest: u32,
    pub nops: usize,
    /// Bytes of the COMPOUND arguments (the RPC header is not counted).
    pub request_len: usize,
    pub conn: u64,
    /// Who sent it (the caller's uid): the principal of a client whose session is adopted.
    pub principal: u32,
    /// The COMPOUND's minor version: an adopted session's, for its callbacks.
    pub minor: u32,
}

/// What SEQUENCE found: the session's client, the slot's verdict and the channel's limits.
#[derive(Debug)]
pub struct Sequenced {
    pub clientid: u64,
    pub used: SlotUse,
    pub highest_slot: u32,
    pub cb_down: bool,
    pub max_response: u32,
    pub max_response_cached: u32,
    /// The client has revoked delegations not yet freed (SEQ4_STATUS_RECALLABLE_STATE_REVOKED).
    pub revoked: bool,
    /// The session is a dead node's, adopted (`adopt`): the client is to make a new one
    /// (SEQ4_STATUS_BACKCHANNEL_FAULT).
    pub adopted: bool,
    /// The client's state was its dead node's: it is to reclaim it until its RECLAIM_COMPLETE
    /// (SEQ4_STATUS_RESTART_RECLAIM_NEEDED).
    pub reclaim_needed: bool,
}

/// Where and how to send a client its callbacks.
#[derive(Debug, Clone)]
pub struct BackChannel {
    pub conn: proto::rpc::Connection,
    pub session: SessionId,
    pub program: u32,
    pub cred: proto::rpc::Auth,
    pub minor: u32,
}

/// A delegation that stands in the way of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Conflict {
    pub clientid: u64,
    pub stateid: StateId,
    /// CB_RECALL must be sent now (not yet sent for this delegation).
    pub needs_recall: bool,
}

/// Lock denied: who holds what.
#[derive(Debug, Clone)]
pub struct Denied {
    pub range: Range,
}

impl StateManager {
    pub fn new(
        boot: u32,
        lease: Duration,
        grace: Duration,
        db: ClientDb,
        previous: BTreeSet<Vec<u8>>,
    ) -> Self {
        let grace_until = if previous.is_empty() {
            None
        } else {
            Some(Instant::now() + grace)
        };
        StateManager {
            inner: Mutex::new(Inner {
                next_id: 1,
                clients: HashMap::new(),
                sessions: HashMap::new(),
                states: HashMap::new(),
                files: HashMap::new(),
                open_index: HashMap::new(),
                lock_index: HashMap::new(),
                layout_index: HashMap::new(),
                db,
                grace_blocks_all: grace_until.is_some(),
                grace_until,
                awaiting_reclaim: previous,
                taken_over: Some(BTreeSet::new()),
                recalled_lately: HashMap::new(),
                drc_reserved: 0,
                revoked: HashMap::new(),
                expired: Expired::default(),
                adopted: HashSet::new(),
            }),
            boot,
            lease,
            returned: tokio::sync::Notify::new(),
            laundromat: tokio::sync::Notify::new(),
            quorum: crate::state::remote::isolation::Quorum::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a handler panicked mid-update; the state is still the best we
        // have, and refusing all service would be worse.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_other(&self, inner: &mut Inner, kind: u8) -> [u8; 12] {
        let id = inner.next_id;
        inner.next_id += 1;
        let mut o = [0u8; 12];
        o[0..4].copy_from_slice(&self.boot.to_be_bytes());
        o[4] = kind;
        o[5..12].copy_from_slice(&id.to_be_bytes()[1..8]);
        o
    }

    // ---- reply-cache memory ----------------------------------------------------------------

    /// Reserves reply-cache memory for a new session that wants `wanted` slots caching up to
    /// `per_slot` bytes each, as knfsd's nfsd4_get_drc_mem does: at most an eighth of what is
    /// left of `DRC_BUDGET`, at least one slot. Returns (slots, bytes per slot, reserved);
    /// when not even one slot fits the budget, the one slot caches at most
    /// `DRC_FLOOR_PER_SESSION`. Give the reservation back with `release_drc` if the session
    /// is not installed.
    pub fn reserve_drc(&self, per_slot: u32, wanted: u32) -> (u32, u32, usize) {
        let mut g = self.lock();
        let left = DRC_BUDGET.saturating_sub(g.drc_reserved);
        let share = left / DRC_SHARE;
        let (slots, per_slot) = if per_slot == 0 {
            (wanted.max(1), 0)
        } else if share >= per_slot as usize {
            let fit = (share / per_slot as usize).min(wanted as usize);
            (fit.max(1) as u32, per_slot)
        } else if left >= per_slot as usize {
            (1, per_slot)
        } else {
            (1, per_slot.min(DRC_FLOOR_PER_SESSION))
        };
        let bytes = slots as usize * per_slot as usize;
        g.drc_reserved += bytes;
        (slots, per_slot, bytes)
    }

    pub fn release_drc(&self, bytes: usize) {
        let mut g = self.lock();
        g.drc_reserved = g.drc_reserved.saturating_sub(bytes);
    }

    /// (bytes reserved for reply caches, bytes of replies cached now), over all sessions.
    pub fn reply_cache_bytes(&self) -> (usize, usize) {
        let g = self.lock();
        let cached = g.sessions.values().map(|s| s.drc_cached).sum();
        (g.drc_reserved, cached)
    }

    fn remove_session(g: &mut Inner, id: &SessionId) -> Option<Session> {
        let s = g.sessions.remove(id)?;
        g.drc_reserved = g.drc_reserved.saturating_sub(s.drc_reserved);
        Some(s)
    }

    /// A restart's grace period is on: new opens and locks wait (RFC 8881 §8.4.2.1).
    pub fn in_grace(&self) -> bool {
        let mut g = self.lock();
        Self::grace_on(&mut g) && g.grace_blocks_all
    }

    /// Reclaims are taken: a restart's or a takeover's grace period is on.
    fn grace_on(g: &mut Inner) -> bool {
        match g.grace_until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                Self::end_grace(g);
                false
            }
            None => false,
        }
    }

    /// Reclaims are taken now (a restart's or a takeover's grace period): an unlinked file
    /// may still be reopened by a client reclaiming it.
    pub fn reclaims_open(&self) -> bool {
        Self::grace_on(&mut self.lock())
    }

    /// This node took over another's client address: `owners`, that node's clients (their
    /// records are this node's now, `Command::TakeOverClients`), may reclaim here for `grace`.
    /// This node's own clients go on: their state is this node's and still valid.
    pub fn begin_takeover(&self, owners: BTreeSet<Vec<u8>>, grace: Duration) {
        if owners.is_empty() {
            return;
        }
        let mut g = self.lock();
        let until = Instant::now() + grace;
        g.grace_until = Some(g.grace_until.map_or(until, |t| t.max(until)));
        for o in owners {
            g.db.recorded(&o);
            if let Some(t) = &mut g.taken_over {
                t.insert(o.clone());
            }
            g.awaiting_reclaim.insert(o);
        }
    }

    /// This node's client records, read again once its replica caught up after a restart:
    /// owners no longer among them (another node took them over while this one was down) are
    /// not waited for; with none left, the restart's grace period ends. The clients of a dead
    /// node this node took over meanwhile are not among its own records yet (the move is
    /// committed in the background) and stay: this check may come late, after a takeover.
    pub fn keep_reclaimers(&self, records: &BTreeSet<Vec<u8>>) {
        let mut g = self.lock();
        let g = &mut *g;
        let before = g.awaiting_reclaim.len();
        let taken_over = g.taken_over.take().unwrap_or_default();
        g.awaiting_reclaim
            .retain(|o| records.contains(o) || taken_over.contains(o));
        let gone: Vec<Vec<u8>> =
            g.db.recorded_owners()
                .filter(|o| !records.contains(*o) && !taken_over.contains(*o))
                .cloned()
                .collect();
        for o in &gone {
            g.db.forget_silently(o);
        }
        if before > 0 && g.awaiting_reclaim.is_empty() && g.grace_until.is_some() {
            tracing::info!("the previous instance's clients moved to other nodes: no grace period");
            g.grace_until = None;
            g.grace_blocks_all = false;
        }
    }

    /// The owner CREATE_SESSION must record before it confirms `clientid` (None: nothing to
    /// record, or no such client).
    pub fn owner_to_record(&self, clientid: u64) -> Option<Vec<u8>> {
        let g = self.lock();
        let c = g.clients.get(&clientid)?;
        (!c.confirmed && !g.db.is_recorded(&c.owner)).then(|| c.owner.clone())
    }

    /// `owner`'s record is committed (`owner_to_record`).
    pub fn note_recorded(&self, owner: &[u8]) {
        self.lock().db.recorded(owner);
    }

    /// Records to forget (clients gone), for the laundromat to commit; owners with a client
    /// record here, confirmed or not, keep theirs.
    pub fn take_forgotten(&self) -> Vec<Vec<u8>> {
        let mut g = self.lock();
        let g = &mut *g;
        let clients = &g.clients;
        g.db.take_forgotten(|o| clients.values().any(|c| c.owner == o))
    }

    /// The grace period is over: clients of the previous instance that did not come back in it
    /// can reclaim nothing any more, so their records go. Kept, each later restart (a clean
    /// one too) would wait out a whole grace period for clients long gone.
    fn end_grace(g: &mut Inner) {
        g.grace_until = None;
        g.grace_blocks_all = false;
        let awaiting = std::mem::take(&mut g.awaiting_reclaim);
        // A client that came back but has not sent RECLAIM_COMPLETE is still a client.
        let gone: Vec<Vec<u8>> = awaiting
            .into_iter()
            .filter(|o| !g.clients.values().any(|c| c.confirmed && c.owner == *o))
            .collect();
        let n = g.db.remove_all(&gone);
        if n > 0 {
            tracing::info!(
                clients = n,
                "forgot clients that did not reclaim in the grace period"
            );
        }
    }

    // ---- clients -------------------------------------------------------------------------

    /// EXCHANGE_ID (RFC 8881 §18.35.5), case by case as knfsd's nfsd4_exchange_id; `update`
    /// is EXCHGID4_FLAG_UPD_CONFIRMED_REC_A. Returns (clientid, sequenceid, confirmed).
    pub fn exchange_id(
        &self,
        owner: &[u8],
        verifier: [u8; 8],
        principal: u32,
        update: bool,
    ) -> NfsResult<(u64, u32, bool)> {
        let mut g = self.lock();
        let conf = g
            .clients
            .values()
            .find(|c| c.confirmed && c.owner == owner)
            .map(|c| (c.clientid, c.cs_seq, c.verifier, c.principal));
        let mut replaced = None;
        if let Some((id, seq, v, p)) = conf {
            if update {
                if p != principal {
                    return Err(NfsError::Perm); // case 9
                }
                if v != verifier {
                    return Err(NfsError::NotSame); // case 8
                }
                return Ok((id, seq, true)); // case 6
            }
            if p != principal {
                // Case 3, a collision: another principal's client with live state keeps its
                // name; without state it is replaced.
                if Self::has_state(&g, id) {
                    return Err(NfsError::ClidInUse);
                }
                replaced = Some(id);
            } else if v == verifier {
                return Ok((id, seq, true)); // case 2
            }
            // Case 5, the client rebooted: the old record stays until the new one is
            // confirmed (CREATE_SESSION retires it).
        } else if update {
            return Err(NfsError::NoEnt); // case 7
        }
        if let Some(id) = replaced {
            if let Some(owner) = g.clients.get(&id).map(|c| c.owner.clone()) {
                g.db.remove(&owner);
            }
            Self::purge_client(&mut g, id);
        }
        // Case 4: an unconfirmed record for this owner is replaced.
        g.clients.retain(|_, c| c.confirmed || c.owner != owner);
        let n = g.next_id;
        g.next_id += 1;
        let clientid = ((self.boot as u64) << 32) | (n & 0xffff_ffff);
        let may_reclaim = g.grace_until.is_some() && g.awaiting_reclaim.contains(owner);
        g.clients.insert(
            clientid,
            Client {
                clientid,
                owner: owner.to_vec(),
                verifier,
                principal,
                confirmed: false,
                cs_seq: 1,
                last_cs_reply: None,
                renewed: Instant::now(),
                reclaim_complete: false,
                may_reclaim,
                stripes: false,
            },
        );
        Ok((clientid, 1, false))
    }

    /// Records whether `clientid` reads striped flexfiles layouts.
    pub fn set_stripes(&self, clientid: u64, stripes: bool) {
        if let Some(c) = self.lock().clients.get_mut(&clientid) {
            c.stripes = stripes;
        }
    }

    /// The owner of `clientid` (the session ids of its sessions carry its hash).
    pub fn owner_of(&self, clientid: u64) -> NfsResult<Vec<u8>> {
        self.lock()
            .clients
            .get(&clientid)
            .map(|c| c.owner.clone())
            .ok_or(NfsError::StaleClientId)
    }

    /// Whether `clientid` reads striped flexfiles layouts (false for a client not known).
    pub fn stripes(&self, clientid: u64) -> bool {
        self.lock()
            .clients
            .get(&clientid)
            .is_some_and(|c| c.stripes)
    }

    /// Sessions, opens, locks, delegations or layouts: a client with any is in use.
    fn has_state(g: &Inner, clientid: u64) -> bool {
        g.sessions.values().any(|s| s.clientid == clientid)
            || g.states.values().any(|s| s.clientid == clientid)
    }

    /// CREATE_SESSION's client check. Only the principal that created a client record may
    /// confirm it (RFC 8881 §18.36.4; knfsd answers CLID_INUSE, as here).
    pub fn check_clientid(&self, clientid: u64, principal: u32) -> NfsResult<()> {
        let g = self.lock();
        if (clientid >> 32) as u32 != self.boot && !g.adopted.contains(&clientid) {
            return Err(NfsError::StaleClientId);
        }
        match g.clients.get(&clientid) {
            None => Err(NfsError::StaleClientId),
            Some(c) if !c.confirmed && c.principal != principal => Err(NfsError::ClidInUse),
            Some(_) => Ok(()),
        }
    }

    /// CREATE_SESSION's sequence check. Ok(None) = new request, Ok(Some(r)) = replay.
    pub fn create_session_seq(
        &self,
        clientid: u64,
        seq: u32,
    ) -> NfsResult<Option<std::sync::Arc<Vec<u8>>>> {
        let g = self.lock();
        let c = g.clients.get(&clientid).ok_or(NfsError::StaleClientId)?;
        if seq == c.cs_seq {
            Ok(None)
        } else if seq.wrapping_add(1) == c.cs_seq {
            c.last_cs_reply
                .clone()
                .map(Some)
                .ok_or(NfsError::SeqMisordered)
        } else {
            Err(NfsError::SeqMisordered)
        }
    }

    /// Confirms the client (first CREATE_SESSION), retiring any older record of the same owner,
    /// and installs the new session.
    pub fn create_session(
        &self,
        clientid: u64,
        session: Session,
        reply: std::sync::Arc<Vec<u8>>,
    ) -> NfsResult<()> {
        let mut g = self.lock();
        let owner = {
            let c = g
                .clients
                .get_mut(&clientid)
                .ok_or(NfsError::StaleClientId)?;
            c.cs_seq = c.cs_seq.wrapping_add(1);
            c.last_cs_reply = Some(reply);
            // A new session of a confirmed client needs no shard 0: cut off from the
            // majority, it must not renew the lease either (`crate::state::remote::isolation`).
            if self.quorum.vouching() {
                c.renewed = Instant::now();
            }
            if c.confirmed {
                None
            } else {
                c.confirmed = true;
                Some(c.owner.clone())
            }
        };
        if let Some(owner) = owner {
            let old: Vec<u64> = g
                .clients
                .values()
                .filter(|c| c.owner == owner && c.clientid != clientid)
                .map(|c| c.clientid)
                .collect();
            for id in old {
                Self::purge_client(&mut g, id);
            }
            // Recorded by the caller before this (`owner_to_record`); noted again in case
            // a removal was queued meanwhile.
            g.db.recorded(&owner);
        }
        g.sessions.insert(session.id, session);
        Ok(())
    }

    pub fn set_cs_reply(&self, clientid: u64, reply: std::sync::Arc<Vec<u8>>) {
        if let Some(c) = self.lock().clients.get_mut(&clientid) {
            c.last_cs_reply = Some(reply);
        }
    }

    pub fn destroy_clientid(&self, clientid: u64) -> NfsResult<()> {
        let mut g = self.lock();
        if !g.clients.contains_key(&clientid) {
            return Err(NfsError::StaleClientId);
        }
        if Self::has_state(&g, clientid) {
            return Err(NfsError::ClientIdBusy);
        }
        if let Some(c) = g.clients.remove(&clientid) {
            g.db.remove(&c.owner);
        }
        Ok(())
    }

    fn purge_client(g: &mut Inner, clientid: u64) {
        g.clients.remove(&clientid);
        g.adopted.remove(&clientid);
        let sessions: Vec<SessionId> = g
            .sessions
            .values()
            .filter(|s| s.clientid == clientid)
            .map(|s| s.id)
            .collect();
        for id in sessions {
            Self::remove_session(g, &id);
        }
        let dead: Vec<[u8; 12]> = g
            .states
            .iter()
            .filter(|(_, s)| s.clientid == clientid)
            .map(|(k, _)| *k)
            .collect();
        for other in dead {
            Self::drop_state(g, &other);
        }
        for f in g.files.values_mut() {
            f.locks.release_client(clientid);
        }
        g.open_index.retain(|k, _| k.0 != clientid);
        g.lock_index.retain(|k, _| k.0 != clientid);
        g.layout_index.retain(|k, _| k.0 != clientid);
        g.revoked.retain(|_, r| r.clientid != clientid);
    }

    fn drop_state(g: &mut Inner, other: &[u8; 12]) {
        if let Some(st) = g.states.remove(other) {
            if let Some(f) = g.files.get_mut(&st.ino) {
                f.states.remove(other);
                if let StateKind::Lock { owner, .. } = &st.kind {
                    f.locks.release_owner(&(st.clientid, owner.clone()));
                }
                if f.states.is_empty() && f.locks.is_empty() {
                    g.files.remove(&st.ino);
                }
            }
            match &st.kind {
                StateKind::Open { owner, .. } => {
                    g.open_index.remove(&(st.clientid, owner.clone(), st.ino));
                }
                StateKind::Lock { owner, .. } => {
                    g.lock_index.remove(&(st.clientid, owner.clone(), st.ino));
                }
                StateKind::Delegation { .. } => {}
                StateKind::Layout { .. } => {
                    g.layout_index.remove(&(st.clientid, st.ino));
                }
            }
        }
    }

    pub fn reclaim_complete(&self, clientid: u64) -> NfsResult<()> {
        let mut g = self.lock();
        let c = g
            .clients
            .get_mut(&clientid)
            .ok_or(NfsError::StaleClientId)?;
        if c.reclaim_complete {
            return Err(NfsError::CompleteAlready);
        }
        c.reclaim_complete = true;
        let owner = c.owner.clone();
        // Grace ends early only once every client of the previous instance is done, including
        // those that have not come back yet.
        g.awaiting_reclaim.remove(&owner);
        if g.grace_until.is_some() && g.awaiting_reclaim.is_empty() {
            tracing::info!("all reclaiming clients are done: grace period over");
            g.grace_until = None;
            g.grace_blocks_all = false;
        }
        Ok(())
    }

    /// Has this client sent RECLAIM_COMPLETE (for all file systems)?
    pub fn reclaim_completed(&self, clientid: u64) -> bool {
        self.lock()
            .clients
            .get(&clientid)
            .is_some_and(|c| c.reclaim_complete)
    }

    /// May this client reclaim state now? RFC 8881 §18.51.3: after the grace period or
    /// after the client's own RECLAIM_COMPLETE, NO_GRACE; a client the previous instance never
    /// knew, RECLAIM_BAD.
    pub fn check_reclaim(&self, clientid: u64) -> NfsResult<()> {
        let mut g = self.lock();
        if !Self::grace_on(&mut g) {
            return Err(NfsError::NoGrace);
        }
        match g.clients.get(&clientid) {
            Some(c) if c.reclaim_complete => Err(NfsError::NoGrace),
            Some(c) if c.may_reclaim => Ok(()),
            Some(_) => Err(NfsError::ReclaimBad),
            None => Err(NfsError::StaleClientId),
        }
    }

    // ---- sessions ------------------------------------------------------------------------

    pub fn with_session<R>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut Session) -> R,
    ) -> NfsResult<R> {
        let mut g = self.lock();
        let s = g.sessions.get_mut(id).ok_or(NfsError::BadSession)?;
        Ok(f(s))
    }

    /// A dead node's session, as `sequence` adopts it, for what else may name it first
    /// (BIND_CONN_TO_SESSION on a new connection); `principal`: who sent the request, `minor`:
    /// its COMPOUND's minor version.
    pub fn adopt_if_unknown(&self, id: &SessionId, principal: u32, minor: u32) {
        let mut g = self.lock();
        if !g.sessions.contains_key(id) {
            self.adopt(&mut g, id, principal, minor);
        }
    }

    /// SEQUENCE: slot check plus lease renewal of the owning client.
    /// A compound longer than the session's `ca_maxoperations`, or a request larger than its
    /// `ca_maxrequestsize`, fails here, before it takes a slot (as knfsd does). The connection
    /// it came on is bound to the session (knfsd does so for clients without state
    /// protection, which is all this server offers).
    pub fn sequence(&self, id: &SessionId, q: &SequenceQuery) -> NfsResult<Sequenced> {
        let mut g = self.lock();
        if !g.sessions.contains_key(id) && !self.adopt(&mut g, id, q.principal, q.minor) {
            return Err(NfsError::BadSession);
        }
        // Cut off from the majority: renewing the lease would vouch for locks the others
        // may soon grant elsewhere. Before the slot is taken, so the retry is a new request.
        if !self.quorum.vouching() {
            return Err(NfsError::Delay);
        }
        let s = g.sessions.get_mut(id).ok_or(NfsError::BadSession)?;
        if q.nops > s.fore.max_ops as usize {
            return Err(NfsError::TooManyOps);
        }
        if q.request_len > s.fore.max_request as usize {
            return Err(NfsError::ReqTooBig);
        }
        let used = s.check_slot(q.slot, q.seqid, q.highest)?;
        s.bind_conn(q.conn);
        let mut out = Sequenced {
            clientid: s.clientid,
            used,
            highest_slot: s.highest_slot(),
            cb_down: s.wants_back_channel && !s.back_channel_up(),
            max_response: s.fore.max_response,
            max_response_cached: s.fore.max_response_cached,
            revoked: false,
            adopted: s.adopted,
            reclaim_needed: false,
        };
        out.revoked = g.revoked.values().any(|r| r.clientid == out.clientid);
        if g.adopted.contains(&out.clientid) && Self::grace_on(&mut g) {
            out.reclaim_needed = g
                .clients
                .get(&out.clientid)
                .is_some_and(|c| !c.reclaim_complete);
        }
        if let Some(c) = g.clients.get_mut(&out.clientid) {
            c.renewed = Instant::now();
        }
        Ok(out)
    }

    pub fn finish_slot(
        &self,
        id: &SessionId,
        slot: u32,
        seqid: u32,
        reply: Option<std::sync::Arc<Vec<u8>>>,
    ) {
        if let Some(s) = self.lock().sessions.get_mut(id) {
            s.finish_slot(slot, seqid, reply);
        }
    }

    /// DESTROY_SESSION, sent on connection `conn`: only a connection bound to the session
    /// may destroy it (RFC 8881 §18.37.3; a SEQUENCE of the same session earlier in the
    /// compound has bound it).
    pub fn destroy_session(&self, id: &SessionId, conn: u64) -> NfsResult<()> {
        let mut g = self.lock();
        let s = g.sessions.get(id).ok_or(NfsError::BadSession)?;
        if !s.conn_bound(conn) {
            return Err(NfsError::ConnNotBoundToSession);
        }
        Self::remove_session(&mut g, id);
        Ok(())
    }

    pub fn back_channel(&self, clientid: u64) -> Option<BackChannel> {
        let g = self.lock();
        g.sessions
            .values()
            .filter(|s| s.clientid == clientid)
            .find_map(|s| {
                s.back_conn
                    .as_ref()
                    .filter(|c| !c.is_closed())
                    .map(|c| BackChannel {
                        conn: c.clone(),
                        session: s.id,
                        program: s.cb_program,
                        cred: s.cb_cred.clone(),
                        minor: s.minor,
                    })
            })
    }

    /// Takes the next back-channel sequence id of a session (slot 0 only: we send one
    /// callback at a time per session).
    pub fn next_cb_seq(&self, id: &SessionId) -> Option<u32> {
        let mut g = self.lock();
        let s = g.sessions.get_mut(id)?;
        s.cb_seqid = s.cb_seqid.wrapping_add(1);
        Some(s.cb_seqid)
    }

    // ---- stateids ------------------------------------------------------------------------

    /// Validates a stateid the client presents for `ino`; returns its state.
    pub fn check_stateid(&self, sid: &StateId, ino: u64) -> NfsResult<State> {
        let g = self.lock();
        self.check_locked(&g, sid, Some(ino))
    }

    fn check_locked(&self, g: &Inner, sid: &StateId, ino: Option<u64>) -> NfsResult<State> {
        if sid.other[0..4] != self.boot.to_be_bytes() {
            // Another server instance's (an earlier boot, or another node's before a
            // takeover). Every v4.1 call comes through a session, so BAD_STATEID, as knfsd
            // answers (nfsd4_lookup_stateid): STALE_STATEID sends Linux to check its lease,
            // which is fine, and to send the call again, forever (6.1's LAYOUTGET, seen).
            return Err(NfsError::BadStateId);
        }
        let Some(st) = g.states.get(&sid.other) else {
            return Err(if g.revoked.contains_key(&sid.other) {
                NfsError::DelegRevoked
            } else {
                NfsError::BadStateId
            });
        };
        if let Some(ino) = ino {
            if st.ino != ino {
                return Err(NfsError::BadStateId);
            }
        }
        if sid.seqid != 0 {
            if sid.seqid > st.seqid {
                return Err(NfsError::BadStateId);
            }
            if sid.seqid < st.seqid {
                return Err(NfsError::OldStateId);
            }
        }
        Ok(st.clone())
    }

    /// Checks that I/O under `sid` may proceed: opens and locks must allow the access, and
    /// with a special stateid no other client's share reservation may deny it.
    pub fn check_io(&self, sid: &StateId, ino: u64, write: bool) -> NfsResult<()> {
        let mut g = self.lock();
        let need = if write {
            OPEN4_SHARE_ACCESS_WRITE
        } else {
            OPEN4_SHARE_ACCESS_READ
        };
        if is_special(sid) {
            // I/O outside any open meets every open's deny bits; a courtesy client's go.
            if self.share_conflict_left(&mut g, 0, &[], ino, need, 0) {
                return Err(NfsError::Locked);
            }
            return Ok(());
        }
        let st = self.check_locked(&g, sid, Some(ino))?;
        let access = match &st.kind {
            StateKind::Open { access, .. } => *access,
            StateKind::Lock { open, .. } => match g.states.get(open) {
                Some(State {
                    kind: StateKind::Open { access, .. },
                    ..
                }) => *access,
                _ => return Err(NfsError::BadStateId),
            },
            StateKind::Delegation { write: w, .. } => {
                if *w {
                    OPEN4_SHARE_ACCESS_BOTH
                } else {
                    OPEN4_SHARE_ACCESS_READ
                }
            }
            // Layout stateids name layouts, not access: never good for READ or WRITE.
            StateKind::Layout { .. } => return Err(NfsError::BadStateId),
        };
        // Linux reads through write-only opens to fill its page cache; knfsd allows it too.
        if write && access & OPEN4_SHARE_ACCESS_WRITE == 0 {
            return Err(NfsError::OpenMode);
        }
        Ok(())
    }

    /// Byte-range check for I/O: a conflicting lock held by another owner → NFS4ERR_LOCKED.
    pub fn check_lock_conflict(
        &self,
        sid: &StateId,
        ino: u64,
        offset: u64,
        len: u64,
        write: bool,
    ) -> NfsResult<()> {
        let mut g = self.lock();
        let owner: OwnerKey = match g.states.get(&sid.other) {
            Some(State {
                clientid,
                kind: StateKind::Lock { owner, .. },
                ..
            }) => (*clientid, owner.clone()),
            _ => (0, Vec::new()),
        };
        let kind = if write {
            LockKind::Write
        } else {
            LockKind::Read
        };
        let end = locks::end_of(offset, len.max(1));
        while let Some(c) = Self::lock_conflict(&g, ino, &owner, offset, end, kind) {
            if !self.expire_if_lapsed(&mut g, c) {
                return Err(NfsError::Locked);
            }
        }
        Ok(())
    }

    // ---- opens ---------------------------------------------------------------------------

    /// The client of another open of `ino` whose share reservation conflicts with this one.
    fn share_conflict(
        g: &Inner,
        clientid: u64,
        owner: &[u8],
        ino: u64,
        access: u32,
        deny: u32,
    ) -> Option<u64> {
        let f = g.files.get(&ino)?;
        f.states.iter().find_map(|o| match g.states.get(o) {
            Some(State {
                clientid: c,
                kind:
                    StateKind::Open {
                        owner: ow,
                        access: a,
                        deny: d,
                    },
                ..
            }) if !(*c == clientid && ow == owner) && (access & d != 0 || deny & a != 0) => {
                Some(*c)
            }
            _ => None,
        })
    }

    /// Whether another open of `ino` still conflicts with these share bits once every
    /// courtesy client in the way is expired.
    fn share_conflict_left(
        &self,
        g: &mut Inner,
        clientid: u64,
        owner: &[u8],
        ino: u64,
        access: u32,
        deny: u32,
    ) -> bool {
        while let Some(c) = Self::share_conflict(g, clientid, owner, ino, access, deny) {
            if !self.expire_if_lapsed(g, c) {
                return true;
            }
        }
        false
    }

    pub fn open(
        &self,
        clientid: u64,
        owner: &[u8],
        ino: u64,
        access: u32,
        deny: u32,
    ) -> NfsResult<StateId> {
        let mut g = self.lock();
        // Share reservations (RFC 8881 §9.7) against every other open of the file; a courtesy
        // client in the way is expired.
        if self.share_conflict_left(&mut g, clientid, owner, ino, access, deny) {
            return Err(NfsError::ShareDenied);
        }
        let key = (clientid, owner.to_vec(), ino);
        if let Some(other) = g.open_index.get(&key).copied() {
            if let Some(st) = g.states.get_mut(&other) {
                st.seqid = st.seqid.wrapping_add(1);
                if let StateKind::Open {
                    access: a, deny: d, ..
                } = &mut st.kind
                {
                    *a |= access;
                    *d |= deny;
                }
                return Ok(StateId {
                    seqid: st.seqid,
                    other,
                });
            }
        }
        let other = self.new_other(&mut g, 1);
        g.states.insert(
            other,
            State {
                clientid,
                ino,
                seqid: 1,
                kind: StateKind::Open {
                    owner: owner.to_vec(),
                    access,
                    deny,
                },
            },
        );
        g.files.entry(ino).or_default().states.insert(other);
        g.open_index.insert(key, other);
        Ok(StateId { seqid: 1, other })
    }

    pub fn open_downgrade(
        &self,
        sid: &StateId,
        ino: u64,
        access: u32,
        deny: u32,
    ) -> NfsResult<StateId> {
        let mut g = self.lock();
        self.check_locked(&g, sid, Some(ino))?;
        let st = g.states.get_mut(&sid.other).ok_or(NfsError::BadStateId)?;
        match &mut st.kind {
            StateKind::Open {
                access: a, deny: d, ..
            } => {
                if access & !*a != 0 || deny & !*d != 0 || access == 0 {
                    return Err(NfsError::Inval);
                }
                *a = access;
                *d = deny;
            }
            _ => return Err(NfsError::BadStateId),
        }
        st.seqid = st.seqid.wrapping_add(1);
        Ok(StateId {
            seqid: st.seqid,
            other: sid.other,
        })
    }

    /// CLOSE: the open goes, and with it the lock stateids opened under it (Linux unlocks
    /// before closing; anything left is released rather than refused).
    pub fn close(&self, sid: &StateId, ino: u64) -> NfsResult<()> {
        let mut g = self.lock();
        let st = self.check_locked(&g, sid, Some(ino))?;
        if !matches!(st.kind, StateKind::Open { .. }) {
            return Err(NfsError::BadStateId);
        }
        let children: Vec<[u8; 12]> = g
            .states
            .iter()
            .filter(|(_, s)| matches!(&s.kind, StateKind::Lock { open, .. } if *open == sid.other))
            .map(|(k, _)| *k)
            .collect();
        for c in children {
            Self::drop_state(&mut g, &c);
        }
        Self::drop_state(&mut g, &sid.other);
        Ok(())
    }

    /// Whether any client still has the file open (an unlinked file's data must stay).
    /// Only opens count: a client unlinks a file it has open locally by renaming it instead
    /// (silly rename), so a delegation alone must not keep an unlinked file alive.
    /// Whether anyone may write `ino` without asking first: an open for writing, an RW layout or
    /// a write delegation. The encoder leaves such files mirrored.
    pub fn file_writable_by_someone(&self, ino: u64) -> bool {
        let g = self.lock();
        g.files.get(&ino).is_some_and(|f| {
            f.states
                .iter()
                .any(|o| match g.states.get(o).map(|s| &s.kind) {
                    Some(StateKind::Open { access, .. }) => access & OPEN4_SHARE_ACCESS_WRITE != 0,
                    Some(StateKind::Layout { rw }) => *rw,
                    Some(StateKind::Delegation { write, .. }) => *write,
                    _ => false,
                })
        })
    }

    pub fn file_in_use(&self, ino: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            matches!(st.kind, StateKind::Open { .. })
        })
    }

    /// Whether some state on `ino` is `what`.
    fn any_state(g: &Inner, ino: u64, what: impl Fn(&State) -> bool) -> bool {
        g.files
            .get(&ino)
            .is_some_and(|f| f.states.iter().any(|o| g.states.get(o).is_some_and(&what)))
    }

    /// The file is gone: delegations on it go with it.
    pub fn forget_file(&self, ino: u64) {
        let mut g = self.lock();
        let Some(f) = g.files.get(&ino) else { return };
        let ids: Vec<[u8; 12]> = f.states.iter().copied().collect();
        for other in ids {
            if matches!(
                g.states.get(&other),
                Some(State {
                    kind: StateKind::Delegation { .. } | StateKind::Layout { .. },
                    ..
                })
            ) {
                Self::drop_state(&mut g, &other);
            }
        }
    }

    // ---- locks ---------------------------------------------------------------------------

    /// The client holding a lock on `ino` that conflicts with `owner`'s request.
    fn lock_conflict(
        g: &Inner,
        ino: u64,
        owner: &OwnerKey,
        start: u64,
        end: u64,
        kind: LockKind,
    ) -> Option<u64> {
        let f = g.files.get(&ino)?;
        f.locks.conflict(owner, start, end, kind).map(|r| r.owner.0)
    }

    /// LOCK with a new lock owner, started from an open stateid.
    #[allow(clippy::too_many_arguments)]
    pub fn lock_new_owner(
        &self,
        clientid: u64,
        open_sid: &StateId,
        lock_owner: &[u8],
        ino: u64,
        kind: LockKind,
        offset: u64,
        length: u64,
    ) -> NfsResult<Result<StateId, Denied>> {
        let mut g = self.lock();
        let open = self.check_locked(&g, open_sid, Some(ino))?;
        if !matches!(open.kind, StateKind::Open { .. }) || open.clientid != clientid {
            return Err(NfsError::BadStateId);
        }
        let key = (clientid, lock_owner.to_vec(), ino);
        let other = match g.lock_index.get(&key).copied() {
            Some(o) => o,
            None => {
                let o = self.new_other(&mut g, 2);
                g.states.insert(
                    o,
                    State {
                        clientid,
                        ino,
                        seqid: 0,
                        kind: StateKind::Lock {
                            owner: lock_owner.to_vec(),
                            open: open_sid.other,
                        },
                    },
                );
                g.files.entry(ino).or_default().states.insert(o);
                g.lock_index.insert(key, o);
                o
            }
        };
        Ok(self.apply_lock(&mut g, other, ino, kind, offset, length))
    }

    /// LOCK by an owner that already has a lock stateid.
    pub fn lock_existing(
        &self,
        lock_sid: &StateId,
        ino: u64,
        kind: LockKind,
        offset: u64,
        length: u64,
    ) -> NfsResult<Result<StateId, Denied>> {
        let mut g = self.lock();
        let st = self.check_locked(&g, lock_sid, Some(ino))?;
        if !matches!(st.kind, StateKind::Lock { .. }) {
            return Err(NfsError::BadStateId);
        }
        Ok(self.apply_lock(&mut g, lock_sid.other, ino, kind, offset, length))
    }

    fn apply_lock(
        &self,
        g: &mut Inner,
        other: [u8; 12],
        ino: u64,
        kind: LockKind,
        offset: u64,
        length: u64,
    ) -> Result<StateId, Denied> {
        let Some(st) = g.states.get(&other).cloned() else {
            return Err(Denied {
                range: Range {
                    owner: (0, Vec::new()),
                    start: offset,
                    end: offset,
                    kind,
                },
            });
        };
        let StateKind::Lock { owner, .. } = &st.kind else {
            return Err(Denied {
                range: Range {
                    owner: (0, Vec::new()),
                    start: offset,
                    end: offset,
                    kind,
                },
            });
        };
        let okey: OwnerKey = (st.clientid, owner.clone());
        let end = locks::end_of(offset, length);
        // A courtesy client's conflicting lock goes with the client (knfsd's
        // lm_lock_expirable).
        while let Some(c) = Self::lock_conflict(g, ino, &okey, offset, end, kind) {
            if !self.expire_if_lapsed(g, c) {
                break;
            }
        }
        let f = g.files.entry(ino).or_default();
        f.locks
            .lock(&okey, offset, locks::end_of(offset, length), kind)
            .map_err(|range| Denied { range })?;
        let st = g.states.get_mut(&other).ok_or(Denied {
            range: Range {
                owner: okey,
                start: offset,
                end: offset,
                kind,
            },
        })?;
        st.seqid = st.seqid.wrapping_add(1);
        Ok(StateId {
            seqid: st.seqid,
            other,
        })
    }

    pub fn unlock(
        &self,
        lock_sid: &StateId,
        ino: u64,
        offset: u64,
        length: u64,
    ) -> NfsResult<StateId> {
        let mut g = self.lock();
        let st = self.check_locked(&g, lock_sid, Some(ino))?;
        let StateKind::Lock { owner, .. } = &st.kind else {
            return Err(NfsError::BadStateId);
        };
        let okey: OwnerKey = (st.clientid, owner.clone());
        if let Some(f) = g.files.get_mut(&ino) {
            f.locks.unlock(&okey, offset, locks::end_of(offset, length));
        }
        let st = g
            .states
            .get_mut(&lock_sid.other)
            .ok_or(NfsError::BadStateId)?;
        st.seqid = st.seqid.wrapping_add(1);
        Ok(StateId {
            seqid: st.seqid,
            other: lock_sid.other,
        })
    }

    /// The lock owner of a lock stateid (LOCK with an existing owner), checked as LOCK would.
    pub fn lock_owner_of(&self, lock_sid: &StateId, ino: u64) -> NfsResult<OwnerKey> {
        let g = self.lock();
        let st = self.check_locked(&g, lock_sid, Some(ino))?;
        match &st.kind {
            StateKind::Lock { owner, .. } => Ok((st.clientid, owner.clone())),
            _ => Err(NfsError::BadStateId),
        }
    }

    /// Every byte-range lock this node's clients hold on `ino` (what the file's lock arbiter
    /// asks, `crate::state::remote::locking`). With `probe`, a courtesy client whose lock is in its way goes
    /// first, as for a local LOCK.
    pub fn locks_on(&self, ino: u64, probe: Option<&Range>) -> Vec<Range> {
        let mut g = self.lock();
        if let Some(p) = probe {
            while let Some(c) = Self::lock_conflict(&g, ino, &p.owner, p.start, p.end, p.kind) {
                if !self.expire_if_lapsed(&mut g, c) {
                    break;
                }
            }
        }
        g.files
            .get(&ino)
            .map(|f| f.locks.ranges().to_vec())
            .unwrap_or_default()
    }

    /// LOCKT: who would block this lock (the owner given is never its own obstacle).
    pub fn test_lock(
        &self,
        clientid: u64,
        owner: &[u8],
        ino: u64,
        kind: LockKind,
        offset: u64,
        length: u64,
    ) -> Option<Range> {
        let mut g = self.lock();
        let okey: OwnerKey = (clientid, owner.to_vec());
        let end = locks::end_of(offset, length);
        // LOCKT expires a courtesy client in the way too, as knfsd's posix_test_lock does.
        while let Some(c) = Self::lock_conflict(&g, ino, &okey, offset, end, kind) {
            if !self.expire_if_lapsed(&mut g, c) {
                break;
            }
        }
        let f = g.files.get(&ino)?;
        f.locks.conflict(&okey, offset, end, kind).cloned()
    }

    /// FREE_STATEID by `clientid`: a lock stateid holding no locks, or a delegation revoked
    /// from this client. The holder frees a revoked delegation once it has learnt of the
    /// revocation (RFC 8881 §8.2.4); that clears SEQ4_STATUS_RECALLABLE_STATE_REVOKED.
    pub fn free_stateid(&self, clientid: u64, sid: &StateId) -> NfsResult<()> {
        let mut g = self.lock();
        if g.revoked
            .get(&sid.other)
            .is_some_and(|r| r.clientid == clientid)
        {
            g.revoked.remove(&sid.other);
            return Ok(());
        }
        let st = self.check_locked(&g, sid, None)?;
        match &st.kind {
            StateKind::Lock { owner, .. } => {
                if g.files
                    .get(&st.ino)
                    .is_some_and(|f| f.locks.owner_holds_any(&(st.clientid, owner.clone())))
                {
                    return Err(NfsError::LocksHeld);
                }
                Self::drop_state(&mut g, &sid.other);
                Ok(())
            }
            _ => Err(NfsError::LocksHeld),
        }
    }

    /// TEST_STATEID for one stateid.
    pub fn test_stateid(&self, sid: &StateId) -> Result<(), NfsError> {
        let g = self.lock();
        self.check_locked(&g, sid, None).map(|_| ())
    }

    pub fn release_lockowner(&self, clientid: u64, owner: &[u8]) -> NfsResult<()> {
        let mut g = self.lock();
        let okey: OwnerKey = (clientid, owner.to_vec());
        if g.files.values().any(|f| f.locks.owner_holds_any(&okey)) {
            return Err(NfsError::LocksHeld);
        }
        let dead: Vec<[u8; 12]> = g
            .lock_index
            .iter()
            .filter(|(k, _)| k.0 == clientid && k.1 == owner)
            .map(|(_, v)| *v)
            .collect();
        for d in dead {
            Self::drop_state(&mut g, &d);
        }
        Ok(())
    }
}

impl StateManager {
    /// Grants `clientid` a read delegation on `ino` if nobody else may write it and the client
    /// holds none there yet. (Exclusive locks need write opens, which recall read delegations,
    /// so a client caching its locks under one cannot hide a conflict.) Directory delegations
    /// are granted here too: nobody opens a directory, so only the holder and recall checks
    /// apply.
    pub fn grant_read_delegation(&self, clientid: u64, ino: u64) -> Option<StateId> {
        let mut g = self.lock();
        if let Some(t) = g.recalled_lately.get(&ino) {
            if t.elapsed() < RECALL_BACKOFF {
                return None;
            }
            g.recalled_lately.remove(&ino);
        }
        if let Some(f) = g.files.get(&ino) {
            for o in &f.states {
                match g.states.get(o) {
                    Some(State {
                        clientid: c,
                        kind: StateKind::Open { access, .. },
                        ..
                    }) if *c != clientid && access & OPEN4_SHARE_ACCESS_WRITE != 0 => return None,
                    Some(State {
                        clientid: c,
                        kind:
                            StateKind::Delegation {
                                write, recalled, ..
                            },
                        ..
                    }) if *c == clientid || *write || recalled.is_some() => return None,
                    _ => {}
                }
            }
        }
        let other = self.new_other(&mut g, 3);
        g.states.insert(
            other,
            State {
                clientid,
                ino,
                seqid: 1,
                kind: StateKind::Delegation {
                    write: false,
                    recalled: None,
                    recall_acked: false,
                },
            },
        );
        g.files.entry(ino).or_default().states.insert(other);
        Some(StateId { seqid: 1, other })
    }

    /// Whether an open here conflicts with another node's open of `ino` with these share bits
    /// (`remote_shares`); a courtesy client in the way is expired, as for a local open.
    pub fn share_blocked(&self, ino: u64, access: u32, deny: u32) -> bool {
        self.share_conflict_left(&mut self.lock(), 0, &[], ino, access, deny)
    }

    /// What the opens of `ino` here deny, once courtesy clients whose opens deny `access`
    /// (another node's open that asks) are expired.
    pub fn deny_bits(&self, ino: u64, access: u32) -> u32 {
        let mut g = self.lock();
        self.share_conflict_left(&mut g, 0, &[], ino, access, 0);
        let Some(f) = g.files.get(&ino) else {
            return 0;
        };
        f.states
            .iter()
            .filter_map(|o| match g.states.get(o) {
                Some(State {
                    kind: StateKind::Open { deny, .. },
                    ..
                }) => Some(*deny),
                _ => None,
            })
            .fold(0, |acc, d| acc | d)
    }

    /// Whether any client has `ino` open for writing (another node is about to delegate it).
    pub fn write_opened(&self, ino: u64) -> bool {
        Self::any_state(
            &self.lock(),
            ino,
            |st| matches!(st.kind, StateKind::Open { access, .. } if access & OPEN4_SHARE_ACCESS_WRITE != 0),
        )
    }

    /// Those of `inos` some client holds a delegation on.
    pub fn delegated(&self, inos: &[u64]) -> Vec<u64> {
        let g = self.lock();
        inos.iter()
            .copied()
            .filter(|ino| {
                Self::any_state(&g, *ino, |st| {
                    matches!(st.kind, StateKind::Delegation { .. })
                })
            })
            .collect()
    }

    /// Delegations of other clients on `ino` that must be recalled before `clientid` may
    /// change it. Delegations not returned a lease after their recall are revoked here.
    pub fn delegation_conflicts(&self, ino: u64, clientid: u64) -> Vec<Conflict> {
        let mut g = self.lock();
        let Some(f) = g.files.get(&ino) else {
            return Vec::new();
        };
        let ids: Vec<[u8; 12]> = f.states.iter().copied().collect();
        // A courtesy client's delegation is no reason to wait: the client goes, and its
        // delegation with it (knfsd's nfsd_break_deleg_cb expires it too).
        let holders: HashSet<u64> = ids
            .iter()
            .filter_map(|o| g.states.get(o))
            .filter(|st| st.clientid != clientid && matches!(st.kind, StateKind::Delegation { .. }))
            .map(|st| st.clientid)
            .collect();
        for c in holders {
            self.expire_if_lapsed(&mut g, c);
        }
        let mut out = Vec::new();
        let mut revoke = Vec::new();
        let mut recalled_now = false;
        for other in ids {
            let Some(st) = g.states.get_mut(&other) else {
                continue;
            };
            if st.clientid == clientid {
                continue;
            }
            if let StateKind::Delegation { recalled, .. } = &mut st.kind {
                match recalled {
                    Some(t) if t.elapsed() > self.lease => revoke.push(other),
                    Some(_) => out.push(Conflict {
                        clientid: st.clientid,
                        stateid: StateId {
                            seqid: st.seqid,
                            other,
                        },
                        needs_recall: false,
                    }),
                    None => {
                        *recalled = Some(Instant::now());
                        recalled_now = true;
                        out.push(Conflict {
                            clientid: st.clientid,
                            stateid: StateId {
                                seqid: st.seqid,
                                other,
                            },
                            needs_recall: true,
                        });
                    }
                }
            }
        }
        for other in revoke {
            tracing::warn!(
                ino,
                "revoking a delegation not returned within the lease after recall"
            );
            Self::revoke_delegation(&mut g, &other);
        }
        if recalled_now {
            if g.recalled_lately.len() >= RECALLED_LATELY_PRUNE {
                g.recalled_lately
                    .retain(|_, t| t.elapsed() < RECALL_BACKOFF);
            }
            g.recalled_lately.insert(ino, Instant::now());
        }
        out
    }

    /// Takes a delegation away from a holder that did not return it; its stateid answers
    /// DELEG_REVOKED until the holder frees it (`free_stateid`).
    fn revoke_delegation(g: &mut Inner, other: &[u8; 12]) {
        let Some(clientid) = g.states.get(other).map(|st| st.clientid) else {
            return;
        };
        Self::drop_state(g, other);
        if g.revoked.len() >= MAX_REVOKED {
            if let Some(k) = g.revoked.keys().next().copied() {
                g.revoked.remove(&k);
            }
        }
        g.revoked.insert(*other, Revoked { clientid });
    }

    /// The holder answered the CB_RECALL of `sid`: no need to send it again.
    pub fn recall_acked(&self, sid: &StateId) {
        if let Some(State {
            kind: StateKind::Delegation { recall_acked, .. },
            ..
        }) = self.lock().states.get_mut(&sid.other)
        {
            *recall_acked = true;
        }
    }

    /// `clientid`'s delegations recalled without an answer (the back channel was down or the
    /// call failed), with their files: to recall again on a new back channel.
    pub fn unanswered_recalls(&self, clientid: u64) -> Vec<(StateId, u64)> {
        let g = self.lock();
        g.states
            .iter()
            .filter_map(|(other, st)| match st.kind {
                StateKind::Delegation {
                    recalled: Some(_),
                    recall_acked: false,
                    ..
                } if st.clientid == clientid => Some((
                    StateId {
                        seqid: st.seqid,
                        other: *other,
                    },
                    st.ino,
                )),
                _ => None,
            })
            .collect()
    }

    /// DELEGRETURN.
    pub fn return_delegation(&self, sid: &StateId, ino: u64) -> NfsResult<()> {
        let mut g = self.lock();
        let st = self.check_locked(&g, sid, Some(ino))?;
        if !matches!(st.kind, StateKind::Delegation { .. }) {
            return Err(NfsError::BadStateId);
        }
        Self::drop_state(&mut g, &sid.other);
        drop(g);
        self.returned.notify_waiters();
        Ok(())
    }

    /// An open claimed under a delegation the client holds (CLAIM_DELEG_CUR_FH during recall).
    pub fn check_delegation(&self, sid: &StateId, ino: u64, clientid: u64) -> NfsResult<()> {
        let g = self.lock();
        let st = self.check_locked(&g, sid, Some(ino))?;
        match st.kind {
            StateKind::Delegation { .. } if st.clientid == clientid => Ok(()),
            _ => Err(NfsError::BadStateId),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgr() -> (StateManager, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let (db, prev) = (ClientDb::default(), BTreeSet::new());
        (
            StateManager::new(
                3,
                Duration::from_secs(30),
                Duration::from_secs(30),
                db,
                prev,
            ),
            d,
        )
    }

    #[test]
    fn share_reservations_and_stateid_seqids() {
        let (m, _d) = mgr();
        let a = m
            .open(
                1,
                b"a",
                10,
                OPEN4_SHARE_ACCESS_READ,
                OPEN4_SHARE_ACCESS_WRITE,
            )
            .unwrap();
        assert_eq!(
            m.open(1, b"b", 10, OPEN4_SHARE_ACCESS_WRITE, 0)
                .unwrap_err(),
            NfsError::ShareDenied
        );
        let b = m.open(1, b"b", 10, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        assert_ne!(a.other, b.other);
        // Upgrade by the same owner bumps the seqid; the old one becomes OLD_STATEID.
        let a2 = m.open(1, b"a", 10, OPEN4_SHARE_ACCESS_BOTH, 0).unwrap();
        assert_eq!(a2.seqid, 2);
        assert_eq!(m.check_stateid(&a, 10).unwrap_err(), NfsError::OldStateId);
        assert_eq!(m.check_stateid(&a2, 11).unwrap_err(), NfsError::BadStateId);
        let d = m
            .open_downgrade(&a2, 10, OPEN4_SHARE_ACCESS_READ, 0)
            .unwrap();
        assert_eq!(m.check_io(&d, 10, true).unwrap_err(), NfsError::OpenMode);
        m.close(&d, 10).unwrap();
        assert_eq!(m.check_stateid(&d, 10).unwrap_err(), NfsError::BadStateId);
        let stale = StateId {
            seqid: 1,
            other: [9; 12],
        };
        assert_eq!(
            m.check_stateid(&stale, 10).unwrap_err(),
            NfsError::BadStateId
        );
    }

    #[test]
    fn locks_between_owners() {
        let (m, _d) = mgr();
        let o1 = m.open(1, b"p1", 5, OPEN4_SHARE_ACCESS_BOTH, 0).unwrap();
        let o2 = m.open(2, b"p2", 5, OPEN4_SHARE_ACCESS_BOTH, 0).unwrap();
        let l1 = m
            .lock_new_owner(1, &o1, b"l1", 5, LockKind::Write, 0, 100)
            .unwrap()
            .unwrap();
        let denied = m
            .lock_new_owner(2, &o2, b"l2", 5, LockKind::Read, 50, 1)
            .unwrap()
            .unwrap_err();
        assert_eq!(denied.range.owner, (1, b"l1".to_vec()));
        assert!(m.test_lock(2, b"l2", 5, LockKind::Read, 50, 1).is_some());
        assert_eq!(
            m.check_lock_conflict(&o2, 5, 10, 1, true).unwrap_err(),
            NfsError::Locked
        );
        let l1 = m.unlock(&l1, 5, 0, u64::MAX).unwrap();
        assert!(m
            .test_lock(2, b"l2", 5, LockKind::Write, 0, u64::MAX)
            .is_none());
        m.free_stateid(1, &l1).unwrap();
    }

    #[test]
    fn exchange_id_cases() {
        let (m, _d) = mgr();
        let (c1, seq, confirmed) = m.exchange_id(b"host", [1; 8], 0, false).unwrap();
        assert_eq!((seq, confirmed), (1, false));
        // Unconfirmed record is replaced by a retry.
        let (c2, _, _) = m.exchange_id(b"host", [1; 8], 0, false).unwrap();
        assert_ne!(c1, c2);
        assert_eq!(
            m.check_clientid(c1, 0).unwrap_err(),
            NfsError::StaleClientId
        );
        // Only its own principal may confirm it.
        assert_eq!(m.check_clientid(c2, 7).unwrap_err(), NfsError::ClidInUse);
        assert!(m.create_session_seq(c2, 1).unwrap().is_none());
        assert_eq!(
            m.create_session_seq(c2, 7).unwrap_err(),
            NfsError::SeqMisordered
        );
    }

    #[test]
    fn read_delegations_are_exclusive_of_other_writers() {
        let (m, _d) = mgr();
        m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        let d = m.grant_read_delegation(1, 7).unwrap();
        // Not twice to the same client; other readers may get their own.
        assert!(m.grant_read_delegation(1, 7).is_none());
        assert!(m.grant_read_delegation(2, 7).is_some());
        // A third client wanting to write meets both: the first call asks for recalls ...
        let c = m.delegation_conflicts(7, 3);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.needs_recall));
        // ... later calls wait for the returns without recalling again.
        assert!(m.delegation_conflicts(7, 3).iter().all(|c| !c.needs_recall));
        m.return_delegation(&d, 7).unwrap();
        assert_eq!(m.delegation_conflicts(7, 3).len(), 1);
        // Once somebody else writes, no new read delegation is granted.
        m.open(3, b"w", 8, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        assert!(m.grant_read_delegation(1, 8).is_none());
    }

    fn mgr_after_restart(previous: &[&[u8]]) -> (StateManager, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let prev: BTreeSet<Vec<u8>> = previous.iter().map(|o| o.to_vec()).collect();
        let db = ClientDb::new(prev.clone());
        (
            StateManager::new(
                3,
                Duration::from_secs(30),
                Duration::from_secs(30),
                db,
                prev,
            ),
            d,
        )
    }

    fn confirmed(m: &StateManager, owner: &[u8]) -> u64 {
        let (c, seq, _) = m.exchange_id(owner, [1; 8], 0, false).unwrap();
        let s = Session {
            id: [owner.len() as u8; 16],
            clientid: c,
            fore: ChannelAttrs {
                max_request: 4096,
                max_response: 4096,
                max_response_cached: 4096,
                max_ops: 8,
                max_requests: 1,
            },
            back: ChannelAttrs {
                max_request: 4096,
                max_response: 4096,
                max_response_cached: 4096,
                max_ops: 8,
                max_requests: 1,
            },
            slots: vec![Slot::default()],
            cb_program: 0,
            back_conn: None,
            wants_back_channel: false,
            cb_seqid: 0,
            minor: 1,
            cb_cred: proto::rpc::Auth::None,
            conns: Vec::new(),
            drc_reserved: 0,
            drc_cached: 0,
            adopted: false,
        };
        assert!(m.create_session_seq(c, seq).unwrap().is_none());
        m.create_session(c, s, std::sync::Arc::new(Vec::new()))
            .unwrap();
        c
    }

    #[test]
    fn only_previous_clients_reclaim_and_grace_waits_for_all_of_them() {
        let (m, _d) = mgr_after_restart(&[b"old-a", b"old-b"]);
        assert!(m.in_grace());
        let a = confirmed(&m, b"old-a");
        let stranger = confirmed(&m, b"new-host");
        assert_eq!(m.check_reclaim(a), Ok(()));
        assert_eq!(m.check_reclaim(stranger), Err(NfsError::ReclaimBad));
        m.reclaim_complete(a).unwrap();
        assert_eq!(m.check_reclaim(a), Err(NfsError::NoGrace));
        // old-b has not come back: grace goes on for it.
        assert!(m.in_grace());
        let b = confirmed(&m, b"old-b");
        m.reclaim_complete(b).unwrap();
        assert!(!m.in_grace());
    }

    #[test]
    fn a_takeover_lets_the_dead_nodes_clients_reclaim_and_blocks_nobody_else() {
        let (m, _d) = mgr_after_restart(&[]);
        let mine = confirmed(&m, b"mine");
        m.reclaim_complete(mine).unwrap();
        assert_eq!(m.take_forgotten(), Vec::<Vec<u8>>::new());
        m.begin_takeover([b"theirs".to_vec()].into(), Duration::from_secs(30));
        // This node's own clients go on taking new state...
        assert!(!m.in_grace());
        // ...while the dead node's client may reclaim, and a stranger may not.
        let theirs = confirmed(&m, b"theirs");
        let stranger = confirmed(&m, b"stranger");
        assert_eq!(m.check_reclaim(theirs), Ok(()));
        assert_eq!(m.check_reclaim(stranger), Err(NfsError::ReclaimBad));
        // Confirmed owners are recorded already (taken over, or by CREATE_SESSION's caller).
        assert_eq!(m.owner_to_record(theirs), None);
        m.reclaim_complete(theirs).unwrap();
        assert_eq!(m.check_reclaim(theirs), Err(NfsError::NoGrace));
    }

    /// The check of this node's own records after its start may come after a takeover (its
    /// shard 0 barrier waited out elections): the dead node's clients are not among this
    /// node's records yet, and their grace goes on. It once ended it at once, and the dead
    /// node's delegations and deny opens with it (`metadata_cluster.rs`
    /// `a_dead_nodes_deny_open_holds_until_its_client_reclaimed_it_at_the_taker`, 1 run in 2).
    #[test]
    fn a_late_check_of_this_nodes_records_leaves_a_takeovers_grace_alone() {
        let (m, _d) = mgr_after_restart(&[b"old-mine"]);
        m.begin_takeover([b"theirs".to_vec()].into(), Duration::from_secs(30));
        m.keep_reclaimers(&BTreeSet::new());
        assert!(m.reclaims_open(), "the takeover's grace ended");
        let theirs = confirmed(&m, b"theirs");
        assert_eq!(m.check_reclaim(theirs), Ok(()));
        m.reclaim_complete(theirs).unwrap();
        assert!(!m.reclaims_open());
    }

    #[test]
    fn silent_clients_keep_their_locks_until_a_conflict() {
        let m = StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        );
        let c = confirmed(&m, b"gone");
        let o = m.open(c, b"o", 9, OPEN4_SHARE_ACCESS_BOTH, 0).unwrap();
        m.lock_new_owner(c, &o, b"l", 9, LockKind::Write, 0, 10)
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Past its lease, but holding state nobody wants: a courtesy client.
        assert_eq!(m.sweep(&HashSet::new()), 0);
        assert_eq!(m.check_clientid(c, 0), Ok(()));
        // Another client's test for a conflicting lock expires it, whole.
        assert!(m
            .test_lock(2, b"other", 9, LockKind::Write, 0, 10)
            .is_none());
        assert_eq!(m.check_clientid(c, 0), Err(NfsError::StaleClientId));
        assert!(!m.file_in_use(9));
        let e = m.take_expired();
        assert_eq!((e.clients, e.released), (1, vec![9]));
    }

    #[test]
    fn a_node_cut_off_from_the_majority_renews_no_lease_and_keeps_no_courtesy_client() {
        let mut m = StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        );
        let c = confirmed(&m, b"cut");
        let o = m.open(c, b"o", 9, OPEN4_SHARE_ACCESS_BOTH, 0).unwrap();
        m.lock_new_owner(c, &o, b"l", 9, LockKind::Write, 0, 10)
            .unwrap()
            .unwrap();
        let opener = confirmed(&m, b"opener");
        m.open(opener, b"o", 10, OPEN4_SHARE_ACCESS_BOTH, 0)
            .unwrap();
        m.quorum = crate::state::remote::isolation::Quorum::cut_off();
        let q = SequenceQuery {
            slot: 0,
            seqid: 1,
            highest: 0,
            nops: 2,
            request_len: 100,
            conn: 9,
            principal: 0,
            minor: 1,
        };
        assert_eq!(
            m.sequence(&[3; 16], &q).err(),
            Some(NfsError::Delay),
            "SEQUENCE renews nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
        // Past its lease and holding a lock nobody asked for: expired all the same. A
        // client holding only an open (no other node arbitrates those) stays a courtesy one.
        assert_eq!(m.sweep(&HashSet::new()), 1);
        assert_eq!(m.check_clientid(c, 0), Err(NfsError::StaleClientId));
        assert_eq!(m.check_clientid(opener, 0), Ok(()));
        assert_eq!(
            m.sequence(&[3; 16], &q).err(),
            Some(NfsError::BadSession),
            "its session went with it"
        );
        assert_eq!(m.take_expired().released, vec![9]);
    }

    #[test]
    fn a_courtesy_client_holding_an_unlinked_file_open_is_expired_by_the_sweep() {
        let m = StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        );
        let c = confirmed(&m, b"gone");
        m.open(c, b"o", 9, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        m.open(c, b"o", 10, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(m.lapsed_open_files(), vec![9, 10]);
        assert_eq!(m.sweep(&HashSet::from([10])), 1);
        assert_eq!(m.take_expired().released, vec![9, 10]);
    }

    #[test]
    fn share_conflicts_with_a_courtesy_client_expire_it() {
        let m = StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        );
        let c = confirmed(&m, b"gone");
        m.open(
            c,
            b"o",
            9,
            OPEN4_SHARE_ACCESS_READ,
            OPEN4_SHARE_ACCESS_WRITE,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        // Client 2 has no record (never lapses): its deny stands against client 1...
        m.open(
            2,
            b"p",
            11,
            OPEN4_SHARE_ACCESS_READ,
            OPEN4_SHARE_ACCESS_WRITE,
        )
        .unwrap();
        assert_eq!(
            m.open(5, b"w", 11, OPEN4_SHARE_ACCESS_WRITE, 0)
                .unwrap_err(),
            NfsError::ShareDenied
        );
        // ...while the courtesy client's goes.
        m.open(5, b"w", 9, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        assert_eq!(m.check_clientid(c, 0), Err(NfsError::StaleClientId));
    }

    #[test]
    fn reply_cache_reservations_stay_within_the_budget() {
        let (m, _d) = mgr_after_restart(&[]);
        // The first sessions get all they ask for...
        assert_eq!(m.reserve_drc(64 << 10, 64), (64, 64 << 10, 4 << 20));
        let mut total = 4 << 20;
        let mut last = (64, 64 << 10, 4 << 20);
        for _ in 0..200 {
            last = m.reserve_drc(64 << 10, 64);
            total += last.2;
        }
        // ...later ones fewer slots, then one small slot each, and the total stays bounded.
        assert_eq!(
            last,
            (1, DRC_FLOOR_PER_SESSION, DRC_FLOOR_PER_SESSION as usize)
        );
        assert!(total <= DRC_BUDGET + 200 * DRC_FLOOR_PER_SESSION as usize);
        assert_eq!(m.reply_cache_bytes().0, total);
        m.release_drc(total);
        assert_eq!(m.reply_cache_bytes().0, 0);
        // A small per-slot size fits many slots.
        assert_eq!(m.reserve_drc(4096, 64).0, 64);
    }

    #[test]
    fn unreturned_delegations_are_revoked_after_a_lease() {
        let m = StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        );
        m.grant_read_delegation(1, 4).unwrap();
        assert!(m.delegation_conflicts(4, 2)[0].needs_recall);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            m.delegation_conflicts(4, 2).is_empty(),
            "still held a lease after the recall"
        );
    }

    #[test]
    fn a_revoked_delegation_answers_deleg_revoked_until_its_holder_frees_it() {
        let m = StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        );
        let d = m.grant_read_delegation(1, 4).unwrap();
        assert!(m.delegation_conflicts(4, 2)[0].needs_recall);
        assert_eq!(m.unanswered_recalls(1), vec![(d, 4)]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.delegation_conflicts(4, 2).is_empty());
        assert_eq!(m.test_stateid(&d), Err(NfsError::DelegRevoked));
        assert_eq!(m.return_delegation(&d, 4), Err(NfsError::DelegRevoked));
        // Only its holder may free it.
        assert_eq!(m.free_stateid(2, &d), Err(NfsError::DelegRevoked));
        m.free_stateid(1, &d).unwrap();
        assert_eq!(m.test_stateid(&d), Err(NfsError::BadStateId));
    }
}
