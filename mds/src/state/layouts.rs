//! Layout stateids (RFC 8881 §12.5.3). A client's first LAYOUTGET on a file presents an open,
//! lock or delegation stateid; the reply gives it a layout stateid, which later LAYOUTGETs,
//! LAYOUTCOMMITs and LAYOUTRETURNs present. The seqid rises with every grant and return so the
//! client can order replies that cross on the wire.
use super::{State, StateId, StateKind, StateManager};
use crate::error::{NfsError, NfsResult};

impl StateManager {
    /// The layout stateid to answer a LAYOUTGET with (seqid already bumped).
    pub fn layout_get(
        &self,
        clientid: u64,
        ino: u64,
        presented: &StateId,
        rw: bool,
    ) -> NfsResult<StateId> {
        let mut g = self.lock();
        let other = match self.layout_state(&g, clientid, ino, presented)? {
            Some(other) => other,
            None => {
                // An open, lock or delegation stateid: it must be this client's, on this file.
                let st = self.check_locked(&g, presented, Some(ino))?;
                if st.clientid != clientid {
                    return Err(NfsError::BadStateId);
                }
                match g.layout_index.get(&(clientid, ino)) {
                    Some(o) => *o,
                    None => {
                        let o = self.new_other(&mut g, 4);
                        g.states.insert(
                            o,
                            State {
                                clientid,
                                ino,
                                seqid: 0,
                                kind: StateKind::Layout { rw: false },
                            },
                        );
                        g.files.entry(ino).or_default().states.insert(o);
                        g.layout_index.insert((clientid, ino), o);
                        o
                    }
                }
            }
        };
        let st = g.states.get_mut(&other).ok_or(NfsError::BadStateId)?;
        st.seqid = st.seqid.wrapping_add(1).max(1);
        if let StateKind::Layout { rw: held } = &mut st.kind {
            *held |= rw;
        }
        Ok(StateId {
            seqid: st.seqid,
            other,
        })
    }

    /// Whether the client's layout on `ino` (named by `sid`) was ever granted read-write: what
    /// LAYOUTCOMMIT needs (layouts are whole-file, so any RW grant covers the range). Like
    /// knfsd, an older seqid is fine: LAYOUTGETs in flight bump it while the client still
    /// holds the earlier one.
    pub fn layout_rw(&self, clientid: u64, ino: u64, sid: &StateId) -> NfsResult<bool> {
        let g = self.lock();
        let other = self
            .layout_state(&g, clientid, ino, sid)?
            .ok_or(NfsError::BadStateId)?;
        Ok(matches!(
            g.states.get(&other).map(|s| &s.kind),
            Some(StateKind::Layout { rw: true })
        ))
    }

    /// Whether `sid` was minted by another server instance: an earlier boot of this node, or
    /// another node whose client address this one took over.
    pub fn minted_elsewhere(&self, sid: &StateId) -> bool {
        !super::is_special(sid) && sid.other[0..4] != self.boot.to_be_bytes()
    }

    /// LAYOUTRETURN of a file range. Returning the whole file drops the stateid (the reply
    /// then carries none); a partial return keeps it with a new seqid. An out-of-date seqid
    /// gets NFS4ERR_OLD_STATEID.
    pub fn layout_return(
        &self,
        clientid: u64,
        ino: u64,
        sid: &StateId,
        whole_file: bool,
    ) -> NfsResult<Option<StateId>> {
        let mut g = self.lock();
        let Some(other) = self.layout_state(&g, clientid, ino, sid)? else {
            return Err(NfsError::BadStateId);
        };
        // Unlike LAYOUTCOMMIT, a return must name the layout as it is now (RFC 8881 §12.5.3):
        // one from before a LAYOUTGET or recall that crossed it would return what the client
        // may not know it was granted. Linux refreshes its stateid and returns again.
        if sid.seqid != 0 && g.states.get(&other).is_some_and(|st| sid.seqid < st.seqid) {
            return Err(NfsError::OldStateId);
        }
        if whole_file {
            Self::drop_state(&mut g, &other);
            return Ok(None);
        }
        let st = g.states.get_mut(&other).ok_or(NfsError::BadStateId)?;
        st.seqid = st.seqid.wrapping_add(1).max(1);
        Ok(Some(StateId {
            seqid: st.seqid,
            other,
        }))
    }

