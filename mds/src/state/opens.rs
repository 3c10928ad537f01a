//! Opens and their share reservations (RFC 8881 §9.7): OPEN, OPEN_DOWNGRADE, CLOSE, and what
//! the opens of a file say to I/O, to the encoder and to other MDS nodes' opens.
use super::{Inner, State, StateId, StateKind, StateManager, OPEN4_SHARE_ACCESS_WRITE};
use crate::error::{NfsError, NfsResult};

impl StateManager {
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
    pub(super) fn share_conflict_left(
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
        let (clientid, seqid) = (st.clientid, st.seqid);
        if Self::end_drain(&mut g, clientid, ino) {
            drop(g);
            self.returned.notify_waiters();
        }
        Ok(StateId {
            seqid,
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
        if Self::end_drain(&mut g, st.clientid, ino) {
            drop(g);
            self.returned.notify_waiters();
        }
        Ok(())
    }

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

    /// Whether any client still has the file open (an unlinked file's data must stay).
    /// Only opens count: a client unlinks a file it has open locally by renaming it instead
    /// (silly rename), so a delegation alone must not keep an unlinked file alive.
    pub fn file_in_use(&self, ino: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            matches!(st.kind, StateKind::Open { .. })
        })
    }

    /// Whether any client of this node has any state on `ino`: an open, a lock, a layout or a
    /// delegation (the evictor leaves such a file on flash).
    pub fn file_has_state(&self, ino: u64) -> bool {
        Self::any_state(&self.lock(), ino, |_| true)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::mgr;
    use crate::state::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};

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
}
