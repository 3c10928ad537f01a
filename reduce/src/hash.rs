//! Chunk identity: a keyed BLAKE3 of the chunk's raw bytes.
//!
//! Why keyed: a chunk id is stored next to data that may leave the cluster's trust boundary
//! (segment indexes on data servers' disks, objects in an S3 bucket, the chunk index in
//! metadata backups). With a plain hash, anyone holding those could hash a guessed plaintext
//! (a known document, a password file with one unknown field, a VM image with a known
//! layout) and confirm it is stored. With a 256-bit per-cluster `DedupKey` the id is a MAC:
//! without the key nobody can compute or confirm one, online or offline.
//!
//! What dedup still reveals, and how that is contained:
//! - Inside the cluster, equal chunks have equal ids, so whoever reads the index or segment
//!   headers sees which files share content (not what it is). With encryption on, segment
//!   indexes are inside the AEAD envelope, so disks and the bucket show only segment sizes;
//!   the index itself lives in replicated metadata, readable only by the servers.
//! - A user who can write files and watch space usage can learn whether some content
//!   already exists in the cluster (the classic cross-user dedup side channel). It is damped
//!   because reduction runs in the background encoder, long after the write, and quotas
//!   charge logical bytes; the complete containment is a separate dedup domain, i.e. a
//!   separate `DedupKey` per tenant/export, at the cost of no dedup across domains.
//! - The chunker's gear table is seeded from the key too (`chunker_seed`), so chunk
//!   boundaries, and thus chunk lengths, are not a public function of the content.
//!
//! The key is a cluster (or dedup-domain) constant: another key gives other ids, so new data
//! would not dedup against old, and old segments verify only under the key they were
//! written with. It is made once and kept in replicated state, wrapped by the KEK when
//! encryption is on, like the data key.

use crate::wire::hex_prefix;

/// Length of a chunk id and of the dedup key.
pub const ID_LEN: usize = 32;

/// The identity of a chunk: `BLAKE3-keyed(dedup key, raw bytes)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; ID_LEN]);

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({}..)", hex_prefix(&self.0, 8))
    }
}

/// The per-cluster secret that keys chunk ids (and seeds the chunker).
#[derive(Clone, PartialEq, Eq)]
pub struct DedupKey([u8; ID_LEN]);

impl std::fmt::Debug for DedupKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DedupKey(..)")
    }
}

impl DedupKey {
    pub fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        DedupKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// A fresh key from the operating system's CSPRNG (made once per cluster).
    pub fn generate() -> Result<Self, rand::Error> {
        use rand::RngCore;
        let mut k = [0u8; ID_LEN];
        rand::rngs::OsRng.try_fill_bytes(&mut k)?;
        Ok(DedupKey(k))
    }

    /// The id of a chunk with these raw bytes.
    pub fn chunk_id(&self, raw: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.0, raw).as_bytes())
    }

    /// The FastCDC gear-table seed: derived from the key (a separate derivation context, so
    /// it says nothing about ids) so that cut points are secret too.
    pub fn chunker_seed(&self) -> u64 {
        let d = blake3::keyed_hash(&self.0, b"cfs reduce: FastCDC gear seed v1");
        let mut s = [0u8; 8];
        s.copy_from_slice(&d.as_bytes()[..8]);
        u64::from_le_bytes(s)
    }
}
