//! Sessions (RFC 8881 §2.10): slot tables with exactly-once semantics through a reply cache,
//! and the back channel the server uses for callbacks.
use crate::error::NfsError;
use proto::rpc::Connection;
use std::sync::Arc;

pub type SessionId = [u8; 16];

/// Connections remembered as bound to one session. A client binds one per TCP connection it
/// uses (nconnect allows 16); past this the oldest binding is forgotten, and that connection
/// binds again with its next SEQUENCE.
pub const MAX_BOUND_CONNS: usize = 16;

#[derive(Debug, Default)]
pub struct Slot {
    pub seqid: u32,
    /// The whole COMPOUND reply of the last request on this slot, for replays.
    pub reply: Option<Arc<Vec<u8>>>,
    pub busy: bool,
    /// The slot of an adopted session (`state::adopt`) not used here yet: its next request
    /// is taken as new whatever its seqid.
    pub seqid_unknown: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ChannelAttrs {
    pub max_request: u32,
    pub max_response: u32,
    pub max_response_cached: u32,
    pub max_ops: u32,
    pub max_requests: u32,
}

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub clientid: u64,
    pub fore: ChannelAttrs,
    pub back: ChannelAttrs,
    pub slots: Vec<Slot>,
    pub cb_program: u32,
    pub back_conn: Option<Connection>,
    /// The client asked for a back channel (CREATE_SESSION4_FLAG_CONN_BACK_CHAN).
    pub wants_back_channel: bool,
    pub cb_seqid: u32,
    /// Credential for callbacks, from the client's CREATE_SESSION security parameters.
    pub cb_cred: proto::rpc::Auth,
    /// The minor version of the COMPOUND that created the session. Callbacks carry the same:
    /// Linux finds the client a CB_COMPOUND is for by session and minor version, and answers
    /// NFS4ERR_BADSESSION to a v4.2 mount's callback that says 1.
    pub minor: u32,
    /// Ids of the connections bound to the session (RFC 8881 §2.10.3.1), oldest first.
    pub conns: Vec<u64>,
    /// Reply-cache memory reserved for this session at CREATE_SESSION: slots × the fore
    /// channel's `ca_maxresponsesize_cached`. Returned to the server-wide budget when the
    /// session goes.
    pub drc_reserved: usize,
    /// Bytes of replies cached in the slots now (never more than `drc_reserved`).
    pub drc_cached: usize,
    /// A dead node's session, adopted here (`state::adopt`).
    pub adopted: bool,
}

/// The slot a COMPOUND runs on, with what its reply may be: set by SEQUENCE.
#[derive(Debug, Clone, Copy)]
pub struct InSlot {
    pub slot: u32,
    pub seqid: u32,
    /// The client asked for the reply to be cached (`sa_cachethis`).
    pub cachethis: bool,
    pub max_response: u32,
    pub max_response_cached: u32,
    /// Bytes the reply may take so far, by the estimates of the operations already run.
    pub reply_used: u64,
}

/// What SEQUENCE found on the slot.
#[derive(Debug)]
pub enum SlotUse {
    /// A new request: run it, then `finish_slot` with the reply.
    New,
    /// A retransmission of the last request: answer with the cached reply.
    Replay(Arc<Vec<u8>>),
}

impl Session {
    pub fn check_slot(&mut self, slot: u32, seqid: u32, highest: u32) -> Result<SlotUse, NfsError> {
        let n = self.slots.len() as u32;
        if slot >= n {
            return Err(NfsError::BadSlot);
        }
        if highest >= n {
            return Err(NfsError::BadHighSlot);
        }
        let s = &mut self.slots[slot as usize];
        if s.seqid_unknown && !s.busy {
            s.seqid_unknown = false;
            s.busy = true;
            return Ok(SlotUse::New);
        }
        if seqid == s.seqid.wrapping_add(1) {
            if s.busy {
                return Err(NfsError::Delay);
            }
            s.busy = true;
            if let Some(old) = s.reply.take() {
                self.drc_cached -= old.len();
            }
            return Ok(SlotUse::New);
        }
        if seqid == s.seqid {
            if s.busy {
                return Err(NfsError::Delay);
            }
            return match &s.reply {
                Some(r) => Ok(SlotUse::Replay(r.clone())),
                None => Err(NfsError::RetryUncachedRep),
            };
        }
        Err(NfsError::SeqMisordered)
    }

