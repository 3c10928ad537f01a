//! Sessions that outlive their MDS node (issue 12 item 5).
//!
//! A client whose node died reconnects to the same address, now served by the node that took
//! it over (`mds::state::remote::addresses`), and sends what got no answer again, on the same session, slot
//! and sequence id. Had the dead node carried the request out (a MKDIR, a REMOVE), a new
//! session would make the client send it once more as a new request, and "exists" or "not
//! found" would be its answer. So the taker adopts the session instead: the request runs
//! again as the same client request (`Command::Request`), and the shard that applied it the
//! first time answers with its first answer.
//!
//! What the taker needs of the session is in its id (`session_id`): the client id (which
//! names the node and its life) and a hash of the client's owner, which picks the client out
//! of the dead node's clients the taker may let reclaim. The rest is the server's choice:
//! every slot (64), seqids not known (a slot's first request is taken as new: the shards
//! apply a request once anyway), no back channel.
//!
//! The adopted session is a bridge, not a home: SEQUENCE answers it with
//! SEQ4_STATUS_BACKCHANNEL_FAULT, so the client (Linux: `nfs41_handle_backchannel_fault`)
//! finishes what it has in flight, destroys the session and creates a new one for the same
//! client id, with a back channel; and with SEQ4_STATUS_RESTART_RECLAIM_NEEDED until its
//! RECLAIM_COMPLETE (RFC 8881 §18.46.3), so it reclaims its opens and locks as after a
//! restart, which is what its dead node's state needs.
//!
//! What the guess costs: an adopted session's slots start with their seqids unknown, so a
//! non-mutating request the dead node answered may run twice (harmlessly), and its client's
//! verifier and principal are guesses (an EXCHANGE_ID of the same client later is taken as its
//! reboot).
use super::{Client, Inner, Session, SessionId, Slot, StateManager, DRC_BUDGET, DRC_SHARE};
use std::time::Instant;

/// Slots of an adopted session: the most any session gets (`ops::session` negotiates at
/// most 64), so no slot the client uses is out of range.
pub const ADOPTED_SLOTS: u32 = 64;

