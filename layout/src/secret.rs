//! The cluster secret: one value in every node's configuration, from which the keys that bind
//! the cluster together are derived (DS capabilities, heartbeat MACs). Deriving per purpose
//! means no key is ever used for two things, and the secret itself never crosses the wire.
use proto::cluster::{
    BadChunksArgs, BadShardsArgs, HeartbeatArgs, HeartbeatResOk, RecipeArgs, RecipePartArgs,
    RecipePartResOk, RecipeResOk, StatusArgs,
};
use proto::peer::PeerArgs;
use proto::shard::Signed;
use thiserror::Error;

use crate::capability::CapKey;

#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; 32]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the cluster secret must be at least 16 characters")]
pub struct SecretTooShort;

/// How far a heartbeat's timestamp may be from the receiver's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

impl ClusterSecret {
    /// Any passphrase of 16 characters or more; it is hashed, so its form does not matter.
    pub fn from_passphrase(s: &str) -> Result<Self, SecretTooShort> {
        let s = s.trim();
        if s.len() < 16 {
            return Err(SecretTooShort);
        }
        Ok(ClusterSecret(blake3::derive_key(
            "cfs cluster secret v1",
            s.as_bytes(),
        )))
    }

    /// The key DS file handles are minted and verified with.
    pub fn cap_key(&self) -> CapKey {
        CapKey::new(blake3::derive_key("cfs ds capability key v1", &self.0))
    }

    fn heartbeat_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs heartbeat key v1", &self.0)
    }

    /// The MAC a DS puts in its heartbeat.
    pub fn heartbeat_mac(&self, args: &HeartbeatArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.heartbeat_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a heartbeat was made with this secret (constant-time comparison).
    pub fn heartbeat_authentic(&self, args: &HeartbeatArgs) -> bool {
        blake3::Hash::from_bytes(self.heartbeat_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }

    fn heartbeat_reply_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs heartbeat reply key v1", &self.0)
    }

    /// The MAC an MDS puts in its answer to the heartbeat whose MAC is `request`. Binding the
    /// request makes a captured reply worthless for any later heartbeat (each carries a new
    /// timestamp, so a new MAC): what the reply tells a DS (fences, generation floor, the
    /// metadata nodes to heartbeat to) is taken only from a holder of the secret, now.
    pub fn heartbeat_reply_mac(&self, request: &[u8; 32], res: &HeartbeatResOk) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.heartbeat_reply_key());
        h.update(request);
        h.update(&res.mac_input());
        *h.finalize().as_bytes()
    }

    /// Whether `res` answers the heartbeat whose MAC is `request` and was made with this
    /// secret (constant-time comparison).
    pub fn heartbeat_reply_authentic(&self, request: &[u8; 32], res: &HeartbeatResOk) -> bool {
        blake3::Hash::from_bytes(self.heartbeat_reply_mac(request, res))
            == blake3::Hash::from_bytes(res.mac)
    }
}

impl ClusterSecret {
    fn bad_shards_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs bad shard report key v1", &self.0)
    }

    /// The MAC a DS puts in its report of bad shards.
    pub fn bad_shards_mac(&self, args: &BadShardsArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.bad_shards_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a bad-shard report was made with this secret (constant-time comparison).
    pub fn bad_shards_authentic(&self, args: &BadShardsArgs) -> bool {
        blake3::Hash::from_bytes(self.bad_shards_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }
}

impl ClusterSecret {
    fn recipe_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs recipe request key v1", &self.0)
    }

    /// The MAC a DS puts in its RECIPE request.
    pub fn recipe_mac(&self, args: &RecipeArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.recipe_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a RECIPE request was made with this secret (constant-time comparison).
    pub fn recipe_authentic(&self, args: &RecipeArgs) -> bool {
        blake3::Hash::from_bytes(self.recipe_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }

    fn recipe_reply_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs recipe reply key v1", &self.0)
    }

    /// The MAC an MDS puts in its answer to the RECIPE request whose MAC is `request`: the DS
    /// fetches segments from the servers the answer names, so it takes them only from a
    /// holder of the secret, for this request (as heartbeat replies).
    pub fn recipe_reply_mac(&self, request: &[u8; 32], res: &RecipeResOk) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.recipe_reply_key());
        h.update(request);
        h.update(&res.mac_input());
        *h.finalize().as_bytes()
    }

    /// Whether `res` answers the RECIPE request whose MAC is `request` (constant time).
    pub fn recipe_reply_authentic(&self, request: &[u8; 32], res: &RecipeResOk) -> bool {
        blake3::Hash::from_bytes(self.recipe_reply_mac(request, res))
            == blake3::Hash::from_bytes(res.mac)
    }

    /// RECIPE_PART's keys: their own, so no RECIPE request or answer passes for one.
    fn recipe_part_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs recipe part request key v1", &self.0)
    }

    fn recipe_part_reply_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs recipe part reply key v1", &self.0)
    }

    /// The MAC a DS puts in its RECIPE_PART request.
    pub fn recipe_part_mac(&self, args: &RecipePartArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.recipe_part_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a RECIPE_PART request was made with this secret (constant-time comparison).
    pub fn recipe_part_authentic(&self, args: &RecipePartArgs) -> bool {
        blake3::Hash::from_bytes(self.recipe_part_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }

    /// The MAC an MDS puts in its answer to the RECIPE_PART request whose MAC is `request`
    /// (as `recipe_reply_mac`).
    pub fn recipe_part_reply_mac(&self, request: &[u8; 32], res: &RecipePartResOk) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.recipe_part_reply_key());
        h.update(request);
        h.update(&res.mac_input());
        *h.finalize().as_bytes()
    }

    /// Whether `res` answers the RECIPE_PART request whose MAC is `request` (constant time).
    pub fn recipe_part_reply_authentic(&self, request: &[u8; 32], res: &RecipePartResOk) -> bool {
        blake3::Hash::from_bytes(self.recipe_part_reply_mac(request, res))
            == blake3::Hash::from_bytes(res.mac)
    }
}

