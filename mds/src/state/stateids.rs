//! Stateid validation, whatever the state (open, lock, delegation, layout): the checks every
//! operation presenting a stateid makes, I/O's access check, TEST_STATEID and FREE_STATEID.
use super::{is_special, Inner, State, StateId, StateKind, StateManager};
use super::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ, OPEN4_SHARE_ACCESS_WRITE};
use crate::error::{NfsError, NfsResult};

impl StateManager {
    /// Validates a stateid the client presents for `ino`; returns its state.
    pub fn check_stateid(&self, sid: &StateId, ino: u64) -> NfsResult<State> {
        let g = self.lock();
        self.check_locked(&g, sid, Some(ino))
    }

    pub(super) fn check_locked(
        &self,
        g: &Inner,
        sid: &StateId,
        ino: Option<u64>,
    ) -> NfsResult<State> {
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
        if self.drained(&st) {
            Self::drop_state(&mut g, &sid.other);
            self.returned.notify_waiters();
            return Err(NfsError::BadStateId);
        }
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
        if write {
            Self::note_write(&mut g, st.clientid, ino);
        }
        Ok(())
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
}
