//! LOCK, LOCKU, LOCKT and RELEASE_LOCKOWNER on the state: lock stateids, and their owners'
//! ranges in each file's table (`locks.rs`), where a courtesy client's conflicting lock goes.
use super::locks::{self, LockKind, OwnerKey, Range};
use super::{Inner, State, StateId, StateKind, StateManager};
use crate::error::{NfsError, NfsResult};

/// Lock denied: who holds what.
#[derive(Debug, Clone)]
pub struct Denied {
    pub range: Range,
}

impl StateManager {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::mgr;
    use crate::state::OPEN4_SHARE_ACCESS_BOTH;

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
}
