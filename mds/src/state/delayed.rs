//! Changes this node answered NFS4ERR_DELAY, so that the client's retry is carried out as the
//! same client request.
//!
//! DELAY ends a request: the client sends the operation again under its slot's next sequence
//! id or, when its session was reset meanwhile (an adopted session is reset at once:
//! `adopt`), on a new session. The shards know a request by its session, slot and sequence id
//! (`Command::Request`), so the retry would be a new request; if the first copy was carried
//! out after all (proposed by a node that then died, or decided by a transaction that its
//! recovery finished), the retry of a RENAME would answer "not found" and that of a MKDIR
//! "exists" for what succeeded. Seen in CI: `mv` failed with ENOENT on a file it had just
//! renamed through the node the host killed.
//!
//! So the compound runner keeps, per client, the request each changing operation answered
//! DELAY was, under a fingerprint of that operation (its arguments and file handles), and runs
//! the client's next operation with the same fingerprint as that request: the shard that
//! applied it answers with its first answer, or applies it once.
//!
//! What it costs: two identical changes by one client, the first answered DELAY, are taken as
//! one (the second gets the first's answer). Linux sends an operation answered DELAY again by
//! itself, so only two of its processes racing to make the same change do that; one of them
//! then gets success where "exists" or "not found" was due.
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

/// What an operation is, for telling its retry: its XDR (number and arguments) and the file
/// handles it ran on (inode numbers).
pub fn fingerprint(op_xdr: &[u8], cfh: Option<u64>, sfh: Option<u64>) -> u64 {
    let mut h = blake3::Hasher::new();
    for fh in [cfh, sfh] {
        h.update(&fh.map_or([0xff; 9], |ino| {
            let mut b = [0u8; 9];
            b[1..].copy_from_slice(&ino.to_be_bytes());
            b
        }));
    }
    h.update(op_xdr);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_be_bytes(first)
}

/// A kept request: when it was answered DELAY, and in which order (for eviction).
type Kept = (ClientRequest, Instant, u64);

/// The kept requests by (client id, fingerprint), and the last order number given.
type Table = (HashMap<(u64, u64), Kept>, u64);

/// The requests answered DELAY, by (client id, fingerprint).
#[derive(Default)]
pub struct DelayedRequests {
    kept: Mutex<Table>,
    /// Whether any is kept: the runner fingerprints an operation only then, or after DELAY.
    any: AtomicBool,
}

impl DelayedRequests {
    /// Whether any request is kept.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// The request an operation of `client` with fingerprint `fp` is a retry of, which is then
    /// no longer kept (kept again if the retry is answered DELAY too).
    pub fn take(&self, client: u64, fp: u64) -> Option<ClientRequest> {
        let mut g = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let out = g.0.remove(&(client, fp)).and_then(|(req, at, _)| {
            // An entry too old to be a retry: its operation is a new request.
            (at.elapsed() < KEEP).then_some(req)
        });
        self.any.store(!g.0.is_empty(), Ordering::Relaxed);
        out
    }

    /// Keeps `req` as what an operation of `client` with fingerprint `fp` was, answered DELAY.
    pub fn record(&self, client: u64, fp: u64, req: ClientRequest) {
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
        let fp = fingerprint(b"rename a/f7 b/g7", Some(10), Some(11));
        assert!(!d.any());
        d.record(1, fp, req(41));
        assert!(d.any());
        // Another client, or another operation of this one: not a retry.
        assert_eq!(d.take(2, fp), None);
        let other = fingerprint(b"rename a/f8 b/g8", Some(10), Some(11));
        assert_eq!(d.take(1, other), None);
        assert_eq!(d.take(1, fp), Some(req(41)));
        // Taken: the next identical operation is a new request.
        assert_eq!(d.take(1, fp), None);
        assert!(!d.any());
    }

    #[test]
    fn the_file_handles_are_part_of_what_an_operation_is() {
        let op = b"remove x";
        assert_ne!(
            fingerprint(op, Some(1), None),
            fingerprint(op, Some(2), None)
        );
        assert_ne!(
            fingerprint(op, Some(1), None),
            fingerprint(op, None, Some(1))
        );
        assert_eq!(
            fingerprint(op, Some(1), Some(2)),
            fingerprint(op, Some(1), Some(2))
        );
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
