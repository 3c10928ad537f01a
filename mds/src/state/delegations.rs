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

/// A write delegation returned while its holder still has the file open for writing drains
/// instead of going, whether or not a WRITE of its holder was seen yet.
///
/// Linux starts writing a file's changes back at close(2) under a write delegation, but does
/// not wait for them there (`nfs4_file_flush`), nor before it answers a recall with
/// DELEGRETURN (`nfs_end_delegation_return` sends it at once, seen with 6.1 and 7.2): the
/// WRITEs it has queued still carry the delegation's stateid, and a reader let in at the
/// DELEGRETURN reads the file short, although the writer closed it before the reader opened
/// it. So while it drains, its holder's WRITEs under it still succeed (knfsd answers
/// BAD_STATEID, and Linux takes seconds to retry them under its open), and every other client
/// waits (NFS4ERR_DELAY) until they are in. Linux sends CLOSE once the last of them is written
/// and committed (its open lives as long as its dirty pages), which ends the drain; a holder
/// that keeps the file open ends it by doing nothing for `DRAIN_QUIET` after the return (no
/// WRITE, LAYOUTGET or LAYOUTCOMMIT: Linux writes 1 MiB at a time, several in flight, so a
/// second without one means none is coming); none lasts longer than `DRAIN_MAX`, or a lease.
///
/// It once drained only if a WRITE of the holder had been seen: a 6.1 holder whose few bytes
/// were still in its page cache at the recall (no WRITE yet, or none through its layout yet
/// on a cluster) then let the reader in at once, which read the file empty; and one whose
/// layout was recalled before its writes went out wrote them through a new layout after the
/// size was recorded, over another client's newer bytes (fuse_mount's twoclient case, kernel
/// 6.1 as the writer, 1 MDS + 3 DSs: 6 of 20 runs, read as '' or as 'v1-from-A\nlonger';
/// the server's log showed the holder's LAYOUTCOMMIT and CLOSE after the reader's OPEN).
const DRAIN_QUIET: Duration = Duration::from_secs(1);
pub(super) const DRAIN_MAX: Duration = Duration::from_secs(10);

/// `DRAIN_QUIET` once a settling delegation's size is recorded and its holder still has the
/// file open (`end_settling`): its writes go to the data servers, which this server does not
/// see, so only its LAYOUTGETs and LAYOUTCOMMITs count, and they are seconds apart. Seen: a
/// 6.1 holder whose layout came back with its writes not sent sent them through a new layout
/// 1.5 s later (a qemu guest under load); a reader let in after 1 s read the file empty.
const DRAIN_QUIET_LAYOUT: Duration = Duration::from_secs(5);

