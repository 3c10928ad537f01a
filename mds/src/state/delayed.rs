//! Changes this node answered NFS4ERR_DELAY (or NFS4ERR_GRACE), so that the client's retry is
//! carried out as the same client request.
//!
//! DELAY ends a request, as GRACE does: the client sends the operation again under its slot's
//! next sequence id or, when its session was reset meanwhile (an adopted session is reset at
//! once: `adopt`), on a new session. The shards know a request by its session, slot and
//! sequence id (`Command::Request`), so the retry would be a new request; if the first copy was carried
//! out after all (proposed by a node that then died, or decided by a transaction that its
//! recovery finished), the retry of a RENAME would answer "not found" and that of a MKDIR
//! "exists" for what succeeded. Seen in CI: `mv` failed with ENOENT on a file it had just
//! renamed through the node the host killed.
//!
//! So the compound runner keeps, per client, the request each changing operation answered
//! DELAY was, under a fingerprint of that operation (`nfs::retry`: the COMPOUND's operations up
//! to it), and runs the client's next operation with the same fingerprint as that request: the
//! shard that applied it answers with its first answer, or applies it once. The same for the
//! changes in a COMPOUND refused with BADSESSION (a session this node does not have: its node
//! restarted, or the taker did not adopt it): sent again on a new session, they run as the
//! requests they were on the old one.
//!
//! A client is known by its owner's hash, which every session id carries (`adopt::session_id`):
//! it survives a new session and a new client id, as the owner does.
//!
//! What it costs: two identical changes by one client, the first answered DELAY, are taken as
//! one (the second gets the first's answer). Linux sends an operation answered DELAY again by
//! itself, so only two of its processes racing to make the same change do that; one of them
//! then gets success where "exists" or "not found" was due. A client sending made-up session
//! ids can push other clients' entries out (the table is bounded), which costs them only this.
use meta::namespace::ClientRequest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most requests kept, over all clients: far above the slots a node's clients have answered
/// DELAY at one time; past it the oldest goes.
const MAX_KEPT: usize = 1024;

/// How long a request is kept: past Linux's longest wait before it sends an operation answered
/// DELAY again (15 s), a session reset and a reconnect.
const KEEP: Duration = Duration::from_secs(120);

/// The client a session id names, for this table: its owner's hash (`adopt::owner_hash_in`).
pub fn client_of(session: &[u8; 16]) -> u32 {
    super::adopt::owner_hash_in(session)
}

/// A kept request: when it was answered DELAY, and in which order (for eviction).
type Kept = (ClientRequest, Instant, u64);

/// The kept requests by (client, fingerprint), and the last order number given.
type Table = (HashMap<(u32, u64), Kept>, u64);

/// The requests answered DELAY, by (client, fingerprint).
#[derive(Default)]
pub struct DelayedRequests {
    kept: Mutex<Table>,
    /// Whether any is kept: the runner looks an operation up only then.
    any: AtomicBool,
}

impl DelayedRequests {
    /// Whether any request is kept.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// The request an operation of `client` with fingerprint `fp` is a retry of, which is then
    /// no longer kept (kept again if the retry is answered DELAY too).
    pub fn take(&self, client: u32, fp: u64) -> Option<ClientRequest> {
        let mut g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let out = g.0.remove(&(client, fp)).and_then(|(req, at, _)| {
            // An entry too old to be a retry: its operation is a new request.
            (at.elapsed() < KEEP).then_some(req)
        });
        self.any.store(!g.0.is_empty(), Ordering::Relaxed);
        out
    }

    /// Keeps `req` as what an operation of `client` with fingerprint `fp` was (answered DELAY,
    /// or refused with BADSESSION).
    pub fn record(&self, client: u32, fp: u64, req: ClientRequest) {
        let mut g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let (kept, order) = &mut *g;
        let now = Instant::now();
        kept.retain(|_, (_, at, _)| now.duration_since(*at) < KEEP);
        while kept.len() >= MAX_KEPT {
            let oldest = kept.iter().min_by_key(|(_, (_, _, n))| *n).map(|(k, _)| *k);
            match oldest {
                Some(k) => kept.remove(&k),
                None => break,
            };
        }
        *order += 1;
        kept.insert((client, fp), (req, now, *order));
        self.any.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(seqid: u32) -> ClientRequest {
        ClientRequest {
            session: [7; 16],
            slot: 3,
            seqid,
            op: 4,
        }
    }

    #[test]
    fn a_retry_runs_as_the_request_answered_delay_once() {
        let d = DelayedRequests::default();
        let fp = 0x1234;
        assert!(!d.any());
        d.record(1, fp, req(41));
        assert!(d.any());
        // Another client, or another operation of this one: not a retry.
        assert_eq!(d.take(2, fp), None);
        let other = 0x1235;
        assert_eq!(d.take(1, other), None);
        assert_eq!(d.take(1, fp), Some(req(41)));
        // Taken: the next identical operation is a new request.
        assert_eq!(d.take(1, fp), None);
        assert!(!d.any());
    }

    #[test]
    fn a_client_is_its_owners_hash_in_every_session_id() {
        let owner = b"Linux NFSv4.2 guest-a";
        let a = crate::state::session_id(7, 1, owner);
        let b = crate::state::session_id(9 << 32, 5, owner);
        assert_eq!(client_of(&a), client_of(&b));
        assert_eq!(client_of(&a), crate::state::adopt::owner_hash(owner));
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let d = DelayedRequests::default();
        for i in 0..(MAX_KEPT as u64 + 10) {
            d.record(1, i, req(i as u32));
        }
        let g = d.kept.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(g.0.len(), MAX_KEPT);
        // The oldest went first.
        assert!(!g.0.contains_key(&(1, 9)));
        assert!(g.0.contains_key(&(1, 10)));
        assert!(g.0.contains_key(&(1, MAX_KEPT as u64 + 9)));
    }
}
