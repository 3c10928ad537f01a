//! Sessions (RFC 8881 §2.10): slot tables with exactly-once semantics through a reply cache,
//! and the back channel the server uses for callbacks.
use crate::error::NfsError;
use proto::rpc::Connection;
use std::sync::Arc;

pub type SessionId = [u8; 16];

#[derive(Debug, Default)]
pub struct Slot {
    pub seqid: u32,
    /// The whole COMPOUND reply of the last request on this slot, for replays.
    pub reply: Option<Arc<Vec<u8>>>,
    pub busy: bool,
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
        if seqid == s.seqid.wrapping_add(1) {
            if s.busy {
                return Err(NfsError::Delay);
            }
            s.busy = true;
            s.reply = None;
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

    /// Marks the request on `slot` done and caches its reply if it fits the negotiated cache
    /// size. Larger replies (READ data) are idempotent and not kept: a retransmission of one
    /// gets NFS4ERR_RETRY_UNCACHED_REP, which clients answer by retrying on a new seqid.
    /// `None`: the reply is larger than any session caches.
    pub fn finish_slot(&mut self, slot: u32, seqid: u32, reply: Option<Arc<Vec<u8>>>) {
        let max = self.fore.max_response_cached as usize;
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.seqid = seqid;
            s.busy = false;
            s.reply = reply.filter(|r| r.len() <= max);
        }
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
    }
}