/// What a DELEGRETURN leaves its caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// Nothing: the delegation is gone, or drains until its holder's WRITEs are in.
    Done,
    /// A write delegation whose holder wrote the data servers through a layout: record the
    /// size they hold (`state::settle`), then `end_settling`; when `recall_layout`, the holder
    /// still has the file open, and its layout is to be recalled first, so that the writes it
    /// has in flight are in.
    Settle { recall_layout: bool },
}

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
                    wrote: None,
                    returned: None,
                    settling: false,
                    quiet: DRAIN_QUIET,
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
                        returned: None,
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
        // delegation with it (knfsd's nfsd_break_deleg_cb expires it too), but for the size
        // it wrote through a layout (`settle_unreturned`), which is looked at below.
        let holders: HashSet<u64> = ids
            .iter()
            .filter_map(|o| g.states.get(o))
            .filter(|st| st.clientid != clientid && access.conflicts(&st.kind))
            .map(|st| st.clientid)
            .collect();
        let mut expired = false;
        for c in holders {
            expired |= self.expire_if_lapsed(&mut g, c);
        }
        let ids: Vec<[u8; 12]> = match (expired, g.files.get(&ino)) {
            (false, _) => ids,
            (true, Some(f)) => f.states.iter().copied().collect(),
            (true, None) => Vec::new(),
        };
        let mut out = Vec::new();
        let mut revoke = Vec::new();
        let mut drained = Vec::new();
        let mut recalled_now = false;
        for other in ids {
            let Some(st) = g.states.get_mut(&other) else {
                continue;
            };
            if st.clientid == clientid || !access.conflicts(&st.kind) {
                continue;
            }
            if let StateKind::Delegation {
                recalled,
                returned,
                wrote,
                settling,
                quiet,
                ..
            } = &mut st.kind
            {
                if let Some(r) = returned {
                    if self.draining(*r, *wrote, *settling, *quiet) {
                        out.push(Conflict {
                            clientid: st.clientid,
                            stateid: StateId {
                                seqid: st.seqid,
                                other,
                            },
                            needs_recall: false,
                        });
                    } else {
                        drained.push(other);
                    }
                    continue;
                }
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
        for other in drained {
            Self::drop_state(&mut g, &other);
        }
        for other in revoke {
            tracing::warn!(
                ino,
                "revoking a delegation not returned within the lease after recall"
            );
            let unreturned = g.states.get(&other).and_then(|st| {
                let write = matches!(st.kind, StateKind::Delegation { write: true, .. });
                (write && Self::holds_rw_layout(&g, st.clientid, ino)).then_some(st.clientid)
            });
            Self::revoke_delegation(&mut g, &other);
            if let Some(holder) = unreturned {
                let stateid = self.settle_unreturned(&mut g, holder, ino);
                out.push(Conflict {
                    clientid: holder,
                    stateid,
                    needs_recall: false,
                });
            }
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
                    returned: None,
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

    /// DELEGRETURN. A write delegation whose holder still has the file open for writing
    /// drains (`DRAIN_QUIET`) rather than going at once. With the file's data on
    /// data servers (`data_elsewhere`), one whose holder holds a read-write layout there settles
    /// instead (`Returned::Settle`): it stays in others' way until the caller has recorded the
    /// size the data servers hold and called `end_settling`.
    pub fn return_delegation(
        &self,
        sid: &StateId,
        ino: u64,
        data_elsewhere: bool,
    ) -> NfsResult<Returned> {
        let mut g = self.lock();
        let st = self.check_locked(&g, sid, Some(ino))?;
        let StateKind::Delegation {
            write, returned, ..
        } = st.kind
        else {
            return Err(NfsError::BadStateId);
        };
        if returned.is_some() {
            // Returned already: a retransmission.
            return Ok(Returned::Done);
        }
        let now = Instant::now();
        let settle = write && data_elsewhere && Self::holds_rw_layout(&g, st.clientid, ino);
        let open = Self::writes_through_open(&g, st.clientid, ino);
        if settle || (write && open) {
            if let Some(State {
                kind:
                    StateKind::Delegation {
                        returned,
                        settling,
                        wrote,
                        ..
                    },
                ..
            }) = g.states.get_mut(&sid.other)
            {
                *returned = Some(now);
                *settling = settle;
                // The quiet time runs from the return: the writes Linux queued at close may
                // not have started yet.
                *wrote = Some(now);
            }
            tracing::debug!(ino, settle, "write delegation returned: draining");
            return Ok(if settle {
                Returned::Settle {
                    recall_layout: open,
                }
            } else {
                Returned::Done
            });
        }
        Self::drop_state(&mut g, &sid.other);
        drop(g);
        self.returned.notify_waiters();
        Ok(Returned::Done)
    }

    /// `clientid` loses its write delegation on `ino` without returning it (its lease ran
    /// out, or it never answered a recall) while it holds a read-write layout there: what it
    /// wrote through the layout reaches the size only with a LAYOUTCOMMIT it may never send
    /// (Linux sends none under a write delegation). A settling delegation stands in its
    /// place, in every other client's way, until the laundromat has recorded the size the
    /// data servers hold (`settle::settle`, as after a DELEGRETURN); its stateid.
    pub(super) fn settle_unreturned(&self, g: &mut Inner, clientid: u64, ino: u64) -> StateId {
        let sid = self.insert_delegation(g, clientid, ino, true, 0);
        if let Some(State {
            kind: StateKind::Delegation {
                returned, settling, ..
            },
            ..
        }) = g.states.get_mut(&sid.other)
        {
            *returned = Some(Instant::now());
            *settling = true;
        }
        tracing::info!(
            clientid,
            ino,
            "write delegation lost unreturned: settling its size"
        );
        g.expired.settle.push((clientid, ino));
        self.laundromat.notify_one();
        sid
    }

    /// Whether `clientid` holds a layout on `ino` that was granted read-write.
    pub(super) fn holds_rw_layout(g: &Inner, clientid: u64, ino: u64) -> bool {
        Self::any_state(g, ino, |st| {
            st.clientid == clientid && matches!(st.kind, StateKind::Layout { rw: true })
        })
    }

    /// Whether `clientid` returned a write delegation on `ino` that still settles.
    pub fn settling(&self, clientid: u64, ino: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            st.clientid == clientid
                && matches!(
                    st.kind,
                    StateKind::Delegation {
                        returned: Some(_),
                        settling: true,
                        ..
                    }
                )
        })
    }

    /// The size `clientid` wrote to `ino` is recorded: its settling delegation there goes, or,
    /// if its holder still has the file open for writing, drains from now on
    /// (`DRAIN_QUIET_LAYOUT`). Linux answers the layout recall that settling sends before the writes it queued at
    /// close have gone out (seen: none on the data servers when the size was recorded), and
    /// sends them through a new layout, then CLOSE: the size recorded is not the last word.
    pub fn end_settling(&self, clientid: u64, ino: u64) {
        let mut g = self.lock();
        let went = if Self::writes_through_open(&g, clientid, ino) {
            Self::settled_to_draining(&mut g, clientid, ino)
        } else {
            Self::drop_returned(&mut g, clientid, ino, true)
        };
        drop(g);
        if went {
            self.returned.notify_waiters();
        }
    }

    /// `clientid`'s settling delegations on `ino` drain from now on; whether there was one.
    fn settled_to_draining(g: &mut Inner, clientid: u64, ino: u64) -> bool {
        let Inner { files, states, .. } = g;
        let Some(f) = files.get(&ino) else {
            return false;
        };
        let mut any = false;
        for o in &f.states {
            if let Some(State {
                clientid: c,
                kind:
                    StateKind::Delegation {
                        returned: Some(_),
                        settling,
                        wrote,
                        quiet,
                        ..
                    },
                ..
            }) = states.get_mut(o)
            {
                if *c == clientid && *settling {
                    *settling = false;
                    *wrote = Some(Instant::now());
                    *quiet = DRAIN_QUIET_LAYOUT;
                    any = true;
                }
            }
        }
        any
    }

    /// `clientid` gets a read-write layout on `ino` or commits what it wrote through one: its
    /// writes go to the data servers, which this server does not see, so this is the activity
    /// that keeps its returned delegation there draining (`DRAIN_QUIET`).
    pub fn note_layout_write(&self, clientid: u64, ino: u64) {
        Self::note_write(&mut self.lock(), clientid, ino);
    }

    /// Drops `clientid`'s returned write delegations on `ino` that drain (`settling` false) or
    /// settle (true); whether one went.
    fn drop_returned(g: &mut Inner, clientid: u64, ino: u64, settling: bool) -> bool {
        let Some(f) = g.files.get(&ino) else {
            return false;
        };
        let done: Vec<[u8; 12]> = f
            .states
            .iter()
            .filter(|o| {
                matches!(g.states.get(*o), Some(State {
                    clientid: c,
                    kind: StateKind::Delegation { returned: Some(_), settling: s, .. },
                    ..
                }) if *c == clientid && *s == settling)
            })
            .copied()
            .collect();
        for o in &done {
            Self::drop_state(g, o);
        }
        !done.is_empty()
    }

    /// Whether `clientid` has `ino` open for writing.
    fn writes_through_open(g: &Inner, clientid: u64, ino: u64) -> bool {
        Self::any_state(g, ino, |st| {
            st.clientid == clientid
                && matches!(st.kind, StateKind::Open { access, .. } if access & OPEN4_SHARE_ACCESS_WRITE != 0)
        })
    }

    /// A WRITE by `clientid` to `ino`, under any of its stateids: noted on its write
    /// delegation there, held or draining.
    pub(super) fn note_write(g: &mut Inner, clientid: u64, ino: u64) {
        let Inner { files, states, .. } = g;
        let Some(f) = files.get(&ino) else { return };
        for o in &f.states {
            if let Some(State {
                clientid: c,
                kind:
                    StateKind::Delegation {
                        write: true, wrote, ..
                    },
                ..
            }) = states.get_mut(o)
            {
                if *c == clientid {
                    *wrote = Some(Instant::now());
                }
            }
        }
    }

    /// Whether a write delegation returned at `returned`, whose holder last wrote at `wrote`,
    /// still drains (until `quiet` without its holder's writes). A settling one is ended by
    /// whoever records its size (`end_settling`, within `DRAIN_MAX`); a lease is only a
    /// backstop.
    fn draining(
        &self,
        returned: Instant,
        wrote: Option<Instant>,
        settling: bool,
        quiet: Duration,
    ) -> bool {
        if settling {
            return returned.elapsed() < self.lease.max(2 * DRAIN_MAX);
        }
        returned.elapsed() < DRAIN_MAX.min(self.lease)
            && wrote.is_some_and(|w| w.elapsed() < quiet.min(self.lease))
    }

    /// `clientid` no longer has `ino` open for writing: every write it made is in, and its
    /// draining delegation there goes. Whether one went (waiters are to be woken).
    pub(super) fn end_drain(g: &mut Inner, clientid: u64, ino: u64) -> bool {
        if Self::writes_through_open(g, clientid, ino) {
            return false;
        }
        Self::drop_returned(g, clientid, ino, false)
    }

    /// Whether `st` is a returned write delegation whose drain is over (its stateid is then
    /// of no more use).
    pub(super) fn drained(&self, st: &State) -> bool {
        matches!(&st.kind, StateKind::Delegation { returned: Some(r), wrote, settling, quiet, .. } if !self.draining(*r, *wrote, *settling, *quiet))
    }

    /// An open claimed under a delegation the client holds (CLAIM_DELEG_CUR_FH during recall).
    pub fn check_delegation(&self, sid: &StateId, ino: u64, clientid: u64) -> NfsResult<()> {
        let g = self.lock();
        let st = self.check_locked(&g, sid, Some(ino))?;
        match st.kind {
            StateKind::Delegation { returned: None, .. } if st.clientid == clientid => Ok(()),
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
        m.return_delegation(&d, 7, false).unwrap();
        assert_eq!(m.delegation_conflicts(7, 3, Access::Change).len(), 1);
        // Once somebody else writes, no new read delegation is granted.
        m.open(3, b"w", 8, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        assert!(m.grant_read_delegation(1, 8).is_none());
    }

    #[test]
    fn write_delegations_go_to_sole_holders_and_give_way_to_readers() {
        let (m, _d) = mgr();
        let o = m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
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
        m.return_delegation(&d, 7, false).unwrap();
        // Returned with the file open for writing: it drains until the holder's CLOSE.
        assert!(!m.delegation_conflicts(7, 2, Access::Read)[0].needs_recall);
        m.close(&o, 7).unwrap();
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
    fn a_write_delegation_returned_while_writing_drains_until_the_close() {
        let (m, _d) = mgr();
        let o = m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        let d = m.grant_write_delegation(1, 7, 42).unwrap();
        m.check_io(&d, 7, true).unwrap();
        assert!(m.delegation_conflicts(7, 2, Access::Read)[0].needs_recall);
        m.return_delegation(&d, 7, false).unwrap();
        assert_eq!(m.counts().write_delegations, 0, "returned: held by nobody");
        // The holder's WRITEs queued under it still land, a retransmitted DELEGRETURN too ...
        m.check_io(&d, 7, true).unwrap();
        m.return_delegation(&d, 7, false).unwrap();
        // ... while a reader waits for them, and no recall goes out again.
        let c = m.delegation_conflicts(7, 2, Access::Read);
        assert_eq!(c.len(), 1);
        assert!(!c[0].needs_recall);
        assert!(m.unanswered_recalls(1).is_empty());
        assert_eq!(
            m.write_delegation(7, 2),
            None,
            "nobody to ask with CB_GETATTR"
        );
        // Its holder closing the file ends it: every write it made is in.
        m.close(&o, 7).unwrap();
        assert!(m.delegation_conflicts(7, 2, Access::Read).is_empty());
        assert_eq!(m.check_io(&d, 7, true), Err(NfsError::BadStateId));
    }

    #[test]
    fn a_draining_delegation_goes_once_its_holder_is_quiet_and_only_open_writers_drain() {
        let (m, _d) = mgr();
        let o = m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        let d = m.grant_write_delegation(1, 7, 42).unwrap();
        // Written under its open: the same holder's writes.
        m.check_io(&o, 7, true).unwrap();
        m.return_delegation(&d, 7, false).unwrap();
        assert_eq!(m.delegation_conflicts(7, 2, Access::Change).len(), 1);
        // Quiet for longer than DRAIN_QUIET: no write is on its way any more.
        std::thread::sleep(DRAIN_QUIET + Duration::from_millis(100));
        assert!(m.delegation_conflicts(7, 2, Access::Change).is_empty());
        assert_eq!(m.check_io(&d, 7, true), Err(NfsError::BadStateId));
        // One returned with the file closed goes at once.
        let (m, _d) = mgr();
        let o = m.open(1, b"a", 8, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        let d = m.grant_write_delegation(1, 8, 1).unwrap();
        m.check_io(&d, 8, true).unwrap();
        m.close(&o, 8).unwrap();
        m.return_delegation(&d, 8, false).unwrap();
        assert!(m.delegation_conflicts(8, 2, Access::Read).is_empty());
        // One returned with the file open for writing drains though no WRITE was seen yet
        // (Linux 6.1 returns before sending what it queued at close), until quiet.
        m.open(1, b"a", 9, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        let d = m.grant_write_delegation(1, 9, 1).unwrap();
        m.return_delegation(&d, 9, false).unwrap();
        assert_eq!(m.delegation_conflicts(9, 2, Access::Read).len(), 1);
        std::thread::sleep(DRAIN_QUIET + Duration::from_millis(100));
        assert!(m.delegation_conflicts(9, 2, Access::Read).is_empty());
        // One whose holder has the file open for reading only goes at once.
        m.open(1, b"a", 10, OPEN4_SHARE_ACCESS_READ, 0).unwrap();
        let d = m.grant_write_delegation(1, 10, 1).unwrap();
        m.return_delegation(&d, 10, false).unwrap();
        assert!(m.delegation_conflicts(10, 2, Access::Read).is_empty());
    }

    /// Client 1 opens file 7 for writing, takes a write delegation and a read-write layout
    /// on it, and returns the delegation while the file is open: it settles, its layout to be
    /// recalled first. (The open, the delegation.)
    fn settling_over_a_layout(m: &StateManager) -> (StateId, StateId) {
        let o = m.open(1, b"a", 7, OPEN4_SHARE_ACCESS_WRITE, 0).unwrap();
        let d = m.grant_write_delegation(1, 7, 42).unwrap();
        m.layout_get(1, 7, &d, true).unwrap();
        assert_eq!(
            m.return_delegation(&d, 7, true),
            Ok(Returned::Settle {
                recall_layout: true
            })
        );
        (o, d)
    }

    /// Linux answers the layout recall a settling delegation sends before the writes it
    /// queued at close went out, then writes them through a new layout and closes: once the
    /// size is recorded, the delegation drains while its holder has the file open and lays
    /// out or commits, and goes at its CLOSE.
    #[test]
    fn a_settled_delegation_whose_holder_still_has_the_file_open_drains_until_its_close() {
        let (m, _d) = mgr();
        let (o, _deleg) = settling_over_a_layout(&m);
        m.end_settling(1, 7);
        assert!(!m.settling(1, 7), "its own GETATTRs no longer wait");
        assert_eq!(
            m.delegation_conflicts(7, 2, Access::Read).len(),
            1,
            "a reader still waits: the holder has the file open"
        );
        // Its LAYOUTGET and LAYOUTCOMMIT keep it draining past DRAIN_QUIET_LAYOUT ...
        for _ in 0..2 {
            std::thread::sleep(DRAIN_QUIET_LAYOUT * 2 / 3);
            m.note_layout_write(1, 7);
        }
        assert_eq!(m.delegation_conflicts(7, 2, Access::Read).len(), 1);
        // ... and its CLOSE ends it.
        m.close(&o, 7).unwrap();
        assert!(m.delegation_conflicts(7, 2, Access::Read).is_empty());
    }

    #[test]
    fn a_write_delegation_over_a_layout_settles_until_its_size_is_recorded() {
        let (m, _d) = mgr();
        // Open, with a read-write layout: its layout is to be recalled first.
        let (o, _deleg) = settling_over_a_layout(&m);
        assert!(m.settling(1, 7));
        assert_eq!(m.counts().write_delegations, 0, "returned: held by nobody");
        let c = m.delegation_conflicts(7, 2, Access::Read);
        assert_eq!(c.len(), 1, "a reader waits for the size");
        assert!(!c[0].needs_recall);
        // Its holder's CLOSE alone does not end it: the size is recorded first.
        m.close(&o, 7).unwrap();
        assert_eq!(m.delegation_conflicts(7, 2, Access::Read).len(), 1);
        m.end_settling(1, 7);
        assert!(!m.settling(1, 7));
        assert!(m.delegation_conflicts(7, 2, Access::Read).is_empty());
        // Closed already: nothing in flight, settled at once by the caller.
        let d = m.grant_write_delegation(1, 8, 1).unwrap();
        m.layout_get(1, 8, &d, true).unwrap();
        assert_eq!(
            m.return_delegation(&d, 8, true),
            Ok(Returned::Settle {
                recall_layout: false
            })
        );
        // Without a read-write layout the holder wrote through us: nothing to settle.
        let d = m.grant_write_delegation(1, 9, 1).unwrap();
        m.layout_get(1, 9, &d, false).unwrap();
        assert_eq!(m.return_delegation(&d, 9, true), Ok(Returned::Done));
        assert!(m.delegation_conflicts(9, 2, Access::Read).is_empty());
    }

    /// A write delegation over a layout lost without a DELEGRETURN, its holder expired (a
    /// courtesy client whose state was in another's way) or revoked (a recall unanswered a
    /// lease long): the other client waits until the size is recorded, which the laundromat
    /// is told to do.
    #[test]
    fn a_write_delegation_lost_unreturned_over_a_layout_settles() {
        let m = lapsing_mgr();
        let a = crate::state::tests::confirmed(&m, b"gone");
        let d = m.grant_write_delegation(a, 7, 1).unwrap();
        m.layout_get(a, 7, &d, true).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let c = m.delegation_conflicts(7, 2, Access::Read);
        assert_eq!(c.len(), 1, "a reader waits for the size: {c:?}");
        assert!(!c[0].needs_recall);
        assert!(m.settling(a, 7));
        let e = m.take_expired();
        assert_eq!((e.clients, e.settle), (1, vec![(a, 7)]));
        m.end_settling(a, 7);
        assert!(m.delegation_conflicts(7, 2, Access::Read).is_empty());

        // A holder that is no courtesy client (no record here to lapse) and never answers
        // the recall.
        let b = 5;
        let d = m.grant_write_delegation(b, 8, 1).unwrap();
        m.layout_get(b, 8, &d, true).unwrap();
        assert!(m.delegation_conflicts(8, 2, Access::Read)[0].needs_recall);
        std::thread::sleep(Duration::from_millis(5));
        let c = m.delegation_conflicts(8, 2, Access::Read);
        assert_eq!(c.len(), 1, "revoked, and settling: {c:?}");
        assert_eq!(m.take_expired().settle, vec![(b, 8)]);
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
        assert_eq!(
            m.return_delegation(&d, 4, false),
            Err(NfsError::DelegRevoked)
        );
        // Only its holder may free it.
        assert_eq!(m.free_stateid(2, &d), Err(NfsError::DelegRevoked));
        m.free_stateid(1, &d).unwrap();
        assert_eq!(m.test_stateid(&d), Err(NfsError::BadStateId));
    }
}
