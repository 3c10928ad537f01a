//! The grace period after a restart or a takeover: who may reclaim, and when reclaims end
//! (every awaited client sent RECLAIM_COMPLETE, or time ran out). Which owners are awaited is
//! `grace.rs`'s record table.
use super::{Inner, StateManager};
use crate::error::{NfsError, NfsResult};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

impl StateManager {
    /// A restart's grace period is on: new opens and locks wait (RFC 8881 §8.4.2.1).
    pub fn in_grace(&self) -> bool {
        let mut g = self.lock();
        Self::grace_on(&mut g) && g.grace_blocks_all
    }

    /// Reclaims are taken: a restart's or a takeover's grace period is on.
    pub(super) fn grace_on(g: &mut Inner) -> bool {
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

    /// The grace period is over: clients of the previous instance that did not come back in it
    /// can reclaim nothing any more, so their records go. Kept, each later restart (a clean
    /// one too) would wait out a whole grace period for clients long gone.
    pub(super) fn end_grace(g: &mut Inner) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{confirmed, mgr_after_restart};

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
}
