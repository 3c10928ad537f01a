//! Read (and directory) delegations: granting them, recalling them when another client would
//! change the object, and revoking those not returned a lease after their recall.
use super::{Inner, Revoked, State, StateId, StateKind, StateManager, OPEN4_SHARE_ACCESS_WRITE};
use crate::error::{NfsError, NfsResult};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Revoked delegations remembered at most; past it one is forgotten for each new one (its
/// stateid then answers BAD_STATEID). Each costs its holder a recall it ignored for a whole
/// lease, so reaching this takes thousands of ignored recalls.
const MAX_REVOKED: usize = 4096;

/// How long after a recall no delegation is granted on the same object (knfsd blocks for
/// 30–60 s after a recall, for the same reason).
const RECALL_BACKOFF: Duration = Duration::from_secs(30);

/// Above this many remembered recalls, expired ones are dropped.
const RECALLED_LATELY_PRUNE: usize = 4096;

/// What an operation does to a file, as far as other clients' delegations are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes its data, attributes or names: every delegation stands in the way.
    Change,
    /// Reads it (an open for reading, READ outside any open, GETATTR of a size a writer may
    /// be caching): only write delegations do.
    Read,
}

impl Access {
    fn conflicts(self, kind: &StateKind) -> bool {
        match kind {
            StateKind::Delegation { write, .. } => self == Access::Change || *write,
            _ => false,
        }
    }
}

/// A delegation that stands in the way of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Conflict {
    pub clientid: u64,
    pub stateid: StateId,
    /// CB_RECALL must be sent now (not yet sent for this delegation).
    pub needs_recall: bool,
}