    /// Marks the request on `slot` done and caches its reply if the client asked for that
    /// (`sa_cachethis`) and it fits the negotiated cache size. A retransmission of a reply
    /// not kept gets NFS4ERR_RETRY_UNCACHED_REP, which clients answer by retrying on a new
    /// seqid. `None`: nothing to cache.
    pub fn finish_slot(&mut self, slot: u32, seqid: u32, reply: Option<Arc<Vec<u8>>>) {
        let max = self.fore.max_response_cached as usize;
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.seqid = seqid;
            s.busy = false;
            if let Some(old) = s.reply.take() {
                self.drc_cached -= old.len();
            }
            s.reply = reply.filter(|r| r.len() <= max);
            if let Some(r) = &s.reply {
                self.drc_cached += r.len();
            }
        }
    }

    /// Binds connection `id` to the session (fore channel), forgetting the oldest binding
    /// when `MAX_BOUND_CONNS` are remembered. The common case, an already bound connection,
    /// is a scan of a few integers.
    pub fn bind_conn(&mut self, id: u64) {
        if self.conns.contains(&id) {
            return;
        }
        if self.conns.len() >= MAX_BOUND_CONNS {
            self.conns.remove(0);
        }
        self.conns.push(id);
    }

    pub fn conn_bound(&self, id: u64) -> bool {
        self.conns.contains(&id)
    }

    pub fn highest_slot(&self) -> u32 {
        self.slots.len().saturating_sub(1) as u32
    }

    pub fn back_channel_up(&self) -> bool {
        self.back_conn.as_ref().is_some_and(|c| !c.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(slots: usize) -> Session {
        let a = ChannelAttrs {
            max_request: 1 << 20,
            max_response: 1 << 20,
            max_response_cached: 1 << 16,
            max_ops: 16,
            max_requests: slots as u32,
        };
        Session {
            id: [0; 16],
            clientid: 1,
            fore: a,
            back: a,
            slots: (0..slots).map(|_| Slot::default()).collect(),
            cb_program: 0,
            back_conn: None,
            wants_back_channel: false,
            cb_seqid: 0,
            minor: 1,
            cb_cred: proto::rpc::Auth::None,
            conns: Vec::new(),
            drc_reserved: slots << 16,
            drc_cached: 0,
            adopted: false,
        }
    }

    #[test]
    fn slot_sequencing_and_replay() {
        let mut s = session(2);
        assert!(matches!(s.check_slot(0, 1, 1), Ok(SlotUse::New)));
        // Same seqid while in progress: the retry must wait.
        assert_eq!(s.check_slot(0, 1, 1).unwrap_err(), NfsError::Delay);
        s.finish_slot(0, 1, Some(Arc::new(vec![1, 2, 3])));
        match s.check_slot(0, 1, 1) {
            Ok(SlotUse::Replay(r)) => assert_eq!(*r, vec![1, 2, 3]),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.check_slot(0, 5, 1).unwrap_err(), NfsError::SeqMisordered);
        assert_eq!(s.check_slot(2, 1, 1).unwrap_err(), NfsError::BadSlot);
        assert!(matches!(s.check_slot(0, 2, 1), Ok(SlotUse::New)));
        // A fresh slot whose first seqid is a "replay" has nothing cached.
        assert_eq!(
            s.check_slot(1, 0, 1).unwrap_err(),
            NfsError::RetryUncachedRep
        );
        // Replies over the negotiated cache size are not kept.
        s.finish_slot(0, 2, Some(Arc::new(vec![0; (1 << 16) + 1])));
        assert_eq!(
            s.check_slot(0, 2, 1).unwrap_err(),
            NfsError::RetryUncachedRep
        );
        assert!(matches!(s.check_slot(0, 3, 1), Ok(SlotUse::New)));
        assert_eq!(s.drc_cached, 0);
    }

    #[test]
    fn cached_bytes_follow_the_slots() {
        let mut s = session(2);
        assert!(matches!(s.check_slot(0, 1, 1), Ok(SlotUse::New)));
        s.finish_slot(0, 1, Some(Arc::new(vec![0; 100])));
        assert!(matches!(s.check_slot(1, 1, 1), Ok(SlotUse::New)));
        s.finish_slot(1, 1, Some(Arc::new(vec![0; 50])));
        assert_eq!(s.drc_cached, 150);
        // A new request on a slot drops its old reply; an uncached one keeps nothing.
        assert!(matches!(s.check_slot(0, 2, 1), Ok(SlotUse::New)));
        assert_eq!(s.drc_cached, 50);
        s.finish_slot(0, 2, None);
        assert_eq!(s.drc_cached, 50);
    }

    #[test]
    fn bound_connections_are_bounded() {
        let mut s = session(1);
        for id in 0..(MAX_BOUND_CONNS as u64 + 3) {
            s.bind_conn(id);
            s.bind_conn(id);
        }
        assert_eq!(s.conns.len(), MAX_BOUND_CONNS);
        assert!(!s.conn_bound(0));
        assert!(s.conn_bound(MAX_BOUND_CONNS as u64 + 2));
    }
}