impl ClusterSecret {
    fn bad_chunks_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs bad chunk report key v1", &self.0)
    }

    /// The MAC a DS puts in its report of bad chunks.
    pub fn bad_chunks_mac(&self, args: &BadChunksArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.bad_chunks_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a bad-chunk report was made with this secret (constant-time comparison).
    pub fn bad_chunks_authentic(&self, args: &BadChunksArgs) -> bool {
        blake3::Hash::from_bytes(self.bad_chunks_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }
}

impl ClusterSecret {
    fn status_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs admin status key v1", &self.0)
    }

    /// The MAC an operator's STATUS request carries.
    pub fn status_mac(&self, args: &StatusArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.status_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a STATUS request was made with this secret (constant-time comparison).
    pub fn status_authentic(&self, args: &StatusArgs) -> bool {
        blake3::Hash::from_bytes(self.status_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }

    /// A signed STATUS request, stamped now.
    pub fn status_args(&self, nonce: u64) -> StatusArgs {
        let mut a = StatusArgs {
            timestamp_ms: now_ms(),
            nonce,
            mac: [0; 32],
        };
        a.mac = self.status_mac(&a);
        a
    }
}

impl ClusterSecret {
    /// The bearer token of the admin HTTP listener (`/metrics`, the console's API): derived,
    /// so it can be handed to Prometheus or a browser without giving away the secret.
    pub fn admin_token(&self) -> String {
        let k = blake3::derive_key("cfs admin http token v1", &self.0);
        k.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl ClusterSecret {
    fn peer_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs mds peer key v1", &self.0)
    }

    /// The MAC an MDS puts on a call to another MDS (Raft, forwarded commands).
    pub fn peer_mac(&self, args: &PeerArgs) -> [u8; 32] {
        *blake3::keyed_hash(&self.peer_key(), &args.mac_input()).as_bytes()
    }

    /// Whether a peer call was made with this secret (constant-time comparison).
    pub fn peer_authentic(&self, args: &PeerArgs) -> bool {
        blake3::Hash::from_bytes(self.peer_mac(args)) == blake3::Hash::from_bytes(args.mac)
    }
}

impl ClusterSecret {
    /// The NFS fsid of a multi-node metadata cluster's file system: every MDS node must give
    /// clients the same one, and each can derive it before any shard has a leader.
    pub fn fs_id(&self) -> u64 {
        let k = blake3::derive_key("cfs file system id v1", &self.0);
        u64::from_le_bytes([k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]])
    }

    /// The key file handles are MACed with on every MDS node of a multi-node cluster, so a
    /// handle from one node is good at another.
    pub fn fh_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs mds file handle key v1", &self.0)
    }

    /// The key chunk ids are hashed under (data reduction, issue 46): one per cluster, and as
    /// fixed as the secret (the file system id already is), so a chunk stored once is found by
    /// every later reduce, and a recipe's ids check its chunks on every read.
    pub fn dedup_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs data reduction dedup key v1", &self.0)
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Milliseconds since the Unix epoch, for heartbeat timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether a heartbeat timestamp is close enough to `now` to be accepted.
pub fn fresh(timestamp_ms: u64, now: u64) -> bool {
    timestamp_ms.abs_diff(now) <= MAX_CLOCK_SKEW_MS
}

impl ClusterSecret {
    fn shard_key(&self) -> [u8; 32] {
        blake3::derive_key("cfs shard program key v1", &self.0)
    }

    /// The MAC of a shard-program call (`proto::shard`).
    pub fn shard_mac<A: Signed>(&self, args: &A) -> [u8; 32] {
        let input = proto::shard::mac_input(A::PROC, args);
        *blake3::keyed_hash(&self.shard_key(), &input).as_bytes()
    }

    /// Fills in the MAC of a shard-program call: what the MDS does before sending ENCODE,
    /// REPAIR or PLACE, and a data server before PUT, SEAL or GET to a peer.
    pub fn sign_shard<A: Signed>(&self, mut args: A) -> A {
        *args.mac_mut() = self.shard_mac(&args);
        args
    }

    /// Whether a shard-program call was made with this secret (constant-time comparison).
    pub fn shard_authentic<A: Signed>(&self, args: &A) -> bool {
        blake3::Hash::from_bytes(self.shard_mac(args)) == blake3::Hash::from_bytes(args.mac())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::cluster::DsCounters;
    use proto::nfs4::basic::Netaddr4;

    fn args() -> HeartbeatArgs {
        HeartbeatArgs {
            ds_id: 7,
            instance: 1,
            timestamp_ms: 1000,
            listen: Netaddr4::default(),
            advertised: vec![],
            failure_domain: String::new(),
            capacity_bytes: 10,
            used_bytes: 1,
            avail_bytes: 9,
            fs_id: 3,
            counters: DsCounters::default(),
            fence_seq: 0,
            mac: [0; 32],
        }
    }

    #[test]
    fn heartbeat_mac_binds_every_field_and_the_secret() {
        let s = ClusterSecret::from_passphrase("correct horse battery staple").unwrap();
        let mut a = args();
        a.mac = s.heartbeat_mac(&a);
        assert!(s.heartbeat_authentic(&a));
        let mut b = a.clone();
        b.used_bytes = 2;
        assert!(!s.heartbeat_authentic(&b));
        let other = ClusterSecret::from_passphrase("another secret, long enough").unwrap();
        assert!(!other.heartbeat_authentic(&a));
        assert!(ClusterSecret::from_passphrase("short").is_err());
    }

    #[test]
    fn a_heartbeat_reply_mac_binds_the_reply_the_request_and_the_secret() {
        let s = ClusterSecret::from_passphrase("correct horse battery staple").unwrap();
        let mut req = args();
        req.mac = s.heartbeat_mac(&req);
        let mut res = HeartbeatResOk {
            interval_ms: 1000,
            chunk_size: 1 << 24,
            min_generation: 1 << 56,
            fences: vec![],
            fence_seq: 0,
            mds_nodes: vec![proto::cluster::MdsNode {
                id: 2,
                addr: Netaddr4::default(),
            }],
            flash: None,
            mac: [0; 32],
        };
        res.mac = s.heartbeat_reply_mac(&req.mac, &res);
        assert!(s.heartbeat_reply_authentic(&req.mac, &res));
        // Another request (a later heartbeat): the old reply does not answer it.
        let mut later = args();
        later.timestamp_ms += 1;
        later.mac = s.heartbeat_mac(&later);
        assert!(!s.heartbeat_reply_authentic(&later.mac, &res));
        let mut changed = res.clone();
        changed.mds_nodes[0].id = 3;
        assert!(!s.heartbeat_reply_authentic(&req.mac, &changed));
        let other = ClusterSecret::from_passphrase("another secret, long enough").unwrap();
        assert!(!other.heartbeat_reply_authentic(&req.mac, &res));
        // Not the request's key: a DS's own MAC cannot pass for an MDS's answer.
        assert_ne!(s.heartbeat_reply_key(), s.heartbeat_key());
    }

    #[test]
    fn derived_keys_differ_per_secret() {
        let a = ClusterSecret::from_passphrase("0123456789abcdef").unwrap();
        let b = ClusterSecret::from_passphrase("0123456789abcdeg").unwrap();
        assert_ne!(a.cap_key(), b.cap_key());
    }

    #[test]
    fn stale_timestamps_are_not_fresh() {
        assert!(fresh(1_000_000, 1_030_000));
        assert!(!fresh(1_000_000, 1_000_000 + MAX_CLOCK_SKEW_MS + 1));
    }

    #[test]
    fn status_mac_binds_the_request_and_the_secret() {
        let s = ClusterSecret::from_passphrase("a long enough passphrase").unwrap();
        let a = s.status_args(7);
        assert!(s.status_authentic(&a));
        let mut b = a.clone();
        b.timestamp_ms += 1;
        assert!(!s.status_authentic(&b));
        let other = ClusterSecret::from_passphrase("another long passphrase").unwrap();
        assert!(!other.status_authentic(&a));
        // Not interchangeable with a heartbeat's MAC under the same secret.
        assert_ne!(s.status_key(), s.heartbeat_key());
        assert_ne!(s.admin_token(), other.admin_token());
        assert_eq!(s.admin_token().len(), 64);
        assert_ne!(s.shard_key(), s.peer_key());
        assert_ne!(s.shard_key(), *s.cap_key().bytes());
    }
}
