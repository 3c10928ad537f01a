//! Lease expiry, courteous as knfsd's (fs/nfsd/nfs4state.c since Linux 5.19): a client whose
//! lease ran out is not expired at once. It stays a *courtesy client*, its opens, locks,
//! delegations and layouts in place, so a client that was only cut off for a while (a network
//! partition, a suspended laptop) finds them again when it renews. It is expired, whole, as
//! soon as another client's request conflicts with any of its state (a share reservation, a
//! byte-range lock, a delegation to recall, I/O under a lock), and that request then proceeds
//! at once: a dead client no longer blocks the others for two leases. knfsd expires the
//! whole client too (`try_to_expire_client`), so a client finds either all of its state or
//! none, never a part of it.
//!
//! The bounds that end a courtesy otherwise (`sweep`):
//! - a client holding no opens, locks, delegations or layouts, two leases after its last
//!   renewal: it has nothing to keep, only sessions whose reply caches hold memory;
//! - a client holding read-write layouts, two leases after: it may still be writing to the
//!   data servers, so its files are fenced (unchanged from before courtesy);
//! - a client holding an open of an unlinked file, one lease after: nobody can reach that
//!   file by name, so no conflict would ever end the courtesy, and its data would stay on disk
//!   until the courtesy bound (knfsd's is a day) for a client that is most likely gone;
//! - `COURTESY_MAX` after its last renewal (knfsd's NFSD_COURTESY_CLIENT_TIMEOUT);
//! - past `MAX_COURTESY_CLIENTS`, the longest silent go first (knfsd trims courtesy clients
//!   when it has too many clients);
//! - for a client holding locks, at once while this node is cut off from the majority of MDS
//!   nodes (`crate::state::remote::isolation`).
use super::{Expired, Inner, State, StateKind, StateManager};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The longest a courtesy client keeps its state without a conflict: knfsd's
/// NFSD_COURTESY_CLIENT_TIMEOUT.
pub const COURTESY_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Most courtesy clients kept; the longest silent are expired first past it.
pub const MAX_COURTESY_CLIENTS: usize = 4096;

/// What a lapsed client holds, for the sweep's rules.
#[derive(Debug, Default, Clone, Copy)]
struct Holdings {
    any: bool,
    /// A lock stateid (ranges or not): what other nodes' clients may be granted once this
    /// node stops vouching.
    lock: bool,
    rw_layout: bool,
    orphan: bool,
}

impl StateManager {
    /// Whether `clientid` is a confirmed client whose lease has run out (a courtesy client).
    pub(super) fn lapsed(&self, g: &Inner, clientid: u64) -> bool {
        g.clients
            .get(&clientid)
            .is_some_and(|c| c.confirmed && c.renewed.elapsed() > self.lease)
    }

    /// A request conflicts with state of `clientid`: if that is a courtesy client, it is
    /// expired now and true is returned (look again, the conflict is gone); false if the
    /// client is alive and the conflict stands.
    pub(super) fn expire_if_lapsed(&self, g: &mut Inner, clientid: u64) -> bool {
        if !self.lapsed(g, clientid) {
            return false;
        }
        tracing::info!(
            clientid,
            "expiring a courtesy client: its state is in the way"
        );
        self.expire(g, clientid);
        self.laundromat.notify_one();
        true
    }

    /// Forgets `clientid` with all its state, leaving what must happen outside the lock in
    /// `Inner::expired`.
    pub(super) fn expire(&self, g: &mut Inner, clientid: u64) {
        let mut unreturned = Vec::new();
        for st in g.states.values().filter(|s| s.clientid == clientid) {
            match st.kind {
                StateKind::Layout { rw: true } => g.expired.fenced.push(st.ino),
                StateKind::Open { .. } => g.expired.released.push(st.ino),
                StateKind::Delegation { write: true, .. }
                    if Self::holds_rw_layout(g, clientid, st.ino) =>
                {
                    unreturned.push(st.ino)
                }
                _ => {}
            }
        }
        if let Some(owner) = g.clients.get(&clientid).map(|c| c.owner.clone()) {
            g.db.remove(&owner);
        }
        Self::purge_client(g, clientid);
        unreturned.sort_unstable();
        unreturned.dedup();
        for ino in unreturned {
            self.settle_unreturned(g, clientid, ino);
        }
        g.expired.clients += 1;
    }