/// FNV-1a of a client's owner: what a session id carries to name the client.
pub fn owner_hash(owner: &[u8]) -> u32 {
    owner.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// A session's id: the client id, the CREATE_SESSION sequence id and `owner_hash`. Unique:
/// client ids are (node, life, number), and one client's sessions have distinct sequence ids.
pub fn session_id(clientid: u64, cs_seq: u32, owner: &[u8]) -> SessionId {
    let mut id: SessionId = [0; 16];
    id[..8].copy_from_slice(&clientid.to_be_bytes());
    id[8..12].copy_from_slice(&cs_seq.to_be_bytes());
    id[12..16].copy_from_slice(&owner_hash(owner).to_be_bytes());
    id
}

/// The `owner_hash` a session id carries (`session_id`).
pub fn owner_hash_in(id: &SessionId) -> u32 {
    u32::from_be_bytes([id[12], id[13], id[14], id[15]])
}

impl StateManager {
    /// Adopts session `id` if it is one of a dead node's clients that may reclaim here (see
    /// the module); `principal` is who sent the request, `minor` its minor version (the
    /// session's: Linux takes a callback only with its session's). Returns whether it did.
    pub(super) fn adopt(&self, g: &mut Inner, id: &SessionId, principal: u32, minor: u32) -> bool {
        let mut client = [0u8; 8];
        client.copy_from_slice(&id[..8]);
        let clientid = u64::from_be_bytes(client);
        let instance = (clientid >> 32) as u32;
        // This node's own sessions are gone with its life: they recover as after a restart.
        if instance >> 24 == self.boot >> 24 || !Self::grace_on(g) {
            return false;
        }
        let hash = owner_hash_in(id);
        let mut owners = g.awaiting_reclaim.iter().filter(|o| owner_hash(o) == hash);
        let (Some(owner), None) = (owners.next(), owners.next()) else {
            // None, or two owners with one hash: the client recovers the ordinary way.
            tracing::info!(
                clientid = %format!("{clientid:#x}"),
                "a session of another node's client not adopted: not a client that may reclaim here"
            );
            return false;
        };
        let owner = owner.clone();
        // The client came back another way already (EXCHANGE_ID here): not twice.
        if g.clients
            .values()
            .any(|c| c.owner == owner && c.clientid != clientid)
        {
            tracing::info!(
                clientid = %format!("{clientid:#x}"),
                "a session of another node's client not adopted: the client is back already"
            );
            return false;
        }
        let cs_seq = u32::from_be_bytes([id[8], id[9], id[10], id[11]]);
        g.clients.entry(clientid).or_insert_with(|| Client {
            clientid,
            owner: owner.clone(),
            // Not known here: an EXCHANGE_ID of this client later is taken as its reboot.
            verifier: [0; 8],
            principal,
            confirmed: true,
            // The client's next CREATE_SESSION (Linux counts one up per session).
            cs_seq: cs_seq.wrapping_add(1),
            last_cs_reply: None,
            renewed: Instant::now(),
            reclaim_complete: false,
            may_reclaim: true,
            stripes: false,
        });
        g.adopted.insert(clientid);
        let per_slot = crate::limits::MAX_RESPONSE_CACHED;
        let left = DRC_BUDGET.saturating_sub(g.drc_reserved) / DRC_SHARE;
        let per_slot = if left >= per_slot as usize * ADOPTED_SLOTS as usize {
            per_slot
        } else {
            super::DRC_FLOOR_PER_SESSION
        };
        let reserved = per_slot as usize * ADOPTED_SLOTS as usize;
        g.drc_reserved += reserved;
        let fore = super::ChannelAttrs {
            max_request: crate::limits::MAX_MSG,
            max_response: crate::limits::MAX_MSG,
            max_response_cached: per_slot,
            max_ops: 64,
            max_requests: ADOPTED_SLOTS,
        };
        let back = super::ChannelAttrs {
            max_requests: 1,
            max_ops: 2,
            ..fore
        };
        g.sessions.insert(
            *id,
            Session {
                id: *id,
                clientid,
                fore,
                back,
                slots: (0..ADOPTED_SLOTS)
                    .map(|_| Slot {
                        seqid_unknown: true,
                        ..Slot::default()
                    })
                    .collect(),
                cb_program: 0,
                back_conn: None,
                wants_back_channel: false,
                cb_seqid: 0,
                cb_cred: proto::rpc::Auth::None,
                minor,
                conns: Vec::new(),
                drc_reserved: reserved,
                drc_cached: 0,
                adopted: true,
            },
        );
        tracing::info!(
            clientid = %format!("{clientid:#x}"),
            "adopted a session of a dead node's client"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NfsError;
    use crate::state::{ClientDb, SequenceQuery, SlotUse};
    use std::time::Duration;

    /// Node 2 (life 5)'s state manager, with no grace period on.
    fn node2() -> StateManager {
        StateManager::new(
            (2 << 24) | 5,
            Duration::from_secs(90),
            Duration::from_secs(30),
            ClientDb::default(),
            Default::default(),
        )
    }

    /// Node 2's state manager, after taking over node 1's clients `owners`.
    fn taker(owners: &[&[u8]]) -> StateManager {
        let m = node2();
        m.begin_takeover(
            owners.iter().map(|o| o.to_vec()).collect(),
            Duration::from_secs(30),
        );
        m
    }

    fn query(slot: u32, seqid: u32) -> SequenceQuery {
        SequenceQuery {
            slot,
            seqid,
            highest: 0,
            nops: 2,
            request_len: 100,
            conn: 9,
            principal: 0,
            minor: 2,
        }
    }

    /// Node 1 (life 3)'s client 7's session made by its CREATE_SESSION 1.
    fn dead_nodes_session(owner: &[u8]) -> SessionId {
        let clientid = (((1u64 << 24) | 3) << 32) | 7;
        session_id(clientid, 1, owner)
    }

    #[test]
    fn a_dead_nodes_client_keeps_its_session_at_the_taker() {
        let m = taker(&[b"guest-a", b"guest-b"]);
        let id = dead_nodes_session(b"guest-a");
        // Any seqid on a slot's first use: it may be a retransmission or the next request.
        let q = m.sequence(&id, &query(3, 41)).unwrap();
        assert!(matches!(q.used, SlotUse::New));
        assert!(q.adopted && q.reclaim_needed);
        assert_eq!(q.highest_slot, ADOPTED_SLOTS - 1);
        // Its callbacks carry the minor version the client uses on it.
        assert_eq!(m.with_session(&id, |s| s.minor).unwrap(), 2);
        m.finish_slot(&id, 3, 41, None);
        // From then on the slot is sequenced as any other.
        assert_eq!(
            m.sequence(&id, &query(3, 43)).unwrap_err(),
            NfsError::SeqMisordered
        );
        assert!(matches!(
            m.sequence(&id, &query(3, 42)).unwrap().used,
            SlotUse::New
        ));
        // It may reclaim, and RECLAIM_COMPLETE ends the flag.
        let clientid = q.clientid;
        m.check_reclaim(clientid).unwrap();
        m.reclaim_complete(clientid).unwrap();
        let q = m.sequence(&id, &query(4, 1)).unwrap();
        assert!(!q.reclaim_needed);
    }

    #[test]
    fn only_a_dead_nodes_clients_that_may_reclaim_are_adopted() {
        let m = taker(&[b"guest-a"]);
        // A client the dead node did not record.
        let stranger = dead_nodes_session(b"guest-z");
        assert_eq!(
            m.sequence(&stranger, &query(0, 1)).unwrap_err(),
            NfsError::BadSession
        );
        // This node's own previous life: recovers as after a restart.
        let own = session_id((((2u64 << 24) | 4) << 32) | 7, 1, b"guest-a");
        assert_eq!(
            m.sequence(&own, &query(0, 1)).unwrap_err(),
            NfsError::BadSession
        );
        // After the grace period nothing is adopted.
        let late = node2();
        let id = dead_nodes_session(b"guest-a");
        assert_eq!(
            late.sequence(&id, &query(0, 1)).unwrap_err(),
            NfsError::BadSession
        );
    }

    #[test]
    fn a_client_back_through_exchange_id_is_not_adopted_too() {
        let m = taker(&[b"guest-a"]);
        let (clientid, _, _) = m.exchange_id(b"guest-a", [1; 8], 0, false).unwrap();
        assert_ne!(clientid >> 56, 1);
        let id = dead_nodes_session(b"guest-a");
        assert_eq!(
            m.sequence(&id, &query(0, 1)).unwrap_err(),
            NfsError::BadSession
        );
    }

    #[test]
    fn an_adopted_client_may_make_its_next_session_here() {
        let m = taker(&[b"guest-a"]);
        let id = dead_nodes_session(b"guest-a");
        let clientid = m.sequence(&id, &query(0, 1)).unwrap().clientid;
        m.check_clientid(clientid, 0).unwrap();
        // Its session was made by CREATE_SESSION 1: the next is 2.
        assert_eq!(
            m.create_session_seq(clientid, 3).unwrap_err(),
            NfsError::SeqMisordered
        );
        assert!(m.create_session_seq(clientid, 2).unwrap().is_none());
        m.destroy_session(&id, 9).unwrap();
    }
}