    /// LAYOUTRETURN4_FSID / LAYOUTRETURN4_ALL: every layout of the client goes (we export one
    /// file system, so the two are the same).
    pub fn layout_return_all(&self, clientid: u64) {
        let mut g = self.lock();
        let ids: Vec<[u8; 12]> = g
            .layout_index
            .iter()
            .filter(|((c, _), _)| *c == clientid)
            .map(|(_, o)| *o)
            .collect();
        for o in ids {
            Self::drop_state(&mut g, &o);
        }
    }

    /// Whether `clientid` has `ino` open for writing (what an RW layout needs).
    pub fn has_write_open(&self, clientid: u64, ino: u64) -> bool {
        Self::any_state(&self.lock(), ino, |st| {
            st.clientid == clientid
                && matches!(st.kind, StateKind::Open { access, .. } if access & super::OPEN4_SHARE_ACCESS_WRITE != 0)
        })
    }

    /// Every (file, client) with a read-write layout (a snapshot's quiesce recalls them).
    pub fn rw_layout_files(&self) -> Vec<(u64, u64)> {
        let g = self.lock();
        g.layout_index
            .iter()
            .filter(|(_, o)| {
                matches!(
                    g.states.get(*o),
                    Some(State {
                        kind: StateKind::Layout { rw: true },
                        ..
                    })
                )
            })
            .map(|((c, i), _)| (*i, *c))
            .collect()
    }

    /// Whether `clientid` still has a read-write layout on `ino`.
    pub fn has_rw_layout(&self, clientid: u64, ino: u64) -> bool {
        let g = self.lock();
        g.layout_index.get(&(clientid, ino)).is_some_and(|o| {
            matches!(
                g.states.get(o),
                Some(State {
                    kind: StateKind::Layout { rw: true },
                    ..
                })
            )
        })
    }

    /// Every (file, client) with a layout.
    pub fn layout_files(&self) -> Vec<(u64, u64)> {
        let g = self.lock();
        g.layout_index.keys().map(|(c, i)| (*i, *c)).collect()
    }

    /// The stateid a CB_LAYOUTRECALL carries: the layout stateid, seqid bumped.
    pub fn layout_recall_stateid(&self, clientid: u64, ino: u64) -> Option<StateId> {
        let mut g = self.lock();
        let other = *g.layout_index.get(&(clientid, ino))?;
        let st = g.states.get_mut(&other)?;
        st.seqid = st.seqid.wrapping_add(1).max(1);
        Some(StateId {
            seqid: st.seqid,
            other,
        })
    }

    /// Who holds layouts on `ino`: (client, current layout stateid), for CB_LAYOUTRECALL.
    pub fn layout_holders(&self, ino: u64) -> Vec<(u64, StateId)> {
        let g = self.lock();
        g.layout_index
            .iter()
            .filter(|((_, i), _)| *i == ino)
            .filter_map(|((c, _), o)| {
                g.states.get(o).map(|st| {
                    (
                        *c,
                        StateId {
                            seqid: st.seqid,
                            other: *o,
                        },
                    )
                })
            })
            .collect()
    }

    /// `Some(other)` when `sid` is a layout stateid of `clientid` on `ino`; `None` when it is
    /// some other kind of stateid.
    fn layout_state(
        &self,
        g: &super::Inner,
        clientid: u64,
        ino: u64,
        sid: &StateId,
    ) -> NfsResult<Option<[u8; 12]>> {
        if sid.other[0..4] != self.boot.to_be_bytes() {
            // Another server instance's (an earlier boot, or another node's before a
            // takeover). Every v4.1 call comes through a session, so BAD_STATEID, as knfsd
            // answers (nfsd4_lookup_stateid): STALE_STATEID sends Linux to check its lease,
            // which is fine, and to send the call again, forever (6.1's LAYOUTGET, seen).
            return Err(NfsError::BadStateId);
        }
        match g.states.get(&sid.other) {
            Some(
                st @ State {
                    kind: StateKind::Layout { .. },
                    ..
                },
            ) => {
                if st.clientid != clientid || st.ino != ino || sid.seqid > st.seqid {
                    return Err(NfsError::BadStateId);
                }
                Ok(Some(sid.other))
            }
            Some(_) => Ok(None),
            None => Err(NfsError::BadStateId),
        }
    }
}
