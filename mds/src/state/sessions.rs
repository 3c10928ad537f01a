//! The node's session table (SEQUENCE, DESTROY_SESSION, back channels for callbacks) and the
//! reply-cache memory all sessions share. One session's slot table is `session.rs`'s; sessions
//! stay with the node that made them, unlike per-file state.
use super::{
    Inner, Session, SessionId, SlotUse, StateManager, DRC_BUDGET, DRC_FLOOR_PER_SESSION, DRC_SHARE,
};
use crate::error::{NfsError, NfsResult};
use std::time::Instant;

/// What SEQUENCE asks: the slot, and the request's size, operation count and connection.
#[derive(Debug, Clone, Copy)]
pub struct SequenceQuery {
    pub slot: u32,
    pub seqid: u32,
    pub highest: u32,
    pub nops: usize,
    /// Bytes of the COMPOUND arguments (the RPC header is not counted).
    pub request_len: usize,
    pub conn: u64,
    /// Who sent it (the caller's uid): the principal of a client whose session is adopted.
    pub principal: u32,
    /// The COMPOUND's minor version: an adopted session's, for its callbacks.
    pub minor: u32,
}

/// What SEQUENCE found: the session's client, the slot's verdict and the channel's limits.
#[derive(Debug)]
pub struct Sequenced {
    pub clientid: u64,
    pub used: SlotUse,
    pub highest_slot: u32,
    pub cb_down: bool,
    pub max_response: u32,
    pub max_response_cached: u32,
    /// The client has revoked delegations not yet freed (SEQ4_STATUS_RECALLABLE_STATE_REVOKED).
    pub revoked: bool,
    /// The session is a dead node's, adopted (`adopt`): the client is to make a new one
    /// (SEQ4_STATUS_BACKCHANNEL_FAULT).
    pub adopted: bool,
    /// The client's state was its dead node's: it is to reclaim it until its RECLAIM_COMPLETE
    /// (SEQ4_STATUS_RESTART_RECLAIM_NEEDED).
    pub reclaim_needed: bool,
}

/// Where and how to send a client its callbacks.
#[derive(Debug, Clone)]
pub struct BackChannel {
    pub conn: proto::rpc::Connection,
    pub session: SessionId,
    pub program: u32,
    pub cred: proto::rpc::Auth,
    pub minor: u32,
}

impl StateManager {
    // ---- reply-cache memory ----------------------------------------------------------------

    /// Reserves reply-cache memory for a new session that wants `wanted` slots caching up to
    /// `per_slot` bytes each, as knfsd's nfsd4_get_drc_mem does: at most an eighth of what is
    /// left of `DRC_BUDGET`, at least one slot. Returns (slots, bytes per slot, reserved);
    /// when not even one slot fits the budget, the one slot caches at most
    /// `DRC_FLOOR_PER_SESSION`. Give the reservation back with `release_drc` if the session
    /// is not installed.
    pub fn reserve_drc(&self, per_slot: u32, wanted: u32) -> (u32, u32, usize) {
        let mut g = self.lock();
        let left = DRC_BUDGET.saturating_sub(g.drc_reserved);
        let share = left / DRC_SHARE;
        let (slots, per_slot) = if per_slot == 0 {
            (wanted.max(1), 0)
        } else if share >= per_slot as usize {
            let fit = (share / per_slot as usize).min(wanted as usize);
            (fit.max(1) as u32, per_slot)
        } else if left >= per_slot as usize {
            (1, per_slot)
        } else {
            (1, per_slot.min(DRC_FLOOR_PER_SESSION))
        };
        let bytes = slots as usize * per_slot as usize;
        g.drc_reserved += bytes;
        (slots, per_slot, bytes)
    }

    pub fn release_drc(&self, bytes: usize) {
        let mut g = self.lock();
        g.drc_reserved = g.drc_reserved.saturating_sub(bytes);
    }

    /// (bytes reserved for reply caches, bytes of replies cached now), over all sessions.
    pub fn reply_cache_bytes(&self) -> (usize, usize) {
        let g = self.lock();
        let cached = g.sessions.values().map(|s| s.drc_cached).sum();
        (g.drc_reserved, cached)
    }

    pub(super) fn remove_session(g: &mut Inner, id: &SessionId) -> Option<Session> {
        let s = g.sessions.remove(id)?;
        g.drc_reserved = g.drc_reserved.saturating_sub(s.drc_reserved);
        Some(s)
    }

    // ---- sessions ------------------------------------------------------------------------

