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
pub mod commits;
mod courtesy;
pub mod delayed;
mod grace;
mod layouts;
pub mod locks;
mod owner;
pub mod quiesce;
pub mod recall;
pub mod remote;
pub mod session;
pub mod settle;
pub mod stored_size;

// More of `StateManager`'s operations, a topic a file as admin, adopt, courtesy and layouts;
// this file keeps what they share: the state, its lock, the stateid helpers.
mod clients;
mod deleg_times;
mod delegations;
mod lock_state;
mod opens;
mod reclaim;
mod sessions;
mod stateids;

pub use owner::NfsState;

pub use admin::{ClientSummary, StateCounts};
pub use adopt::session_id;
pub use deleg_times::DelegatedTimes;
pub use delegations::{Access, Conflict, Returned};
pub use grace::{read_legacy, ClientDb, LEGACY_FILE};
pub use lock_state::Denied;
use locks::FileLocks;
pub use session::{ChannelAttrs, InSlot, Session, SessionId, Slot, SlotUse, MAX_BOUND_CONNS};
pub use sessions::{BackChannel, SequenceQuery, Sequenced};
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
    ///
    /// `change`: a write delegation's file's change attribute when it was granted, which the
    /// holder's CB_GETATTR answer is compared with (the holder reports the change attribute it
    /// was given, plus one while it has unwritten changes, as Linux's nfs4_callback_getattr
    /// does); 0 for read delegations.
    ///
    /// `wrote`: the holder's last WRITE to the file. `returned`: when the holder returned a
    /// write delegation that drains (see `delegations::DRAIN_QUIET`): it stands in others' way
    /// until the writes it started under it are in, and is held by nobody. `settling`: it was
    /// returned by a holder that writes the data servers through a layout, and stays in others'
    /// way until the size they hold is recorded (`settle`). `quiet`: how long without its
    /// holder's writes a returned one drains (`delegations::DRAIN_QUIET_LAYOUT`).
    Delegation {
        write: bool,
        recalled: Option<Instant>,
        recall_acked: bool,
        change: u64,
        wrote: Option<Instant>,
        returned: Option<Instant>,
        settling: bool,
        quiet: Duration,
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
    /// The delegations whose holders keep the file's times (RFC 9754 `*_ATTRS_DELEG`): the
    /// file's times when each was granted, and whether its holder reported any (`deleg_times`).
    times_delegated: HashMap<[u8; 12], deleg_times::TimesHeld>,
}

/// A revoked delegation, kept for its holder to learn of it.
#[derive(Debug, Clone, Copy)]
struct Revoked {
    clientid: u64,
}

/// What expiring clients leave for the laundromat to do: fence the files they held RW layouts
/// on (the client may still be alive and writing to the data servers), look at the files
/// whose opens went (an unlinked one nobody has open any more is reaped), and record the
/// size of the files a write delegation left unreturned over a layout (`settle`:
/// (holder, file), `StateManager::settle_unreturned`).
#[derive(Debug, Default)]
pub struct Expired {
    pub clients: usize,
    pub fenced: Vec<u64>,
    pub released: Vec<u64>,
    pub settle: Vec<(u64, u64)>,
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
    /// Write delegations granted since the start, and CB_GETATTRs sent (for `/metrics`).
    pub write_delegations_granted: std::sync::atomic::AtomicU64,
    pub cb_getattrs: std::sync::atomic::AtomicU64,
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
                times_delegated: HashMap::new(),
            }),
            boot,
            lease,
            returned: tokio::sync::Notify::new(),
            laundromat: tokio::sync::Notify::new(),
            quorum: crate::state::remote::isolation::Quorum::default(),
            write_delegations_granted: std::sync::atomic::AtomicU64::new(0),
            cb_getattrs: std::sync::atomic::AtomicU64::new(0),
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

    /// Forgets one state: its stateid, its place in its file, its owner's index entry.
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
                StateKind::Delegation { .. } => {
                    g.times_delegated.remove(other);
                }
                StateKind::Layout { .. } => {
                    g.layout_index.remove(&(st.clientid, st.ino));
                }
            }
        }
    }

    /// Whether some state on `ino` is `what`.
    fn any_state(g: &Inner, ino: u64, what: impl Fn(&State) -> bool) -> bool {
        g.files
            .get(&ino)
            .is_some_and(|f| f.states.iter().any(|o| g.states.get(o).is_some_and(&what)))
    }
}

/// Helpers the topic files' tests share.
#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn mgr() -> (StateManager, tempfile::TempDir) {
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

    /// Leases and grace of zero: every client lapses at once, for courtesy and recall tests.
    pub(super) fn lapsing_mgr() -> StateManager {
        StateManager::new(
            3,
            Duration::ZERO,
            Duration::ZERO,
            ClientDb::default(),
            BTreeSet::new(),
        )
    }

    pub(super) fn mgr_after_restart(previous: &[&[u8]]) -> (StateManager, tempfile::TempDir) {
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

    pub(super) fn confirmed(m: &StateManager, owner: &[u8]) -> u64 {
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
}