impl StateManager {
    /// Grants `clientid` a read delegation on `ino` if nobody else may write it and the client
    /// holds none there yet. (Exclusive locks need write opens, which recall read delegations,
    /// so a client caching its locks under one cannot hide a conflict.) Directory delegations
    /// are granted here too: nobody opens a directory, so only the holder and recall checks
    /// apply.
    pub fn grant_read_delegation(&self, clientid: u64, ino: u64) -> Option<StateId> {
        let mut g = self.lock();
        if Self::recalled_lately(&mut g, ino) {
            return None;
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
        Some(self.insert_delegation(&mut g, clientid, ino, false, 0))
    }

    /// Grants `clientid` a write delegation on `ino` (whose change attribute is `change` now)
    /// if nobody else holds any state on it: no other client's open, lock or layout (a layout
    /// reads and writes the data servers without asking), and no delegation at all, the
    /// client's own read delegation included (knfsd grants none over an existing one either).
    pub fn grant_write_delegation(&self, clientid: u64, ino: u64, change: u64) -> Option<StateId> {
        let mut g = self.lock();
        if Self::recalled_lately(&mut g, ino) {
            return None;
        }
        let blocked = Self::any_state(&g, ino, |st| {
            st.clientid != clientid || matches!(st.kind, StateKind::Delegation { .. })
        });
        if blocked {
            return None;
        }
        let sid = self.insert_delegation(&mut g, clientid, ino, true, change);
        self.write_delegations_granted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(sid)
    }

    /// Whether `ino`'s delegations were recalled too lately for a new one (`RECALL_BACKOFF`).
    fn recalled_lately(g: &mut Inner, ino: u64) -> bool {
        if let Some(t) = g.recalled_lately.get(&ino) {
            if t.elapsed() < RECALL_BACKOFF {
                return true;
            }
            g.recalled_lately.remove(&ino);
        }
        false
    }

    fn insert_delegation(
        &self,
        g: &mut Inner,
        clientid: u64,
        ino: u64,
        write: bool,
        change: u64,
    ) -> StateId {
        let other = self.new_other(g, 3);
        g.states.insert(
            other,
            State {
                clientid,
                ino,
                seqid: 1,
                kind: StateKind::Delegation {
                    write,
                    recalled: None,
                    recall_acked: false,
                    change,
                },
            },
        );
        g.files.entry(ino).or_default().states.insert(other);
        StateId { seqid: 1, other }
    }

    /// Another client's write delegation on `ino` (not `except`'s), not yet recalled: its
    /// holder, stateid and the file's change attribute when it was granted (for CB_GETATTR).
    pub fn write_delegation(&self, ino: u64, except: u64) -> Option<(u64, StateId, u64)> {
        let g = self.lock();
        let f = g.files.get(&ino)?;
        f.states.iter().find_map(|o| match g.states.get(o)? {
            State {
                clientid,
                seqid,
                kind:
                    StateKind::Delegation {
                        write: true,
                        recalled: None,
                        change,
                        ..
                    },
                ..
            } if *clientid != except => Some((
                *clientid,
                StateId {
                    seqid: *seqid,
                    other: *o,
                },
                *change,
            )),
            _ => None,
        })
    }

    /// Whether a client other than `holder` holds any state on `ino`, or anybody a delegation
    /// on it there (another node is about to write-delegate it to `holder`).
    pub fn held_apart_from(&self, ino: u64, holder: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            st.clientid != holder || matches!(st.kind, StateKind::Delegation { .. })
        })
    }

    /// Whether some client holds a write delegation on `ino` (another node is about to
    /// delegate it for reading).
    pub fn write_delegated(&self, ino: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            matches!(st.kind, StateKind::Delegation { write: true, .. })
        })
    }

    /// Whether a client other than `except` holds a write delegation on `ino`, recalled or not.
    pub fn write_delegated_to_other(&self, ino: u64, except: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            st.clientid != except && matches!(st.kind, StateKind::Delegation { write: true, .. })
        })
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
    /// change it (`Access::Change`), or only their write delegations before it may read it
    /// (`Access::Read`). Delegations not returned a lease after their recall are revoked here.
    pub fn delegation_conflicts(&self, ino: u64, clientid: u64, access: Access) -> Vec<Conflict> {
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
            .filter(|st| st.clientid != clientid && access.conflicts(&st.kind))
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
            if st.clientid == clientid || !access.conflicts(&st.kind) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{lapsing_mgr, mgr};
    use crate::state::OPEN4_SHARE_ACCESS_READ;

    #[test]
    fn read_delegations_are_exclusive_of_other_writers() {
        let (m, _d) = mgr();
        m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        let d = m.grant_read_delegation(1, 7).unwrap();
        // Not twice to the same client; other readers may get their own.
        assert!(m.grant_read_delegation(1, 7).is_none());
        assert!(m.grant_read_delegation(2, 7).is_some());
        // A third client wanting to write meets both: the first call asks for recalls ...
        let c = m.delegation_conflicts(7, 3, Access::Change);
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.needs_recall));
        // ... later calls wait for the returns without recalling again.
        assert!(m
            .delegation_conflicts(7, 3, Access::Change)
            .iter()
            .all(|c| !c.needs_recall));
        m.return_delegation(&d, 7).unwrap();
        assert_eq!(m.delegation_conflicts(7, 3, Access::Change).len(), 1);
        // Once somebody else writes, no new read delegation is granted.
        m.open(3, b"w", 8, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        assert!(m.grant_read_delegation(1, 8).is_none());
    }

    #[test]
    fn write_delegations_go_to_sole_holders_and_give_way_to_readers() {
        let (m, _d) = mgr();
        m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        let d = m.grant_write_delegation(1, 7, 42).unwrap();
        assert!(m.write_delegated(7));
        assert_eq!(m.write_delegation(7, 2), Some((1, d, 42)));
        assert_eq!(m.write_delegation(7, 1), None, "its own holder asks nobody");
        // Nobody else gets one beside it, of either kind.
        assert!(m.grant_write_delegation(1, 7, 42).is_none());
        assert!(m.grant_read_delegation(2, 7).is_none());
        // A reader meets it (a reader of a read-delegated file would meet nothing).
        let c = m.delegation_conflicts(7, 2, Access::Read);
        assert_eq!(c.len(), 1);
        assert!(c[0].needs_recall);
        assert_eq!(
            m.write_delegation(7, 2),
            None,
            "recalled: no CB_GETATTR any more"
        );
        m.return_delegation(&d, 7).unwrap();
        assert!(m.delegation_conflicts(7, 2, Access::Read).is_empty());
        // Not while another client has the file open, nor over a read delegation.
        m.open(2, b"b", 8, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        assert!(m.grant_write_delegation(1, 8, 1).is_none());
        assert!(m.held_apart_from(8, 1));
        m.open(1, b"a", 9, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        m.grant_read_delegation(1, 9).unwrap();
        assert!(m.grant_write_delegation(1, 9, 1).is_none());
        assert!(m.delegation_conflicts(9, 2, Access::Read).is_empty());
        assert_eq!(m.delegation_conflicts(9, 2, Access::Change).len(), 1);
    }

    #[test]
    fn unreturned_delegations_are_revoked_after_a_lease() {
        let m = lapsing_mgr();
        m.grant_read_delegation(1, 4).unwrap();
        assert!(m.delegation_conflicts(4, 2, Access::Change)[0].needs_recall);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            m.delegation_conflicts(4, 2, Access::Change).is_empty(),
            "still held a lease after the recall"
        );
    }

    #[test]
    fn a_revoked_delegation_answers_deleg_revoked_until_its_holder_frees_it() {
        let m = lapsing_mgr();
        let d = m.grant_read_delegation(1, 4).unwrap();
        assert!(m.delegation_conflicts(4, 2, Access::Change)[0].needs_recall);
        assert_eq!(m.unanswered_recalls(1), vec![(d, 4)]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.delegation_conflicts(4, 2, Access::Change).is_empty());
        assert_eq!(m.test_stateid(&d), Err(NfsError::DelegRevoked));
        assert_eq!(m.return_delegation(&d, 4), Err(NfsError::DelegRevoked));
        // Only its holder may free it.
        assert_eq!(m.free_stateid(2, &d), Err(NfsError::DelegRevoked));
        m.free_stateid(1, &d).unwrap();
        assert_eq!(m.test_stateid(&d), Err(NfsError::BadStateId));
    }
}
