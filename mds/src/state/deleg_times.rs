//! Delegated timestamps (RFC 9754 §5): the holder of a `*_ATTRS_DELEG` delegation keeps the
//! file's access (and, writing, modify) time itself, and reports them in SETATTR under the
//! delegation's stateid (Linux sends it in the DELEGRETURN compound) and in CB_GETATTR.
//!
//! Kept beside the delegations rather than in them: which delegations these are, and the
//! file's times when each was granted, the "original time" a reported time is judged against
//! (`DelegatedTimes::vet`). knfsd keeps the same (`dl_atime`, `dl_mtime`, `dl_ctime`); it
//! judged against the inode's current times at first, and then refused the mtime Linux
//! reported after its own WRITEs had moved the server's (Linux 6.13's git-status mismatch).
//! Also whether the holder reported a time: writes it made through a layout are recorded
//! after its return keeping the reported times (`stored_size::Times`).
use super::{Inner, State, StateId, StateKind, StateManager};
use crate::error::{NfsError, NfsResult};
use meta::namespace::{Inode, Time};

/// What is kept of a delegation whose holder keeps its file's times.
#[derive(Debug, Clone, Copy)]
pub(super) struct TimesHeld {
    /// The file's times when it was granted.
    granted: DelegatedTimes,
    /// Its holder reported a modify time that was recorded (`times_reported`).
    reported: bool,
}

/// A file's times when a delegation on it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelegatedTimes {
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

impl DelegatedTimes {
    pub fn of(i: &Inode) -> Self {
        DelegatedTimes {
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
        }
    }

    /// A time the holder reports against the file's at the grant (`original`): none before
    /// it or at it counts ("when the time presented is before the original time, then the
    /// update is ignored"), and one in the future is the present (RFC 9754 §5 lets the
    /// server clamp it or answer DELAY; knfsd's `nfsd4_vet_deleg_time` clamps, as here).
    pub fn vet(reported: Time, original: Time, now: Time) -> Option<Time> {
        (reported > original).then_some(reported.min(now))
    }
}

impl StateManager {
    /// Marks the delegation `sid` as one whose holder keeps the times of its file, which were
    /// `times` when it was granted. False if it is gone already (returned, or revoked, since
    /// the grant): nothing is kept for it.
    pub fn delegate_times(&self, sid: &StateId, times: DelegatedTimes) -> bool {
        let mut g = self.lock();
        if !matches!(
            g.states.get(&sid.other),
            Some(State {
                kind: StateKind::Delegation { returned: None, .. },
                ..
            })
        ) {
            return false;
        }
        g.times_delegated.insert(
            sid.other,
            TimesHeld {
                granted: times,
                reported: false,
            },
        );
        true
    }

    /// The holder of delegation `sid` reported a modify time, and it was recorded.
    pub fn times_reported(&self, sid: &StateId) {
        if let Some(t) = self.lock().times_delegated.get_mut(&sid.other) {
            t.reported = true;
        }
    }

    /// Whether `clientid` returned a delegation on `ino` that still settles
    /// (`settle::settle`) after it reported its times under it: the file's times are then
    /// the holder's, and recording the size it wrote must keep them. Linux reports them in
    /// the DELEGRETURN compound, after its last write.
    pub fn returned_with_times(&self, clientid: u64, ino: u64) -> bool {
        let g = self.lock();
        let Some(f) = g.files.get(&ino) else {
            return false;
        };
        f.states.iter().any(|o| {
            let returned = matches!(
                g.states.get(o),
                Some(State {
                    kind: StateKind::Delegation {
                        returned: Some(_),
                        settling: true,
                        ..
                    },
                    clientid: c,
                    ..
                }) if *c == clientid
            );
            returned && g.times_delegated.get(o).is_some_and(|t| t.reported)
        })
    }

    /// Whether the holder of delegation `sid` keeps its file's times (CB_GETATTR asks it
    /// for them).
    pub fn delegates_times(&self, sid: &StateId) -> bool {
        self.lock().times_delegated.contains_key(&sid.other)
    }

    /// SETATTR of delegated times: only by `clientid` under its own `*_ATTRS_DELEG`
    /// delegation `sid` on `ino`, not yet returned; then the file's times at its grant.
    /// Anything else (an open or lock stateid, another client's, a plain delegation) is
    /// BAD_STATEID, as knfsd answers (`nfsd4_setattr`).
    pub fn times_delegation(
        &self,
        sid: &StateId,
        ino: u64,
        clientid: u64,
    ) -> NfsResult<DelegatedTimes> {
        let g = self.lock();
        let st = self.check_locked(&g, sid, Some(ino))?;
        match st.kind {
            StateKind::Delegation { returned: None, .. } if st.clientid == clientid => {
                Self::original_times(&g, sid)
            }
            _ => Err(NfsError::BadStateId),
        }
    }

    fn original_times(g: &Inner, sid: &StateId) -> NfsResult<DelegatedTimes> {
        g.times_delegated
            .get(&sid.other)
            .map(|t| t.granted)
            .ok_or(NfsError::BadStateId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::mgr;

    fn t(secs: i64) -> Time {
        Time::new(secs, 0)
    }

    #[test]
    fn a_reported_time_counts_only_after_the_grant_and_not_past_now() {
        let (orig, now) = (t(100), t(200));
        assert_eq!(DelegatedTimes::vet(t(99), orig, now), None);
        assert_eq!(DelegatedTimes::vet(t(100), orig, now), None);
        assert_eq!(DelegatedTimes::vet(t(150), orig, now), Some(t(150)));
        assert_eq!(DelegatedTimes::vet(t(300), orig, now), Some(t(200)));
        assert_eq!(
            DelegatedTimes::vet(Time::new(100, 1), orig, now),
            Some(Time::new(100, 1))
        );
    }

    #[test]
    fn only_the_holder_under_its_times_delegation_may_report_times() {
        let (m, _d) = mgr();
        let times = DelegatedTimes {
            atime: t(1),
            mtime: t(2),
            ctime: t(3),
        };
        let plain = m.grant_read_delegation(1, 10).expect("read delegation");
        assert_eq!(
            m.times_delegation(&plain, 10, 1),
            Err(NfsError::BadStateId),
            "a delegation without delegated times"
        );
        let sid = m.grant_read_delegation(1, 11).expect("read delegation");
        assert!(m.delegate_times(&sid, times));
        assert!(m.delegates_times(&sid));
        assert_eq!(m.times_delegation(&sid, 11, 1), Ok(times));
        assert_eq!(m.times_delegation(&sid, 11, 2), Err(NfsError::BadStateId));
        assert_eq!(m.times_delegation(&sid, 10, 1), Err(NfsError::BadStateId));
        m.return_delegation(&sid, 11, false).unwrap();
        assert!(!m.delegates_times(&sid), "forgotten with the delegation");
        assert!(m.times_delegation(&sid, 11, 1).is_err());
        assert!(
            !m.delegate_times(&sid, times),
            "nothing kept for a returned one"
        );
    }
}