    pub fn with_session<R>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut Session) -> R,
    ) -> NfsResult<R> {
        let mut g = self.lock();
        let s = g.sessions.get_mut(id).ok_or(NfsError::BadSession)?;
        Ok(f(s))
    }

    /// A dead node's session, as `sequence` adopts it, for what else may name it first
    /// (BIND_CONN_TO_SESSION on a new connection); `principal`: who sent the request, `minor`:
    /// its COMPOUND's minor version.
    pub fn adopt_if_unknown(&self, id: &SessionId, principal: u32, minor: u32) {
        let mut g = self.lock();
        if !g.sessions.contains_key(id) {
            self.adopt(&mut g, id, principal, minor);
        }
    }

    /// SEQUENCE: slot check plus lease renewal of the owning client.
    /// A compound longer than the session's `ca_maxoperations`, or a request larger than its
    /// `ca_maxrequestsize`, fails here, before it takes a slot (as knfsd does). The connection
    /// it came on is bound to the session (knfsd does so for clients without state
    /// protection, which is all this server offers).
    pub fn sequence(&self, id: &SessionId, q: &SequenceQuery) -> NfsResult<Sequenced> {
        let mut g = self.lock();
        if !g.sessions.contains_key(id) && !self.adopt(&mut g, id, q.principal, q.minor) {
            return Err(NfsError::BadSession);
        }
        // Cut off from the majority: renewing the lease would vouch for locks the others
        // may soon grant elsewhere. Before the slot is taken, so the retry is a new request.
        if !self.quorum.vouching() {
            return Err(NfsError::Delay);
        }
        let s = g.sessions.get_mut(id).ok_or(NfsError::BadSession)?;
        if q.nops > s.fore.max_ops as usize {
            return Err(NfsError::TooManyOps);
        }
        if q.request_len > s.fore.max_request as usize {
            return Err(NfsError::ReqTooBig);
        }
        let used = s.check_slot(q.slot, q.seqid, q.highest)?;
        s.bind_conn(q.conn);
        let mut out = Sequenced {
            clientid: s.clientid,
            used,
            highest_slot: s.highest_slot(),
            cb_down: s.wants_back_channel && !s.back_channel_up(),
            max_response: s.fore.max_response,
            max_response_cached: s.fore.max_response_cached,
            revoked: false,
            adopted: s.adopted,
            reclaim_needed: false,
        };
        out.revoked = g.revoked.values().any(|r| r.clientid == out.clientid);
        if g.adopted.contains(&out.clientid) && Self::grace_on(&mut g) {
            out.reclaim_needed = g
                .clients
                .get(&out.clientid)
                .is_some_and(|c| !c.reclaim_complete);
        }
        if let Some(c) = g.clients.get_mut(&out.clientid) {
            c.renewed = Instant::now();
        }
        Ok(out)
    }

    pub fn finish_slot(
        &self,
        id: &SessionId,
        slot: u32,
        seqid: u32,
        reply: Option<std::sync::Arc<Vec<u8>>>,
    ) {
        if let Some(s) = self.lock().sessions.get_mut(id) {
            s.finish_slot(slot, seqid, reply);
        }
    }

    /// DESTROY_SESSION, sent on connection `conn`: only a connection bound to the session
    /// may destroy it (RFC 8881 §18.37.3; a SEQUENCE of the same session earlier in the
    /// compound has bound it).
    pub fn destroy_session(&self, id: &SessionId, conn: u64) -> NfsResult<()> {
        let mut g = self.lock();
        let s = g.sessions.get(id).ok_or(NfsError::BadSession)?;
        if !s.conn_bound(conn) {
            return Err(NfsError::ConnNotBoundToSession);
        }
        Self::remove_session(&mut g, id);
        Ok(())
    }

    pub fn back_channel(&self, clientid: u64) -> Option<BackChannel> {
        let g = self.lock();
        g.sessions
            .values()
            .filter(|s| s.clientid == clientid)
            .find_map(|s| {
                s.back_conn
                    .as_ref()
                    .filter(|c| !c.is_closed())
                    .map(|c| BackChannel {
                        conn: c.clone(),
                        session: s.id,
                        program: s.cb_program,
                        cred: s.cb_cred.clone(),
                        minor: s.minor,
                    })
            })
    }

    /// Takes the next back-channel sequence id of a session (slot 0 only: we send one
    /// callback at a time per session).
    pub fn next_cb_seq(&self, id: &SessionId) -> Option<u32> {
        let mut g = self.lock();
        let s = g.sessions.get_mut(id)?;
        s.cb_seqid = s.cb_seqid.wrapping_add(1);
        Some(s.cb_seqid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::mgr_after_restart;

    #[test]
    fn reply_cache_reservations_stay_within_the_budget() {
        let (m, _d) = mgr_after_restart(&[]);
        // The first sessions get all they ask for...
        assert_eq!(m.reserve_drc(64 << 10, 64), (64, 64 << 10, 4 << 20));
        let mut total = 4 << 20;
        let mut last = (64, 64 << 10, 4 << 20);
        for _ in 0..200 {
            last = m.reserve_drc(64 << 10, 64);
            total += last.2;
        }
        // ...later ones fewer slots, then one small slot each, and the total stays bounded.
        assert_eq!(
            last,
            (1, DRC_FLOOR_PER_SESSION, DRC_FLOOR_PER_SESSION as usize)
        );
        assert!(total <= DRC_BUDGET + 200 * DRC_FLOOR_PER_SESSION as usize);
        assert_eq!(m.reply_cache_bytes().0, total);
        m.release_drc(total);
        assert_eq!(m.reply_cache_bytes().0, 0);
        // A small per-slot size fits many slots.
        assert_eq!(m.reserve_drc(4096, 64).0, 64);
    }
}