    /// The files courtesy clients have open: the laundromat finds the unlinked ones among them
    /// and names them to `sweep`.
    pub fn lapsed_open_files(&self) -> Vec<u64> {
        let g = self.lock();
        let mut inos: Vec<u64> = g
            .states
            .values()
            .filter(|st| matches!(st.kind, StateKind::Open { .. }) && self.lapsed(&g, st.clientid))
            .map(|st| st.ino)
            .collect();
        inos.sort_unstable();
        inos.dedup();
        inos
    }

    /// The laundromat's sweep: drops unconfirmed records a lease old, and expires the courtesy
    /// clients the rules above no longer keep; `orphans` are the unlinked files among
    /// `lapsed_open_files`. Also ends a grace period that ran out. Returns how many clients
    /// went; what they left is in `take_expired`.
    pub fn sweep(&self, orphans: &HashSet<u64>) -> usize {
        let mut g = self.lock();
        if g.grace_until.is_some_and(|t| Instant::now() >= t) {
            Self::end_grace(&mut g);
        }
        // An unconfirmed record (EXCHANGE_ID never followed by CREATE_SESSION) holds nothing;
        // a client sending EXCHANGE_IDs under ever new names must not fill the table
        // (RFC 8881 §18.35.4).
        let lease = self.lease;
        let before = g.clients.len();
        g.clients.retain(|_, c| !self.unconfirmed_lapsed(c));
        let mut gone = before - g.clients.len();

        let lapsed: HashMap<u64, Duration> = g
            .clients
            .values()
            .filter(|c| c.confirmed && c.renewed.elapsed() > lease)
            .map(|c| (c.clientid, c.renewed.elapsed()))
            .collect();
        if lapsed.is_empty() {
            return gone;
        }
        let mut holds: HashMap<u64, Holdings> = HashMap::new();
        for st in g.states.values() {
            if !lapsed.contains_key(&st.clientid) {
                continue;
            }
            let h = holds.entry(st.clientid).or_default();
            h.any = true;
            match st {
                State {
                    kind: StateKind::Layout { rw: true },
                    ..
                } => h.rw_layout = true,
                State {
                    kind: StateKind::Lock { .. },
                    ..
                } => h.lock = true,
                State {
                    kind: StateKind::Open { .. },
                    ino,
                    ..
                } if orphans.contains(ino) => h.orphan = true,
                _ => {}
            }
        }
        // Cut off from the majority, no conflicting request can reach this node to end a
        // courtesy, and the others grant conflicting locks once their grace is over
        // (`crate::state::remote::isolation`): a lapsed client holding locks keeps nothing. One holding only
        // opens and layouts (each node's own) stays a courtesy client and finds them again
        // after the cut heals.
        let vouching = self.quorum.vouching();
        let mut expire = Vec::new();
        let mut courtesy = Vec::new();
        for (&id, &idle) in &lapsed {
            let h = holds.get(&id).copied().unwrap_or_default();
            let twice = idle > lease * 2;
            if (!vouching && h.lock)
                || h.orphan
                || idle > COURTESY_MAX
                || (twice && (!h.any || h.rw_layout))
            {
                expire.push(id);
            } else if h.any {
                courtesy.push((idle, id));
            }
        }
        if courtesy.len() > MAX_COURTESY_CLIENTS {
            courtesy.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
            let over = courtesy.len() - MAX_COURTESY_CLIENTS;
            expire.extend(courtesy[..over].iter().map(|(_, id)| *id));
        }
        for id in expire {
            self.expire(&mut g, id);
            gone += 1;
        }
        gone
    }

    /// What expired clients left to do (see `Expired`), handed over once.
    pub fn take_expired(&self) -> Expired {
        let mut e = std::mem::take(&mut self.lock().expired);
        e.settle.sort_unstable();
        e.settle.dedup();
        e.fenced.sort_unstable();
        e.fenced.dedup();
        e.released.sort_unstable();
        e.released.dedup();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NfsError;
    use crate::state::locks::LockKind;
    use crate::state::tests::{confirmed, lapsing_mgr};
    use crate::state::{
        SequenceQuery, OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_ACCESS_WRITE,
    };

    #[test]
    fn silent_clients_keep_their_locks_until_a_conflict() {
        let m = lapsing_mgr();
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
        let mut m = lapsing_mgr();
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
        let m = lapsing_mgr();
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
        let m = lapsing_mgr();
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
}
